//! The agent's Prometheus `/metrics` (`wansteer agent --metrics ADDR`): what each line
//! measures and its health per SLA, the line each class takes, moves, failovers and
//! fail-backs, the classifier's counters and per-class traffic, the DPI verdicts installed,
//! and the rule set version in force.
//!
//! Everything is fed from the daemon's own events ([`AgentMetrics::observe`]), from the
//! classifier thread ([`AgentMetrics::observe_classifier`]) and from the event loop's tick
//! ([`AgentMetrics::set_ruleset_version`]); the HTTP side only encodes the registry.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder, core::Collector,
};
use wansteer_wire::report::HealthState;

use super::events::AgentEvent;
use crate::classifier::ClassStats;
use crate::classifier::engine::ClassifierCounters;
use crate::classifier::flow::TableCounters;

/// Every metric the agent exports; cheap to clone (shared registry).
#[derive(Debug, Clone)]
pub struct AgentMetrics {
    registry: Registry,
    line_rtt: GaugeVec,
    line_loss: GaugeVec,
    line_jitter: GaugeVec,
    line_health: IntGaugeVec,
    class_line: IntGaugeVec,
    moves: IntCounterVec,
    failovers: IntCounterVec,
    failbacks: IntCounter,
    errors: IntCounter,
    ruleset_version: IntGauge,
    packets: IntCounter,
    undecoded: IntCounter,
    flows: IntCounter,
    flows_evicted: IntCounter,
    flows_live: IntGauge,
    verdicts: IntCounter,
    class_flows: IntGaugeVec,
    class_bytes: IntCounterVec,
    installed: IntCounterVec,
    install_errors: IntCounter,
    install_seconds: Histogram,
    /// Last cumulative values read from the classifier, to turn them into counter steps.
    seen: Arc<Mutex<Seen>>,
}

#[derive(Debug, Default)]
struct Seen {
    counters: ClassifierCounters,
    table: TableCounters,
    bytes: BTreeMap<(String, &'static str), u64>,
}

fn register<C: Collector + Clone + 'static>(registry: &Registry, collector: C) -> C {
    registry
        .register(Box::new(collector.clone()))
        .expect("metric names are unique");
    collector
}

const STATES: [HealthState; 3] = [HealthState::Up, HealthState::Degraded, HealthState::Down];

