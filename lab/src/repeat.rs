//! Repeated runs of one scenario, with wansteer and without (`lab run --repeat N
//! --compare`): per call and phase, the median, lowest and highest of voice loss, longest
//! gap and MOS over the runs. One run says little on a shared machine; the spread says how
//! much a figure can be trusted. Pure: finished [`Report`]s in, a [`RepeatSummary`] out.

use std::fmt::Write as _;

use serde::Serialize;

use crate::accuracy::median;
use crate::report::{PhaseFigures, Report, figures};

/// Median, lowest and highest of one figure over the runs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    /// `None` when there are no values.
    pub fn of(values: &[f64]) -> Option<Spread> {
        Some(Spread {
            median: median(values.to_vec())?,
            min: values.iter().copied().fold(f64::INFINITY, f64::min),
            max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        })
    }
}

/// What voice felt in one phase over several runs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FigureSpread {
    /// Runs that had per-second reports in the phase.
    pub runs: usize,
    /// Lost / expected, 0..1.
    pub loss: Spread,
    pub longest_gap_ms: Spread,
    /// Each run's mean MOS over the phase's seconds.
    pub mos_mean: Spread,
    /// Each run's lowest one-second MOS in the phase.
    pub mos_min: Spread,
    /// Each run's worst one-second mean latency (runs where something arrived).
    pub latency_worst_ms: Option<Spread>,
}

impl FigureSpread {
    fn of(per_run: &[PhaseFigures]) -> Option<FigureSpread> {
        let pick = |f: fn(&PhaseFigures) -> f64| per_run.iter().map(f).collect::<Vec<_>>();
        Some(FigureSpread {
            runs: per_run.len(),
            loss: Spread::of(&pick(|f| f.loss))?,
            longest_gap_ms: Spread::of(&pick(|f| f.longest_gap_ms))?,
            mos_mean: Spread::of(&pick(|f| f.mos_mean))?,
            mos_min: Spread::of(&pick(|f| f.mos_min))?,
            latency_worst_ms: Spread::of(
                &per_run
                    .iter()
                    .filter_map(|f| f.latency_worst_ms)
                    .collect::<Vec<_>>(),
            ),
        })
    }
}

/// One call in one phase, over the runs with wansteer and those without.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PhaseSpread {
    pub call: String,
    pub phase: String,
    pub start: f64,
    pub end: f64,
    pub with: Option<FigureSpread>,
    pub without: Option<FigureSpread>,
}

/// The runs of one scenario, summarized.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RepeatSummary {
    pub scenario: String,
    pub runs_with: usize,
    pub runs_without: usize,
    /// Runs whose expectations all passed.
    pub passed_with: usize,
    pub passed_without: usize,
    /// Each run's prefix, for finding its report.
    pub prefixes_with: Vec<String>,
    pub prefixes_without: Vec<String>,
    /// Runs that could not be played, left out of the figures.
    pub errors: Vec<String>,
    pub phases: Vec<PhaseSpread>,
}

/// More impairment windows than this (a flapping line) are summarized as one "during"
/// phase instead of one row each.
const MAX_WINDOW_ROWS: usize = 4;

/// The phases compared: before, each impairment window (or, for many windows, one span from
/// the first to the last), after, and the whole run. Taken from the first report: every run
/// plays the same timeline.
pub fn phases(report: &Report) -> Vec<(String, f64, f64)> {
    let mut phases = report.phases();
    let windows = phases.len().saturating_sub(2);
    if windows > MAX_WINDOW_ROWS {
        let first = report
            .impairments
            .iter()
            .map(|w| w.start)
            .fold(f64::INFINITY, f64::min)
            .round();
        let last = report
            .impairments
            .iter()
            .map(|w| w.end)
            .fold(0.0, f64::max)
            .round();
        phases.retain(|(label, ..)| label == "before" || label == "after");
        let at = phases.iter().position(|(l, ..)| l == "after");
        let during = (
            format!(
                "during {} impairment windows ({first:.0}–{last:.0} s)",
                windows
            ),
            first,
            last,
        );
        match at {
            Some(i) => phases.insert(i, during),
            None => phases.push(during),
        }
    }
    phases.push(("whole run".to_string(), 0.0, report.duration_s));
    phases
}

