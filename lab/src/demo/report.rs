//! What a demo run recorded, the expectations judged on it, and the report written from
//! it (`report.json`, `report.md`, `plot.svg`). Pure apart from the final file writes.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use std::collections::BTreeMap;

use super::traffic::AppSample;
use crate::voice::{IntervalReport, StreamSummary};

/// One line of the timeline.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// Seconds since the demo's zero (voice start).
    pub t: f64,
    pub kind: String,
    pub detail: String,
}

/// One line measurement from the branch agent.
#[derive(Debug, Clone, Serialize)]
pub struct LineSample {
    pub t: f64,
    pub line: String,
    pub loss: f64,
    pub rtt_ms: Option<f64>,
}

/// Everything a run recorded.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Recording {
    pub events: Vec<Event>,
    /// (t, line) each time the branch's voice placement changed; starts on the preferred line.
    pub voice_line: Vec<(f64, String)>,
    /// (t, from, to) of every move of voice at the branch (SLA move or failover).
    pub voice_moves: Vec<(f64, String, String)>,
    pub voice: Vec<IntervalReport>,
    /// (start t, ms) of every gap over 100 ms.
    pub gaps: Vec<(f64, f64)>,
    pub lines: Vec<LineSample>,
    pub voice_total: Option<StreamSummary>,
    pub bulk_mbit: Option<f64>,
    /// Every SaaS (TLS) handshake and DNS lookup from the branch.
    pub apps: Vec<AppSample>,
    /// (t, line) each time the branch's placement of a class other than voice changed.
    pub class_lines: BTreeMap<String, Vec<(f64, String)>>,
    /// DPI verdicts the branch agent installed, by class (from its `/metrics` at the end);
    /// `None` when they could not be read.
    pub dpi_verdicts: Option<BTreeMap<String, f64>>,
}

/// The line `class` used at `t` at the branch, as far as the agent said.
pub fn class_line_at<'a>(rec: &'a Recording, class: &str, t: f64) -> Option<&'a str> {
    rec.class_lines
        .get(class)?
        .iter()
        .take_while(|(at, _)| *at <= t)
        .last()
        .map(|(_, line)| line.as_str())
}

/// (succeeded, tried, median ms of the successes) of `class`'s transactions in [from, to).
pub fn app_window(rec: &Recording, class: &str, from: f64, to: f64) -> (usize, usize, Option<f64>) {
    let samples: Vec<&AppSample> = rec
        .apps
        .iter()
        .filter(|a| a.class == class && a.t >= from && a.t < to)
        .collect();
    let mut times: Vec<f64> = samples.iter().filter_map(|a| a.ms).collect();
    times.sort_by(f64::total_cmp);
    let median = (!times.is_empty()).then(|| times[times.len() / 2]);
    (
        samples.iter().filter(|a| a.ok).count(),
        samples.len(),
        median,
    )
}

