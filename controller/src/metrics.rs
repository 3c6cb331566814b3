//! Prometheus metrics served at `/metrics`: what each line measures, where each class runs,
//! how often the planner moves classes, how long a push takes to be applied, and which rule
//! set version each agent runs against the one published for it.
//!
//! Counters, the push histogram and the few fleet-wide gauges live in a `prometheus`
//! registry. The per-line and per-site families (hundreds of thousands of series at 10,000
//! sites) are written straight from the controller's live state at scrape time
//! ([`write_fleet`]): held as `prometheus` gauges they cost every report a gauge update,
//! every publish a label churn, and a scrape 1.3 s of CPU building, sorting and encoding
//! one object per series (docs/benchmarks/controller.md).

use std::fmt::Write as _;

use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder, core::Collector,
};
use wansteer_wire::ruleset::RuleSet;
use wansteer_wire::session::{LineHealth, LineMeasurement};

/// One line's latest measurement, as [`write_fleet`] renders it.
#[derive(Debug, Clone, Copy)]
pub struct LineRow<'a> {
    pub site: &'a str,
    pub line: &'a str,
    pub measurement: &'a LineMeasurement,
}

/// One site's published rule set and its agent, as [`write_fleet`] renders them.
#[derive(Debug, Clone, Copy)]
pub struct SiteRow<'a> {
    pub site: &'a str,
    pub published: Option<&'a RuleSet>,
    /// The site's agent, if one ever registered: the version it last applied, and whether
    /// it drifts from the published rule set.
    pub agent: Option<AgentRow>,
}

#[derive(Debug, Clone, Copy)]
pub struct AgentRow {
    pub applied_version: Option<u64>,
    pub drift: bool,
}

/// Writes the per-line and per-site families in the text exposition format (0.0.4), rows
/// in the order given. Label names are in alphabetical order, as the `prometheus` crate
/// writes them.
pub fn write_fleet(out: &mut String, lines: &[LineRow<'_>], sites: &[SiteRow<'_>]) {
    type Value = fn(&LineMeasurement) -> f64;
    let line_families: [(&str, &str, Value); 3] = [
        (
            "wansteer_line_rtt_seconds",
            "Mean round-trip time of the line as last reported by its agent.",
            |m| m.rtt_ms / 1000.0,
        ),
        (
            "wansteer_line_loss_ratio",
            "Packet loss of the line (0-1) as last reported by its agent.",
            |m| m.loss_percent / 100.0,
        ),
        (
            "wansteer_line_jitter_seconds",
            "Jitter (delay variation) of the line as last reported by its agent.",
            |m| m.jitter_ms / 1000.0,
        ),
    ];
    for (name, help, value) in line_families {
        header(out, name, help);
        for row in lines {
            sample(
                out,
                name,
                &[("line", row.line), ("site", row.site)],
                value(row.measurement),
            );
        }
    }
    let name = "wansteer_line_health";
    header(
        out,
        name,
        "1 for the line's current health state, 0 for the others.",
    );
    for row in lines {
        for state in LineHealth::ALL {
            let on = row.measurement.health == state;
            let labels = [
                ("line", row.line),
                ("site", row.site),
                ("state", state.as_str()),
            ];
            sample(out, name, &labels, f64::from(u8::from(on)));
        }
    }

    let name = "wansteer_class_placement";
    header(
        out,
        name,
        "1 when the class's traffic to the destination is placed on the line.",
    );
    let mut destination = String::new();
    for (site, rule_set) in sites.iter().filter_map(|s| Some((s.site, s.published?))) {
        for route in &rule_set.routes {
            destination.clear();
            let _ = write!(destination, "{}", route.destination);
            let labels = [
                ("class", route.class.as_str()),
                ("destination", destination.as_str()),
                ("line", route.primary.as_str()),
                ("site", site),
            ];
            sample(out, name, &labels, 1.0);
        }
    }
    type SiteValue = fn(&SiteRow<'_>) -> Option<f64>;
    let site_families: [(&str, &str, SiteValue); 3] = [
        (
            "wansteer_ruleset_published_version",
            "Version of the rule set the controller publishes for the site.",
            |s| s.published.map(|r| r.version as f64),
        ),
        (
            "wansteer_agent_ruleset_version",
            "Version of the rule set the site's agent last acked as applied.",
            |s| {
                s.agent
                    .map(|a| a.applied_version.map_or(-1.0, |v| v as f64))
            },
        ),
        (
            "wansteer_agent_drift",
            "1 when the site's agent does not run the published rule set (behind or failed).",
            |s| s.agent.map(|a| f64::from(u8::from(a.drift))),
        ),
    ];
    for (name, help, value) in site_families {
        header(out, name, help);
        for row in sites {
            if let Some(value) = value(row) {
                sample(out, name, &[("site", row.site)], value);
            }
        }
    }
}

fn header(out: &mut String, name: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
}

fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: f64) {
    out.push_str(name);
    out.push('{');
    for (i, (label, text)) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(label);
        out.push_str("=\"");
        escape_label_value(out, text);
        out.push('"');
    }
    out.push_str("} ");
    write_value(out, value);
    out.push('\n');
}

