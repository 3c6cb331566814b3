//! DNS: message parsing (UDP and TCP framing) and cache learning.
#![no_main]
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use wansteer_agent::classifier::dpi::dns;

fuzz_target!(|data: &[u8]| {
    let mut cache = dns::DnsCache::new(64);
    for over_tcp in [false, true] {
        if let Some(message) = dns::parse(data, over_tcp) {
            cache.learn(Duration::from_secs(1), &message);
        }
    }
});
