//! The data plane's rtnetlink: one socket opened once in the agent's namespace carries
//! every route, ip rule and HTB change and reads them back for adoption. Requests go out
//! many to a `send` (netlink takes a run of messages in one datagram) and their acks are
//! read per window, every one checked; listings are kernel dumps. No `ip` or `tc` process
//! is started.
//!
//! netlink-packet-route has no HTB types: the HTB options are built and read in
//! [`super::htb`] as raw attributes.
//!
//! This needs `unsafe` once: `setns(2)` on a helper thread so a socket is created in a
//! named namespace (lab and tests); the agent in its own namespace never calls it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::os::fd::AsRawFd;

use ipnet::IpNet;
use rtnetlink::packet_core::DefaultNla;
use rtnetlink::packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_REPLACE, NLM_F_REQUEST, NetlinkHeader,
    NetlinkMessage, NetlinkPayload, Nla,
};
use rtnetlink::packet_route::link::{LinkAttribute, LinkMessage};
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use rtnetlink::packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
use rtnetlink::packet_route::tc::{TcAttribute, TcHandle, TcMessage, TcOption};
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

use super::htb::{self, TcCommand};
use super::nexthop::{self, Nexthop};
use super::routing::{Family, IpRule, RouteKey, RouteTarget};
use super::{HTB_MAJOR, ROUTE_PROTOCOL};

/// A route change the kernel refused, or a socket that could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("netlink socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("interface `{0}` has no index (does it exist?)")]
    UnknownInterface(String),
    #[error("kernel refused {what}: {error}")]
    Refused { what: String, error: std::io::Error },
    #[error("netlink reply does not parse: {0}")]
    Decode(String),
}

/// A request built by hand: netlink message type, flags besides request and ack, and the
/// body after the netlink header.
#[derive(Debug, Clone)]
pub struct RawRequest {
    pub message_type: u16,
    pub flags: u16,
    pub body: Vec<u8>,
}

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;

/// Requests per datagram, in flight before their acks are read (their acks fit the
/// socket's receive buffer).
pub const WINDOW: usize = 128;

/// An rtnetlink socket bound to one network namespace.
#[derive(Debug)]
pub struct RouteSocket {
    socket: Socket,
    sequence: u32,
}

impl RouteSocket {
    /// Opens the socket in this process's namespace, or in the named one.
    pub fn open(netns: Option<&str>) -> Result<Self, NetlinkError> {
        Ok(RouteSocket {
            socket: open_socket(netns, NETLINK_ROUTE)?,
            sequence: 1,
        })
    }

    /// Installs or moves every route (`ip route replace` semantics); `interfaces` maps
    /// names to indexes.
    pub fn replace_routes(
        &mut self,
        routes: &[(&RouteKey, &RouteTarget)],
        interfaces: &BTreeMap<String, u32>,
    ) -> Result<(), NetlinkError> {
        let mut requests = Vec::with_capacity(routes.len());
        for (key, target) in routes {
            let index = *interfaces
                .get(&target.device)
                .ok_or_else(|| NetlinkError::UnknownInterface(target.device.clone()))?;
            requests.push((
                RouteNetlinkMessage::NewRoute(route_message(key, Some((target, index)))),
                NLM_F_CREATE | NLM_F_REPLACE,
            ));
        }
        self.execute(&requests, false)
    }

    /// Sends `requests` (each with its flags besides request and ack), [`WINDOW`] per
    /// datagram, in order, and checks every ack. All run; the first refusal is returned.
    /// With `tolerate_gone`, "no such object" is not an error (idempotent deletes).
    pub fn execute(
        &mut self,
        requests: &[(RouteNetlinkMessage, u16)],
        tolerate_gone: bool,
    ) -> Result<(), NetlinkError> {
        let raw: Vec<RawRequest> = requests
            .iter()
            .map(|(request, flags)| {
                let mut message =
                    NetlinkMessage::new(header(*flags), NetlinkPayload::from(request.clone()));
                message.finalize();
                let mut bytes = vec![0u8; message.buffer_len()];
                message.serialize(&mut bytes);
                RawRequest {
                    message_type: message.header.message_type,
                    flags: *flags,
                    body: bytes[16..].to_vec(),
                }
            })
            .collect();
        self.execute_raw(&raw, tolerate_gone, |index| describe(&requests[index].0))
    }

