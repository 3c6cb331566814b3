//! The solver against the exact LP reference on small instances: it never carries more of
//! the top class than the optimum (a sanity check of both), and reaches at least 95% of
//! the LP's priority-weighted carried demand. The benchmark (`examples/solver_quality.rs`)
//! measures the full distribution.

use std::path::Path;
use std::time::Duration;

use wansteer_controller::lp;
use wansteer_controller::plan::Planner;
use wansteer_controller::solver::alloc::allocate;
use wansteer_controller::solver::instances::{
    SdwanSpec, read_sndlib_json, sdwan, topology_instance,
};

fn top_level_carried(
    commodities: &[wansteer_controller::solver::alloc::Commodity],
    a: &wansteer_controller::solver::alloc::Allocation,
) -> f64 {
    let top = commodities.iter().map(|c| c.level).min().unwrap();
    commodities
        .iter()
        .enumerate()
        .filter(|(_, c)| c.level == top)
        .map(|(i, _)| a.carried(i))
        .sum()
}

#[test]
fn planner_agrees_with_lp_on_a_loaded_sdwan() {
    let spec = SdwanSpec {
        branches: 12,
        hubs: 1,
        dcs: 2,
        classes: 3,
        load: 1.2,
        down_share: 0.05,
        both_directions: false,
    };
    for seed in 1..=3 {
        let (policy, measurements, demands) = sdwan(&spec, seed);
        let mut planner = Planner::new(policy);
        for m in measurements {
            planner.update_measurement(m).unwrap();
        }
        for d in demands {
            planner.update_demand(d).unwrap();
        }
        planner.plan(Duration::ZERO);
        let view = planner.problem();
        let solver = view.allocation.unwrap();
        let reference = lp::solve(view.capacity, view.paths, view.commodities).unwrap();
        let (s, r) = (
            lp::weighted_carried(view.commodities, solver),
            lp::weighted_carried(view.commodities, &reference),
        );
        assert!(r > 0.0);
        assert!(s >= 0.95 * r, "seed {seed}: solver {s} vs LP {r}");
        let (st, rt) = (
            top_level_carried(view.commodities, solver),
            top_level_carried(view.commodities, &reference),
        );
        assert!(
            st <= rt * (1.0 + 1e-6) + 1.0,
            "top class: solver {st} > LP optimum {rt}"
        );
        assert!(
            solver.residual.iter().all(|&r| r >= -1e-3),
            "capacity respected"
        );
    }
}

#[test]
fn allocator_agrees_with_lp_on_abilene() {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/abilene.json"),
    )
    .unwrap();
    let topology = read_sndlib_json("abilene", &text).unwrap();
    for load in [1.0, 2.0] {
        let instance = topology_instance(&topology, load, 1);
        let solver = allocate(&instance.capacity, &instance.paths, &instance.commodities);
        let reference =
            lp::solve(&instance.capacity, &instance.paths, &instance.commodities).unwrap();
        let (s, r) = (
            lp::weighted_carried(&instance.commodities, &solver),
            lp::weighted_carried(&instance.commodities, &reference),
        );
        assert!(s >= 0.95 * r, "load {load}: solver {s} vs LP {r}");
        assert!(solver.residual.iter().all(|&x| x >= -1e-6));
    }
}
