//! Penalty balancing of one priority level: the fractional optimum the LP reference finds,
//! approached on plain numbers.
//!
//! The level being solved and every higher level that holds flow are *blocks*: a higher
//! level's block keeps its carried amount exactly and may only shift it between its own
//! candidate paths; the level's own blocks may also leave demand unserved, at a cost of one
//! per unit. Line capacity is a penalty, `stiffness / 2 · (over / capacity)²` per arc, so
//! the price of an arc is zero while it has room and rises with its overload. Each block in
//! turn shifts flow from its dearest path to its cheapest one until their prices meet (a
//! Gauss–Seidel sweep, as in path-based traffic assignment); the stiffness grows between
//! rounds. At the balance point the level's demand is carried wherever a path costs less
//! than one, and higher levels have moved off the arcs the level needs whenever they have
//! an equally cheap way round: the wholesale reroutes the LP makes and local moves miss.
//! What is left over capacity at the end (a hair, `1 / stiffness` of an arc) is taken back
//! from the level being solved by the caller, never from the higher levels.

use super::alloc::{PathId, Paths};

/// Flow below this is nothing.
const TINY: f64 = 1e-9;
/// Stiffness of the capacity penalty, round by round: an arc's price reaches one unit at
/// `1 / stiffness` relative overload.
const STIFFNESS: [f64; 4] = [1e1, 1e2, 1e3, 1e4];
/// Sweeps per round at most; a round ends early once a sweep moves almost nothing.
const SWEEPS: usize = 60;
/// How much stiffer the penalty on the higher levels' own load is.
const HIGHER_STIFFER: f64 = 100.0;
/// Pairwise shifts per block and sweep.
const SHIFTS: usize = 3;
/// Bisection steps of the line search along one shift.
const BISECTIONS: usize = 40;

/// One commodity's flow as the balance sees it.
#[derive(Debug, Clone)]
pub struct Block<'a> {
    /// Candidate paths, best first.
    pub paths: &'a [PathId],
    /// Flow on each candidate path.
    pub x: Vec<f64>,
    /// Demand not carried. Only the level being solved may change it (`free`); a higher
    /// level's block keeps its carried amount.
    pub unserved: f64,
    pub free: bool,
}

impl Block<'_> {
    pub fn carried(&self) -> f64 {
        self.x.iter().sum()
    }
}

/// Balances the blocks against `bound` (where the penalty starts on each arc), spending at
/// most `max_visits` path-arc visits. Flows stay non-negative and each block's carried
/// plus unserved amount is kept; arcs may end a hair over `bound`. Returns the visits
/// spent.
pub fn balance(
    paths: &Paths,
    bound: &[f64],
    cap: Option<&[f64]>,
    blocks: &mut [Block],
    max_visits: usize,
) -> usize {
    let mut load = vec![0.0; bound.len()];
    let mut higher = vec![0.0; bound.len()];
    let mut size = 0usize;
    let mut total = 0.0;
    for block in blocks.iter() {
        for (k, &path) in block.paths.iter().enumerate() {
            size += paths.arcs(path).len();
            for &arc in paths.arcs(path) {
                load[arc as usize] += block.x[k];
                if !block.free {
                    higher[arc as usize] += block.x[k];
                }
            }
        }
        total += block.carried() + block.unserved;
    }
    let widest = bound.iter().copied().fold(0.0, f64::max);
    // Dead arcs (no capacity) still get a finite price scale.
    let floor = (widest * 1e-3).max(TINY);
    let inverse: Vec<f64> = bound.iter().map(|&b| 1.0 / b.max(floor)).collect();
    let mut arena = Arena {
        paths,
        bound,
        inverse: &inverse,
        load: &mut load,
        higher: &mut higher,
        cap,
        stiffness: 0.0,
    };
    let mut visits = 0usize;
    for stiffness in STIFFNESS {
        arena.stiffness = stiffness;
        for _ in 0..SWEEPS {
            if visits + size * SHIFTS > max_visits {
                return visits;
            }
            visits += size * SHIFTS;
            let mut moved = 0.0;
            for block in blocks.iter_mut() {
                moved += arena.shift_block(block);
            }
            if moved <= 1e-6 * total {
                break;
            }
        }
    }
    visits
}