    /// As [`RouteSocket::execute`], for requests built by hand (nexthops);
    /// `describe` names request `i` in an error.
    pub fn execute_raw(
        &mut self,
        requests: &[RawRequest],
        tolerate_gone: bool,
        describe: impl Fn(usize) -> String,
    ) -> Result<(), NetlinkError> {
        let mut first_error = None;
        for (number, window) in requests.chunks(WINDOW).enumerate() {
            let errors = self.send_window(window)?;
            for (index, code) in errors {
                let gone = matches!(code, libc::ENOENT | libc::ESRCH);
                if (tolerate_gone && gone) || first_error.is_some() {
                    continue;
                }
                first_error = Some(NetlinkError::Refused {
                    what: describe(number * WINDOW + index),
                    error: std::io::Error::from_raw_os_error(code),
                });
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// One datagram of requests; returns (index in `window`, errno) of the refused ones.
    fn send_window(&mut self, window: &[RawRequest]) -> Result<Vec<(usize, i32)>, NetlinkError> {
        let first = self.sequence.wrapping_add(1);
        let mut buffer = Vec::with_capacity(window.len() * 128);
        for request in window {
            self.sequence = self.sequence.wrapping_add(1);
            let length = 16 + request.body.len();
            buffer.extend_from_slice(&(length as u32).to_ne_bytes());
            buffer.extend_from_slice(&request.message_type.to_ne_bytes());
            buffer.extend_from_slice(&(NLM_F_REQUEST | NLM_F_ACK | request.flags).to_ne_bytes());
            buffer.extend_from_slice(&self.sequence.to_ne_bytes());
            buffer.extend_from_slice(&0u32.to_ne_bytes());
            buffer.extend_from_slice(&request.body);
            buffer.resize(buffer.len().next_multiple_of(4), 0);
        }
        self.socket.send(&buffer, 0)?;
        let mut pending = window.len();
        let mut refused = Vec::new();
        let mut receive = vec![0u8; 65536];
        while pending > 0 {
            let size = self.socket.recv(&mut &mut receive[..], 0)?;
            let mut offset = 0;
            while offset + 16 <= size {
                let length =
                    u32::from_ne_bytes(receive[offset..offset + 4].try_into().expect("four bytes"))
                        as usize;
                let message_type = u16::from_ne_bytes([receive[offset + 4], receive[offset + 5]]);
                let sequence = u32::from_ne_bytes(
                    receive[offset + 8..offset + 12]
                        .try_into()
                        .expect("four bytes"),
                );
                if length < 16 || offset + length > size {
                    return Err(NetlinkError::Decode(format!(
                        "ack of length {length} at {offset} in {size} bytes"
                    )));
                }
                let index = sequence.wrapping_sub(first) as usize;
                // NLMSG_ERROR: an errno (0 for an ack), then the request's header.
                if message_type == NLMSG_ERROR && index < window.len() && length >= 20 {
                    pending -= 1;
                    let code = i32::from_ne_bytes(
                        receive[offset + 16..offset + 20]
                            .try_into()
                            .expect("four bytes"),
                    );
                    if code != 0 {
                        refused.push((index, -code));
                    }
                }
                offset += length.next_multiple_of(4);
            }
        }
        Ok(refused)
    }

    /// wansteer's nexthops (tagged with its protocol); `names` maps interface indexes to
    /// names.
    pub fn nexthops(
        &mut self,
        names: &BTreeMap<u32, String>,
    ) -> Result<BTreeMap<u32, Nexthop>, NetlinkError> {
        let mut out = BTreeMap::new();
        for body in self.dump_raw(nexthop::RTM_GETNEXTHOP, &nexthop::dump_body())? {
            if let Some((id, entry)) = nexthop::parse(&body, names) {
                out.insert(id, entry);
            }
        }
        Ok(out)
    }

    /// Creates or replaces nexthops (`ip nexthop replace`); `interfaces` maps names to
    /// indexes. Routes that use a replaced nexthop follow it at once.
    pub fn replace_nexthops(
        &mut self,
        nexthops: &[(u32, &Nexthop)],
        interfaces: &BTreeMap<String, u32>,
    ) -> Result<(), NetlinkError> {
        let mut requests = Vec::with_capacity(nexthops.len());
        for (id, target) in nexthops {
            let index = *interfaces
                .get(&target.device)
                .ok_or_else(|| NetlinkError::UnknownInterface(target.device.clone()))?;
            requests.push(RawRequest {
                message_type: nexthop::RTM_NEWNEXTHOP,
                flags: NLM_F_CREATE | NLM_F_REPLACE,
                body: nexthop::message_body(*id, Some((target, index))),
            });
        }
        self.execute_raw(&requests, false, |i| format!("nexthop {}", nexthops[i].0))
    }

    /// Deletes nexthops by id (gone ones are no error).
    pub fn delete_nexthops(&mut self, ids: &[u32]) -> Result<(), NetlinkError> {
        let requests: Vec<RawRequest> = ids
            .iter()
            .map(|id| RawRequest {
                message_type: nexthop::RTM_DELNEXTHOP,
                flags: 0,
                body: nexthop::message_body(*id, None),
            })
            .collect();
        self.execute_raw(&requests, true, |i| format!("nexthop {} (delete)", ids[i]))
    }

    /// A dump of a message type this crate has no types for: the body of each entry.
    fn dump_raw(&mut self, message_type: u16, body: &[u8]) -> Result<Vec<Vec<u8>>, NetlinkError> {
        self.sequence = self.sequence.wrapping_add(1);
        let sequence = self.sequence;
        let mut buffer = Vec::with_capacity(16 + body.len());
        buffer.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
        buffer.extend_from_slice(&message_type.to_ne_bytes());
        buffer.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
        buffer.extend_from_slice(&sequence.to_ne_bytes());
        buffer.extend_from_slice(&0u32.to_ne_bytes());
        buffer.extend_from_slice(body);
        self.socket.send(&buffer, 0)?;
        let mut out = Vec::new();
        let mut receive = vec![0u8; 65536];
        loop {
            let size = self.socket.recv(&mut &mut receive[..], 0)?;
            let mut offset = 0;
            while offset + 16 <= size {
                let length =
                    u32::from_ne_bytes(receive[offset..offset + 4].try_into().expect("four bytes"))
                        as usize;
                if length < 16 || offset + length > size {
                    break;
                }
                let kind = u16::from_ne_bytes([receive[offset + 4], receive[offset + 5]]);
                let entry_sequence = u32::from_ne_bytes(
                    receive[offset + 8..offset + 12]
                        .try_into()
                        .expect("four bytes"),
                );
                let entry = &receive[offset + 16..offset + length];
                if entry_sequence == sequence {
                    match kind {
                        NLMSG_DONE => return Ok(out),
                        NLMSG_ERROR => {
                            let code = entry
                                .get(..4)
                                .map_or(0, |b| i32::from_ne_bytes(b.try_into().expect("four")));
                            if code == 0 {
                                return Ok(out);
                            }
                            return Err(NetlinkError::Refused {
                                what: "a nexthop dump".into(),
                                error: std::io::Error::from_raw_os_error(-code),
                            });
                        }
                        _ => out.push(entry.to_vec()),
                    }
                }
                offset += length.next_multiple_of(4);
            }
        }
    }

    /// A kernel dump: every message the request lists.
    pub fn dump(
        &mut self,
        request: RouteNetlinkMessage,
    ) -> Result<Vec<RouteNetlinkMessage>, NetlinkError> {
        let mut message = NetlinkMessage::new(
            header(NLM_F_REQUEST | NLM_F_DUMP),
            NetlinkPayload::from(request),
        );
        self.sequence = self.sequence.wrapping_add(1);
        let sequence = self.sequence;
        message.header.sequence_number = sequence;
        message.finalize();
        let mut buffer = vec![0u8; message.buffer_len()];
        message.serialize(&mut buffer);
        self.socket.send(&buffer, 0)?;
        let mut out = Vec::new();
        let mut receive = vec![0u8; 65536];
        loop {
            let size = self.socket.recv(&mut &mut receive[..], 0)?;
            let mut offset = 0;
            while offset + 16 <= size {
                let length =
                    u32::from_ne_bytes(receive[offset..offset + 4].try_into().expect("four bytes"))
                        as usize;
                if length < 16 || offset + length > size {
                    break;
                }
                // A listing may hold entries this crate cannot parse (exotic routes or
                // links someone else made): they are not wansteer's; skip them.
                let reply = match NetlinkMessage::<RouteNetlinkMessage>::deserialize(
                    &receive[offset..offset + length],
                ) {
                    Ok(reply) => reply,
                    Err(error) => {
                        tracing::debug!("skipping a dump entry that does not parse: {error}");
                        offset += length.next_multiple_of(4);
                        continue;
                    }
                };
                if reply.header.sequence_number == sequence {
                    match reply.payload {
                        NetlinkPayload::Done(_) => return Ok(out),
                        NetlinkPayload::Error(error) => {
                            return match error.code {
                                Some(code) => Err(NetlinkError::Refused {
                                    what: "a dump".into(),
                                    error: std::io::Error::from_raw_os_error(-code.get()),
                                }),
                                None => Ok(out),
                            };
                        }
                        NetlinkPayload::InnerMessage(inner) => out.push(inner),
                        _ => {}
                    }
                }
                offset += length.next_multiple_of(4);
            }
        }
    }

    /// Interface indexes by name.
    pub fn links(&mut self) -> Result<BTreeMap<String, u32>, NetlinkError> {
        let mut links = BTreeMap::new();
        for message in self.dump(RouteNetlinkMessage::GetLink(LinkMessage::default()))? {
            if let RouteNetlinkMessage::NewLink(link) = message {
                for attribute in link.attributes {
                    if let LinkAttribute::IfName(name) = attribute {
                        links.insert(name, link.header.index);
                    }
                }
            }
        }
        Ok(links)
    }

    /// wansteer's ip rules (tagged with its protocol), both families.
    pub fn rules(&mut self) -> Result<BTreeSet<IpRule>, NetlinkError> {
        let mut rules = BTreeSet::new();
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            let mut request = RuleMessage::default();
            request.header.family = family;
            for message in self.dump(RouteNetlinkMessage::GetRule(request))? {
                if let RouteNetlinkMessage::NewRule(rule) = message
                    && let Some(rule) = parse_rule(&rule)
                {
                    rules.insert(rule);
                }
            }
        }
        Ok(rules)
    }

    /// wansteer's routes (tagged with its protocol) in every table, both families;
    /// `names` maps interface indexes to names.
    pub fn routes(
        &mut self,
        names: &BTreeMap<u32, String>,
    ) -> Result<BTreeMap<RouteKey, RouteTarget>, NetlinkError> {
        let mut routes = BTreeMap::new();
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            let mut request = RouteMessage::default();
            request.header.address_family = family;
            for message in self.dump(RouteNetlinkMessage::GetRoute(request))? {
                if let RouteNetlinkMessage::NewRoute(route) = message
                    && let Some((key, target)) = parse_route(&route, names)
                {
                    routes.insert(key, target);
                }
            }
        }
        Ok(routes)
    }

    /// Every qdisc: (interface index, handle, parent, kind, raw TCA_OPTIONS content).
    pub fn qdiscs(&mut self) -> Result<Vec<TcListing>, NetlinkError> {
        self.tc_dump(RouteNetlinkMessage::GetQueueDiscipline(TcMessage::default()))
    }

    /// Every class on one interface.
    pub fn classes(&mut self, index: u32) -> Result<Vec<TcListing>, NetlinkError> {
        let mut request = TcMessage::default();
        request.header.index = index as i32;
        self.tc_dump(RouteNetlinkMessage::GetTrafficClass(request))
    }

    fn tc_dump(&mut self, request: RouteNetlinkMessage) -> Result<Vec<TcListing>, NetlinkError> {
        let mut out = Vec::new();
        for message in self.dump(request)? {
            let (RouteNetlinkMessage::NewQueueDiscipline(tc)
            | RouteNetlinkMessage::NewTrafficClass(tc)) = message
            else {
                continue;
            };
            let mut listing = TcListing {
                index: tc.header.index as u32,
                handle: u32::from(tc.header.handle),
                parent: u32::from(tc.header.parent),
                kind: String::new(),
                options: Vec::new(),
            };
            for attribute in &tc.attributes {
                match attribute {
                    TcAttribute::Kind(kind) => listing.kind = kind.clone(),
                    TcAttribute::Options(options) => {
                        for option in options {
                            let mut value = vec![0u8; option.value_len()];
                            option.emit_value(&mut value);
                            listing.options.extend(value);
                        }
                    }
                    _ => {}
                }
            }
            out.push(listing);
        }
        Ok(out)
    }
}

/// A qdisc or class as a dump lists it; `options` is the content of TCA_OPTIONS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcListing {
    pub index: u32,
    pub handle: u32,
    pub parent: u32,
    pub kind: String,
    pub options: Vec<u8>,
}

