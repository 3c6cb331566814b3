//! Book-keeping of one line's probes: what was sent when, which replies came back, and
//! the per-window evidence the health state machine decides on.
//!
//! Sans-IO: callers pass the time (`now`, a monotonic offset since the prober started)
//! and the bytes. A reply is matched to its probe by the echoed sequence number *and*
//! the echoed transmit timestamp, so replies of another session or replays of old ones
//! are counted and dropped instead of polluting the estimates. A probe is declared lost
//! once it is older than an RTT-adaptive timeout; a late answer still counts as received.
//!
//! A delay step (the line gets slower, it does not die) first looks like silence. The
//! timeouts follow the RTT up at once (fast attack on every answer, slow decay with the
//! long window's p99), answers that arrive after their probe was already overdue are
//! counted as `late` (the health machine withdraws an outage they disprove), and latency
//! is also judged on the newest answers (`recent_rtt_p50_ms`), not only on the 2 s
//! window's median, which needs a second of slow answers before it moves.

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
    /// Latency is also judged on the median of this many newest answers (a level shift
    /// shows within this many probes; at 15 ms, 15 answers are ≈ 225 ms).
    #[serde(default = "default_recent_rtt_samples")]
    pub recent_rtt_samples: u32,
}

fn default_recent_rtt_samples() -> u32 {
    15
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
            recent_rtt_samples: default_recent_rtt_samples(),
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
    /// Probes sent within the short window that were answered after they had become
    /// overdue: the line was slow, not dead. Enough of them disprove an outage.
    #[serde(default)]
    pub late: u32,
    /// Median RTT (ms) of the newest `recent_rtt_samples` answers, and how many there are.
    #[serde(default)]
    pub recent_rtt_p50_ms: Option<f64>,
    /// How many answers `recent_rtt_p50_ms` is the median of.
    #[serde(default)]
    pub recent_rtt_samples: u32,
}

#[derive(Debug, Clone, Copy)]
struct Reply {
    received_at: Duration,
    rtt_ns: i64,
    fwd_ns: i64,
    rev_ns: i64,
    /// Arrived after the probe had become overdue (the outage timer counted it missing).
    overdue: bool,
    /// Read right after a stall of our own process, for a probe sent before it (the answer
    /// waited in our socket), or drained late and back to back from a queue at the far
    /// end ([`drained`]): its RTT says nothing about the line's delay.
    stalled: bool,
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
    last_answer_sent_at: Option<Duration>,
    last_answer_sequence: Option<u32>,
    rtt_p99_ns: Option<i64>,
    last_rtt_ns: i64,
    settled_p99_ns: Option<i64>,
    stall_end: Duration,
    counters_stalls: u64,
    counters: ProbeCounters,
    history: BurstHistory,
}