struct Arena<'a> {
    paths: &'a Paths,
    bound: &'a [f64],
    inverse: &'a [f64],
    load: &'a mut Vec<f64>,
    /// The higher levels' part of `load`: they pay a second, much stiffer penalty for
    /// going over an arc on their own, so what they hold stays within capacity (it has
    /// to: the level being solved can give way, they cannot).
    higher: &'a mut Vec<f64>,
    /// When set, a higher level's move never takes its own load on an arc beyond this.
    cap: Option<&'a [f64]>,
    stiffness: f64,
}

/// Where a shift takes flow from or puts it: a path, or (for a free block) unserved.
#[derive(Clone, Copy, PartialEq)]
enum End {
    Path(usize),
    Unserved,
}

impl<'a> Arena<'a> {
    fn price_at(&self, arc: u32, load: f64) -> f64 {
        let over = load - self.bound[arc as usize];
        if over > 0.0 {
            self.stiffness * over * self.inverse[arc as usize]
        } else {
            0.0
        }
    }

    fn path_price(&self, path: PathId, free: bool) -> f64 {
        self.paths
            .arcs(path)
            .iter()
            .map(|&arc| {
                let mut price = self.price_at(arc, self.load[arc as usize]);
                if !free && self.cap.is_some() {
                    price += HIGHER_STIFFER * self.price_at(arc, self.higher[arc as usize]);
                }
                price
            })
            .sum()
    }

    /// Up to [`SHIFTS`] moves of one block's flow from its dearest end to its cheapest.
    /// Returns the amount moved.
    fn shift_block(&mut self, block: &mut Block) -> f64 {
        let mut moved = 0.0;
        for _ in 0..SHIFTS {
            let mut dearest: Option<(End, f64)> = None;
            let mut cheapest: Option<(End, f64)> = None;
            for (k, &path) in block.paths.iter().enumerate() {
                let price = self.path_price(path, block.free);
                if block.x[k] > TINY && dearest.is_none_or(|(_, p)| price > p) {
                    dearest = Some((End::Path(k), price));
                }
                if cheapest.is_none_or(|(_, p)| price < p) {
                    cheapest = Some((End::Path(k), price));
                }
            }
            if block.free {
                if block.unserved > TINY && dearest.is_none_or(|(_, p)| 1.0 > p) {
                    dearest = Some((End::Unserved, 1.0));
                }
                if cheapest.is_none_or(|(_, p)| 1.0 < p) {
                    cheapest = Some((End::Unserved, 1.0));
                }
            }
            let (Some((from, high)), Some((to, low))) = (dearest, cheapest) else {
                break;
            };
            if from == to || high - low <= 1e-9 {
                break;
            }
            let mut available = match from {
                End::Path(k) => block.x[k],
                End::Unserved => block.unserved,
            };
            let from_arcs = self.arcs_of(block, from);
            let to_arcs = self.arcs_of(block, to);
            if let (false, Some(cap)) = (block.free, self.cap) {
                for &arc in to_arcs {
                    if !from_arcs.contains(&arc) {
                        let room = cap[arc as usize] - self.higher[arc as usize];
                        available = available.min(room.max(0.0));
                    }
                }
            }
            let amount = self.line_search(block.free, from, to, from_arcs, to_arcs, available);
            if amount <= TINY {
                break;
            }
            match from {
                End::Path(k) => block.x[k] = (block.x[k] - amount).max(0.0),
                End::Unserved => block.unserved = (block.unserved - amount).max(0.0),
            }
            match to {
                End::Path(k) => block.x[k] += amount,
                End::Unserved => block.unserved += amount,
            }
            for &arc in from_arcs {
                self.load[arc as usize] -= amount;
            }
            for &arc in to_arcs {
                self.load[arc as usize] += amount;
            }
            if !block.free {
                for &arc in from_arcs {
                    self.higher[arc as usize] -= amount;
                }
                for &arc in to_arcs {
                    self.higher[arc as usize] += amount;
                }
            }
            moved += amount;
        }
        moved
    }