/// What a request is, for an error message.
fn describe(request: &RouteNetlinkMessage) -> String {
    match request {
        RouteNetlinkMessage::NewRoute(route) | RouteNetlinkMessage::DelRoute(route) => {
            let table = route.attributes.iter().find_map(|a| match a {
                RouteAttribute::Table(table) => Some(*table),
                _ => None,
            });
            let destination = route.attributes.iter().find_map(|a| match a {
                RouteAttribute::Destination(RouteAddress::Inet(ip)) => Some(ip.to_string()),
                RouteAttribute::Destination(RouteAddress::Inet6(ip)) => Some(ip.to_string()),
                _ => None,
            });
            format!(
                "route {}/{} table {}",
                destination.unwrap_or_default(),
                route.header.destination_prefix_length,
                table.unwrap_or_default()
            )
        }
        RouteNetlinkMessage::NewRule(rule) | RouteNetlinkMessage::DelRule(rule) => {
            format!("ip rule {:?}", rule.attributes)
        }
        RouteNetlinkMessage::NewQueueDiscipline(tc)
        | RouteNetlinkMessage::DelQueueDiscipline(tc) => {
            format!(
                "qdisc {:x} on interface {}",
                u32::from(tc.header.handle),
                tc.header.index
            )
        }
        RouteNetlinkMessage::NewTrafficClass(tc) | RouteNetlinkMessage::DelTrafficClass(tc) => {
            format!(
                "HTB class {:x} on interface {}",
                u32::from(tc.header.handle),
                tc.header.index
            )
        }
        other => format!("{other:?}"),
    }
}

