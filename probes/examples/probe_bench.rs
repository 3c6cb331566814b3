//! Line-measurement benchmark: estimator throughput, accuracy against injected truth,
//! detection times, false transitions, probes needed to tell 2% from a 1% SLA, and the
//! CPU/RSS of probing 3 lines at 20/s over real loopback sockets.
//!
//! cargo run --release -p wansteer-probes --example probe_bench [-- --live-secs 30]
//! cargo run --release -p wansteer-probes --example probe_bench -- --only live --interval-ms 20

use std::time::{Duration, Instant};

use wansteer_probes::sim::{Impairment, LossModel, SimLine, Step, simulate};
use wansteer_probes::stats::{Z95, wilson};
use wansteer_probes::tasks::{bind_reflector, run_reflector};
use wansteer_probes::{LineMonitor, MonitorConfig, SenderConfig, Sla, spawn_sender};
use wansteer_wire::report::{HealthState, LineReport};

const WALL_START: Duration = Duration::from_secs(1_790_000_000);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 * p / 100.0).ceil() as usize).clamp(1, v.len()) - 1]
}

fn monitor(config: MonitorConfig) -> LineMonitor {
    LineMonitor::new(config, WALL_START).unwrap()
}

fn two_slas() -> MonitorConfig {
    let mut c = MonitorConfig::new("bench");
    c.slas = vec![
        Sla {
            name: "voice".into(),
            loss_limit: 0.01,
            rtt_limit: Some(ms(150)),
            jitter_limit: Some(ms(30)),
            fast_loss_factor: None,
        },
        Sla::loss_only("bulk", 0.03),
    ];
    c
}

fn throughput() {
    println!("## Estimator throughput (pure core, virtual time)\n");
    let mut rates = Vec::new();
    for seed in 0..5 {
        let mut m = monitor(two_slas());
        let mut imp = Impairment::clean(ms(20)).with_loss(LossModel::Bernoulli(0.01));
        imp.jitter = ms(5);
        let t = Instant::now();
        simulate(&mut m, imp, &[], Duration::from_secs(3600), seed);
        let secs = t.elapsed().as_secs_f64();
        rates.push(72_000.0 / secs);
    }
    let rate = median(&mut rates);
    println!(
        "- one simulated hour at 20 probes/s (72,000 probes, 2 SLAs, each probe: send + reply + 2 polls):"
    );
    println!("  median {rate:.0} probes/s over 5 runs");
    println!(
        "- => CPU of the estimator core for 3 lines at 20/s: {:.4}% of a core\n",
        60.0 / rate * 100.0
    );
}

fn accuracy() {
    println!("## Accuracy against injected truth (30 min, 20/s, 20 ms RTT, clock offset +1 h)\n");
    println!(
        "| jitter per direction | loss model | RTT mean err (ms) | RTT p99 err (ms) | PDV p99 err (ms) | 95% CI holds true loss |"
    );
    println!("|---|---|---|---|---|---|");
    for (jitter, loss, name) in [
        (0, LossModel::Bernoulli(0.02), "2% iid"),
        (5, LossModel::Bernoulli(0.02), "2% iid"),
        (20, LossModel::Bernoulli(0.01), "1% iid"),
        (5, LossModel::bursty(0.02, 10.0), "2% bursts of 10"),
    ] {
        let mut imp = Impairment::clean(ms(20)).with_loss(loss.clone());
        imp.jitter = ms(jitter);
        imp.clock_offset_ns = 3_600_000_000_000;
        // Truth: the delays the line actually applied, from the same seeded line.
        let mut truth_line = SimLine::new(imp.clone(), 11);
        let mut m = monitor(MonitorConfig::new("acc"));
        let run = simulate(&mut m, imp.clone(), &[], Duration::from_secs(1800), 11);
        let mut rtts = Vec::new();
        for i in 0..36_000u64 {
            let sent = ms(50 * i);
            let trip = truth_line.trip(sent, true);
            if let Some(back) = trip.back_at {
                rtts.push((back - sent - imp.turnaround).as_secs_f64() * 1e3);
            }
        }
        // Compare the last 30 s long window with the truth of the same probes.
        let last = run.summaries.last().unwrap();
        let window: Vec<f64> = {
            let n = last.long.probes as usize - last.long.lost as usize;
            rtts[rtts.len() - n..].to_vec()
        };
        let mut w = window.clone();
        let true_mean = w.iter().sum::<f64>() / w.len() as f64;
        let true_p99 = pct(&mut w, 99.0);
        let true_pdv = true_p99 - w[0];
        let est = last.long.rtt_ms.unwrap();
        let covered = run.summaries[60..]
            .iter()
            .filter(|s| {
                s.long.loss.lower <= loss.mean_loss() && loss.mean_loss() <= s.long.loss.upper
            })
            .count() as f64
            / (run.summaries.len() - 60) as f64;
        println!(
            "| {jitter} ms | {name} | {:+.4} | {:+.4} | {:+.4} | {:.1}% of 30 s windows |",
            est.mean - true_mean,
            est.p99 - true_p99,
            last.long.pdv_p99_ms.unwrap() - true_pdv,
            covered * 100.0
        );
    }
    println!();
}