/// The scenario's times (seconds since zero) and the line it hits.
#[derive(Debug, Clone, Serialize)]
pub struct Schedule {
    pub line: String,
    pub impair_at: f64,
    pub loss: f64,
    pub clear_at: f64,
    pub down_at: f64,
    pub up_at: f64,
    pub end_at: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Expectation {
    pub text: String,
    pub passed: bool,
    pub measured: String,
}

/// The line voice used at `t`.
pub fn voice_line_at(rec: &Recording, t: f64) -> Option<&str> {
    rec.voice_line
        .iter()
        .take_while(|(at, _)| *at <= t)
        .last()
        .map(|(_, line)| line.as_str())
}

/// Seconds from the brownout to voice leaving the line, if it left in the window.
pub fn brownout_reaction(rec: &Recording, s: &Schedule) -> Option<f64> {
    rec.voice_moves
        .iter()
        .find(|(t, from, _)| *t >= s.impair_at && *t < s.clear_at && *from == s.line)
        .map(|(t, _, _)| t - s.impair_at)
}

/// Longest silence of the voice stream around the outage, ms.
pub fn blackout_gap_ms(rec: &Recording, s: &Schedule) -> f64 {
    let from_gaps = rec
        .gaps
        .iter()
        .filter(|(t, _)| *t >= s.down_at - 1.0 && *t < s.down_at + 5.0)
        .map(|(_, ms)| *ms)
        .fold(0.0, f64::max);
    let from_intervals = rec
        .voice
        .iter()
        .filter(|r| r.t >= s.down_at.floor() - 1.0 && r.t < s.down_at + 5.0)
        .map(|r| r.longest_gap_ms)
        .fold(0.0, f64::max);
    from_gaps.max(from_intervals)
}

/// Judges the run: voice off the lossy line within `max_reaction` s; outage gap ≤ `max_gap_ms`.
pub fn judge(
    rec: &Recording,
    s: &Schedule,
    max_reaction: f64,
    max_gap_ms: f64,
) -> Vec<Expectation> {
    let mut out = Vec::new();
    let reaction = brownout_reaction(rec, s);
    out.push(Expectation {
        text: format!(
            "voice leaves {} within {max_reaction:.0} s of {:.0}% loss",
            s.line,
            s.loss * 100.0
        ),
        passed: reaction.is_some_and(|r| r <= max_reaction),
        measured: reaction.map_or_else(
            || "voice did not leave the line".into(),
            |r| format!("{r:.2} s"),
        ),
    });
    let on_line = voice_line_at(rec, s.down_at - 0.01).map(str::to_string);
    out.push(Expectation {
        text: format!(
            "voice is back on {} before the outage (fail-back after the hold-down)",
            s.line
        ),
        passed: on_line.as_deref() == Some(s.line.as_str()),
        measured: format!("voice on {}", on_line.as_deref().unwrap_or("?")),
    });
    let gap = blackout_gap_ms(rec, s);
    out.push(Expectation {
        text: format!(
            "voice stream gap ≤ {max_gap_ms:.0} ms when {} goes down",
            s.line
        ),
        passed: on_line.as_deref() == Some(s.line.as_str()) && gap <= max_gap_ms,
        measured: format!("longest gap {gap:.0} ms"),
    });
    if rec.apps.iter().any(|a| a.class == "saas") {
        let saas = rec
            .dpi_verdicts
            .as_ref()
            .and_then(|v| v.get("saas").copied());
        out.push(Expectation {
            text: "SaaS flows are classified by their TLS server name (DPI at the branch)".into(),
            passed: saas.is_some_and(|n| n > 0.0),
            measured: saas.map_or_else(
                || "no DPI verdict counts from the branch agent".into(),
                |n| format!("{n:.0} saas verdicts installed"),
            ),
        });
    }
    out
}

fn mean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    (n > 0).then(|| sum / n as f64)
}

/// Voice loss and MOS over [from, to).
fn voice_window(rec: &Recording, from: f64, to: f64) -> (Option<f64>, Option<f64>) {
    let window: Vec<&IntervalReport> = rec
        .voice
        .iter()
        .filter(|r| r.t >= from && r.t < to)
        .collect();
    (
        mean(window.iter().map(|r| r.loss)),
        mean(window.iter().map(|r| r.mos)),
    )
}

