//! Nexthop objects (`ip nexthop`): class routes do not name a line themselves, they
//! point at a shared nexthop of their *line chain* (primary then backups) and family.
//! Local failover then rewrites one nexthop per chain and family instead of one route
//! per (class, destination): the kernel moves every route that uses it at once.
//!
//! Ids are derived from the chain (a hash into wansteer's range `0x5753_0000..`), so the
//! same rule set gives the same ids after a restart and adoption changes nothing; two
//! chains whose hash collides take the next free id in sorted chain order. Nexthops are
//! tagged with wansteer's protocol like its routes.
//!
//! netlink-packet-route 0.34 has no nexthop messages: they are built and read here as
//! raw `nhmsg` plus attributes (linux/nexthop.h).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use wansteer_wire::ruleset::ClassRoute;

use super::ROUTE_PROTOCOL;
use super::routing::Family;

/// Nexthop ids wansteer uses: `NEXTHOP_ID_BASE | 16 bits of the chain's hash`.
pub const NEXTHOP_ID_BASE: u32 = 0x5753_0000;

pub const RTM_NEWNEXTHOP: u16 = 104;
pub const RTM_DELNEXTHOP: u16 = 105;
pub const RTM_GETNEXTHOP: u16 = 106;
const NHA_ID: u16 = 1;
const NHA_OIF: u16 = 5;
const NHA_GATEWAY: u16 = 6;
const AF_INET: u8 = libc::AF_INET as u8;
const AF_INET6: u8 = libc::AF_INET6 as u8;

/// A line chain as routes name it: primary, then backups in order.
pub type Chain = Vec<String>;

/// Where a nexthop sends packets now (the chain's first healthy line).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Nexthop {
    pub family: Family,
    pub via: Option<IpAddr>,
    pub device: String,
}

/// The chain of a route.
pub fn chain_of(route: &ClassRoute) -> Chain {
    std::iter::once(&route.primary)
        .chain(&route.backups)
        .cloned()
        .collect()
}

