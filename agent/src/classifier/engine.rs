//! The classifier: packets in; per-flow verdicts, per-class statistics and flow records out.
//!
//! Each packet is decoded, counted in its bidirectional flow, and — while the flow is still
//! being inspected — shown to DPI. A flow gets a verdict on its first packet already (from
//! the DNS cache, the catalogue's address ranges or its port) and a new one whenever DPI
//! learns something that changes its application or class.

use std::net::IpAddr;
use std::time::Duration;

use super::catalogue::Catalogue;
use super::dpi::dns::DnsCache;
use super::dpi::protocol::Protocol;
use super::dpi::{Detection, Inspector, Seen, ports};
use super::flow::{Direction, Flow, FlowTable, TableCounters, Timeouts};
use super::packet::{self, LinkType, PacketView, ip_proto};
use super::policy::{FlowFacts, PolicyClasses};
use super::verdict::{ClassCounters, ClassStats, FlowTuple, Verdict};

/// Sizes and timeouts.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    pub max_flows: usize,
    pub dns_cache_entries: usize,
    pub timeouts: Timeouts,
}

impl Default for Config {
    /// Sized for a branch agent within its memory budget (docs/benchmarks/agent.md):
    /// 14,336 flows is what a flow table of 16,384 slots holds (7/8 of them) without
    /// doubling. At 16,384 flows it doubled to 32,768 slots of ≈ 470 bytes: 15.5 MB
    /// for the table alone, where 14,336 flows need 7.7 MB.
    fn default() -> Self {
        Config {
            max_flows: 14_336,
            dns_cache_entries: 16_384,
            timeouts: Timeouts::default(),
        }
    }
}

/// Bytes one flow takes in the flow table itself (key and value, before any boxed DPI
/// state), for the memory example.
pub fn flow_entry_size() -> usize {
    std::mem::size_of::<(super::flow::FlowKey, Flow<FlowState>)>()
}

/// Announced data connections kept at most, and for how long.
const EXPECTED_CAP: usize = 4096;
const EXPECTED_FOR: Duration = Duration::from_secs(60);

/// The classifier's current answer for a flow.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Outcome {
    app: String,
    class: u16,
    reason: String,
}

/// Per-flow state kept in the flow table.
#[derive(Debug, Default)]
pub struct FlowState {
    inspector: Inspector,
    outcome: Option<Outcome>,
    /// Announced beforehand by another flow (an FTP data connection).
    expected: Option<Protocol>,
}

/// Counters of what the classifier has seen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClassifierCounters {
    pub packets: u64,
    /// Frames that were not IP or too damaged to name a flow.
    pub undecoded: u64,
    pub verdicts: u64,
}

/// One finished or live flow as reported by [`Classifier::flows`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowRecord {
    pub verdict: Verdict,
    /// Packets and IP bytes client → server and server → client.
    pub up: (u64, u64),
    pub down: (u64, u64),
    pub first_seen: Duration,
    pub last_seen: Duration,
}

/// The flow classifier.
#[derive(Debug)]
pub struct Classifier {
    table: FlowTable<FlowState>,
    dns: DnsCache,
    catalogue: Catalogue,
    policy: Option<PolicyClasses>,
    class_names: Vec<String>,
    default_class: u16,
    stats: Vec<ClassCounters>,
    pending: Vec<Verdict>,
    /// Data connections announced on FTP control flows: (server address, port) → until.
    expected: std::collections::HashMap<(IpAddr, u16), Duration>,
    records: Vec<FlowRecord>,
    keep_records: bool,
    pub counters: ClassifierCounters,
}

impl Classifier {
    /// A classifier reporting the catalogue's classes, or the policy's when one is given.
    pub fn new(catalogue: Catalogue, policy: Option<PolicyClasses>, config: Config) -> Classifier {
        let (class_names, default_class) = match &policy {
            Some(policy) => {
                let names = policy.names().to_vec();
                let default = policy.classify(&FlowFacts {
                    proto: 0,
                    client: IpAddr::from([0, 0, 0, 0]),
                    server: IpAddr::from([0, 0, 0, 0]),
                    server_port: 0,
                    dscp: 0,
                    app: "",
                    protocol: None,
                    host: None,
                });
                (names, default.0)
            }
            None => {
                let names = catalogue.classes().to_vec();
                let default = names
                    .iter()
                    .position(|c| c == catalogue.default_class())
                    .unwrap_or(0);
                (names, default)
            }
        };
        Classifier {
            table: FlowTable::new(config.max_flows, config.timeouts),
            dns: DnsCache::new(config.dns_cache_entries),
            stats: vec![ClassCounters::default(); class_names.len()],
            class_names,
            default_class: default_class as u16,
            catalogue,
            policy,
            pending: Vec::new(),
            expected: std::collections::HashMap::new(),
            records: Vec::new(),
            keep_records: false,
            counters: ClassifierCounters::default(),
        }
    }

