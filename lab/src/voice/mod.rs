//! Voice-like UDP traffic and what a caller would hear.
//!
//! The sender emits 50 packets/s with a 160-byte payload (G.711 at 20 ms), each carrying a
//! stream id, a sequence number and its send time (CLOCK_MONOTONIC, shared by every namespace
//! of this host, so one-way latency is exact). The receiver ([`VoiceReceiver`], pure: arrival
//! times are passed in) reports per interval: loss, the longest gap between packets, mean
//! one-way latency, RFC 3550 interarrival jitter and an E-model MOS ([`mos`]).

pub mod cli;

use serde::{Deserialize, Serialize};

/// Payload size of one voice packet (G.711, 20 ms).
pub const PAYLOAD: usize = 160;
/// Packets per second.
pub const RATE: u32 = 50;
const MAGIC: &[u8; 4] = b"WSTV";
const HEADER: usize = 20;

/// The header of one voice packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VoicePacket {
    pub stream: u32,
    pub seq: u32,
    /// Send time, nanoseconds of CLOCK_MONOTONIC.
    pub sent_ns: u64,
}

impl VoicePacket {
    /// Writes the packet into a `size`-byte payload (at least the 20-byte header).
    pub fn encode(&self, size: usize) -> Vec<u8> {
        let mut buf = vec![0u8; size.max(HEADER)];
        buf[0..4].copy_from_slice(MAGIC);
        buf[4..8].copy_from_slice(&self.stream.to_be_bytes());
        buf[8..12].copy_from_slice(&self.seq.to_be_bytes());
        buf[12..20].copy_from_slice(&self.sent_ns.to_be_bytes());
        buf
    }

    /// Reads a packet; anything that is not one of ours is `None` (never panics).
    pub fn decode(buf: &[u8]) -> Option<VoicePacket> {
        if buf.len() < HEADER || &buf[0..4] != MAGIC {
            return None;
        }
        Some(VoicePacket {
            stream: u32::from_be_bytes(buf[4..8].try_into().ok()?),
            seq: u32::from_be_bytes(buf[8..12].try_into().ok()?),
            sent_ns: u64::from_be_bytes(buf[12..20].try_into().ok()?),
        })
    }
}

/// Now on CLOCK_MONOTONIC, in nanoseconds.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we pass and nothing else.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// E-model (ITU-T G.107, simplified) for G.711 with packet-loss concealment.
///
/// `delay_ms` is the mouth-to-ear one-way delay (network latency plus jitter buffer),
/// `loss` the packet loss ratio (0..1). Returns the MOS (1.0..4.5).
pub fn mos(delay_ms: f64, loss: f64) -> f64 {
    let d = delay_ms.max(0.0);
    let id = 0.024 * d + if d > 177.3 { 0.11 * (d - 177.3) } else { 0.0 };
    // G.113: G.711 Ie = 0, Bpl = 25.1 with PLC; random loss (BurstR = 1).
    let ppl = (loss * 100.0).clamp(0.0, 100.0);
    let ie_eff = 95.0 * ppl / (ppl + 25.1);
    let r = 93.2 - id - ie_eff;
    if r <= 0.0 {
        1.0
    } else if r >= 100.0 {
        4.5
    } else {
        1.0 + 0.035 * r + r * (r - 60.0) * (100.0 - r) * 7e-6
    }
}

/// What a caller would have felt during one interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntervalReport {
    /// Interval start, seconds since the receiver started.
    pub t: f64,
    pub received: u64,
    pub expected: u64,
    pub lost: u64,
    pub loss: f64,
    /// Longest time without a packet, ms (includes a silence still open at interval end).
    pub longest_gap_ms: f64,
    /// Mean one-way latency, ms (`None` if nothing arrived).
    pub latency_ms: Option<f64>,
    /// RFC 3550 interarrival jitter at interval end, ms.
    pub jitter_ms: f64,
    pub mos: f64,
    /// Silences longer than 60 ms (three packets) that ended in this interval.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gaps: Vec<Gap>,
}

/// A silence in the stream: when it began (seconds since the receiver started) and how long.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gap {
    pub start: f64,
    pub ms: f64,
}

/// Gaps longer than this are recorded with their start time.
const GAP_RECORD_NS: u64 = 60_000_000;

