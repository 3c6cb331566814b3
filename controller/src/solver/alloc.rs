//! Capacity allocation over candidate paths: the heart of the solver, on plain numbers.
//!
//! Input: arc capacities, and commodities (a demand of one priority level with its
//! candidate paths, already SLA-filtered and ordered best first by the caller, so the
//! order carries preference, cost and hysteresis). Output: how much of each commodity goes
//! on which path. Priority levels are served strictly in order, each against what the
//! higher levels left. Within a level:
//!
//! 1. *preference pass*: smallest demands first, each commodity takes the first path in
//!    its order that fits it whole (what an operator expects: one path per class);
//! 2. *fill pass*: demand that did not fit whole is spread over the paths that still have
//!    room, in the commodity's order, sharing each contested arc fairly;
//! 3. *repair pass*: where a commodity is still short, flows that block its paths (of any
//!    level: they keep their amount, only change path) are shifted onto their own spare
//!    compliant paths to free room (a two-step augmenting move), repeated while it helps;
//! 4. in a full solve, a level left short is allocated once more with its short commodities
//!    first, and the better of the two attempts is kept.
//!
//! This is the same path-based formulation the LP reference solves exactly (`crate::lp`),
//! so the two are compared on the same candidates.

/// Index of a path in [`Paths`].
pub type PathId = u32;

/// Arc lists of all candidate paths, stored flat.
#[derive(Debug, Clone, Default)]
pub struct Paths {
    pool: Vec<u32>,
    spans: Vec<(u32, u32)>,
}

impl Paths {
    pub fn new() -> Paths {
        Paths::default()
    }

    pub fn push(&mut self, arcs: &[u32]) -> PathId {
        let start = self.pool.len() as u32;
        self.pool.extend_from_slice(arcs);
        self.spans.push((start, arcs.len() as u32));
        (self.spans.len() - 1) as PathId
    }

    pub fn arcs(&self, path: PathId) -> &[u32] {
        let (start, len) = self.spans[path as usize];
        &self.pool[start as usize..(start + len) as usize]
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }
}

/// One demand to carry.
#[derive(Debug, Clone, PartialEq)]
pub struct Commodity {
    /// Priority level, 0 served first.
    pub level: u8,
    /// Bits per second (any unit, as long as capacities use it too).
    pub demand: f64,
    /// Candidate paths, best first.
    pub paths: Vec<PathId>,
}

/// The path shares of one commodity.
pub type Flows = Vec<(PathId, f64)>;

/// The outcome: flows per commodity and what is left on each arc.
#[derive(Debug, Clone)]
pub struct Allocation {
    pub flows: Vec<Flows>,
    pub residual: Vec<f64>,
}

impl Allocation {
    /// Demand carried for one commodity.
    pub fn carried(&self, commodity: usize) -> f64 {
        self.flows[commodity].iter().map(|(_, amount)| amount).sum()
    }

    /// The path carrying most of a commodity, if any carries something.
    pub fn main_path(&self, commodity: usize) -> Option<PathId> {
        self.flows[commodity]
            .iter()
            .filter(|(_, amount)| *amount > 0.0)
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(path, _)| *path)
    }
}

/// Flow below this is treated as nothing (bits per second).
const TINY: f64 = 1e-6;
/// Repair rounds per level; each round only runs while it still gains.
const REPAIR_ROUNDS: usize = 4;

fn bottleneck(paths: &Paths, path: PathId, residual: &[f64]) -> f64 {
    paths
        .arcs(path)
        .iter()
        .map(|&arc| residual[arc as usize])
        .fold(f64::INFINITY, f64::min)
}

fn add_flow(paths: &Paths, path: PathId, amount: f64, residual: &mut [f64], flows: &mut Flows) {
    for &arc in paths.arcs(path) {
        residual[arc as usize] -= amount;
    }
    match flows.iter_mut().find(|(p, _)| *p == path) {
        Some(entry) => entry.1 += amount,
        None => flows.push((path, amount)),
    }
}

