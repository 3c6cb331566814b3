//! RTP and RTCP over UDP: no port or magic number names them, so a flow is called RTP only
//! after several packets agree — version 2, a plausible payload type, one SSRC, and sequence
//! numbers that advance by small steps. One stray packet that looks right proves nothing.

/// What one datagram looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Rtp {
        ssrc: u32,
        seq: u16,
        payload_type: u8,
    },
    Rtcp,
    Neither,
}

/// Classifies the shape of one datagram.
pub fn shape(data: &[u8]) -> Shape {
    if data.len() < 12 || data[0] >> 6 != 2 {
        return Shape::Neither;
    }
    let second = data[1];
    if (200..=207).contains(&second) {
        // RTCP: the length field (in 32-bit words minus one) must fit the datagram.
        let words = usize::from(u16::from_be_bytes([data[2], data[3]]));
        return if (words + 1) * 4 <= data.len() {
            Shape::Rtcp
        } else {
            Shape::Neither
        };
    }
    let payload_type = second & 0x7f;
    let plausible = payload_type <= 34 || (96..=127).contains(&payload_type);
    if !plausible {
        return Shape::Neither;
    }
    Shape::Rtp {
        ssrc: u32::from_be_bytes([data[8], data[9], data[10], data[11]]),
        seq: u16::from_be_bytes([data[2], data[3]]),
        payload_type,
    }
}

/// Evidence gathered over the packets of one direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RtpTrack {
    last: Option<(u32, u16)>,
    /// Consecutive packets with the same SSRC and a small sequence step.
    pub in_order: u8,
    pub rtcp: u8,
}

/// Packets in a row before a direction counts as RTP.
pub const RTP_EVIDENCE: u8 = 3;

impl RtpTrack {
    /// Feeds one datagram; returns the shape seen.
    pub fn feed(&mut self, data: &[u8]) -> Shape {
        let seen = shape(data);
        match seen {
            Shape::Rtp { ssrc, seq, .. } => {
                match self.last {
                    Some((last_ssrc, last_seq))
                        if last_ssrc == ssrc && (1..=16).contains(&seq.wrapping_sub(last_seq)) =>
                    {
                        self.in_order = self.in_order.saturating_add(1);
                    }
                    // A duplicate (captured twice, or retransmitted) is neither for nor against.
                    Some((last_ssrc, last_seq)) if last_ssrc == ssrc && seq == last_seq => {}
                    Some(_) => self.in_order = 0,
                    None => {}
                }
                self.last = Some((ssrc, seq));
            }
            Shape::Rtcp => self.rtcp = self.rtcp.saturating_add(1),
            Shape::Neither => self.in_order = 0,
        }
        seen
    }

    /// True once enough packets in a row looked like one RTP stream.
    pub fn is_rtp(&self) -> bool {
        self.in_order + 1 >= RTP_EVIDENCE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rtp(seq: u16, ssrc: u32) -> Vec<u8> {
        let mut packet = vec![0x80, 0x00];
        packet.extend_from_slice(&seq.to_be_bytes());
        packet.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
        packet.extend_from_slice(&ssrc.to_be_bytes());
        packet.extend_from_slice(&[0xd5; 160]);
        packet
    }

    #[test]
    fn a_steady_stream_is_rtp_after_three_packets() {
        let mut track = RtpTrack::default();
        track.feed(&rtp(65534, 7));
        assert!(!track.is_rtp());
        track.feed(&rtp(65535, 7));
        track.feed(&rtp(0, 7));
        assert!(track.is_rtp());
    }

    #[test]
    fn changing_ssrc_or_jumping_sequence_is_not() {
        let mut track = RtpTrack::default();
        track.feed(&rtp(10, 7));
        track.feed(&rtp(11, 8));
        track.feed(&rtp(500, 8));
        assert!(!track.is_rtp());
    }

    #[test]
    fn rtcp_sender_report_shape() {
        let mut report = vec![0x80, 200, 0x00, 0x06];
        report.extend_from_slice(&[0; 24]);
        assert_eq!(shape(&report), Shape::Rtcp);
        report.truncate(20);
        assert_eq!(shape(&report), Shape::Neither);
    }
}
