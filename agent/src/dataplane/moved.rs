//! Moved flows: when a (class, destination) leaves a line, the conntrack entries of that
//! class towards that destination are deleted so existing flows are re-classified and
//! re-routed (and re-NATed on the new line) at their next packet instead of dying with
//! a source address the new line does not carry.

use std::collections::BTreeMap;

use ipnet::IpNet;

use super::CLASS_MARK_MASK;
use super::desired::Placement;
use super::routing::{RouteKey, RouteTarget};

/// The conntrack entries of one class towards one destination.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct MovedFlows {
    pub mark: u32,
    pub destination: IpNet,
}

impl MovedFlows {
    /// Arguments of `conntrack -D` selecting exactly these entries.
    pub fn conntrack_args(&self) -> Vec<String> {
        let family = match self.destination {
            IpNet::V4(_) => "ipv4",
            IpNet::V6(_) => "ipv6",
        };
        vec![
            "-f".into(),
            family.into(),
            "-m".into(),
            format!("{:#x}/{:#x}", self.mark, CLASS_MARK_MASK),
            "-d".into(),
            self.destination.network().to_string(),
            "--mask-dst".into(),
            self.destination.netmask().to_string(),
        ]
    }
}

/// Above this many moved destinations of one class, its conntrack entries go in one call
/// per family instead of one per destination (each call is a process and a table walk).
pub const PER_DESTINATION_LIMIT: usize = 8;

/// The `conntrack -D` argument lists for `moved`: per destination, or for the whole class
/// in a family when all or many of its destinations moved. Flows of the class towards
/// destinations that did not move are then reset too; they are re-created, re-classified
/// and routed as before at their next packet.
pub fn conntrack_deletes(
    moved: &[MovedFlows],
    placements: &BTreeMap<(String, IpNet), Placement>,
) -> Vec<Vec<String>> {
    let family = |net: &IpNet| matches!(net, IpNet::V6(_));
    let mut groups: BTreeMap<(u32, bool), Vec<&MovedFlows>> = BTreeMap::new();
    for flows in moved {
        groups
            .entry((flows.mark, family(&flows.destination)))
            .or_default()
            .push(flows);
    }
    let mut calls = Vec::new();
    for ((mark, v6), flows) in groups {
        let total = placements
            .iter()
            .filter(|((_, net), placement)| placement.mark == mark && family(net) == v6)
            .count();
        if flows.len() == total || flows.len() > PER_DESTINATION_LIMIT {
            calls.push(vec![
                "-f".into(),
                if v6 { "ipv6" } else { "ipv4" }.into(),
                "-m".into(),
                format!("{mark:#x}/{CLASS_MARK_MASK:#x}"),
            ]);
        } else {
            calls.extend(flows.iter().map(|flows| flows.conntrack_args()));
        }
    }
    calls
}

/// Which flows must move: every placement whose route in the kernel (`current`) leaves by
/// another interface than the one wanted now. Routes that did not exist carried no flows.
pub fn moved_flows(
    placements: &BTreeMap<(String, IpNet), Placement>,
    desired: &BTreeMap<RouteKey, RouteTarget>,
    current: &BTreeMap<RouteKey, RouteTarget>,
) -> Vec<MovedFlows> {
    let mut moved = Vec::new();
    for ((_, destination), placement) in placements {
        let key = RouteKey {
            table: super::desired::class_table(placement.mark),
            destination: *destination,
        };
        if let (Some(want), Some(have)) = (desired.get(&key), current.get(&key))
            && want.device != have.device
        {
            moved.push(MovedFlows {
                mark: placement.mark,
                destination: *destination,
            });
        }
    }
    moved
}