/// The outage silence the agent derives from the probe rate (agent/src/daemon/plan.rs).
fn agent_silence(interval_ms: u64, outage_probes: u32) -> Duration {
    (ms(interval_ms) * outage_probes.saturating_sub(1)).clamp(ms(100), ms(150))
}

fn silence_detection() {
    println!(
        "## Silence → Down (outage timer: K overdue probes and a silence of (K − 1) × interval, 100–150 ms, as the agent sets it)\n"
    );
    println!("| interval | K | RTT | median | p99 | max |");
    println!("|---|---|---|---|---|---|");
    for (interval, k) in [(50u64, 7u32), (20, 7), (15, 8), (50, 3)] {
        for rtt in [5, 20, 50] {
            let mut d = Vec::new();
            for phase in 0..200u64 {
                let at = Duration::from_secs(40) + Duration::from_micros(phase * 250);
                let steps = [Step {
                    at,
                    impairment: Impairment::clean(ms(rtt)).with_loss(LossModel::Blackhole),
                }];
                let mut config = MonitorConfig::new("d");
                config.interval = ms(interval);
                config.health.outage_probes = k;
                config.health.min_silence = agent_silence(interval, k);
                let mut m = monitor(config);
                let run = simulate(
                    &mut m,
                    Impairment::clean(ms(rtt)),
                    &steps,
                    Duration::from_secs(42),
                    phase,
                );
                let down = run
                    .transitions
                    .iter()
                    .find(|t| t.to == HealthState::Down && t.elapsed_ms >= 40_000)
                    .unwrap();
                d.push(down.elapsed_ms as f64 - at.as_secs_f64() * 1e3);
            }
            println!(
                "| {interval} ms | {k} | {rtt} ms | {:.0} ms | {:.0} ms | {:.0} ms |",
                median(&mut d),
                pct(&mut d, 99.0),
                pct(&mut d, 100.0)
            );
        }
    }
    println!();
    println!("False Down on a live line losing 5% each way (9.75% per probe), 20 ms RTT:\n");
    println!("| interval | K | expected per line-hour | simulated Downs in 10 line-hours |");
    println!("|---|---|---|---|");
    for (interval, k) in [(50u64, 3u32), (20, 5), (50, 7), (20, 7), (15, 8)] {
        let q = 1.0 - 0.95f64 * 0.95;
        let expected = wansteer_probes::health::false_outage_rate_per_hour(q, ms(interval), k);
        let mut downs = 0;
        for seed in 0..10 {
            let mut config = MonitorConfig::new("d");
            config.interval = ms(interval);
            config.health.outage_probes = k;
            config.health.min_silence = agent_silence(interval, k);
            let mut lossy = Impairment::clean(ms(20)).with_loss(LossModel::Bernoulli(0.05));
            lossy.reverse_loss = LossModel::Bernoulli(0.05);
            let mut m = monitor(config);
            let run = simulate(&mut m, lossy, &[], Duration::from_secs(3600), 100 + seed);
            downs += run
                .transitions
                .iter()
                .filter(|t| t.to == HealthState::Down && t.elapsed_ms > 2_000)
                .count();
        }
        println!("| {interval} ms | {k} | {expected:.4} | {downs} |");
    }
    println!();
}

