//! Packet decoding: one captured frame in, the few fields classification needs out.
//!
//! Link layers are peeled by hand (Ethernet with 802.1Q/QinQ tags, Linux SLL and SLL2,
//! BSD loopback/NULL, raw IP) because they are a handful of fixed offsets; IPv4/IPv6 and
//! the transport header are left to etherparse's lax slicer, which tolerates the truncated
//! frames that snap-length-limited captures contain. Nothing here allocates or panics.

use std::net::IpAddr;

use etherparse::{LaxNetSlice, LaxSlicedPacket, TransportSlice};

/// Link-layer header types (tcpdump.org LINKTYPE_* values) the decoder understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkType {
    /// BSD loopback: a 4-byte address family in host byte order (LINKTYPE_NULL, 0; LOOP, 108).
    Null,
    Ethernet,
    /// Raw IPv4 or IPv6 without a link header (LINKTYPE_RAW 101, IPV4 228, IPV6 229).
    RawIp,
    /// Linux cooked capture v1 (113).
    LinuxSll,
    /// Linux cooked capture v2 (276).
    LinuxSll2,
}

impl LinkType {
    /// The link type for a LINKTYPE_* number, or `None` when it carries no IP we decode.
    pub fn from_linktype(number: u32) -> Option<LinkType> {
        match number {
            0 | 108 => Some(LinkType::Null),
            1 => Some(LinkType::Ethernet),
            101 | 228 | 229 | 12 | 14 => Some(LinkType::RawIp),
            113 => Some(LinkType::LinuxSll),
            276 => Some(LinkType::LinuxSll2),
            _ => None,
        }
    }
}

/// IP protocol numbers the classifier treats specially.
pub mod ip_proto {
    pub const ICMP: u8 = 1;
    pub const IGMP: u8 = 2;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const GRE: u8 = 47;
    pub const ESP: u8 = 50;
    pub const AH: u8 = 51;
    pub const ICMPV6: u8 = 58;
    pub const SCTP: u8 = 132;
}

/// TCP flags the flow table cares about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpInfo {
    pub seq: u32,
    pub syn: bool,
    pub fin: bool,
    pub rst: bool,
}

/// The fields of one packet that classification uses, borrowing the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacketView<'a> {
    /// Innermost 802.1Q VLAN id, if tagged.
    pub vlan: Option<u16>,
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IP protocol number (6 TCP, 17 UDP, …).
    pub proto: u8,
    /// Ports for TCP/UDP/SCTP; 0 otherwise.
    pub sport: u16,
    pub dport: u16,
    /// DSCP from the IP header.
    pub dscp: u8,
    /// Length of the IP packet as sent (header included), for byte accounting.
    pub ip_len: u32,
    /// Transport payload as captured (may be shorter than sent when the capture truncated it).
    pub payload: &'a [u8],
    pub tcp: Option<TcpInfo>,
}

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88a8;
const ETHERTYPE_QINQ_OLD: u16 = 0x9100;
const ETHERTYPE_PPPOE_SESSION: u16 = 0x8864;
const ETHERTYPE_MPLS: u16 = 0x8847;
const ETHERTYPE_MPLS_MULTICAST: u16 = 0x8848;
/// UDP ports of tunnels whose inner packet is classified instead of the tunnel.
const GTP_U_PORT: u16 = 2152;
const VXLAN_PORT: u16 = 4789;

fn be16(data: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*data.get(at)?, *data.get(at + 1)?]))
}

/// Finds the IP header behind the link layer: `(vlan, ip bytes)`.
fn strip_link(link: LinkType, frame: &[u8]) -> Option<(Option<u16>, &[u8])> {
    match link {
        LinkType::RawIp => Some((None, frame)),
        LinkType::Null => {
            // Address family in the capturing host's byte order: 2 is IPv4; 24, 28, 30 IPv6.
            let family = frame.get(..4)?;
            let le = u32::from_le_bytes([family[0], family[1], family[2], family[3]]);
            let be = u32::from_be_bytes([family[0], family[1], family[2], family[3]]);
            let is_ip = |af: u32| matches!(af, 2 | 24 | 28 | 30);
            if is_ip(le) || is_ip(be) {
                Some((None, frame.get(4..)?))
            } else {
                None
            }
        }
        LinkType::Ethernet => strip_ethertype(be16(frame, 12)?, frame.get(14..)?),
        LinkType::LinuxSll => strip_ethertype(be16(frame, 14)?, frame.get(16..)?),
        LinkType::LinuxSll2 => strip_ethertype(be16(frame, 0)?, frame.get(20..)?),
    }
}

