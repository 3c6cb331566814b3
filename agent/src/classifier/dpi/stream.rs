//! In-order reassembly of the first bytes of one TCP direction.
//!
//! Handshakes (a TLS ClientHello, a server Certificate) can span several segments, arrive
//! out of order or be retransmitted. This keeps only the leading bytes a parser needs, holds
//! a few early segments back until the gap closes, and never grows past its cap.

/// Bytes of one direction from the first segment on, in sequence order.
#[derive(Debug, Clone, Default)]
pub struct StreamPrefix {
    bytes: Vec<u8>,
    next_seq: Option<u32>,
    /// Segments that arrived ahead of a gap: (seq, payload).
    early: Vec<(u32, Vec<u8>)>,
}

/// At most this many bytes are kept per direction.
pub const STREAM_CAP: usize = 16 * 1024;
const EARLY_SEGMENTS: usize = 8;

impl StreamPrefix {
    /// A stream whose first byte has sequence number `seq` (the SYN's plus one).
    pub fn starting_at(seq: u32) -> StreamPrefix {
        StreamPrefix {
            next_seq: Some(seq),
            ..StreamPrefix::default()
        }
    }

    /// The reassembled leading bytes so far.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Segments held back waiting for a gap to close.
    pub fn held(&self) -> usize {
        self.early.len()
    }

    /// True once nothing more will be kept.
    pub fn is_full(&self) -> bool {
        self.bytes.len() >= STREAM_CAP
    }

    /// Adds a segment with TCP sequence number `seq`. The first segment with payload fixes
    /// the start of the stream. Returns true when new bytes were appended.
    pub fn push(&mut self, seq: u32, payload: &[u8]) -> bool {
        if payload.is_empty() || self.is_full() {
            return false;
        }
        let next = *self.next_seq.get_or_insert(seq);
        let appended = self.append(next, seq, payload);
        if appended {
            // A gap may have closed: drain held-back segments that now fit.
            while let Some(next) = self.next_seq {
                let Some(index) = self.early.iter().position(|(s, p)| {
                    seq_le(*s, next) && seq_lt(next, s.wrapping_add(p.len() as u32))
                }) else {
                    self.early.retain(|(s, _)| !seq_le(*s, next));
                    break;
                };
                let (s, p) = self.early.swap_remove(index);
                self.append(next, s, &p);
            }
        } else if seq_lt(next, seq) && self.early.len() < EARLY_SEGMENTS {
            let room = STREAM_CAP.saturating_sub(self.bytes.len());
            self.early
                .push((seq, payload[..payload.len().min(room)].to_vec()));
        }
        appended
    }

    fn append(&mut self, next: u32, seq: u32, payload: &[u8]) -> bool {
        if seq_lt(next, seq) {
            return false;
        }
        let skip = next.wrapping_sub(seq) as usize;
        if skip >= payload.len() {
            return false; // a retransmission of bytes we have
        }
        let fresh = &payload[skip..];
        let room = STREAM_CAP - self.bytes.len();
        let fresh = &fresh[..fresh.len().min(room)];
        self.bytes.extend_from_slice(fresh);
        self.next_seq = Some(next.wrapping_add(fresh.len() as u32));
        true
    }
}

fn seq_lt(a: u32, b: u32) -> bool {
    (b.wrapping_sub(a) as i32) > 0
}

fn seq_le(a: u32, b: u32) -> bool {
    a == b || seq_lt(a, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_out_of_order_and_retransmitted_come_out_in_order() {
        let mut stream = StreamPrefix::default();
        stream.push(1000, b"hello ");
        stream.push(1011, b"!");
        stream.push(1000, b"hello ");
        stream.push(1006, b"world");
        stream.push(1009, b"ld!");
        assert_eq!(stream.bytes(), b"hello world!");
    }

    #[test]
    fn sequence_numbers_wrap() {
        let mut stream = StreamPrefix::default();
        stream.push(u32::MAX - 1, b"ab");
        stream.push(0, b"cd");
        assert_eq!(stream.bytes(), b"abcd");
    }

    #[test]
    fn the_prefix_never_grows_past_its_cap() {
        let mut stream = StreamPrefix::default();
        let chunk = vec![7u8; 1500];
        let mut seq = 0u32;
        for _ in 0..20 {
            stream.push(seq, &chunk);
            seq = seq.wrapping_add(1500);
        }
        assert_eq!(stream.bytes().len(), STREAM_CAP);
        assert!(stream.is_full());
    }
}
