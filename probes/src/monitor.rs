//! `LineMonitor`: one line's prober core, sans-IO. It owns the probe tracker and one
//! `LineHealth` per SLA class, builds the packets to send, digests replies, and turns
//! evidence into reports: a summary at a fixed cadence and an event per transition.
//!
//! Time comes in as `now` (monotonic, since the prober started); the wall clock is only
//! used for NTP timestamps and report times, as `wall_start + now`, so the whole core runs
//! the same under tokio's paused test clock.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use wansteer_wire::report::{LineReport, LineSummary, ProbeCounters, SlaHealth};

use crate::health::{HealthConfig, LineHealth, Sla};
use crate::packet::{ErrorEstimate, NtpTimestamp, SenderPacket};
use crate::tracker::{Evidence, ProbeTracker, ReplyOutcome, TrackerConfig};

/// Everything a line's prober core needs to know.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MonitorConfig {
    /// Line name, copied into every report.
    pub line: String,
    /// Time between probes (default 50 ms: 20 probes/s).
    pub interval: Duration,
    /// Time between summaries.
    pub summary_every: Duration,
    /// Windows and timeouts.
    pub tracker: TrackerConfig,
    /// Health timers and margins (shared by the SLA classes).
    pub health: HealthConfig,
    /// SLA classes judged on this line.
    pub slas: Vec<Sla>,
    /// Error estimate put in our packets.
    pub clock_error: Duration,
}

impl MonitorConfig {
    /// Defaults for a line: 20 probes/s, a summary per second, one SLA of 1% loss.
    pub fn new(line: impl Into<String>) -> Self {
        Self {
            line: line.into(),
            interval: Duration::from_millis(50),
            summary_every: Duration::from_secs(1),
            tracker: TrackerConfig::default(),
            health: HealthConfig::default(),
            slas: vec![Sla::loss_only("default", 0.01)],
            clock_error: Duration::from_millis(10),
        }
    }

    /// Checks the configuration is usable; the message names the bad field.
    pub fn validate(&self) -> Result<(), String> {
        if self.interval.is_zero() {
            return Err("probe interval must be above zero".into());
        }
        if self.summary_every.is_zero() {
            return Err("summary cadence must be above zero".into());
        }
        let t = &self.tracker;
        if t.short_window.is_zero() || t.long_window < t.short_window {
            return Err("windows must satisfy 0 < short <= long".into());
        }
        if t.min_loss_timeout > t.max_loss_timeout {
            return Err("min_loss_timeout exceeds max_loss_timeout".into());
        }
        self.health.validate()?;
        self.slas.iter().try_for_each(Sla::validate)
    }
}

/// One line's prober core.
#[derive(Debug)]
pub struct LineMonitor {
    config: MonitorConfig,
    wall_start: Duration,
    error_estimate: ErrorEstimate,
    tracker: ProbeTracker,
    health: Vec<LineHealth>,
    next_summary: Duration,
    last_poll: Duration,
}

