#![no_main]
use libfuzzer_sys::fuzz_target;
use wansteer_lab::voice::VoicePacket;

fuzz_target!(|data: &[u8]| {
    let _ = VoicePacket::decode(data);
});