fn fnv1a(bytes: impl IntoIterator<Item = u8>, mut hash: u32) -> u32 {
    for byte in bytes {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

/// The nexthop id of every (family, chain) the routes use. Pure and deterministic:
/// a chain keeps its id as long as no other chain collides with it.
pub fn nexthop_ids(routes: &[ClassRoute]) -> BTreeMap<(Family, Chain), u32> {
    let mut chains: BTreeSet<(Family, &str, &[String])> = BTreeSet::new();
    for route in routes {
        chains.insert((
            Family::of(&route.destination),
            route.primary.as_str(),
            route.backups.as_slice(),
        ));
    }
    let mut taken = BTreeSet::new();
    let mut ids = BTreeMap::new();
    for (family, primary, backups) in chains {
        let chain: Chain = std::iter::once(primary.to_string())
            .chain(backups.iter().cloned())
            .collect();
        let mut hash = fnv1a([family as u8], 0x811c_9dc5);
        for line in &chain {
            hash = fnv1a(line.bytes().chain([0]), hash);
        }
        let mut low = hash & 0xffff;
        while !taken.insert(low) {
            low = (low + 1) & 0xffff;
        }
        ids.insert((family, chain), NEXTHOP_ID_BASE | low);
    }
    ids
}

/// The nexthop changes that turn `current` into `desired`: (id, nexthop) to create or
/// replace, and ids to delete.
pub fn diff<'a>(
    desired: &'a BTreeMap<u32, Nexthop>,
    current: &BTreeMap<u32, Nexthop>,
) -> (Vec<(u32, &'a Nexthop)>, Vec<u32>) {
    let upserts = desired
        .iter()
        .filter(|(id, nexthop)| current.get(id) != Some(nexthop))
        .map(|(id, nexthop)| (*id, nexthop))
        .collect();
    let deletes = current
        .keys()
        .filter(|id| !desired.contains_key(id))
        .copied()
        .collect();
    (upserts, deletes)
}

fn push_attribute(buffer: &mut Vec<u8>, kind: u16, value: &[u8]) {
    let length = 4 + value.len();
    buffer.extend_from_slice(&(length as u16).to_ne_bytes());
    buffer.extend_from_slice(&kind.to_ne_bytes());
    buffer.extend_from_slice(value);
    buffer.resize(buffer.len().next_multiple_of(4), 0);
}

/// The body (`nhmsg` and attributes) of a request about nexthop `id`: with a target
/// and its interface index to install, without to delete.
pub fn message_body(id: u32, target: Option<(&Nexthop, u32)>) -> Vec<u8> {
    let family = match target.map(|(nexthop, _)| nexthop.family) {
        Some(Family::V4) => AF_INET,
        Some(Family::V6) => AF_INET6,
        None => 0,
    };
    let protocol = if target.is_some() { ROUTE_PROTOCOL } else { 0 };
    // nh_family, nh_scope, nh_protocol, resvd, nh_flags.
    let mut body = vec![family, 0, protocol, 0, 0, 0, 0, 0];
    push_attribute(&mut body, NHA_ID, &id.to_ne_bytes());
    if let Some((nexthop, index)) = target {
        match nexthop.via {
            Some(IpAddr::V4(ip)) => push_attribute(&mut body, NHA_GATEWAY, &ip.octets()),
            Some(IpAddr::V6(ip)) => push_attribute(&mut body, NHA_GATEWAY, &ip.octets()),
            None => {}
        }
        push_attribute(&mut body, NHA_OIF, &index.to_ne_bytes());
    }
    body
}

/// The body of a dump request for every nexthop.
pub fn dump_body() -> Vec<u8> {
    vec![0; 8]
}

/// One nexthop from a dump entry's body, if it is wansteer's (its protocol) and a
/// plain one (not a group); `names` maps interface indexes to names. Never panics.
pub fn parse(body: &[u8], names: &BTreeMap<u32, String>) -> Option<(u32, Nexthop)> {
    let header = body.get(..8)?;
    let family = match header[0] {
        AF_INET => Family::V4,
        AF_INET6 => Family::V6,
        _ => return None,
    };
    if header[2] != ROUTE_PROTOCOL {
        return None;
    }
    let (mut id, mut via, mut device) = (None, None, String::new());
    let mut rest = &body[8..];
    while rest.len() >= 4 {
        let length = usize::from(u16::from_ne_bytes([rest[0], rest[1]]));
        let kind = u16::from_ne_bytes([rest[2], rest[3]]) & 0x3fff;
        if length < 4 || length > rest.len() {
            break;
        }
        let value = &rest[4..length];
        match (kind, value.len()) {
            (NHA_ID, 4) => id = Some(u32::from_ne_bytes(value.try_into().ok()?)),
            (NHA_OIF, 4) => {
                let index = u32::from_ne_bytes(value.try_into().ok()?);
                device = names.get(&index).cloned().unwrap_or_default();
            }
            (NHA_GATEWAY, 4) => via = Some(IpAddr::from(<[u8; 4]>::try_from(value).ok()?)),
            (NHA_GATEWAY, 16) => via = Some(IpAddr::from(<[u8; 16]>::try_from(value).ok()?)),
            _ => {}
        }
        rest = &rest[length.next_multiple_of(4).min(rest.len())..];
    }
    Some((
        id?,
        Nexthop {
            family,
            via,
            device,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn route(destination: &str, primary: &str, backups: &[&str]) -> ClassRoute {
        ClassRoute {
            class: "voice".into(),
            destination: destination.parse().unwrap(),
            primary: primary.into(),
            backups: backups.iter().map(|b| b.to_string()).collect(),
            reason: String::new(),
        }
    }

    #[test]
    fn ids_are_per_chain_and_family_and_stable() {
        let routes = vec![
            route("10.0.0.0/24", "mpls", &["inet"]),
            route("10.0.1.0/24", "mpls", &["inet"]),
            route("10.0.2.0/24", "inet", &["mpls"]),
            route("fd00::/64", "mpls", &["inet"]),
        ];
        let ids = nexthop_ids(&routes);
        assert_eq!(ids.len(), 3, "{ids:?}");
        let unique: BTreeSet<u32> = ids.values().copied().collect();
        assert_eq!(unique.len(), 3);
        assert!(ids.values().all(|id| id & 0xffff_0000 == NEXTHOP_ID_BASE));
        // Another rule set with the same chain among others keeps its id.
        let more = nexthop_ids(&[routes[0].clone(), route("10.9.0.0/16", "lte", &[])]);
        let key = (Family::V4, vec!["mpls".to_string(), "inet".to_string()]);
        assert_eq!(more[&key], ids[&key]);
    }

    #[test]
    fn a_message_reads_back_as_the_nexthop_it_installs() {
        let names = BTreeMap::from([(7, "wan0".to_string())]);
        for via in [
            None,
            Some("192.0.2.1".parse().unwrap()),
            Some("fe80::1".parse().unwrap()),
        ] {
            let family = match via {
                Some(IpAddr::V6(_)) => Family::V6,
                _ => Family::V4,
            };
            let nexthop = Nexthop {
                family,
                via,
                device: "wan0".into(),
            };
            let body = message_body(NEXTHOP_ID_BASE | 5, Some((&nexthop, 7)));
            assert_eq!(parse(&body, &names), Some((NEXTHOP_ID_BASE | 5, nexthop)));
        }
        assert_eq!(parse(&message_body(9, None), &names), None, "not tagged");
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = parse(&bytes, &BTreeMap::new());
        }
    }
}