/// An ip rule as wansteer installs it: `fwmark <mark>/0xff lookup <table>` at its
/// priority, tagged with its protocol.
pub fn rule_message(rule: &IpRule) -> RuleMessage {
    let mut message = RuleMessage::default();
    message.header.family = match rule.family {
        Family::V4 => AddressFamily::Inet,
        Family::V6 => AddressFamily::Inet6,
    };
    message.header.table = u8::try_from(rule.table).unwrap_or(RouteHeader::RT_TABLE_UNSPEC);
    message.header.action = RuleAction::ToTable;
    message.attributes = vec![
        RuleAttribute::Priority(rule.priority),
        RuleAttribute::FwMark(rule.mark),
        RuleAttribute::FwMask(rule.mask),
        RuleAttribute::Table(rule.table),
        RuleAttribute::Protocol(RouteProtocol::from(ROUTE_PROTOCOL)),
    ];
    message
}

fn parse_rule(message: &RuleMessage) -> Option<IpRule> {
    let family = match message.header.family {
        AddressFamily::Inet => Family::V4,
        AddressFamily::Inet6 => Family::V6,
        _ => return None,
    };
    let (mut priority, mut mark, mut table, mut ours) = (0, None, None, false);
    let mut mask = u32::MAX;
    for attribute in &message.attributes {
        match attribute {
            RuleAttribute::Priority(p) => priority = *p,
            RuleAttribute::FwMark(m) => mark = Some(*m),
            RuleAttribute::FwMask(m) => mask = *m,
            RuleAttribute::Table(t) => table = Some(*t),
            RuleAttribute::Protocol(p) => ours = u8::from(*p) == ROUTE_PROTOCOL,
            _ => {}
        }
    }
    ours.then_some(())?;
    Some(IpRule {
        family,
        priority,
        mark: mark?,
        table: table.unwrap_or(u32::from(message.header.table)),
        mask,
    })
}

