//! pcap/pcapng container parsing.
#![no_main]
use libfuzzer_sys::fuzz_target;
use wansteer_agent::classifier::capture;

fuzz_target!(|data: &[u8]| {
    let mut frames = 0u64;
    let _ = capture::replay(data, |_| frames += 1);
});