impl AgentMetrics {
    /// Metrics of the agent of `site` (a constant `site` label on every series).
    pub fn new(site: &str) -> AgentMetrics {
        let labels = [("site".to_string(), site.to_string())].into();
        let registry = Registry::new_custom(None, Some(labels)).expect("valid site label");
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
        let counter = |name: &str, help: &str| {
            register(
                &registry,
                IntCounter::with_opts(Opts::new(name, help)).expect("valid metric"),
            )
        };
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            register(
                &registry,
                IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"),
            )
        };
        AgentMetrics {
            line_rtt: gauge(
                "wansteer_agent_line_rtt_seconds",
                "Median round-trip time of the line over the short probe window.",
                &["line"],
            ),
            line_loss: gauge(
                "wansteer_agent_line_loss_ratio",
                "Probe loss of the line (0-1) over the short probe window.",
                &["line"],
            ),
            line_jitter: gauge(
                "wansteer_agent_line_jitter_seconds",
                "RFC 3550 interarrival jitter of the line over the short probe window.",
                &["line"],
            ),
            line_health: int_gauge(
                "wansteer_agent_line_health",
                "1 for the line's current health state for the SLA, 0 for the others.",
                &["line", "sla", "state"],
            ),
            class_line: int_gauge(
                "wansteer_agent_class_line",
                "1 for the line a steering class's traffic takes now.",
                &["class", "line"],
            ),
            moves: counter_vec(
                "wansteer_agent_moves_total",
                "Classes moved to another line because their SLA broke or came back.",
                &["class"],
            ),
            failovers: counter_vec(
                "wansteer_agent_failovers_total",
                "Local fast failovers off a dead line.",
                &["line"],
            ),
            failbacks: counter(
                "wansteer_agent_failbacks_total",
                "Fail-backs onto lines after their hold-down.",
            ),
            errors: counter(
                "wansteer_agent_errors_total",
                "Errors the daemon reported (the rules in force stayed).",
            ),
            ruleset_version: register(
                &registry,
                IntGauge::with_opts(Opts::new(
                    "wansteer_agent_ruleset_version",
                    "Version of the rule set applied in the kernel.",
                ))
                .expect("valid metric"),
            ),
            packets: counter(
                "wansteer_agent_classifier_packets_total",
                "Frames captured on the LAN interfaces and shown to the classifier.",
            ),
            undecoded: counter(
                "wansteer_agent_classifier_undecoded_total",
                "Captured frames that were not IP or too damaged to name a flow.",
            ),
            flows: counter(
                "wansteer_agent_classifier_flows_total",
                "Flows the classifier started tracking.",
            ),
            flows_evicted: counter(
                "wansteer_agent_classifier_flows_evicted_total",
                "Flows pushed out of the full flow table before they went idle.",
            ),
            flows_live: register(
                &registry,
                IntGauge::with_opts(Opts::new(
                    "wansteer_agent_classifier_flows",
                    "Flows in the classifier's table now.",
                ))
                .expect("valid metric"),
            ),
            verdicts: counter(
                "wansteer_agent_classifier_verdicts_total",
                "Verdicts the classifier issued (a flow can get a second one when DPI learns more).",
            ),
            class_flows: int_gauge(
                "wansteer_agent_class_flows",
                "Flows whose current verdict is the class.",
                &["class"],
            ),
            class_bytes: counter_vec(
                "wansteer_agent_class_bytes_total",
                "IP bytes of the class's flows, client to server (up) and back (down).",
                &["class", "direction"],
            ),
            installed: counter_vec(
                "wansteer_agent_dpi_verdicts_installed_total",
                "DPI verdicts installed in the nft verdict maps, by class.",
                &["class"],
            ),
            install_errors: counter(
                "wansteer_agent_dpi_install_errors_total",
                "DPI verdicts the data plane refused.",
            ),
            install_seconds: register(
                &registry,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "wansteer_agent_dpi_install_seconds",
                        "Time the event loop spent installing one batch of DPI verdicts.",
                    )
                    .buckets(vec![
                        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
                    ]),
                )
                .expect("valid metric"),
            ),
            seen: Arc::default(),
            registry,
        }
    }

    /// Zero series for every line and steering class, so a dashboard shows 0 moves and 0
    /// failovers rather than nothing before the first one.
    pub fn declare<'a>(
        &self,
        lines: impl IntoIterator<Item = &'a str>,
        classes: impl IntoIterator<Item = &'a str>,
    ) {
        for line in lines {
            self.failovers.with_label_values(&[line]);
        }
        for class in classes {
            self.moves.with_label_values(&[class]);
        }
    }

    /// Updates the metrics an event of the daemon tells about.
    pub fn observe(&self, event: &AgentEvent) {
        match event {
            AgentEvent::Summary { summary } => {
                let line = [summary.line.as_str()];
                let short = &summary.short;
                self.line_loss
                    .with_label_values(&line)
                    .set(short.loss.ratio);
                if let Some(rtt) = &short.rtt_ms {
                    self.line_rtt.with_label_values(&line).set(rtt.p50 / 1000.0);
                }
                if let Some(jitter) = short.jitter_ms {
                    self.line_jitter
                        .with_label_values(&line)
                        .set(jitter / 1000.0);
                }
                for health in &summary.health {
                    self.set_health(&summary.line, &health.sla, health.state);
                }
            }
            AgentEvent::Health { transition, .. } => {
                self.set_health(&transition.line, &transition.sla, transition.to);
            }
            AgentEvent::Move {
                r#move, placement, ..
            } => {
                self.moves.with_label_values(&[r#move.class.as_str()]).inc();
                self.set_placement(placement);
            }
            AgentEvent::Failover {
                line, placement, ..
            } => {
                self.failovers.with_label_values(&[line.as_str()]).inc();
                self.set_placement(placement);
            }
            AgentEvent::Failback { placement, .. } => {
                self.failbacks.inc();
                self.set_placement(placement);
            }
            AgentEvent::Applied {
                version, placement, ..
            } => {
                self.set_ruleset_version(*version);
                self.set_placement(placement);
            }
            AgentEvent::Error { .. } => self.errors.inc(),
            AgentEvent::Ready { .. } => {}
        }
    }

    fn set_health(&self, line: &str, sla: &str, state: HealthState) {
        for candidate in STATES {
            self.line_health
                .with_label_values(&[line, sla, &candidate.to_string()])
                .set(i64::from(candidate == state));
        }
    }

    /// The line each class takes now (replaces what was there).
    pub fn set_placement(&self, placement: &BTreeMap<String, String>) {
        self.class_line.reset();
        for (class, line) in placement {
            self.class_line
                .with_label_values(&[class.as_str(), line.as_str()])
                .set(1);
        }
    }

    pub fn set_ruleset_version(&self, version: u64) {
        self.ruleset_version
            .set(i64::try_from(version).unwrap_or(i64::MAX));
    }

    /// A DPI verdict of `class` installed (or refused).
    pub fn verdict_installed(&self, class: &str, ok: bool) {
        if ok {
            self.installed.with_label_values(&[class]).inc();
        } else {
            self.install_errors.inc();
        }
    }

    /// One batch of verdicts took `seconds` to install.
    pub fn install_took(&self, seconds: f64) {
        self.install_seconds.observe(seconds);
    }

    /// The classifier's cumulative counters and per-class statistics now.
    pub fn observe_classifier(
        &self,
        counters: ClassifierCounters,
        table: TableCounters,
        live_flows: usize,
        stats: &ClassStats,
    ) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let step = |now: u64, before: u64| now.saturating_sub(before);
        self.packets
            .inc_by(step(counters.packets, seen.counters.packets));
        self.undecoded
            .inc_by(step(counters.undecoded, seen.counters.undecoded));
        self.verdicts
            .inc_by(step(counters.verdicts, seen.counters.verdicts));
        self.flows.inc_by(step(table.created, seen.table.created));
        self.flows_evicted
            .inc_by(step(table.evicted, seen.table.evicted));
        seen.counters = counters;
        seen.table = table;
        self.flows_live
            .set(i64::try_from(live_flows).unwrap_or(i64::MAX));
        for (class, c) in &stats.classes {
            self.class_flows
                .with_label_values(&[class.as_str()])
                .set(i64::try_from(c.flows).unwrap_or(i64::MAX));
            for (direction, now) in [("up", c.bytes_up), ("down", c.bytes_down)] {
                let before = seen
                    .bytes
                    .insert((class.clone(), direction), now)
                    .unwrap_or(0);
                self.class_bytes
                    .with_label_values(&[class.as_str(), direction])
                    .inc_by(step(now, before));
            }
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("encoding to a Vec cannot fail");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}

/// Serves `GET /metrics` on `listener` until the task is aborted.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: AgentMetrics,
) -> std::io::Result<()> {
    use axum::routing::get;
    let app = axum::Router::new().route(
        "/metrics",
        get(move || {
            let metrics = metrics.clone();
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    metrics.render(),
                )
            }
        }),
    );
    axum::serve(listener, app).await
}

