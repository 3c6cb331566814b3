//! Estimators against known values and injected truth: Wilson bounds, percentiles,
//! RFC 3550 jitter, RFC 5481 PDV, and the tracker's loss / reorder / duplicate / foreign
//! accounting.

use std::time::Duration;

use wansteer_probes::packet::{ErrorEstimate, NtpTimestamp, ReflectorPacket};
use wansteer_probes::stats::{self, InterarrivalJitter, Z95, delay_stats, pdv, wilson};
use wansteer_probes::tracker::{ProbeTracker, ReplyOutcome, TrackerConfig};

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol
}

#[test]
fn wilson_bounds_match_the_design_figures_for_one_percent_loss() {
    // DESIGN §4: 0.18–5.45% from 100 probes, 0.46–2.16% from 600, 0.70–1.42% from 3,000.
    for (lost, probes, lower, upper) in [
        (1, 100, 0.0018, 0.0545),
        (6, 600, 0.0046, 0.0216),
        (30, 3000, 0.0070, 0.0142),
    ] {
        let b = wilson(lost, probes, Z95);
        assert!(close(b.lower, lower, 0.00006), "{lost}/{probes}: {b:?}");
        assert!(close(b.upper, upper, 0.00006), "{lost}/{probes}: {b:?}");
        assert!(close(b.ratio, 0.01, 1e-12));
    }
}

#[test]
fn wilson_is_honest_at_the_edges() {
    let none = wilson(0, 0, Z95);
    assert_eq!(
        (none.lower, none.upper),
        (0.0, 1.0),
        "no probes, no knowledge"
    );
    let clean = wilson(0, 600, Z95);
    assert_eq!(clean.lower, 0.0);
    assert!(clean.upper > 0.0 && clean.upper < 0.0065, "{clean:?}");
    let dead = wilson(40, 40, Z95);
    assert_eq!(dead.upper, 1.0);
    assert!(dead.lower > 0.9);
}

#[test]
fn percentiles_use_nearest_rank() {
    let mut samples: Vec<i64> = (1..=100).rev().collect();
    let d = delay_stats(&mut samples).unwrap();
    assert_eq!((d.min, d.p50, d.p95, d.p99, d.max), (1, 50, 95, 99, 100));
    assert!(close(d.mean, 50.5, 1e-9));
    assert!(delay_stats(&mut []).is_none());
}

#[test]
fn rfc3550_jitter_converges_to_the_mean_absolute_difference() {
    // Transit alternates 10 ms / 12 ms: |D| is always 2 ms, so J → 2 ms.
    let transits = (0..400).map(|i| if i % 2 == 0 { 10_000_000 } else { 12_000_000 });
    let j = InterarrivalJitter::of(transits);
    assert!(close(j, 2_000_000.0, 1.0), "{j}");
    // A constant clock offset does not change it.
    let shifted =
        (0..400).map(|i| 37_000_000_000 + if i % 2 == 0 { 10_000_000 } else { 12_000_000 });
    assert!(close(InterarrivalJitter::of(shifted), j, 1e-3));
}

#[test]
fn pdv_is_clock_offset_free() {
    let mut one_way: Vec<i64> = (0..100).map(|i| 5_000_000 + (i % 10) * 100_000).collect();
    let mut offset: Vec<i64> = one_way.iter().map(|d| d - 3_600_000_000_000).collect();
    assert_eq!(pdv(&mut one_way, 99.0), Some(900_000));
    assert_eq!(pdv(&mut offset, 99.0), Some(900_000));
}

/// A tracker fed by hand: probes every 50 ms, answers built like a reflector would.
struct Bench {
    tracker: ProbeTracker,
    sent: Vec<(Duration, NtpTimestamp)>,
}

const WALL: u64 = 1_790_000_000;

fn ntp(at: Duration) -> NtpTimestamp {
    NtpTimestamp::from_unix_duration(Duration::from_secs(WALL) + at)
}

impl Bench {
    fn new() -> Self {
        Self {
            tracker: ProbeTracker::new(TrackerConfig::default()),
            sent: Vec::new(),
        }
    }

    fn send(&mut self, at: Duration) -> u32 {
        let p = self.tracker.on_send(
            at,
            ntp(at),
            ErrorEstimate::unsynchronized(Duration::from_millis(1)),
        );
        self.sent.push((at, p.timestamp));
        p.sequence
    }

