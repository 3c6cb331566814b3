//! The exact reference the solver is judged against (DESIGN §5): path-based
//! multi-commodity flow. Variables are the share of each commodity's demand on each of its
//! candidate paths (the same candidates the solver got, SLA-breaking ones already removed);
//! per priority level the LP maximises that level's carried demand subject to the line
//! capacities, with every higher level held at what it carried (strict priority).
//!
//! Solved with `good_lp` over the pure-Rust `microlp` simplex. Used by tests and
//! benchmarks, never on the controller's hot path.

use std::collections::BTreeMap;

use good_lp::{Expression, Solution, SolverModel, Variable, microlp, variable, variables};

use crate::solver::alloc::{Allocation, Commodity, Flows, Paths};

/// Why the reference could not be computed.
#[derive(Debug, thiserror::Error)]
#[error("LP reference failed at priority level {level}: {message}")]
pub struct LpError {
    pub level: u8,
    pub message: String,
}

/// Solves the reference LP; the result has the same shape as the solver's allocation.
///
/// Strict priority is lexicographic: level by level, the LP maximises what that level
/// carries while every higher level keeps carrying (at least) what its own LP found. The
/// higher levels' *amounts* are fixed, not their paths, so a lower level may still reroute
/// them — the strongest reading of "fix the higher classes' allocation", and an upper
/// bound on what any strict-priority allocation carries at every level.
pub fn solve(
    capacity: &[f64],
    paths: &Paths,
    commodities: &[Commodity],
) -> Result<Allocation, LpError> {
    solve_fixing(capacity, paths, commodities, Fixing::LevelTotal)
}

/// The same lexicographic LP with each higher-level *commodity* held at what it carried,
/// not just each level's total: the strict priority the allocator keeps (no commodity of a
/// higher class gives up demand so that a lower class fits), so a tighter reference for it.
/// A diagnostic (`examples/solver_levels.rs`); the benchmark's reference stays [`solve`].
pub fn solve_strict(
    capacity: &[f64],
    paths: &Paths,
    commodities: &[Commodity],
) -> Result<Allocation, LpError> {
    solve_fixing(capacity, paths, commodities, Fixing::PerCommodity)
}

#[derive(Clone, Copy, PartialEq)]
enum Fixing {
    LevelTotal,
    PerCommodity,
}

fn solve_fixing(
    capacity: &[f64],
    paths: &Paths,
    commodities: &[Commodity],
    fixing: Fixing,
) -> Result<Allocation, LpError> {
    let mut levels: BTreeMap<u8, Vec<usize>> = BTreeMap::new();
    for (index, commodity) in commodities.iter().enumerate() {
        if commodity.demand > 0.0 && !commodity.paths.is_empty() {
            levels.entry(commodity.level).or_default().push(index);
        }
    }
    // Demands and capacities are scaled so the simplex works on numbers near 1.
    let scale = commodities
        .iter()
        .map(|c| c.demand)
        .fold(0.0f64, f64::max)
        .max(1e-9);
    let mut fixed: Vec<(Vec<usize>, f64)> = Vec::new();
    let mut allocation = Allocation {
        flows: vec![Vec::new(); commodities.len()],
        residual: capacity.to_vec(),
    };
    for (&level, members) in &levels {
        let (carried, flows) =
            solve_level(level, capacity, paths, commodities, members, &fixed, scale)?;
        match fixing {
            Fixing::LevelTotal => fixed.push((members.clone(), carried)),
            Fixing::PerCommodity => {
                for &index in members {
                    let own: f64 = flows[index].iter().map(|f| f.1).sum::<f64>() / scale;
                    fixed.push((vec![index], own));
                }
            }
        }
        allocation.flows = flows;
    }
    allocation.residual = capacity.to_vec();
    for flows in &allocation.flows {
        for &(path, amount) in flows {
            for &arc in paths.arcs(path) {
                allocation.residual[arc as usize] -= amount;
            }
        }
    }
    Ok(allocation)
}

