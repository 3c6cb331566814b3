//! One agent's session with the controller: what the agent says when it connects, what it
//! reports while connected, how it acks a rule set, and what the controller streams down.
//!
//! Transport (HTTP under `/api/v1/agent/`, bearer token per site):
//!
//! ```text
//!   agent                                   controller
//!     | POST register  {site, lines, running} ->|
//!     |<- RegisterReply {published}             |
//!     | GET  rules?version=V&hash=H  (SSE)    ->|   long-lived
//!     |<- event: in-sync   {version, hash}      |   when H is already current
//!     |<- event: rule-set  {RuleSet}            |   on every new version
//!     |<- event: restarting {reconnect_within_ms} |  last event before a graceful shutdown
//!     | POST ack {version, hash, outcome}     ->|
//!     | POST report {lines, events, demand}   ->|   about once a second
//! ```
//!
//! Measurements here are the controller's compact view of a line; the prober's full
//! summaries and transitions are [`crate::report`]'s. The conversions between the two
//! vocabularies live here, once ([`LineMeasurement::from_summary`],
//! [`HealthEvent::from_transition`], `From<HealthState> for LineHealth`), so every agent
//! reports the same figures the same way.

use serde::{Deserialize, Serialize};

use crate::report::{HealthState, HealthTransition, LineSummary};
use crate::ruleset::RuleSet;

/// Path prefix of the agent endpoints, below the controller's base URL.
pub const AGENT_API: &str = "/api/v1/agent";
/// SSE event name carrying a full [`RuleSet`].
pub const EVENT_RULE_SET: &str = "rule-set";
/// SSE event name carrying an [`InSync`]: the agent already runs the current rule set.
pub const EVENT_IN_SYNC: &str = "in-sync";
/// SSE event name carrying a [`Restarting`]: the controller is shutting down gracefully.
pub const EVENT_RESTARTING: &str = "restarting";

/// Sent once per connection: who the agent is and what it runs now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Register {
    /// [`crate::PROTOCOL_VERSION`] of the agent.
    pub protocol: u32,
    pub site: String,
    /// The agent software version, shown in the API.
    pub agent_version: String,
    /// The WAN lines the agent found on its site.
    pub lines: Vec<LineRegistration>,
    /// The rule set the agent has applied, if any (a restarted agent reports what it adopted).
    pub running: Option<RuleSetId>,
}

/// One WAN line as the agent sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineRegistration {
    pub name: String,
    pub interface: String,
}

/// Which rule set: version plus content hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleSetId {
    pub version: u64,
    pub hash: String,
}

impl RuleSetId {
    pub fn of(rule_set: &RuleSet) -> Self {
        RuleSetId {
            version: rule_set.version,
            hash: rule_set.hash.clone(),
        }
    }
}

/// The controller's answer to [`Register`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegisterReply {
    pub protocol: u32,
    /// The rule set the controller has published for the site, if any.
    pub published: Option<RuleSetId>,
    /// How often the controller wants reports, milliseconds.
    pub report_interval_ms: u64,
}

/// What an agent reports, about once a second.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Report {
    pub site: String,
    /// Wall-clock time of the report, milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// Latest measurement summary per line.
    pub lines: Vec<LineMeasurement>,
    /// Health changes since the previous report.
    pub events: Vec<HealthEvent>,
    /// Measured demand per class (from the classifier and the HTB counters).
    pub demand: Vec<ClassDemand>,
}

/// One line's measurement summary over the agent's current window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LineMeasurement {
    pub line: String,
    /// Mean round-trip time, milliseconds.
    pub rtt_ms: f64,
    /// Loss in per cent (0–100).
    pub loss_percent: f64,
    /// The 95% confidence interval of `loss_percent` (lower, upper), when the agent's
    /// estimator gives one. The controller judges SLAs on it, not on the raw ratio: 2 lost
    /// of 80 probes is not evidence of a 1% breach (DESIGN §4).
    #[serde(default)]
    pub loss_bounds_percent: Option<(f64, f64)>,
    /// Jitter (delay variation), milliseconds.
    pub jitter_ms: f64,
    /// Probes behind the figures.
    pub samples: u64,
    pub health: LineHealth,
}

/// Line health as the agent's state machine sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LineHealth {
    Up,
    Degraded,
    Down,
    Unknown,
}

impl LineHealth {
    pub const ALL: [LineHealth; 4] = [
        LineHealth::Up,
        LineHealth::Degraded,
        LineHealth::Down,
        LineHealth::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LineHealth::Up => "up",
            LineHealth::Degraded => "degraded",
            LineHealth::Down => "down",
            LineHealth::Unknown => "unknown",
        }
    }
}

