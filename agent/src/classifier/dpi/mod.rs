//! Deep packet inspection: per-flow state that watches a flow's first payload packets and
//! names its protocol and, where the protocol says it, the host the client wants.
//!
//! Parsers (one module each) are pure functions over bytes; [`Inspector`] is the small
//! per-flow state machine that feeds them: TCP reassembly for TLS, QUIC Initial keys and
//! CRYPTO reassembly, RTP evidence over several packets. It gives up after
//! [`PAYLOAD_PACKET_LIMIT`] payload packets so a flow costs nothing once it is known.

pub mod dns;
pub mod ports;
pub mod protocol;
pub mod quic;
pub mod rtp;
pub mod signatures;
pub mod stream;
pub mod tls;

use protocol::Protocol;
use signatures::Payload;
use stream::StreamPrefix;
use tls::Progress;

use super::packet::ip_proto;

/// Payload packets looked at per flow at most (nDPI's test configuration uses 32 as well).
pub const PAYLOAD_PACKET_LIMIT: u8 = 32;

/// Where a host name came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostSource {
    TlsSni,
    QuicSni,
    Certificate,
    HttpHost,
    DnsQuery,
}

impl HostSource {
    pub fn label(self) -> &'static str {
        match self {
            HostSource::TlsSni => "tls sni",
            HostSource::QuicSni => "quic sni",
            HostSource::Certificate => "tls certificate",
            HostSource::HttpHost => "http host",
            HostSource::DnsQuery => "dns query",
        }
    }
}

/// What DPI found out about a flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detection {
    pub protocol: Protocol,
    pub host: Option<(String, HostSource)>,
    /// An application the payload itself points at (a DASH manifest, a WebDAV method,
    /// Teams' own STUN attributes), named as in the catalogue.
    pub app_hint: Option<&'static str>,
}

impl Detection {
    fn of(protocol: Protocol) -> Detection {
        Detection {
            protocol,
            host: None,
            app_hint: None,
        }
    }
}

/// One packet as the inspector needs it.
#[derive(Debug, Clone, Copy)]
pub struct Seen<'a> {
    pub proto: u8,
    pub from_initiator: bool,
    pub sport: u16,
    pub dport: u16,
    pub tcp_seq: Option<u32>,
    /// The TCP SYN flag (its sequence number anchors the stream).
    pub tcp_syn: bool,
    pub payload: &'a [u8],
}

#[derive(Debug)]
struct QuicState {
    keys: quic::InitialKeys,
    /// The direction (0 initiator, 1 responder) the client Initials come from.
    client: usize,
    crypto: quic::CryptoStream,
}

/// Per-flow DPI state.
#[derive(Debug, Default)]
pub struct Inspector {
    payload_packets: u8,
    /// TLS handshake bytes per direction (initiator, responder), while needed.
    streams: [Option<Box<StreamPrefix>>; 2],
    quic: Option<Box<QuicState>>,
    rtp: [rtp::RtpTrack; 2],
    detection: Option<Detection>,
    finished: bool,
    /// First payload byte (after a TCP length prefix) and length from each direction.
    first_bytes: [Option<(u8, usize)>; 2],
    /// Initial sequence numbers from the SYNs, per direction.
    isn: [Option<u32>; 2],
    /// Data connections an FTP control flow announced (address if given, port).
    announced: Vec<(Option<std::net::IpAddr>, u16)>,
}

impl Inspector {
    pub fn detection(&self) -> Option<&Detection> {
        self.detection.as_ref()
    }

    /// True once the inspector will not look at more packets.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Looks at one packet. Returns a parsed DNS message when the flow carries DNS, so the
    /// caller can learn its answers (DNS flows are parsed on every packet, even when done).
    pub fn inspect(&mut self, seen: &Seen<'_>) -> Option<dns::DnsMessage> {
        if seen.tcp_syn && !self.finished {
            self.isn[usize::from(!seen.from_initiator)] = seen.tcp_seq;
        }
        if seen.payload.is_empty() {
            return None;
        }
        if let Some(d) = &self.detection
            && matches!(d.protocol, Protocol::Dns | Protocol::Mdns | Protocol::Llmnr)
        {
            return dns::parse(seen.payload, seen.proto == ip_proto::TCP);
        }
        if self.finished {
            return None;
        }
        if matches!(&self.detection, Some(d) if d.protocol == Protocol::Ftp) {
            // Keep reading the control channel for the data connections it opens.
            self.payload_packets += 1;
            if self.payload_packets >= PAYLOAD_PACKET_LIMIT * 4 {
                self.finish();
            }
            if let Some(endpoint) = ftp_data_endpoint(seen.payload)
                && self.announced.len() < 64
            {
                self.announced.push(endpoint);
            }
            return None;
        }
        self.payload_packets += 1;
        if self.payload_packets >= PAYLOAD_PACKET_LIMIT {
            self.finish();
        }
        let dir = usize::from(!seen.from_initiator);
        if self.first_bytes[dir].is_none() {
            let body = if seen.proto == ip_proto::TCP {
                seen.payload.get(2..)
            } else {
                Some(seen.payload)
            };
            self.first_bytes[dir] = body
                .and_then(|b| b.first())
                .map(|&b| (b, seen.payload.len()));
            if self.detection.is_none() && self.openvpn_handshake() {
                self.detection = Some(Detection::of(Protocol::OpenVpn));
                self.finish();
                return None;
            }
        }
        match seen.proto {
            ip_proto::TCP => self.inspect_tcp(dir, seen),
            ip_proto::UDP => self.inspect_udp(dir, seen),
            _ => {
                self.finish();
                None
            }
        }
    }

