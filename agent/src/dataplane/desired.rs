//! The kernel state wansteer wants, compiled from a rule set and the lines seen down.
//!
//! Pure: plain data in, plain data out. Each subsystem module diffs its part against the
//! kernel's listing.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;
use wansteer_wire::ruleset::{ClassRoute, RuleSet};

use super::htb::{HtbClass, Shaper};
use super::nexthop::{Chain, Nexthop, chain_of, nexthop_ids};
use super::nft::NftPlan;
use super::routing::{Family, IpRule, RouteKey, RouteTarget};
use super::validate::{RuleSetError, validate};
use super::{
    CLASS_MARK_MASK, HTB_LINE_MINOR, LINE_MARK_MASK, LINE_MARK_SHIFT, LINE_RULE_PRIORITY_BASE,
    LINE_TABLE_BASE, ROUTE_TABLE_BASE, RULE_PRIORITY_BASE,
};

/// The smallest HTB rate wansteer installs (a class with a 0% guarantee still needs one).
pub const MIN_HTB_RATE_BPS: u64 = 8_000;

/// Everything wansteer wants in the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredState {
    pub nft: NftPlan,
    pub rules: BTreeSet<IpRule>,
    pub routes: BTreeMap<RouteKey, RouteTarget>,
    /// The nexthop of every (family, line chain) class routes use, by id: where the
    /// chain's first healthy line sends packets.
    pub nexthops: BTreeMap<u32, Nexthop>,
    /// The id of each (family, chain).
    pub nexthop_ids: BTreeMap<(Family, Chain), u32>,
    /// Root HTB per egress interface.
    pub shapers: BTreeMap<String, Shaper>,
    /// Which line carries each (class, destination) now, after failover.
    pub placements: BTreeMap<(String, IpNet), Placement>,
}

/// Where one (class, destination) goes now, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub mark: u32,
    pub line: String,
    /// True when the primary is down and a backup carries the class.
    pub failed_over: bool,
}

/// The line a route uses when `avoided` lines are down: the primary if it is up, else the
/// first backup that is up; when every line is down the primary stays (nothing is better).
pub fn effective_line<'a>(route: &'a ClassRoute, avoided: &BTreeSet<String>) -> &'a str {
    std::iter::once(&route.primary)
        .chain(&route.backups)
        .find(|line| !avoided.contains(*line))
        .unwrap_or(&route.primary)
}

/// The table class `mark` routes in.
pub fn class_table(mark: u32) -> u32 {
    ROUTE_TABLE_BASE + mark
}

/// Compiles a validated rule set; `avoided` are the lines to route around (seen down).
pub fn compile(
    ruleset: &RuleSet,
    avoided: &BTreeSet<String>,
) -> Result<DesiredState, RuleSetError> {
    validate(ruleset)?;
    let nft = NftPlan::from_ruleset(ruleset);

    let mut rules = BTreeSet::new();
    for class in &ruleset.classes {
        for family in [Family::V4, Family::V6] {
            rules.insert(IpRule {
                family,
                priority: RULE_PRIORITY_BASE + class.mark,
                mark: class.mark,
                table: class_table(class.mark),
                mask: CLASS_MARK_MASK,
            });
        }
    }

    let mut routes = BTreeMap::new();
    let mut placements = BTreeMap::new();
    // Replies pinned to their arrival line: one rule per line and family, one table per
    // line with the line's default route (per family it has a gateway for, or both when
    // it has none: point-to-point).
    for (number, line) in (1u32..=255).zip(&ruleset.lines) {
        for family in [Family::V4, Family::V6] {
            rules.insert(IpRule {
                family,
                priority: LINE_RULE_PRIORITY_BASE + number,
                mark: number << LINE_MARK_SHIFT,
                table: LINE_TABLE_BASE + number,
                mask: LINE_MARK_MASK,
            });
        }
        let no_gateway = line.gateway.is_none() && line.gateway6.is_none();
        if line.gateway.is_some() || no_gateway {
            routes.insert(
                RouteKey {
                    table: LINE_TABLE_BASE + number,
                    destination: "0.0.0.0/0".parse().expect("literal"),
                },
                RouteTarget {
                    via: line.gateway,
                    device: line.interface.clone(),
                    nexthop: None,
                },
            );
        }
        if line.gateway6.is_some() || no_gateway {
            routes.insert(
                RouteKey {
                    table: LINE_TABLE_BASE + number,
                    destination: "::/0".parse().expect("literal"),
                },
                RouteTarget {
                    via: line.gateway6.map(IpAddr::V6),
                    device: line.interface.clone(),
                    nexthop: None,
                },
            );
        }
    }
    let nexthop_ids = nexthop_ids(&ruleset.routes);
    let nexthops = compile_nexthops(ruleset, &nexthop_ids, avoided);
    for route in &ruleset.routes {
        let (key, target, placement) = compile_route(ruleset, route, avoided, &nexthop_ids);
        placements.insert((route.class.clone(), key.destination), placement);
        routes.insert(key, target);
    }

    let default_mark = ruleset
        .class(&ruleset.default_class)
        .expect("validated")
        .mark;
    let mut shapers = BTreeMap::new();
    for line in &ruleset.lines {
        let mut classes = BTreeMap::new();
        classes.insert(
            HTB_LINE_MINOR,
            HtbClass {
                parent: None,
                rate_bps: line.rate_bps,
                ceil_bps: line.rate_bps,
                prio: 0,
            },
        );
        for share in &line.shares {
            let class = ruleset.class(&share.class).expect("validated");
            let ceil = share.ceil_bps.min(line.rate_bps).max(MIN_HTB_RATE_BPS);
            classes.insert(
                class.mark as u16,
                HtbClass {
                    parent: Some(HTB_LINE_MINOR),
                    rate_bps: share.rate_bps.clamp(MIN_HTB_RATE_BPS, ceil),
                    ceil_bps: ceil,
                    prio: htb_prio(class.priority),
                },
            );
        }
        // Unclassified packets (ARP, marked probes) land in the default class: make sure
        // it exists even when the rule set gives it no share on this line.
        classes
            .entry(default_mark as u16)
            .or_insert_with(|| HtbClass {
                parent: Some(HTB_LINE_MINOR),
                rate_bps: MIN_HTB_RATE_BPS,
                ceil_bps: line.rate_bps.max(MIN_HTB_RATE_BPS),
                prio: htb_prio(
                    ruleset
                        .class(&ruleset.default_class)
                        .expect("validated")
                        .priority,
                ),
            });
        shapers.insert(
            line.interface.clone(),
            Shaper {
                default_minor: default_mark as u16,
                classes,
            },
        );
    }

    Ok(DesiredState {
        nft,
        rules,
        routes,
        nexthops,
        nexthop_ids,
        shapers,
        placements,
    })
}

