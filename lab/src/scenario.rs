//! Scenario files (`lab/scenarios/*.yaml`): a topology, traffic, a timeline of impairments and
//! expectations about what users felt.
//!
//! ```yaml
//! name: mpls-degrades
//! topology: ../topologies/bank.yaml        # relative to this file
//! duration: 20s
//! traffic:
//!   - {voice: call1, from: br1-pc1, to: dc-dc1}
//! timeline:
//!   - {at: 5s, impair: {line: br1-mpls, loss: 5%}}
//!   - {at: 10s, impair: {line: br1-mpls, down: true}}
//!   - {at: 15s, clear: br1-mpls}
//! expect:
//!   - {voice: call1, during: [0s, 5s], loss_below: 1%}
//!   - {voice: call1, during: [10s, 15s], longest_gap_below: 300ms}
//! processes:                               # optional: agents, controller
//!   - {node: br1, command: [wansteer, agent, --config, lab/agents/br1.yaml]}
//! ```
//!
//! Parsing and judging are pure: [`Scenario::judge`] takes the per-second voice reports the
//! runner recorded and returns each expectation with what was measured.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::emulator::loss::Loss;
use crate::emulator::{ImpairmentChange, Target};
use crate::units::serde_units;
use crate::voice::IntervalReport;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    /// Topology file, relative to the scenario file.
    pub topology: PathBuf,
    #[serde(deserialize_with = "serde_units::duration")]
    pub duration: Duration,
    #[serde(default)]
    pub traffic: Vec<Traffic>,
    #[serde(default)]
    pub timeline: Vec<Step>,
    #[serde(default)]
    pub expect: Vec<Expectation>,
    /// Programs started inside nodes for the run (agents, controller), killed at the end.
    #[serde(default)]
    pub processes: Vec<Process>,
}

/// A program run inside a node's namespace during the scenario. `wansteer` as the program
/// means this very binary; `{prefix}` in arguments becomes the run's prefix.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Process {
    pub node: String,
    pub command: Vec<String>,
}

/// Traffic between two nodes: a voice call for the whole run (`voice: NAME`), or bulk TCP
/// cubic between `start` and `stop` (`bulk: NAME`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Traffic {
    #[serde(default)]
    pub voice: Option<String>,
    #[serde(default)]
    pub bulk: Option<String>,
    pub from: String,
    pub to: String,
    #[serde(default)]
    pub ipv6: bool,
    #[serde(default, deserialize_with = "serde_units::opt_duration")]
    pub start: Option<Duration>,
    #[serde(default, deserialize_with = "serde_units::opt_duration")]
    pub stop: Option<Duration>,
    /// DNS lookups of `names` against dnsmasq started on `to`, one name every `every`.
    #[serde(default)]
    pub dns: Option<String>,
    #[serde(default)]
    pub names: Vec<String>,
    /// TLS handshakes with each of `sni` against openssl s_server on `to`, one every `every`.
    #[serde(default)]
    pub tls: Option<String>,
    #[serde(default)]
    pub sni: Vec<String>,
    #[serde(default, deserialize_with = "serde_units::opt_duration")]
    pub every: Option<Duration>,
}