/// Totals over the whole stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamSummary {
    pub received: u64,
    pub expected: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub reordered: u64,
    pub loss: f64,
    pub longest_gap_ms: f64,
    pub latency_ms: Option<f64>,
    pub jitter_ms: f64,
    pub mos: f64,
}

/// Accounting of one received voice stream. Times are nanoseconds on one clock.
#[derive(Debug, Clone)]
pub struct VoiceReceiver {
    interval_ns: u64,
    /// Packets per second the sender is known to send: a silent interval then counts as
    /// that many lost, in that interval, not later when packets resume.
    nominal_pps: Option<u32>,
    started_ns: u64,
    interval_start_ns: u64,
    first_seq: Option<u32>,
    // Sequence numbers as i64 so "just before the first packet" is representable
    // (u32 wrap takes 2.7 years at 50 packets/s).
    highest_seq: Option<i64>,
    interval_base: Option<i64>,
    seen: std::collections::BTreeSet<u32>,
    last_arrival_ns: Option<u64>,
    last_transit_ns: Option<i128>,
    jitter_ns: f64,
    // interval
    received: u64,
    latency_sum_ns: u128,
    gap_ns: u64,
    gaps: Vec<Gap>,
    // totals
    total_received: u64,
    total_latency_ns: u128,
    duplicates: u64,
    reordered: u64,
    longest_gap_ns: u64,
}

impl VoiceReceiver {
    /// A receiver started at `now_ns`, reporting every `interval_ns` (1 s in the CLI).
    pub fn new(now_ns: u64, interval_ns: u64) -> Self {
        VoiceReceiver {
            interval_ns,
            nominal_pps: None,
            started_ns: now_ns,
            interval_start_ns: now_ns,
            first_seq: None,
            highest_seq: None,
            interval_base: None,
            seen: Default::default(),
            last_arrival_ns: None,
            last_transit_ns: None,
            jitter_ns: 0.0,
            received: 0,
            latency_sum_ns: 0,
            gap_ns: 0,
            gaps: Vec::new(),
            total_received: 0,
            total_latency_ns: 0,
            duplicates: 0,
            reordered: 0,
            longest_gap_ns: 0,
        }
    }

    /// Declares the sender's packet rate (the CLI's sender sends [`RATE`]).
    pub fn with_nominal_rate(mut self, pps: u32) -> Self {
        self.nominal_pps = Some(pps);
        self
    }

    /// End of the current interval; call [`Self::close_interval`] once `now` passes it.
    pub fn interval_end_ns(&self) -> u64 {
        self.interval_start_ns + self.interval_ns
    }

    /// Records a packet that arrived at `arrival_ns`.
    pub fn on_packet(&mut self, arrival_ns: u64, packet: VoicePacket) {
        if !self.seen.insert(packet.seq) {
            self.duplicates += 1;
            return;
        }
        if self.seen.len() > 4096 {
            // Keep memory bounded: sequence numbers far behind can no longer be duplicates
            // we care about.
            let oldest = *self.seen.iter().next().expect("non-empty");
            self.seen.remove(&oldest);
        }
        if self.first_seq.is_none() {
            self.first_seq = Some(packet.seq);
            // The interval's expected count starts just before the first packet.
            self.interval_base = Some(i64::from(packet.seq) - 1);
            self.highest_seq = Some(i64::from(packet.seq) - 1);
        }
        let highest = self.highest_seq.expect("set above");
        if i64::from(packet.seq) > highest {
            self.highest_seq = Some(i64::from(packet.seq));
        } else {
            self.reordered += 1;
        }
        if let Some(last) = self.last_arrival_ns {
            let gap = arrival_ns.saturating_sub(last);
            self.gap_ns = self.gap_ns.max(gap);
            if gap > GAP_RECORD_NS {
                self.gaps.push(Gap {
                    start: last.saturating_sub(self.started_ns) as f64 / 1e9,
                    ms: gap as f64 / 1e6,
                });
            }
            self.longest_gap_ns = self.longest_gap_ns.max(gap);
        }
        self.last_arrival_ns = Some(arrival_ns);
        let transit = arrival_ns as i128 - packet.sent_ns as i128;
        if let Some(prev) = self.last_transit_ns {
            let d = (transit - prev).unsigned_abs() as f64;
            self.jitter_ns += (d - self.jitter_ns) / 16.0;
        }
        self.last_transit_ns = Some(transit);
        let latency = transit.max(0) as u128;
        self.received += 1;
        self.latency_sum_ns += latency;
        self.total_received += 1;
        self.total_latency_ns += latency;
    }

