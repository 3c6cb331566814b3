//! A prober fed arbitrary datagrams between its own probes: never panics, and every
//! datagram is accounted for exactly once.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use wansteer_probes::{LineMonitor, MonitorConfig};

fuzz_target!(|data: &[u8]| {
    let mut monitor = LineMonitor::new(MonitorConfig::new("fuzz"), Duration::from_secs(1_790_000_000)).unwrap();
    let mut now = Duration::ZERO;
    for (i, chunk) in data.chunks(47).enumerate() {
        if i % 2 == 0 {
            monitor.on_send(now);
        }
        monitor.on_datagram(now, chunk, chunk.first().is_none_or(|b| b & 1 == 0));
        now += Duration::from_millis(u64::from(chunk.first().copied().unwrap_or(0)));
        let _ = monitor.poll(now);
    }
    let c = monitor.counters();
    let datagrams = data.chunks(47).count() as u64;
    assert_eq!(c.answered + c.duplicates + c.foreign + c.malformed, datagrams);
});