    /// OpenVPN's reset exchange: the initiator opens with a client hard reset (v2/v3) and
    /// the responder answers with a server hard reset, both with key id 0. Catches OpenVPN
    /// with tls-auth/tls-crypt, whose later bytes are opaque.
    fn openvpn_handshake(&self) -> bool {
        match self.first_bytes {
            [Some((client, _)), Some((server, _))] => {
                matches!(client, 0x38 | 0x50) && matches!(server, 0x40 | 0x58)
            }
            _ => false,
        }
    }

    /// Data connections an FTP control flow announced since the last call.
    pub fn take_announced(&mut self) -> Vec<(Option<std::net::IpAddr>, u16)> {
        std::mem::take(&mut self.announced)
    }

    fn finish(&mut self) {
        self.finished = true;
        self.streams = [None, None];
        self.quic = None;
    }

    fn has_host(&self) -> bool {
        self.detection.as_ref().is_some_and(|d| d.host.is_some())
    }

    fn set_host(&mut self, host: Option<String>, source: HostSource) {
        if let (Some(detection), Some(host)) = (self.detection.as_mut(), host)
            && (detection.host.is_none() || source != HostSource::Certificate)
        {
            detection.host = Some((host, source));
        }
    }

    fn inspect_tcp(&mut self, dir: usize, seen: &Seen<'_>) -> Option<dns::DnsMessage> {
        // Data on a SYN (TCP Fast Open) starts one past the SYN's own sequence number.
        let seq = seen
            .tcp_seq
            .unwrap_or(0)
            .wrapping_add(u32::from(seen.tcp_syn));
        let tls_so_far = matches!(&self.detection, Some(d) if d.protocol == Protocol::Tls);
        let wants_stream = self.detection.is_none() || tls_so_far && !self.has_host();
        if self.streams[dir].is_none() && wants_stream {
            // Anchor at the SYN when we saw it, so a first segment that arrives late still
            // lands in place; otherwise start at the first segment that opens a TLS record.
            if let Some(isn) = self.isn[dir] {
                self.streams[dir] = Some(Box::new(StreamPrefix::starting_at(isn.wrapping_add(1))));
            } else if tls::looks_like_tls(seen.payload) {
                self.streams[dir] = Some(Box::default());
            }
        }
        if let Some(stream) = self.streams[dir].as_mut() {
            stream.push(seq, seen.payload);
            let start = stream.bytes();
            if start.is_empty() {
                if stream.held() < 4 {
                    return None; // the first bytes are still missing
                }
                // They are not coming (the capture lost them): judge segments as they come.
                self.streams[dir] = None;
                self.isn[dir] = None;
                return self.inspect_tcp_plain(seen);
            }
            if tls::looks_like_tls(start) || start.len() < 3 && start[0] == 22 {
                self.detection.get_or_insert(Detection::of(Protocol::Tls));
                self.advance_tls(dir);
                return None;
            }
            // Not TLS: judge the reassembled start of the stream instead of this segment.
            let start = start.to_vec();
            self.streams[dir] = None;
            return self.inspect_tcp_plain(&Seen {
                payload: &start,
                ..*seen
            });
        }
        self.inspect_tcp_plain(seen)
    }

    fn inspect_tcp_plain(&mut self, seen: &Seen<'_>) -> Option<dns::DnsMessage> {
        if self.detection.is_none()
            && (seen.sport == 53 || seen.dport == 53)
            && let Some(message) = dns::parse(seen.payload, true)
        {
            self.detection = Some(Detection::of(Protocol::Dns));
            self.set_host(message.query.clone(), HostSource::DnsQuery);
            self.finished = true;
            return Some(message);
        }
        self.try_signatures(seen);
        None
    }

