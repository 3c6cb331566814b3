//! The rule compiler: from the policy and the planner's placements to one site's
//! `RuleSet` — class specs (mark, DSCP, static matches), per-line HTB rates that follow the
//! measured demand placed on each line, and per-class routes with their backups and reasons.
//!
//! HTB rates follow demand with hysteresis: a class's rate rises as soon as its measured
//! load eats into the headroom, and falls only when the rate is well above what the load
//! needs. Demand that wiggles around a level therefore settles the rates (and the rule set's
//! hash) instead of pushing a new version every report.
//!
//! Pure: plain data in, a sealed `RuleSet` out. Versions are the planner's business.

use std::collections::BTreeMap;

use wansteer_policies::Policy;
pub use wansteer_policies::classes::class_specs;
use wansteer_policies::model::Class;
use wansteer_wire::ruleset::{ClassRoute, ClassShare, ClassSpec, LineSpec, RuleSet};

/// HTB rates are rounded up to this fraction of the line, so small demand wiggles do not
/// produce a new rule set every second.
pub const RATE_STEP_FRACTION: f64 = 0.02;
/// Headroom on top of measured demand, so a class can grow before the next plan.
pub const DEMAND_HEADROOM: f64 = 1.25;

/// A class's rate is raised once its load exceeds this share of the rate it has (the
/// headroom is nearly used up).
pub const RAISE_AT_LOAD_SHARE: f64 = 0.9;
/// A class's rate is lowered only when the rate its load needs is below this share of the
/// rate it has (the load fell by roughly half, not a wiggle).
pub const LOWER_BELOW_SHARE: f64 = 0.6;

/// The rate a class asks for on a line (before guarantees, ceilings and the line's size):
/// its load plus headroom, rounded up to a step — or, when the class already has a rate
/// (`previous`), that rate while the load stays between [`LOWER_BELOW_SHARE`] and
/// [`RAISE_AT_LOAD_SHARE`] of it.
pub fn wanted_rate(load_bps: f64, step: f64, previous: Option<f64>) -> f64 {
    let load = if load_bps.is_finite() {
        load_bps.max(0.0)
    } else {
        0.0
    };
    let fresh = (load * DEMAND_HEADROOM / step).ceil() * step;
    match previous {
        Some(previous)
            if load <= previous * RAISE_AT_LOAD_SHARE && fresh >= previous * LOWER_BELOW_SHARE =>
        {
            previous
        }
        _ => fresh,
    }
}

/// HTB rates for one line: strict priority order, each class gets its measured load plus
/// headroom, at least its guaranteed share and at most its ceiling, until the line is full.
/// `load_bps` is indexed like `policy.classes`.
pub fn line_shares(line_bps: u64, classes: &[Class], load_bps: &[f64]) -> Vec<ClassShare> {
    line_shares_after(line_bps, classes, load_bps, &[])
}

/// [`line_shares`] with hysteresis against the shares the line has now (`previous`, by
/// class name; empty on first placement): see [`wanted_rate`].
pub fn line_shares_after(
    line_bps: u64,
    classes: &[Class],
    load_bps: &[f64],
    previous: &[ClassShare],
) -> Vec<ClassShare> {
    let line = line_bps as f64;
    let step = (line * RATE_STEP_FRACTION).max(1.0);
    let mut order: Vec<usize> = (0..classes.len()).collect();
    order.sort_by_key(|&i| (classes[i].priority, i));
    // Guaranteed shares first (the policy's validation keeps their sum within the line;
    // if not, scale them down), then demand above them in priority order.
    let guaranteed: Vec<f64> = classes
        .iter()
        .map(|c| line * c.bandwidth.guaranteed.fraction())
        .collect();
    let total_guaranteed: f64 = guaranteed.iter().sum();
    let scale = if total_guaranteed > line {
        line / total_guaranteed
    } else {
        1.0
    };
    let mut rates: Vec<f64> = guaranteed.iter().map(|g| g * scale).collect();
    let mut left = line - rates.iter().sum::<f64>();
    for &i in &order {
        let ceiling = line * classes[i].bandwidth.ceiling.fraction();
        let had = previous
            .iter()
            .find(|share| share.class == classes[i].name)
            .map(|share| share.rate_bps as f64);
        let want = wanted_rate(load_bps[i], step, had).min(ceiling);
        let extra = (want - rates[i]).max(0.0).min(left);
        rates[i] += extra;
        left -= extra;
    }
    classes
        .iter()
        .enumerate()
        .map(|(i, class)| {
            // HTB needs a non-zero rate; one step keeps an idle class alive.
            let rate = rates[i].max(step.min(line)).round() as u64;
            let ceil = (line * class.bandwidth.ceiling.fraction()).round() as u64;
            ClassShare {
                class: class.name.clone(),
                rate_bps: rate.min(ceil.max(1)),
                ceil_bps: ceil.max(rate.min(line_bps)),
            }
        })
        .collect()
}

/// Everything the compiler needs about one site.
#[derive(Debug, Clone)]
pub struct SiteInput<'a> {
    pub policy: &'a Policy,
    pub specs: &'a [ClassSpec],
    pub site: &'a str,
    /// Per line name: load per class (indexed like `policy.classes`), bits per second.
    pub line_loads: BTreeMap<String, Vec<f64>>,
    pub routes: Vec<ClassRoute>,
    /// The site's rule set now in force, for rate hysteresis (none on first compile).
    pub previous: Option<&'a RuleSet>,
    /// The site's demand is not known yet (resumed after a restart, no report since):
    /// keep the previous rates as they are.
    pub hold_rates: bool,
}