/// Follows VLAN tags, a PPPoE session header and MPLS labels until an IP ethertype.
fn strip_ethertype(mut ethertype: u16, mut rest: &[u8]) -> Option<(Option<u16>, &[u8])> {
    let mut vlan = None;
    for _ in 0..8 {
        match ethertype {
            ETHERTYPE_IPV4 | ETHERTYPE_IPV6 => return Some((vlan, rest)),
            ETHERTYPE_VLAN | ETHERTYPE_QINQ | ETHERTYPE_QINQ_OLD => {
                vlan = Some(be16(rest, 0)? & 0x0fff);
                ethertype = be16(rest, 2)?;
                rest = rest.get(4..)?;
            }
            ETHERTYPE_PPPOE_SESSION => {
                // 6-byte PPPoE header, then the PPP protocol: 0x0021 IPv4, 0x0057 IPv6.
                ethertype = match be16(rest, 6)? {
                    0x0021 => ETHERTYPE_IPV4,
                    0x0057 => ETHERTYPE_IPV6,
                    _ => return None,
                };
                rest = rest.get(8..)?;
            }
            ETHERTYPE_MPLS | ETHERTYPE_MPLS_MULTICAST => {
                // Labels until bottom-of-stack; the payload's version nibble names it.
                for _ in 0..8 {
                    let bottom = rest.get(2)? & 0x01 != 0;
                    rest = rest.get(4..)?;
                    if bottom {
                        break;
                    }
                }
                ethertype = match rest.first()? >> 4 {
                    4 => ETHERTYPE_IPV4,
                    6 => ETHERTYPE_IPV6,
                    _ => return None,
                };
            }
            _ => return None,
        }
    }
    None
}

/// The inner packet of a GTP-U or VXLAN tunnel carried in this UDP packet, if any.
fn open_udp_tunnel<'a>(view: &PacketView<'a>, depth: u8) -> Option<PacketView<'a>> {
    let tunnel = |port: u16| view.sport == port || view.dport == port;
    if tunnel(GTP_U_PORT) {
        gtp_u_inner(view.payload).and_then(|inner| decode_ip(view.vlan, inner, depth - 1))
    } else if tunnel(VXLAN_PORT) && view.payload.first() == Some(&0x08) {
        view.payload
            .get(8..)
            .and_then(|frame| strip_link(LinkType::Ethernet, frame))
            .and_then(|(_, inner)| decode_ip(view.vlan, inner, depth - 1))
    } else {
        None
    }
}

/// The common case by hand: an unfragmented IPv4 packet, or an IPv6 packet without
/// extension headers, carrying TCP or UDP. Anything else goes to etherparse.
fn fast_path(vlan: Option<u16>, ip: &[u8]) -> Option<PacketView<'_>> {
    let version = ip.first()? >> 4;
    let (src, dst, proto, dscp, ip_len, transport) = match version {
        4 => {
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            let total = usize::from(be16(ip, 2)?);
            let fragment = be16(ip, 6)? & 0x3fff;
            if ihl < 20 || total < ihl || fragment != 0 || ip.len() < ihl {
                return None;
            }
            let src: [u8; 4] = ip[12..16].try_into().ok()?;
            let dst: [u8; 4] = ip[16..20].try_into().ok()?;
            let end = total.min(ip.len());
            (
                IpAddr::from(src),
                IpAddr::from(dst),
                ip[9],
                ip[1] >> 2,
                total as u32,
                &ip[ihl..end],
            )
        }
        6 => {
            if ip.len() < 40 {
                return None;
            }
            let payload_len = usize::from(be16(ip, 4)?);
            let src: [u8; 16] = ip[8..24].try_into().ok()?;
            let dst: [u8; 16] = ip[24..40].try_into().ok()?;
            let traffic_class = ((ip[0] & 0x0f) << 4) | (ip[1] >> 4);
            let end = (40 + payload_len).min(ip.len());
            (
                IpAddr::from(src),
                IpAddr::from(dst),
                ip[6],
                traffic_class >> 2,
                payload_len as u32 + 40,
                &ip[40..end],
            )
        }
        _ => return None,
    };
    let mut view = PacketView {
        vlan,
        src,
        dst,
        proto,
        sport: be16(transport, 0)?,
        dport: be16(transport, 2)?,
        dscp,
        ip_len,
        payload: &[],
        tcp: None,
    };
    match proto {
        ip_proto::TCP => {
            let offset = usize::from(*transport.get(12)? >> 4) * 4;
            let flags = *transport.get(13)?;
            if offset < 20 || offset > transport.len() {
                return None;
            }
            view.payload = &transport[offset..];
            view.tcp = Some(TcpInfo {
                seq: u32::from_be_bytes(transport[4..8].try_into().ok()?),
                syn: flags & 0x02 != 0,
                fin: flags & 0x01 != 0,
                rst: flags & 0x04 != 0,
            });
        }
        ip_proto::UDP => {
            if transport.len() < 8 {
                return None;
            }
            let udp_len = usize::from(be16(transport, 4)?);
            let end = if (8..=transport.len()).contains(&udp_len) {
                udp_len
            } else {
                transport.len()
            };
            view.payload = &transport[8..end];
        }
        _ => return None,
    }
    Some(view)
}

