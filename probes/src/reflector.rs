//! The session-reflector's answer to one test packet, sans-IO (RFC 8762 §4.3,
//! stateless mode: the reflector's sequence number copies the sender's).
//!
//! The answer has the same length as the question (RFC 8762 keeps test packets
//! symmetric); octets past the 44 of the base packet are zero.

use crate::packet::{DecodeError, ErrorEstimate, NtpTimestamp, ReflectorPacket, SenderPacket};

/// Counters of a reflector.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReflectorCounters {
    /// Test packets answered.
    pub reflected: u64,
    /// Datagrams too short to be test packets, dropped.
    pub malformed: u64,
    /// Answers that could not be sent.
    pub send_errors: u64,
}

/// Builds the answer to `request`, received at `received` (T2) and sent at `sent` (T3).
/// `ttl` is the received packet's TTL or hop limit when known (0 otherwise).
pub fn reflect(
    request: &[u8],
    received: NtpTimestamp,
    sent: NtpTimestamp,
    error_estimate: ErrorEstimate,
    ttl: u8,
) -> Result<Vec<u8>, DecodeError> {
    let probe = SenderPacket::decode(request)?;
    let answer = ReflectorPacket {
        sequence: probe.sequence,
        timestamp: sent,
        error_estimate,
        receive_timestamp: received,
        sender_sequence: probe.sequence,
        sender_timestamp: probe.timestamp,
        sender_error_estimate: probe.error_estimate,
        sender_ttl: ttl,
    };
    let mut out = vec![0u8; request.len()];
    out[..answer.encode().len()].copy_from_slice(&answer.encode());
    Ok(out)
}