fn loss_reaction() {
    println!("## Loss onset → Degraded, and false exits from Up (1% SLA, 20/s)\n");
    println!(
        "Detection: loss starts at 60 s on a clean 20 ms line; 100 seeds; 'never' counts as 60 s."
    );
    println!("False exits: one hour per seed, 3 seeds; share of 1 s summaries in `Up`.\n");
    println!(
        "| fast_loss_factor | 5% iid median / p90 | 2% iid median / p90 | 5% bursts(10) median | 0.5% iid exits/h, Up | 0.9% iid exits/h, Up | 0.9% bursts(10) exits/h, Up |"
    );
    println!("|---|---|---|---|---|---|---|");
    for factor in [1.0, 2.0, 3.0] {
        let config = || {
            let mut c = MonitorConfig::new("l");
            c.health.fast_loss_factor = factor;
            c
        };
        let detect = |loss: LossModel| {
            let mut d = Vec::new();
            for seed in 0..100 {
                let clean = Impairment::clean(ms(20));
                let steps = [Step {
                    at: Duration::from_secs(60),
                    impairment: clean.clone().with_loss(loss.clone()),
                }];
                let mut m = monitor(config());
                let run = simulate(&mut m, clean, &steps, Duration::from_secs(120), seed);
                let t = run
                    .transitions
                    .iter()
                    .find(|t| t.elapsed_ms >= 60_000)
                    .map(|t| (t.elapsed_ms - 60_000) as f64 / 1e3)
                    .unwrap_or(60.0);
                d.push(t);
            }
            (median(&mut d.clone()), pct(&mut d, 90.0))
        };
        let false_exits = |loss: LossModel| {
            let (mut exits, mut up) = (0usize, 0.0);
            for seed in 0..3 {
                let mut m = monitor(config());
                let run = simulate(
                    &mut m,
                    Impairment::clean(ms(20)).with_loss(loss.clone()),
                    &[],
                    Duration::from_secs(3600),
                    seed,
                );
                exits += run
                    .transitions
                    .iter()
                    .filter(|t| t.from == HealthState::Up)
                    .count();
                up += run
                    .summaries
                    .iter()
                    .filter(|s| s.health[0].state == HealthState::Up)
                    .count() as f64
                    / run.summaries.len() as f64;
            }
            format!("{:.1}, {:.0}%", exits as f64 / 3.0, up / 3.0 * 100.0)
        };
        let (m5, p5) = detect(LossModel::Bernoulli(0.05));
        let (m2, p2) = detect(LossModel::Bernoulli(0.02));
        let (mb, _) = detect(LossModel::bursty(0.05, 10.0));
        println!(
            "| {factor}{} | {m5:.1} s / {p5:.1} s | {m2:.1} s / {p2:.1} s | {mb:.1} s | {} | {} | {} |",
            if factor == 2.0 { " (default)" } else { "" },
            false_exits(LossModel::Bernoulli(0.005)),
            false_exits(LossModel::Bernoulli(0.009)),
            false_exits(LossModel::bursty(0.009, 10.0)),
        );
    }
    println!();
}

/// P(Wilson lower bound of k/n > limit) for k ~ Binomial(n, p), computed exactly.
fn p_trip(n: u32, p: f64, limit: f64) -> f64 {
    let mut total = 0.0;
    // log pmf by recurrence to stay finite for n in the thousands.
    let mut log_pmf = f64::from(n) * (1.0 - p).ln();
    for k in 0..=n {
        if k > 0 {
            log_pmf += (f64::from(n - k + 1) / f64::from(k)).ln() + (p / (1.0 - p)).ln();
        }
        if wilson(k, n, Z95).lower > limit {
            total += log_pmf.exp();
        }
    }
    total
}

