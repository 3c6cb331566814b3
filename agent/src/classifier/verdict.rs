//! What the classifier hands on: a [`Verdict`] per flow for the data plane (installed as an
//! nft map element 5-tuple → class) and per-class [`ClassStats`] for the controller.

use std::net::IpAddr;

use serde::Serialize;

use super::packet::ip_proto;

/// A flow's 5-tuple (+ VLAN), oriented client → server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct FlowTuple {
    /// IP protocol number.
    pub proto: u8,
    pub vlan: Option<u16>,
    pub src: IpAddr,
    pub sport: u16,
    pub dst: IpAddr,
    pub dport: u16,
}

impl FlowTuple {
    /// The layer-4 protocol name as captures print it (`TCP`, `UDP`, `ICMP`, …).
    pub fn l4_name(&self) -> String {
        match self.proto {
            ip_proto::TCP => "TCP".into(),
            ip_proto::UDP => "UDP".into(),
            ip_proto::ICMP => "ICMP".into(),
            ip_proto::ICMPV6 => "ICMPV6".into(),
            ip_proto::IGMP => "IGMP".into(),
            ip_proto::ESP => "ESP".into(),
            ip_proto::AH => "AH".into(),
            ip_proto::GRE => "GRE".into(),
            ip_proto::SCTP => "SCTP".into(),
            4 => "IP_IN_IP".into(),
            8 => "EGP".into(),
            89 => "OSPF".into(),
            103 => "PIM".into(),
            112 => "VRRP".into(),
            // nDPI prints other protocols by number; so do we, so tuples compare.
            other => other.to_string(),
        }
    }
}

/// The classifier's decision about one flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub tuple: FlowTuple,
    /// Catalogue application or protocol name (`teams`, `youtube`, `sip`, `unknown`).
    pub app: String,
    /// SD-WAN class name: the policy's class with `--policy`, else the catalogue's.
    pub class: String,
    /// Why, in words an operator can check ("tls sni teams.microsoft.com → teams").
    pub reason: String,
}

/// Traffic of one class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct ClassCounters {
    /// Flows whose current verdict is this class.
    pub flows: u64,
    pub packets: u64,
    /// Bytes from clients to servers, and back.
    pub bytes_up: u64,
    pub bytes_down: u64,
}

/// Per-class demand as the controller wants it: plain data, keyed by class name.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct ClassStats {
    pub classes: Vec<(String, ClassCounters)>,
}

impl ClassStats {
    pub fn get(&self, class: &str) -> Option<&ClassCounters> {
        self.classes
            .iter()
            .find(|(name, _)| name == class)
            .map(|(_, c)| c)
    }
}
