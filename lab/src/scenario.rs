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
use crate::steer::{Observed, PolicyOutcome, SteerEvent};
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
    /// Programs started inside nodes for the run, killed at the end.
    #[serde(default)]
    pub processes: Vec<Process>,
    /// wansteer under test: controller and agents, standalone agents, or off (baseline).
    #[serde(default)]
    pub wansteer: Option<crate::steer::Section>,
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
    /// Bulk: the server's TCP port (what the policy classifies on, e.g. 5201 backups,
    /// 8000 core banking); any free port if omitted.
    #[serde(default)]
    pub port: Option<u16>,
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
    /// `kill` (SIGKILL), `stop` (SIGTERM, a clean shutdown) or `restart` the controller.
    #[serde(default)]
    pub controller: Option<ControllerAction>,
    /// Site whose agent is killed (SIGKILL) and started again.
    #[serde(default)]
    pub restart_agent: Option<String>,
    /// Site whose agent is killed (SIGKILL) and stays down until a `start_agent` step: an
    /// upgrade, or a crash with the service manager's restart delay.
    #[serde(default)]
    pub stop_agent: Option<String>,
    /// Site whose agent, stopped by `stop_agent`, is started again.
    #[serde(default)]
    pub start_agent: Option<String>,
    /// Take a line down and up again every `every` until `until`.
    #[serde(default)]
    pub flap: Option<Flap>,
    /// PUT a policy file through the controller's API with the admin token.
    #[serde(default)]
    pub apply_policy: Option<PolicyStep>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ControllerAction {
    Kill,
    /// SIGTERM: the controller shuts down cleanly (an upgrade), writing its state.
    Stop,
    Restart,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Flap {
    pub line: String,
    /// Time down, then the same time up.
    #[serde(deserialize_with = "serde_units::duration")]
    pub every: Duration,
    #[serde(deserialize_with = "serde_units::duration")]
    pub until: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyStep {
    /// Name the expectations use.
    pub name: String,
    /// Policy file, relative to the scenario file.
    pub file: PathBuf,
}

/// What a timeline step does, once flaps are expanded into downs and ups.
#[derive(Debug, Clone)]
pub enum Action {
    Impair(ImpairStep),
    Clear(String),
    Controller(ControllerAction),
    RestartAgent(String),
    StopAgent(String),
    StartAgent(String),
    ApplyPolicy(PolicyStep),
}

impl Scenario {
    /// Every action of the timeline in time order, flaps expanded.
    pub fn actions(&self) -> Vec<(Duration, Action)> {
        let mut out = Vec::new();
        for step in &self.timeline {
            if let Some(i) = &step.impair {
                out.push((step.at, Action::Impair(i.clone())));
            } else if let Some(l) = &step.clear {
                out.push((step.at, Action::Clear(l.clone())));
            } else if let Some(c) = step.controller {
                out.push((step.at, Action::Controller(c)));
            } else if let Some(site) = &step.restart_agent {
                out.push((step.at, Action::RestartAgent(site.clone())));
            } else if let Some(site) = &step.stop_agent {
                out.push((step.at, Action::StopAgent(site.clone())));
            } else if let Some(site) = &step.start_agent {
                out.push((step.at, Action::StartAgent(site.clone())));
            } else if let Some(p) = &step.apply_policy {
                out.push((step.at, Action::ApplyPolicy(p.clone())));
            } else if let Some(f) = &step.flap {
                let mut at = step.at;
                let mut down = true;
                while at < f.until {
                    out.push((
                        at,
                        Action::Impair(ImpairStep {
                            line: f.line.clone(),
                            direction: Target::default(),
                            delay: None,
                            jitter: None,
                            loss: None,
                            burst: None,
                            rate: None,
                            down: Some(down),
                        }),
                    ));
                    down = !down;
                    at += f.every;
                }
                if !down {
                    out.push((f.until, Action::Clear(f.line.clone())));
                }
            }
        }
        out.sort_by_key(|(at, _)| *at);
        out
    }

    /// The wansteer mode this scenario runs in (off without a `wansteer:` section).
    pub fn mode(&self) -> crate::steer::Mode {
        self.wansteer.as_ref().map(|w| w.mode).unwrap_or_default()
    }
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
    /// Steering: a class at a site (`class`, `site`)...
    #[serde(default)]
    pub class: Option<String>,
    #[serde(default)]
    pub site: Option<String>,
    /// ...leaves this line within `within` of `after` (decision applied by the agent).
    #[serde(default)]
    pub leaves: Option<String>,
    #[serde(default, deserialize_with = "serde_units::opt_duration")]
    pub after: Option<Duration>,
    #[serde(default, deserialize_with = "serde_units::opt_duration")]
    pub within: Option<Duration>,
    /// ...is on this line throughout `during` (e.g. bulk stays on the direct internet path).
    #[serde(default)]
    pub on: Option<String>,
    /// ...changes line at most this often in any minute of `during` (dampening).
    #[serde(default)]
    pub max_changes_per_minute: Option<u32>,
    /// A named policy change of the timeline was refused (`refused: true`, with
    /// `file:line:col`, version unchanged) or applied (`refused: false`, new version).
    #[serde(default)]
    pub policy: Option<String>,
    #[serde(default)]
    pub refused: Option<bool>,
    /// Every site's published rule set (or only `site`'s) is the same at both times (no
    /// churn).
    #[serde(default)]
    pub rules_unchanged: Option<[String; 2]>,
}

impl Expectation {
    /// Whether this expectation is about wansteer itself (steering, API, rule sets) rather
    /// than what users felt: those are not judged in a baseline run.
    pub fn is_steering(&self) -> bool {
        self.class.is_some() || self.policy.is_some() || self.rules_unchanged.is_some()
    }
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
        let sites: Vec<String> = nodes
            .iter()
            .filter(|n| !n.contains('-') && n.as_str() != "ctl")
            .cloned()
            .collect();
        let steered = scenario.mode() != crate::steer::Mode::Off;
        let mut policy_steps = Vec::new();
        for step in &scenario.timeline {
            let actions = [
                step.impair.is_some(),
                step.clear.is_some(),
                step.controller.is_some(),
                step.restart_agent.is_some(),
                step.stop_agent.is_some(),
                step.start_agent.is_some(),
                step.flap.is_some(),
                step.apply_policy.is_some(),
            ];
            if actions.iter().filter(|a| **a).count() != 1 {
                return Err(fail(
                    "at:",
                    "each timeline step needs exactly one of `impair`, `clear`, `controller`, `restart_agent`, `stop_agent`, `start_agent`, `flap`, `apply_policy`".into(),
                ));
            }
            let line = match (&step.impair, &step.clear, &step.flap) {
                (Some(i), _, _) => Some(&i.line),
                (_, Some(l), _) => Some(l),
                (_, _, Some(f)) => {
                    if f.every < Duration::from_millis(100) || f.until <= step.at {
                        return Err(fail(
                            &f.line,
                            "a flap needs `every` of at least 100ms and `until` after `at`".into(),
                        ));
                    }
                    Some(&f.line)
                }
                _ => None,
            };
            if let Some(line) = line
                && !lines.contains(line)
            {
                return Err(fail(
                    line,
                    format!("unknown line `{line}` (lines: {})", lines.join(", ")),
                ));
            }
            let agent_step = [
                ("restart_agent", &step.restart_agent),
                ("stop_agent", &step.stop_agent),
                ("start_agent", &step.start_agent),
            ]
            .into_iter()
            .find_map(|(key, site)| Some((key, site.as_ref()?)));
            if let Some((key, site)) = agent_step {
                if !sites.contains(site) {
                    return Err(fail(
                        site,
                        format!("unknown site `{site}` (sites: {})", sites.join(", ")),
                    ));
                }
                if !steered {
                    return Err(fail(
                        key,
                        format!("`{key}` needs `wansteer: {{mode: controller|standalone}}`"),
                    ));
                }
            }
            if step.controller.is_some() && scenario.mode() != crate::steer::Mode::Controller {
                return Err(fail(
                    "controller:",
                    "controller steps need `wansteer: {mode: controller}`".into(),
                ));
            }
            if let Some(p) = &step.apply_policy {
                if scenario.mode() != crate::steer::Mode::Controller {
                    return Err(fail(
                        "apply_policy",
                        "`apply_policy` needs `wansteer: {mode: controller}`".into(),
                    ));
                }
                policy_steps.push(p.name.clone());
            }
            if step.at > scenario.duration {
                return Err(fail(
                    "at:",
                    format!("step at {:?} is after the end", step.at),
                ));
            }
        }
        for e in &scenario.expect {
            if e.is_steering() {
                check_steering(e, &sites, &policy_steps).map_err(|(needle, m)| fail(&needle, m))?;
                continue;
            }
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

    /// Judges every expectation against per-second reports of each call, the goodput
    /// (bits/s) of each bulk transfer and what wansteer did (`None` when it was off: the
    /// steering expectations are then left out).
    pub fn judge(
        &self,
        calls: &BTreeMap<String, Vec<IntervalReport>>,
        bulks: &BTreeMap<String, f64>,
        steering: Option<&Observed>,
    ) -> Vec<Judged> {
        self.expect
            .iter()
            .filter_map(|e| match (&e.bulk, e.goodput_above) {
                _ if e.is_steering() => steering.map(|o| judge_steering(e, o)),
                (Some(b), Some(min)) => {
                    let got = bulks.get(b).copied();
                    Some(Judged {
                        text: format!("bulk {b}: goodput above {:.1} Mbit/s", min as f64 / 1e6),
                        passed: got.is_some_and(|g| g > min as f64),
                        measured: got
                            .map_or("did not run".into(), |g| format!("{:.1} Mbit/s", g / 1e6)),
                    })
                }
                _ => Some(judge_one(e, calls)),
            })
            .collect()
    }
}

/// The line `class` takes at `site` after each event that says, in time order.
fn placements<'a>(o: &'a Observed, site: &str, class: &str) -> Vec<(f64, &'a str, &'a SteerEvent)> {
    let mut out: Vec<(f64, &str, &SteerEvent)> = o
        .events
        .iter()
        .filter(|e| e.site == site)
        .filter_map(|e| e.placement.get(class).map(|l| (e.t, l.as_str(), e)))
        .collect();
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

/// The most changes of line in any 60 s (or the whole window if shorter) of `[start, end)`.
pub fn max_changes_per_minute(changes: &[f64], start: f64, end: f64) -> usize {
    let inside: Vec<f64> = changes
        .iter()
        .copied()
        .filter(|t| *t >= start && *t < end)
        .collect();
    (0..inside.len())
        .map(|i| {
            inside[i..]
                .iter()
                .take_while(|t| **t < inside[i] + 60.0)
                .count()
        })
        .max()
        .unwrap_or(0)
}

fn judge_steering(e: &Expectation, o: &Observed) -> Judged {
    let (text, passed, measured) = if let (Some(class), Some(site)) = (&e.class, &e.site) {
        let seen = placements(o, site, class);
        if let Some(line) = &e.on {
            let (start, end) = window(e);
            let text = format!(
                "{class} at {site} is on {line} from {start:.1} s to {}",
                if end == f64::MAX {
                    "the end".to_string()
                } else {
                    format!("{end:.1} s")
                }
            );
            let at_start = seen.iter().rev().find(|(t, _, _)| *t <= start);
            let off = seen
                .iter()
                .find(|(t, l, _)| *t > start && *t < end && l != line);
            match (at_start, off) {
                (None, _) => (text, false, "no placement known at the start".into()),
                (Some((_, l, _)), _) if l != line => (text, false, format!("on {l} at the start")),
                (_, Some((t, l, ev))) => (
                    text,
                    false,
                    format!("on {l} at {t:.2} s ({}: {})", ev.kind, ev.text),
                ),
                _ => (text, true, format!("on {line} throughout")),
            }
        } else if let (Some(line), Some(within)) = (&e.leaves, e.within) {
            let t0 = e.after.unwrap_or_default().as_secs_f64();
            let before = seen.iter().rev().find(|(t, _, _)| *t <= t0);
            let left = seen.iter().find(|(t, l, _)| *t > t0 && l != line);
            let text = format!(
                "{class} at {site} leaves {line} within {:.1} s of {t0:.1} s",
                within.as_secs_f64()
            );
            match (before, left) {
                (Some((_, on, _)), _) if on != line => {
                    (text, false, format!("was not on {line} before (on {on})"))
                }
                (_, Some((t, to, ev))) => {
                    let reaction = t - t0;
                    (
                        text,
                        reaction <= within.as_secs_f64(),
                        format!(
                            "left for {to} after {reaction:.2} s ({}: {})",
                            ev.kind, ev.text
                        ),
                    )
                }
                _ => (text, false, format!("still on {line} at the end")),
            }
        } else {
            let max = e.max_changes_per_minute.unwrap_or(0);
            let (start, end) = window(e);
            let mut changes = Vec::new();
            let mut last: Option<&str> = None;
            for (t, l, _) in &seen {
                if last.is_some_and(|p| p != *l) {
                    changes.push(*t);
                }
                last = Some(l);
            }
            let worst = max_changes_per_minute(&changes, start, end);
            (
                format!("{class} at {site} changes line at most {max} times per minute"),
                worst <= max as usize,
                format!(
                    "{worst} in the worst minute; {} in all, at [{}] s",
                    changes.len(),
                    changes
                        .iter()
                        .map(|t| format!("{t:.1}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        }
    } else if let Some(name) = &e.policy {
        let refused = e.refused.unwrap_or(true);
        let text = if refused {
            format!("policy `{name}` refused with file:line:col, version unchanged")
        } else {
            format!("policy `{name}` applied as a new version")
        };
        match o.policies.iter().find(|p| &p.name == name) {
            None => (text, false, "never sent (controller down?)".to_string()),
            Some(p) => judge_policy(p, refused, text),
        }
    } else if let Some([a, b]) = &e.rules_unchanged {
        let at = |x: &String| {
            let t = crate::units::parse_duration(x).map_or(0.0, |d| d.as_secs_f64());
            o.rules.iter().rev().find(|r| r.t <= t).cloned()
        };
        let text = match &e.site {
            Some(site) => {
                format!("{site}'s rule set at {b} is the one published at {a} (no churn)")
            }
            None => format!("rule sets at {b} are the ones published at {a} (no churn)"),
        };
        match (at(a), at(b)) {
            (Some(x), Some(y))
                if e.site
                    .as_ref()
                    .map_or(!x.published.is_empty(), |s| x.published.contains_key(s)) =>
            {
                let changed: Vec<String> = x
                    .published
                    .iter()
                    .filter(|(site, _)| e.site.as_ref().is_none_or(|only| only == *site))
                    .filter(|(site, id)| y.published.get(*site) != Some(id))
                    .map(|(site, id)| {
                        format!(
                            "{site} {id} → {}",
                            y.published.get(site).map_or("none", String::as_str)
                        )
                    })
                    .collect();
                let short = |m: &BTreeMap<String, String>| {
                    m.iter()
                        .map(|(s, id)| format!("{s} v{}", id.split(':').next().unwrap_or("")))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                if changed.is_empty() {
                    (text, true, format!("unchanged: {}", short(&x.published)))
                } else {
                    (text, false, format!("changed: {}", changed.join("; ")))
                }
            }
            _ => (
                text,
                false,
                "no rule sets seen at one of the times".to_string(),
            ),
        }
    } else {
        ("(no criterion)".into(), false, String::new())
    };
    Judged {
        text,
        passed,
        measured,
    }
}

fn judge_policy(p: &PolicyOutcome, refused: bool, text: String) -> (String, bool, String) {
    let locations: Vec<String> = p.body["diagnostics"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| {
            Some(format!(
                "{} {}",
                d["location"].as_str()?,
                d["message"].as_str().unwrap_or_default()
            ))
        })
        .collect();
    let versions = format!(
        "version {} → {}",
        p.version_before.map_or("?".into(), |v| v.to_string()),
        p.version_after.map_or("?".into(), |v| v.to_string())
    );
    if refused {
        let pointed = !locations.is_empty() && locations.iter().all(|l| points_into(l, &p.file));
        let unchanged = p.version_before.is_some() && p.version_before == p.version_after;
        (
            text,
            (400..500).contains(&p.status) && pointed && unchanged,
            format!(
                "HTTP {}: {}; {versions}",
                p.status,
                if locations.is_empty() {
                    p.body["error"]
                        .as_str()
                        .unwrap_or("no diagnostics")
                        .to_string()
                } else {
                    locations.join("; ")
                }
            ),
        )
    } else {
        let newer = matches!((p.version_before, p.version_after), (Some(a), Some(b)) if b > a);
        (
            text,
            (200..300).contains(&p.status) && newer,
            format!("HTTP {}; {versions}", p.status),
        )
    }
}

/// Whether a diagnostic starts `FILE:LINE:COL` with numbers for line and column.
fn points_into(location: &str, file: &str) -> bool {
    let Some(rest) = location
        .strip_prefix(file)
        .and_then(|r| r.strip_prefix(':'))
    else {
        return false;
    };
    let mut parts = rest.splitn(3, [':', ' ']);
    let line = parts.next().unwrap_or_default();
    let col = parts.next().unwrap_or_default();
    !line.is_empty()
        && !col.is_empty()
        && line.bytes().all(|b| b.is_ascii_digit())
        && col.bytes().all(|b| b.is_ascii_digit())
}

/// Checks a steering expectation; the error names the text to point at.
fn check_steering(
    e: &Expectation,
    sites: &[String],
    policy_steps: &[String],
) -> Result<(), (String, String)> {
    if let Some(class) = &e.class {
        let site = e
            .site
            .as_ref()
            .ok_or((class.clone(), format!("class `{class}`: which `site`?")))?;
        if !sites.contains(site) {
            return Err((
                site.clone(),
                format!("unknown site `{site}` (sites: {})", sites.join(", ")),
            ));
        }
        match (&e.leaves, e.within, e.max_changes_per_minute, &e.on) {
            (Some(_), Some(_), None, None)
            | (None, None, Some(_), None)
            | (None, None, None, Some(_)) => {}
            _ => {
                return Err((
                    class.clone(),
                    "a class expectation needs `leaves` with `within` (and `after`), `max_changes_per_minute`, or `on` (with `during`)".into(),
                ));
            }
        }
    }
    if let Some(p) = &e.policy {
        if !policy_steps.contains(p) {
            return Err((
                p.clone(),
                format!("no `apply_policy` step named `{p}` in the timeline"),
            ));
        }
        if e.refused.is_none() {
            return Err((p.clone(), format!("policy `{p}`: `refused: true|false`?")));
        }
    }
    if let Some([a, b]) = &e.rules_unchanged {
        if let Some(site) = &e.site
            && !sites.contains(site)
        {
            return Err((
                site.clone(),
                format!("unknown site `{site}` (sites: {})", sites.join(", ")),
            ));
        }
        for x in [a, b] {
            crate::units::parse_duration(x).map_err(|err| (x.clone(), err.to_string()))?;
        }
    }
    Ok(())
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
        let judged = s.judge(&calls, &BTreeMap::new(), None);
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
        let judged = s.judge(&calls, &BTreeMap::new(), None);
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
    const STEERED: &str = "name: t
topology: x.yaml
duration: 60s
wansteer: {mode: controller}
traffic:
  - {voice: call, from: br1-pc1, to: dc-dc1}
timeline:
  - {at: 5s, flap: {line: br1-mpls, every: 3s, until: 14s}}
  - {at: 20s, apply_policy: {name: bad, file: bad.yaml}}
  - {at: 30s, controller: kill}
expect:
  - {class: voice, site: br1, leaves: mpls, after: 5s, within: 1s}
  - {class: voice, site: br1, during: [5s, 60s], max_changes_per_minute: 1}
  - {policy: bad, refused: true}
  - {rules_unchanged: [4s, 50s]}
  - {voice: call, loss_below: 1%}
";

    fn sites_nodes() -> Vec<String> {
        vec![
            "br1".into(),
            "br2".into(),
            "dc".into(),
            "br1-pc1".into(),
            "dc-dc1".into(),
        ]
    }

    fn placed(t: f64, kind: &str, voice: &str) -> SteerEvent {
        SteerEvent {
            t,
            site: "br1".into(),
            kind: kind.into(),
            text: format!("voice → {voice}"),
            placement: BTreeMap::from([("voice".to_string(), voice.to_string())]),
        }
    }

    fn refused(status: u16, location: &str, after: u64) -> PolicyOutcome {
        PolicyOutcome {
            name: "bad".into(),
            file: "bad.yaml".into(),
            t: 20.0,
            status,
            body: serde_json::json!({
                "error": "invalid policy",
                "diagnostics": [{"location": location, "message": "not a duration"}]
            }),
            version_before: Some(1),
            version_after: Some(after),
        }
    }

    fn rules(t: f64, version: &str) -> crate::steer::RuleSnapshot {
        crate::steer::RuleSnapshot {
            t,
            published: BTreeMap::from([
                ("br1".to_string(), version.to_string()),
                ("br2".to_string(), "1:cc".to_string()),
            ]),
            applied: BTreeMap::new(),
        }
    }

    #[test]
    fn on_expectation_holds_only_when_the_class_stays_on_the_line() {
        let text = STEERED.replace(
            "  - {voice: call, loss_below: 1%}\n",
            "  - {class: voice, site: br1, on: mpls, during: [0s, 5s]}\n",
        );
        let s = Scenario::parse(&text, "t.yaml", &lines(), &sites_nodes()).unwrap();
        let judge = |events: Vec<SteerEvent>| {
            let observed = Observed {
                events,
                ..Observed::default()
            };
            let judged = s.judge(&BTreeMap::new(), &BTreeMap::new(), Some(&observed));
            let last = judged.last().unwrap().clone();
            (last.passed, last.measured)
        };
        assert_eq!(
            judge(vec![
                placed(-1.0, "applied", "mpls"),
                placed(6.0, "move", "inet")
            ]),
            (true, "on mpls throughout".to_string())
        );
        let (passed, measured) = judge(vec![
            placed(-1.0, "applied", "mpls"),
            placed(2.0, "failover", "inet"),
        ]);
        assert!(
            !passed && measured.starts_with("on inet at 2.00 s"),
            "{measured}"
        );
        assert!(!judge(vec![placed(-1.0, "applied", "inet")]).0);
        assert!(
            !judge(vec![placed(1.0, "applied", "mpls")]).0,
            "unknown at the start"
        );
        let without_window = STEERED.replace(
            "  - {voice: call, loss_below: 1%}\n",
            "  - {class: voice, site: br1, on: mpls, within: 1s}\n",
        );
        assert!(Scenario::parse(&without_window, "t.yaml", &lines(), &sites_nodes()).is_err());
    }

    #[test]
    fn flaps_expand_into_downs_and_ups_ending_up() {
        let s = Scenario::parse(STEERED, "t.yaml", &lines(), &sites_nodes()).unwrap();
        let downs: Vec<(f64, Option<bool>)> = s
            .actions()
            .into_iter()
            .filter_map(|(at, a)| match a {
                Action::Impair(i) => Some((at.as_secs_f64(), i.down)),
                Action::Clear(_) => Some((at.as_secs_f64(), None)),
                _ => None,
            })
            .collect();
        assert_eq!(
            downs,
            vec![
                (5.0, Some(true)),
                (8.0, Some(false)),
                (11.0, Some(true)),
                (14.0, None)
            ]
        );
    }

    #[test]
    fn steering_expectations_judge_what_wansteer_did() {
        let s = Scenario::parse(STEERED, "t.yaml", &lines(), &sites_nodes()).unwrap();
        let calls = BTreeMap::from([(
            "call".to_string(),
            (0..60)
                .map(|t| second(t as f64, 0, 4.4))
                .collect::<Vec<_>>(),
        )]);
        let observed = Observed {
            events: vec![
                placed(-1.0, "applied", "mpls"),
                placed(5.4, "failover", "inet"),
                placed(8.0, "applied", "inet"),
            ],
            rules: vec![rules(3.9, "3:aa"), rules(49.5, "3:aa")],
            policies: vec![refused(422, "bad.yaml:40:20", 1)],
        };
        let judged = s.judge(&calls, &BTreeMap::new(), Some(&observed));
        assert!(judged.iter().all(|j| j.passed), "{judged:#?}");
        assert!(judged[0].measured.starts_with("left for inet after 0.40 s"));
        assert!(judged[2].measured.contains("bad.yaml:40:20"));

        // Slow, flapping, accepted-with-a-new-version and churning: every one fails.
        let observed = Observed {
            events: vec![
                placed(-1.0, "applied", "mpls"),
                placed(6.5, "move", "inet"),
                placed(20.0, "failback", "mpls"),
                placed(40.0, "move", "inet"),
            ],
            rules: vec![rules(3.9, "3:aa"), rules(49.5, "4:bb")],
            policies: vec![refused(422, "bad.yaml:40:20", 2)],
        };
        let judged = s.judge(&calls, &BTreeMap::new(), Some(&observed));
        assert_eq!(
            judged.iter().map(|j| j.passed).collect::<Vec<_>>(),
            vec![false, false, false, false, true],
            "{judged:#?}"
        );
        assert_eq!(
            judged[1].measured,
            "3 in the worst minute; 3 in all, at [6.5, 20.0, 40.0] s"
        );
        assert_eq!(judged[3].measured, "changed: br1 3:aa → 4:bb");
        let scoped = STEERED.replace(
            "{rules_unchanged: [4s, 50s]}",
            "{rules_unchanged: [4s, 50s], site: br2}",
        );
        let s2 = Scenario::parse(&scoped, "t.yaml", &lines(), &sites_nodes()).unwrap();
        assert!(s2.judge(&calls, &BTreeMap::new(), Some(&observed))[3].passed);
        // A refusal without a location in the file is not good enough.
        let no_location = Observed {
            policies: vec![refused(422, "policy.yaml:40:20", 1)],
            ..Observed::default()
        };
        assert!(!s.judge(&calls, &BTreeMap::new(), Some(&no_location))[2].passed);
        // With steering off only what users felt is judged.
        assert_eq!(s.judge(&calls, &BTreeMap::new(), None).len(), 1);
    }

    #[test]
    fn the_worst_minute_slides() {
        assert_eq!(
            max_changes_per_minute(&[1.0, 50.0, 70.0, 100.0], 0.0, 200.0),
            3
        );
        assert_eq!(max_changes_per_minute(&[1.0, 62.0, 124.0], 0.0, 200.0), 1);
        assert_eq!(max_changes_per_minute(&[1.0, 2.0], 1.5, 200.0), 1);
        assert_eq!(max_changes_per_minute(&[], 0.0, 200.0), 0);
    }

    #[test]
    fn steering_steps_need_wansteer_and_known_names() {
        let off = STEERED.replace("wansteer: {mode: controller}\n", "");
        let err = Scenario::parse(&off, "t.yaml", &lines(), &sites_nodes()).unwrap_err();
        assert!(
            err.message.contains("needs `wansteer: {mode: controller}`"),
            "{err}"
        );
        let standalone = STEERED.replace("mode: controller", "mode: standalone");
        let err = Scenario::parse(&standalone, "t.yaml", &lines(), &sites_nodes()).unwrap_err();
        assert!(err.message.contains("mode: controller"), "{err}");
        let unknown = STEERED.replace("{policy: bad,", "{policy: worse,");
        let err = Scenario::parse(&unknown, "t.yaml", &lines(), &sites_nodes()).unwrap_err();
        assert_eq!((err.line, err.column), (14, 14), "{err}");
        assert!(err.message.contains("no `apply_policy` step named `worse`"));
        let site = STEERED.replace("site: br1, leaves", "site: br9, leaves");
        let err = Scenario::parse(&site, "t.yaml", &lines(), &sites_nodes()).unwrap_err();
        assert!(err.message.starts_with("unknown site `br9`"), "{err}");
        let half = STEERED.replace(", within: 1s}", "}");
        assert!(Scenario::parse(&half, "t.yaml", &lines(), &sites_nodes()).is_err());
    }
}