/// Summarizes runs with wansteer (`with`) and without (`without`); either may be empty.
pub fn summarize(with: &[Report], without: &[Report]) -> Option<RepeatSummary> {
    let first = with.first().or(without.first())?;
    let spans = phases(first);
    let mut out = Vec::new();
    for call in first.voice.keys() {
        for (phase, start, end) in &spans {
            let spread = |runs: &[Report]| {
                let per_run: Vec<PhaseFigures> = runs
                    .iter()
                    .filter_map(|r| r.voice.get(call))
                    .filter_map(|c| figures(&c.seconds, *start, *end))
                    .collect();
                FigureSpread::of(&per_run)
            };
            out.push(PhaseSpread {
                call: call.clone(),
                phase: phase.clone(),
                start: *start,
                end: *end,
                with: spread(with),
                without: spread(without),
            });
        }
    }
    Some(RepeatSummary {
        scenario: first.scenario.clone(),
        runs_with: with.len(),
        runs_without: without.len(),
        passed_with: with.iter().filter(|r| r.passed).count(),
        passed_without: without.iter().filter(|r| r.passed).count(),
        prefixes_with: with.iter().map(|r| r.prefix.clone()).collect(),
        prefixes_without: without.iter().map(|r| r.prefix.clone()).collect(),
        errors: Vec::new(),
        phases: out,
    })
}

impl RepeatSummary {
    /// A markdown table: each cell is `median (min–max)`, with wansteer / without.
    pub fn to_markdown(&self) -> String {
        let mut md = String::new();
        let _ = writeln!(
            md,
            "Scenario `{}`: {} runs with wansteer ({} passed every expectation), {} without (steering off: static routes over each branch's first line, no QoS). Cells: median (min–max) over the runs.\n",
            self.scenario, self.runs_with, self.passed_with, self.runs_without
        );
        for e in &self.errors {
            let _ = writeln!(md, "Run not played, left out: {e}\n");
        }
        let _ = writeln!(
            md,
            "| call | phase | voice loss with / without | longest gap with / without | worst second's latency with / without | mean MOS with / without | lowest MOS with / without |\n|---|---|---|---|---|---|---|"
        );
        let cell = |f: &Option<FigureSpread>, pick: fn(&FigureSpread) -> Spread, unit: Unit| {
            f.as_ref().map_or("-".to_string(), |f| unit.spread(pick(f)))
        };
        let latency = |f: &Option<FigureSpread>| {
            f.as_ref()
                .and_then(|f| f.latency_worst_ms)
                .map_or("-".to_string(), |s| Unit::LatencyMs.spread(s))
        };
        for p in &self.phases {
            let _ = writeln!(
                md,
                "| {} | {} | {} / {} | {} / {} | {} / {} | {} / {} | {} / {} |",
                p.call,
                p.phase,
                cell(&p.with, |f| f.loss, Unit::Percent),
                cell(&p.without, |f| f.loss, Unit::Percent),
                cell(&p.with, |f| f.longest_gap_ms, Unit::Ms),
                cell(&p.without, |f| f.longest_gap_ms, Unit::Ms),
                latency(&p.with),
                latency(&p.without),
                cell(&p.with, |f| f.mos_mean, Unit::Mos),
                cell(&p.without, |f| f.mos_mean, Unit::Mos),
                cell(&p.with, |f| f.mos_min, Unit::Mos),
                cell(&p.without, |f| f.mos_min, Unit::Mos),
            );
        }
        md
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("serializable")
    }
}

#[derive(Clone, Copy)]
enum Unit {
    Percent,
    Ms,
    LatencyMs,
    Mos,
}

impl Unit {
    fn one(self, v: f64) -> String {
        match self {
            Unit::Percent => format!("{:.2}%", v * 100.0),
            Unit::Ms => format!("{v:.0} ms"),
            Unit::LatencyMs => format!("{v:.1} ms"),
            Unit::Mos => format!("{v:.2}"),
        }
    }

    fn bare(self, v: f64) -> String {
        match self {
            Unit::Percent => format!("{:.2}", v * 100.0),
            Unit::Ms => format!("{v:.0}"),
            Unit::LatencyMs => format!("{v:.1}"),
            Unit::Mos => format!("{v:.2}"),
        }
    }

    /// `1.40% (0.80–2.10)`; just the median when every run agrees.
    fn spread(self, s: Spread) -> String {
        if self.bare(s.min) == self.bare(s.max) {
            self.one(s.median)
        } else {
            format!(
                "{} ({}–{})",
                self.one(s.median),
                self.bare(s.min),
                self.bare(s.max)
            )
        }
    }
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::report::{Event, one_call_report};
    use crate::voice::IntervalReport;