/// Label values escape `\`, `"` and line feeds; nothing else.
fn escape_label_value(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn write_value(out: &mut String, value: f64) {
    if value.is_nan() {
        out.push_str("NaN");
    } else if value == f64::INFINITY {
        out.push_str("+Inf");
    } else if value == f64::NEG_INFINITY {
        out.push_str("-Inf");
    } else {
        let _ = write!(out, "{value}");
    }
}

/// Every metric the controller exports.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    decisions: IntCounterVec,
    push_latency: Histogram,
    agents_connected: IntGauge,
    reports: IntCounter,
    auth_refused: IntCounterVec,
    policy_version: IntGauge,
    policy_phase: GaugeVec,
}

fn register<C: Collector + Clone + 'static>(registry: &Registry, collector: C) -> C {
    registry
        .register(Box::new(collector.clone()))
        .expect("metric names are unique");
    collector
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            register(
                &registry,
                GaugeVec::new(Opts::new(name, help), labels).expect("valid metric"),
            )
        };
        Metrics {
            decisions: register(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "wansteer_decisions_total",
                        "Steering decisions (class moves) made by the planner.",
                    ),
                    &["site", "class"],
                )
                .expect("valid metric"),
            ),
            push_latency: register(
                &registry,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "wansteer_push_latency_seconds",
                        "Time from publishing a rule set to the agent's ack that it applied it.",
                    )
                    .buckets(vec![
                        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                    ]),
                )
                .expect("valid metric"),
            ),
            agents_connected: register(
                &registry,
                IntGauge::new(
                    "wansteer_agents_connected",
                    "Agents holding an open push stream.",
                )
                .expect("valid metric"),
            ),
            reports: register(
                &registry,
                IntCounter::new("wansteer_reports_total", "Agent reports ingested.")
                    .expect("valid metric"),
            ),
            auth_refused: register(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "wansteer_auth_refused_total",
                        "Requests refused for a missing, unknown or revoked token.",
                    ),
                    &["reason"],
                )
                .expect("valid metric"),
            ),
            policy_version: register(
                &registry,
                IntGauge::new("wansteer_policy_version", "Version of the policy in force.")
                    .expect("valid metric"),
            ),
            policy_phase: gauge(
                "wansteer_policy_change_phase_seconds",
                "Time the last policy change spent in each step before its rule sets were sent: check, plan, prepare (hash and JSON), commit (durable), send.",
                &["phase"],
            ),
            registry,
        }
    }

    /// The registry's families in the text exposition format, appended to `out` (the
    /// fleet's come from [`write_fleet`]).
    pub fn render_into(&self, out: &mut String) {
        let mut text = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut text)
            .expect("text encoding cannot fail");
        out.push_str(std::str::from_utf8(&text).expect("the text format is UTF-8"));
    }

    pub fn on_decision(&self, site: &str, class: &str) {
        self.decisions.with_label_values(&[site, class]).inc();
    }

    pub fn on_push_applied(&self, seconds: f64) {
        self.push_latency.observe(seconds);
    }

    pub fn on_report(&self) {
        self.reports.inc();
    }

    pub fn on_auth_refused(&self, reason: &str) {
        self.auth_refused.with_label_values(&[reason]).inc();
    }

    pub fn set_connected(&self, connected: i64) {
        self.agents_connected.set(connected);
    }

    pub fn set_policy_version(&self, version: u64) {
        self.policy_version.set(version as i64);
    }

    /// How long the latest policy change spent in `phase` (see the metric's help).
    pub fn policy_phase(&self, phase: &str, took: std::time::Duration) {
        self.policy_phase
            .with_label_values(&[phase])
            .set(took.as_secs_f64());
    }

    /// Quantile of push latency is not exposed by Prometheus histograms; the count is.
    pub fn pushes_applied(&self) -> u64 {
        self.push_latency.get_sample_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measurement(line: &str, health: LineHealth) -> LineMeasurement {
        LineMeasurement {
            line: line.into(),
            rtt_ms: 12.5,
            loss_percent: 2.0,
            loss_bounds_percent: None,
            jitter_ms: 0.25,
            samples: 100,
            health,
        }
    }

    fn rule_set(site: &str, version: u64) -> RuleSet {
        let routes = vec![wansteer_wire::ruleset::ClassRoute {
            class: "voice".into(),
            destination: "10.1.0.0/16".parse().unwrap(),
            primary: "mpls".into(),
            backups: vec!["inet".into()],
            reason: String::new(),
        }];
        RuleSet {
            site: site.into(),
            version,
            hash: String::new(),
            classes: vec![],
            default_class: "default".into(),
            lines: vec![],
            routes,
        }
    }

    #[test]
    fn fleet_families_carry_each_line_and_site() {
        let m = measurement("mpls", LineHealth::Degraded);
        let published = rule_set("br1", 3);
        let mut out = String::new();
        write_fleet(
            &mut out,
            &[LineRow {
                site: "br1",
                line: "mpls",
                measurement: &m,
            }],
            &[
                SiteRow {
                    site: "br1",
                    published: Some(&published),
                    agent: Some(AgentRow {
                        applied_version: Some(2),
                        drift: true,
                    }),
                },
                SiteRow {
                    site: "br2",
                    published: None,
                    agent: Some(AgentRow {
                        applied_version: None,
                        drift: false,
                    }),
                },
            ],
        );
        for expected in [
            "wansteer_line_rtt_seconds{line=\"mpls\",site=\"br1\"} 0.0125\n",
            "wansteer_line_loss_ratio{line=\"mpls\",site=\"br1\"} 0.02\n",
            "wansteer_line_jitter_seconds{line=\"mpls\",site=\"br1\"} 0.00025\n",
            "wansteer_line_health{line=\"mpls\",site=\"br1\",state=\"degraded\"} 1\n",
            "wansteer_line_health{line=\"mpls\",site=\"br1\",state=\"up\"} 0\n",
            "wansteer_class_placement{class=\"voice\",destination=\"10.1.0.0/16\",line=\"mpls\",site=\"br1\"} 1\n",
            "wansteer_ruleset_published_version{site=\"br1\"} 3\n",
            "wansteer_agent_ruleset_version{site=\"br1\"} 2\n",
            "wansteer_agent_ruleset_version{site=\"br2\"} -1\n",
            "wansteer_agent_drift{site=\"br1\"} 1\n",
            "wansteer_agent_drift{site=\"br2\"} 0\n",
            "# TYPE wansteer_line_health gauge\n",
        ] {
            assert!(out.contains(expected), "missing {expected:?} in\n{out}");
        }
        assert!(!out.contains("published_version{site=\"br2\"}"));
        // One HELP and one TYPE line per family, even with no rows.
        assert_eq!(out.matches("# TYPE ").count(), 8);
    }

    #[test]
    fn label_values_are_escaped() {
        let m = measurement("a\"b\\c\nd", LineHealth::Up);
        let mut out = String::new();
        write_fleet(
            &mut out,
            &[LineRow {
                site: "br1",
                line: &m.line,
                measurement: &m,
            }],
            &[],
        );
        assert!(out.contains(r#"wansteer_line_loss_ratio{line="a\"b\\c\nd",site="br1"} 0.02"#));
        assert_eq!(out.lines().filter(|l| l.contains("a\\\"b")).count(), 7);
    }

    #[test]
    fn values_outside_the_reals_use_the_format_words() {
        for (value, text) in [
            (f64::NAN, "NaN"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (1.0, "1"),
            (0.5, "0.5"),
        ] {
            let mut out = String::new();
            write_value(&mut out, value);
            assert_eq!(out, text);
        }
    }
}
