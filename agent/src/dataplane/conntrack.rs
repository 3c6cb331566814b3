//! Moved flows over ctnetlink (`NETLINK_NETFILTER`): the conntrack entries of a class
//! towards the destinations that moved are deleted by their original tuple, many requests
//! in flight before the acks are read. No `conntrack` process is started.
//!
//! Finding the entries is the expensive part: the kernel has no index by mark, so a dump
//! (even one it filters by mark) walks the whole conntrack hash — 262,144 buckets here,
//! shared by every namespace, about 10 ms. [`FlowIndex`] avoids the walk on the move
//! path: a thread follows conntrack events (new, update, destroy) in the namespace and
//! keeps the tuples of every entry that carries a class; a move then deletes straight by
//! tuple. If the event socket ever overflows, the index is rebuilt from one dump.
//!
//! The messages are small and fixed, so they are built and parsed by hand; the parsers
//! take any bytes without panicking (a proptest feeds them garbage).

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use ipnet::IpNet;
use rtnetlink::sys::{Socket, protocols::NETLINK_NETFILTER};

use super::netlink::{NetlinkError, open_socket, read_in_netns};

const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const IPCTNL_MSG_CT_GET: u16 = 1;
const IPCTNL_MSG_CT_DELETE: u16 = 2;
const CTA_TUPLE_ORIG: u16 = 1;
const CTA_MARK: u16 = 8;
const CTA_ZONE: u16 = 18;
const CTA_MARK_MASK: u16 = 21;
const CTA_TUPLE_IP: u16 = 1;
const CTA_IP_V4_DST: u16 = 2;
const CTA_IP_V6_DST: u16 = 4;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLM_F_DUMP: u16 = 0x300;
const NLA_TYPE_MASK: u16 = 0x3fff;
const HEADER_LEN: usize = 16;
/// Delete requests in flight before their acks are read.
const WINDOW: usize = 64;

/// One conntrack entry as the dump lists it: its original destination, and the raw
/// attributes that identify it for a delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub destination: IpAddr,
    /// The conntrack mark (0 when the kernel sent none).
    pub mark: u32,
    /// The `CTA_TUPLE_ORIG` attribute as the kernel sent it (header included).
    tuple: Vec<u8>,
    /// `CTA_ZONE`, when the entry is not in the default zone.
    zone: Option<Vec<u8>>,
}

/// A ctnetlink socket bound to one network namespace.
#[derive(Debug)]
pub struct ConntrackSocket {
    socket: Socket,
    sequence: u32,
}

impl ConntrackSocket {
    /// Opens the socket in this process's namespace, or in the named one.
    pub fn open(netns: Option<&str>) -> Result<Self, NetlinkError> {
        Ok(ConntrackSocket {
            socket: open_socket(netns, NETLINK_NETFILTER)?,
            sequence: 1,
        })
    }

    fn next_sequence(&mut self) -> u32 {
        self.sequence = self.sequence.wrapping_add(1);
        self.sequence
    }

    /// Deletes the entries of family `v6` whose mark has `mark` in the bits of `mask`;
    /// with `destinations`, only those whose original destination lies in one of them.
    /// Returns how many went (entries that vanished meanwhile are not counted).
    pub fn delete_flows(
        &mut self,
        v6: bool,
        mark: u32,
        mask: u32,
        destinations: Option<&[IpNet]>,
    ) -> Result<u64, NetlinkError> {
        let entries: Vec<Entry> = self
            .dump_by_mark(v6, mark, mask)?
            .into_iter()
            .filter(|entry| {
                destinations.is_none_or(|nets| nets.iter().any(|n| n.contains(&entry.destination)))
            })
            .collect();
        self.delete(&entries)
    }

    /// Deletes these entries by tuple; returns how many went.
    pub fn delete(&mut self, entries: &[Entry]) -> Result<u64, NetlinkError> {
        let mut deleted = 0;
        for v6 in [false, true] {
            let family: Vec<Entry> = entries
                .iter()
                .filter(|entry| entry.destination.is_ipv6() == v6)
                .cloned()
                .collect();
            for window in family.chunks(WINDOW) {
                deleted += self.delete_window(v6, window)?;
            }
        }
        Ok(deleted)
    }

