//! STAMP (RFC 8762) unauthenticated test packets: pure encode and decode.
//!
//! Both packets are 44 octets in unauthenticated mode (RFC 8762 §4.2.1 Figure 2 and
//! §4.3.1 Figure 4). Longer packets (padding, RFC 8972 TLVs) are accepted and the extra
//! octets ignored, so a wansteer sender works with any RFC 8762 reflector and the other
//! way round. Timestamps are NTP 64-bit (seconds since 1900 and a 2^-32 fraction);
//! the Error Estimate follows RFC 4656 §4.1.2 (S, Z, Scale, Multiplier). Decoding never
//! panics: every read is bounds-checked and a short packet is an error.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Length of an unauthenticated STAMP test packet, both directions.
pub const PACKET_LEN: usize = 44;

/// Seconds between the NTP era 0 epoch (1900-01-01) and the Unix epoch (1970-01-01).
const NTP_UNIX_OFFSET_SECS: u64 = 2_208_988_800;

/// Why a datagram is not a STAMP test packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Fewer octets than the 44 an unauthenticated STAMP packet needs.
    #[error("truncated STAMP packet: {len} octets, need at least {PACKET_LEN}")]
    Truncated {
        /// Octets received.
        len: usize,
    },
}

/// A 64-bit NTP timestamp (RFC 5905 §6): seconds since 1900 and a 2^-32 s fraction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct NtpTimestamp {
    /// Whole seconds since 1900-01-01 00:00 UTC (era 0).
    pub seconds: u32,
    /// Fraction of a second in units of 2^-32 s.
    pub fraction: u32,
}

impl NtpTimestamp {
    /// The timestamp as one 64-bit fixed-point number (32.32).
    pub fn to_bits(self) -> u64 {
        (u64::from(self.seconds) << 32) | u64::from(self.fraction)
    }

    /// The timestamp from one 64-bit fixed-point number (32.32).
    pub fn from_bits(bits: u64) -> Self {
        Self {
            seconds: (bits >> 32) as u32,
            fraction: bits as u32,
        }
    }

    /// Wall-clock time as an NTP timestamp (era 0 wraps in 2036; so does the wire format).
    pub fn from_system_time(time: SystemTime) -> Self {
        let since_unix = time.duration_since(UNIX_EPOCH).unwrap_or_default();
        Self::from_unix_duration(since_unix)
    }

    /// An NTP timestamp from a duration since the Unix epoch.
    pub fn from_unix_duration(since_unix: Duration) -> Self {
        let seconds = since_unix.as_secs().wrapping_add(NTP_UNIX_OFFSET_SECS) as u32;
        // Round the nanoseconds to the nearest 2^-32 s; 1e9 ns fits the carry check below.
        let fraction = ((u64::from(since_unix.subsec_nanos()) << 32) + 500_000_000) / 1_000_000_000;
        if fraction > u64::from(u32::MAX) {
            Self {
                seconds: seconds.wrapping_add(1),
                fraction: 0,
            }
        } else {
            Self {
                seconds,
                fraction: fraction as u32,
            }
        }
    }

    /// Signed difference `self - earlier` in nanoseconds, taken modulo 2^64 so that an
    /// era wrap between the two stamps still gives the short interval.
    pub fn nanos_since(self, earlier: NtpTimestamp) -> i64 {
        let diff = self.to_bits().wrapping_sub(earlier.to_bits()) as i64;
        // diff is in 2^-32 s units; convert with 128-bit arithmetic to avoid overflow.
        ((i128::from(diff) * 1_000_000_000) >> 32) as i64
    }

    /// The timestamp moved by a signed number of nanoseconds.
    pub fn add_nanos(self, nanos: i64) -> Self {
        let units = (i128::from(nanos) << 32) / 1_000_000_000;
        Self::from_bits(self.to_bits().wrapping_add(units as i64 as u64))
    }
}

/// Timestamp format announced by the Z bit of the Error Estimate (RFC 8762 §4.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampFormat {
    /// Z = 0: 64-bit NTP format.
    Ntp,
    /// Z = 1: truncated PTPv2 format (32-bit seconds, 32-bit nanoseconds).
    Ptp,
}

/// The 16-bit Error Estimate (RFC 4656 §4.1.2, Z bit per RFC 8762 §4.2.1).
///
/// Error in seconds = `multiplier × 2^(scale − 32)`; `synchronized` is the S bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorEstimate {
    /// S: the clock is synchronized to UTC by an external source.
    pub synchronized: bool,
    /// Z: format of this packet's timestamps.
    pub format: TimestampFormat,
    /// 6-bit binary exponent.
    pub scale: u8,
    /// 8-bit multiplier; RFC 4656 says it must not be zero.
    pub multiplier: u8,
}

impl ErrorEstimate {
    /// Error estimate for an unsynchronized NTP-format clock with the given error bound,
    /// rounded up to the next representable value.
    pub fn unsynchronized(error: Duration) -> Self {
        Self::from_error(false, error)
    }

    /// The smallest estimate ≥ `error` (capped at the largest representable value).
    pub fn from_error(synchronized: bool, error: Duration) -> Self {
        // error in 2^-32 s units, at least 1 so the multiplier is never zero.
        let units = ((error.as_nanos() << 32).div_ceil(1_000_000_000)).max(1);
        let mut scale = 0u8;
        let mut multiplier = units;
        while multiplier > 255 && scale < 63 {
            scale += 1;
            multiplier = units.div_ceil(1u128 << scale);
        }
        Self {
            synchronized,
            format: TimestampFormat::Ntp,
            scale,
            multiplier: multiplier.min(255) as u8,
        }
    }