impl Traffic {
    /// The name expectations and events use.
    pub fn name(&self) -> &str {
        self.voice
            .as_deref()
            .or(self.bulk.as_deref())
            .or(self.dns.as_deref())
            .or(self.tls.as_deref())
            .unwrap_or("")
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    #[serde(deserialize_with = "serde_units::duration")]
    pub at: Duration,
    #[serde(default)]
    pub impair: Option<ImpairStep>,
    /// Line to put back to its topology figures.
    #[serde(default)]
    pub clear: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImpairStep {
    pub line: String,
    #[serde(default)]
    pub direction: Target,
    #[serde(default, deserialize_with = "serde_units::opt_duration")]
    pub delay: Option<Duration>,
    #[serde(default, deserialize_with = "serde_units::opt_duration")]
    pub jitter: Option<Duration>,
    #[serde(default, deserialize_with = "serde_units::opt_ratio")]
    pub loss: Option<f64>,
    /// Mean loss burst length (packets), with `loss`.
    #[serde(default)]
    pub burst: Option<f64>,
    #[serde(default, deserialize_with = "serde_units::opt_rate")]
    pub rate: Option<u64>,
    #[serde(default)]
    pub down: Option<bool>,
}

impl ImpairStep {
    pub fn change(&self) -> ImpairmentChange {
        ImpairmentChange {
            delay_us: self.delay.map(|d| d.as_micros() as u64),
            jitter_us: self.jitter.map(|d| d.as_micros() as u64),
            loss: self.loss.map(|p| match self.burst {
                Some(b) => Loss::bursty(p, b),
                None if p == 0.0 => Loss::None,
                None => Loss::Random { p },
            }),
            rate_bps: self.rate,
            down: self.down,
            ..Default::default()
        }
    }
}

/// A window of the scenario, `[start, end)`; the whole run if omitted.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expectation {
    #[serde(default)]
    pub voice: String,
    /// A bulk transfer's goodput must exceed `goodput_above`.
    #[serde(default)]
    pub bulk: Option<String>,
    #[serde(default, deserialize_with = "serde_units::opt_rate")]
    pub goodput_above: Option<u64>,
    #[serde(default)]
    pub during: Option<[String; 2]>,
    #[serde(default, deserialize_with = "serde_units::opt_ratio")]
    pub loss_below: Option<f64>,
    #[serde(default, deserialize_with = "serde_units::opt_ratio")]
    pub loss_above: Option<f64>,
    #[serde(default, deserialize_with = "serde_units::opt_duration")]
    pub longest_gap_below: Option<Duration>,
    #[serde(default, deserialize_with = "serde_units::opt_duration")]
    pub latency_below: Option<Duration>,
    #[serde(default)]
    pub mos_above: Option<f64>,
}

/// A scenario file that cannot be run.
#[derive(Debug, thiserror::Error)]
#[error("{path}:{line}:{column}: {message}")]
pub struct ScenarioError {
    pub path: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// The outcome of one expectation (the shape `report.json` carries).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Judged {
    pub text: String,
    pub passed: bool,
    pub measured: String,
}

/// Where `needle` first appears in `text`, as 1-based line:column (0:0 if nowhere).
fn locate(text: &str, needle: &str) -> (usize, usize) {
    match text.find(needle) {
        Some(at) => {
            let before = &text[..at];
            let line = before.matches('\n').count() + 1;
            let column = at - before.rfind('\n').map_or(0, |n| n + 1) + 1;
            (line, column)
        }
        None => (0, 0),
    }
}

impl Scenario {
    /// Parses and checks a scenario against the lines and nodes of its topology.
    /// `lines` and `nodes` come from the topology's plan.
    pub fn parse(
        text: &str,
        origin: &str,
        lines: &[String],
        nodes: &[String],
    ) -> Result<Scenario, ScenarioError> {
        let scenario: Scenario = yaml_serde::from_str(text).map_err(|e| {
            let (line, column) = e
                .location()
                .map(|l| (l.line(), l.column()))
                .unwrap_or((0, 0));
            ScenarioError {
                path: origin.to_string(),
                line,
                column,
                message: e.to_string(),
            }
        })?;
        let fail = |needle: &str, message: String| {
            let (line, column) = locate(text, needle);
            ScenarioError {
                path: origin.to_string(),
                line,
                column,
                message,
            }
        };
        let mut calls = BTreeMap::new();
        let mut bulks = BTreeMap::new();
        for t in &scenario.traffic {
            for node in [&t.from, &t.to] {
                if !nodes.contains(node) {
                    return Err(fail(
                        node,
                        format!("unknown node `{node}` (nodes: {})", nodes.join(", ")),
                    ));
                }
            }
            let kinds = [&t.voice, &t.bulk, &t.dns, &t.tls];
            if kinds.iter().filter(|k| k.is_some()).count() != 1 {
                return Err(fail(
                    &t.from,
                    "each traffic item needs exactly one of `voice`, `bulk`, `dns` or `tls`".into(),
                ));
            }
            if let Some(d) = &t.dns {
                if t.names.is_empty()
                    || t.names
                        .iter()
                        .any(|n| crate::apps::encode_query(0, n).is_err())
                {
                    return Err(fail(d, format!("dns `{d}` needs `names`: valid DNS names")));
                }
                continue;
            }
            if let Some(name) = &t.tls {
                if t.sni.is_empty() {
                    return Err(fail(
                        name,
                        format!("tls `{name}` needs `sni`: server names"),
                    ));
                }
                continue;
            }
            match (&t.voice, &t.bulk) {
                (Some(v), None) => {
                    if t.start.is_some() || t.stop.is_some() {
                        return Err(fail(
                            v,
                            format!("voice call `{v}` runs the whole scenario: no start/stop"),
                        ));
                    }
                    if calls.insert(v.clone(), ()).is_some() {
                        return Err(fail(v, format!("voice call `{v}` defined twice")));
                    }
                }
                (None, Some(b)) => {
                    let start = t.start.unwrap_or_default();
                    let stop = t.stop.unwrap_or(scenario.duration);
                    if stop > scenario.duration || stop < start + Duration::from_secs(2) {
                        return Err(fail(
                            b,
                            format!("bulk `{b}` needs start + 2s <= stop <= duration"),
                        ));
                    }
                    if bulks.insert(b.clone(), ()).is_some() {
                        return Err(fail(b, format!("bulk `{b}` defined twice")));
                    }
                }
                _ => {
                    return Err(fail(
                        &t.from,
                        "each traffic item needs exactly one of `voice` or `bulk`".into(),
                    ));
                }
            }
        }
        for p in &scenario.processes {
            if !nodes.contains(&p.node) {
                return Err(fail(
                    &p.node,
                    format!("unknown node `{}` (nodes: {})", p.node, nodes.join(", ")),
                ));
            }
            if p.command.is_empty() {
                return Err(fail(
                    "command",
                    "a process needs a non-empty `command`".into(),
                ));
            }
        }
        for step in &scenario.timeline {
            let line = match (&step.impair, &step.clear) {
                (Some(i), None) => &i.line,
                (None, Some(l)) => l,
                _ => {
                    return Err(fail(
                        "at:",
                        "each timeline step needs exactly one of `impair` or `clear`".into(),
                    ));
                }
            };
            if !lines.contains(line) {
                return Err(fail(
                    line,
                    format!("unknown line `{line}` (lines: {})", lines.join(", ")),
                ));
            }
            if step.at > scenario.duration {
                return Err(fail(
                    "at:",
                    format!("step at {:?} is after the end", step.at),
                ));
            }
        }
        for e in &scenario.expect {
            if let Some(b) = &e.bulk {
                if !bulks.contains_key(b) {
                    return Err(fail(b, format!("expectation on unknown bulk `{b}`")));
                }
                if e.goodput_above.is_none() || !e.voice.is_empty() {
                    return Err(fail(
                        b,
                        "a bulk expectation needs `goodput_above` (and no `voice`)".into(),
                    ));
                }
                continue;
            }
            if e.goodput_above.is_some() {
                return Err(fail("goodput_above", "`goodput_above` needs `bulk`".into()));
            }
            if !calls.contains_key(&e.voice) {
                return Err(fail(
                    &e.voice,
                    format!("expectation on unknown voice call `{}`", e.voice),
                ));
            }
            if let Some([a, b]) = &e.during {
                let a = crate::units::parse_duration(a).map_err(|err| fail(a, err.to_string()))?;
                let b = crate::units::parse_duration(b).map_err(|err| fail(b, err.to_string()))?;
                if a >= b {
                    return Err(fail(
                        &e.voice,
                        "`during` must be [start, end] with start < end".into(),
                    ));
                }
            }
            let criteria = [
                e.loss_below.is_some(),
                e.loss_above.is_some(),
                e.longest_gap_below.is_some(),
                e.latency_below.is_some(),
                e.mos_above.is_some(),
            ];
            if criteria.iter().filter(|c| **c).count() != 1 {
                return Err(fail(
                    &e.voice,
                    "each expectation needs exactly one of loss_below, loss_above, longest_gap_below, latency_below, mos_above".into(),
                ));
            }
        }
        Ok(scenario)
    }

