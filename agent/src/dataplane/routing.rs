//! Policy routing: `ip rule fwmark <mark>/0xff lookup <table>` per class and per family,
//! and per-class tables holding one route per destination via the chosen line.
//!
//! Desired entries and the minimal changes between them and the kernel's (read over
//! rtnetlink in [`super::netlink`]). A line change is one `route replace` (atomic: no
//! packet finds the table without a route). Deletes come last and only touch entries
//! tagged with wansteer's protocol. The changes also render as `ip -batch` lines: the
//! golden test and people read those.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use super::ROUTE_PROTOCOL;

/// IPv4 or IPv6 (`ip -4` / `ip -6`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn flag(self) -> &'static str {
        match self {
            Family::V4 => "-4",
            Family::V6 => "-6",
        }
    }

    pub fn of(net: &IpNet) -> Family {
        match net {
            IpNet::V4(_) => Family::V4,
            IpNet::V6(_) => Family::V6,
        }
    }
}

/// `ip rule add priority P fwmark M/MASK table T protocol 201`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IpRule {
    pub family: Family,
    pub priority: u32,
    pub mark: u32,
    pub table: u32,
    /// [`super::CLASS_MARK_MASK`] for class rules, `LINE_MARK_MASK` for arrival-line rules.
    pub mask: u32,
}

impl IpRule {
    fn spec(&self) -> String {
        format!(
            "priority {} fwmark {:#x}/{:#x} table {} protocol {}",
            self.priority, self.mark, self.mask, self.table, ROUTE_PROTOCOL
        )
    }
}

/// A route's identity: the table and the destination.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RouteKey {
    pub table: u32,
    pub destination: IpNet,
}

/// Where a route sends packets.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RouteTarget {
    pub via: Option<IpAddr>,
    pub device: String,
    /// The nexthop object the route points at (class routes); `via` and `device` are
    /// then where that nexthop sends packets now.
    pub nexthop: Option<u32>,
}

impl RouteTarget {
    /// Whether the kernel entry for `self` is already `other`: routes through a
    /// nexthop are the same route while they name the same nexthop (the nexthop itself
    /// is diffed on its own).
    pub fn same_entry(&self, other: &RouteTarget) -> bool {
        match (self.nexthop, other.nexthop) {
            (Some(mine), Some(theirs)) => mine == theirs,
            _ => self == other,
        }
    }
}

impl fmt::Display for RouteTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(id) = self.nexthop {
            return write!(f, "nhid {id}");
        }
        if let Some(via) = self.via {
            write!(f, "via {via} ")?;
        }
        write!(f, "dev {}", self.device)
    }
}

/// The `ip -batch` line that installs or moves a route.
pub fn replace_route(key: &RouteKey, target: &RouteTarget) -> String {
    format!(
        "{} route replace {} {} proto {} table {}",
        Family::of(&key.destination).flag(),
        key.destination,
        target,
        ROUTE_PROTOCOL,
        key.table
    )
}

/// The `ip -batch` line that removes a route.
pub fn delete_route(key: &RouteKey) -> String {
    format!(
        "{} route del {} proto {} table {}",
        Family::of(&key.destination).flag(),
        key.destination,
        ROUTE_PROTOCOL,
        key.table
    )
}

pub fn add_rule(rule: &IpRule) -> String {
    format!("{} rule add {}", rule.family.flag(), rule.spec())
}

pub fn delete_rule(rule: &IpRule) -> String {
    format!("{} rule del {}", rule.family.flag(), rule.spec())
}

/// The route commands, split so new routes go in before the rules that use them and
/// old routes go out after.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RoutingChanges {
    pub upserts: Vec<String>,
    pub rule_adds: Vec<String>,
    pub rule_deletes: Vec<String>,
    pub route_deletes: Vec<String>,
}

impl RoutingChanges {
    pub fn len(&self) -> usize {
        self.upserts.len()
            + self.rule_adds.len()
            + self.rule_deletes.len()
            + self.route_deletes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// All commands in the order they must run.
    pub fn in_order(&self) -> Vec<String> {
        self.upserts
            .iter()
            .chain(&self.rule_adds)
            .chain(&self.rule_deletes)
            .chain(&self.route_deletes)
            .cloned()
            .collect()
    }
}

/// Diff of routes only (the failover fast path uses this against its own last state).
pub fn diff_routes(
    desired: &BTreeMap<RouteKey, RouteTarget>,
    current: &BTreeMap<RouteKey, RouteTarget>,
) -> (Vec<String>, Vec<String>) {
    let upserts = desired
        .iter()
        .filter(|(key, target)| !current.get(key).is_some_and(|c| c.same_entry(target)))
        .map(|(key, target)| replace_route(key, target))
        .collect();
    let deletes = current
        .keys()
        .filter(|key| !desired.contains_key(key))
        .map(delete_route)
        .collect();
    (upserts, deletes)
}

/// What differs between the desired and the listed rules and routes, as entries (the
/// netlink path sends these).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RoutingDiff<'a> {
    pub upserts: Vec<(&'a RouteKey, &'a RouteTarget)>,
    pub rule_adds: Vec<&'a IpRule>,
    pub rule_deletes: Vec<&'a IpRule>,
    pub route_deletes: Vec<&'a RouteKey>,
}

pub fn diff_entries<'a>(
    desired_rules: &'a BTreeSet<IpRule>,
    desired_routes: &'a BTreeMap<RouteKey, RouteTarget>,
    current_rules: &'a BTreeSet<IpRule>,
    current_routes: &'a BTreeMap<RouteKey, RouteTarget>,
) -> RoutingDiff<'a> {
    RoutingDiff {
        upserts: desired_routes
            .iter()
            .filter(|(key, target)| {
                !current_routes
                    .get(key)
                    .is_some_and(|current| current.same_entry(target))
            })
            .collect(),
        rule_adds: desired_rules.difference(current_rules).collect(),
        rule_deletes: current_rules.difference(desired_rules).collect(),
        route_deletes: current_routes
            .keys()
            .filter(|key| !desired_routes.contains_key(key))
            .collect(),
    }
}

/// Everything that differs between the desired and the listed rules and routes.
pub fn diff(
    desired_rules: &BTreeSet<IpRule>,
    desired_routes: &BTreeMap<RouteKey, RouteTarget>,
    current_rules: &BTreeSet<IpRule>,
    current_routes: &BTreeMap<RouteKey, RouteTarget>,
) -> RoutingChanges {
    let (upserts, route_deletes) = diff_routes(desired_routes, current_routes);
    RoutingChanges {
        upserts,
        rule_adds: desired_rules
            .difference(current_rules)
            .map(add_rule)
            .collect(),
        rule_deletes: current_rules
            .difference(desired_rules)
            .map(delete_rule)
            .collect(),
        route_deletes,
    }
}