impl From<HealthState> for LineHealth {
    fn from(state: HealthState) -> LineHealth {
        match state {
            HealthState::Up => LineHealth::Up,
            HealthState::Degraded => LineHealth::Degraded,
            HealthState::Down => LineHealth::Down,
        }
    }
}

impl LineMeasurement {
    /// One line's figures for the controller from a prober's summary. RTT and jitter come
    /// from the short (fail-fast) window so latency spikes show at once; loss from the long
    /// window, which holds enough probes to tell 1% from 5% (DESIGN §4), or the short one
    /// while the long one is empty. Health is the summary's state for `sla` (the agent's
    /// line-reachability machine), `Unknown` when it has none.
    pub fn from_summary(summary: &LineSummary, sla: &str) -> LineMeasurement {
        let loss_window = if summary.long.probes > 0 {
            &summary.long
        } else {
            &summary.short
        };
        LineMeasurement {
            line: summary.line.clone(),
            rtt_ms: summary.short.rtt_ms.map_or(0.0, |r| r.p50),
            loss_percent: loss_window.loss.ratio * 100.0,
            loss_bounds_percent: Some((
                loss_window.loss.lower * 100.0,
                loss_window.loss.upper * 100.0,
            )),
            jitter_ms: summary.short.jitter_ms.unwrap_or(0.0),
            samples: u64::from(loss_window.probes),
            health: summary
                .health
                .iter()
                .find(|h| h.sla == sla)
                .map_or(LineHealth::Unknown, |h| h.state.into()),
        }
    }
}

impl HealthEvent {
    /// A prober's transition as the session's health event; the reason is the
    /// transition's own wording ("loss 3.1% [2.2%, 4.3%] > 1% over 2.0 s").
    pub fn from_transition(transition: &HealthTransition) -> HealthEvent {
        HealthEvent {
            line: transition.line.clone(),
            at_ms: transition.at_unix_ms,
            from: transition.from.into(),
            to: transition.to.into(),
            reason: transition.to_string(),
        }
    }
}

/// A line changed health, with why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthEvent {
    pub line: String,
    pub at_ms: u64,
    pub from: LineHealth,
    pub to: LineHealth,
    pub reason: String,
}

/// Measured demand of one class, bits per second.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassDemand {
    pub class: String,
    /// The line it was measured on, if per line.
    pub line: Option<String>,
    /// The site the traffic goes to, when the agent knows it (the controller places demand
    /// on paths between site pairs; demand without a destination only informs).
    #[serde(default)]
    pub destination: Option<String>,
    pub bps: u64,
}

/// The agent's answer to a pushed rule set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    pub site: String,
    pub version: u64,
    pub hash: String,
    pub outcome: AckOutcome,
}

/// Whether the agent applied the rule set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "lowercase")]
pub enum AckOutcome {
    Applied,
    /// Refused or failed; the agent keeps running its last good rule set.
    Failed {
        error: String,
    },
}

/// The agent already runs the rule set the controller publishes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InSync {
    pub version: u64,
    pub hash: String,
}

/// The controller is going away on purpose (a restart or an upgrade) and expects to be back
/// soon: reconnect at a time drawn uniformly from the next `reconnect_within_ms`, again and
/// again while it is not back, instead of backing off exponentially as after an outage.
/// The controller sizes the window to its number of agents, so their reconnects arrive
/// spread at a rate it can take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Restarting {
    pub reconnect_within_ms: u64,
}

/// What arrives on the push stream, decoded from its SSE event name and data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Push {
    RuleSet(Box<RuleSet>),
    InSync(InSync),
    Restarting(Restarting),
}

/// A push event that could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("unknown push event `{0}`")]
    UnknownEvent(String),
    #[error("malformed `{event}` data: {source}")]
    Malformed {
        event: String,
        source: serde_json::Error,
    },
}

impl Push {
    /// Decodes one SSE event (name and data) from the push stream.
    pub fn decode(event: &str, data: &str) -> Result<Push, PushError> {
        let malformed = |source| PushError::Malformed {
            event: event.to_string(),
            source,
        };
        match event {
            EVENT_RULE_SET => serde_json::from_str(data)
                .map(|rule_set| Push::RuleSet(Box::new(rule_set)))
                .map_err(malformed),
            EVENT_IN_SYNC => serde_json::from_str(data)
                .map(Push::InSync)
                .map_err(malformed),
            EVENT_RESTARTING => serde_json::from_str(data)
                .map(Push::Restarting)
                .map_err(malformed),
            other => Err(PushError::UnknownEvent(other.to_string())),
        }
    }

