//! Route replaces over rtnetlink, for the paths where time counts (class moves pushed by
//! the controller, local failover): one socket opened once in the agent's namespace,
//! one `RTM_NEWROUTE` with `NLM_F_CREATE | NLM_F_REPLACE` per route, every ack checked.
//! No process is started, so a move costs a few syscalls instead of an `ip` process.
//!
//! This needs `unsafe` once: `setns(2)` on a helper thread so the socket is created in a
//! named namespace (lab and tests); the agent in its own namespace never calls it.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::os::fd::AsRawFd;

use rtnetlink::packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_REPLACE, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage,
    NetlinkPayload,
};
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

use super::ROUTE_PROTOCOL;
use super::routing::{RouteKey, RouteTarget};

/// A route change the kernel refused, or a socket that could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("netlink socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("interface `{0}` has no index (does it exist?)")]
    UnknownInterface(String),
    #[error("kernel refused route {destination} table {table}: {error}")]
    Refused {
        destination: String,
        table: u32,
        error: std::io::Error,
    },
    #[error("netlink reply does not parse: {0}")]
    Decode(String),
}

/// Requests in flight before their acks are read.
pub const WINDOW: usize = 64;

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
    /// names to indexes. Requests go out in windows of [`WINDOW`], each window's acks are
    /// checked before the next (so the acks never overflow the socket buffer).
    pub fn replace_routes(
        &mut self,
        routes: &[(&RouteKey, &RouteTarget)],
        interfaces: &BTreeMap<String, u32>,
    ) -> Result<(), NetlinkError> {
        let mut first_error = None;
        for window in routes.chunks(WINDOW) {
            if let Err(error) = self.replace_window(window, interfaces)
                && first_error.is_none()
            {
                first_error = Some(error);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    fn replace_window(
        &mut self,
        routes: &[(&RouteKey, &RouteTarget)],
        interfaces: &BTreeMap<String, u32>,
    ) -> Result<(), NetlinkError> {
        let mut pending = BTreeMap::new();
        let mut buffer = vec![0u8; 512];
        for (key, target) in routes {
            let index = *interfaces
                .get(&target.device)
                .ok_or_else(|| NetlinkError::UnknownInterface(target.device.clone()))?;
            let mut message = NetlinkMessage::new(
                header(NLM_F_REQUEST | NLM_F_CREATE | NLM_F_REPLACE | NLM_F_ACK),
                NetlinkPayload::from(RouteNetlinkMessage::NewRoute(route_message(
                    key, target, index,
                ))),
            );
            self.sequence = self.sequence.wrapping_add(1);
            message.header.sequence_number = self.sequence;
            message.finalize();
            let length = message.buffer_len();
            if buffer.len() < length {
                buffer.resize(length, 0);
            }
            message.serialize(&mut buffer[..length]);
            self.socket.send(&buffer[..length], 0)?;
            pending.insert(self.sequence, *key);
        }
        let mut receive = vec![0u8; 16384];
        let mut first_error = None;
        while !pending.is_empty() {
            let size = self.socket.recv(&mut &mut receive[..], 0)?;
            let mut offset = 0;
            while offset < size {
                let reply =
                    NetlinkMessage::<RouteNetlinkMessage>::deserialize(&receive[offset..size])
                        .map_err(|e| NetlinkError::Decode(e.to_string()))?;
                let length = reply.header.length as usize;
                if let NetlinkPayload::Error(error) = &reply.payload
                    && let Some(key) = pending.remove(&reply.header.sequence_number)
                    && let Some(code) = error.code
                    && first_error.is_none()
                {
                    first_error = Some(NetlinkError::Refused {
                        destination: key.destination.to_string(),
                        table: key.table,
                        error: std::io::Error::from_raw_os_error(-code.get()),
                    });
                }
                if length == 0 {
                    break;
                }
                offset += length.next_multiple_of(4);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
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

fn header(flags: u16) -> NetlinkHeader {
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    header
}

fn route_message(key: &RouteKey, target: &RouteTarget, index: u32) -> RouteMessage {
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
    message.header.scope = if target.via.is_some() {
        RouteScope::Universe
    } else {
        RouteScope::Link
    };
    message.header.kind = RouteType::Unicast;
    message.attributes.push(RouteAttribute::Table(key.table));
    message
        .attributes
        .push(RouteAttribute::Destination(RouteAddress::from(
            destination.addr(),
        )));
    if let Some(via) = target.via {
        message
            .attributes
            .push(RouteAttribute::Gateway(RouteAddress::from(via)));
    }
    message.attributes.push(RouteAttribute::Oif(index));
    message
}