    /// Keep a record of every flow that ends (for `classify --pcap`); off by default so a
    /// long-running agent does not accumulate them.
    pub fn keep_flow_records(&mut self, keep: bool) {
        self.keep_records = keep;
    }

    /// Decodes and classifies one frame captured at `now`.
    pub fn process_frame(&mut self, now: Duration, link: LinkType, frame: &[u8]) {
        self.counters.packets += 1;
        match packet::decode(link, frame) {
            Some(view) => self.process(now, &view),
            None => self.counters.undecoded += 1,
        }
    }

    /// Classifies one decoded packet.
    pub fn process(&mut self, now: Duration, packet: &PacketView<'_>) {
        let (flow, direction, created) = self.table.track(now, packet);
        let from_initiator = direction == Direction::Initiator;
        let mut changed = created;
        if created
            && !self.expected.is_empty()
            && packet.proto == ip_proto::TCP
            && let Some(until) = self
                .expected
                .remove(&(packet.dst, packet.dport))
                .or_else(|| self.expected.remove(&(packet.src, packet.sport)))
            && until >= now
        {
            flow.state.expected = Some(Protocol::FtpData);
        }
        if !flow.state.inspector.is_finished() || flow_carries_dns(flow) {
            let before = detection_fingerprint(flow.state.inspector.detection());
            let seen = Seen {
                proto: packet.proto,
                from_initiator,
                sport: packet.sport,
                dport: packet.dport,
                tcp_seq: packet.tcp.map(|t| t.seq),
                tcp_syn: packet.tcp.is_some_and(|t| t.syn),
                payload: packet.payload,
            };
            if let Some(message) = flow.state.inspector.inspect(&seen) {
                self.dns.learn(now, &message);
            }
            for (addr, port) in flow.state.inspector.take_announced() {
                // Without an address (EPSV), the data connection goes to the reply's sender.
                let addr = addr.unwrap_or(packet.src);
                if self.expected.len() >= EXPECTED_CAP {
                    self.expected.retain(|_, until| *until >= now);
                }
                if self.expected.len() < EXPECTED_CAP {
                    self.expected.insert((addr, port), now + EXPECTED_FOR);
                }
            }
            changed |= before != detection_fingerprint(flow.state.inspector.detection());
        }
        if changed {
            let outcome = resolve(
                &self.catalogue,
                self.policy.as_ref(),
                &self.dns,
                now,
                flow,
                self.default_class,
            );
            let previous = flow.state.outcome.replace(outcome.clone());
            if previous.as_ref() != Some(&outcome) {
                if let Some(previous) = &previous {
                    let counters = &mut self.stats[usize::from(previous.class)];
                    counters.flows = counters.flows.saturating_sub(1);
                }
                self.stats[usize::from(outcome.class)].flows += 1;
                self.counters.verdicts += 1;
                self.pending
                    .push(verdict_of(flow, &outcome, &self.class_names));
            }
        }
        let Some(outcome) = &flow.state.outcome else {
            self.retire_finished();
            return;
        };
        let counters = &mut self.stats[usize::from(outcome.class)];
        counters.packets += 1;
        let upstream = from_initiator == initiator_is_client(flow);
        if upstream {
            counters.bytes_up += u64::from(packet.ip_len);
        } else {
            counters.bytes_down += u64::from(packet.ip_len);
        }
        self.retire_finished();
    }

    /// Takes ended flows out of the table's hands: they leave the per-class live-flow counts
    /// and, for a capture replay, become flow records. Nothing piles up in a long-running agent.
    fn retire_finished(&mut self) {
        for flow in self.table.take_finished() {
            self.retire(flow);
        }
    }

    fn retire(&mut self, flow: Flow<FlowState>) {
        let Some(outcome) = &flow.state.outcome else {
            return;
        };
        let counters = &mut self.stats[usize::from(outcome.class)];
        counters.flows = counters.flows.saturating_sub(1);
        if self.keep_records {
            let record = record_of(&flow, outcome, &self.class_names);
            self.records.push(record);
        }
    }

    /// Verdicts issued since the last call, for the data plane to install.
    pub fn take_verdicts(&mut self) -> Vec<Verdict> {
        std::mem::take(&mut self.pending)
    }

    /// Flows and bytes per class so far.
    pub fn class_stats(&self) -> ClassStats {
        ClassStats {
            classes: self
                .class_names
                .iter()
                .cloned()
                .zip(self.stats.iter().copied())
                .collect(),
        }
    }

