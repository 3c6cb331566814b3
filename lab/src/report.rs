//! Scenario reports: `report.json` for tools, `report.md` for people, `plot.svg` to look at.
//! Pure functions from a finished run to text.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::emulator::LineStatus;
use crate::scenario::Judged;
use crate::voice::{IntervalReport, StreamSummary};

/// Something that happened during a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// Seconds since the scenario started.
    pub t: f64,
    pub kind: String,
    pub detail: String,
}

/// One voice call's record.
#[derive(Debug, Clone, Serialize)]
pub struct CallRecord {
    pub from: String,
    pub to: String,
    pub seconds: Vec<IntervalReport>,
    pub summary: Option<StreamSummary>,
}

/// An impairment in force on a line between two times.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImpairmentWindow {
    pub line: String,
    pub start: f64,
    pub end: f64,
    pub detail: String,
}

/// Everything a run produced.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: String,
    pub topology: String,
    pub prefix: String,
    pub duration_s: f64,
    pub passed: bool,
    pub expectations: Vec<Judged>,
    pub events: Vec<Event>,
    pub impairments: Vec<ImpairmentWindow>,
    pub voice: BTreeMap<String, CallRecord>,
    /// Goodput of each bulk transfer, bits per second.
    pub bulk: BTreeMap<String, f64>,
    /// Each line's emulator counters at the end: the ground truth.
    pub lines: Vec<LineStatus>,
    /// How wansteer ran: controller, standalone, or off (the baseline).
    pub mode: crate::steer::Mode,
    /// What wansteer did: agent events with placements, rule sets, policy answers.
    pub steering: crate::steer::Observed,
    /// The same scenario with steering off, side by side (`lab run --compare`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comparison: Option<Comparison>,
}

/// What voice felt in one phase of the run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PhaseFigures {
    /// Lost / expected packets, 0..1.
    pub loss: f64,
    pub longest_gap_ms: f64,
    /// The worst second's mean one-way latency (none if nothing arrived).
    pub latency_worst_ms: Option<f64>,
    pub mos_mean: f64,
    pub mos_min: f64,
}

/// One call in one phase, with wansteer and without.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PhaseComparison {
    pub call: String,
    pub phase: String,
    pub with: Option<PhaseFigures>,
    pub without: Option<PhaseFigures>,
}

/// A run with wansteer against the baseline run of the same scenario.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    pub baseline_prefix: String,
    pub baseline_expectations: Vec<Judged>,
    pub phases: Vec<PhaseComparison>,
}

/// Loss, longest gap and MOS of the per-second reports in `[start, end)`.
pub fn figures(seconds: &[IntervalReport], start: f64, end: f64) -> Option<PhaseFigures> {
    let secs: Vec<&IntervalReport> = seconds
        .iter()
        .filter(|r| r.t >= start && r.t < end)
        .collect();
    if secs.is_empty() {
        return None;
    }
    let expected: u64 = secs.iter().map(|r| r.expected).sum();
    let lost: u64 = secs.iter().map(|r| r.lost).sum();
    Some(PhaseFigures {
        loss: if expected == 0 {
            1.0
        } else {
            lost as f64 / expected as f64
        },
        longest_gap_ms: longest_silence_ms(seconds, start, end),
        latency_worst_ms: secs.iter().filter_map(|r| r.latency_ms).reduce(f64::max),
        mos_mean: secs.iter().map(|r| r.mos).sum::<f64>() / secs.len() as f64,
        mos_min: secs.iter().map(|r| r.mos).fold(f64::INFINITY, f64::min),
    })
}

/// Gaps at most this long are not recorded with their start, only in per-second figures
/// (the voice receiver's threshold).
const UNRECORDED_GAP_MS: f64 = 60.0;