    /// The SSE event name and JSON data for this push.
    pub fn encode(&self) -> (&'static str, String) {
        match self {
            Push::RuleSet(rule_set) => (
                EVENT_RULE_SET,
                serde_json::to_string(rule_set).expect("rule sets always serialise"),
            ),
            Push::InSync(in_sync) => (
                EVENT_IN_SYNC,
                serde_json::to_string(in_sync).expect("in-sync always serialises"),
            ),
            Push::Restarting(restarting) => (
                EVENT_RESTARTING,
                serde_json::to_string(restarting).expect("restarting always serialises"),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(health: Vec<crate::report::SlaHealth>, long_probes: u32) -> LineSummary {
        use crate::report::{DelayPercentiles, LossEstimate, WindowSummary};
        let window = |ratio: f64, probes: u32| WindowSummary {
            probes,
            loss: LossEstimate {
                ratio,
                lower: ratio / 2.0,
                upper: ratio * 2.0,
            },
            rtt_ms: Some(DelayPercentiles {
                p50: 21.0,
                ..DelayPercentiles::default()
            }),
            jitter_ms: Some(1.5),
            ..WindowSummary::default()
        };
        LineSummary {
            line: "mpls".into(),
            at_unix_ms: 1,
            health,
            short: window(0.10, 40),
            long: window(0.05, long_probes),
            counters: Default::default(),
            recent_rtt_ms: None,
        }
    }

    #[test]
    fn a_prober_summary_becomes_the_controllers_line_measurement() {
        use crate::report::SlaHealth;
        let sla = |name: &str, state| SlaHealth {
            sla: name.into(),
            state,
            penalty: 0.0,
            suppressed: false,
        };
        let full = summary(
            vec![
                sla("voice", HealthState::Degraded),
                sla("line", HealthState::Up),
            ],
            600,
        );
        let m = LineMeasurement::from_summary(&full, "line");
        assert_eq!(
            m.health,
            LineHealth::Up,
            "the named SLA's state, not the first"
        );
        assert!(
            (m.loss_percent - 5.0).abs() < 1e-9,
            "loss from the long window"
        );
        assert_eq!(m.loss_bounds_percent, Some((2.5, 10.0)));
        assert_eq!((m.rtt_ms, m.jitter_ms, m.samples), (21.0, 1.5, 600));
        // A long window without probes yet: the short one's loss; no such SLA: unknown.
        let young = summary(vec![], 0);
        let m = LineMeasurement::from_summary(&young, "line");
        assert!((m.loss_percent - 10.0).abs() < 1e-9);
        assert_eq!((m.samples, m.health), (40, LineHealth::Unknown));
        assert_eq!(
            LineHealth::from(HealthState::Degraded),
            LineHealth::Degraded
        );
    }

    #[test]
    fn a_prober_transition_becomes_a_health_event_with_its_reason() {
        let transition = HealthTransition {
            line: "inet".into(),
            sla: "line".into(),
            at_unix_ms: 7,
            elapsed_ms: 7,
            from: HealthState::Up,
            to: HealthState::Down,
            reasons: vec![crate::report::HealthReason::Outage {
                missing: 5,
                silent_ms: 250,
            }],
        };
        let event = HealthEvent::from_transition(&transition);
        assert_eq!((event.from, event.to), (LineHealth::Up, LineHealth::Down));
        assert_eq!((event.line.as_str(), event.at_ms), ("inet", 7));
        assert_eq!(event.reason, transition.to_string());
    }

    #[test]
    fn ack_outcome_is_tagged() {
        let ack = Ack {
            site: "b1".into(),
            version: 3,
            hash: "ab".into(),
            outcome: AckOutcome::Failed {
                error: "nft failed".into(),
            },
        };
        let text = serde_json::to_string(&ack).unwrap();
        assert!(text.contains(r#""result":"failed""#), "{text}");
        assert_eq!(serde_json::from_str::<Ack>(&text).unwrap(), ack);
    }

    #[test]
    fn push_round_trips_and_refuses_garbage() {
        let push = Push::InSync(InSync {
            version: 7,
            hash: "cafe".into(),
        });
        let (event, data) = push.encode();
        assert_eq!(Push::decode(event, &data).unwrap(), push);
        let restarting = Push::Restarting(Restarting {
            reconnect_within_ms: 2000,
        });
        let (event, data) = restarting.encode();
        assert_eq!(
            (event, data.as_str()),
            ("restarting", r#"{"reconnect_within_ms":2000}"#)
        );
        assert_eq!(Push::decode(event, &data).unwrap(), restarting);
        assert!(matches!(
            Push::decode("rule-set", "{not json"),
            Err(PushError::Malformed { .. })
        ));
        assert!(matches!(
            Push::decode("reboot", "{}"),
            Err(PushError::UnknownEvent(_))
        ));
    }
}