    /// Lists the entries whose mark has `mark` in the bits of `mask` (filtered in the
    /// kernel).
    pub fn dump_by_mark(
        &mut self,
        v6: bool,
        mark: u32,
        mask: u32,
    ) -> Result<Vec<Entry>, NetlinkError> {
        self.dump(Some(v6), mark, mask)
    }

    /// `family`: `None` for both.
    fn dump(
        &mut self,
        family: Option<bool>,
        mark: u32,
        mask: u32,
    ) -> Result<Vec<Entry>, NetlinkError> {
        let sequence = self.next_sequence();
        let mut attributes = Vec::new();
        push_attribute(&mut attributes, CTA_MARK, &mark.to_be_bytes());
        push_attribute(&mut attributes, CTA_MARK_MASK, &mask.to_be_bytes());
        let mut request = message(
            IPCTNL_MSG_CT_GET,
            NLM_F_REQUEST | NLM_F_DUMP,
            sequence,
            family.unwrap_or(false),
            &attributes,
        );
        if family.is_none() {
            request[HEADER_LEN] = libc::AF_UNSPEC as u8;
        }
        self.socket.send(&request, 0)?;
        let mut entries = Vec::new();
        let mut receive = vec![0u8; 65536];
        loop {
            let size = self.socket.recv(&mut &mut receive[..], 0)?;
            for (kind, seq, payload) in messages(&receive[..size]) {
                if seq != sequence {
                    continue;
                }
                match kind {
                    NLMSG_DONE => return Ok(entries),
                    NLMSG_ERROR => match error_code(payload) {
                        Some(0) | None => return Ok(entries),
                        Some(code) => return Err(std::io::Error::from_raw_os_error(-code).into()),
                    },
                    _ => entries.extend(parse_entry(payload)),
                }
            }
        }
    }

    fn delete_window(&mut self, v6: bool, entries: &[Entry]) -> Result<u64, NetlinkError> {
        let mut pending = std::collections::BTreeSet::new();
        let mut batch = Vec::new();
        for entry in entries {
            let sequence = self.next_sequence();
            let mut attributes = entry.tuple.clone();
            if let Some(zone) = &entry.zone {
                attributes.extend_from_slice(zone);
            }
            batch.extend(message(
                IPCTNL_MSG_CT_DELETE,
                NLM_F_REQUEST | NLM_F_ACK,
                sequence,
                v6,
                &attributes,
            ));
            pending.insert(sequence);
        }
        self.socket.send(&batch, 0)?;
        let mut deleted = 0;
        let mut first_error = None;
        let mut receive = vec![0u8; 16384];
        while !pending.is_empty() {
            let size = self.socket.recv(&mut &mut receive[..], 0)?;
            for (kind, seq, payload) in messages(&receive[..size]) {
                if kind != NLMSG_ERROR || !pending.remove(&seq) {
                    continue;
                }
                match error_code(payload) {
                    Some(0) => deleted += 1,
                    Some(code) if -code == libc::ENOENT => {}
                    Some(code) => {
                        first_error.get_or_insert(std::io::Error::from_raw_os_error(-code));
                    }
                    None => {}
                }
            }
        }
        match first_error {
            Some(error) => Err(error.into()),
            None => Ok(deleted),
        }
    }
}

const NFNLGRP_CONNTRACK_NEW: u32 = 1;
const NFNLGRP_CONNTRACK_UPDATE: u32 = 2;
const NFNLGRP_CONNTRACK_DESTROY: u32 = 3;

/// An indexed entry, found by its original tuple (kept once: as a map key beside the
/// entry it was a second copy of every tuple, ≈ 100 bytes per classed flow).
#[derive(Debug)]
struct Indexed(Entry);

impl PartialEq for Indexed {
    fn eq(&self, other: &Self) -> bool {
        self.0.tuple == other.0.tuple
    }
}

impl Eq for Indexed {}

impl std::hash::Hash for Indexed {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.tuple.as_slice().hash(state)
    }
}

impl std::borrow::Borrow<[u8]> for Indexed {
    fn borrow(&self) -> &[u8] {
        &self.0.tuple
    }
}