fn parse_route(
    message: &RouteMessage,
    names: &BTreeMap<u32, String>,
) -> Option<(RouteKey, RouteTarget)> {
    if u8::from(message.header.protocol) != ROUTE_PROTOCOL {
        return None;
    }
    let v6 = message.header.address_family == AddressFamily::Inet6;
    let (mut table, mut destination, mut via, mut device, mut nexthop) = (
        u32::from(message.header.table),
        None,
        None,
        String::new(),
        None,
    );
    for attribute in &message.attributes {
        match attribute {
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Destination(RouteAddress::Inet(ip)) => {
                destination = Some(IpAddr::V4(*ip))
            }
            RouteAttribute::Destination(RouteAddress::Inet6(ip)) => {
                destination = Some(IpAddr::V6(*ip))
            }
            RouteAttribute::Gateway(RouteAddress::Inet(ip)) => via = Some(IpAddr::V4(*ip)),
            RouteAttribute::Gateway(RouteAddress::Inet6(ip)) => via = Some(IpAddr::V6(*ip)),
            RouteAttribute::Oif(index) => device = names.get(index).cloned().unwrap_or_default(),
            RouteAttribute::NhId(id) => nexthop = Some(*id),
            _ => {}
        }
    }
    let address = destination.unwrap_or(if v6 {
        IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
    } else {
        IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)
    });
    let destination = IpNet::new(address, message.header.destination_prefix_length).ok()?;
    Some((
        RouteKey { table, destination },
        RouteTarget {
            via,
            device,
            nexthop,
        },
    ))
}

