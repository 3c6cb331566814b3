//! Line measurement reports an agent sends up: a per-line summary at a configurable
//! cadence, and an immediate event on every health transition.
//!
//! Figures are plain numbers in milliseconds and fractions (0.01 = 1% loss) so that any
//! consumer (controller, dashboard, `jq`) reads them without our types. Every transition
//! carries its reasons as data; `Display` renders them for people
//! ("loss 3.1% [2.2%, 4.3%] > 1% over 2.0 s").

use std::fmt;

use serde::{Deserialize, Serialize};

/// Health of one line for one SLA class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthState {
    /// Meets the SLA.
    Up,
    /// Answers probes but breaks the SLA (loss, latency or jitter), or is held down
    /// while it proves itself again.
    Degraded,
    /// Not answering probes.
    Down,
}

impl fmt::Display for HealthState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Up => "up",
            Self::Degraded => "degraded",
            Self::Down => "down",
        })
    }
}

/// One message from a line prober.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LineReport {
    /// Periodic summary.
    Summary(Box<LineSummary>),
    /// A health transition, sent the moment it happens.
    Transition(HealthTransition),
}

/// Periodic per-line summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LineSummary {
    /// Line name (as configured on the agent).
    pub line: String,
    /// Wall-clock time of the summary, ms since the Unix epoch.
    pub at_unix_ms: u64,
    /// Current state per SLA class, by SLA name.
    pub health: Vec<SlaHealth>,
    /// Short window (fail-fast evidence).
    pub short: WindowSummary,
    /// Long window (fine SLA evidence, recovery).
    pub long: WindowSummary,
    /// Median RTT of the newest answers (≈ 15), ms: a step in delay shows here within a
    /// few probes, in the short window's median only after half of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recent_rtt_ms: Option<f64>,
    /// Counters since the prober started.
    pub counters: ProbeCounters,
}

/// State of a line for one SLA class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlaHealth {
    /// SLA class name.
    pub sla: String,
    /// Current state.
    pub state: HealthState,
    /// Flap-dampening penalty now (0 when the line has not flapped lately).
    pub penalty: f64,
    /// The line is held away from `Up` by flap dampening.
    pub suppressed: bool,
}

/// Estimates over the probes sent within one window.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct WindowSummary {
    /// Window length, ms.
    pub window_ms: u64,
    /// Probes sent in the window whose fate is known (answered or declared lost).
    pub probes: u32,
    /// Of those, declared lost.
    pub lost: u32,
    /// Sent in the window but still within their reply timeout.
    pub pending: u32,
    /// Loss ratio with its 95% Wilson interval (fractions).
    pub loss: LossEstimate,
    /// Round-trip time (reflector turnaround removed), ms; `None` without replies.
    pub rtt_ms: Option<DelayPercentiles>,
    /// RFC 5481 delay variation vs the minimum, 99th percentile, of RTT / forward /
    /// reverse one-way delay, ms. Clock-offset free.
    pub pdv_p99_ms: Option<f64>,
    /// Forward (sender → reflector) PDV p99, ms.
    pub fwd_pdv_p99_ms: Option<f64>,
    /// Reverse (reflector → sender) PDV p99, ms.
    pub rev_pdv_p99_ms: Option<f64>,
    /// RFC 3550 interarrival jitter over RTT, ms.
    pub jitter_ms: Option<f64>,
    /// RFC 3550 jitter of the forward one-way transit, ms.
    pub fwd_jitter_ms: Option<f64>,
    /// RFC 3550 jitter of the reverse one-way transit, ms.
    pub rev_jitter_ms: Option<f64>,
    /// Replies that arrived after a reply to a later probe.
    pub reordered: u32,
    /// Extra copies of replies already received.
    pub duplicates: u32,
}

/// A loss ratio with its 95% confidence interval, fractions.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct LossEstimate {
    /// Point estimate.
    pub ratio: f64,
    /// Lower bound.
    pub lower: f64,
    /// Upper bound.
    pub upper: f64,
}

/// Delay percentiles, ms.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct DelayPercentiles {
    /// Minimum.
    pub min: f64,
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Maximum.
    pub max: f64,
}

/// Counters since the prober started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ProbeCounters {
    /// Probes sent.
    pub sent: u64,
    /// Distinct probes answered.
    pub answered: u64,
    /// Replies to a probe already answered (duplicates and replays), dropped.
    pub duplicates: u64,
    /// Replies that arrived after a reply to a later probe.
    pub reordered: u64,
    /// Datagrams that are not STAMP reflector packets (too short), dropped.
    pub malformed: u64,
    /// Replies of another session: unknown sequence, wrong echoed timestamp, or from
    /// an address other than the reflector's, dropped.
    pub foreign: u64,
    /// Answers that came after their probe had been declared lost.
    pub late: u64,
    /// Probes that could not be sent (socket error).
    pub send_errors: u64,
}

/// A health transition of one line for one SLA class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthTransition {
    /// Line name.
    pub line: String,
    /// SLA class name.
    pub sla: String,
    /// Wall-clock time, ms since the Unix epoch.
    pub at_unix_ms: u64,
    /// Time since the prober started, ms (monotonic; orders events of one prober).
    pub elapsed_ms: u64,
    /// State before.
    pub from: HealthState,
    /// State after.
    pub to: HealthState,
    /// Why, as data; at least one entry.
    pub reasons: Vec<HealthReason>,
}