/// Allocates every level from scratch.
pub fn allocate(capacity: &[f64], paths: &Paths, commodities: &[Commodity]) -> Allocation {
    let mut allocation = Allocation {
        flows: vec![Vec::new(); commodities.len()],
        residual: capacity.to_vec(),
    };
    let mut levels: Vec<u8> = commodities.iter().map(|c| c.level).collect();
    levels.sort_unstable();
    levels.dedup();
    let mut by_level: Vec<Vec<usize>> = vec![Vec::new(); levels.len()];
    for (index, commodity) in commodities.iter().enumerate() {
        let slot = levels
            .binary_search(&commodity.level)
            .expect("level listed");
        by_level[slot].push(index);
    }
    for members in &by_level {
        let before = allocation.clone();
        allocate_level(paths, commodities, members, &mut allocation);
        let carried = |a: &Allocation| members.iter().map(|&i| a.carried(i)).sum::<f64>();
        let demand: f64 = members.iter().map(|&i| commodities[i].demand).sum();
        let first = carried(&allocation);
        if first + TINY >= demand {
            continue;
        }
        // Some demand did not fit: try once more with the short commodities first, and
        // keep whichever carries more.
        let mut order: Vec<usize> = members.to_vec();
        let shortfall = |i: usize| commodities[i].demand - allocation.carried(i);
        order.sort_by(|&a, &b| shortfall(b).total_cmp(&shortfall(a)).then(a.cmp(&b)));
        let mut retry = before;
        allocate_in_order(paths, commodities, &order, &mut retry);
        if carried(&retry) > first + TINY {
            allocation = retry;
        }
    }
    allocation
}

/// Allocates the given commodities (all of one level, none holding flow yet) against the
/// residual in `allocation`. Also used to re-place a few commodities incrementally.
pub fn allocate_level(
    paths: &Paths,
    commodities: &[Commodity],
    members: &[usize],
    allocation: &mut Allocation,
) {
    let mut order: Vec<usize> = members.to_vec();
    order.sort_by(|&a, &b| {
        commodities[a]
            .demand
            .total_cmp(&commodities[b].demand)
            .then(a.cmp(&b))
    });
    allocate_in_order(paths, commodities, &order, allocation);
}

/// [`allocate_level`] with the preference pass in a given order.
fn allocate_in_order(
    paths: &Paths,
    commodities: &[Commodity],
    order: &[usize],
    allocation: &mut Allocation,
) {
    // 1. Preference pass: whole demand on the first path that fits it.
    let mut short: Vec<usize> = Vec::new();
    for &index in order {
        let commodity = &commodities[index];
        if commodity.paths.is_empty() {
            continue;
        }
        let fits = commodity
            .paths
            .iter()
            .copied()
            .find(|&path| bottleneck(paths, path, &allocation.residual) >= commodity.demand);
        match fits {
            Some(path) => {
                if commodity.demand > 0.0 {
                    add_flow(
                        paths,
                        path,
                        commodity.demand,
                        &mut allocation.residual,
                        &mut allocation.flows[index],
                    );
                } else {
                    allocation.flows[index].push((path, 0.0));
                }
            }
            None => short.push(index),
        }
    }
    if short.is_empty() {
        return;
    }
    // 2. Fill pass: fair shares of contested arcs, then whatever room is left.
    fill(paths, commodities, &short, allocation, true);
    fill(paths, commodities, &short, allocation, false);
    // 3. Repair pass, with an index of which commodities use each arc.
    // Every commodity already holding flow may be shifted, whatever its level: it keeps
    // its amount, only its path changes (to another of its SLA-compliant candidates).
    let mut users: Vec<Vec<usize>> = vec![Vec::new(); allocation.residual.len()];
    for index in 0..commodities.len() {
        for &(path, _) in &allocation.flows[index] {
            for &arc in paths.arcs(path) {
                users[arc as usize].push(index);
            }
        }
    }
    for _ in 0..REPAIR_ROUNDS {
        let mut gained = 0.0;
        // Arcs whose users could not be moved this round are not scanned again.
        let mut stuck = vec![false; allocation.residual.len()];
        for &index in &short {
            gained += repair(
                paths,
                commodities,
                &mut users,
                &mut stuck,
                index,
                allocation,
            );
        }
        if gained <= TINY {
            break;
        }
    }
}