/// A netlink socket of `protocol`, connected to the kernel, created in this process's
/// namespace or (from a helper thread that entered it) in the named one.
pub fn open_socket(netns: Option<&str>, protocol: isize) -> Result<Socket, NetlinkError> {
    let create = move || -> Result<Socket, NetlinkError> {
        let mut socket = Socket::new(protocol)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        Ok(socket)
    };
    match netns {
        None => create(),
        Some(name) => {
            let path = format!("/var/run/netns/{name}");
            std::thread::spawn(move || -> Result<Socket, NetlinkError> {
                let file = std::fs::File::open(path)?;
                // SAFETY: setns with a valid namespace fd; it only changes the network
                // namespace of this helper thread, which ends right after.
                if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    return Err(std::io::Error::last_os_error().into());
                }
                create()
            })
            .join()
            .expect("netns helper thread does not panic")
        }
    }
}

/// Reads a file (a sysctl under /proc/sys/net) as the named namespace sees it.
pub fn read_in_netns(netns: Option<&str>, path: &str) -> std::io::Result<String> {
    let path = path.to_string();
    let read = move || std::fs::read_to_string(path);
    match netns {
        None => read(),
        Some(name) => {
            let ns_path = format!("/var/run/netns/{name}");
            std::thread::spawn(move || {
                let file = std::fs::File::open(ns_path)?;
                // SAFETY: setns with a valid namespace fd; it only changes the network
                // namespace of this helper thread, which ends right after.
                if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                read()
            })
            .join()
            .expect("netns helper thread does not panic")
        }
    }
}