impl fmt::Display for HealthTransition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} [{}] {} -> {}: ",
            self.line, self.sla, self.from, self.to
        )?;
        for (i, reason) in self.reasons.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{reason}")?;
        }
        Ok(())
    }
}

/// One reason for a health transition, with the evidence that decided it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "metric", rename_all = "snake_case")]
pub enum HealthReason {
    /// Loss over a window compared with a limit (fractions).
    Loss {
        /// Window, ms.
        window_ms: u64,
        /// Probes with known fate in the window.
        probes: u32,
        /// Estimate and 95% interval.
        estimate: LossEstimate,
        /// The limit compared with.
        limit: f64,
        /// `true`: the bound broke the limit; `false`: back within it.
        breached: bool,
    },
    /// Median RTT over a window compared with a limit.
    Rtt {
        /// Window, ms.
        window_ms: u64,
        /// Median RTT, ms.
        p50_ms: f64,
        /// Limit, ms.
        limit_ms: f64,
        /// Breach or back within.
        breached: bool,
    },
    /// RFC 3550 jitter over a window compared with a limit.
    Jitter {
        /// Window, ms.
        window_ms: u64,
        /// Jitter, ms.
        jitter_ms: f64,
        /// Limit, ms.
        limit_ms: f64,
        /// Breach or back within.
        breached: bool,
    },
    /// Consecutive probes unanswered past their timeout.
    Outage {
        /// Consecutive unanswered probes.
        missing: u32,
        /// Time since the last answer, ms.
        silent_ms: u64,
    },
    /// Probes are answered again.
    Answering {
        /// Consecutive answered probes.
        answered: u32,
    },
    /// Evidence stayed within the SLA for the whole hold-down.
    HeldDown {
        /// Hold-down served, ms.
        held_ms: u64,
    },
    /// Flap dampening released the line.
    Reused {
        /// Penalty now.
        penalty: f64,
        /// Reuse threshold.
        reuse: f64,
    },
}

impl fmt::Display for HealthReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cmp = |breached: bool| if breached { ">" } else { "<=" };
        match self {
            Self::Loss {
                window_ms,
                estimate,
                limit,
                breached,
                ..
            } => write!(
                f,
                "loss {} [{}, {}] {} {} over {:.1} s",
                pct(estimate.ratio),
                pct(estimate.lower),
                pct(estimate.upper),
                cmp(*breached),
                pct(*limit),
                *window_ms as f64 / 1000.0
            ),
            Self::Rtt {
                window_ms,
                p50_ms,
                limit_ms,
                breached,
            } => write!(
                f,
                "rtt p50 {p50_ms:.1} ms {} {limit_ms} ms over {:.1} s",
                cmp(*breached),
                *window_ms as f64 / 1000.0
            ),
            Self::Jitter {
                window_ms,
                jitter_ms,
                limit_ms,
                breached,
            } => write!(
                f,
                "jitter {jitter_ms:.1} ms {} {limit_ms} ms over {:.1} s",
                cmp(*breached),
                *window_ms as f64 / 1000.0
            ),
            Self::Outage { missing, silent_ms } => {
                write!(f, "{missing} probes unanswered, silent {silent_ms} ms")
            }
            Self::Answering { answered } => write!(f, "answering again ({answered} replies)"),
            Self::HeldDown { held_ms } => {
                write!(
                    f,
                    "within SLA for hold-down {:.1} s",
                    *held_ms as f64 / 1000.0
                )
            }
            Self::Reused { penalty, reuse } => {
                write!(f, "flap penalty {penalty:.0} <= reuse {reuse:.0}")
            }
        }
    }
}

/// A fraction as a short percentage: "3.1%", "1%", "0.25%".
fn pct(fraction: f64) -> String {
    let p = fraction * 100.0;
    let s = if p != 0.0 && p.abs() < 0.1 {
        format!("{p:.2}")
    } else {
        format!("{p:.1}")
    };
    let s = s.strip_suffix(".0").map(str::to_owned).unwrap_or(s);
    format!("{s}%")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_reason_reads_like_the_design_example() {
        let reason = HealthReason::Loss {
            window_ms: 2000,
            probes: 40,
            estimate: LossEstimate {
                ratio: 0.031,
                lower: 0.022,
                upper: 0.043,
            },
            limit: 0.01,
            breached: true,
        };
        assert_eq!(reason.to_string(), "loss 3.1% [2.2%, 4.3%] > 1% over 2.0 s");
    }

    #[test]
    fn transition_round_trips_through_json_with_tagged_reasons() {
        let event = LineReport::Transition(HealthTransition {
            line: "mpls".into(),
            sla: "voice".into(),
            at_unix_ms: 1_790_000_000_000,
            elapsed_ms: 1234,
            from: HealthState::Up,
            to: HealthState::Down,
            reasons: vec![HealthReason::Outage {
                missing: 3,
                silent_ms: 170,
            }],
        });
        let json = serde_json::to_string(&event).unwrap();
        assert!(json.contains(r#""kind":"transition""#), "{json}");
        assert!(json.contains(r#""metric":"outage""#), "{json}");
        assert!(json.contains(r#""to":"down""#), "{json}");
        let back: LineReport = serde_json::from_str(&json).unwrap();
        assert_eq!(back, event);
    }
}