/// The longest silence of the voice stream in `[start, end)`, ms. A recorded gap counts
/// whole in the window that holds its middle (an outage that starts a few ms before a phase
/// ends belongs to the next phase, not to both) and otherwise only for its part inside the
/// window. Runs of seconds without a packet stand for a silence the stream never came back
/// from; shorter gaps come from the per-second figures of seconds where no recorded gap
/// ended (those seconds' figures hold the recorded gap itself).
pub fn longest_silence_ms(seconds: &[IntervalReport], start: f64, end: f64) -> f64 {
    let recorded = seconds.iter().flat_map(|r| &r.gaps).map(|g| {
        let (from, to) = (g.start, g.start + g.ms / 1e3);
        let middle = (from + to) / 2.0;
        if middle >= start && middle < end {
            g.ms
        } else {
            ((to.min(end) - from.max(start)) * 1e3).max(0.0)
        }
    });
    let inside = || seconds.iter().filter(|r| r.t >= start && r.t < end);
    let mut silent_runs = Vec::new();
    let mut run = 0.0;
    for r in inside() {
        if r.received == 0 {
            run += (r.t + 1.0).min(end) - r.t;
        } else {
            silent_runs.push(run * 1e3);
            run = 0.0;
        }
    }
    silent_runs.push(run * 1e3);
    let short = inside()
        .filter(|r| r.gaps.is_empty())
        .map(|r| r.longest_gap_ms.min(UNRECORDED_GAP_MS));
    recorded.chain(silent_runs).chain(short).fold(0.0, f64::max)
}

/// Side by side, per call and phase (the phases of the run with wansteer; both runs played
/// the same timeline).
pub fn compare(with: &Report, without: &Report) -> Comparison {
    let mut phases = Vec::new();
    let mut spans = with.phases();
    spans.push(("whole run".to_string(), 0.0, with.duration_s));
    for (call, record) in &with.voice {
        for (phase, start, end) in &spans {
            phases.push(PhaseComparison {
                call: call.clone(),
                phase: phase.clone(),
                with: figures(&record.seconds, *start, *end),
                without: without
                    .voice
                    .get(call)
                    .and_then(|r| figures(&r.seconds, *start, *end)),
            });
        }
    }
    Comparison {
        baseline_prefix: without.prefix.clone(),
        baseline_expectations: without.expectations.clone(),
        phases,
    }
}

