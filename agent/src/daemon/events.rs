//! The daemon's structured output: one line per event, for operators (text) and for the
//! lab demo and other tools (`--json`: one JSON object per line).

use std::collections::BTreeMap;

use serde::Serialize;
use wansteer_wire::report::{HealthTransition, LineSummary};

use super::steering::Move;

/// Something the agent did or saw.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AgentEvent {
    /// Policy applied, probes and reflector running.
    Ready {
        lines: Vec<String>,
        reflector: String,
    },
    /// A class moved to another line (SLA breach, fail-back).
    Move {
        #[serde(flatten)]
        r#move: Move,
        text: String,
        apply_ms: f64,
        /// The line each class takes now, by class.
        placement: BTreeMap<String, String>,
    },
    /// A line died: every class on it went to its backup (local fast failover).
    Failover {
        line: String,
        classes: Vec<String>,
        text: String,
        apply_ms: f64,
        placement: BTreeMap<String, String>,
    },
    /// Lines routed around are used again after their hold-down.
    Failback {
        lines: Vec<String>,
        apply_ms: f64,
        placement: BTreeMap<String, String>,
    },
    /// A rule set from the controller is in force.
    Applied {
        version: u64,
        hash: String,
        apply_ms: f64,
        text: String,
        placement: BTreeMap<String, String>,
    },
    /// A health transition of one line for one SLA class.
    Health {
        transition: HealthTransition,
        text: String,
    },
    /// A line's periodic measurement.
    Summary { summary: Box<LineSummary> },
    /// Something went wrong; what was working stays.
    Error { text: String },
}

/// Writes events to stdout: text for people, or JSON lines.
#[derive(Debug, Clone)]
pub struct EventLog {
    pub site: String,
    pub json: bool,
    pub summaries: bool,
    /// Fed with every event, when `/metrics` is served.
    pub metrics: Option<super::metrics::AgentMetrics>,
}

#[derive(Serialize)]
struct Stamped<'a> {
    t_unix_ms: u64,
    site: &'a str,
    #[serde(flatten)]
    event: &'a AgentEvent,
}

impl EventLog {
    pub fn emit(&self, event: AgentEvent) {
        use std::io::Write as _;
        if let Some(metrics) = &self.metrics {
            metrics.observe(&event);
        }
        if matches!(event, AgentEvent::Summary { .. }) && !self.summaries {
            return;
        }
        let t_unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let line = if self.json {
            serde_json::to_string(&Stamped {
                t_unix_ms,
                site: &self.site,
                event: &event,
            })
            .unwrap_or_else(|e| format!("{{\"kind\":\"error\",\"text\":\"{e}\"}}"))
        } else {
            match &event {
                AgentEvent::Ready { lines, reflector } => format!(
                    "{}: ready; probing {} ; reflector on {reflector}",
                    self.site,
                    lines.join(", ")
                ),
                AgentEvent::Move { text, apply_ms, .. } => {
                    tracing::warn!(site = %self.site, "move {text}");
                    format!("{}: move {text} (applied in {apply_ms:.0} ms)", self.site)
                }
                AgentEvent::Failover { text, apply_ms, .. } => {
                    tracing::warn!(site = %self.site, "failover {text}");
                    format!(
                        "{}: failover {text} (applied in {apply_ms:.0} ms)",
                        self.site
                    )
                }
                AgentEvent::Failback {
                    lines, apply_ms, ..
                } => format!(
                    "{}: fail-back: {} in use again after the hold-down ({apply_ms:.0} ms)",
                    self.site,
                    lines.join(", ")
                ),
                AgentEvent::Applied { text, apply_ms, .. } => {
                    format!("{}: applied {text} in {apply_ms:.0} ms", self.site)
                }
                AgentEvent::Health { text, .. } => format!("{}: health {text}", self.site),
                AgentEvent::Summary { summary } => format!(
                    "{}: {} loss {:.1}% rtt {}",
                    self.site,
                    summary.line,
                    summary.short.loss.ratio * 100.0,
                    summary
                        .short
                        .rtt_ms
                        .as_ref()
                        .map_or("-".into(), |r| format!("{:.1} ms", r.p50))
                ),
                AgentEvent::Error { text } => {
                    tracing::error!(site = %self.site, "{text}");
                    format!("{}: error {text}", self.site)
                }
            }
        };
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
}
