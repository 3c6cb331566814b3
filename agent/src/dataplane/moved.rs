//! Moved flows: when a (class, destination) leaves a line, the conntrack entries of that
//! class towards that destination are deleted so existing flows are re-classified and
//! re-routed (and re-NATed on the new line) at their next packet instead of dying with
//! a source address the new line does not carry.

use std::collections::BTreeMap;

use ipnet::IpNet;

use super::desired::Placement;
use super::routing::{RouteKey, RouteTarget};

/// The conntrack entries of one class towards one destination.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct MovedFlows {
    pub mark: u32,
    pub destination: IpNet,
}

/// One ctnetlink deletion: the conntrack entries of class `mark` in one family whose
/// original destination lies in `destinations` (`None`: all of the class's entries, when
/// every destination of the class moved).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConntrackDelete {
    pub mark: u32,
    pub v6: bool,
    pub destinations: Option<Vec<IpNet>>,
}

/// Groups `moved` into one deletion per class and family (one kernel dump each). Only
/// entries towards destinations that moved go; flows of the class elsewhere stay.
pub fn conntrack_deletes(
    moved: &[MovedFlows],
    placements: &BTreeMap<(String, IpNet), Placement>,
) -> Vec<ConntrackDelete> {
    let family = |net: &IpNet| matches!(net, IpNet::V6(_));
    let mut groups: BTreeMap<(u32, bool), Vec<IpNet>> = BTreeMap::new();
    for flows in moved {
        groups
            .entry((flows.mark, family(&flows.destination)))
            .or_default()
            .push(flows.destination);
    }
    groups
        .into_iter()
        .map(|((mark, v6), destinations)| {
            let total = placements
                .iter()
                .filter(|((_, net), placement)| placement.mark == mark && family(net) == v6)
                .count();
            ConntrackDelete {
                mark,
                v6,
                destinations: (destinations.len() < total).then_some(destinations),
            }
        })
        .collect()
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