    pub fn table_counters(&self) -> TableCounters {
        self.table.counters
    }

    pub fn live_flows(&self) -> usize {
        self.table.len()
    }

    /// Ends every flow (the capture is over) and returns all flow records kept, in order of
    /// first packet.
    pub fn finish(&mut self) -> Vec<FlowRecord> {
        let flows = self.table.drain();
        for flow in flows {
            self.retire(flow);
        }
        let mut records = std::mem::take(&mut self.records);
        records.sort_by_key(|r| r.first_seen);
        records
    }
}

fn flow_carries_dns(flow: &Flow<FlowState>) -> bool {
    flow.state
        .inspector
        .detection()
        .is_some_and(|d| matches!(d.protocol, Protocol::Dns | Protocol::Mdns | Protocol::Llmnr))
}

/// A cheap summary of a detection, to notice when it changed.
fn detection_fingerprint(
    detection: Option<&Detection>,
) -> Option<(Protocol, bool, Option<&'static str>)> {
    detection.map(|d| (d.protocol, d.host.is_some(), d.app_hint))
}

/// Ports at or above this are treated as client (ephemeral) ports when orienting a flow.
fn looks_like_service_port(proto: u8, port: u16) -> bool {
    port < 1024 || ports::guess(proto, port).is_some()
}

/// True when the initiator is the client (the usual case); false when the capture started
/// with the server's side, e.g. a reply from port 443 to an ephemeral port.
fn initiator_is_client<S>(flow: &Flow<S>) -> bool {
    let proto = flow.key.proto;
    let init = flow.initiator.port;
    let resp = flow.responder.port;
    !looks_like_service_port(proto, init) || looks_like_service_port(proto, resp)
}

fn tuple_of<S>(flow: &Flow<S>) -> FlowTuple {
    let (client, server) = if initiator_is_client(flow) {
        (flow.initiator, flow.responder)
    } else {
        (flow.responder, flow.initiator)
    };
    FlowTuple {
        proto: flow.key.proto,
        vlan: (flow.key.vlan != 0).then_some(flow.key.vlan),
        src: client.addr,
        sport: client.port,
        dst: server.addr,
        dport: server.port,
    }
}

fn verdict_of<S>(flow: &Flow<S>, outcome: &Outcome, class_names: &[String]) -> Verdict {
    Verdict {
        tuple: tuple_of(flow),
        app: outcome.app.clone(),
        class: class_names[usize::from(outcome.class)].clone(),
        reason: outcome.reason.clone(),
    }
}

fn record_of<S>(flow: &Flow<S>, outcome: &Outcome, class_names: &[String]) -> FlowRecord {
    let client_first = initiator_is_client(flow);
    let (up, down) = if client_first {
        (flow.sent[0], flow.sent[1])
    } else {
        (flow.sent[1], flow.sent[0])
    };
    FlowRecord {
        verdict: verdict_of(flow, outcome, class_names),
        up: (up.packets, up.bytes),
        down: (down.packets, down.bytes),
        first_seen: flow.first_seen,
        last_seen: flow.last_seen,
    }
}

/// Protocols whose flows may belong to any application: for them the host, the DNS name or
/// the address decides. For the others (NTP, SSH, ICMP…) the protocol itself decides.
fn is_carrier(protocol: Option<Protocol>, catalogue: &Catalogue) -> bool {
    match protocol {
        None => true,
        Some(p) => {
            matches!(
                p,
                Protocol::Tls
                    | Protocol::Quic
                    | Protocol::Http
                    | Protocol::HttpProxy
                    | Protocol::Dtls
            ) || catalogue.is_media(p)
        }
    }
}

