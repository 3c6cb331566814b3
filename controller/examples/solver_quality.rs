//! Solver quality against the exact LP reference (DESIGN §5), at three load levels, on
//! generated SD-WAN networks (through the planner, so hysteresis ordering and SLA
//! filtering are included) and on the public topologies in `shared/topologies`.
//!
//! ```text
//! cargo run --release -p wansteer-controller --example solver_quality -- [topology dir] [sdwan|topology]
//! ```
//! Prints one row per instance and the median and p10 of solver/LP (priority-weighted
//! carried demand) per load level.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use wansteer_controller::lp;
use wansteer_controller::plan::Planner;
use wansteer_controller::solver::alloc::{Allocation, Commodity, Paths, allocate};
use wansteer_controller::solver::instances::{
    SdwanSpec, Topology, read_sndlib_json, read_zoo_graphml, sdwan, topology_instance,
};

struct Row {
    family: &'static str,
    name: String,
    level: usize,
    commodities: usize,
    ratio: f64,
    top_ratio: f64,
    /// Share of the solver's carried demand off each commodity's main path: rule sets give
    /// a class one primary line per destination, so split flow is not expressible there.
    split: f64,
    solver_ms: f64,
    lp_ms: f64,
}

fn top_carried(commodities: &[Commodity], a: &Allocation) -> f64 {
    let top = commodities.iter().map(|c| c.level).min().unwrap_or(0);
    commodities
        .iter()
        .enumerate()
        .filter(|(_, c)| c.level == top)
        .map(|(i, _)| a.carried(i))
        .sum()
}

/// LP results (weighted carried, top class carried, ms) by instance key, kept in the file
/// named by `SOLVER_QUALITY_LP_CACHE` when set: the LP takes minutes per run and its input
/// does not change while the allocator is tuned.
struct LpCache {
    file: Option<PathBuf>,
    known: HashMap<String, (f64, f64, f64)>,
}

impl LpCache {
    fn open() -> LpCache {
        let file = std::env::var_os("SOLVER_QUALITY_LP_CACHE").map(PathBuf::from);
        let mut known = HashMap::new();
        if let Some(text) = file.as_ref().and_then(|f| std::fs::read_to_string(f).ok()) {
            for line in text.lines() {
                let parts: Vec<&str> = line.split(' ').collect();
                if let [key, w, t, ms] = parts[..]
                    && let (Ok(w), Ok(t), Ok(ms)) = (w.parse(), t.parse(), ms.parse())
                {
                    known.insert(key.to_string(), (w, t, ms));
                }
            }
        }
        LpCache { file, known }
    }

    fn store(&mut self, key: String, value: (f64, f64, f64)) {
        if let Some(file) = &self.file {
            let line = format!("{key} {} {} {}\n", value.0, value.1, value.2);
            let mut out = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(file)
                .expect("LP cache file writable");
            out.write_all(line.as_bytes()).expect("LP cache write");
        }
        self.known.insert(key, value);
    }
}

/// Identifies an instance's LP input: name, sizes and a digest of the numbers.
fn instance_key(name: &str, capacity: &[f64], paths: &Paths, commodities: &[Commodity]) -> String {
    let mut digest: u64 = 0xcbf2_9ce4_8422_2325;
    let mut mix = |x: u64| {
        digest ^= x;
        digest = digest.wrapping_mul(0x100_0000_01b3);
    };
    capacity.iter().for_each(|c| mix(c.to_bits()));
    for c in commodities {
        mix(u64::from(c.level));
        mix(c.demand.to_bits());
        for &p in &c.paths {
            paths.arcs(p).iter().for_each(|&a| mix(u64::from(a)));
            mix(u64::MAX);
        }
    }
    format!(
        "{name}/{}/{}/{digest:016x}",
        capacity.len(),
        commodities.len()
    )
}

fn compare(
    cache: &mut LpCache,
    name: &str,
    capacity: &[f64],
    paths: &Paths,
    commodities: &[Commodity],
    solver: &Allocation,
    solver_ms: f64,
) -> Option<(f64, f64, f64, f64)> {
    let key = instance_key(name, capacity, paths, commodities);
    let (r, r_top, lp_ms) = match cache.known.get(&key) {
        Some(&known) => known,
        None => {
            let start = Instant::now();
            let reference = match lp::solve(capacity, paths, commodities) {
                Ok(reference) => reference,
                Err(e) => {
                    eprintln!("  LP failed: {e}");
                    return None;
                }
            };
            let lp_ms = start.elapsed().as_secs_f64() * 1000.0;
            let value = (
                lp::weighted_carried(commodities, &reference),
                top_carried(commodities, &reference),
                lp_ms,
            );
            cache.store(key, value);
            value
        }
    };
    let s = lp::weighted_carried(commodities, solver);
    let top = top_carried(commodities, solver) / r_top.max(1e-9);
    Some((s / r.max(1e-9), top, solver_ms, lp_ms))
}

/// Share of carried demand not on its commodity's main path.
fn split_share(commodities: &[Commodity], a: &Allocation) -> f64 {
    let mut carried = 0.0;
    let mut off_main = 0.0;
    for i in 0..commodities.len() {
        let total = a.carried(i);
        let main = a.flows[i].iter().map(|f| f.1).fold(0.0f64, f64::max);
        carried += total;
        off_main += total - main;
    }
    off_main / carried.max(1e-9)
}

fn percentile(mut values: Vec<f64>, p: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    let rank = ((values.len() as f64 - 1.0) * p).round() as usize;
    values[rank]
}

