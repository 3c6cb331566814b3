//! STAMP codec against hand-built RFC 8762 layouts, NTP and error-estimate arithmetic,
//! and a never-panics property over arbitrary bytes.

use std::time::{Duration, UNIX_EPOCH};

use proptest::prelude::*;
use wansteer_probes::packet::{
    DecodeError, ErrorEstimate, NtpTimestamp, PACKET_LEN, ReflectorPacket, SenderPacket,
    TimestampFormat,
};
use wansteer_probes::reflector::reflect;

/// RFC 8762 Figure 2, filled in by hand: seq 0x01020304, timestamp 0xE9A1B2C3.80000000,
/// error estimate S=1 Z=0 Scale=0x14 Multiplier=0x01, then 30 MBZ octets.
const SENDER: [u8; 44] = [
    0x01, 0x02, 0x03, 0x04, // Sequence Number
    0xE9, 0xA1, 0xB2, 0xC3, 0x80, 0x00, 0x00, 0x00, // Timestamp
    0x94, 0x01, // Error Estimate: 1 0 010100 00000001
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];

/// RFC 8762 Figure 4, filled in by hand.
const REFLECTOR: [u8; 44] = [
    0x00, 0x00, 0x00, 0x07, // Sequence Number
    0xE9, 0xA1, 0xB2, 0xC4, 0x00, 0x00, 0x10, 0x00, // Timestamp (T3)
    0x40, 0xFF, // Error Estimate: S=0 Z=1 (PTP) scale 0 multiplier 255
    0x00, 0x00, // MBZ
    0xE9, 0xA1, 0xB2, 0xC4, 0x00, 0x00, 0x0F, 0x00, // Receive Timestamp (T2)
    0x01, 0x02, 0x03, 0x04, // Session-Sender Sequence Number
    0xE9, 0xA1, 0xB2, 0xC3, 0x80, 0x00, 0x00, 0x00, // Session-Sender Timestamp
    0x94, 0x01, // Session-Sender Error Estimate
    0x00, 0x00, // MBZ
    0x3F, // Ses-Sender TTL 63
    0x00, 0x00, 0x00, // MBZ
];

fn sender() -> SenderPacket {
    SenderPacket {
        sequence: 0x0102_0304,
        timestamp: NtpTimestamp {
            seconds: 0xE9A1_B2C3,
            fraction: 0x8000_0000,
        },
        error_estimate: ErrorEstimate {
            synchronized: true,
            format: TimestampFormat::Ntp,
            scale: 0x14,
            multiplier: 1,
        },
    }
}

fn reflector() -> ReflectorPacket {
    ReflectorPacket {
        sequence: 7,
        timestamp: NtpTimestamp {
            seconds: 0xE9A1_B2C4,
            fraction: 0x1000,
        },
        error_estimate: ErrorEstimate {
            synchronized: false,
            format: TimestampFormat::Ptp,
            scale: 0,
            multiplier: 255,
        },
        receive_timestamp: NtpTimestamp {
            seconds: 0xE9A1_B2C4,
            fraction: 0x0F00,
        },
        sender_sequence: 0x0102_0304,
        sender_timestamp: sender().timestamp,
        sender_error_estimate: sender().error_estimate,
        sender_ttl: 63,
    }
}

#[test]
fn sender_packet_matches_rfc_8762_figure_2_byte_for_byte() {
    assert_eq!(sender().encode(), SENDER);
    assert_eq!(SenderPacket::decode(&SENDER), Ok(sender()));
}

#[test]
fn reflector_packet_matches_rfc_8762_figure_4_byte_for_byte() {
    assert_eq!(reflector().encode(), REFLECTOR);
    assert_eq!(ReflectorPacket::decode(&REFLECTOR), Ok(reflector()));
}

#[test]
fn both_packets_are_44_octets_in_unauthenticated_mode() {
    assert_eq!(PACKET_LEN, 44);
    assert_eq!(sender().encode().len(), reflector().encode().len());
}

#[test]
fn truncated_packets_are_errors_not_panics() {
    for len in 0..PACKET_LEN {
        assert_eq!(
            SenderPacket::decode(&SENDER[..len]),
            Err(DecodeError::Truncated { len })
        );
        assert_eq!(
            ReflectorPacket::decode(&REFLECTOR[..len]),
            Err(DecodeError::Truncated { len })
        );
    }
}

#[test]
fn nonzero_mbz_and_trailing_tlvs_are_ignored_for_interoperability() {
    let mut long = REFLECTOR.to_vec();
    long[14] = 0xAA; // MBZ
    long[41] = 0xBB; // MBZ
    long.extend_from_slice(&[0x08, 0x00, 0x00, 0x04, 1, 2, 3, 4]); // an RFC 8972 TLV
    assert_eq!(ReflectorPacket::decode(&long), Ok(reflector()));
    let mut padded = SENDER.to_vec();
    padded.resize(128, 0xEE);
    assert_eq!(SenderPacket::decode(&padded), Ok(sender()));
}