fn remaining(commodities: &[Commodity], allocation: &Allocation, index: usize) -> f64 {
    (commodities[index].demand - allocation.carried(index)).max(0.0)
}

/// Spreads the short commodities' remaining demand over their paths. With `fair`, each
/// contested arc is first split equally between the commodities that still want it.
fn fill(
    paths: &Paths,
    commodities: &[Commodity],
    short: &[usize],
    allocation: &mut Allocation,
    fair: bool,
) {
    let mut wanting = vec![0u32; allocation.residual.len()];
    if fair {
        for &index in short {
            if let Some(&path) = commodities[index].paths.first() {
                for &arc in paths.arcs(path) {
                    wanting[arc as usize] += 1;
                }
            }
        }
    }
    for &index in short {
        let commodity = &commodities[index];
        for &path in &commodity.paths {
            let need = remaining(commodities, allocation, index);
            if need <= TINY {
                break;
            }
            let room = paths
                .arcs(path)
                .iter()
                .map(|&arc| {
                    let free = allocation.residual[arc as usize];
                    if fair {
                        free / f64::from(wanting[arc as usize].max(1))
                    } else {
                        free
                    }
                })
                .fold(f64::INFINITY, f64::min);
            let amount = need.min(room);
            if amount > TINY {
                add_flow(
                    paths,
                    path,
                    amount,
                    &mut allocation.residual,
                    &mut allocation.flows[index],
                );
            }
            if fair {
                for &arc in paths.arcs(path) {
                    let want = &mut wanting[arc as usize];
                    *want = want.saturating_sub(1);
                }
                break;
            }
        }
    }
}