/// Maximises what `members` carry, keeping each earlier group at its carried amount.
/// Returns that amount (scaled units) and all flows.
fn solve_level(
    level: u8,
    capacity: &[f64],
    paths: &Paths,
    commodities: &[Commodity],
    members: &[usize],
    fixed: &[(Vec<usize>, f64)],
    scale: f64,
) -> Result<(f64, Vec<Flows>), LpError> {
    let mut vars = variables!();
    let mut columns: Vec<(usize, u32, Variable)> = Vec::new();
    let mut per_arc: BTreeMap<u32, Vec<Variable>> = BTreeMap::new();
    let mut per_commodity: BTreeMap<usize, Vec<Variable>> = BTreeMap::new();
    let groups = fixed
        .iter()
        .map(|(m, _)| m.as_slice())
        .chain(std::iter::once(members));
    for group in groups {
        for &index in group {
            for &path in &commodities[index].paths {
                let x = vars.add(variable().min(0.0));
                for &arc in paths.arcs(path) {
                    per_arc.entry(arc).or_default().push(x);
                }
                columns.push((index, path, x));
                per_commodity.entry(index).or_default().push(x);
            }
        }
    }
    let objective: Expression = members
        .iter()
        .flat_map(|i| per_commodity[i].iter().copied())
        .sum();
    let mut model = vars.maximise(objective).using(microlp);
    for (&index, xs) in &per_commodity {
        let total: Expression = xs.iter().copied().sum();
        model = model.with(total.leq(commodities[index].demand / scale));
    }
    for (&arc, xs) in &per_arc {
        let load: Expression = xs.iter().copied().sum();
        model = model.with(load.leq(capacity[arc as usize] / scale));
    }
    for (group, carried) in fixed {
        let total: Expression = group
            .iter()
            .flat_map(|i| per_commodity[i].iter().copied())
            .sum();
        // A hair of slack keeps the simplex from failing on rounding.
        model = model.with(total.geq(carried * (1.0 - 1e-7)));
    }
    let solution = model.solve().map_err(|e| LpError {
        level,
        message: e.to_string(),
    })?;
    let mut flows: Vec<Flows> = vec![Vec::new(); commodities.len()];
    let mut carried = 0.0;
    for (index, path, x) in columns {
        let value = solution.value(x).max(0.0);
        if commodities[index].level == level {
            carried += value;
        }
        if value * scale > 1e-9 {
            flows[index].push((path, value * scale));
        }
    }
    Ok((carried, flows))
}

/// Carried demand weighted by priority level: level `l` weighs `max_level + 1 - l`, so
/// higher classes count more (the objective DESIGN §5 names).
pub fn weighted_carried(commodities: &[Commodity], allocation: &Allocation) -> f64 {
    let max_level = commodities.iter().map(|c| c.level).max().unwrap_or(0);
    commodities
        .iter()
        .enumerate()
        .map(|(i, c)| f64::from(max_level + 1 - c.level) * allocation.carried(i).min(c.demand))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::solver::alloc::allocate;

    #[test]
    fn lp_finds_the_split_a_greedy_order_can_miss() {
        // Two commodities share arc 0; the first can also use arc 1.
        let mut paths = Paths::new();
        let a0 = paths.push(&[0]);
        let a1 = paths.push(&[1]);
        let b0 = paths.push(&[0]);
        let commodities = vec![
            Commodity {
                level: 0,
                demand: 6.0,
                paths: vec![a0, a1],
            },
            Commodity {
                level: 0,
                demand: 8.0,
                paths: vec![b0],
            },
        ];
        let lp = solve(&[10.0, 4.0], &paths, &commodities).unwrap();
        let total = lp.carried(0) + lp.carried(1);
        assert!((total - 14.0).abs() < 1e-6, "LP carries {total}");
        let greedy = allocate(&[10.0, 4.0], &paths, &commodities);
        let greedy_total = greedy.carried(0) + greedy.carried(1);
        assert!(greedy_total <= total + 1e-6);
    }

    #[test]
    fn strict_reference_holds_each_higher_commodity_and_never_beats_the_level_total_one() {
        // A and B (level 0) share arc 0; A goes on over arc 1, where C (level 1) needs all
        // of it. The level-0 optimum carries 10 in any split of A and B; the reference
        // fixing only the total may then give it all to B so C fits.
        let mut paths = Paths::new();
        let a = paths.push(&[0, 1]);
        let b = paths.push(&[0, 2]);
        let c = paths.push(&[1]);
        let commodities = vec![
            Commodity {
                level: 0,
                demand: 10.0,
                paths: vec![a],
            },
            Commodity {
                level: 0,
                demand: 10.0,
                paths: vec![b],
            },
            Commodity {
                level: 1,
                demand: 10.0,
                paths: vec![c],
            },
        ];
        let capacity = [10.0, 10.0, 10.0];
        let total = solve(&capacity, &paths, &commodities).unwrap();
        let strict = solve_strict(&capacity, &paths, &commodities).unwrap();
        assert!((total.carried(2) - 10.0).abs() < 1e-6, "C gets arc 1 whole");
        for lp in [&total, &strict] {
            assert!((lp.carried(0) + lp.carried(1) - 10.0).abs() < 1e-6);
            assert!(lp.residual.iter().all(|&r| r >= -1e-6));
        }
        // Whatever split the level-0 LP chose, the strict reference kept it: C gets what
        // A left of arc 1.
        assert!((strict.carried(2) - (10.0 - strict.carried(0))).abs() < 1e-6);
        assert!(strict.carried(2) <= total.carried(2) + 1e-6);
    }

    #[test]
    fn strict_priority_is_kept() {
        let mut paths = Paths::new();
        let p = paths.push(&[0]);
        let commodities = vec![
            Commodity {
                level: 2,
                demand: 10.0,
                paths: vec![p],
            },
            Commodity {
                level: 1,
                demand: 7.0,
                paths: vec![p],
            },
        ];
        let lp = solve(&[10.0], &paths, &commodities).unwrap();
        assert!((lp.carried(1) - 7.0).abs() < 1e-6);
        assert!((lp.carried(0) - 3.0).abs() < 1e-6);
        assert!((weighted_carried(&commodities, &lp) - (3.0 * 1.0 + 7.0 * 2.0)).abs() < 1e-6);
    }
}
