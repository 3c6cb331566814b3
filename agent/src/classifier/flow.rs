//! The bidirectional flow table: 5-tuple (+ VLAN) → per-flow state and counters.
//!
//! Both directions of a conversation land on one entry; the side that sent the first
//! packet is the initiator. Idle flows expire per protocol (TCP after a FIN/RST sooner), and
//! the table is bounded: when it is full the oldest-idle eighth is evicted at once, so the
//! cost of eviction stays constant per insert. Expired and evicted flows are handed back so
//! their counters still reach the statistics.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;
use std::time::Duration;

use super::packet::{PacketView, ip_proto};

/// One end of a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    pub addr: IpAddr,
    pub port: u16,
}

/// A direction-free flow identity: the two endpoints in canonical (sorted) order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub proto: u8,
    /// 0 when untagged.
    pub vlan: u16,
    pub low: Endpoint,
    pub high: Endpoint,
}

impl FlowKey {
    /// The key of a packet, and whether the packet travels low → high.
    pub fn of(packet: &PacketView<'_>) -> (FlowKey, bool) {
        let a = Endpoint {
            addr: packet.src,
            port: packet.sport,
        };
        let b = Endpoint {
            addr: packet.dst,
            port: packet.dport,
        };
        let forward = a <= b;
        let (low, high) = if forward { (a, b) } else { (b, a) };
        (
            FlowKey {
                proto: packet.proto,
                vlan: packet.vlan.unwrap_or(0),
                low,
                high,
            },
            forward,
        )
    }
}

/// Which way a packet travels within its flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the side that sent the flow's first packet.
    Initiator,
    Responder,
}

/// Packet and byte counts of one direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counters {
    pub packets: u64,
    /// IP bytes (headers included).
    pub bytes: u64,
}

/// One flow and the classifier's state for it.
#[derive(Debug, Clone)]
pub struct Flow<S> {
    pub key: FlowKey,
    /// The endpoint that sent the first packet seen.
    pub initiator: Endpoint,
    pub responder: Endpoint,
    pub first_seen: Duration,
    pub last_seen: Duration,
    /// Counters from the initiator and from the responder.
    pub sent: [Counters; 2],
    /// DSCP of the first packet.
    pub dscp: u8,
    /// A TCP FIN or RST has been seen: the flow expires sooner.
    pub closing: bool,
    pub state: S,
}

impl<S> Flow<S> {
    pub fn total(&self) -> Counters {
        Counters {
            packets: self.sent[0].packets + self.sent[1].packets,
            bytes: self.sent[0].bytes + self.sent[1].bytes,
        }
    }
}

/// Idle timeouts per protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub tcp: Duration,
    /// TCP after a FIN or RST.
    pub tcp_closing: Duration,
    pub udp: Duration,
    pub other: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            tcp: Duration::from_secs(600),
            tcp_closing: Duration::from_secs(30),
            udp: Duration::from_secs(180),
            other: Duration::from_secs(60),
        }
    }
}

impl Timeouts {
    fn for_flow<S>(&self, flow: &Flow<S>) -> Duration {
        match flow.key.proto {
            ip_proto::TCP if flow.closing => self.tcp_closing,
            ip_proto::TCP => self.tcp,
            ip_proto::UDP => self.udp,
            _ => self.other,
        }
    }
}

/// What the table has done, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TableCounters {
    pub created: u64,
    pub expired: u64,
    /// Flows pushed out by the size bound before they went idle.
    pub evicted: u64,
}

/// A fixed, fast hasher seed: flow keys come off the wire, but the table is bounded, so
/// hash flooding costs at most a slower table, never memory.
#[derive(Debug, Clone, Copy, Default)]
pub struct FlowHasher;

impl BuildHasher for FlowHasher {
    type Hasher = FxHasher;
    fn build_hasher(&self) -> FxHasher {
        FxHasher(0)
    }
}

/// The rustc "Fx" multiply-rotate hash: much faster than SipHash for small keys.
#[derive(Debug, Clone, Copy)]
pub struct FxHasher(u64);

impl Hasher for FxHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
    }
    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }
    fn write_u16(&mut self, n: u16) {
        self.add(u64::from(n));
    }
    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }
    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }
    fn write_u128(&mut self, n: u128) {
        self.add(n as u64);
        self.add((n >> 64) as u64);
    }
    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }
}

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

/// Hands the old table's pages back to the kernel. glibc keeps a freed block of this size
/// (its mmap threshold rises after the first one) and the process would hold two tables.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap pages to the kernel; no pointer is
    // passed and no live allocation is touched.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The bounded flow table.