fn probes_needed() {
    println!(
        "## Probes needed to tell 2% loss from a 1% SLA (one window, trip when the 95% lower bound > 1%)\n"
    );
    println!("Exact binomial, independent losses.\n");
    println!(
        "| probes | seconds at 20/s | P(trip) at true 2% | P(trip) at true 0.9% | P(trip) at true 1% |"
    );
    println!("|---|---|---|---|---|");
    for n in [100, 200, 400, 600, 1000, 1500, 2000, 3000, 4000] {
        println!(
            "| {n} | {:.0} | {:.1}% | {:.2}% | {:.2}% |",
            f64::from(n) / 20.0,
            p_trip(n, 0.02, 0.01) * 100.0,
            p_trip(n, 0.009, 0.01) * 100.0,
            p_trip(n, 0.01, 0.01) * 100.0,
        );
    }
    let first = |target: f64| {
        (50..=10_000)
            .step_by(10)
            .find(|&n| p_trip(n, 0.02, 0.01) >= target)
    };
    println!(
        "\nFirst window size with P(trip | 2%) >= 50%: {:?} probes; >= 90%: {:?}; >= 95%: {:?}.\n",
        first(0.5),
        first(0.9),
        first(0.95)
    );
}

fn cpu_seconds() -> f64 {
    // utime + stime from /proc/self/stat (fields 14, 15), in clock ticks (100 Hz here).
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

fn rss_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn live(secs: u64, interval: Duration) {
    println!(
        "## Live: 3 lines at {:.0} probes/s over real loopback UDP, sender + reflector in one process\n",
        1.0 / interval.as_secs_f64()
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (cpu, wall, reports) = rt.block_on(async {
        let socket = bind_reflector("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let addr = socket.local_addr().unwrap();
        tokio::spawn(run_reflector(socket, std::future::pending()));
        let mut handles = Vec::new();
        for line in ["mpls", "inet", "lte"] {
            let mut monitor = two_slas();
            monitor.line = line.into();
            monitor.interval = interval;
            handles.push(
                spawn_sender(SenderConfig {
                    monitor,
                    reflector: addr,
                    socket: Default::default(),
                    count: None,
                })
                .unwrap(),
            );
        }
        // Warm up, then measure.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (cpu0, t0) = (cpu_seconds(), Instant::now());
        let mut reports = 0usize;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        while tokio::time::Instant::now() < deadline {
            for h in &mut handles {
                while let Ok(LineReport::Summary(_) | LineReport::Transition(_)) =
                    h.reports.try_recv()
                {
                    reports += 1;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        (cpu_seconds() - cpu0, t0.elapsed().as_secs_f64(), reports)
    });
    println!(
        "- measured over {wall:.1} s: CPU {:.2}% of one core (user+sys, /proc/self/stat), {reports} reports",
        cpu / wall * 100.0
    );
    println!(
        "- RSS {:.1} MiB (VmRSS), peak {:.1} MiB (VmHWM) — whole process incl. tokio runtime\n",
        rss_kib("VmRSS:") as f64 / 1024.0,
        rss_kib("VmHWM:") as f64 / 1024.0
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let live_secs = args
        .iter()
        .position(|a| a == "--live-secs")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let interval = args
        .iter()
        .position(|a| a == "--interval-ms")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .map_or(ms(50), ms);
    let only = |name: &str| !args.iter().any(|a| a == "--only") || args.iter().any(|a| a == name);
    if only("throughput") {
        throughput();
    }
    if only("accuracy") {
        accuracy();
    }
    if only("silence") {
        silence_detection();
    }
    if only("needed") {
        probes_needed();
    }
    if only("loss") {
        loss_reaction();
    }
    if only("live") {
        live(live_secs, interval);
    }
}
