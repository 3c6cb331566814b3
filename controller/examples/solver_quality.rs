//! Solver quality against the exact LP reference (DESIGN §5), at three load levels, on
//! generated SD-WAN networks (through the planner, so hysteresis ordering and SLA
//! filtering are included) and on the public topologies in `shared/topologies`.
//!
//! ```text
//! cargo run --release -p wansteer-controller --example solver_quality -- [topology dir] [sdwan|topology]
//! ```
//! Prints one row per instance and the median and p10 of solver/LP (priority-weighted
//! carried demand) per load level.

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

fn compare(
    capacity: &[f64],
    paths: &Paths,
    commodities: &[Commodity],
    solver: &Allocation,
    solver_ms: f64,
) -> Option<(f64, f64, f64, f64)> {
    let start = Instant::now();
    let reference = match lp::solve(capacity, paths, commodities) {
        Ok(reference) => reference,
        Err(e) => {
            eprintln!("  LP failed: {e}");
            return None;
        }
    };
    let lp_ms = start.elapsed().as_secs_f64() * 1000.0;
    let s = lp::weighted_carried(commodities, solver);
    let r = lp::weighted_carried(commodities, &reference);
    let top = top_carried(commodities, solver) / top_carried(commodities, &reference).max(1e-9);
    Some((s / r.max(1e-9), top, solver_ms, lp_ms))
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
            if let Some((ratio, top_ratio, solver_ms, lp_ms)) = compare(
                view.capacity,
                view.paths,
                view.commodities,
                solver,
                solver_ms,
            ) {
                rows.push(Row {
                    family: "sdwan",
                    name: format!("sdwan-40br-s{seed}"),
                    level,
                    commodities: view.commodities.len(),
                    ratio,
                    top_ratio,
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
                if let Some((ratio, top_ratio, solver_ms, lp_ms)) = compare(
                    &instance.capacity,
                    &instance.paths,
                    &instance.commodities,
                    &solver,
                    solver_ms,
                ) {
                    rows.push(Row {
                        family: "topology",
                        name: format!("{}-d{zoo_seed}-s{seed}", topology.name),
                        level,
                        commodities: instance.commodities.len(),
                        ratio,
                        top_ratio,
                        solver_ms,
                        lp_ms,
                    });
                }
            }
        }
    }

    println!(
        "| instance | load | commodities | solver/LP (weighted) | top class solver/LP | solver ms | LP ms |"
    );
    println!("|---|---|---|---|---|---|---|");
    for row in &rows {
        println!(
            "| {} | {} | {} | {:.4} | {:.4} | {:.1} | {:.0} |",
            row.name,
            levels[row.level],
            row.commodities,
            row.ratio,
            row.top_ratio,
            row.solver_ms,
            row.lp_ms
        );
    }
    println!();
    println!("| family | load | instances | median | p10 | min |");
    println!("|---|---|---|---|---|---|");
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
            println!(
                "| {family} | {name} | {} | {:.4} | {:.4} | {:.4} |",
                ratios.len(),
                percentile(ratios.clone(), 0.5),
                percentile(ratios.clone(), 0.1),
                ratios.iter().copied().fold(f64::INFINITY, f64::min)
            );
        }
    }
}