    /// Closes the interval ending at [`Self::interval_end_ns`] and starts the next.
    pub fn close_interval(&mut self) -> IntervalReport {
        let end = self.interval_end_ns();
        let mut expected = match (self.highest_seq, self.interval_base) {
            (Some(h), Some(b)) => (h - b).max(0) as u64,
            _ => 0,
        };
        // Silence after the stream started: charge the missing packets to this interval and
        // move the base on, so the interval where packets resume is not charged again.
        let mut credited = 0i64;
        if self.received == 0
            && self.first_seq.is_some()
            && let Some(pps) = self.nominal_pps
        {
            expected = u64::from(pps) * self.interval_ns / 1_000_000_000;
            credited = expected as i64;
        }
        let open_gap = self
            .last_arrival_ns
            .map(|last| end.saturating_sub(last))
            .unwrap_or(end - self.interval_start_ns);
        let longest_gap = self.gap_ns.max(open_gap.min(end - self.interval_start_ns));
        let lost = expected.saturating_sub(self.received);
        let loss = if expected == 0 {
            if self.first_seq.is_some() { 1.0 } else { 0.0 }
        } else {
            lost as f64 / expected as f64
        };
        let latency_ms =
            (self.received > 0).then(|| self.latency_sum_ns as f64 / self.received as f64 / 1e6);
        let jitter_ms = self.jitter_ns / 1e6;
        let report = IntervalReport {
            t: (self.interval_start_ns - self.started_ns) as f64 / 1e9,
            received: self.received,
            expected,
            lost,
            loss,
            longest_gap_ms: longest_gap as f64 / 1e6,
            gaps: std::mem::take(&mut self.gaps),
            latency_ms,
            jitter_ms,
            mos: match latency_ms {
                Some(l) => mos(l + 2.0 * jitter_ms, loss),
                None => 1.0,
            },
        };
        self.interval_start_ns = end;
        self.interval_base = match (self.highest_seq, self.interval_base) {
            (Some(_), Some(b)) if credited > 0 => Some(b + credited),
            (h, _) => h,
        };
        self.received = 0;
        self.latency_sum_ns = 0;
        self.gap_ns = 0;
        report
    }

