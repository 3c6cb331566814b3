//! Replay throughput of the classifier over the shared nDPI corpus.
//!
//! Two cases, as the corpus README describes them:
//! * `fresh`: the 42 public captures once, into a new classifier each iteration (~462 flows);
//! * `copies-100`: the captures 100 times, each copy's flows told apart by an added VLAN tag,
//!   so every copy is classified afresh and ~46,000 flows are live at the end.
//!
//! Frames are decoded from pcap into memory first; the timed part is `process_frame` (link
//! and IP decoding, flow table, DPI, verdicts). The memory per live flow is measured with a
//! counting allocator and printed before the timings.

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::PathBuf;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use wansteer_agent::classifier::capture;
use wansteer_agent::classifier::packet::LinkType;
use wansteer_agent::classifier::{Catalogue, Classifier, Config};

struct Counting;

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator and only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same layout contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: ptr came from `alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE_BYTES.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: as for `GlobalAlloc::realloc`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const CORPUS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/corpus/ndpi/public/pcap"
);

struct Frame {
    time: Duration,
    link: LinkType,
    data: Vec<u8>,
}

/// Every frame of every public capture, captures one after the other in capture time.
fn corpus_frames() -> Vec<Frame> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(CORPUS)
        .unwrap_or_else(|e| panic!("corpus missing at {CORPUS}: {e}"))
        .map(|entry| entry.unwrap().path())
        .collect();
    paths.sort();
    let mut frames = Vec::new();
    let mut offset = Duration::ZERO;
    for path in paths {
        let bytes = capture::read_file(&path).unwrap();
        let mut first = None;
        let mut last = Duration::ZERO;
        capture::replay(&bytes, |frame| {
            let start = *first.get_or_insert(frame.time);
            let at = offset + frame.time.saturating_sub(start);
            last = last.max(at);
            frames.push(Frame {
                time: at,
                link: frame.link,
                data: frame.data.to_vec(),
            });
        })
        .unwrap();
        offset = last + Duration::from_secs(1);
    }
    frames
}

/// Copy `copy` of an Ethernet frame, tagged with VLAN `copy + 1` innermost so the
/// classifier keys its flows apart from the other copies.
fn tagged_copy(frame: &Frame, copy: u16) -> Frame {
    let mut data = frame.data.clone();
    if frame.link == LinkType::Ethernet && data.len() >= 14 {
        let mut at = 12;
        while at + 4 <= data.len()
            && matches!(
                u16::from_be_bytes([data[at], data[at + 1]]),
                0x8100 | 0x88a8
            )
        {
            at += 4;
        }
        let tag = [0x81, 0x00, (copy >> 8) as u8 & 0x0f, copy as u8];
        data.splice(at..at, tag);
    }
    Frame {
        time: frame.time,
        link: frame.link,
        data,
    }
}

/// Replays the frames; verdicts are taken every 1,024 packets, as the agent hands them to
/// the data plane.
fn replay(frames: &[Frame]) -> Classifier {
    // Room for every flow of the 100 copies: the figure is for classification, not eviction.
    let config = Config {
        max_flows: 1 << 17,
        ..Config::default()
    };
    let mut classifier = Classifier::new(Catalogue::builtin().clone(), None, config);
    for (i, frame) in frames.iter().enumerate() {
        classifier.process_frame(frame.time, frame.link, &frame.data);
        if i % 1024 == 1023 {
            drop(classifier.take_verdicts());
        }
    }
    drop(classifier.take_verdicts());
    classifier
}

/// CPU time this thread has used: on a shared machine wall time also counts other
/// processes' turns, CPU time only ours.
fn thread_cpu_time() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a full rusage into the pointer it is given.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_THREAD, usage.as_mut_ptr());
        usage.assume_init()
    };
    let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    time(usage.ru_utime) + time(usage.ru_stime)
}

/// Median packets per CPU-second over `runs` replays.
fn packets_per_cpu_second(frames: &[Frame], runs: usize) -> f64 {
    let mut rates: Vec<f64> = (0..runs)
        .map(|_| {
            let start = thread_cpu_time();
            let classifier = replay(frames);
            let used = thread_cpu_time() - start;
            drop(classifier);
            frames.len() as f64 / used.as_secs_f64()
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

fn benches(c: &mut Criterion) {
    let fresh = corpus_frames();
    let copies: Vec<Frame> = (0..100u16)
        .flat_map(|copy| fresh.iter().map(move |frame| tagged_copy(frame, copy + 1)))
        .collect();

    // Memory per live flow: what the classifier holds after the 100 copies, per flow.
    let before = LIVE_BYTES.load(Ordering::Relaxed);
    let classifier = replay(&copies);
    let held = LIVE_BYTES.load(Ordering::Relaxed) - before;
    let flows = classifier.live_flows();
    println!(
        "copies-100: {} packets, {} live flows, {} bytes held, {} bytes per flow",
        copies.len(),
        flows,
        held,
        held / flows.max(1) as isize
    );
    drop(classifier);
    println!(
        "fresh: median {:.0} packets per CPU-second over 21 runs ({} packets)",
        packets_per_cpu_second(&fresh, 21),
        fresh.len()
    );
    println!(
        "copies-100: median {:.0} packets per CPU-second over 7 runs",
        packets_per_cpu_second(&copies, 7)
    );

    let mut group = c.benchmark_group("classifier_replay");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(15));
    group.throughput(Throughput::Elements(fresh.len() as u64));
    group.bench_function("fresh", |b| b.iter(|| replay(&fresh)));
    group.throughput(Throughput::Elements(copies.len() as u64));
    group.bench_function("copies-100", |b| b.iter(|| replay(&copies)));
    group.finish();
}

criterion_group!(classifier, benches);
criterion_main!(classifier);