/// Binds `addr` (inside `netns` when given) and serves the metrics there on a task.
pub fn spawn(
    addr: SocketAddr,
    netns: Option<&str>,
    metrics: AgentMetrics,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener = super::netns::run_in(netns, || -> std::io::Result<std::net::TcpListener> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        Ok(listener)
    })?
    .map_err(|e| anyhow::anyhow!("cannot listen on {addr} for /metrics: {e}"))?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    Ok(tokio::spawn(async move {
        if let Err(error) = serve(listener, metrics).await {
            tracing::error!(%error, "/metrics server stopped");
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classifier::ClassCounters;

    #[test]
    fn classifier_totals_become_counter_steps() {
        let metrics = AgentMetrics::new("branch-1");
        let stats = |up| ClassStats {
            classes: vec![(
                "meetings".into(),
                ClassCounters {
                    flows: 1,
                    packets: 3,
                    bytes_up: up,
                    bytes_down: 10,
                },
            )],
        };
        let counters = ClassifierCounters {
            packets: 5,
            undecoded: 0,
            verdicts: 2,
        };
        metrics.observe_classifier(counters, TableCounters::default(), 1, &stats(100));
        metrics.observe_classifier(counters, TableCounters::default(), 1, &stats(250));
        let text = metrics.render();
        assert!(
            text.contains(
                "wansteer_agent_class_bytes_total{class=\"meetings\",direction=\"up\",site=\"branch-1\"} 250"
            ),
            "{text}"
        );
        assert!(
            text.contains("wansteer_agent_classifier_packets_total{site=\"branch-1\"} 5"),
            "{text}"
        );
    }

    #[test]
    fn placement_shows_only_the_current_line_of_each_class() {
        let metrics = AgentMetrics::new("b");
        metrics.set_placement(&[("voice".to_string(), "mpls".to_string())].into());
        metrics.set_placement(&[("voice".to_string(), "inet".to_string())].into());
        let text = metrics.render();
        assert!(text.contains("class=\"voice\",line=\"inet\""), "{text}");
        assert!(!text.contains("line=\"mpls\""), "{text}");
    }
}
