//! Prometheus metrics served at `/metrics`: what each line measures, where each class runs,
//! how often the planner moves classes, how long a push takes to be applied, and which rule
//! set version each agent runs against the one published for it.

use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder, core::Collector,
};
use wansteer_wire::ruleset::RuleSet;
use wansteer_wire::session::{LineHealth, LineMeasurement};

/// The gauges of one line (see [`Metrics::line_gauges`]).
#[derive(Debug, Clone)]
pub struct LineGauges {
    rtt: Gauge,
    loss: Gauge,
    jitter: Gauge,
    health: [(LineHealth, IntGauge); LineHealth::ALL.len()],
}

impl LineGauges {
    /// Shows one measurement.
    pub fn set(&self, m: &LineMeasurement) {
        self.rtt.set(m.rtt_ms / 1000.0);
        self.loss.set(m.loss_percent / 100.0);
        self.jitter.set(m.jitter_ms / 1000.0);
        for (state, gauge) in &self.health {
            gauge.set(i64::from(*state == m.health));
        }
    }
}

/// Every metric the controller exports.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    line_rtt: GaugeVec,
    line_loss: GaugeVec,
    line_jitter: GaugeVec,
    line_health: IntGaugeVec,
    class_placement: IntGaugeVec,
    decisions: IntCounterVec,
    push_latency: Histogram,
    published_version: IntGaugeVec,
    agent_version: IntGaugeVec,
    agent_drift: IntGaugeVec,
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
        let int_gauge = |name: &str, help: &str, labels: &[&str]| {
            register(
                &registry,
                IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric"),
            )
        };
        Metrics {
            line_rtt: gauge(
                "wansteer_line_rtt_seconds",
                "Mean round-trip time of the line as last reported by its agent.",
                &["site", "line"],
            ),
            line_loss: gauge(
                "wansteer_line_loss_ratio",
                "Packet loss of the line (0-1) as last reported by its agent.",
                &["site", "line"],
            ),
            line_jitter: gauge(
                "wansteer_line_jitter_seconds",
                "Jitter (delay variation) of the line as last reported by its agent.",
                &["site", "line"],
            ),
            line_health: int_gauge(
                "wansteer_line_health",
                "1 for the line's current health state, 0 for the others.",
                &["site", "line", "state"],
            ),
            class_placement: int_gauge(
                "wansteer_class_placement",
                "1 when the class's traffic to the destination is placed on the line.",
                &["site", "class", "destination", "line"],
            ),
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
            published_version: int_gauge(
                "wansteer_ruleset_published_version",
                "Version of the rule set the controller publishes for the site.",
                &["site"],
            ),
            agent_version: int_gauge(
                "wansteer_agent_ruleset_version",
                "Version of the rule set the site's agent last acked as applied.",
                &["site"],
            ),
            agent_drift: int_gauge(
                "wansteer_agent_drift",
                "1 when the site's agent does not run the published rule set (behind or failed).",
                &["site"],
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

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding cannot fail");
        String::from_utf8(out).expect("the text format is UTF-8")
    }

    pub fn on_measurement(&self, site: &str, m: &LineMeasurement) {
        self.line_gauges(site, &m.line).set(m);
    }

    /// The gauges of one line, looked up once: a report then sets them without hashing
    /// label values (ten thousand agents report twenty thousand lines a second).
    pub fn line_gauges(&self, site: &str, line: &str) -> LineGauges {
        let labels = [site, line];
        LineGauges {
            rtt: self.line_rtt.with_label_values(&labels),
            loss: self.line_loss.with_label_values(&labels),
            jitter: self.line_jitter.with_label_values(&labels),
            health: LineHealth::ALL.map(|state| {
                (
                    state,
                    self.line_health
                        .with_label_values(&[site, line, state.as_str()]),
                )
            }),
        }
    }

    /// Replaces the site's placements with those of a newly published rule set.
    pub fn on_published(&self, old: Option<&RuleSet>, new: &RuleSet) {
        if let Some(old) = old {
            for route in &old.routes {
                let _ = self.class_placement.remove_label_values(&[
                    old.site.as_str(),
                    route.class.as_str(),
                    &route.destination.to_string(),
                    route.primary.as_str(),
                ]);
            }
        }
        for route in &new.routes {
            self.class_placement
                .with_label_values(&[
                    new.site.as_str(),
                    route.class.as_str(),
                    &route.destination.to_string(),
                    route.primary.as_str(),
                ])
                .set(1);
        }
        self.published_version
            .with_label_values(&[new.site.as_str()])
            .set(new.version as i64);
    }

    pub fn on_agent_state(&self, site: &str, applied_version: Option<u64>, drift: bool) {
        self.agent_version
            .with_label_values(&[site])
            .set(applied_version.map_or(-1, |v| v as i64));
        self.agent_drift
            .with_label_values(&[site])
            .set(i64::from(drift));
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