impl LineMonitor {
    /// A monitor whose `now = 0` is `wall_start` after the Unix epoch.
    pub fn new(config: MonitorConfig, wall_start: Duration) -> Result<Self, String> {
        config.validate()?;
        let health = config
            .slas
            .iter()
            .map(|sla| LineHealth::new(&config.line, sla.clone(), config.health.clone()))
            .collect();
        Ok(Self {
            error_estimate: ErrorEstimate::unsynchronized(config.clock_error),
            tracker: ProbeTracker::new(config.tracker.clone()),
            next_summary: config.summary_every,
            last_poll: Duration::ZERO,
            wall_start,
            health,
            config,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &MonitorConfig {
        &self.config
    }

    /// Our clock as NTP at `now`.
    pub fn ntp_at(&self, now: Duration) -> NtpTimestamp {
        NtpTimestamp::from_unix_duration(self.wall_start + now)
    }

    /// The probe to send at `now`, recorded as sent.
    pub fn on_send(&mut self, now: Duration) -> SenderPacket {
        let ntp = self.ntp_at(now);
        self.tracker.on_send(now, ntp, self.error_estimate)
    }

    /// The probe `sequence` could not be sent.
    pub fn on_send_failed(&mut self, sequence: u32) {
        self.tracker.on_send_failed(sequence);
    }

    /// A datagram received at `now`; `from_reflector` is false when its source address
    /// is not the reflector's.
    pub fn on_datagram(
        &mut self,
        now: Duration,
        bytes: &[u8],
        from_reflector: bool,
    ) -> ReplyOutcome {
        if !from_reflector {
            self.tracker.on_foreign_source();
            return ReplyOutcome::Foreign;
        }
        let ntp = self.ntp_at(now);
        self.tracker.on_datagram(now, ntp, bytes)
    }

    /// A timer the driver set for `scheduled` fired at `now`. Much later than asked (more
    /// than a probe interval and 10 ms) means this process was not scheduled: a host
    /// stall, not the line's silence — see [`ProbeTracker::on_stall`]. Returns whether it
    /// was taken for a stall.
    pub fn on_timer(&mut self, scheduled: Duration, now: Duration) -> bool {
        let tolerance = self.config.interval + Duration::from_millis(10);
        let stalled = now.saturating_sub(scheduled) > tolerance;
        if stalled {
            self.tracker.on_stall(now);
        }
        stalled
    }

    /// Scheduling stalls of this process seen so far.
    pub fn stalls(&self) -> u64 {
        self.tracker.stalls()
    }

    /// Evaluates health at `now`; returns transitions and, when due, a summary.
    pub fn poll(&mut self, now: Duration) -> Vec<LineReport> {
        self.last_poll = self.last_poll.max(now);
        let summary_due = now >= self.next_summary;
        let evidence = self.tracker.evidence(now, summary_due);
        let mut reports = self.judge(&evidence);
        if !reports.is_empty() && !summary_due {
            // A transition goes out with fresh figures: whoever acts on it (the controller)
            // should not decide on a summary up to a second old.
            let fresh = self.tracker.evidence(now, true);
            reports.push(LineReport::Summary(Box::new(self.summary(&fresh))));
        }
        if summary_due {
            reports.push(LineReport::Summary(Box::new(self.summary(&evidence))));
            while self.next_summary <= now {
                self.next_summary += self.config.summary_every;
            }
        }
        reports
    }

    /// A summary at `now`, whatever the cadence (e.g. the last one before stopping).
    pub fn summary_now(&mut self, now: Duration) -> LineSummary {
        let evidence = self.tracker.evidence(now, true);
        self.summary(&evidence)
    }

    /// The next instant `poll` has something to decide: the outage timer or a summary.
    pub fn next_wakeup(&self) -> Duration {
        let silence = self.tracker.silent_since() + self.config.health.min_silence;
        [
            Some(self.next_summary),
            self.tracker.next_overdue(self.last_poll),
            Some(silence).filter(|&s| s > self.last_poll),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(self.next_summary)
    }

    /// Wall-clock time (since the Unix epoch) of `now = 0`.
    pub fn wall_start(&self) -> Duration {
        self.wall_start
    }

    /// Counters since start.
    pub fn counters(&self) -> ProbeCounters {
        self.tracker.counters()
    }

    /// The state machines, one per SLA class.
    pub fn health(&self) -> &[LineHealth] {
        &self.health
    }

    /// Time a reply may take before its probe counts as lost.
    pub fn loss_timeout(&self) -> Duration {
        self.tracker.loss_timeout()
    }

    fn judge(&mut self, evidence: &Evidence) -> Vec<LineReport> {
        let at_unix_ms = (self.wall_start + evidence.now).as_millis() as u64;
        self.health
            .iter_mut()
            .filter_map(|h| h.evaluate(evidence))
            .map(|mut t| {
                t.at_unix_ms = at_unix_ms;
                LineReport::Transition(t)
            })
            .collect()
    }

    fn summary(&self, evidence: &Evidence) -> LineSummary {
        LineSummary {
            line: self.config.line.clone(),
            at_unix_ms: (self.wall_start + evidence.now).as_millis() as u64,
            health: self
                .health
                .iter()
                .map(|h| SlaHealth {
                    sla: h.sla().name.clone(),
                    state: h.state(),
                    penalty: h.penalty(),
                    suppressed: h.suppressed(),
                })
                .collect(),
            short: evidence.short.clone(),
            long: evidence.long.clone(),
            recent_rtt_ms: evidence.recent_rtt_p50_ms,
            counters: self.tracker.counters(),
        }
    }
}
