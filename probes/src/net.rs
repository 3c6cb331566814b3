//! Probe sockets pinned to one WAN line: SO_BINDTODEVICE and/or SO_MARK, an optional
//! DSCP so probes ride a class's queue, and TTL 255 as RFC 8762 asks of senders.

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

/// How a probe socket is pinned to its line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SocketOptions {
    /// Local address to bind (default: any, ephemeral port).
    pub bind: Option<SocketAddr>,
    /// SO_BINDTODEVICE: leave by this interface (needs an `ip rule oif DEV` to route).
    pub device: Option<String>,
    /// SO_MARK: fwmark for policy routing (needs CAP_NET_ADMIN).
    pub mark: Option<u32>,
    /// DSCP (0–63) written into the TOS / traffic class byte.
    pub dscp: Option<u8>,
}

/// A non-blocking UDP socket bound to `bind` with `options` applied.
pub fn udp_socket(bind: SocketAddr, options: &SocketOptions) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(bind), Type::DGRAM, Some(Protocol::UDP))?;
    if let Some(device) = &options.device {
        socket.bind_device(Some(device.as_bytes())).map_err(|e| {
            io::Error::new(e.kind(), format!("cannot bind to device {device}: {e}"))
        })?;
    }
    if let Some(mark) = options.mark {
        socket
            .set_mark(mark)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot set SO_MARK {mark}: {e}")))?;
    }
    if let Some(dscp) = options.dscp {
        if dscp > 63 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("DSCP {dscp} is out of range 0-63"),
            ));
        }
        let tos = u32::from(dscp) << 2;
        match bind {
            SocketAddr::V4(_) => socket.set_tos_v4(tos)?,
            SocketAddr::V6(_) => socket.set_tclass_v6(tos)?,
        }
    }
    match bind {
        SocketAddr::V4(_) => socket.set_ttl_v4(255)?,
        SocketAddr::V6(_) => socket.set_unicast_hops_v6(255)?,
    }
    socket.set_nonblocking(true)?;
    socket
        .bind(&bind.into())
        .map_err(|e| io::Error::new(e.kind(), format!("cannot bind {bind}: {e}")))?;
    Ok(socket)
}
