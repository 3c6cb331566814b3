//! Book-keeping of one line's probes: what was sent when, which replies came back, and
//! the per-window evidence the health state machine decides on.
//!
//! Sans-IO: callers pass the time (`now`, a monotonic offset since the prober started)
//! and the bytes. A reply is matched to its probe by the echoed sequence number *and*
//! the echoed transmit timestamp, so replies of another session or replays of old ones
//! are counted and dropped instead of polluting the estimates. A probe is declared lost
//! once it is older than an RTT-adaptive timeout; a late answer still counts as received.

use std::collections::VecDeque;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use wansteer_wire::report::{DelayPercentiles, LossEstimate, ProbeCounters, WindowSummary};

use crate::packet::{ErrorEstimate, NtpTimestamp, ReflectorPacket, SenderPacket};
use crate::stats::{self, InterarrivalJitter, Z95};

/// Windows and timeouts of a tracker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackerConfig {
    /// Fail-fast window.
    pub short_window: Duration,
    /// Fine-decision and recovery window.
    pub long_window: Duration,
    /// A probe unanswered this long is lost (raised to 3 × RTT p99 on slow lines).
    pub min_loss_timeout: Duration,
    /// Upper cap of the adaptive loss timeout.
    pub max_loss_timeout: Duration,
    /// A probe unanswered for RTT p99 × 1.25 + this margin is overdue (outage timer).
    pub overdue_margin: Duration,
    /// Overdue timeout used before any RTT is known.
    pub initial_overdue: Duration,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        Self {
            short_window: Duration::from_secs(2),
            long_window: Duration::from_secs(30),
            min_loss_timeout: Duration::from_millis(250),
            max_loss_timeout: Duration::from_secs(2),
            overdue_margin: Duration::from_millis(5),
            initial_overdue: Duration::from_secs(1),
        }
    }
}

/// What became of one received datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyOutcome {
    /// First answer to a probe of ours.
    Answered {
        /// The probe's sequence number.
        sequence: u32,
        /// It came after the answer to a later probe.
        reordered: bool,
        /// It came after the probe had been declared lost.
        late: bool,
    },
    /// Another copy of an answer already received (duplicate or replay): dropped.
    Duplicate,
    /// Not an answer to a probe of this session: dropped.
    Foreign,
    /// Not a STAMP reflector packet: dropped.
    Malformed,
}

/// Everything the health state machine looks at, at one instant. Plain data, so runs
/// can be recorded and replayed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// Time since the prober started.
    pub now: Duration,
    /// Short-window estimates.
    pub short: WindowSummary,
    /// Long-window estimates.
    pub long: WindowSummary,
    /// Newest run of consecutive probes unanswered past the overdue timeout.
    pub missing: u32,
    /// Newest run of consecutive answered probes (pending probes skipped).
    pub answered_run: u32,
    /// Time since the last answer (since start when none yet).
    pub silent: Duration,
}

#[derive(Debug, Clone, Copy)]
struct Reply {
    received_at: Duration,
    rtt_ns: i64,
    fwd_ns: i64,
    rev_ns: i64,
}

#[derive(Debug, Clone)]
struct ProbeRecord {
    sequence: u32,
    sent_at: Duration,
    sent_ntp: NtpTimestamp,
    reply: Option<Reply>,
    reordered: bool,
    duplicates: u32,
}

/// Probes of one session and the replies to them.
#[derive(Debug)]
pub struct ProbeTracker {
    config: TrackerConfig,
    records: VecDeque<ProbeRecord>,
    next_sequence: u32,
    highest_answered: Option<u32>,
    last_answer_at: Option<Duration>,
    rtt_p99_ns: Option<i64>,
    counters: ProbeCounters,
    history: BurstHistory,
}

/// Loss runs longer than this many probes are outages (the missed-probe timer's
/// business), not bursts: they are left out of the burstiness estimate.
const MAX_BURST: u32 = 40;

/// Loss runs of probes that left the windows, decaying with a 5-minute time constant:
/// the line's recent burstiness, used when a window holds too few runs to show it.
#[derive(Debug, Default)]
struct BurstHistory {
    lost: f64,
    runs: f64,
    at: Duration,
    run_len: u32,
}

impl BurstHistory {
    const TAU_SECS: f64 = 300.0;