    /// The error bound this estimate states.
    pub fn error(&self) -> Duration {
        let units = u128::from(self.multiplier) << self.scale;
        Duration::from_nanos(((units * 1_000_000_000) >> 32) as u64)
    }

    /// Encoded 16-bit field.
    pub fn to_bits(self) -> u16 {
        let s = u16::from(self.synchronized) << 15;
        let z = u16::from(self.format == TimestampFormat::Ptp) << 14;
        s | z | (u16::from(self.scale & 0x3f) << 8) | u16::from(self.multiplier)
    }

    /// Decoded 16-bit field (all 2^16 values are accepted).
    pub fn from_bits(bits: u16) -> Self {
        Self {
            synchronized: bits & 0x8000 != 0,
            format: if bits & 0x4000 != 0 {
                TimestampFormat::Ptp
            } else {
                TimestampFormat::Ntp
            },
            scale: ((bits >> 8) & 0x3f) as u8,
            multiplier: bits as u8,
        }
    }
}

/// Session-Sender test packet, unauthenticated mode (RFC 8762 §4.2.1, Figure 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderPacket {
    /// Sender's sequence number, from 0, one per packet.
    pub sequence: u32,
    /// Transmit timestamp (T1).
    pub timestamp: NtpTimestamp,
    /// Sender clock's error estimate.
    pub error_estimate: ErrorEstimate,
}

impl SenderPacket {
    /// The 44-octet wire form (MBZ octets zero).
    pub fn encode(&self) -> [u8; PACKET_LEN] {
        let mut out = [0u8; PACKET_LEN];
        out[0..4].copy_from_slice(&self.sequence.to_be_bytes());
        out[4..8].copy_from_slice(&self.timestamp.seconds.to_be_bytes());
        out[8..12].copy_from_slice(&self.timestamp.fraction.to_be_bytes());
        out[12..14].copy_from_slice(&self.error_estimate.to_bits().to_be_bytes());
        out
    }

    /// Parses the first 44 octets; MBZ octets and anything after them are ignored
    /// (RFC 8762 asks receivers not to check MBZ, and TLVs may follow).
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let b = fixed(bytes)?;
        Ok(Self {
            sequence: be32(b, 0),
            timestamp: ntp(b, 4),
            error_estimate: ErrorEstimate::from_bits(be16(b, 12)),
        })
    }
}

/// Session-Reflector test packet, unauthenticated mode (RFC 8762 §4.3.1, Figure 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReflectorPacket {
    /// Reflector's sequence number (a stateless reflector copies the sender's).
    pub sequence: u32,
    /// Reflector transmit timestamp (T3).
    pub timestamp: NtpTimestamp,
    /// Reflector clock's error estimate.
    pub error_estimate: ErrorEstimate,
    /// When the reflector received the sender's packet (T2).
    pub receive_timestamp: NtpTimestamp,
    /// The sender's sequence number, echoed.
    pub sender_sequence: u32,
    /// The sender's timestamp (T1), echoed.
    pub sender_timestamp: NtpTimestamp,
    /// The sender's error estimate, echoed.
    pub sender_error_estimate: ErrorEstimate,
    /// TTL (or hop limit) of the sender's packet as received; 0 when not known.
    pub sender_ttl: u8,
}

impl ReflectorPacket {
    /// The 44-octet wire form (MBZ octets zero).
    pub fn encode(&self) -> [u8; PACKET_LEN] {
        let mut out = [0u8; PACKET_LEN];
        out[0..4].copy_from_slice(&self.sequence.to_be_bytes());
        put_ntp(&mut out, 4, self.timestamp);
        out[12..14].copy_from_slice(&self.error_estimate.to_bits().to_be_bytes());
        put_ntp(&mut out, 16, self.receive_timestamp);
        out[24..28].copy_from_slice(&self.sender_sequence.to_be_bytes());
        put_ntp(&mut out, 28, self.sender_timestamp);
        out[36..38].copy_from_slice(&self.sender_error_estimate.to_bits().to_be_bytes());
        out[40] = self.sender_ttl;
        out
    }

    /// Parses the first 44 octets; MBZ octets and trailing octets are ignored.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let b = fixed(bytes)?;
        Ok(Self {
            sequence: be32(b, 0),
            timestamp: ntp(b, 4),
            error_estimate: ErrorEstimate::from_bits(be16(b, 12)),
            receive_timestamp: ntp(b, 16),
            sender_sequence: be32(b, 24),
            sender_timestamp: ntp(b, 28),
            sender_error_estimate: ErrorEstimate::from_bits(be16(b, 36)),
            sender_ttl: b[40],
        })
    }
}

fn fixed(bytes: &[u8]) -> Result<&[u8; PACKET_LEN], DecodeError> {
    bytes
        .get(..PACKET_LEN)
        .and_then(|head| head.try_into().ok())
        .ok_or(DecodeError::Truncated { len: bytes.len() })
}

fn be32(b: &[u8; PACKET_LEN], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn be16(b: &[u8; PACKET_LEN], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn ntp(b: &[u8; PACKET_LEN], at: usize) -> NtpTimestamp {
    NtpTimestamp {
        seconds: be32(b, at),
        fraction: be32(b, at + 4),
    }
}

fn put_ntp(out: &mut [u8; PACKET_LEN], at: usize, ts: NtpTimestamp) {
    out[at..at + 4].copy_from_slice(&ts.seconds.to_be_bytes());
    out[at + 4..at + 8].copy_from_slice(&ts.fraction.to_be_bytes());
}