/// The inner IP packet of a GRE tunnel (plain GRE or transparent Ethernet bridging).
fn gre_inner(payload: &[u8]) -> Option<(Option<u16>, &[u8])> {
    let flags = be16(payload, 0)?;
    if flags & 0x0007 != 0 {
        return None; // GRE version 1 is PPTP's enhanced GRE: PPP inside, not IP
    }
    let mut at = 4;
    for bit in [0x8000u16, 0x2000, 0x1000] {
        // checksum(+reserved), key, sequence number: 4 bytes each when present
        if flags & bit != 0 {
            at += 4;
        }
    }
    let inner = payload.get(at..)?;
    match be16(payload, 2)? {
        ETHERTYPE_IPV4 | ETHERTYPE_IPV6 => Some((None, inner)),
        0x6558 => strip_link(LinkType::Ethernet, inner),
        _ => None,
    }
}

/// The inner packet of a GTP-U G-PDU (mobile backhaul).
fn gtp_u_inner(payload: &[u8]) -> Option<&[u8]> {
    let flags = *payload.first()?;
    if flags >> 5 != 1 || *payload.get(1)? != 0xff {
        return None;
    }
    let mut at = 8;
    if flags & 0x07 != 0 {
        at = 12;
        // Extension headers: length in 4-byte units, next type in the last byte.
        let mut next = *payload.get(11)?;
        while next != 0 {
            let units = usize::from(*payload.get(at)?);
            if units == 0 {
                return None;
            }
            at += units * 4;
            next = *payload.get(at - 1)?;
        }
    }
    let inner = payload.get(at..)?;
    matches!(inner.first()? >> 4, 4 | 6).then_some(inner)
}

/// Decodes one frame of the given link type. `None` for non-IP frames and for frames too
/// broken to name a flow (a truncated IP header, a non-first fragment without ports).
pub fn decode(link: LinkType, frame: &[u8]) -> Option<PacketView<'_>> {
    let (vlan, ip) = strip_link(link, frame)?;
    decode_ip(vlan, ip, 2)
}

/// Decodes an IP packet; tunnels (6in4, IP-in-IP, GTP-U, VXLAN) are opened up to `depth`
/// levels so the inner flow is classified, as the tunnel itself says nothing.
fn decode_ip(vlan: Option<u16>, ip: &[u8], depth: u8) -> Option<PacketView<'_>> {
    let Some(view) = fast_path(vlan, ip) else {
        return decode_ip_lax(vlan, ip, depth);
    };
    if view.proto == ip_proto::UDP
        && depth > 0
        && let Some(inner) = open_udp_tunnel(&view, depth)
    {
        return Some(inner);
    }
    Some(view)
}