/// Builds and seals one site's rule set (version 0; the planner numbers versions).
pub fn compile_site(input: SiteInput<'_>) -> Option<RuleSet> {
    let site = input.policy.site(input.site)?;
    let idle = vec![0.0; input.policy.classes.len()];
    let lines = site
        .lines
        .iter()
        .map(|line| {
            let loads = input.line_loads.get(&line.name).unwrap_or(&idle);
            let previous = input
                .previous
                .and_then(|p| p.lines.iter().find(|l| l.name == line.name))
                .filter(|l| l.rate_bps == line.up.bps())
                .map_or(&[][..], |l| l.shares.as_slice());
            let same_classes = previous.len() == input.policy.classes.len()
                && previous
                    .iter()
                    .zip(&input.policy.classes)
                    .all(|(share, class)| share.class == class.name);
            let shares = if input.hold_rates && same_classes {
                previous.to_vec()
            } else {
                line_shares_after(line.up.bps(), &input.policy.classes, loads, previous)
            };
            LineSpec {
                name: line.name.clone(),
                interface: line.interface.clone(),
                gateway: line.gateway,
                gateway6: line.gateway6,
                rate_bps: line.up.bps(),
                shares,
            }
        })
        .collect();
    let mut routes = input.routes;
    routes
        .sort_by(|a, b| (a.class.as_str(), a.destination).cmp(&(b.class.as_str(), b.destination)));
    let default_class = input
        .policy
        .default_class()
        .map(|c| c.name.clone())
        .unwrap_or_default();
    Some(
        RuleSet {
            site: site.name.clone(),
            version: 0,
            hash: String::new(),
            classes: input.specs.to_vec(),
            default_class,
            lines,
            routes,
        }
        .seal(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use wansteer_policies::model::Bandwidth;
    use wansteer_policies::units::Percent;

    fn class(name: &str, priority: u8, guaranteed: f64, ceiling: f64) -> Class {
        Class {
            name: name.into(),
            priority,
            dscp: Default::default(),
            matches: vec![],
            sla: None,
            steering: Default::default(),
            bandwidth: Bandwidth {
                guaranteed: Percent(guaranteed),
                ceiling: Percent(ceiling),
            },
        }
    }

    #[test]
    fn shares_follow_demand_within_guarantee_and_ceiling() {
        let classes = [class("voice", 1, 10.0, 30.0), class("bulk", 5, 0.0, 100.0)];
        // 100 Mbit/s line; voice uses 2 Mbit/s, bulk 40 Mbit/s.
        let shares = line_shares(100_000_000, &classes, &[2e6, 40e6]);
        assert_eq!(shares[0].rate_bps, 10_000_000, "guarantee is the floor");
        assert_eq!(shares[0].ceil_bps, 30_000_000);
        assert_eq!(shares[1].rate_bps, 50_000_000, "40M × 1.25 headroom");
        // Voice demand grows past its guarantee: its rate follows, capped by the ceiling.
        let shares = line_shares(100_000_000, &classes, &[50e6, 40e6]);
        assert_eq!(shares[0].rate_bps, 30_000_000);
        assert!(shares.iter().map(|s| s.rate_bps).sum::<u64>() <= 100_000_000);
    }

    #[test]
    fn higher_priority_gets_the_line_first_when_it_is_short() {
        let classes = [class("bulk", 5, 0.0, 100.0), class("video", 2, 0.0, 100.0)];
        let shares = line_shares(10_000_000, &classes, &[9e6, 9e6]);
        assert!(shares[1].rate_bps > shares[0].rate_bps);
        assert!(shares.iter().map(|s| s.rate_bps).sum::<u64>() <= 10_000_000 + 200_000);
    }

    #[test]
    fn rates_hold_while_demand_wiggles_and_follow_real_changes() {
        let classes = [class("voice", 1, 0.0, 30.0), class("bulk", 5, 0.0, 100.0)];
        let line = 100_000_000;
        // Bulk around 20 Mbit/s, ±15%: after at most a couple of raises the rate stays put.
        let mut shares = line_shares(line, &classes, &[1e6, 20e6]);
        let mut changes = 0;
        for i in 0..200 {
            let wiggle = [-0.15, 0.1, 0.15, -0.05, 0.0, -0.1, 0.12][i % 7];
            let next = line_shares_after(line, &classes, &[1e6, 20e6 * (1.0 + wiggle)], &shares);
            if next != shares {
                changes += 1;
            }
            shares = next;
        }
        assert!(changes <= 2, "{changes} rate changes from a wiggle");
        let settled = shares[1].rate_bps;
        assert!(
            settled as f64 >= 23e6 / RAISE_AT_LOAD_SHARE - 2e6,
            "{settled}"
        );
        // Demand doubles: the rate follows at once.
        let grown = line_shares_after(line, &classes, &[1e6, 40e6], &shares);
        assert_eq!(grown[1].rate_bps, 50_000_000);
        // Demand falls to a quarter: the rate comes down.
        let shrunk = line_shares_after(line, &classes, &[1e6, 10e6], &grown);
        assert_eq!(shrunk[1].rate_bps, 14_000_000);
    }
}