fn header(flags: u16) -> NetlinkHeader {
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    header
}

/// A route in wansteer's tables: to install (`target` with its interface index) or, without
/// a target, to delete.
pub fn route_message(key: &RouteKey, target: Option<(&RouteTarget, u32)>) -> RouteMessage {
    let destination = key.destination;
    let mut message = RouteMessage::default();
    message.header.address_family = match destination.addr() {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    };
    message.header.destination_prefix_length = destination.prefix_len();
    // Tables above 255 only fit the attribute (as iproute2 does it).
    message.header.table = u8::try_from(key.table).unwrap_or(RouteHeader::RT_TABLE_UNSPEC);
    message.header.protocol = RouteProtocol::from(ROUTE_PROTOCOL);
    message.header.scope = if target.is_some_and(|(target, _)| target.via.is_none()) {
        RouteScope::Link
    } else {
        RouteScope::Universe
    };
    message.header.kind = RouteType::Unicast;
    message.attributes.push(RouteAttribute::Table(key.table));
    message
        .attributes
        .push(RouteAttribute::Destination(RouteAddress::from(
            destination.addr(),
        )));
    if let Some((target, index)) = target {
        if let Some(id) = target.nexthop {
            message.attributes.push(RouteAttribute::NhId(id));
            return message;
        }
        if let Some(via) = target.via {
            message
                .attributes
                .push(RouteAttribute::Gateway(RouteAddress::from(via)));
        }
        message.attributes.push(RouteAttribute::Oif(index));
    }
    message
}

/// The request (and its flags) for one HTB change on interface `index`.
pub fn tc_request(command: &TcCommand, index: u32) -> (RouteNetlinkMessage, u16) {
    let root = TcHandle::from(u32::from(HTB_MAJOR) << 16);
    let class_handle = |minor: u16| TcHandle::from((u32::from(HTB_MAJOR) << 16) | u32::from(minor));
    let options = |options: Vec<(u16, Vec<u8>)>| {
        TcAttribute::Options(
            options
                .into_iter()
                .map(|(kind, value)| TcOption::Other(DefaultNla::new(kind, value)))
                .collect(),
        )
    };
    let mut message = TcMessage::default();
    message.header.index = index as i32;
    let replace = NLM_F_CREATE | NLM_F_REPLACE;
    match command {
        TcCommand::ReplaceRoot { default_minor, .. } => {
            message.header.handle = root;
            message.header.parent = TcHandle::ROOT;
            message.attributes = vec![
                TcAttribute::Kind("htb".into()),
                options(htb::qdisc_options(*default_minor)),
            ];
            (RouteNetlinkMessage::NewQueueDiscipline(message), replace)
        }
        TcCommand::ReplaceClass { minor, class, .. } => {
            message.header.handle = class_handle(*minor);
            message.header.parent = class.parent.map_or(root, class_handle);
            message.attributes = vec![
                TcAttribute::Kind("htb".into()),
                options(htb::class_options(class)),
            ];
            (RouteNetlinkMessage::NewTrafficClass(message), replace)
        }
        TcCommand::DeleteClass { minor, .. } => {
            message.header.handle = class_handle(*minor);
            (RouteNetlinkMessage::DelTrafficClass(message), 0)
        }
        TcCommand::DeleteRoot { .. } => {
            message.header.handle = root;
            message.header.parent = TcHandle::ROOT;
            (RouteNetlinkMessage::DelQueueDiscipline(message), 0)
        }
    }
}