    fn record(&mut self, at: Duration, lost: bool) {
        let decay = (-(at.saturating_sub(self.at)).as_secs_f64() / Self::TAU_SECS).exp();
        self.lost *= decay;
        self.runs *= decay;
        self.at = self.at.max(at);
        if lost {
            self.run_len += 1;
        } else if self.run_len > 0 {
            if self.run_len <= MAX_BURST {
                self.lost += f64::from(self.run_len);
                self.runs += 1.0;
            }
            self.run_len = 0;
        }
    }

    fn mean_burst(&self) -> Option<f64> {
        (self.runs >= 0.5).then(|| self.lost / self.runs)
    }
}

impl ProbeTracker {
    /// A tracker with no probes sent.
    pub fn new(config: TrackerConfig) -> Self {
        Self {
            config,
            records: VecDeque::new(),
            next_sequence: 0,
            highest_answered: None,
            last_answer_at: None,
            rtt_p99_ns: None,
            counters: ProbeCounters::default(),
            history: BurstHistory::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &TrackerConfig {
        &self.config
    }

    /// Counters since start.
    pub fn counters(&self) -> ProbeCounters {
        self.counters
    }

    /// Records a probe sent at `now` and returns the packet to put on the wire.
    pub fn on_send(
        &mut self,
        now: Duration,
        now_ntp: NtpTimestamp,
        error_estimate: ErrorEstimate,
    ) -> SenderPacket {
        let sequence = self.next_sequence;
        self.next_sequence = self.next_sequence.wrapping_add(1);
        self.records.push_back(ProbeRecord {
            sequence,
            sent_at: now,
            sent_ntp: now_ntp,
            reply: None,
            reordered: false,
            duplicates: 0,
        });
        self.counters.sent += 1;
        self.evict(now);
        SenderPacket {
            sequence,
            timestamp: now_ntp,
            error_estimate,
        }
    }

    /// The probe just recorded by [`on_send`](Self::on_send) never left: forget it.
    pub fn on_send_failed(&mut self, sequence: u32) {
        if self.records.back().is_some_and(|r| r.sequence == sequence) {
            self.records.pop_back();
            self.counters.sent -= 1;
        }
        self.counters.send_errors += 1;
    }

    /// A datagram from somewhere other than the reflector: counted, dropped.
    pub fn on_foreign_source(&mut self) {
        self.counters.foreign += 1;
    }

    /// Handles a datagram from the reflector received at `now` (`now_ntp` on our clock).
    pub fn on_datagram(
        &mut self,
        now: Duration,
        now_ntp: NtpTimestamp,
        bytes: &[u8],
    ) -> ReplyOutcome {
        let Ok(packet) = ReflectorPacket::decode(bytes) else {
            self.counters.malformed += 1;
            return ReplyOutcome::Malformed;
        };
        let loss_timeout = self.loss_timeout();
        let Some(index) = self.index_of(packet.sender_sequence) else {
            self.counters.foreign += 1;
            return ReplyOutcome::Foreign;
        };
        let highest = self.highest_answered;
        let record = &mut self.records[index];
        if record.sent_ntp != packet.sender_timestamp {
            self.counters.foreign += 1;
            return ReplyOutcome::Foreign;
        }
        if record.reply.is_some() {
            record.duplicates += 1;
            self.counters.duplicates += 1;
            return ReplyOutcome::Duplicate;
        }
        // RTT from our monotonic clock, minus the reflector's turnaround (T3 − T2).
        let turnaround = packet.timestamp.nanos_since(packet.receive_timestamp);
        let elapsed = now.saturating_sub(record.sent_at).as_nanos() as i64;
        let reply = Reply {
            received_at: now,
            rtt_ns: (elapsed - turnaround.max(0)).max(0),
            fwd_ns: packet.receive_timestamp.nanos_since(record.sent_ntp),
            rev_ns: now_ntp.nanos_since(packet.timestamp),
        };
        record.reply = Some(reply);
        let sequence = record.sequence;
        let reordered = highest.is_some_and(|h| seq_before(sequence, h));
        record.reordered = reordered;
        let late = now.saturating_sub(record.sent_at) >= loss_timeout;
        if !reordered {
            self.highest_answered = Some(sequence);
        }
        self.last_answer_at = Some(now);
        self.counters.answered += 1;
        self.counters.reordered += u64::from(reordered);
        self.counters.late += u64::from(late);
        ReplyOutcome::Answered {
            sequence,
            reordered,
            late,
        }
    }

    /// Computes the evidence at `now`. With `detailed`, the long window gets every
    /// estimate (and the RTT-adaptive timeouts are refreshed from it); otherwise only its
    /// loss counts, which is all the health machine reads from it — this keeps a poll per
    /// probe cheap.
    pub fn evidence(&mut self, now: Duration, detailed: bool) -> Evidence {
        self.evict(now);
        let long = if detailed || self.rtt_p99_ns.is_none() {
            let long = self.window(now, self.config.long_window);
            if let Some(rtt) = &long.rtt_ms {
                self.rtt_p99_ns = Some((rtt.p99 * 1e6) as i64);
            }
            long
        } else {
            self.loss_window(now, self.config.long_window)
        };
        let short = self.window(now, self.config.short_window);
        let (missing, answered_run) = self.runs(now);
        let silent = now.saturating_sub(self.last_answer_at.unwrap_or_default());
        Evidence {
            now,
            short,
            long,
            missing,
            answered_run,
            silent,
        }
    }

    /// The first moment after `after` at which an unanswered probe of the newest run of
    /// unanswered probes becomes overdue (the outage timer), if any.
    pub fn next_overdue(&self, after: Duration) -> Option<Duration> {
        let overdue = self.overdue_after();
        self.records
            .iter()
            .rev()
            .take_while(|r| r.reply.is_none())
            .map(|r| r.sent_at + overdue)
            .take_while(|&deadline| deadline > after)
            .last()
    }

    /// When the last answer arrived.
    pub fn last_answer_at(&self) -> Option<Duration> {
        self.last_answer_at
    }

    /// Timeout after which an unanswered probe is lost.
    pub fn loss_timeout(&self) -> Duration {
        let adaptive = self
            .rtt_p99_ns
            .map(|p99| Duration::from_nanos(p99.max(0) as u64 * 3))
            .unwrap_or_default();
        adaptive
            .max(self.config.min_loss_timeout)
            .min(self.config.max_loss_timeout)
    }

    /// Timeout after which an unanswered probe counts towards an outage.
    pub fn overdue_after(&self) -> Duration {
        match self.rtt_p99_ns {
            Some(p99) => {
                Duration::from_nanos(p99.max(0) as u64 * 5 / 4) + self.config.overdue_margin
            }
            None => self.config.initial_overdue,
        }
        .min(self.loss_timeout())
    }

    /// Mean loss-run length for a window: its own when it holds at least two bursts,
    /// else (or when larger) the line's recent history.
    fn mean_burst(&self, runs: &mut LossRuns) -> f64 {
        runs.close();
        let own = (runs.runs >= 2).then(|| f64::from(runs.lost) / f64::from(runs.runs));
        let history = self.history.mean_burst();
        own.into_iter().chain(history).fold(1.0, f64::max)
    }

    fn index_of(&self, sequence: u32) -> Option<usize> {
        let front = self.records.front()?.sequence;
        let index = sequence.wrapping_sub(front) as usize;
        (index < self.records.len()).then_some(index)
    }

    fn evict(&mut self, now: Duration) {
        let keep = self.config.long_window + self.config.max_loss_timeout;
        while self
            .records
            .front()
            .is_some_and(|r| now.saturating_sub(r.sent_at) > keep)
        {
            if let Some(r) = self.records.pop_front() {
                self.history.record(r.sent_at, r.reply.is_none());
            }
        }
    }

    /// (newest run of overdue unanswered probes, newest run of answered probes).
    fn runs(&self, now: Duration) -> (u32, u32) {
        let overdue = self.overdue_after();
        let mut missing = 0;
        for r in self.records.iter().rev() {
            match r.reply {
                Some(_) => break,
                None if now.saturating_sub(r.sent_at) >= overdue => missing += 1,
                None => {}
            }
        }
        let loss_timeout = self.loss_timeout();
        let mut answered = 0;
        for r in self.records.iter().rev() {
            match r.reply {
                Some(_) => answered += 1,
                None if now.saturating_sub(r.sent_at) >= loss_timeout => break,
                None => {}
            }
        }
        (missing, answered)
    }

    /// Only the loss counts and bounds over probes sent in `(now − span, now]`.
    pub fn loss_window(&self, now: Duration, span: Duration) -> WindowSummary {
        let loss_timeout = self.loss_timeout();
        let (mut answered, mut lost, mut pending) = (0u32, 0u32, 0u32);
        let mut runs = LossRuns::default();
        for r in self
            .records
            .iter()
            .rev()
            .take_while(|r| r.sent_at + span > now)
            .filter(|r| r.sent_at <= now)
        {
            match r.reply {
                Some(reply) if reply.received_at <= now => {
                    answered += 1;
                    runs.push(false);
                }
                _ if now.saturating_sub(r.sent_at) >= loss_timeout => {
                    lost += 1;
                    runs.push(true);
                }
                _ => pending += 1,
            }
        }
        let bounds = stats::wilson_bursty(lost, answered + lost, self.mean_burst(&mut runs), Z95);
        WindowSummary {
            window_ms: span.as_millis() as u64,
            probes: bounds.probes,
            lost,
            pending,
            loss: LossEstimate {
                ratio: bounds.ratio,
                lower: bounds.lower,
                upper: bounds.upper,
            },
            ..WindowSummary::default()
        }
    }

    /// Estimates over probes sent in `(now − span, now]`.
    pub fn window(&self, now: Duration, span: Duration) -> WindowSummary {
        let loss_timeout = self.loss_timeout();
        let mut lost = 0u32;
        let mut pending = 0u32;
        let mut runs = LossRuns::default();
        let mut reordered = 0u32;
        let mut duplicates = 0u32;
        let mut rtt = Vec::new();
        let mut fwd = Vec::new();
        let mut rev = Vec::new();
        let in_window = self
            .records
            .iter()
            .filter(|r| r.sent_at + span > now && r.sent_at <= now);
        for r in in_window {
            duplicates += r.duplicates;
            match r.reply {
                Some(reply) if reply.received_at <= now => {
                    runs.push(false);
                    rtt.push(reply.rtt_ns);
                    fwd.push(reply.fwd_ns);
                    rev.push(reply.rev_ns);
                    reordered += u32::from(r.reordered);
                }
                _ if now.saturating_sub(r.sent_at) >= loss_timeout => {
                    lost += 1;
                    runs.push(true);
                }
                _ => pending += 1,
            }
        }
        let answered = rtt.len() as u32;
        let bounds = stats::wilson_bursty(lost, answered + lost, self.mean_burst(&mut runs), Z95);
        let ms = |ns: f64| ns / 1e6;
        let jitter = |series: &[i64]| {
            (series.len() >= 2).then(|| ms(InterarrivalJitter::of(series.iter().copied())))
        };
        let (jitter_ms, fwd_jitter_ms, rev_jitter_ms) = (jitter(&rtt), jitter(&fwd), jitter(&rev));
        let fwd_pdv = stats::pdv(&mut fwd, 99.0).map(|v| ms(v as f64));
        let rev_pdv = stats::pdv(&mut rev, 99.0).map(|v| ms(v as f64));
        let rtt_ms = stats::delay_stats(&mut rtt).map(|d| DelayPercentiles {
            min: ms(d.min as f64),
            mean: ms(d.mean),
            p50: ms(d.p50 as f64),
            p95: ms(d.p95 as f64),
            p99: ms(d.p99 as f64),
            max: ms(d.max as f64),
        });
        WindowSummary {
            window_ms: span.as_millis() as u64,
            probes: bounds.probes,
            lost,
            pending,
            loss: LossEstimate {
                ratio: bounds.ratio,
                lower: bounds.lower,
                upper: bounds.upper,
            },
            pdv_p99_ms: rtt_ms.map(|r| r.p99 - r.min),
            rtt_ms,
            fwd_pdv_p99_ms: fwd_pdv,
            rev_pdv_p99_ms: rev_pdv,
            jitter_ms,
            fwd_jitter_ms,
            rev_jitter_ms,
            reordered,
            duplicates,
        }
    }
}

/// Counts maximal runs of consecutive lost probes no longer than [`MAX_BURST`]
/// (pending probes are skipped).
#[derive(Debug, Default)]
struct LossRuns {
    runs: u32,
    lost: u32,
    run_len: u32,
}

impl LossRuns {
    fn push(&mut self, lost: bool) {
        if lost {
            self.run_len += 1;
        } else {
            self.close();
        }
    }

    fn close(&mut self) {
        if self.run_len > 0 && self.run_len <= MAX_BURST {
            self.runs += 1;
            self.lost += self.run_len;
        }
        self.run_len = 0;
    }
}

/// `a` comes before `b` in serial-number arithmetic (RFC 1982), so wrap-around works.
fn seq_before(a: u32, b: u32) -> bool {
    a != b && b.wrapping_sub(a) < (1 << 31)
}