fn main() {
    let dir = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/work/shared/topologies"));
    let only = std::env::args().nth(2).unwrap_or_default();
    let mut rows: Vec<Row> = Vec::new();
    let mut cache = LpCache::open();
    let levels = ["low", "medium", "high"];

    // Generated SD-WAN networks: load = demand / capacity at branches and DCs.
    let sdwan_loads: &[f64] = if only == "topology" {
        &[]
    } else {
        &[0.6, 1.0, 1.5]
    };
    for (level, &load) in sdwan_loads.iter().enumerate() {
        for seed in 1..=6 {
            let spec = SdwanSpec {
                branches: 40,
                hubs: 2,
                dcs: 2,
                classes: 4,
                load,
                down_share: 0.03,
                both_directions: seed % 2 == 0,
            };
            let (policy, measurements, demands) = sdwan(&spec, seed);
            let mut planner = Planner::new(policy);
            for m in measurements {
                planner.update_measurement(m).expect("generated");
            }
            for d in demands {
                planner.update_demand(d).expect("generated");
            }
            let start = Instant::now();
            planner.solve(Duration::ZERO);
            let solver_ms = start.elapsed().as_secs_f64() * 1000.0;
            let view = planner.problem();
            let solver = view.allocation.expect("solved");
            let name = format!("sdwan-40br-s{seed}");
            if let Some((ratio, top_ratio, solver_ms, lp_ms)) = compare(
                &mut cache,
                &format!("{name}-{}", levels[level]),
                view.capacity,
                view.paths,
                view.commodities,
                solver,
                solver_ms,
            ) {
                rows.push(Row {
                    family: "sdwan",
                    name,
                    level,
                    commodities: view.commodities.len(),
                    ratio,
                    top_ratio,
                    split: split_share(view.commodities, solver),
                    solver_ms,
                    lp_ms,
                });
            }
        }
    }

    // Public topologies: shortest-path load of the busiest link at 1×, 2×, 4× capacity.
    let mut topologies: Vec<(Topology, u64)> = Vec::new();
    for name in ["abilene", "geant", "germany50"] {
        let path = dir.join(format!("{name}.json"));
        match std::fs::read_to_string(&path) {
            Ok(text) => topologies.push((read_sndlib_json(name, &text).expect("SNDlib JSON"), 0)),
            Err(e) => eprintln!("skipping {}: {e}", path.display()),
        }
    }
    for name in ["Deltacom", "Cogentco"] {
        let path: &Path = &dir.join(format!("{name}.graphml"));
        match std::fs::read_to_string(path) {
            Ok(text) => {
                for seed in 1..=2 {
                    topologies.push((
                        read_zoo_graphml(name, &text, 400, seed).expect("GraphML"),
                        seed,
                    ));
                }
            }
            Err(e) => eprintln!("skipping {}: {e}", path.display()),
        }
    }
    let topology_loads: &[f64] = if only == "sdwan" {
        &[]
    } else {
        &[1.0, 2.0, 4.0]
    };
    for (level, &load) in topology_loads.iter().enumerate() {
        for (topology, zoo_seed) in &topologies {
            for seed in 1..=2 {
                let instance = topology_instance(topology, load, seed + 10 * zoo_seed);
                let start = Instant::now();
                let solver = allocate(&instance.capacity, &instance.paths, &instance.commodities);
                let solver_ms = start.elapsed().as_secs_f64() * 1000.0;
                let name = format!("{}-d{zoo_seed}-s{seed}", topology.name);
                if let Some((ratio, top_ratio, solver_ms, lp_ms)) = compare(
                    &mut cache,
                    &format!("{name}-{}", levels[level]),
                    &instance.capacity,
                    &instance.paths,
                    &instance.commodities,
                    &solver,
                    solver_ms,
                ) {
                    rows.push(Row {
                        family: "topology",
                        name,
                        level,
                        commodities: instance.commodities.len(),
                        ratio,
                        top_ratio,
                        split: split_share(&instance.commodities, &solver),
                        solver_ms,
                        lp_ms,
                    });
                }
            }
        }
    }

    println!(
        "| instance | load | commodities | solver/LP (weighted) | top class solver/LP | split | solver ms | LP ms |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for row in &rows {
        println!(
            "| {} | {} | {} | {:.4} | {:.4} | {:.2}% | {:.1} | {:.0} |",
            row.name,
            levels[row.level],
            row.commodities,
            row.ratio,
            row.top_ratio,
            100.0 * row.split,
            row.solver_ms,
            row.lp_ms
        );
    }
    println!();
    println!("| family | load | instances | median | p10 | min | split (median) |");
    println!("|---|---|---|---|---|---|---|");
    for family in ["sdwan", "topology", "all"] {
        for (level, name) in levels.iter().enumerate() {
            let ratios: Vec<f64> = rows
                .iter()
                .filter(|r| r.level == level && (family == "all" || r.family == family))
                .map(|r| r.ratio)
                .collect();
            if ratios.is_empty() {
                continue;
            }
            let splits: Vec<f64> = rows
                .iter()
                .filter(|r| r.level == level && (family == "all" || r.family == family))
                .map(|r| r.split)
                .collect();
            println!(
                "| {family} | {name} | {} | {:.4} | {:.4} | {:.4} | {:.2}% |",
                ratios.len(),
                percentile(ratios.clone(), 0.5),
                percentile(ratios.clone(), 0.1),
                ratios.iter().copied().fold(f64::INFINITY, f64::min),
                100.0 * percentile(splits, 0.5)
            );
        }
    }
}