    /// Totals since the first packet.
    pub fn summary(&self) -> StreamSummary {
        let expected = match (self.first_seq, self.highest_seq) {
            (Some(f), Some(h)) => (h - i64::from(f) + 1).max(0) as u64,
            _ => 0,
        };
        let lost = expected.saturating_sub(self.total_received);
        let loss = if expected == 0 {
            0.0
        } else {
            lost as f64 / expected as f64
        };
        let latency_ms = (self.total_received > 0)
            .then(|| self.total_latency_ns as f64 / self.total_received as f64 / 1e6);
        let jitter_ms = self.jitter_ns / 1e6;
        StreamSummary {
            received: self.total_received,
            expected,
            lost,
            duplicates: self.duplicates,
            reordered: self.reordered,
            loss,
            longest_gap_ms: self.longest_gap_ns as f64 / 1e6,
            latency_ms,
            jitter_ms,
            mos: latency_ms.map_or(1.0, |l| mos(l + 2.0 * jitter_ms, loss)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn packet(seq: u32, sent_ms: u64) -> VoicePacket {
        VoicePacket {
            stream: 1,
            seq,
            sent_ns: sent_ms * MS,
        }
    }

    #[test]
    fn codec_round_trip_and_foreign_bytes() {
        let p = packet(42, 1234);
        let bytes = p.encode(PAYLOAD);
        assert_eq!(bytes.len(), 160);
        assert_eq!(VoicePacket::decode(&bytes), Some(p));
        assert_eq!(VoicePacket::decode(&bytes[..19]), None);
        assert_eq!(VoicePacket::decode(b"GET / HTTP/1.1\r\n\r\n....."), None);
    }

    #[test]
    fn mos_matches_the_e_model() {
        // No impairment: R = 93.2 - 0.024*d ≈ 92.96 → MOS ≈ 4.40.
        assert!((mos(10.0, 0.0) - 4.40).abs() < 0.01, "{}", mos(10.0, 0.0));
        // 10% loss with PLC: Ie,eff = 95*10/35.1 = 27.07; R ≈ 65.41 → MOS ≈ 3.37.
        assert!(
            (mos(30.0, 0.10) - 3.375).abs() < 0.01,
            "{}",
            mos(30.0, 0.10)
        );
        // Long delay costs more past 177.3 ms.
        assert!(mos(300.0, 0.0) < mos(150.0, 0.0) - 0.3);
        assert_eq!(
            mos(0.0, 1.0),
            1.0 + 0.035 * (93.2 - 95.0 * 100.0 / 125.1) + {
                let r: f64 = 93.2 - 95.0 * 100.0 / 125.1;
                r * (r - 60.0) * (100.0 - r) * 7e-6
            }
        );
    }

    #[test]
    fn one_second_with_a_five_packet_hole() {
        // 50 packets/s, 30 ms one-way, seq 10..=14 lost.
        let mut rx = VoiceReceiver::new(0, 1000 * MS);
        for seq in (0..50u32).filter(|s| !(10..=14).contains(s)) {
            let sent = u64::from(seq) * 20;
            rx.on_packet((sent + 30) * MS, packet(seq, sent));
        }
        let r = rx.close_interval();
        assert_eq!((r.received, r.expected, r.lost), (45, 50, 5));
        assert!((r.loss - 0.10).abs() < 1e-9);
        // seq 9 arrives at 210 ms, seq 15 at 330 ms.
        assert!(
            (r.longest_gap_ms - 120.0).abs() < 1e-9,
            "{}",
            r.longest_gap_ms
        );
        assert_eq!(r.latency_ms, Some(30.0));
        assert_eq!(r.jitter_ms, 0.0);
        assert!((r.mos - mos(30.0, 0.10)).abs() < 1e-9);
    }

    #[test]
    fn silence_counts_as_a_gap_and_total_loss() {
        let mut rx = VoiceReceiver::new(0, 1000 * MS).with_nominal_rate(50);
        for seq in 0..50u32 {
            rx.on_packet(
                (u64::from(seq) * 20 + 5) * MS,
                packet(seq, u64::from(seq) * 20),
            );
        }
        assert_eq!(rx.close_interval().lost, 0);
        // The line dies for 1.5 s: nothing in the second interval.
        let quiet = rx.close_interval();
        assert_eq!((quiet.received, quiet.expected, quiet.lost), (0, 50, 50));
        assert_eq!(quiet.loss, 1.0);
        assert_eq!(quiet.mos, 1.0);
        assert!((quiet.longest_gap_ms - 1000.0).abs() < 1e-9);
        // Traffic resumes at seq 125 (t = 2.5 s): 75 packets missing overall.
        for seq in 125..150u32 {
            rx.on_packet(
                (u64::from(seq) * 20 + 5) * MS,
                packet(seq, u64::from(seq) * 20),
            );
        }
        let back = rx.close_interval();
        assert_eq!(
            (back.expected, back.received, back.lost),
            (50, 25, 25),
            "50 already charged to the silent second"
        );
        let s = rx.summary();
        assert_eq!((s.expected, s.received, s.lost), (150, 75, 75));
        assert!(
            (s.longest_gap_ms - 1520.0).abs() < 1e-9,
            "{}",
            s.longest_gap_ms
        );
    }

    #[test]
    fn jitter_duplicates_and_reordering_are_counted() {
        let mut rx = VoiceReceiver::new(0, 1000 * MS);
        // Latency alternates 20/30 ms: |D| = 10 ms each packet; J converges towards 10 ms.
        for seq in 0..200u32 {
            let sent = u64::from(seq) * 20;
            let lat = if seq % 2 == 0 { 20 } else { 30 };
            rx.on_packet((sent + lat) * MS, packet(seq, sent));
        }
        assert!((rx.summary().jitter_ms - 10.0).abs() < 0.01);
        rx.on_packet(5000 * MS, packet(199, 3980));
        rx.on_packet(5001 * MS, packet(250, 5000));
        rx.on_packet(5002 * MS, packet(240, 4800));
        let s = rx.summary();
        assert_eq!((s.duplicates, s.reordered), (1, 1));
    }
}