/// Every other IP packet, through etherparse's lax slicer (options, extension headers,
/// fragments, other protocols).
fn decode_ip_lax(vlan: Option<u16>, ip: &[u8], depth: u8) -> Option<PacketView<'_>> {
    let sliced = LaxSlicedPacket::from_ip(ip).ok()?;
    let (src, dst, proto, dscp, ip_len, fragmented, ip_payload) = match sliced.net.as_ref()? {
        LaxNetSlice::Ipv4(v4) => {
            let header = v4.header();
            (
                IpAddr::V4(header.source_addr()),
                IpAddr::V4(header.destination_addr()),
                v4.payload().ip_number.0,
                header.dcp().value(),
                u32::from(header.total_len()),
                v4.is_payload_fragmented(),
                v4.payload().payload,
            )
        }
        LaxNetSlice::Ipv6(v6) => {
            let header = v6.header();
            (
                IpAddr::V6(header.source_addr()),
                IpAddr::V6(header.destination_addr()),
                v6.payload().ip_number.0,
                header.traffic_class() >> 2,
                u32::from(header.payload_length()) + 40,
                v6.is_payload_fragmented(),
                v6.payload().payload,
            )
        }
        LaxNetSlice::Arp(_) => return None,
    };
    if depth > 0
        && proto == ip_proto::GRE
        && !fragmented
        && let Some((inner_vlan, inner)) = gre_inner(ip_payload)
        && let Some(view) = decode_ip(inner_vlan.or(vlan), inner, depth - 1)
    {
        return Some(view);
    }
    if depth > 0
        && matches!(proto, 4 | 41)
        && !fragmented
        && let Some(inner) = decode_ip(vlan, ip_payload, depth - 1)
    {
        return Some(inner);
    }
    let mut view = PacketView {
        vlan,
        src,
        dst,
        proto,
        sport: 0,
        dport: 0,
        dscp,
        ip_len,
        payload: &[],
        tcp: None,
    };
    match sliced.transport {
        Some(TransportSlice::Tcp(tcp)) => {
            view.sport = tcp.source_port();
            view.dport = tcp.destination_port();
            view.payload = tcp.payload();
            view.tcp = Some(TcpInfo {
                seq: tcp.sequence_number(),
                syn: tcp.syn(),
                fin: tcp.fin(),
                rst: tcp.rst(),
            });
        }
        Some(TransportSlice::Udp(udp)) => {
            view.sport = udp.source_port();
            view.dport = udp.destination_port();
            view.payload = udp.payload();
            if depth > 0
                && let Some(inner) = open_udp_tunnel(&view, depth)
            {
                return Some(inner);
            }
        }
        Some(_) => view.payload = ip_payload,
        None => {
            if matches!(proto, ip_proto::TCP | ip_proto::UDP) {
                // A later fragment, or a header cut short by the snap length: no ports.
                if fragmented || ip_payload.len() < 8 {
                    return None;
                }
            }
            if proto == ip_proto::SCTP {
                view.sport = be16(ip_payload, 0)?;
                view.dport = be16(ip_payload, 2)?;
                view.payload = ip_payload.get(12..).unwrap_or(&[]);
            } else {
                view.payload = ip_payload;
            }
        }
    }
    Some(view)
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    fn udp_frame(vlan: Option<u16>) -> Vec<u8> {
        let builder = PacketBuilder::ethernet2([1; 6], [2; 6]);
        let builder = match vlan {
            Some(id) => builder
                .single_vlan(etherparse::VlanId::try_new(id).unwrap())
                .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64),
            None => builder.ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64),
        };
        let builder = builder.udp(5060, 5061);
        let mut out = Vec::new();
        builder.write(&mut out, b"INVITE sip:x").unwrap();
        out
    }

    #[test]
    fn ethernet_udp_with_and_without_vlan() {
        let plain = udp_frame(None);
        let view = decode(LinkType::Ethernet, &plain).unwrap();
        assert_eq!((view.sport, view.dport, view.proto), (5060, 5061, 17));
        assert_eq!(view.vlan, None);
        assert_eq!(view.payload, b"INVITE sip:x");
        let tagged = udp_frame(Some(1506));
        let view = decode(LinkType::Ethernet, &tagged).unwrap();
        assert_eq!(view.vlan, Some(1506));
        assert_eq!(view.payload, b"INVITE sip:x");
    }

    #[test]
    fn other_link_types_reach_the_same_ip_packet() {
        let eth = udp_frame(None);
        let ip = &eth[14..];
        let raw = decode(LinkType::RawIp, ip).unwrap();
        let mut null = 2u32.to_le_bytes().to_vec();
        null.extend_from_slice(ip);
        let mut sll = vec![0u8; 14];
        sll.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        sll.extend_from_slice(ip);
        let mut sll2 = ETHERTYPE_IPV4.to_be_bytes().to_vec();
        sll2.extend_from_slice(&[0u8; 18]);
        sll2.extend_from_slice(ip);
        assert_eq!(decode(LinkType::Null, &null).unwrap(), raw);
        assert_eq!(decode(LinkType::LinuxSll, &sll).unwrap(), raw);
        assert_eq!(decode(LinkType::LinuxSll2, &sll2).unwrap(), raw);
        assert_eq!(raw.src, "10.0.0.1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn pppoe_inside_qinq_and_6in4_are_opened() {
        let eth = udp_frame(None);
        let ip = &eth[14..];
        let mut frame = eth[..12].to_vec();
        frame.extend_from_slice(&[0x81, 0x00, 0x01, 0xa5, 0x81, 0x00, 0x03, 0x11, 0x88, 0x64]);
        frame.extend_from_slice(&[0x11, 0x00, 0x55, 0x6a, 0x00, 0x3f, 0x00, 0x21]);
        frame.extend_from_slice(ip);
        let view = decode(LinkType::Ethernet, &frame).unwrap();
        assert_eq!(view.vlan, Some(0x311));
        assert_eq!(view.dport, 5061);

        let inner = PacketBuilder::ipv6([1; 16], [2; 16], 64).udp(1000, 514);
        let mut inner_bytes = Vec::new();
        inner.write(&mut inner_bytes, b"<13>hello").unwrap();
        let mut outer = vec![
            0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 41, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        let total = (outer.len() + inner_bytes.len()) as u16;
        outer[2..4].copy_from_slice(&total.to_be_bytes());
        outer.extend_from_slice(&inner_bytes);
        let view = decode(LinkType::RawIp, &outer).unwrap();
        assert_eq!((view.proto, view.dport), (17, 514));
        assert_eq!(view.payload, b"<13>hello");
    }

    proptest::proptest! {
        /// The hand-written fast path reads exactly what etherparse reads.
        #[test]
        fn fast_path_agrees_with_etherparse(
            v6 in proptest::bool::ANY,
            tcp in proptest::bool::ANY,
            sport in 1u16..,
            dport in 1u16..,
            seq in proptest::num::u32::ANY,
            payload in proptest::collection::vec(proptest::num::u8::ANY, 0..64),
        ) {
            let builder = if v6 {
                PacketBuilder::ipv6([0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], [0xfe; 16], 64)
            } else {
                PacketBuilder::ipv4([192, 0, 2, 1], [198, 51, 100, 2], 64)
            };
            let mut bytes = Vec::new();
            if tcp {
                builder.tcp(sport, dport, seq, 1000).syn().write(&mut bytes, &payload).unwrap();
            } else {
                builder.udp(sport, dport).write(&mut bytes, &payload).unwrap();
            }
            let fast = fast_path(None, &bytes).unwrap();
            let lax = decode_ip_lax(None, &bytes, 0).unwrap();
            proptest::prop_assert_eq!(fast, lax);
        }
    }

    #[test]
    fn gre_is_opened_to_the_inner_flow() {
        let eth = udp_frame(None);
        let inner = &eth[14..];
        let mut outer = vec![
            0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 47, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        outer.extend_from_slice(&[0x00, 0x00, 0x08, 0x00]);
        outer.extend_from_slice(inner);
        let total = outer.len() as u16;
        outer[2..4].copy_from_slice(&total.to_be_bytes());
        let view = decode(LinkType::RawIp, &outer).unwrap();
        assert_eq!((view.proto, view.sport, view.dport), (17, 5060, 5061));
    }

    #[test]
    fn non_ip_and_truncated_frames_are_skipped() {
        let mut arp = udp_frame(None);
        arp[12] = 0x08;
        arp[13] = 0x06;
        assert!(decode(LinkType::Ethernet, &arp).is_none());
        assert!(decode(LinkType::Ethernet, &udp_frame(None)[..20]).is_none());
        assert!(decode(LinkType::Ethernet, &[]).is_none());
    }
}
