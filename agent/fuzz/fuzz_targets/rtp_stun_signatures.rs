//! RTP/RTCP shape tracking, STUN and every single-packet signature, on TCP and UDP.
#![no_main]
use libfuzzer_sys::fuzz_target;
use wansteer_agent::classifier::dpi::{rtp, signatures};

fuzz_target!(|data: &[u8]| {
    let mut track = rtp::RtpTrack::default();
    for chunk in data.chunks(200) {
        track.feed(chunk);
    }
    let (ports, payload) = data.split_at(data.len().min(4));
    let port = |i: usize| u16::from_be_bytes([*ports.get(i).unwrap_or(&0), *ports.get(i + 1).unwrap_or(&0)]);
    for proto in [6u8, 17] {
        let _ = signatures::detect(&signatures::Payload { proto, sport: port(0), dport: port(2), data: payload });
        let _ = signatures::stun(&signatures::Payload { proto, sport: 3478, dport: 3478, data: payload });
    }
});