/// Answers read this soon after a stall of our own process waited in the socket.
const STALL_DRAIN: Duration = Duration::from_millis(10);

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
            last_answer_sent_at: None,
            last_answer_sequence: None,
            rtt_p99_ns: None,
            last_rtt_ns: 0,
            settled_p99_ns: None,
            stall_end: Duration::ZERO,
            counters_stalls: 0,
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
        // "Late" is judged against the settled timeout (the long window's p99), not the
        // one the fast attack just raised: every probe the outage timer counted missing
        // during a delay step is late, not only the first two answers.
        let settled_overdue = self.overdue_for(self.settled_p99_ns);
        let Some(index) = self.index_of(packet.sender_sequence) else {
            self.counters.foreign += 1;
            return ReplyOutcome::Foreign;
        };
        let highest = self.highest_answered;
        let previous = self.last_answer_at.zip(self.last_answer_sent_at);
        let waited_so_far = now.saturating_sub(self.records[index].sent_at);
        let drained_now =
            waited_so_far >= settled_overdue && drained(previous, self.records[index].sent_at, now);
        if drained_now {
            // The head of the drained queue came just before, spaced like a normal answer:
            // its RTT is the hold too.
            if let Some(head) = self
                .last_answer_sequence
                .and_then(|seq| self.index_of(seq))
                .and_then(|i| self.records[i].reply.as_mut())
            {
                head.stalled = true;
            }
        }
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
        let waited = now.saturating_sub(record.sent_at);
        let elapsed = waited.as_nanos() as i64;
        let reply = Reply {
            received_at: now,
            rtt_ns: (elapsed - turnaround.max(0)).max(0),
            fwd_ns: packet.receive_timestamp.nanos_since(record.sent_ntp),
            rev_ns: now_ntp.nanos_since(packet.timestamp),
            overdue: waited >= settled_overdue,
            stalled: (record.sent_at < self.stall_end
                && now.saturating_sub(self.stall_end) <= STALL_DRAIN)
                || drained_now,
        };
        record.reply = Some(reply);
        let sequence = record.sequence;
        let sent_at = record.sent_at;
        let reordered = highest.is_some_and(|h| seq_before(sequence, h));
        record.reordered = reordered;
        let late = now.saturating_sub(record.sent_at) >= loss_timeout;
        if !reordered {
            self.highest_answered = Some(sequence);
        }
        // Fast attack: two answers in a row slower than the p99 (a level shift, not one
        // outlier) raise the timeouts at once, so the probes behind them, as slow, are not
        // counted missing; the long window's p99 brings them down again.
        if let Some(p99) = self.rtt_p99_ns
            && !reply.stalled
            && reply.rtt_ns > p99
            && self.last_rtt_ns > p99
        {
            self.rtt_p99_ns = Some(reply.rtt_ns.min(self.last_rtt_ns));
        }
        self.last_rtt_ns = reply.rtt_ns;
        self.last_answer_at = Some(now);
        self.last_answer_sent_at = Some(sent_at);
        self.last_answer_sequence = Some(sequence);
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
                self.settled_p99_ns = self.rtt_p99_ns;
            }
            long
        } else {
            self.loss_window(now, self.config.long_window)
        };
        let short = self.window(now, self.config.short_window);
        let (missing, answered_run) = self.runs(now);
        let silent = now.saturating_sub(self.silent_since());
        let (recent_rtt_p50_ms, recent_rtt_samples) = self.recent_rtt(now);
        Evidence {
            now,
            late: self.late_answers(now),
            short,
            long,
            missing,
            answered_run,
            silent,
            recent_rtt_p50_ms,
            recent_rtt_samples,
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
            .map(|r| r.sent_at.max(self.stall_end) + overdue)
            .take_while(|&deadline| deadline > after)
            .last()
    }

    /// When the last answer arrived.
    pub fn last_answer_at(&self) -> Option<Duration> {
        self.last_answer_at
    }

    /// Our own process was not scheduled until `end` (a timer fired that late): replies
    /// that came in meanwhile wait unread in the socket. Silence, overdue and loss timers
    /// restart at `end` for the probes sent before it, so a stall of this host is not
    /// taken for silence of the line.
    pub fn on_stall(&mut self, end: Duration) {
        self.stall_end = self.stall_end.max(end);
        self.counters_stalls += 1;
    }

    /// Scheduling stalls seen so far.
    pub fn stalls(&self) -> u64 {
        self.counters_stalls
    }

    /// Where the silence is counted from: the last answer, or the end of our last stall.
    pub fn silent_since(&self) -> Duration {
        self.last_answer_at.unwrap_or_default().max(self.stall_end)
    }

    /// How long a probe has waited for its answer while we were able to read it.
    fn waited(&self, r: &ProbeRecord, now: Duration) -> Duration {
        now.saturating_sub(r.sent_at.max(self.stall_end))
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
        self.overdue_for(self.rtt_p99_ns)
    }

    fn overdue_for(&self, rtt_p99_ns: Option<i64>) -> Duration {
        match rtt_p99_ns {
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

    /// Loss bounds of a window: Wilson, widened for bursts (round trip: a stateless
    /// reflector cannot tell which way a probe was lost).
    fn bounds(&self, lost: u32, probes: u32, runs: &mut LossRuns) -> stats::LossBounds {
        stats::wilson_bursty(lost, probes, self.mean_burst(runs), Z95)
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

    /// Answers that came after their probe was overdue, among probes of the short window.
    fn late_answers(&self, now: Duration) -> u32 {
        let span = self.config.short_window;
        self.records
            .iter()
            .rev()
            .take_while(|r| r.sent_at + span > now)
            .filter(|r| r.reply.is_some_and(|a| a.overdue && a.received_at <= now))
            .count() as u32
    }

    /// Median RTT (ms) of the newest answers (by arrival), with their count.
    fn recent_rtt(&self, now: Duration) -> (Option<f64>, u32) {
        let want = self.config.recent_rtt_samples as usize;
        let span = self.config.short_window;
        let mut newest: Vec<(Duration, i64)> = self
            .records
            .iter()
            .rev()
            .take_while(|r| r.sent_at + span > now)
            .filter_map(|r| r.reply)
            .filter(|a| a.received_at <= now && !a.stalled)
            .map(|a| (a.received_at, a.rtt_ns))
            .collect();
        newest.sort_unstable_by_key(|&(at, _)| std::cmp::Reverse(at));
        newest.truncate(want);
        let mut rtts: Vec<i64> = newest.into_iter().map(|(_, rtt)| rtt).collect();
        let count = rtts.len() as u32;
        let p50 = stats::delay_stats(&mut rtts).map(|d| d.p50 as f64 / 1e6);
        (p50, count)
    }

    /// (newest run of overdue unanswered probes, newest run of answered probes).
    fn runs(&self, now: Duration) -> (u32, u32) {
        let overdue = self.overdue_after();
        let mut missing = 0;
        for r in self.records.iter().rev() {
            match r.reply {
                Some(_) => break,
                None if self.waited(r, now) >= overdue => missing += 1,
                None => {}
            }
        }
        let loss_timeout = self.loss_timeout();
        let mut answered = 0;
        for r in self.records.iter().rev() {
            match r.reply {
                Some(_) => answered += 1,
                None if self.waited(r, now) >= loss_timeout => break,
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
                _ if self.waited(r, now) >= loss_timeout => {
                    lost += 1;
                    runs.push(true);
                }
                _ => pending += 1,
            }
        }
        let bounds = self.bounds(lost, answered + lost, &mut runs);
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
        let mut answered = 0u32;
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
                    answered += 1;
                    // An answer read late because we were not scheduled has no RTT worth
                    // the name: it counts as answered, not as a delay sample.
                    if !reply.stalled {
                        rtt.push(reply.rtt_ns);
                        fwd.push(reply.fwd_ns);
                        rev.push(reply.rev_ns);
                    }
                    reordered += u32::from(r.reordered);
                }
                _ if self.waited(r, now) >= loss_timeout => {
                    lost += 1;
                    runs.push(true);
                }
                _ => pending += 1,
            }
        }
        let bounds = self.bounds(lost, answered + lost, &mut runs);
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

/// A late answer that came back to back with the previous one although its probe left
/// well after (less than a quarter of the send gap between the arrivals): a queue somewhere
/// (the far reflector not scheduled, a buffer released) let go of answers it held. Its RTT
/// is that hold, not the line's delay; a delay step keeps the answers' spacing.
fn drained(previous: Option<(Duration, Duration)>, sent_at: Duration, now: Duration) -> bool {
    previous.is_some_and(|(answered_at, answer_sent_at)| {
        let send_gap = sent_at.saturating_sub(answer_sent_at);
        !send_gap.is_zero() && now.saturating_sub(answered_at) < send_gap / 4
    })
}

/// `a` comes before `b` in serial-number arithmetic (RFC 1982), so wrap-around works.
fn seq_before(a: u32, b: u32) -> bool {
    a != b && b.wrapping_sub(a) < (1 << 31)
}