/// Writes report.json, report.md and plot.svg into `dir`.
pub fn write(
    dir: &Path,
    scenario: &str,
    s: &Schedule,
    rec: &Recording,
    expectations: &[Expectation],
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let windows = [
        ("before", 0.0, s.impair_at),
        ("brownout", s.impair_at, s.clear_at),
        ("recovered", s.clear_at, s.down_at),
        ("outage", s.down_at, s.up_at),
        ("restored", s.up_at, s.end_at),
    ];
    let voice_windows: Vec<serde_json::Value> = windows
        .iter()
        .map(|(name, from, to)| {
            let (loss, mos) = voice_window(rec, *from, *to);
            serde_json::json!({"window": name, "from": from, "to": to, "loss": loss, "mos": mos})
        })
        .collect();
    let json = serde_json::json!({
        "scenario": scenario,
        "schedule": s,
        "expectations": expectations,
        "events": rec.events,
        "measured": {
            "brownout_reaction_s": brownout_reaction(rec, s),
            "blackout_gap_ms": blackout_gap_ms(rec, s),
            "voice_windows": voice_windows,
            "voice_total": rec.voice_total,
            "bulk_mbit_per_s": rec.bulk_mbit,
            "apps": app_windows(rec, &windows),
            "dpi_verdicts_installed": rec.dpi_verdicts,
        },
        "class_lines": rec.class_lines,
        "app_samples": rec.apps,
        "voice_line": rec.voice_line,
        "voice_per_second": rec.voice,
        "voice_gaps": rec.gaps,
        "line_samples": rec.lines,
    });
    std::fs::write(dir.join("report.json"), serde_json::to_vec_pretty(&json)?)?;

    let mut md = String::new();
    let _ = writeln!(md, "# wansteer lab demo: {scenario}\n");
    let _ = writeln!(
        md,
        "Voice (EF, 50 packets/s) from br1-pc1 to dc-dc1 and bulk TCP (cubic) from br1-pc2 to \
         dc-dc2 while br1's {} line loses {:.0}% ({:.0}–{:.0} s) and dies ({:.0}–{:.0} s). One \
         `wansteer agent` per site with policy `lab/demo/bank-lab.yaml`; a `wansteer controller` decides unless the run was `--standalone`.\n",
        s.line,
        s.loss * 100.0,
        s.impair_at,
        s.clear_at,
        s.down_at,
        s.up_at
    );
    let _ = writeln!(
        md,
        "## Expectations\n\n| expectation | result | measured |\n|---|---|---|"
    );
    for e in expectations {
        let _ = writeln!(
            md,
            "| {} | {} | {} |",
            e.text,
            if e.passed { "pass" } else { "**FAIL**" },
            e.measured
        );
    }
    let _ = writeln!(
        md,
        "\n## Voice as a caller hears it\n\n| window | seconds | loss | MOS |\n|---|---|---|---|"
    );
    for (name, from, to) in windows {
        let (loss, mos) = voice_window(rec, from, to);
        let _ = writeln!(
            md,
            "| {name} | {from:.0}–{to:.0} | {} | {} |",
            loss.map_or("-".into(), |l| format!("{:.2}%", l * 100.0)),
            mos.map_or("-".into(), |m| format!("{m:.2}"))
        );
    }
    if let Some(total) = &rec.voice_total {
        let _ = writeln!(
            md,
            "\nWhole stream: {} of {} packets, loss {:.2}%, longest gap {:.0} ms, MOS {:.2}.",
            total.received,
            total.expected,
            total.loss * 100.0,
            total.longest_gap_ms,
            total.mos
        );
    }
    if let Some(bulk) = rec.bulk_mbit {
        let _ = writeln!(md, "Bulk TCP goodput over the run: {bulk:.1} Mbit/s.");
    }
    if !rec.apps.is_empty() {
        let _ = writeln!(
            md,
            "\n## SaaS over TLS and DNS\n\nTLS handshakes (SNI `crm.salesforce.com`, class `saas` by DPI) \
             from br1-pc1 to dc-dc2:443 and DNS lookups from br1-pc2 to dc-dc1:53 (class `dns` by \
             port); the line is br1's placement of the class at the window's middle.\n\n\
             | class | window | ok / tried | median ms | line |\n|---|---|---|---|---|"
        );
        for class in ["saas", "dns"] {
            for (name, from, to) in windows {
                let (ok, tried, median) = app_window(rec, class, from, to);
                let _ = writeln!(
                    md,
                    "| {class} | {name} | {ok} / {tried} | {} | {} |",
                    median.map_or("-".into(), |m| format!("{m:.0}")),
                    class_line_at(rec, class, (from + to) / 2.0).unwrap_or("?")
                );
            }
        }
        if let Some(verdicts) = &rec.dpi_verdicts {
            let text: Vec<String> = verdicts
                .iter()
                .filter(|(_, n)| **n > 0.0)
                .map(|(class, n)| format!("{class} {n:.0}"))
                .collect();
            let _ = writeln!(
                md,
                "\nDPI verdicts installed by the br1 agent: {}.",
                if text.is_empty() {
                    "none".to_string()
                } else {
                    text.join(", ")
                }
            );
        }
    }
    let _ = writeln!(md, "\n## Timeline\n\n![plot](plot.svg)\n\n```");
    for e in &rec.events {
        let _ = writeln!(md, "{:>7.2}s  {:<9} {}", e.t, e.kind, e.detail);
    }
    let _ = writeln!(md, "```");
    std::fs::write(dir.join("report.md"), md)?;
    std::fs::write(dir.join("plot.svg"), plot(s, rec))?;
    Ok(())
}

