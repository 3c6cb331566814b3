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

/// Where a candidate route at a site comes from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RouteOrigin {
    /// The site's own traffic for the destination.
    Own,
    /// Traffic the site (a hub) carries for another site, with that traffic's demand.
    Transit { demand_bps: f64 },
}

/// One candidate for a site's route to a (class, destination prefix).
#[derive(Debug, Clone, PartialEq)]
pub struct RouteCandidate {
    pub route: ClassRoute,
    pub origin: RouteOrigin,
}

/// Whether a route of origin `new` displaces one of origin `held` for the same (class,
/// destination prefix) at a site. A site has one route per (class, destination prefix),
/// which its own traffic and the traffic it forwards for others share (the data plane
/// steers by class mark and destination, not by where a packet came from):
///
/// - a transit route carrying demand wins over the site's own: its out-line was chosen
///   against the class's SLA *after* the first leg to the hub, so it also meets the SLA
///   for the hub's own traffic (latency and jitter only add along a path and loss only
///   compounds), while the hub's own choice may break the SLA of traffic that already
///   spent most of its budget;
/// - among transit routes, the one carrying the most demand;
/// - a transit route with no demand does not displace the site's own (a branch pair that
///   exchanges nothing must not move the hub's traffic off its preferred line);
/// - ties keep what is held.
pub fn outranks(new: RouteOrigin, held: RouteOrigin) -> bool {
    fn rank(origin: RouteOrigin) -> (u8, f64) {
        match origin {
            RouteOrigin::Transit { demand_bps } if demand_bps.is_finite() && demand_bps > 0.0 => {
                (2, demand_bps)
            }
            RouteOrigin::Own => (1, 0.0),
            RouteOrigin::Transit { .. } => (0, 0.0),
        }
    }
    let (new, held) = (rank(new), rank(held));
    new.0 > held.0 || (new.0 == held.0 && new.1 > held.1)
}