impl Report {
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("serializable")
    }

    pub fn to_markdown(&self) -> String {
        let mut md = String::new();
        let verdict = if self.passed { "PASSED" } else { "FAILED" };
        let _ = writeln!(md, "# Scenario `{}`: {verdict}\n", self.scenario);
        let _ = writeln!(
            md,
            "Topology `{}` (run `{}`), {:.0} s, wansteer {}.\n\n![plot](plot.svg)\n",
            self.topology,
            self.prefix,
            self.duration_s,
            match self.mode {
                crate::steer::Mode::Controller => "with its controller",
                crate::steer::Mode::Standalone => "agents standalone",
                crate::steer::Mode::Off =>
                    "off (baseline: static routes, no QoS; steering expectations not judged)",
            }
        );
        let _ = writeln!(
            md,
            "## Expectations\n\n| | expectation | measured |\n|---|---|---|"
        );
        for e in &self.expectations {
            let mark = if e.passed { "✅" } else { "❌" };
            let _ = writeln!(md, "| {mark} | {} | {} |", e.text, e.measured);
        }
        if let Some(c) = &self.comparison {
            let _ = writeln!(
                md,
                "\n## With and without wansteer\n\nThe same timeline with steering off (run `{}`: static routes over each branch's first line, no QoS).\n\n| call | phase | loss with / without | longest gap with / without | worst second's latency with / without | mean MOS with / without | lowest MOS with / without |\n|---|---|---|---|---|---|---|",
                c.baseline_prefix
            );
            let latency = |f: &PhaseFigures| {
                f.latency_worst_ms
                    .map_or("-".to_string(), |l| format!("{l:.1} ms"))
            };
            let cell = |f: &Option<PhaseFigures>, pick: &dyn Fn(&PhaseFigures) -> String| {
                f.as_ref().map_or("-".to_string(), pick)
            };
            for p in &c.phases {
                let _ = writeln!(
                    md,
                    "| {} | {} | {} / {} | {} / {} | {} / {} | {} / {} | {} / {} |",
                    p.call,
                    p.phase,
                    cell(&p.with, &|f| format!("{:.2}%", f.loss * 100.0)),
                    cell(&p.without, &|f| format!("{:.2}%", f.loss * 100.0)),
                    cell(&p.with, &|f| format!("{:.0} ms", f.longest_gap_ms)),
                    cell(&p.without, &|f| format!("{:.0} ms", f.longest_gap_ms)),
                    cell(&p.with, &latency),
                    cell(&p.without, &latency),
                    cell(&p.with, &|f| format!("{:.2}", f.mos_mean)),
                    cell(&p.without, &|f| format!("{:.2}", f.mos_mean)),
                    cell(&p.with, &|f| format!("{:.2}", f.mos_min)),
                    cell(&p.without, &|f| format!("{:.2}", f.mos_min)),
                );
            }
            let _ = writeln!(
                md,
                "\nBaseline expectations (what users felt without wansteer):\n"
            );
            for e in &c.baseline_expectations {
                let mark = if e.passed { "✅" } else { "❌" };
                let _ = writeln!(md, "- {mark} {} — {}", e.text, e.measured);
            }
        }
        let _ = writeln!(md, "\n## Timeline\n\n| t | event | detail |\n|---|---|---|");
        for e in &self.events {
            let _ = writeln!(md, "| {:.2} s | {} | {} |", e.t, e.kind, e.detail);
        }
        for (name, call) in &self.voice {
            let _ = writeln!(md, "\n## Voice `{name}` ({} → {})\n", call.from, call.to);
            let phases = self.phases();
            let _ = writeln!(
                md,
                "| phase | loss | longest gap | mean latency | lowest MOS |\n|---|---|---|---|---|"
            );
            for (label, start, end) in phases {
                let secs: Vec<&IntervalReport> = call
                    .seconds
                    .iter()
                    .filter(|r| r.t >= start && r.t < end)
                    .collect();
                if secs.is_empty() {
                    continue;
                }
                let expected: u64 = secs.iter().map(|r| r.expected).sum();
                let lost: u64 = secs.iter().map(|r| r.lost).sum();
                let gap = secs.iter().map(|r| r.longest_gap_ms).fold(0.0, f64::max);
                let lat: Vec<f64> = secs.iter().filter_map(|r| r.latency_ms).collect();
                let mos = secs.iter().map(|r| r.mos).fold(f64::INFINITY, f64::min);
                let _ = writeln!(
                    md,
                    "| {label} | {:.2}% | {gap:.0} ms | {} | {mos:.2} |",
                    if expected == 0 {
                        100.0
                    } else {
                        lost as f64 * 100.0 / expected as f64
                    },
                    if lat.is_empty() {
                        "-".to_string()
                    } else {
                        format!("{:.1} ms", lat.iter().sum::<f64>() / lat.len() as f64)
                    }
                );
            }
            if let Some(s) = &call.summary {
                let _ = writeln!(
                    md,
                    "\nWhole call: {} of {} packets, loss {:.2}%, longest gap {:.0} ms, MOS {:.2}.",
                    s.received,
                    s.expected,
                    s.loss * 100.0,
                    s.longest_gap_ms,
                    s.mos
                );
            }
        }
        let _ = writeln!(
            md,
            "\n## Emulator counters (ground truth)\n\n| line | dir | received | sent | delayed | queued | dropped loss | dropped queue | dropped outage |\n|---|---|---|---|---|---|---|---|---|"
        );
        for l in &self.lines {
            for (dir, d) in [("up", &l.up), ("down", &l.down)] {
                let c = &d.counters;
                let _ = writeln!(
                    md,
                    "| {} | {dir} | {} | {} | {} | {} | {} | {} | {} |",
                    l.line,
                    c.received,
                    c.sent,
                    c.delayed,
                    c.queued,
                    c.dropped_loss,
                    c.dropped_queue,
                    c.dropped_outage
                );
            }
        }
        md
    }

    /// "before", each impairment window, "after": the phases a reader compares.
    pub fn phases(&self) -> Vec<(String, f64, f64)> {
        let mut phases = Vec::new();
        let first = self
            .impairments
            .iter()
            .map(|w| w.start)
            .fold(self.duration_s, f64::min);
        let last = self.impairments.iter().map(|w| w.end).fold(0.0, f64::max);
        // Steps land a few ms after whole seconds; per-second reports start on whole seconds.
        if self.impairments.is_empty() {
            return vec![("whole run".to_string(), 0.0, self.duration_s)];
        }
        phases.push(("before".to_string(), 0.0, first.round()));
        for w in &self.impairments {
            phases.push((
                format!("{} {} ({:.0}–{:.0} s)", w.line, w.detail, w.start, w.end),
                w.start.round(),
                w.end.round(),
            ));
        }
        if last.round() < self.duration_s {
            phases.push(("after".to_string(), last.round(), self.duration_s));
        }
        phases
    }

    /// Per call: latency, loss and MOS over time; impairment windows shaded, events marked.
    pub fn to_svg(&self) -> String {
        let width = 900.0;
        let panel_h = 110.0;
        let left = 60.0;
        let right = 20.0;
        let plot_w = width - left - right;
        let panels = ["latency ms", "loss %", "MOS"];
        let calls: Vec<(&String, &CallRecord)> = self.voice.iter().collect();
        let height =
            40.0 + calls.len().max(1) as f64 * (panels.len() as f64 * (panel_h + 25.0) + 30.0);
        let x = |t: f64| left + plot_w * (t / self.duration_s.max(1.0)).clamp(0.0, 1.0);
        let mut svg = String::new();
        let _ = writeln!(
            svg,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">"#
        );
        let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
        let _ = writeln!(
            svg,
            r#"<text x="{left}" y="20" font-size="14">Scenario {} — {}</text>"#,
            xml(&self.scenario),
            if self.passed { "passed" } else { "FAILED" }
        );
        let mut y0 = 40.0;
        for (name, call) in calls {
            let _ = writeln!(
                svg,
                r#"<text x="{left}" y="{}" font-size="12">voice {} ({} → {})</text>"#,
                y0 + 12.0,
                xml(name),
                xml(&call.from),
                xml(&call.to)
            );
            y0 += 20.0;
            for (p, label) in panels.iter().enumerate() {
                let top = y0 + p as f64 * (panel_h + 25.0);
                let values: Vec<(f64, Option<f64>)> = call
                    .seconds
                    .iter()
                    .map(|r| {
                        let v = match p {
                            0 => r.latency_ms,
                            1 => Some(r.loss * 100.0),
                            _ => Some(r.mos),
                        };
                        (r.t + 0.5, v)
                    })
                    .collect();
                let max = match p {
                    2 => 5.0,
                    _ => values.iter().filter_map(|v| v.1).fold(1.0, f64::max) * 1.15,
                };
                let y = |v: f64| top + panel_h - panel_h * (v / max).clamp(0.0, 1.0);
                for w in &self.impairments {
                    let _ = writeln!(
                        svg,
                        r##"<rect x="{:.1}" y="{top}" width="{:.1}" height="{panel_h}" fill="#f4a261" fill-opacity="0.25"><title>{} {}</title></rect>"##,
                        x(w.start),
                        (x(w.end) - x(w.start)).max(1.0),
                        xml(&w.line),
                        xml(&w.detail)
                    );
                }
                let _ = writeln!(
                    svg,
                    r##"<rect x="{left}" y="{top}" width="{plot_w}" height="{panel_h}" fill="none" stroke="#888"/>"##
                );
                let _ = writeln!(svg, r#"<text x="4" y="{:.1}">{label}</text>"#, top + 12.0);
                let _ = writeln!(
                    svg,
                    r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{max:.1}</text>"#,
                    left - 4.0,
                    top + 10.0
                );
                let _ = writeln!(
                    svg,
                    r#"<text x="{:.1}" y="{:.1}" text-anchor="end">0</text>"#,
                    left - 4.0,
                    top + panel_h
                );
                // Seconds without a value (nothing arrived) break the line.
                for segment in values.split(|(_, v)| v.is_none()) {
                    let points: Vec<String> = segment
                        .iter()
                        .filter_map(|(t, v)| v.map(|v| format!("{:.1},{:.1}", x(*t), y(v))))
                        .collect();
                    if points.is_empty() {
                        continue;
                    }
                    let _ = writeln!(
                        svg,
                        r##"<polyline points="{}" fill="none" stroke="#1d3557" stroke-width="1.5"/>"##,
                        points.join(" ")
                    );
                }
                for e in self.events.iter().filter(|e| e.kind != "expectation") {
                    let _ = writeln!(
                        svg,
                        r##"<line x1="{0:.1}" x2="{0:.1}" y1="{top}" y2="{1:.1}" stroke="#e63946" stroke-dasharray="3,3"><title>{2}: {3}</title></line>"##,
                        x(e.t),
                        top + panel_h,
                        xml(&e.kind),
                        xml(&e.detail)
                    );
                }
                for s in (0..=self.duration_s as u64)
                    .step_by(((self.duration_s / 10.0).ceil() as usize).max(1))
                {
                    let _ = writeln!(
                        svg,
                        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{s}s</text>"#,
                        x(s as f64),
                        top + panel_h + 12.0
                    );
                }
            }
            y0 += panels.len() as f64 * (panel_h + 25.0) + 10.0;
        }
        svg.push_str("</svg>\n");
        svg
    }
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Impairment windows from the events: an `impair` on a line lasts until its `clear` or the end.
pub fn windows(events: &[Event], end: f64) -> Vec<ImpairmentWindow> {
    let mut open: BTreeMap<String, (f64, String)> = BTreeMap::new();
    let mut out = Vec::new();
    for e in events {
        // Bulk transfers are windows too: from their start to their result.
        if e.kind == "traffic"
            && let Some(rest) = e.detail.strip_prefix("bulk ")
        {
            let name = rest.split_whitespace().next().unwrap_or("");
            open.insert(format!("bulk {name}"), (e.t, "running".into()));
            continue;
        }
        if e.kind == "bulk-result"
            && let Some((name, _)) = e.detail.split_once(": ")
        {
            if let Some((start, d)) = open.remove(&format!("bulk {name}")) {
                out.push(ImpairmentWindow {
                    line: format!("bulk {name}"),
                    start,
                    end: e.t,
                    detail: d,
                });
            }
            continue;
        }
        let Some((line, detail)) = e.detail.split_once(": ") else {
            continue;
        };
        match e.kind.as_str() {
            "impair" => {
                if let Some((start, d)) = open.remove(line) {
                    out.push(ImpairmentWindow {
                        line: line.into(),
                        start,
                        end: e.t,
                        detail: d,
                    });
                }
                open.insert(line.to_string(), (e.t, detail.to_string()));
            }
            "clear" => {
                if let Some((start, d)) = open.remove(line) {
                    out.push(ImpairmentWindow {
                        line: line.into(),
                        start,
                        end: e.t,
                        detail: d,
                    });
                }
            }
            _ => {}
        }
    }
    for (line, (start, detail)) in open {
        out.push(ImpairmentWindow {
            line,
            start,
            end,
            detail,
        });
    }
    out.sort_by(|a, b| a.start.total_cmp(&b.start));
    out
}

/// A 6 s report of one call `br1-pc1 → dc-dc1` with these seconds and events, for tests
/// of what is computed from reports (here and in `repeat`).
#[cfg(test)]
pub(crate) fn one_call_report(
    seconds: Vec<crate::voice::IntervalReport>,
    events: Vec<Event>,
    passed: bool,
) -> Report {
    Report {
        scenario: "s".into(),
        topology: "bank".into(),
        prefix: "wl0001".into(),
        duration_s: 6.0,
        passed,
        expectations: vec![],
        impairments: windows(&events, 6.0),
        events,
        voice: BTreeMap::from([(
            "call".to_string(),
            CallRecord {
                from: "br1-pc1".into(),
                to: "dc-dc1".into(),
                seconds,
                summary: None,
            },
        )]),
        bulk: BTreeMap::new(),
        lines: vec![],
        mode: crate::steer::Mode::Controller,
        steering: Default::default(),
        comparison: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(t: f64, kind: &str, detail: &str) -> Event {
        Event {
            t,
            kind: kind.into(),
            detail: detail.into(),
        }
    }

    #[test]
    fn windows_run_from_impair_to_clear_or_end() {
        let bulk = [
            ev(3.0, "traffic", "bulk backup br1-pc2 → dc-dc2 (10.0.0.11)"),
            ev(12.0, "bulk-result", "backup: 47.7 Mbit/s"),
        ];
        let w = windows(&bulk, 14.0);
        assert_eq!(
            (w[0].line.as_str(), w[0].start, w[0].end),
            ("bulk backup", 3.0, 12.0)
        );
        let events = [
            ev(2.0, "impair", "br1-mpls: loss 5%"),
            ev(4.0, "impair", "br1-lte: down"),
            ev(6.0, "impair", "br1-mpls: down"),
            ev(8.0, "clear", "br1-mpls: back to topology figures"),
        ];
        let w = windows(&events, 10.0);
        let spans: Vec<(&str, f64, f64)> = w
            .iter()
            .map(|w| (w.line.as_str(), w.start, w.end))
            .collect();
        assert_eq!(
            spans,
            [
                ("br1-mpls", 2.0, 6.0),
                ("br1-lte", 4.0, 10.0),
                ("br1-mpls", 6.0, 8.0)
            ]
        );
    }

    #[test]
    fn reports_render_with_required_json_fields() {
        let report = Report {
            scenario: "s".into(),
            topology: "bank".into(),
            prefix: "wl0000".into(),
            duration_s: 4.0,
            passed: false,
            expectations: vec![Judged {
                text: "voice c: loss below 1.00%".into(),
                passed: false,
                measured: "loss 5.00% (10/200)".into(),
            }],
            events: vec![ev(1.0, "impair", "br1-mpls: loss 5%")],
            impairments: windows(&[ev(1.0, "impair", "br1-mpls: loss 5%")], 4.0),
            voice: BTreeMap::new(),
            bulk: BTreeMap::new(),
            lines: vec![],
            mode: crate::steer::Mode::Off,
            steering: Default::default(),
            comparison: None,
        };
        let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
        assert_eq!(json["scenario"], "s");
        assert_eq!(json["expectations"][0]["passed"], false);
        assert_eq!(json["events"][0]["kind"], "impair");
        assert_eq!(json["events"][0]["t"], 1.0);
        assert!(
            report
                .to_markdown()
                .contains("❌ | voice c: loss below 1.00% | loss 5.00% (10/200)")
        );
        assert!(report.to_svg().starts_with("<svg"));
    }
    fn run_with_loss(lost_during: u64, latency_during: f64) -> Report {
        let seconds = (0..6)
            .map(|t| {
                let hit = (2..4).contains(&t);
                let lost = if hit { lost_during } else { 0 };
                IntervalReport {
                    t: t as f64,
                    received: 50 - lost,
                    expected: 50,
                    lost,
                    loss: lost as f64 / 50.0,
                    longest_gap_ms: 20.0,
                    latency_ms: Some(if hit { latency_during } else { 10.0 }),
                    jitter_ms: 0.1,
                    mos: if hit && lost > 0 { 3.0 } else { 4.4 },
                    gaps: vec![],
                }
            })
            .collect();
        let impair = [
            ev(2.0, "impair", "br1-mpls: loss 5%"),
            ev(4.0, "clear", "br1-mpls: back"),
        ];
        one_call_report(seconds, impair.to_vec(), true)
    }

    #[test]
    fn a_silence_counts_in_a_phase_only_for_its_part_inside() {
        // 50 packets/s; the line dies at 5.0 s (last packet 4.99 s), back at 11.01 s.
        let seconds: Vec<IntervalReport> = (0..16)
            .map(|t| {
                let silent = (5..11).contains(&t);
                IntervalReport {
                    t: t as f64,
                    received: if silent { 0 } else { 50 },
                    expected: 50,
                    lost: if silent { 50 } else { 0 },
                    loss: if silent { 1.0 } else { 0.0 },
                    // As the receiver reports: the whole gap in the second it ends.
                    longest_gap_ms: match t {
                        5..=10 => 1000.0,
                        11 => 6020.0,
                        _ => 20.0,
                    },
                    latency_ms: (!silent).then_some(10.0),
                    jitter_ms: 0.1,
                    mos: if silent { 1.0 } else { 4.4 },
                    gaps: if t == 11 {
                        vec![crate::voice::Gap {
                            start: 4.99,
                            ms: 6020.0,
                        }]
                    } else {
                        vec![]
                    },
                }
            })
            .collect();
        let gap = |a, b| longest_silence_ms(&seconds, a, b);
        assert!((gap(0.0, 5.0) - 20.0).abs() < 1e-6, "{}", gap(0.0, 5.0));
        assert!((gap(5.0, 11.0) - 6020.0).abs() < 1e-6, "{}", gap(5.0, 11.0));
        assert!((gap(11.0, 16.0) - 20.0).abs() < 1e-6, "{}", gap(11.0, 16.0));
        assert!((gap(0.0, 16.0) - 6020.0).abs() < 1e-6, "{}", gap(0.0, 16.0));
        // A silence the stream never came back from (no gap recorded): its silent seconds.
        let cut: Vec<IntervalReport> = seconds[..11].to_vec();
        assert!((longest_silence_ms(&cut, 5.0, 11.0) - 6000.0).abs() < 1e-6);
    }

    #[test]
    fn the_comparison_puts_each_phase_side_by_side() {
        let mut with = run_with_loss(0, 25.0);
        let without = run_with_loss(5, 10.0);
        let c = compare(&with, &without);
        let during = c
            .phases
            .iter()
            .find(|p| p.phase.starts_with("br1-mpls"))
            .expect("the impairment's phase");
        let (w, wo) = (
            during.with.clone().unwrap(),
            during.without.clone().unwrap(),
        );
        assert_eq!((w.loss, wo.loss), (0.0, 0.1));
        assert_eq!(
            (w.latency_worst_ms, wo.latency_worst_ms),
            (Some(25.0), Some(10.0))
        );
        assert_eq!((w.mos_min, wo.mos_min), (4.4, 3.0));
        assert!(c.phases.iter().any(|p| p.phase == "whole run"));
        with.comparison = Some(c);
        let md = with.to_markdown();
        assert!(md.contains("| 0.00% / 10.00% |"), "{md}");
        let json: serde_json::Value = serde_json::from_str(&with.to_json()).unwrap();
        assert_eq!(json["comparison"]["baseline_prefix"], "wl0001");
        assert_eq!(json["mode"], "controller");
    }
}