#[derive(Debug, Default)]
struct IndexState {
    /// Entries that carry a class, by their original tuple.
    entries: HashSet<Indexed>,
    /// False after events were lost: rebuild before use.
    complete: bool,
}

/// The conntrack entries that carry a class in one namespace, kept current from
/// conntrack events by a thread (see the module comment).
#[derive(Debug)]
pub struct FlowIndex {
    /// The event socket; the thread reads it, and so does [`FlowIndex::take`] (under
    /// the lock) so that no event already queued is missed.
    socket: Arc<Socket>,
    state: Arc<Mutex<IndexState>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    class_mask: u32,
}

impl FlowIndex {
    /// Subscribes to conntrack events in the namespace; the thread fills the index with
    /// one dump, then keeps it from the events.
    pub fn start(netns: Option<&str>, class_mask: u32) -> Result<Self, NetlinkError> {
        // With events switched off the index would silently miss flows.
        let events = read_in_netns(netns, "/proc/sys/net/netfilter/nf_conntrack_events")?;
        if events.trim() == "0" {
            return Err(NetlinkError::Io(std::io::Error::other(
                "net.netfilter.nf_conntrack_events is 0",
            )));
        }
        let socket = open_socket(netns, NETLINK_NETFILTER)?;
        for group in [
            NFNLGRP_CONNTRACK_NEW,
            NFNLGRP_CONNTRACK_UPDATE,
            NFNLGRP_CONNTRACK_DESTROY,
        ] {
            socket.add_membership(group)?;
        }
        let buffer: libc::c_int = 4 << 20;
        // SAFETY: setsockopt on a socket this function owns, with a value of the size the
        // option expects. A larger buffer makes overflow (and a rebuild) rarer.
        unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                (&raw const buffer).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        let socket = Arc::new(socket);
        let state = Arc::new(Mutex::new(IndexState::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let mut dump_socket = ConntrackSocket::open(netns)?;
        let thread = {
            let (socket, state, stop) = (socket.clone(), state.clone(), stop.clone());
            std::thread::Builder::new()
                .name("wansteer-ct-events".into())
                .spawn(move || {
                    if let Err(error) = fill(&socket, &state, &mut dump_socket, class_mask) {
                        tracing::warn!("conntrack index: first fill failed: {error}");
                    }
                    follow_events(&socket, &state, &stop, class_mask)
                })?
        };
        Ok(FlowIndex {
            socket,
            state,
            stop,
            thread: Some(thread),
            class_mask,
        })
    }

    /// The indexed entries of class `mark` whose original destination lies in
    /// `destinations` (all of the class's when `None`); rebuilds the index from one dump
    /// over `socket` first when events were lost or it was never filled.
    pub fn take(
        &self,
        socket: &mut ConntrackSocket,
        mark: u32,
        v6: bool,
        destinations: Option<&[IpNet]>,
    ) -> Result<Vec<Entry>, NetlinkError> {
        self.fill(socket)?;
        let mut state = self.state.lock().expect("index lock");
        drain(&self.socket, &mut state, self.class_mask);
        Ok(state
            .entries
            .iter()
            .map(|indexed| &indexed.0)
            .filter(|entry| {
                entry.mark & self.class_mask == mark
                    && entry.destination.is_ipv6() == v6
                    && destinations
                        .is_none_or(|nets| nets.iter().any(|net| net.contains(&entry.destination)))
            })
            .cloned()
            .collect())
    }

    /// Fills the index from one dump when it was never filled or lost events.
    pub fn fill(&self, socket: &mut ConntrackSocket) -> Result<(), NetlinkError> {
        fill(&self.socket, &self.state, socket, self.class_mask)
    }

    /// How many entries the index holds; `None` while it is being filled (or must be
    /// rebuilt), when a move would wait for it.
    pub fn ready_len(&self) -> Option<usize> {
        let state = self.state.try_lock().ok()?;
        state.complete.then_some(state.entries.len())
    }
}

impl Drop for FlowIndex {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn fill(
    events: &Socket,
    state: &Mutex<IndexState>,
    socket: &mut ConntrackSocket,
    class_mask: u32,
) -> Result<(), NetlinkError> {
    let mut state = state.lock().expect("index lock");
    drain(events, &mut state, class_mask);
    if state.complete {
        return Ok(());
    }
    // Complete from here: events queued during the dump are applied after it (the lock
    // is held), so an entry destroyed meanwhile goes again.
    state.complete = true;
    state.entries.clear();
    for entry in socket.dump(None, 0, 0)? {
        if entry.mark & class_mask != 0 {
            state.entries.replace(Indexed(entry));
        }
    }
    drain(events, &mut state, class_mask);
    Ok(())
}

fn follow_events(socket: &Socket, state: &Mutex<IndexState>, stop: &AtomicBool, class_mask: u32) {
    while !stop.load(Ordering::Relaxed) {
        let mut ready = libc::pollfd {
            fd: socket.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll on one valid pollfd; the timeout lets the thread see `stop`.
        unsafe { libc::poll(&raw mut ready, 1, 100) };
        drain(socket, &mut state.lock().expect("index lock"), class_mask);
    }
}

/// Applies every event already queued on the socket (without waiting).
fn drain(socket: &Socket, state: &mut IndexState, class_mask: u32) {
    let mut receive = [0u8; 16384];
    loop {
        let size = match socket.recv(&mut &mut receive[..], libc::MSG_DONTWAIT) {
            Ok(size) => size,
            Err(error) if error.raw_os_error() == Some(libc::ENOBUFS) => {
                state.entries.clear();
                state.complete = false;
                continue;
            }
            Err(_) => return,
        };
        for (kind, _, payload) in messages(&receive[..size]) {
            if kind >> 8 != NFNL_SUBSYS_CTNETLINK {
                continue;
            }
            let Some(entry) = parse_entry(payload) else {
                continue;
            };
            if kind & 0xff == IPCTNL_MSG_CT_DELETE || entry.mark & class_mask == 0 {
                state.entries.remove(entry.tuple.as_slice());
            } else if state.complete {
                state.entries.replace(Indexed(entry));
            }
        }
    }
}

/// A ctnetlink request: netlink header, `nfgenmsg`, attributes.
fn message(kind: u16, flags: u16, sequence: u32, v6: bool, attributes: &[u8]) -> Vec<u8> {
    let length = HEADER_LEN + 4 + attributes.len();
    let mut out = Vec::with_capacity(length);
    out.extend_from_slice(&(length as u32).to_ne_bytes());
    out.extend_from_slice(&((NFNL_SUBSYS_CTNETLINK << 8) | kind).to_ne_bytes());
    out.extend_from_slice(&flags.to_ne_bytes());
    out.extend_from_slice(&sequence.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes());
    let family = if v6 { libc::AF_INET6 } else { libc::AF_INET } as u8;
    out.extend_from_slice(&[family, 0, 0, 0]);
    out.extend_from_slice(attributes);
    out
}

fn push_attribute(out: &mut Vec<u8>, kind: u16, value: &[u8]) {
    let length = 4 + value.len();
    out.extend_from_slice(&(length as u16).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(value);
    out.resize(out.len().next_multiple_of(4), 0);
}

/// The netlink messages in one datagram: (type, sequence, payload after the header).
/// Stops at the first malformed header.
pub fn messages(mut bytes: &[u8]) -> Vec<(u16, u32, &[u8])> {
    let mut out = Vec::new();
    while bytes.len() >= HEADER_LEN {
        let length = u32::from_ne_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
        if length < HEADER_LEN || length > bytes.len() {
            break;
        }
        let kind = u16::from_ne_bytes([bytes[4], bytes[5]]);
        let sequence = u32::from_ne_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
        out.push((kind, sequence, &bytes[HEADER_LEN..length]));
        bytes = &bytes[length.next_multiple_of(4).min(bytes.len())..];
    }
    out
}

/// The errno of an `NLMSG_ERROR` payload (0 is an ack).
fn error_code(payload: &[u8]) -> Option<i32> {
    Some(i32::from_ne_bytes(payload.get(..4)?.try_into().ok()?))
}

/// Attributes in a buffer: (type without flags, value, whole attribute with header).
pub fn attributes(mut bytes: &[u8]) -> Vec<(u16, &[u8], &[u8])> {
    let mut out = Vec::new();
    while bytes.len() >= 4 {
        let length = u16::from_ne_bytes([bytes[0], bytes[1]]) as usize;
        if length < 4 || length > bytes.len() {
            break;
        }
        let kind = u16::from_ne_bytes([bytes[2], bytes[3]]) & NLA_TYPE_MASK;
        out.push((kind, &bytes[4..length], &bytes[..length]));
        bytes = &bytes[length.next_multiple_of(4).min(bytes.len())..];
    }
    out
}

/// One entry from a dump message's payload (after the netlink header).
pub fn parse_entry(payload: &[u8]) -> Option<Entry> {
    let attrs = attributes(payload.get(4..)?);
    let (_, tuple_value, tuple) = attrs.iter().find(|(kind, ..)| *kind == CTA_TUPLE_ORIG)?;
    let (_, ip, _) = attributes(tuple_value)
        .into_iter()
        .find(|(kind, ..)| *kind == CTA_TUPLE_IP)?;
    let destination = attributes(ip)
        .into_iter()
        .find_map(|(kind, value, _)| match kind {
            CTA_IP_V4_DST => <[u8; 4]>::try_from(value)
                .ok()
                .map(|b| IpAddr::V4(Ipv4Addr::from(b))),
            CTA_IP_V6_DST => <[u8; 16]>::try_from(value)
                .ok()
                .map(|b| IpAddr::V6(Ipv6Addr::from(b))),
            _ => None,
        })?;
    let zone = attrs
        .iter()
        .find(|(kind, ..)| *kind == CTA_ZONE)
        .map(|(_, _, whole)| pad(whole));
    let mark = attrs
        .iter()
        .find(|(kind, ..)| *kind == CTA_MARK)
        .and_then(|(_, value, _)| <[u8; 4]>::try_from(*value).ok())
        .map_or(0, u32::from_be_bytes);
    Some(Entry {
        destination,
        mark,
        tuple: pad(tuple),
        zone,
    })
}

fn pad(attribute: &[u8]) -> Vec<u8> {
    let mut out = attribute.to_vec();
    out.resize(out.len().next_multiple_of(4), 0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn nested(kind: u16, inner: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        push_attribute(&mut out, kind | 0x8000, inner);
        out
    }

    #[test]
    fn reads_the_original_destination_and_keeps_the_tuple_for_the_delete() {
        let mut ip = Vec::new();
        push_attribute(&mut ip, 1, &[10, 0, 0, 1]);
        push_attribute(&mut ip, CTA_IP_V4_DST, &[10, 200, 0, 7]);
        let tuple = nested(CTA_TUPLE_ORIG, &nested(CTA_TUPLE_IP, &ip));
        let mut payload = vec![2, 0, 0, 0];
        payload.extend_from_slice(&tuple);
        push_attribute(&mut payload, CTA_MARK, &3u32.to_be_bytes());
        let entry = parse_entry(&payload).expect("parses");
        assert_eq!(entry.destination, IpAddr::from([10, 200, 0, 7]));
        assert_eq!(entry.tuple, tuple);
        assert_eq!(entry.zone, None);
    }

    #[test]
    fn a_request_carries_its_length_and_subsystem() {
        let request = message(IPCTNL_MSG_CT_DELETE, NLM_F_REQUEST, 9, true, &[1, 2, 3, 4]);
        let parsed = messages(&request);
        assert_eq!(parsed.len(), 1);
        assert_eq!(parsed[0].0, (1 << 8) | 2);
        assert_eq!(parsed[0].1, 9);
        assert_eq!(
            parsed[0].2,
            &[libc::AF_INET6 as u8, 0, 0, 0, 1, 2, 3, 4][..]
        );
    }

    proptest! {
        #[test]
        fn parsers_take_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            for (_, _, payload) in messages(&bytes) {
                let _ = parse_entry(payload);
                let _ = error_code(payload);
            }
            let _ = parse_entry(&bytes);
            let _ = attributes(&bytes);
        }
    }
}
