//! Solver speed on a generated SD-WAN network: full solve of 10,000 sites × 3 lines × 8
//! classes, and one line's change re-solved incrementally.
//!
//! ```text
//! cargo run --release -p wansteer-controller --example solver_speed -- [branches] [runs] [solve-only]
//! ```
//! `solve-only` stops after the first full solve of each run (for profiling it alone).
//! Prints medians over the runs. Timing lives here, never in unit tests.

use std::time::{Duration, Instant};

use wansteer_controller::graph::{LineHealth, LineMeasurement};
use wansteer_controller::plan::Planner;
use wansteer_controller::solver::alloc;
use wansteer_controller::solver::instances::{SdwanSpec, sdwan};

/// CPU time of this thread: the machine is shared, so wall time includes other people's
/// work; both are printed.
fn cpu_now() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Runs `f`, returning its result with (wall, cpu) time.
fn timed<T>(f: impl FnOnce() -> T) -> (T, (Duration, Duration)) {
    let (wall, cpu) = (Instant::now(), cpu_now());
    let out = f();
    (out, (wall.elapsed(), cpu_now() - cpu))
}

fn report(label: &str, values: &[(Duration, Duration)]) {
    let wall = median(values.iter().map(|v| v.0).collect());
    let cpu = median(values.iter().map(|v| v.1).collect());
    let mut cpus: Vec<Duration> = values.iter().map(|v| v.1).collect();
    cpus.sort();
    let p99 = cpus[(cpus.len() * 99 / 100).min(cpus.len() - 1)];
    println!(
        "  {label:<58} cpu {:>10}  wall {:>10}  (cpu p99 {}, n={})",
        ms(cpu),
        ms(wall),
        ms(p99),
        values.len()
    );
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

// mimalloc, as `wansteer controller` runs (src/allocator.rs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let branches: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(9_990);
    let runs: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(5);
    let solve_only = args.get(3).is_some_and(|a| a == "solve-only");
    let spec = SdwanSpec {
        branches,
        hubs: 8,
        dcs: 2,
        classes: 8,
        load: 0.6,
        down_share: 0.02,
        both_directions: true,
    };
    let (policy, measurements, demands) = sdwan(&spec, 42);
    let lines: usize = policy.sites.iter().map(|s| s.lines.len()).sum();
    println!(
        "network: {} sites ({} branches, {} hubs, {} DCs), {lines} lines, {} classes, {} demand entries",
        policy.sites.len(),
        spec.branches,
        spec.hubs,
        spec.dcs,
        policy.classes.len(),
        demands.len()
    );
    let mut build = Vec::new();
    let mut first_solve = Vec::new();
    let mut first_compile = Vec::new();
    let mut allocate_only = Vec::new();
    let mut full_replan = Vec::new();
    let mut incremental_solve = Vec::new();
    let mut incremental_compile = Vec::new();
    let mut incremental_full = 0usize;
    let mut summary = String::new();
    for run in 0..runs {
        let (mut planner, t) = timed(|| {
            let mut planner = Planner::new(policy.clone());
            for m in &measurements {
                planner
                    .update_measurement(m.clone())
                    .expect("generated lines exist");
            }
            for d in &demands {
                planner
                    .update_demand(d.clone())
                    .expect("generated sites exist");
            }
            planner
        });
        build.push(t);
        let (plan, t) = timed(|| planner.solve(Duration::from_secs(1)));
        first_solve.push(t);
        if solve_only {
            println!("first full solve: {} decisions", plan.decisions.len());
            continue;
        }
        let (rulesets, t) = timed(|| planner.compile_pending());
        first_compile.push(t);
        if run == 0 {
            summary = format!(
                "first plan: {} commodities, {} rule sets, {} decisions, demand {:.1} Gbit/s, carried {:.1} Gbit/s ({:.2}%)",
                plan.stats.commodities,
                rulesets.len(),
                plan.decisions.len(),
                plan.stats.demand_bps / 1e9,
                plan.stats.carried_bps / 1e9,
                100.0 * plan.stats.carried_bps / plan.stats.demand_bps
            );
        }
        let view = planner.problem();
        let (allocation, t) =
            timed(|| alloc::allocate(view.capacity, view.paths, view.commodities));
        allocate_only.push(t);
        assert_eq!(allocation.flows.len(), view.commodities.len());
        // One line's change: a branch's MPLS loses 5% (voice must leave it), re-planned.
        let mut now = Duration::from_secs(100);
        for i in 0..50 {
            let branch = (i * 197 + run * 31) % spec.branches;
            now += Duration::from_secs(1);
            planner
                .update_measurement(LineMeasurement {
                    site: format!("br{branch:05}"),
                    line: "mpls".into(),
                    rtt: Duration::from_millis(25),
                    loss: 0.05,
                    jitter: Duration::from_millis(2),
                    health: LineHealth::Up,
                    at: now,
                })
                .expect("line exists");
            let (plan, t) = timed(|| planner.solve(now));
            if plan.stats.full {
                incremental_full += 1;
            } else {
                incremental_solve.push(t);
            }
            let (_, t) = timed(|| planner.compile_pending());
            incremental_compile.push(t);
        }
        // A hub line's change touches every pair that may transit it: a full re-plan.
        now += Duration::from_secs(1);
        planner
            .update_measurement(LineMeasurement {
                site: "hub0".into(),
                line: "mpls".into(),
                rtt: Duration::from_millis(3),
                loss: 0.0,
                jitter: Duration::from_millis(1),
                health: LineHealth::Down,
                at: now,
            })
            .expect("line exists");
        let (plan, t) = timed(|| planner.solve(now));
        full_replan.push(t);
        assert!(plan.stats.full);
    }
    if solve_only {
        report("first full solve", &first_solve);
        return;
    }
    println!("{summary}");
    println!("runs: {runs}; medians:");
    report("planner build + feed measurements/demand", &build);
    report(
        "first full solve (candidates, allocation, decisions)",
        &first_solve,
    );
    report(
        "  of which allocation alone (same problem, re-run)",
        &allocate_only,
    );
    report("first compile of every site's rule set", &first_compile);
    report(
        "full re-solve on a warm planner (hub line down)",
        &full_replan,
    );
    report(
        "one branch line change: incremental re-solve",
        &incremental_solve,
    );
    report(
        "one branch line change: recompile touched rule sets",
        &incremental_compile,
    );
    println!(
        "  incremental runs that fell back to a full solve: {incremental_full} of {}",
        50 * runs
    );
}