fn app_windows(rec: &Recording, windows: &[(&str, f64, f64)]) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for class in ["saas", "dns"] {
        for (name, from, to) in windows {
            let (ok, tried, median) = app_window(rec, class, *from, *to);
            out.push(serde_json::json!({
                "class": class, "window": name, "ok": ok, "tried": tried, "median_ms": median,
                "line": class_line_at(rec, class, (from + to) / 2.0),
            }));
        }
    }
    out
}

/// Three panels over time: per-line loss seen by br1's probes, voice loss per second, and
/// the line voice used; impairment windows shaded.
pub fn plot(s: &Schedule, rec: &Recording) -> String {
    let (w, left, right) = (900.0, 70.0, 20.0);
    let span = s.end_at.max(1.0);
    let x = |t: f64| left + (t.clamp(0.0, span) / span) * (w - left - right);
    let panels = [(20.0, 150.0), (200.0, 120.0), (350.0, 60.0)];
    let height = 440.0;
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{height}" font-family="sans-serif" font-size="11">
<rect width="100%" height="100%" fill="white"/>
"#
    );
    for (from, to, colour, label) in [
        (
            s.impair_at,
            s.clear_at,
            "#fde2b3",
            format!("{} loss {:.0}%", s.line, s.loss * 100.0),
        ),
        (s.down_at, s.up_at, "#f6c1c1", format!("{} down", s.line)),
    ] {
        let _ = writeln!(
            svg,
            r#"<rect x="{:.1}" y="15" width="{:.1}" height="405" fill="{colour}"/><text x="{:.1}" y="12">{label}</text>"#,
            x(from),
            x(to) - x(from),
            x(from) + 2.0
        );
    }
    let colours = [("mpls", "#1f77b4"), ("inet", "#2ca02c"), ("lte", "#d62728")];
    let colour = |line: &str| {
        colours
            .iter()
            .find(|(l, _)| *l == line)
            .map_or("#555", |(_, c)| *c)
    };
    // Panel 1: per-line loss (short window), 0–20%.
    let (top, h) = panels[0];
    let y1 = |loss: f64| top + h - (loss.clamp(0.0, 0.2) / 0.2) * h;
    let _ = writeln!(
        svg,
        r#"<text x="4" y="{:.0}">line loss</text><text x="4" y="{:.0}">(probes)</text><text x="40" y="{:.0}">20%</text><text x="48" y="{:.0}">0</text>"#,
        top + 12.0,
        top + 26.0,
        top + 8.0,
        top + h
    );
    for (line, c) in colours {
        let points: Vec<String> = rec
            .lines
            .iter()
            .filter(|p| p.line == line)
            .map(|p| format!("{:.1},{:.1}", x(p.t), y1(p.loss)))
            .collect();
        if !points.is_empty() {
            let _ = writeln!(
                svg,
                r#"<polyline fill="none" stroke="{c}" stroke-width="1.5" points="{}"/>"#,
                points.join(" ")
            );
        }
    }
    // Panel 2: voice loss per second, 0–50%.
    let (top, h) = panels[1];
    let y2 = |loss: f64| top + h - (loss.clamp(0.0, 0.5) / 0.5) * h;
    let _ = writeln!(
        svg,
        r#"<text x="4" y="{:.0}">voice loss</text><text x="4" y="{:.0}">per second</text><text x="40" y="{:.0}">50%</text><text x="48" y="{:.0}">0</text>"#,
        top + 12.0,
        top + 26.0,
        top + 8.0,
        top + h
    );
    let points: Vec<String> = rec
        .voice
        .iter()
        .map(|r| format!("{:.1},{:.1}", x(r.t + 0.5), y2(r.loss)))
        .collect();
    let _ = writeln!(
        svg,
        r#"<polyline fill="none" stroke="black" stroke-width="1.5" points="{}"/>"#,
        points.join(" ")
    );
    for (t, ms) in &rec.gaps {
        let _ = writeln!(
            svg,
            r#"<line x1="{0:.1}" x2="{0:.1}" y1="{1:.0}" y2="{2:.0}" stroke="purple"/><text x="{3:.1}" y="{4:.0}" fill="purple">gap {ms:.0} ms</text>"#,
            x(*t),
            top,
            top + h,
            x(*t) + 2.0,
            top + 10.0
        );
    }
    // Panel 3: the line voice used.
    let (top, h) = panels[2];
    let _ = writeln!(
        svg,
        r#"<text x="4" y="{:.0}">voice line</text>"#,
        top + 20.0
    );
    for (i, (t, line)) in rec.voice_line.iter().enumerate() {
        let end = rec.voice_line.get(i + 1).map_or(span, |(next, _)| *next);
        let _ = writeln!(
            svg,
            r#"<rect x="{:.1}" y="{top}" width="{:.1}" height="{h}" fill="{}"/><text x="{:.1}" y="{:.0}" fill="white">{line}</text>"#,
            x(*t),
            (x(end) - x(*t)).max(0.5),
            colour(line),
            x(*t) + 3.0,
            top + h / 2.0 + 4.0
        );
    }
    for (t, from, _) in &rec.voice_moves {
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.0}">▲ off {from} at {t:.2}s</text>"#,
            x(*t),
            top + h + 14.0
        );
    }
    // Time axis.
    let mut t = 0.0;
    while t <= span {
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.0}" text-anchor="middle">{t:.0}s</text>"#,
            x(t),
            height - 4.0
        );
        t += 10.0;
    }
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule() -> Schedule {
        Schedule {
            line: "mpls".into(),
            impair_at: 10.0,
            loss: 0.05,
            clear_at: 25.0,
            down_at: 35.0,
            up_at: 50.0,
            end_at: 60.0,
        }
    }

    fn interval(t: f64, gap: f64) -> IntervalReport {
        IntervalReport {
            t,
            received: 50,
            expected: 50,
            lost: 0,
            loss: 0.0,
            longest_gap_ms: gap,
            latency_ms: Some(10.0),
            jitter_ms: 0.5,
            mos: 4.4,
            gaps: Vec::new(),
        }
    }

    fn good_run() -> Recording {
        Recording {
            voice_line: vec![
                (0.0, "mpls".into()),
                (11.2, "inet".into()),
                (31.0, "mpls".into()),
                (35.2, "inet".into()),
            ],
            voice_moves: vec![
                (11.2, "mpls".into(), "inet".into()),
                (35.2, "mpls".into(), "inet".into()),
            ],
            voice: (0..60)
                .map(|t| interval(f64::from(t), if t == 35 { 210.0 } else { 25.0 }))
                .collect(),
            gaps: vec![(35.0, 210.0)],
            ..Recording::default()
        }
    }

    #[test]
    fn a_run_that_steers_passes_with_its_figures() {
        let e = judge(&good_run(), &schedule(), 5.0, 1000.0);
        assert!(e.iter().all(|e| e.passed), "{e:?}");
        assert_eq!(e[0].measured, "1.20 s");
        assert_eq!(e[2].measured, "longest gap 210 ms");
    }

    #[test]
    fn voice_staying_on_the_lossy_line_fails() {
        let mut run = good_run();
        run.voice_moves.retain(|(t, _, _)| *t > 30.0);
        let e = judge(&run, &schedule(), 5.0, 1000.0);
        assert!(!e[0].passed);
        assert_eq!(e[0].measured, "voice did not leave the line");
    }

    #[test]
    fn a_long_blackout_gap_fails() {
        let mut run = good_run();
        run.gaps = vec![(35.0, 2400.0)];
        let e = judge(&run, &schedule(), 5.0, 1000.0);
        assert!(!e[2].passed);
    }

    #[test]
    fn an_outage_that_missed_voice_does_not_count_as_a_pass() {
        let mut run = good_run();
        run.voice_line.retain(|(t, _)| *t < 30.0);
        let e = judge(&run, &schedule(), 5.0, 1000.0);
        assert!(!e[1].passed && !e[2].passed);
    }

    #[test]
    fn the_plot_is_an_svg_with_the_moves_marked() {
        let svg = plot(&schedule(), &good_run());
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("off mpls at 11.20s"));
    }
}