    /// A 6 s run: `lost` packets of 50 lost in each of seconds 2 and 3 (the impairment).
    fn run(lost: u64, passed: bool, events: &[(f64, &str, &str)]) -> Report {
        let seconds = (0..6)
            .map(|t| {
                let lost = if (2..4).contains(&t) { lost } else { 0 };
                IntervalReport {
                    t: t as f64,
                    received: 50 - lost,
                    expected: 50,
                    lost,
                    loss: lost as f64 / 50.0,
                    longest_gap_ms: 20.0 + 5.0 * lost as f64,
                    latency_ms: Some(10.0),
                    jitter_ms: 0.1,
                    mos: 4.4 - lost as f64 * 0.1,
                    gaps: vec![],
                }
            })
            .collect();
        let events: Vec<Event> = events
            .iter()
            .map(|(t, kind, detail)| Event {
                t: *t,
                kind: kind.to_string(),
                detail: detail.to_string(),
            })
            .collect();
        Report {
            prefix: format!("wl{lost:04}"),
            ..one_call_report(seconds, events, passed)
        }
    }

    const LOSS: &[(f64, &str, &str)] = &[
        (2.0, "impair", "br1-mpls: loss 5%"),
        (4.0, "clear", "br1-mpls: back"),
    ];

    #[test]
    fn medians_and_extremes_per_phase_with_and_without() {
        let with = [run(0, true, LOSS), run(2, true, LOSS), run(1, false, LOSS)];
        let without = [
            run(5, false, LOSS),
            run(3, false, LOSS),
            run(4, false, LOSS),
        ];
        let s = summarize(&with, &without).unwrap();
        assert_eq!((s.runs_with, s.passed_with, s.passed_without), (3, 2, 0));
        let during = s
            .phases
            .iter()
            .find(|p| p.phase.starts_with("br1-mpls"))
            .unwrap();
        let (w, wo) = (during.with.unwrap(), during.without.unwrap());
        assert_eq!(w.runs, 3);
        assert_eq!(
            w.loss,
            Spread {
                median: 0.02,
                min: 0.0,
                max: 0.04
            }
        );
        assert_eq!(
            wo.loss,
            Spread {
                median: 0.08,
                min: 0.06,
                max: 0.1
            }
        );
        assert_eq!(wo.longest_gap_ms.median, 40.0);
        assert!((wo.mos_min.median - 4.0).abs() < 1e-9);
        let before = s.phases.iter().find(|p| p.phase == "before").unwrap();
        assert_eq!(before.with.unwrap().loss.max, 0.0);
        assert!(s.phases.iter().any(|p| p.phase == "whole run"));
        let md = s.to_markdown();
        assert!(
            md.contains("| 2.00% (0.00–4.00) / 8.00% (6.00–10.00) |"),
            "{md}"
        );
        assert_eq!(w.latency_worst_ms.unwrap().median, 10.0);
        assert!(md.contains("| 10.0 ms / 10.0 ms |"), "{md}");
        assert!(
            md.contains("3 runs with wansteer (2 passed every expectation)"),
            "{md}"
        );
    }

    #[test]
    fn a_flapping_line_is_one_during_phase() {
        let flaps: Vec<(f64, &str, &str)> = (0..6)
            .map(|i| {
                let t = 1.0 + i as f64 * 0.5;
                if i % 2 == 0 {
                    (t, "impair", "br1-mpls: down")
                } else {
                    (t, "clear", "br1-mpls: back")
                }
            })
            .chain((0..6).map(|i| (1.2 + i as f64 * 0.5, "impair", "br1-lte: loss 1%")))
            .collect();
        let r = run(1, true, &flaps);
        let labels: Vec<String> = phases(&r).into_iter().map(|p| p.0).collect();
        assert_eq!(labels[0], "before");
        assert!(labels[1].starts_with("during "), "{labels:?}");
        assert_eq!(labels.last().unwrap(), "whole run");
        assert!(labels.len() <= 4, "{labels:?}");
    }

    #[test]
    fn nothing_to_summarize_without_runs() {
        assert_eq!(summarize(&[], &[]), None);
        let only_baseline = summarize(&[], &[run(1, false, LOSS)]).unwrap();
        assert!(only_baseline.phases.iter().all(|p| p.with.is_none()));
    }
}
