//! Measures the lab on this machine: topology up/down time, the emulator's delay precision
//! and jitter shape (UDP echo RTT vs configured delay), and TCP throughput with all three
//! lines of a branch loaded at once, with the emulator's CPU cost. Needs root.
//!
//! ```text
//! cargo run -p wansteer-lab --release --example emulator_bench
//! ```

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use wansteer_lab::echo::{self, Reflector, RttStats};
use wansteer_lab::emulator::model::JitterShape;
use wansteer_lab::emulator::{Emulator, ImpairmentChange};
use wansteer_lab::topology::{Plan, Topology};
use wansteer_lab::{bulk, lab};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// CPU seconds used so far by this process's emulator threads (named rx-… / tx-…):
/// (receive threads, send threads).
fn emulator_cpu_seconds() -> (f64, f64) {
    let ticks = 100.0; // USER_HZ
    let (mut rx, mut tx) = (0.0, 0.0);
    for task in std::fs::read_dir("/proc/self/task")
        .expect("tasks")
        .flatten()
    {
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = &stat[open + 1..close];
        if !(comm.starts_with("rx-") || comm.starts_with("tx-")) {
            continue;
        }
        let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
        let utime: f64 = fields[11].parse().unwrap_or(0.0);
        let stime: f64 = fields[12].parse().unwrap_or(0.0);
        let seconds = (utime + stime) / ticks;
        if comm.starts_with("rx-") {
            rx += seconds;
        } else {
            tx += seconds;
        }
    }
    (rx, tx)
}

struct Running {
    plan: Plan,
    emulators: Vec<Emulator>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.emulators.clear();
        let _ = lab::teardown(&self.plan);
    }
}

fn rtt_across(plan: &Plan, line: &str, count: u32, interval: Duration) -> RttStats {
    let l = plan.line(line).expect("line");
    let addr = l.far_addresses[0];
    let reflector = Reflector::start(&l.far_router, SocketAddr::new(addr, 0)).expect("reflector");
    let target = SocketAddr::new(addr, reflector.port());
    // Warm up neighbour caches, then measure.
    let _ = echo::probe(
        &l.near_router,
        target,
        5,
        Duration::from_millis(5),
        64,
        Duration::from_millis(300),
    );
    let samples = echo::probe(
        &l.near_router,
        target,
        count,
        interval,
        64,
        Duration::from_millis(500),
    )
    .expect("probe");
    RttStats::from_samples(&samples).expect("replies")
}

fn main() -> anyhow::Result<()> {
    let topology = Topology::parse(include_str!("../topologies/bank.yaml"), "bank.yaml")?;
    let prefix = format!("wstbench{}", std::process::id() % 100);

    println!("## Topology up/down (bank.yaml: 16 namespaces, 6 lines)\n");
    let (mut ups, mut downs) = (Vec::new(), Vec::new());
    for _ in 0..7 {
        let plan = topology.plan(&prefix);
        let up = lab::build(&plan)?;
        let t = Instant::now();
        lab::teardown(&plan)?;
        ups.push(up.as_secs_f64());
        downs.push(t.elapsed().as_secs_f64());
    }
    println!("| | median of 7 |\n|---|---|");
    println!(
        "| up (namespaces, veths, addresses, routes, sysctls, ethtool) | {:.3} s |",
        median(ups)
    );
    println!(
        "| down (kill processes, delete namespaces) | {:.3} s |\n",
        median(downs)
    );

    let plan = topology.plan(&prefix);
    lab::build(&plan)?;
    let mut run = Running {
        plan: plan.clone(),
        emulators: Vec::new(),
    };
    for l in &plan.lines {
        run.emulators.push(Emulator::start(
            &l.id,
            &l.namespace,
            "near",
            "far",
            l.baseline,
            None,
        )?);
    }
    let mpls = &run.emulators[0];

    println!(
        "## Delay precision (br1-mpls, router to router, 400 probes every 10 ms, no rate limit)\n"
    );
    println!("| one-way delay | expected RTT | min | median | mean | p95 | mean − expected |");
    println!("|---|---|---|---|---|---|---|");
    for delay_ms in [0u64, 5, 10, 20, 40] {
        mpls.change(ImpairmentChange {
            delay_us: Some(delay_ms * 1000),
            jitter_us: Some(0),
            rate_bps: Some(0),
            ..Default::default()
        })?;
        let s = rtt_across(&run.plan, "br1-mpls", 400, Duration::from_millis(10));
        let expected = 2.0 * delay_ms as f64;
        println!(
            "| {delay_ms} ms | {expected:.1} ms | {:.2} | {:.2} | {:.2} | {:.2} | {:+.2} ms |",
            s.min_ms,
            s.median_ms,
            s.mean_ms,
            s.p95_ms,
            s.mean_ms - expected
        );
    }

    println!(
        "\n## Jitter shape (one-way 20 ms ± 5 ms each direction, reordering allowed, 1000 probes every 5 ms)\n"
    );
    println!("| shape | expected RTT σ | measured σ | mean |\n|---|---|---|---|");
    for (shape, expected_sd) in [
        (JitterShape::Normal, 5.0 * 2f64.sqrt()),
        (JitterShape::Uniform, 5.0 * 2f64.sqrt() / 3f64.sqrt()),
    ] {
        mpls.change(ImpairmentChange {
            delay_us: Some(20_000),
            jitter_us: Some(5_000),
            jitter_shape: Some(shape),
            reorder: Some(true),
            ..Default::default()
        })?;
        let s = rtt_across(&run.plan, "br1-mpls", 1000, Duration::from_millis(5));
        println!(
            "| {shape:?} | {expected_sd:.2} ms | {:.2} ms | {:.2} ms (expected 40) |",
            s.stddev_ms, s.mean_ms
        );
    }

    println!("\n## Throughput: TCP cubic on br1's three lines at once (5 s after 1 s warm-up)\n");
    for (label, rate) in [("50mbit each", Some(50_000_000u64)), ("unlimited", Some(0))] {
        for e in &run.emulators[..3] {
            e.change(ImpairmentChange {
                delay_us: Some(5_000),
                jitter_us: Some(0),
                rate_bps: rate,
                ..Default::default()
            })?;
        }
        let cpu_before = emulator_cpu_seconds();
        let wall = Instant::now();
        let results: Vec<(String, f64)> = std::thread::scope(|s| {
            let handles: Vec<_> = ["br1-mpls", "br1-inet", "br1-lte"]
                .iter()
                .map(|id| {
                    let l = run.plan.line(id).expect("line").clone();
                    s.spawn(move || {
                        let r = bulk::run(
                            &l.near_router,
                            &l.far_router,
                            SocketAddr::new(l.far_addresses[0], 0),
                            Duration::from_secs(1),
                            Duration::from_secs(5),
                        )
                        .expect("bulk");
                        (l.id.clone(), r.bits_per_second / 1e6)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("bulk thread"))
                .collect()
        });
        let cpu_after = emulator_cpu_seconds();
        let (rx, tx) = (cpu_after.0 - cpu_before.0, cpu_after.1 - cpu_before.1);
        let cpu = rx + tx;
        let secs = wall.elapsed().as_secs_f64();
        println!(
            "rate {label}: {} — emulator CPU {:.0}% of one core (receive threads {:.0}%, send threads {:.0}% incl. the far side's softirq delivery; over {:.1} s)",
            results
                .iter()
                .map(|(id, m)| format!("{id} {m:.1} Mbit/s"))
                .collect::<Vec<_>>()
                .join(", "),
            cpu / secs * 100.0,
            rx / secs * 100.0,
            tx / secs * 100.0,
            secs
        );
    }
    Ok(())
}
