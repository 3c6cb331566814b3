//! Where the classifier's memory goes with a branch's number of live flows: the agent's
//! classifier (default `Config`) fed `flows` UDP flows of 10 packets each (1 ms apart, so
//! 14,336 flows stay inside the UDP timeout), with the heap
//! counted by a counting global allocator and the process RSS read from /proc.
//!
//! `cargo run --release -p wansteer-agent --example classifier_memory [flows]`

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use wansteer_agent::classifier::packet::LinkType;
use wansteer_agent::classifier::{Catalogue, Classifier, Config};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator and only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: same layout, passed through.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size, Ordering::Relaxed);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: as `GlobalAlloc::realloc` requires, passed through.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn rss_kib() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap_or(0)
}

fn udp_frame(flow: u32, payload: &[u8]) -> Vec<u8> {
    let builder = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([10, 1, (flow >> 8) as u8, flow as u8], [10, 200, 0, 1], 64)
        .udp(20_000 + (flow % 40_000) as u16, 5000 + (flow % 100) as u16);
    let mut frame = Vec::with_capacity(builder.size(payload.len()));
    builder.write(&mut frame, payload).unwrap();
    frame
}

fn main() {
    let flows: u32 = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(1300);
    println!(
        "size_of: flow table entry (FlowKey + Flow<FlowState>) {} bytes",
        wansteer_agent::classifier::engine::flow_entry_size()
    );
    let (rss_start, heap_start) = (rss_kib(), LIVE.load(Ordering::Relaxed));
    let mut classifier = Classifier::new(Catalogue::builtin().clone(), None, Config::default());
    let (rss_empty, heap_empty) = (rss_kib(), LIVE.load(Ordering::Relaxed));
    println!(
        "empty classifier (default Config, {} flows max): heap {} KiB, RSS +{} KiB",
        Config::default().max_flows,
        (heap_empty - heap_start) / 1024,
        rss_empty.saturating_sub(rss_start)
    );
    let payload = [0x42u8; 160];
    let mut now = Duration::from_secs(1);
    for flow in 0..flows {
        for _ in 0..10 {
            now += Duration::from_millis(1);
            classifier.process_frame(now, LinkType::Ethernet, &udp_frame(flow, &payload));
        }
        classifier.take_verdicts();
    }
    let (rss_full, heap_full) = (rss_kib(), LIVE.load(Ordering::Relaxed));
    println!(
        "{} live flows: heap +{} KiB ({} B per flow), RSS +{} KiB ({} B per flow)",
        classifier.live_flows(),
        (heap_full - heap_empty) / 1024,
        (heap_full - heap_empty) / classifier.live_flows().max(1),
        rss_full.saturating_sub(rss_empty),
        rss_full.saturating_sub(rss_empty) * 1024 / classifier.live_flows().max(1)
    );
}