    fn arcs_of(&self, block: &Block, end: End) -> &'a [u32] {
        match end {
            End::Path(k) => self.paths.arcs(block.paths[k]),
            End::Unserved => &[],
        }
    }

    /// How much to move from `from` to `to` (at most `available`) so that their prices
    /// meet: the derivative of the penalty along the move is non-decreasing, so bisect.
    fn line_search(
        &self,
        free: bool,
        from: End,
        to: End,
        from_arcs: &[u32],
        to_arcs: &[u32],
        available: f64,
    ) -> f64 {
        let slope = |amount: f64| -> f64 {
            let mut value = 0.0;
            for &arc in to_arcs {
                if !from_arcs.contains(&arc) {
                    value += self.price_at(arc, self.load[arc as usize] + amount);
                    if !free && self.cap.is_some() {
                        value +=
                            HIGHER_STIFFER * self.price_at(arc, self.higher[arc as usize] + amount);
                    }
                }
            }
            for &arc in from_arcs {
                if !to_arcs.contains(&arc) {
                    value -= self.price_at(arc, self.load[arc as usize] - amount);
                    if !free && self.cap.is_some() {
                        value -=
                            HIGHER_STIFFER * self.price_at(arc, self.higher[arc as usize] - amount);
                    }
                }
            }
            if to == End::Unserved {
                value += 1.0;
            }
            if from == End::Unserved {
                value -= 1.0;
            }
            value
        };
        if slope(available) <= 0.0 {
            return available;
        }
        let (mut low, mut high) = (0.0, available);
        for _ in 0..BISECTIONS {
            let middle = 0.5 * (low + high);
            if slope(middle) <= 0.0 {
                low = middle;
            } else {
                high = middle;
            }
        }
        low
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn higher_flow_steps_aside_and_the_level_fills_the_arc() {
        // A higher commodity on arc 0 that could use arc 1, and the level's commodity that
        // can only use arc 0: at the balance the higher one is (almost) all on arc 1 and
        // the level carries (almost) the whole of arc 0, a hair over at most.
        let mut paths = Paths::new();
        let stay = paths.push(&[0]);
        let aside = paths.push(&[1]);
        let only = paths.push(&[0]);
        let higher_paths = [stay, aside];
        let level_paths = [only];
        let mut blocks = vec![
            Block {
                paths: &higher_paths,
                x: vec![10.0, 0.0],
                unserved: 0.0,
                free: false,
            },
            Block {
                paths: &level_paths,
                x: vec![0.0],
                unserved: 10.0,
                free: true,
            },
        ];
        balance(&paths, &[10.0, 10.0], None, &mut blocks, usize::MAX);
        assert!((blocks[0].carried() - 10.0).abs() < 1e-9, "amount kept");
        assert!(
            blocks[0].x[1] > 9.99,
            "higher moved aside: {:?}",
            blocks[0].x
        );
        let level = blocks[1].carried();
        assert!((level - 10.0).abs() < 1e-2, "level carries {level}");
        assert!((level + blocks[1].unserved - 10.0).abs() < 1e-9);
    }

    #[test]
    fn a_cap_keeps_higher_levels_within_capacity_on_their_own() {
        // Two higher commodities that fill arcs 0 and 1 exactly; the level presses on arc
        // 0. With the cap, the higher ones never hold more than an arc's capacity.
        let mut paths = Paths::new();
        let p0 = paths.push(&[0]);
        let p1 = paths.push(&[1]);
        let higher_paths = [p0, p1];
        let level_paths = [p0];
        let mut blocks = vec![
            Block {
                paths: &higher_paths,
                x: vec![10.0, 0.0],
                unserved: 0.0,
                free: false,
            },
            Block {
                paths: &higher_paths,
                x: vec![0.0, 10.0],
                unserved: 0.0,
                free: false,
            },
            Block {
                paths: &level_paths,
                x: vec![0.0],
                unserved: 10.0,
                free: true,
            },
        ];
        let bound = [10.0, 10.0];
        balance(&paths, &bound, Some(&bound), &mut blocks, usize::MAX);
        for arc in 0..2 {
            let held: f64 = blocks[..2].iter().map(|b| b.x[arc]).sum();
            assert!(held <= 10.0 + 1e-9, "arc {arc}: higher levels hold {held}");
        }
        assert!(blocks[2].carried() < 1e-2, "no room for the level");
    }
}