/// Tries to free room for a short commodity by moving same-level flow off the arc that
/// blocks one of its paths onto that flow's own spare paths. Returns the demand gained.
fn repair(
    paths: &Paths,
    commodities: &[Commodity],
    users: &mut [Vec<usize>],
    stuck: &mut [bool],
    index: usize,
    allocation: &mut Allocation,
) -> f64 {
    let mut gained = 0.0;
    for &path in &commodities[index].paths {
        let need = remaining(commodities, allocation, index);
        if need <= TINY {
            break;
        }
        // The most blocking arc of this path.
        let Some(&blocking) = paths.arcs(path).iter().min_by(|&&a, &&b| {
            allocation.residual[a as usize].total_cmp(&allocation.residual[b as usize])
        }) else {
            continue;
        };
        let room_elsewhere = paths
            .arcs(path)
            .iter()
            .filter(|&&arc| arc != blocking)
            .map(|&arc| allocation.residual[arc as usize])
            .fold(f64::INFINITY, f64::min);
        let mut wanted = need.min(room_elsewhere) - allocation.residual[blocking as usize];
        if wanted <= TINY {
            // Room on the blocking arc already suffices or another arc blocks too.
            let amount = need
                .min(room_elsewhere)
                .min(allocation.residual[blocking as usize]);
            if amount > TINY {
                add_flow(
                    paths,
                    path,
                    amount,
                    &mut allocation.residual,
                    &mut allocation.flows[index],
                );
                gained += amount;
            }
            continue;
        }
        if stuck[blocking as usize] {
            continue;
        }
        // Move other commodities' flow that crosses `blocking` to paths avoiding it.
        let wanted_before = wanted;
        let mut blockers = users[blocking as usize].clone();
        blockers.sort_unstable();
        blockers.dedup();
        for other in blockers {
            if wanted <= TINY {
                break;
            }
            if other == index {
                continue;
            }
            let crossing: Vec<(PathId, f64)> = allocation.flows[other]
                .iter()
                .copied()
                .filter(|&(p, amount)| amount > TINY && paths.arcs(p).contains(&blocking))
                .collect();
            for (from, amount) in crossing {
                for &alternative in &commodities[other].paths {
                    if wanted <= TINY {
                        break;
                    }
                    if alternative == from || paths.arcs(alternative).contains(&blocking) {
                        continue;
                    }
                    // Moving `from` → `alternative` frees arcs of `from` only; the
                    // alternative's arcs must have room of their own.
                    let spare = bottleneck(paths, alternative, &allocation.residual);
                    let still_on_from = allocation.flows[other]
                        .iter()
                        .find(|(p, _)| *p == from)
                        .map_or(0.0, |e| e.1);
                    let shift = wanted.min(spare).min(still_on_from).min(amount);
                    if shift <= TINY {
                        continue;
                    }
                    add_flow(
                        paths,
                        from,
                        -shift,
                        &mut allocation.residual,
                        &mut allocation.flows[other],
                    );
                    add_flow(
                        paths,
                        alternative,
                        shift,
                        &mut allocation.residual,
                        &mut allocation.flows[other],
                    );
                    for &arc in paths.arcs(alternative) {
                        users[arc as usize].push(other);
                    }
                    wanted -= shift;
                }
            }
        }
        if wanted_before - wanted <= TINY {
            stuck[blocking as usize] = true;
        }
        let amount = need.min(bottleneck(paths, path, &allocation.residual));
        if amount > TINY {
            for &arc in paths.arcs(path) {
                users[arc as usize].push(index);
            }
            add_flow(
                paths,
                path,
                amount,
                &mut allocation.residual,
                &mut allocation.flows[index],
            );
            gained += amount;
        }
    }
    gained
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn higher_level_is_served_first() {
        let mut paths = Paths::new();
        let only = paths.push(&[0]);
        let commodities = vec![
            Commodity {
                level: 1,
                demand: 8.0,
                paths: vec![only],
            },
            Commodity {
                level: 0,
                demand: 6.0,
                paths: vec![only],
            },
        ];
        let allocation = allocate(&[10.0], &paths, &commodities);
        assert_eq!(allocation.carried(1), 6.0);
        assert!((allocation.carried(0) - 4.0).abs() < 1e-9);
    }

    #[test]
    fn preferred_path_is_used_whole_when_it_fits() {
        let mut paths = Paths::new();
        let preferred = paths.push(&[0]);
        let other = paths.push(&[1]);
        let commodities = vec![Commodity {
            level: 0,
            demand: 5.0,
            paths: vec![preferred, other],
        }];
        let allocation = allocate(&[10.0, 100.0], &paths, &commodities);
        assert_eq!(allocation.flows[0], vec![(preferred, 5.0)]);
    }

    #[test]
    fn repair_moves_a_flexible_flow_to_make_room() {
        // A can use arc 0 or arc 1; B only arc 0. A arrives first (smaller) and takes
        // arc 0; repair must shift A to arc 1 so B fits.
        let mut paths = Paths::new();
        let a0 = paths.push(&[0]);
        let a1 = paths.push(&[1]);
        let b0 = paths.push(&[2, 0]);
        let commodities = vec![
            Commodity {
                level: 0,
                demand: 5.0,
                paths: vec![a0, a1],
            },
            Commodity {
                level: 0,
                demand: 8.0,
                paths: vec![b0],
            },
        ];
        let allocation = allocate(&[10.0, 10.0, 10.0], &paths, &commodities);
        let total = allocation.carried(0) + allocation.carried(1);
        assert!((total - 13.0).abs() < 1e-9, "carried {total}");
        assert!(allocation.residual.iter().all(|&r| r >= -1e-9));
    }
}
