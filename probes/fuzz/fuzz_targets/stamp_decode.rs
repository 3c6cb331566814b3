//! STAMP decoders and the reflector on arbitrary bytes: never panic; whatever decodes
//! re-encodes to the same significant octets.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wansteer_probes::packet::{ErrorEstimate, NtpTimestamp, PACKET_LEN, ReflectorPacket, SenderPacket};
use wansteer_probes::reflector::reflect;

fuzz_target!(|data: &[u8]| {
    let sender = SenderPacket::decode(data);
    let reflector = ReflectorPacket::decode(data);
    assert_eq!(sender.is_ok(), data.len() >= PACKET_LEN);
    if let Ok(packet) = reflector {
        let again = packet.encode();
        assert_eq!(&again[..14], &data[..14]);
        assert_eq!(&again[16..38], &data[16..38]);
    }
    let t = NtpTimestamp::from_bits(0xE9A1_B2C3_8000_0000);
    let answer = reflect(data, t, t, ErrorEstimate::from_bits(1), 64);
    if let Ok(answer) = answer {
        assert_eq!(answer.len(), data.len());
        assert!(ReflectorPacket::decode(&answer).is_ok());
    }
});