/// Picks each (class, destination prefix)'s route among a site's candidates (see
/// [`outranks`]); ties keep the first candidate given. Returns the routes sorted by
/// (class, destination).
pub fn pick_routes(candidates: impl IntoIterator<Item = RouteCandidate>) -> Vec<ClassRoute> {
    let mut picked: BTreeMap<(String, ipnet::IpNet), RouteCandidate> = BTreeMap::new();
    for candidate in candidates {
        let key = (candidate.route.class.clone(), candidate.route.destination);
        match picked.entry(key) {
            std::collections::btree_map::Entry::Vacant(slot) => {
                slot.insert(candidate);
            }
            std::collections::btree_map::Entry::Occupied(mut slot) => {
                if outranks(candidate.origin, slot.get().origin) {
                    slot.insert(candidate);
                }
            }
        }
    }
    picked.into_values().map(|c| c.route).collect()
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

    fn route(class: &str, prefix: &str, primary: &str) -> ClassRoute {
        ClassRoute {
            class: class.into(),
            destination: prefix.parse().unwrap(),
            primary: primary.into(),
            backups: vec![],
            reason: String::new(),
        }
    }

    #[test]
    fn a_hubs_transit_route_wins_over_its_own_route_to_the_same_prefix() {
        let own = RouteCandidate {
            route: route("voice", "10.2.0.0/24", "br2-mpls"),
            origin: RouteOrigin::Own,
        };
        let small = RouteCandidate {
            route: route("voice", "10.2.0.0/24", "br2-lte"),
            origin: RouteOrigin::Transit { demand_bps: 1e5 },
        };
        let big = RouteCandidate {
            route: route("voice", "10.2.0.0/24", "br2-inet"),
            origin: RouteOrigin::Transit { demand_bps: 2e6 },
        };
        let other = RouteCandidate {
            route: route("bulk", "10.2.0.0/24", "br2-mpls"),
            origin: RouteOrigin::Own,
        };
        // Whatever the order the planner hands them over in.
        for candidates in [
            vec![own.clone(), small.clone(), big.clone(), other.clone()],
            vec![big.clone(), own.clone(), other.clone(), small.clone()],
            vec![small.clone(), big.clone(), other.clone(), own.clone()],
        ] {
            let routes = pick_routes(candidates);
            let primaries: Vec<(&str, &str)> = routes
                .iter()
                .map(|r| (r.class.as_str(), r.primary.as_str()))
                .collect();
            assert_eq!(primaries, [("bulk", "br2-mpls"), ("voice", "br2-inet")]);
        }
        // With no transit for a prefix, the site's own route stands; so it does against a
        // transit route that carries nothing.
        assert_eq!(pick_routes([own.clone()]), vec![own.route.clone()]);
        let idle = RouteCandidate {
            route: route("voice", "10.2.0.0/24", "br2-lte"),
            origin: RouteOrigin::Transit { demand_bps: 0.0 },
        };
        assert_eq!(
            pick_routes([idle.clone(), own.clone()]),
            vec![own.route.clone()]
        );
        assert_eq!(pick_routes([own.clone(), idle]), vec![own.route]);
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

/// The bank-lab case of a hub's two routes to one prefix: its own traffic for a branch and
/// the traffic it carries for another branch, one route per (class, prefix) at the hub.
#[cfg(test)]
mod hub_routes {
    use std::time::Duration;

    use crate::graph::{LineHealth, LineMeasurement};
    use crate::plan::{ClassDemand, Planner};
    use wansteer_wire::ruleset::ClassRoute;

    const POLICY: &str = r#"
sites:
  - name: dc
    kind: dc
    lan: [10.0.0.0/24]
    lines:
      - { name: br1-mpls, transport: mpls, interface: br1-mpls, up: 50mbit, down: 50mbit }
      - { name: br2-mpls, transport: mpls, interface: br2-mpls, up: 50mbit, down: 50mbit }
      - { name: br2-inet, transport: internet, interface: br2-inet, up: 100mbit, down: 100mbit }
  - name: br1
    kind: branch
    lan: [10.1.0.0/24]
    lines:
      - { name: mpls, transport: mpls, interface: mpls, up: 50mbit, down: 50mbit }
      - { name: inet, transport: internet, interface: inet, up: 100mbit, down: 100mbit }
  - name: br2
    kind: branch
    lan: [10.2.0.0/24]
    lines:
      - { name: mpls, transport: mpls, interface: mpls, up: 50mbit, down: 50mbit }
      - { name: inet, transport: internet, interface: inet, up: 100mbit, down: 100mbit }
classes:
  - { name: voice, priority: 1, dscp: EF, sla: { latency: 100ms, loss: 1%, jitter: 30ms }, steering: { prefer: [mpls, internet] } }
  - { name: default, priority: 7 }
"#;

    fn measure(site: &str, line: &str, rtt_ms: u64, loss: f64) -> LineMeasurement {
        LineMeasurement {
            site: site.into(),
            line: line.into(),
            rtt: Duration::from_millis(rtt_ms),
            loss,
            jitter: Duration::from_millis(1),
            health: LineHealth::Up,
            at: Duration::ZERO,
        }
    }

    /// br1's internet line loses 5%, so br1's voice for br2 goes through the DC. With
    /// `mpls_rtt_ms` 160 the DC's mpls tunnel to br2 is slow (80 ms one way): fine for the
    /// DC's own voice to br2 (≤ 100 ms, and mpls is preferred), too slow after br1's 30 ms
    /// first leg (110 ms), while the internet tunnel to br2 (10 ms) carries br1's voice
    /// within the SLA (40 ms). With 80 (40 ms one way) both fit on mpls. With `demand`,
    /// 1 Mbit/s of voice from the DC and from br1 to br2.
    fn measure_all(planner: &mut Planner, mpls_rtt_ms: u64, demand: bool) {
        for (site, line, rtt, loss) in [
            ("dc", "br1-mpls", 60, 0.0),
            ("dc", "br2-mpls", mpls_rtt_ms, 0.0),
            ("dc", "br2-inet", 20, 0.0),
            ("br1", "mpls", 60, 0.0),
            ("br1", "inet", 20, 0.05),
            ("br2", "mpls", mpls_rtt_ms, 0.0),
            ("br2", "inet", 20, 0.0),
        ] {
            planner
                .update_measurement(measure(site, line, rtt, loss))
                .unwrap();
        }
        if !demand {
            return;
        }
        for (src, dst) in [("dc", "br2"), ("br1", "br2")] {
            planner
                .update_demand(ClassDemand {
                    site: src.into(),
                    class: "voice".into(),
                    destination: dst.into(),
                    bps: 1e6,
                })
                .unwrap();
        }
    }

    fn planned(mpls_rtt_ms: u64) -> Planner {
        let mut planner = Planner::new(yaml_serde::from_str(POLICY).unwrap());
        measure_all(&mut planner, mpls_rtt_ms, true);
        planner.plan(Duration::from_secs(1));
        planner
    }

    /// `site`'s voice route to br2's LAN.
    fn voice_to_br2(planner: &Planner, site: &str) -> ClassRoute {
        planner
            .ruleset(site)
            .unwrap()
            .routes
            .iter()
            .find(|r| r.class == "voice" && r.destination.to_string() == "10.2.0.0/24")
            .unwrap()
            .clone()
    }

    /// The DC's one route to br2 for voice carries its own voice and br1's: the transit
    /// route wins, since its out-line meets the SLA after br1's first leg too.
    #[test]
    fn the_dc_forwards_br1s_voice_on_the_line_its_transit_path_was_chosen_for() {
        let planner = planned(160);
        assert_eq!(voice_to_br2(&planner, "br1").primary, "mpls", "via the DC");
        assert_eq!(
            voice_to_br2(&planner, "dc").primary,
            "br2-inet",
            "the DC's route for br2 must be the transit path's out-line (40 ms), not its \
             own preferred br2-mpls (110 ms end to end for br1's voice)"
        );
        // HTB follows: the DC's own voice for br2 leaves on br2-inet with br1's, so that
        // line's voice rate covers both (2 Mbit/s), and voice is as idle on br2-mpls as a
        // class nobody uses.
        let rate = |line: &str, class: &str| {
            planner
                .ruleset("dc")
                .unwrap()
                .lines
                .iter()
                .find(|l| l.name == line)
                .unwrap()
                .shares
                .iter()
                .find(|s| s.class == class)
                .unwrap()
                .rate_bps
        };
        assert!(rate("br2-inet", "voice") >= 2_000_000);
        assert_eq!(rate("br2-mpls", "voice"), rate("br2-mpls", "default"));
    }

    /// With a fast mpls tunnel to br2 br1's voice would meet its SLA on the DC's own route
    /// (70 ms), so the DC keeps its own preferred line for both.
    #[test]
    fn the_dc_keeps_its_own_route_when_the_transit_traffic_meets_its_sla_on_it() {
        let planner = planned(80);
        let dc_voice = voice_to_br2(&planner, "dc");
        assert_eq!(dc_voice.primary, "br2-mpls", "{dc_voice:?}");
        assert!(!dc_voice.reason.starts_with("transit"), "{dc_voice:?}");
        let br1_voice = voice_to_br2(&planner, "br1");
        assert!(br1_voice.reason.contains("via dc"), "{br1_voice:?}");
    }

    /// After a restart the DC's route to br2 is br1's transit route, which says nothing of
    /// where the DC's own voice was: resuming must move nothing and push nothing, before
    /// the agents' demand is known again and after.
    #[test]
    fn a_restart_after_a_transit_route_won_moves_nothing() {
        let before = planned(160);
        let published: Vec<_> = ["dc", "br1", "br2"]
            .iter()
            .map(|site| before.ruleset(site).unwrap().clone())
            .collect();
        let mut after = Planner::new(yaml_serde::from_str(POLICY).unwrap());
        after.resume(published.clone());
        // Nothing heard yet: the DC's route stays br1's transit route.
        after.plan(Duration::from_secs(100));
        assert_eq!(voice_to_br2(&after, "dc").primary, "br2-inet");
        // The measurements are back, then the demand: nothing changes.
        measure_all(&mut after, 160, false);
        let plan = after.plan(Duration::from_secs(101));
        assert!(plan.decisions.is_empty(), "{:?}", plan.decisions);
        measure_all(&mut after, 160, true);
        let plan = after.plan(Duration::from_secs(102));
        assert!(plan.decisions.is_empty(), "{:?}", plan.decisions);
        for ruleset in &published {
            assert_eq!(
                after.ruleset(&ruleset.site).unwrap().hash,
                ruleset.hash,
                "{} is as before the restart",
                ruleset.site
            );
        }
    }
}