/// The application and catalogue class of a flow, with the reason.
fn identify(
    catalogue: &Catalogue,
    dns: &DnsCache,
    now: Duration,
    flow: &Flow<FlowState>,
) -> (String, String, String, Option<Protocol>, Option<String>) {
    let tuple = tuple_of(flow);
    let detection = flow.state.inspector.detection();
    let protocol = detection.map(|d| d.protocol).or(match flow.key.proto {
        ip_proto::ICMP => Some(Protocol::Icmp),
        ip_proto::ICMPV6 => Some(Protocol::Icmpv6),
        ip_proto::IGMP => Some(Protocol::Igmp),
        ip_proto::ESP | ip_proto::AH => Some(Protocol::Esp),
        ip_proto::GRE => Some(Protocol::Gre),
        89 => Some(Protocol::Ospf),
        103 => Some(Protocol::Pim),
        112 => Some(Protocol::Vrrp),
        _ => None,
    });
    let host = detection.and_then(|d| d.host.as_ref());
    let app_class = |app: &super::catalogue::App| -> String {
        match (protocol, &app.media_class) {
            (Some(p), Some(media)) if catalogue.is_media(p) => media.clone(),
            _ => app.class.clone(),
        }
    };
    if let Some(p) = protocol
        && matches!(p, Protocol::Dns | Protocol::Mdns | Protocol::Llmnr)
    {
        let reason = match host {
            Some((name, _)) => format!("{} query for {name}", p.name()),
            None => p.name().to_owned(),
        };
        let host = host.map(|(name, _)| name.clone());
        return (
            p.name().to_owned(),
            catalogue.protocol_class(p).to_owned(),
            reason,
            protocol,
            host,
        );
    }
    if let Some((name, source)) = host
        && let Some(app) = catalogue.app_for_domain(name)
    {
        let reason = format!("{} {name} → {}", source.label(), app.name);
        return (
            app.name.clone(),
            app_class(app),
            reason,
            protocol,
            Some(name.clone()),
        );
    }
    if let Some(hint) = detection.and_then(|d| d.app_hint)
        && let Some(app) = catalogue.app(hint)
    {
        let via = protocol.map_or("payload", Protocol::name);
        let host = host.map(|(name, _)| name.clone());
        return (
            app.name.clone(),
            app_class(app),
            format!("{via} payload → {}", app.name),
            protocol,
            host,
        );
    }
    if is_carrier(protocol, catalogue) {
        for addr in [tuple.dst, tuple.src] {
            if let Some(name) = dns.name_of(now, addr)
                && let Some(app) = catalogue.app_for_domain(name)
            {
                let reason = format!("dns answer {name} ({addr}) → {}", app.name);
                let name = name.to_owned();
                return (
                    app.name.clone(),
                    app_class(app),
                    reason,
                    protocol,
                    Some(host.map_or(name, |(h, _)| h.clone())),
                );
            }
        }
        for addr in [tuple.dst, tuple.src] {
            if let Some(app) = catalogue.app_for_address(addr) {
                let reason = format!("address {addr} in {} range", app.name);
                return (
                    app.name.clone(),
                    app_class(app),
                    reason,
                    protocol,
                    host.map(|(h, _)| h.clone()),
                );
            }
        }
    }
    let host_name = host.map(|(h, _)| h.clone());
    if let Some(p) = protocol {
        let reason = match host {
            Some((name, source)) => {
                format!("{} {name}, {} not in catalogue", source.label(), p.name())
            }
            None => format!("dpi {}", p.name()),
        };
        return (
            p.name().to_owned(),
            catalogue.protocol_class(p).to_owned(),
            reason,
            protocol,
            host_name,
        );
    }
    let known_by_dns = dns.name_of(now, tuple.dst).map(str::to_owned);
    if let Some(p) = flow.state.expected {
        let reason = format!("{} announced on a control connection", p.name());
        return (
            p.name().to_owned(),
            catalogue.protocol_class(p).to_owned(),
            reason,
            Some(p),
            known_by_dns,
        );
    }
    if let Some((p, port)) = ports::service_port(flow.key.proto, tuple.sport, tuple.dport) {
        return (
            p.name().to_owned(),
            catalogue.protocol_class(p).to_owned(),
            format!("port {port} guess ({})", p.name()),
            Some(p),
            known_by_dns,
        );
    }
    let why = if flow.state.inspector.is_finished() {
        "no signature matched"
    } else {
        "not recognised yet"
    };
    (
        "unknown".to_owned(),
        catalogue.default_class().to_owned(),
        why.to_owned(),
        None,
        known_by_dns,
    )
}

fn resolve(
    catalogue: &Catalogue,
    policy: Option<&PolicyClasses>,
    dns: &DnsCache,
    now: Duration,
    flow: &Flow<FlowState>,
    default_class: u16,
) -> Outcome {
    let (app, class, reason, protocol, host) = identify(catalogue, dns, now, flow);
    match policy {
        None => {
            let index = catalogue
                .classes()
                .iter()
                .position(|c| *c == class)
                .map_or(default_class, |i| i as u16);
            Outcome {
                app,
                class: index,
                reason,
            }
        }
        Some(policy) => {
            let tuple = tuple_of(flow);
            let facts = FlowFacts {
                proto: flow.key.proto,
                client: tuple.src,
                server: tuple.dst,
                server_port: tuple.dport,
                dscp: flow.dscp,
                app: &app,
                protocol: protocol.map(Protocol::name),
                host: host.as_deref(),
            };
            let (index, matched) = policy.classify(&facts);
            let reason = if matched {
                format!("policy class {} matched; {reason}", policy.names()[index])
            } else {
                format!("no policy rule matched (default class); {reason}")
            };
            Outcome {
                app,
                class: index as u16,
                reason,
            }
        }
    }
}