#[test]
fn reflector_echoes_the_sender_fields_and_keeps_the_packet_length() {
    let mut probe = SENDER.to_vec();
    probe.resize(60, 0); // a padded sender packet
    let t2 = NtpTimestamp::from_bits(0xE9A1_B2C4_0000_0F00);
    let t3 = NtpTimestamp::from_bits(0xE9A1_B2C4_0000_1000);
    let answer = reflect(&probe, t2, t3, reflector().error_estimate, 63).unwrap();
    assert_eq!(answer.len(), 60);
    let decoded = ReflectorPacket::decode(&answer).unwrap();
    assert_eq!(decoded.sender_sequence, 0x0102_0304);
    assert_eq!(
        decoded.sequence, 0x0102_0304,
        "stateless reflector copies the sequence"
    );
    assert_eq!(decoded.sender_timestamp, sender().timestamp);
    assert_eq!(decoded.sender_error_estimate, sender().error_estimate);
    assert_eq!((decoded.receive_timestamp, decoded.timestamp), (t2, t3));
    assert_eq!(decoded.sender_ttl, 63);
    assert!(answer[44..].iter().all(|&b| b == 0));
    assert!(reflect(&SENDER[..20], t2, t3, reflector().error_estimate, 0).is_err());
}

#[test]
fn ntp_timestamps_count_from_1900() {
    let unix_epoch = NtpTimestamp::from_system_time(UNIX_EPOCH);
    assert_eq!(
        (unix_epoch.seconds, unix_epoch.fraction),
        (2_208_988_800, 0)
    );
    // 2000-01-01T00:00:00.5Z: NTP seconds 3155673600, half a second = 0x80000000.
    let y2k = NtpTimestamp::from_unix_duration(Duration::from_millis(946_684_800_500));
    assert_eq!((y2k.seconds, y2k.fraction), (3_155_673_600, 0x8000_0000));
    // 250 ms = 0x40000000; 1 ns ≈ 4.29 units, rounded to 4.
    let q = NtpTimestamp::from_unix_duration(Duration::new(0, 250_000_001));
    assert_eq!(q.fraction, 0x4000_0004);
}

#[test]
fn ntp_differences_survive_the_2036_era_wrap() {
    let before = NtpTimestamp {
        seconds: u32::MAX,
        fraction: 0x8000_0000,
    };
    let after = before.add_nanos(700_000_000);
    assert_eq!(after.seconds, 0, "wrapped into era 1");
    let diff = after.nanos_since(before);
    assert!((diff - 700_000_000).abs() <= 1, "{diff}");
    assert!((before.nanos_since(after) + 700_000_000).abs() <= 1);
}

#[test]
fn error_estimate_encodes_s_z_scale_multiplier() {
    let e = ErrorEstimate::from_bits(0x94_01);
    assert!(e.synchronized);
    assert_eq!(
        (e.format, e.scale, e.multiplier),
        (TimestampFormat::Ntp, 0x14, 1)
    );
    assert_eq!(e.to_bits(), 0x9401);
    // 2^20 × 2^-32 s = 2^-12 s ≈ 244.14 µs.
    assert_eq!(e.error(), Duration::from_nanos(244_140));
}

#[test]
fn error_estimate_rounds_a_bound_up_and_never_has_a_zero_multiplier() {
    for bound in [
        Duration::ZERO,
        Duration::from_nanos(1),
        Duration::from_micros(15),
        Duration::from_millis(1),
        Duration::from_millis(10),
        Duration::from_secs(3),
    ] {
        let e = ErrorEstimate::unsynchronized(bound);
        assert_ne!(e.multiplier, 0, "{bound:?}");
        assert!(!e.synchronized);
        assert!(
            e.error() + Duration::from_nanos(1) >= bound,
            "{bound:?} -> {:?}",
            e.error()
        );
        assert!(
            e.error() <= bound + bound / 100 + Duration::from_nanos(1),
            "{bound:?} -> {:?}",
            e.error()
        );
    }
}

proptest! {
    #[test]
    fn decoders_never_panic_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let s = SenderPacket::decode(&bytes);
        let r = ReflectorPacket::decode(&bytes);
        prop_assert_eq!(s.is_ok(), bytes.len() >= PACKET_LEN);
        prop_assert_eq!(r.is_ok(), bytes.len() >= PACKET_LEN);
        if let Ok(r) = r {
            // Whatever we decode re-encodes to the same non-MBZ octets.
            let again = r.encode();
            for i in [0..14, 16..38, 40..41] {
                prop_assert_eq!(&again[i.clone()], &bytes[i]);
            }
        }
    }

    #[test]
    fn reflector_packets_round_trip(seq in any::<u32>(), t in any::<u64>(), r in any::<u64>(),
                                   sseq in any::<u32>(), st in any::<u64>(), e in any::<u16>(),
                                   se in any::<u16>(), ttl in any::<u8>()) {
        let packet = ReflectorPacket {
            sequence: seq,
            timestamp: NtpTimestamp::from_bits(t),
            error_estimate: ErrorEstimate::from_bits(e),
            receive_timestamp: NtpTimestamp::from_bits(r),
            sender_sequence: sseq,
            sender_timestamp: NtpTimestamp::from_bits(st),
            sender_error_estimate: ErrorEstimate::from_bits(se),
            sender_ttl: ttl,
        };
        prop_assert_eq!(ReflectorPacket::decode(&packet.encode()), Ok(packet));
    }

    #[test]
    fn ntp_add_and_difference_agree(bits in any::<u64>(), nanos in -3_600_000_000_000i64..3_600_000_000_000) {
        let a = NtpTimestamp::from_bits(bits);
        let b = a.add_nanos(nanos);
        prop_assert!((b.nanos_since(a) - nanos).abs() <= 1);
    }
}