    fn answer(&self, seq: u32, one_way: Duration) -> Vec<u8> {
        let (at, ts) = self.sent[seq as usize];
        ReflectorPacket {
            sequence: seq,
            timestamp: ntp(at + one_way),
            error_estimate: ErrorEstimate::unsynchronized(Duration::from_millis(1)),
            receive_timestamp: ntp(at + one_way),
            sender_sequence: seq,
            sender_timestamp: ts,
            sender_error_estimate: ErrorEstimate::unsynchronized(Duration::from_millis(1)),
            sender_ttl: 255,
        }
        .encode()
        .to_vec()
    }

    fn deliver(&mut self, at: Duration, bytes: &[u8]) -> ReplyOutcome {
        self.tracker.on_datagram(at, ntp(at), bytes)
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn tracker_counts_reordered_duplicate_foreign_and_malformed_and_drops_them() {
    let mut b = Bench::new();
    for i in 0..4 {
        b.send(ms(50 * i));
    }
    let a1 = b.answer(1, ms(10));
    let a0 = b.answer(0, ms(10));
    assert!(matches!(
        b.deliver(ms(70), &a1),
        ReplyOutcome::Answered {
            reordered: false,
            ..
        }
    ));
    assert!(matches!(
        b.deliver(ms(71), &a0),
        ReplyOutcome::Answered {
            reordered: true,
            ..
        }
    ));
    assert_eq!(
        b.deliver(ms(72), &a0),
        ReplyOutcome::Duplicate,
        "replayed answer"
    );
    // Same sequence number, different echoed timestamp: another session's packet.
    let mut foreign = b.answer(2, ms(10));
    foreign[35] ^= 0x01;
    assert_eq!(b.deliver(ms(120), &foreign), ReplyOutcome::Foreign);
    // A sequence number we never sent.
    let mut unknown = b.answer(3, ms(10));
    unknown[24..28].copy_from_slice(&999u32.to_be_bytes());
    assert_eq!(b.deliver(ms(170), &unknown), ReplyOutcome::Foreign);
    assert_eq!(b.deliver(ms(171), &[0u8; 10]), ReplyOutcome::Malformed);
    let c = b.tracker.counters();
    assert_eq!(
        (
            c.sent,
            c.answered,
            c.reordered,
            c.duplicates,
            c.foreign,
            c.malformed
        ),
        (4, 2, 1, 1, 2, 1)
    );
    // Only the two real answers feed the estimates.
    let w = b.tracker.window(ms(1000), ms(2000));
    assert_eq!((w.probes, w.lost, w.reordered, w.duplicates), (4, 2, 1, 1));
    assert_eq!(w.rtt_ms.unwrap().p50, 20.0);
}

#[test]
fn unanswered_probes_are_pending_until_the_loss_timeout() {
    let mut b = Bench::new();
    b.send(ms(0));
    let w = b.tracker.window(ms(100), ms(2000));
    assert_eq!((w.probes, w.lost, w.pending), (0, 0, 1));
    let w = b.tracker.window(ms(300), ms(2000));
    assert_eq!((w.probes, w.lost, w.pending), (1, 1, 0));
    // An answer after the timeout is late but still counts as received.
    let a = b.answer(0, ms(150));
    assert!(matches!(
        b.deliver(ms(301), &a),
        ReplyOutcome::Answered { late: true, .. }
    ));
    let w = b.tracker.window(ms(400), ms(2000));
    assert_eq!((w.probes, w.lost), (1, 0));
    assert_eq!(b.tracker.counters().late, 1);
}

#[test]
fn rtt_removes_the_reflector_turnaround_and_one_way_figures_survive_clock_offset() {
    let mut b = Bench::new();
    let offset_ns: i64 = 3_600_000_000_000; // reflector clock an hour ahead
    for i in 0..40u64 {
        let at = ms(50 * i);
        let seq = b.send(at);
        let (_, ts) = b.sent[seq as usize];
        // forward 10 ms + (i % 4) ms, turnaround 5 ms, reverse 8 ms.
        let fwd = ms(10 + i % 4);
        let t2 = ntp(at + fwd).add_nanos(offset_ns);
        let t3 = ntp(at + fwd + ms(5)).add_nanos(offset_ns);
        let answer = ReflectorPacket {
            sequence: seq,
            timestamp: t3,
            error_estimate: ErrorEstimate::unsynchronized(ms(1)),
            receive_timestamp: t2,
            sender_sequence: seq,
            sender_timestamp: ts,
            sender_error_estimate: ErrorEstimate::unsynchronized(ms(1)),
            sender_ttl: 255,
        };
        b.deliver(at + fwd + ms(13), &answer.encode());
    }
    let w = b.tracker.window(ms(2100), ms(2200));
    let rtt = w.rtt_ms.unwrap();
    assert!(
        close(rtt.min, 18.0, 0.001) && close(rtt.max, 21.0, 0.001),
        "{rtt:?}"
    );
    assert!(close(rtt.mean, 19.5, 0.001), "{rtt:?}");
    assert!(close(w.fwd_pdv_p99_ms.unwrap(), 3.0, 0.001), "{w:?}");
    assert!(close(w.rev_pdv_p99_ms.unwrap(), 0.0, 0.001), "{w:?}");
    // |D| is 1 ms three times in four and 3 ms once: RFC 3550 J settles near 1.5 ms.
    assert!(close(w.fwd_jitter_ms.unwrap(), 1.5, 0.2), "{w:?}");
    assert_eq!(w.loss.ratio, 0.0);
}

#[test]
fn bursty_loss_widens_the_interval_by_the_design_effect() {
    use wansteer_probes::stats::wilson_bursty;
    let iid = wilson(12, 600, Z95);
    assert_eq!(
        wilson_bursty(12, 600, 1.0, Z95),
        iid,
        "isolated losses: plain Wilson"
    );
    // Bursts of 10: D = 19, so 600 probes weigh like ~32 independent ones.
    let bursty = wilson_bursty(12, 600, 10.0, Z95);
    assert_eq!(bursty.ratio, iid.ratio);
    assert!(
        bursty.lower < iid.lower && bursty.upper > iid.upper,
        "{bursty:?} vs {iid:?}"
    );
    assert!(
        bursty.upper - bursty.lower > 3.0 * (iid.upper - iid.lower),
        "{bursty:?}"
    );
    // A clean window on a line known to lose in bursts is not proof of a clean line.
    assert!(wilson_bursty(0, 600, 10.0, Z95).upper > 0.05);
}

#[test]
fn independent_loss_is_not_widened_as_if_it_came_in_bursts() {
    // 9.75% independent loss (5% each way) has mean run 1/(1 − p) = 1.108 probes: that is
    // no burstiness at all, so the interval must be the plain Wilson one. The old design
    // effect 2B − 1 = 1.22 widened it and slowed brownout decisions.
    let p = 0.0975;
    let plain = stats::wilson(26, 267, stats::Z95);
    let iid = stats::wilson_bursty(26, 267, 1.0 / (1.0 - p), stats::Z95);
    assert!(close(iid.lower, plain.lower, 1e-3), "{iid:?} vs {plain:?}");
    // Real bursts still widen it.
    let bursty = stats::wilson_bursty(26, 267, 5.0, stats::Z95);
    assert!(bursty.lower < plain.lower - 0.02, "{bursty:?}");
}

#[test]
fn after_a_stall_of_our_own_the_timers_restart_instead_of_counting_it_as_silence() {
    // Probes every 15 ms, then this process is not scheduled from 45 ms to 400 ms: the
    // answers to the probes sent before wait unread. At the first poll on waking, before
    // the socket is read, they must be neither missing nor lost, and the silence starts
    // at the wake-up.
    let blind = |on_stall: bool| {
        let mut b = Bench::new();
        for i in 0..4 {
            b.send(ms(15 * i));
        }
        if on_stall {
            b.tracker.on_stall(ms(400));
        }
        b.tracker.evidence(ms(400), true)
    };
    let ev = blind(false);
    assert!(ev.short.lost > 0 && ev.silent >= ms(400), "{ev:?}");
    let ev = blind(true);
    assert_eq!((ev.short.lost, ev.missing), (0, 0), "{ev:?}");
    assert_eq!(ev.silent, Duration::ZERO);
}