#[derive(Debug)]
pub struct FlowTable<S> {
    flows: HashMap<FlowKey, Flow<S>, FlowHasher>,
    capacity: usize,
    timeouts: Timeouts,
    /// Flows that ended (expired or evicted) and have not been taken yet.
    finished: Vec<Flow<S>>,
    next_sweep: Duration,
    pub counters: TableCounters,
}

/// How often (in capture time) idle flows are swept out.
const SWEEP_EVERY: Duration = Duration::from_secs(5);

impl<S: Default> FlowTable<S> {
    pub fn new(capacity: usize, timeouts: Timeouts) -> FlowTable<S> {
        let capacity = capacity.max(8);
        FlowTable {
            // Grown on demand, not reserved for `capacity`: a reserved table is touched
            // page by page as flows land in random buckets, so a branch's few thousand
            // flows kept most of a 15 MB table resident (see docs/benchmarks/agent.md).
            flows: HashMap::with_hasher(FlowHasher),
            capacity,
            timeouts,
            finished: Vec::new(),
            next_sweep: Duration::ZERO,
            counters: TableCounters::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.flows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Accounts one packet at time `now` and returns its flow (new or existing), the
    /// packet's direction, and whether the flow was created by this packet.
    pub fn track(
        &mut self,
        now: Duration,
        packet: &PacketView<'_>,
    ) -> (&mut Flow<S>, Direction, bool) {
        if now >= self.next_sweep {
            self.expire(now);
            self.next_sweep = now + SWEEP_EVERY;
        }
        let (key, forward) = FlowKey::of(packet);
        // One lookup for the common case (a live flow); the rest only for new flows.
        let state = match self.flows.get(&key) {
            Some(flow) if now.saturating_sub(flow.last_seen) <= self.timeouts.for_flow(flow) => {
                None
            }
            Some(_) => Some(true),
            None => Some(false),
        };
        let created = state.is_some();
        if let Some(stale) = state {
            if stale {
                // The same 5-tuple after the flow went idle is a new flow.
                if let Some(old) = self.flows.remove(&key) {
                    self.counters.expired += 1;
                    self.finished.push(old);
                }
            } else if self.flows.len() >= self.capacity {
                self.evict_oldest();
            }
            self.counters.created += 1;
        }
        let flow = self.flows.entry(key).or_insert_with(|| {
            let src = Endpoint {
                addr: packet.src,
                port: packet.sport,
            };
            let dst = Endpoint {
                addr: packet.dst,
                port: packet.dport,
            };
            Flow {
                key,
                initiator: src,
                responder: dst,
                first_seen: now,
                last_seen: now,
                sent: [Counters::default(); 2],
                dscp: packet.dscp,
                closing: false,
                state: S::default(),
            }
        });
        let from_initiator = if forward {
            flow.initiator == key.low
        } else {
            flow.initiator == key.high
        };
        // A flow between identical endpoints (both directions look the same) counts as initiator.
        let direction = if from_initiator || key.low == key.high {
            Direction::Initiator
        } else {
            Direction::Responder
        };
        let counters = &mut flow.sent[direction as usize];
        counters.packets += 1;
        counters.bytes += u64::from(packet.ip_len);
        flow.last_seen = flow.last_seen.max(now);
        if let Some(tcp) = packet.tcp
            && (tcp.fin || tcp.rst)
        {
            flow.closing = true;
        }
        (flow, direction, created)
    }

    /// Moves every idle flow to the finished list.
    pub fn expire(&mut self, now: Duration) {
        let timeouts = self.timeouts;
        let idle = |_: &FlowKey, flow: &mut Flow<S>| {
            now.saturating_sub(flow.last_seen) > timeouts.for_flow(flow)
        };
        let before = self.finished.len();
        self.finished
            .extend(self.flows.extract_if(idle).map(|(_, flow)| flow));
        let expired = (self.finished.len() - before) as u64;
        self.counters.expired += expired;
        // Give back a table a burst grew once it is mostly empty again (hashbrown never
        // shrinks on its own); halving with room to spare keeps this from flapping.
        if self.flows.capacity() > 1024 && self.flows.len() < self.flows.capacity() / 4 {
            self.flows.shrink_to(self.flows.len() * 2);
        }
    }

    /// Evicts the least recently seen eighth of the table.
    fn evict_oldest(&mut self) {
        let mut ages: Vec<Duration> = self.flows.values().map(|f| f.last_seen).collect();
        let cut = (ages.len() / 8).max(1);
        let (_, cutoff, _) = ages.select_nth_unstable(cut - 1);
        let cutoff = *cutoff;
        let mut budget = cut;
        let mut victims = Vec::with_capacity(cut);
        for (key, flow) in &self.flows {
            if budget > 0 && flow.last_seen <= cutoff {
                victims.push(*key);
                budget -= 1;
            }
        }
        for key in victims {
            if let Some(flow) = self.flows.remove(&key) {
                self.counters.evicted += 1;
                self.finished.push(flow);
            }
        }
        // Removed entries leave tombstones that still count against the table's room;
        // with churn at the limit the next inserts would double the table (to 32,768
        // slots, 15.5 MB) although it holds no more flows. Rebuilt at its size instead.
        if self.flows.capacity() < self.capacity {
            let old = std::mem::take(&mut self.flows);
            self.flows = HashMap::with_capacity_and_hasher(self.capacity, FlowHasher);
            self.flows.extend(old);
            release_freed_memory();
        }
    }

    /// Takes the flows that ended since the last call.
    pub fn take_finished(&mut self) -> Vec<Flow<S>> {
        std::mem::take(&mut self.finished)
    }

    /// Ends every flow (end of a capture) and returns all finished flows.
    pub fn drain(&mut self) -> Vec<Flow<S>> {
        let mut out = std::mem::take(&mut self.finished);
        out.extend(self.flows.drain().map(|(_, flow)| flow));
        out
    }

    pub fn get(&self, key: &FlowKey) -> Option<&Flow<S>> {
        self.flows.get(key)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Flow<S>> {
        self.flows.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classifier::packet::TcpInfo;
    use proptest::prelude::*;

    fn packet(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> PacketView<'static> {
        PacketView {
            vlan: None,
            src: IpAddr::from(src),
            dst: IpAddr::from(dst),
            proto: ip_proto::UDP,
            sport,
            dport,
            dscp: 0,
            ip_len: 100,
            payload: &[],
            tcp: None,
        }
    }

    #[test]
    fn both_directions_share_one_flow_with_counts_per_direction() {
        let mut table: FlowTable<()> = FlowTable::new(16, Timeouts::default());
        let t = Duration::from_secs(1);
        let (_, dir, created) = table.track(t, &packet([10, 0, 0, 2], 5000, [10, 0, 0, 1], 53));
        assert_eq!((dir, created), (Direction::Initiator, true));
        let (flow, dir, created) = table.track(t, &packet([10, 0, 0, 1], 53, [10, 0, 0, 2], 5000));
        assert_eq!((dir, created), (Direction::Responder, false));
        assert_eq!(flow.initiator.port, 5000);
        assert_eq!(flow.sent[0].packets, 1);
        assert_eq!(flow.sent[1].bytes, 100);
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn the_same_tuple_on_another_vlan_is_another_flow() {
        let mut table: FlowTable<()> = FlowTable::new(16, Timeouts::default());
        let mut a = packet([10, 0, 0, 2], 5000, [10, 0, 0, 1], 514);
        table.track(Duration::ZERO, &a);
        a.vlan = Some(1906);
        table.track(Duration::ZERO, &a);
        assert_eq!(table.len(), 2);
    }

    #[test]
    fn idle_flows_expire_and_closed_tcp_expires_sooner() {
        let timeouts = Timeouts::default();
        let mut table: FlowTable<()> = FlowTable::new(16, timeouts);
        let mut tcp = packet([10, 0, 0, 2], 40000, [10, 0, 0, 1], 443);
        tcp.proto = ip_proto::TCP;
        tcp.tcp = Some(TcpInfo {
            fin: true,
            ..TcpInfo::default()
        });
        table.track(Duration::ZERO, &tcp);
        table.track(
            Duration::ZERO,
            &packet([10, 0, 0, 2], 5000, [10, 0, 0, 1], 53),
        );
        table.expire(timeouts.tcp_closing + Duration::from_secs(1));
        assert_eq!(table.len(), 1);
        table.expire(timeouts.udp + Duration::from_secs(1));
        assert!(table.is_empty());
        assert_eq!(table.take_finished().len(), 2);
        assert_eq!(table.counters.expired, 2);
    }

    proptest! {
        /// Whatever arrives, the table never holds more than its capacity, and every packet
        /// is counted exactly once in some flow, live or finished.
        #[test]
        fn bounded_and_conserving(
            packets in prop::collection::vec((0u8..4, 0u16..64, 0u8..4, 0u16..4, 0u64..2000), 1..400),
            capacity in 8usize..40,
        ) {
            let mut table: FlowTable<()> = FlowTable::new(capacity, Timeouts::default());
            let mut now = Duration::ZERO;
            for (a, sport, b, dport, gap) in &packets {
                now += Duration::from_millis(*gap * 100);
                let p = packet([10, 0, 0, *a], *sport, [10, 0, 1, *b], *dport);
                table.track(now, &p);
                prop_assert!(table.len() <= capacity);
            }
            let total: u64 = table.drain().iter().map(|f| f.total().packets).sum();
            prop_assert_eq!(total, packets.len() as u64);
        }
    }
}
