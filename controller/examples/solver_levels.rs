//! Per priority level, what the allocator carries against the two LP references on the
//! public topologies at one load (default 4×): `lp::solve` (each higher *level's total*
//! fixed — the benchmark's reference) and `lp::solve_strict` (each higher *commodity's*
//! amount fixed — the strict priority the allocator keeps). Shows where a gap to the
//! reference comes from: a level the allocator leaves short, or the reference letting one
//! higher commodity give up demand to another of its level so a lower class fits.
//!
//! ```text
//! cargo run --release -p wansteer-controller --example solver_levels -- [topology dir] [load]
//! ```

use std::path::PathBuf;

use wansteer_controller::lp;
use wansteer_controller::solver::alloc::{Allocation, Commodity, allocate};
use wansteer_controller::solver::instances::{
    Topology, read_sndlib_json, read_zoo_graphml, topology_instance,
};

fn level_carried(commodities: &[Commodity], a: &Allocation, level: u8) -> f64 {
    commodities
        .iter()
        .enumerate()
        .filter(|(_, c)| c.level == level)
        .map(|(i, _)| a.carried(i))
        .sum()
}

fn main() {
    let dir = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/work/shared/topologies"));
    let load: f64 = std::env::args()
        .nth(2)
        .and_then(|l| l.parse().ok())
        .unwrap_or(4.0);
    let mut topologies: Vec<(Topology, u64)> = Vec::new();
    for name in ["abilene", "geant", "germany50"] {
        if let Ok(text) = std::fs::read_to_string(dir.join(format!("{name}.json"))) {
            topologies.push((read_sndlib_json(name, &text).expect("SNDlib JSON"), 0));
        }
    }
    for name in ["Deltacom", "Cogentco"] {
        if let Ok(text) = std::fs::read_to_string(dir.join(format!("{name}.graphml"))) {
            for seed in 1..=2 {
                topologies.push((
                    read_zoo_graphml(name, &text, 400, seed).expect("GraphML"),
                    seed,
                ));
            }
        }
    }
    println!(
        "load {load}×: per level, allocator / LP (level totals fixed) / LP (each commodity fixed)"
    );
    println!(
        "| instance | level | allocator | LP | strict LP | ÷ LP | ÷ strict LP | weighted ÷ LP | weighted ÷ strict LP |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (topology, zoo_seed) in &topologies {
        for seed in 1..=2 {
            let instance = topology_instance(topology, load, seed + 10 * zoo_seed);
            let (capacity, paths, commodities) =
                (&instance.capacity, &instance.paths, &instance.commodities);
            let solver = allocate(capacity, paths, commodities);
            let (Ok(total), Ok(strict)) = (
                lp::solve(capacity, paths, commodities),
                lp::solve_strict(capacity, paths, commodities),
            ) else {
                eprintln!("LP failed on {}", topology.name);
                continue;
            };
            let weighted = |a: &Allocation| lp::weighted_carried(commodities, a);
            let max_level = commodities.iter().map(|c| c.level).max().unwrap_or(0);
            for level in 0..=max_level {
                let (s, t, p) = (
                    level_carried(commodities, &solver, level),
                    level_carried(commodities, &total, level),
                    level_carried(commodities, &strict, level),
                );
                println!(
                    "| {}-d{zoo_seed}-s{seed} | {level} | {s:.1} | {t:.1} | {p:.1} | {:.4} | {:.4} | {:.4} | {:.4} |",
                    topology.name,
                    s / t.max(1e-9),
                    s / p.max(1e-9),
                    weighted(&solver) / weighted(&total).max(1e-9),
                    weighted(&solver) / weighted(&strict).max(1e-9),
                );
            }
        }
    }
}