    /// Reads whatever the TLS bytes of direction `dir` now allow.
    fn advance_tls(&mut self, dir: usize) {
        let Some(stream) = self.streams[dir].as_ref() else {
            return;
        };
        let bytes = stream.bytes();
        let full = stream.is_full();
        let handshake_type = bytes.get(5).copied();
        match handshake_type {
            Some(1) => match tls::client_hello_from_stream(bytes) {
                Progress::Done(hello) => {
                    self.streams[dir] = None;
                    self.set_host(hello.sni, HostSource::TlsSni);
                    if self.has_host() {
                        self.finish();
                    }
                }
                Progress::NeedMore if !full => {}
                _ => self.streams[dir] = None,
            },
            Some(2) => match tls::certificate_name_from_stream(bytes) {
                Progress::Done(name) => {
                    self.streams[dir] = None;
                    self.set_host(name, HostSource::Certificate);
                    if self.has_host() {
                        self.finish();
                    }
                }
                Progress::NeedMore if !full => {}
                _ => self.streams[dir] = None,
            },
            None => {}
            Some(_) => self.streams[dir] = None,
        }
    }

    fn inspect_udp(&mut self, dir: usize, seen: &Seen<'_>) -> Option<dns::DnsMessage> {
        if let Some(state) = self.quic.as_mut() {
            if state.client == dir {
                state
                    .crypto
                    .add(quic::initial_crypto_frames(seen.payload, &state.keys));
                match state.crypto.client_hello() {
                    Progress::Done(hello) => {
                        self.set_host(hello.sni, HostSource::QuicSni);
                        self.finish();
                    }
                    Progress::NeedMore => {}
                    Progress::NotThis => self.quic = None,
                }
            }
            return None;
        }
        if self.detection.is_some() {
            if matches!(&self.detection, Some(d) if d.protocol == Protocol::Quic) {
                // Waiting for an Initial after other long-header packets.
                if let Some(quic::Sighting::Initial(header)) = quic::sight(seen.payload) {
                    self.start_quic(dir, header.version, header.dcid.to_vec(), seen.payload);
                }
                return None;
            }
            if matches!(&self.detection, Some(d) if d.protocol == Protocol::Http) {
                self.try_signatures(seen);
            }
            return None;
        }
        match quic::sight(seen.payload) {
            Some(quic::Sighting::Initial(header)) => {
                self.detection = Some(Detection::of(Protocol::Quic));
                let dcid = header.dcid.to_vec();
                self.start_quic(dir, header.version, dcid, seen.payload);
                return None;
            }
            Some(quic::Sighting::Gquic { sni }) => {
                self.detection = Some(Detection::of(Protocol::Quic));
                if sni.is_some() {
                    self.set_host(sni, HostSource::QuicSni);
                    self.finish();
                }
                return None;
            }
            Some(quic::Sighting::OtherLong(_)) => {
                self.detection = Some(Detection::of(Protocol::Quic));
                return None;
            }
            None => {}
        }
        let dns_port = |p: u16| matches!(p, 53 | 5353 | 5355);
        if (dns_port(seen.sport) || dns_port(seen.dport))
            && let Some(message) = dns::parse(seen.payload, false)
        {
            let protocol = if seen.sport == 5353 || seen.dport == 5353 {
                Protocol::Mdns
            } else if seen.sport == 5355 || seen.dport == 5355 {
                Protocol::Llmnr
            } else {
                Protocol::Dns
            };
            self.detection = Some(Detection::of(protocol));
            self.set_host(message.query.clone(), HostSource::DnsQuery);
            self.finished = true;
            return Some(message);
        }
        if self.try_signatures(seen) {
            return None;
        }
        let track = &mut self.rtp[dir];
        track.feed(seen.payload);
        if track.is_rtp() {
            self.detection = Some(Detection::of(Protocol::Rtp));
            self.finish();
        } else if track.rtcp >= 2 {
            self.detection = Some(Detection::of(Protocol::Rtcp));
            self.finish();
        }
        None
    }

    fn start_quic(&mut self, dir: usize, version: u32, dcid: Vec<u8>, datagram: &[u8]) {
        let Some(keys) = quic::InitialKeys::client(version, &dcid) else {
            return;
        };
        let mut state = QuicState {
            keys,
            client: dir,
            crypto: quic::CryptoStream::default(),
        };
        state
            .crypto
            .add(quic::initial_crypto_frames(datagram, &state.keys));
        match state.crypto.client_hello() {
            Progress::Done(hello) => {
                self.set_host(hello.sni, HostSource::QuicSni);
                self.finish();
            }
            Progress::NeedMore => self.quic = Some(Box::new(state)),
            Progress::NotThis => {}
        }
    }

