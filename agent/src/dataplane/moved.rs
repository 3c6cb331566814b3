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