/// Where each chain's nexthop points with `avoided` lines down: its first healthy line
/// (the primary when every line is down). Only for a validated rule set.
pub fn compile_nexthops(
    ruleset: &RuleSet,
    ids: &BTreeMap<(Family, Chain), u32>,
    avoided: &BTreeSet<String>,
) -> BTreeMap<u32, Nexthop> {
    ids.iter()
        .map(|((family, chain), id)| {
            let name = chain
                .iter()
                .find(|line| !avoided.contains(*line))
                .unwrap_or(&chain[0]);
            let line = ruleset.line(name).expect("validated");
            let via = match family {
                Family::V4 => line.gateway,
                Family::V6 => line.gateway6.map(IpAddr::V6),
            };
            (
                *id,
                Nexthop {
                    family: *family,
                    via,
                    device: line.interface.clone(),
                },
            )
        })
        .collect()
}

/// One validated route: its table entry and where it places its class now.
pub fn compile_route(
    ruleset: &RuleSet,
    route: &ClassRoute,
    avoided: &BTreeSet<String>,
    nexthop_ids: &BTreeMap<(Family, Chain), u32>,
) -> (RouteKey, RouteTarget, Placement) {
    let class = ruleset.class(&route.class).expect("validated");
    let line_name = effective_line(route, avoided);
    let line = ruleset.line(line_name).expect("validated");
    let via = match route.destination {
        IpNet::V4(_) => line.gateway,
        IpNet::V6(_) => line.gateway6.map(IpAddr::V6),
    };
    (
        RouteKey {
            table: class_table(class.mark),
            destination: route.destination.trunc(),
        },
        RouteTarget {
            via,
            device: line.interface.clone(),
            nexthop: nexthop_ids
                .get(&(Family::of(&route.destination), chain_of(route)))
                .copied(),
        },
        Placement {
            mark: class.mark,
            line: line_name.to_string(),
            failed_over: line_name != route.primary,
        },
    )
}

/// How the routes of a new rule set differ from the old one's.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RouteChanges {
    /// Indexes into the new routes of those added or with other lines.
    pub changed: Vec<usize>,
    /// (class, destination) of routes that are gone.
    pub removed: Vec<(String, IpNet)>,
}

/// The routes that differ, ignoring the `reason` texts. Rule sets list routes in a stable
/// order, so the usual case is one pass side by side; otherwise by (class, destination).
pub fn route_changes(old: &[ClassRoute], new: &[ClassRoute]) -> RouteChanges {
    let same_line =
        |a: &ClassRoute, b: &ClassRoute| a.primary == b.primary && a.backups == b.backups;
    let same_key =
        |a: &ClassRoute, b: &ClassRoute| a.class == b.class && a.destination == b.destination;
    if old.len() == new.len() && old.iter().zip(new).all(|(a, b)| same_key(a, b)) {
        return RouteChanges {
            changed: (0..new.len())
                .filter(|&i| !same_line(&old[i], &new[i]))
                .collect(),
            removed: Vec::new(),
        };
    }
    let key = |route: &ClassRoute| (route.class.clone(), route.destination);
    let old_by_key: BTreeMap<(String, IpNet), &ClassRoute> =
        old.iter().map(|route| (key(route), route)).collect();
    let new_keys: BTreeSet<(String, IpNet)> = new.iter().map(key).collect();
    RouteChanges {
        changed: (0..new.len())
            .filter(|&i| {
                old_by_key
                    .get(&key(&new[i]))
                    .is_none_or(|route| !same_line(route, &new[i]))
            })
            .collect(),
        removed: old_by_key
            .into_keys()
            .filter(|key| !new_keys.contains(key))
            .collect(),
    }
}

/// HTB knows priorities 0..=7 (0 first); class priority 1 is served first.
fn htb_prio(priority: u8) -> u8 {
    priority.saturating_sub(1).min(7)
}