    /// Runs the single-packet signatures; true when they named the flow.
    fn try_signatures(&mut self, seen: &Seen<'_>) -> bool {
        let payload = Payload {
            proto: seen.proto,
            sport: seen.sport,
            dport: seen.dport,
            data: seen.payload,
        };
        let Some(hit) = signatures::detect(&payload) else {
            return false;
        };
        if let Some(existing) = &self.detection
            && existing.protocol != hit.protocol
        {
            return false;
        }
        let hint = match hit.protocol {
            Protocol::Http | Protocol::HttpProxy => http_hint(seen.payload),
            Protocol::Stun => stun_hint(seen.payload),
            _ => None,
        };
        let detection = self.detection.get_or_insert(Detection::of(hit.protocol));
        if hint.is_some() {
            detection.app_hint = hint;
        }
        let wants_host = matches!(hit.protocol, Protocol::Http | Protocol::HttpProxy);
        self.set_host(hit.host, HostSource::HttpHost);
        if hit.protocol == Protocol::Ftp {
            if let Some(endpoint) = ftp_data_endpoint(seen.payload) {
                self.announced.push(endpoint);
            }
            return true; // stays open: the control channel names its data connections
        }
        if !wants_host || self.has_host() {
            self.finish();
        }
        true
    }
}

/// A data connection named on an FTP control channel: `227 Entering Passive Mode
/// (h1,h2,h3,h4,p1,p2)`, `229 Entering Extended Passive Mode (|||port|)`, `PORT h1,…,p2`
/// or `EPRT |1|addr|port|`.
pub fn ftp_data_endpoint(line: &[u8]) -> Option<(Option<std::net::IpAddr>, u16)> {
    let text = std::str::from_utf8(line.get(..line.len().min(256))?).ok()?;
    let six_numbers = |list: &str| -> Option<(Option<std::net::IpAddr>, u16)> {
        let n: Vec<u8> = list
            .split(',')
            .map(|part| part.trim().parse::<u8>())
            .collect::<Result<_, _>>()
            .ok()?;
        if n.len() != 6 {
            return None;
        }
        let addr = std::net::IpAddr::from([n[0], n[1], n[2], n[3]]);
        Some((Some(addr), u16::from(n[4]) << 8 | u16::from(n[5])))
    };
    if let Some(rest) = text.strip_prefix("227 ") {
        let open = rest.find('(')?;
        let close = rest[open..].find(')')? + open;
        return six_numbers(&rest[open + 1..close]);
    }
    if let Some(rest) = text.strip_prefix("229 ") {
        let open = rest.find("(|||")?;
        let close = rest[open + 4..].find('|')? + open + 4;
        return Some((None, rest[open + 4..close].parse().ok()?));
    }
    if let Some(rest) = text.strip_prefix("PORT ") {
        return six_numbers(rest.trim_end());
    }
    if let Some(rest) = text.strip_prefix("EPRT ") {
        let fields: Vec<&str> = rest.trim_end().split('|').collect();
        if fields.len() >= 4 {
            return Some((fields[2].parse().ok(), fields[3].parse().ok()?));
        }
    }
    None
}

/// Applications an HTTP request names by what it asks for.
fn http_hint(payload: &[u8]) -> Option<&'static str> {
    const WEBDAV: &[&[u8]] = &[
        b"PROPFIND ",
        b"PROPPATCH ",
        b"MKCOL ",
        b"COPY ",
        b"MOVE ",
        b"LOCK ",
        b"UNLOCK ",
    ];
    if WEBDAV.iter().any(|m| payload.starts_with(m)) {
        return Some("webdav");
    }
    if let Some(path) = signatures::http_path(payload) {
        let path = path.split('?').next().unwrap_or(path).to_ascii_lowercase();
        if path.ends_with(".mpd") || path.ends_with(".m4s") || path.contains("/dash/") {
            return Some("mpeg-dash");
        }
        if path.ends_with(".m3u8") {
            return Some("hls");
        }
        const VIDEO: &[&str] = &[".mp4", ".m4v", ".m4a", ".webm", ".ts", ".flv", ".mkv"];
        if VIDEO.iter().any(|ext| path.ends_with(ext)) {
            return Some("http-video");
        }
    }
    let content_type = signatures::http_header(payload, b"content-type")?;
    if content_type.contains("dash+xml") {
        return Some("mpeg-dash");
    }
    if content_type.contains("mpegurl") {
        return Some("hls");
    }
    None
}

/// Teams/Skype for Business add Microsoft's own STUN attributes (MS-ICE2, MS-TURN).
fn stun_hint(payload: &[u8]) -> Option<&'static str> {
    let message = if payload.get(4..8) == Some(&[0x21, 0x12, 0xa4, 0x42]) {
        payload
    } else {
        payload.get(2..)?
    };
    let mut at = 20usize;
    while let Some(header) = message.get(at..at + 4) {
        let kind = u16::from_be_bytes([header[0], header[1]]);
        let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
        if matches!(
            kind,
            0x8008 | 0x8050 | 0x8054 | 0x8055 | 0x8056 | 0x8057 | 0x8070 | 0x8090
        ) {
            return Some("teams");
        }
        at += 4 + len.div_ceil(4) * 4;
    }
    None
}