    /// The topology path, resolved against the scenario file's directory.
    pub fn topology_path(&self, scenario_file: &Path) -> PathBuf {
        scenario_file
            .parent()
            .unwrap_or(Path::new("."))
            .join(&self.topology)
    }

    /// Judges every expectation against per-second reports of each call and the goodput
    /// (bits/s) of each bulk transfer.
    pub fn judge(
        &self,
        calls: &BTreeMap<String, Vec<IntervalReport>>,
        bulks: &BTreeMap<String, f64>,
    ) -> Vec<Judged> {
        self.expect
            .iter()
            .map(|e| match (&e.bulk, e.goodput_above) {
                (Some(b), Some(min)) => {
                    let got = bulks.get(b).copied();
                    Judged {
                        text: format!("bulk {b}: goodput above {:.1} Mbit/s", min as f64 / 1e6),
                        passed: got.is_some_and(|g| g > min as f64),
                        measured: got
                            .map_or("did not run".into(), |g| format!("{:.1} Mbit/s", g / 1e6)),
                    }
                }
                _ => judge_one(e, calls),
            })
            .collect()
    }
}

fn window(e: &Expectation) -> (f64, f64) {
    match &e.during {
        Some([a, b]) => (
            crate::units::parse_duration(a).map_or(0.0, |d| d.as_secs_f64()),
            crate::units::parse_duration(b).map_or(f64::MAX, |d| d.as_secs_f64()),
        ),
        None => (0.0, f64::MAX),
    }
}

fn judge_one(e: &Expectation, calls: &BTreeMap<String, Vec<IntervalReport>>) -> Judged {
    let (start, end) = window(e);
    let span = match &e.during {
        Some([a, b]) => format!(" during {a}–{b}"),
        None => String::new(),
    };
    let reports: Vec<&IntervalReport> = calls
        .get(&e.voice)
        .map(|r| r.iter().filter(|r| r.t >= start && r.t < end).collect())
        .unwrap_or_default();
    if reports.is_empty() {
        return Judged {
            text: format!("voice {}{span}: has reports", e.voice),
            passed: false,
            measured: "no reports in the window".into(),
        };
    }
    let expected: u64 = reports.iter().map(|r| r.expected).sum();
    let lost: u64 = reports.iter().map(|r| r.lost).sum();
    let loss = if expected == 0 {
        1.0
    } else {
        lost as f64 / expected as f64
    };
    let pct = |x: f64| format!("{:.2}%", x * 100.0);
    let (text, passed, measured) = if let Some(max) = e.loss_below {
        (
            format!("loss below {}", pct(max)),
            loss < max,
            format!("loss {} ({lost}/{expected})", pct(loss)),
        )
    } else if let Some(min) = e.loss_above {
        (
            format!("loss above {}", pct(min)),
            loss > min,
            format!("loss {} ({lost}/{expected})", pct(loss)),
        )
    } else if let Some(max) = e.longest_gap_below {
        // Gaps ending in the window, and any recorded gap overlapping it (a silence that
        // began inside the window and ended after it counts whole).
        let overlapping = calls
            .get(&e.voice)
            .into_iter()
            .flatten()
            .flat_map(|r| &r.gaps)
            .filter(|g| g.start < end && g.start + g.ms / 1e3 > start)
            .map(|g| g.ms);
        let gap = reports
            .iter()
            .map(|r| r.longest_gap_ms)
            .chain(overlapping)
            .fold(0.0, f64::max);
        let max_ms = max.as_secs_f64() * 1e3;
        (
            format!("longest gap below {max_ms:.0} ms"),
            gap < max_ms,
            format!("longest gap {gap:.1} ms"),
        )
    } else if let Some(max) = e.latency_below {
        let lat: Vec<f64> = reports.iter().filter_map(|r| r.latency_ms).collect();
        let max_ms = max.as_secs_f64() * 1e3;
        let worst = lat.iter().copied().fold(f64::NAN, f64::max);
        (
            format!("latency below {max_ms:.1} ms every second"),
            !lat.is_empty() && worst < max_ms,
            if lat.is_empty() {
                "nothing arrived".into()
            } else {
                format!("worst second {worst:.2} ms")
            },
        )
    } else if let Some(min) = e.mos_above {
        let worst = reports.iter().map(|r| r.mos).fold(f64::INFINITY, f64::min);
        (
            format!("MOS above {min:.2} every second"),
            worst > min,
            format!("lowest MOS {worst:.2}"),
        )
    } else {
        ("(no criterion)".into(), false, String::new())
    };
    Judged {
        text: format!("voice {}{span}: {text}", e.voice),
        passed,
        measured,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines() -> Vec<String> {
        vec!["br1-mpls".into(), "br1-lte".into()]
    }
    fn nodes() -> Vec<String> {
        vec!["br1-pc1".into(), "dc-dc1".into()]
    }

    const GOOD: &str = "name: t
topology: ../topologies/bank.yaml
duration: 10s
traffic:
  - {voice: call, from: br1-pc1, to: dc-dc1}
timeline:
  - {at: 2s, impair: {line: br1-mpls, loss: 5%}}
  - {at: 6s, clear: br1-mpls}
expect:
  - {voice: call, during: [0s, 2s], loss_below: 1%}
  - {voice: call, during: [2s, 6s], loss_above: 1%}
  - {voice: call, mos_above: 4.0}
";

    fn second(t: f64, lost: u64, mos: f64) -> IntervalReport {
        IntervalReport {
            t,
            received: 50 - lost,
            expected: 50,
            lost,
            loss: lost as f64 / 50.0,
            longest_gap_ms: 20.0 * (lost + 1) as f64,
            latency_ms: Some(10.0),
            jitter_ms: 0.1,
            mos,
            gaps: vec![],
        }
    }

    #[test]
    fn expectations_are_judged_over_their_window() {
        let s = Scenario::parse(GOOD, "t.yaml", &lines(), &nodes()).unwrap();
        let mut calls = BTreeMap::new();
        calls.insert(
            "call".to_string(),
            (0..10)
                .map(|t| {
                    let lost = if (2..6).contains(&t) { 3 } else { 0 };
                    second(t as f64, lost, if lost > 0 { 3.9 } else { 4.4 })
                })
                .collect(),
        );
        let judged = s.judge(&calls, &BTreeMap::new());
        assert!(judged[0].passed, "{judged:?}");
        assert!(judged[1].passed, "{judged:?}");
        assert_eq!(judged[1].measured, "loss 6.00% (12/200)");
        assert!(!judged[2].passed);
        assert_eq!(judged[2].measured, "lowest MOS 3.90");
        assert_eq!(judged[0].text, "voice call during 0s–2s: loss below 1.00%");
    }

    #[test]
    fn a_gap_overlapping_the_window_counts_whole() {
        let text = "name: t
topology: x.yaml
duration: 10s
traffic:
  - {voice: call, from: br1-pc1, to: dc-dc1}
expect:
  - {voice: call, during: [2s, 4s], longest_gap_below: 300ms}
";
        let s = Scenario::parse(text, "t.yaml", &lines(), &nodes()).unwrap();
        // Silence from 3.5 s to 5.2 s: it ends after the window, in the second starting at 5.
        let mut seconds: Vec<IntervalReport> = (0..10).map(|t| second(t as f64, 0, 4.4)).collect();
        seconds[5].gaps = vec![crate::voice::Gap {
            start: 3.5,
            ms: 1700.0,
        }];
        let calls = BTreeMap::from([("call".to_string(), seconds)]);
        let judged = s.judge(&calls, &BTreeMap::new());
        assert!(!judged[0].passed);
        assert_eq!(judged[0].measured, "longest gap 1700.0 ms");
    }

    #[test]
    fn errors_point_at_file_line_and_column() {
        let typo = GOOD.replace("line: br1-mpls, loss", "line: br1-mlps, loss");
        let err = Scenario::parse(&typo, "t.yaml", &lines(), &nodes()).unwrap_err();
        assert_eq!((err.line, err.column), (7, 29), "{err}");
        assert!(
            err.to_string()
                .starts_with("t.yaml:7:29: unknown line `br1-mlps`")
        );
        let bad_unit = GOOD.replace("loss: 5%", "loss: 5 percent");
        let err = Scenario::parse(&bad_unit, "t.yaml", &lines(), &nodes()).unwrap_err();
        assert_eq!(err.line, 7, "{err}");
        let unknown_key = GOOD.replace("loss_below: 1%", "loss_bellow: 1%");
        let err = Scenario::parse(&unknown_key, "t.yaml", &lines(), &nodes()).unwrap_err();
        assert_eq!(err.line, 10, "{err}");
        let node = GOOD.replace("to: dc-dc1", "to: dc-dc9");
        let err = Scenario::parse(&node, "t.yaml", &lines(), &nodes()).unwrap_err();
        assert_eq!((err.line, err.column), (5, 38), "{err}");
    }
}
