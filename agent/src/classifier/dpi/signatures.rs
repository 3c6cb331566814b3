//! Single-packet signatures: banners, magic numbers and header shapes that name a protocol
//! from one payload. Each check is a pure function over the payload and ports; they are
//! tried in order, most specific first, and none of them panics on short or hostile input.

use super::protocol::Protocol;
use super::tls::clean_host_name;

/// One payload as the signature checks see it.
#[derive(Debug, Clone, Copy)]
pub struct Payload<'a> {
    /// 6 for TCP, 17 for UDP.
    pub proto: u8,
    /// Ports of this packet (source, destination), not of the flow.
    pub sport: u16,
    pub dport: u16,
    pub data: &'a [u8],
}

impl Payload<'_> {
    fn port(&self, port: u16) -> bool {
        self.sport == port || self.dport == port
    }
    fn tcp(&self) -> bool {
        self.proto == 6
    }
    fn udp(&self) -> bool {
        self.proto == 17
    }
}

/// What a signature found: the protocol and, for text protocols, a host name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    pub protocol: Protocol,
    pub host: Option<String>,
}

impl Hit {
    fn bare(protocol: Protocol) -> Option<Hit> {
        Some(Hit {
            protocol,
            host: None,
        })
    }
}

fn be16(data: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*data.get(at)?, *data.get(at + 1)?]))
}

fn be32(data: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(data.get(at..at + 4)?.try_into().ok()?))
}

/// Tries every single-packet signature in order.
pub fn detect(p: &Payload<'_>) -> Option<Hit> {
    if p.data.is_empty() {
        return None;
    }
    if p.tcp() {
        http(p)
            .or_else(|| ssh(p))
            .or_else(|| rdp(p))
            .or_else(|| bittorrent(p))
            .or_else(|| smb(p))
            .or_else(|| text_banners(p))
            .or_else(|| sip(p))
            .or_else(|| rtsp(p))
            .or_else(|| stun(p))
            .or_else(|| teamviewer(p))
            .or_else(|| openvpn_tcp(p))
            .or_else(|| kerberos(p))
            .or_else(|| ldap(p))
            .or_else(|| skinny(p))
            .or_else(|| syslog(p))
            .or_else(|| socks(p))
    } else if p.udp() {
        sip(p)
            .or_else(|| stun(p))
            .or_else(|| dhcp(p))
            .or_else(|| ntp(p))
            .or_else(|| ssdp(p))
            .or_else(|| wireguard(p))
            .or_else(|| zoom_media(p))
            .or_else(|| teamviewer(p))
            .or_else(|| bittorrent_udp(p))
            .or_else(|| dropbox_lansync(p))
            .or_else(|| spotify_lan(p))
            .or_else(|| megaco(p))
            .or_else(|| mgcp(p))
            .or_else(|| iax(p))
            .or_else(|| dtls(p))
            .or_else(|| openvpn_udp(p))
            .or_else(|| ike(p))
            .or_else(|| sun_rpc(p))
            .or_else(|| rdp_udp(p))
            .or_else(|| kerberos(p))
            .or_else(|| syslog(p))
            .or_else(|| netbios_udp(p))
    } else {
        None
    }
}

const HTTP_METHODS: &[&[u8]] = &[
    b"GET ",
    b"POST ",
    b"HEAD ",
    b"PUT ",
    b"DELETE ",
    b"OPTIONS ",
    b"PATCH ",
    b"CONNECT ",
    b"PROPFIND ",
    b"PROPPATCH ",
    b"MKCOL ",
    b"COPY ",
    b"MOVE ",
    b"LOCK ",
    b"UNLOCK ",
    b"TRACE ",
    b"REPORT ",
    b"SEARCH ",
];

/// HTTP/1.x: a request line (its Host header) or a status line.
pub fn http(p: &Payload<'_>) -> Option<Hit> {
    let data = p.data;
    if data.starts_with(b"HTTP/1.") {
        return Hit::bare(Protocol::Http);
    }
    let method = HTTP_METHODS.iter().find(|m| data.starts_with(m))?;
    // The request line must carry an HTTP version.
    let line_end = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
    let line = &data[..line_end];
    if !line.windows(6).any(|w| w == b" HTTP/") && line_end != data.len() {
        return None;
    }
    let protocol = if *method == b"CONNECT " {
        Protocol::HttpProxy
    } else {
        Protocol::Http
    };
    Some(Hit {
        protocol,
        host: http_header(data, b"host").and_then(|h| {
            let host = h
                .rsplit_once(':')
                .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()));
            clean_host_name(host.map_or(h, |(name, _)| name).as_bytes())
        }),
    })
}

/// The value of a header in an HTTP-like message (case-insensitive name).
pub fn http_header<'a>(data: &'a [u8], name: &[u8]) -> Option<&'a str> {
    let head_end = data
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(data.len());
    for line in data[..head_end].split(|&b| b == b'\n').skip(1) {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        if line[..colon].eq_ignore_ascii_case(name) {
            return std::str::from_utf8(&line[colon + 1..]).ok().map(str::trim);
        }
    }
    None
}

/// The request target of an HTTP request line.
pub fn http_path(data: &[u8]) -> Option<&str> {
    let line_end = data
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .unwrap_or(data.len());
    let line = std::str::from_utf8(&data[..line_end]).ok()?;
    line.split(' ').nth(1)
}

fn ssh(p: &Payload<'_>) -> Option<Hit> {
    (p.data.starts_with(b"SSH-1.") || p.data.starts_with(b"SSH-2.0")).then_some(())?;
    Hit::bare(Protocol::Ssh)
}

/// RDP over TCP: a TPKT header and an X.224 Connection Request (or Confirm).
fn rdp(p: &Payload<'_>) -> Option<Hit> {
    let d = p.data;
    if d.len() >= 11 && d[0] == 3 && d[1] == 0 {
        let len = usize::from(be16(d, 2)?);
        let x224 = d[5] & 0xf0;
        if len == d.len() && (x224 == 0xe0 || x224 == 0xd0) {
            let cookie = d.windows(17).any(|w| w == b"Cookie: mstshash=");
            if cookie || p.port(3389) {
                return Hit::bare(Protocol::Rdp);
            }
        }
    }
    None
}

fn rdp_udp(p: &Payload<'_>) -> Option<Hit> {
    // MS-RDPEUDP SYN: a 0xffffffff sequence number then the SYN flag, on the RDP port.
    (p.port(3389) && p.data.len() >= 8 && p.data[..4] == [0xff; 4]).then_some(())?;
    Hit::bare(Protocol::Rdp)
}

fn bittorrent(p: &Payload<'_>) -> Option<Hit> {
    let d = p.data;
    if d.starts_with(b"\x13BitTorrent protocol")
        || (d.starts_with(b"GET /announce?") || d.starts_with(b"GET /scrape?"))
            && d.windows(9).any(|w| w == b"info_hash")
    {
        return Hit::bare(Protocol::BitTorrent);
    }
    // Message-stream encryption gives no plain marker; the peer-wire keep-alive/bitfield
    // shape after a handshake we missed is common in captures that start mid-flow.
    if d.len() >= 5 {
        let len = be32(d, 0)? as usize;
        let id = d[4];
        if len + 4 == d.len() && len > 1 && (id == 5 && len > 20 || id == 20) {
            return Hit::bare(Protocol::BitTorrent);
        }
    }
    None
}

fn bittorrent_udp(p: &Payload<'_>) -> Option<Hit> {
    let d = p.data;
    // DHT (bencoded KRPC) or the UDP tracker protocol's connect magic.
    if (d.starts_with(b"d1:a") || d.starts_with(b"d1:r") || d.starts_with(b"d2:ip"))
        && d.windows(4).any(|w| w == b"1:y1")
        || d.len() >= 16 && d[..8] == [0, 0, 0x04, 0x17, 0x27, 0x10, 0x19, 0x80]
    {
        return Hit::bare(Protocol::BitTorrent);
    }
    // uTP (BEP 29): version 1, a known type, a known extension, 20-byte header.
    if d.len() >= 20 {
        let kind = d[0] >> 4;
        let version = d[0] & 0x0f;
        let extension = d[1];
        let window = be32(d, 12)?;
        // Only the fixed-size SYN and STATE packets: data packets are too easily mimicked.
        if version == 1 && matches!(kind, 2 | 4) && extension <= 2 && window > 0 {
            let header_only = d.len() == 20
                || extension != 0 && d.get(21).is_some_and(|&n| d.len() == 22 + usize::from(n));
            if header_only {
                return Hit::bare(Protocol::BitTorrent);
            }
        }
    }
    None
}

/// SMB over NetBIOS session service or direct TCP (445/139).
fn smb(p: &Payload<'_>) -> Option<Hit> {
    let d = p.data;
    if d.len() >= 8
        && d[0] == 0
        && (&d[4..8] == b"\xffSMB" || &d[4..8] == b"\xfeSMB" || &d[4..8] == b"\xfdSMB")
    {
        return Hit::bare(Protocol::Smb);
    }
    if p.port(139) && d.len() >= 4 && matches!(d[0], 0x81 | 0x82 | 0x85) {
        return Hit::bare(Protocol::NetBios);
    }
    None
}

/// Line-based protocols that announce themselves in their first line.
fn text_banners(p: &Payload<'_>) -> Option<Hit> {
    let d = p.data;
    if d.starts_with(b"@RSYNCD:") {
        return Hit::bare(Protocol::Rsync);
    }
    if d.starts_with(b"RFB 00") {
        return Hit::bare(Protocol::Vnc);
    }
    let starts_ci =
        |prefix: &[u8]| d.len() >= prefix.len() && d[..prefix.len()].eq_ignore_ascii_case(prefix);
    if d.starts_with(b"* OK")
        && (d.windows(4).any(|w| w.eq_ignore_ascii_case(b"IMAP")) || p.port(143))
    {
        return Hit::bare(Protocol::Imap);
    }
    if d.starts_with(b"+OK") && p.port(110) {
        return Hit::bare(Protocol::Pop3);
    }
    if d.starts_with(b"220") {
        let text = &d[..d.len().min(200)];
        if text.windows(4).any(|w| w.eq_ignore_ascii_case(b"SMTP")) || p.port(25) || p.port(587) {
            return Hit::bare(Protocol::Smtp);
        }
        if text.windows(3).any(|w| w.eq_ignore_ascii_case(b"FTP")) || p.port(21) {
            return Hit::bare(Protocol::Ftp);
        }
    }
    if (starts_ci(b"USER ") || starts_ci(b"AUTH TLS") || starts_ci(b"FEAT")) && p.port(21) {
        return Hit::bare(Protocol::Ftp);
    }
    if (starts_ci(b"EHLO ") || starts_ci(b"HELO ")) && d.ends_with(b"\r\n") {
        return Hit::bare(Protocol::Smtp);
    }
    if d.starts_with(b"<stream:stream") || d.starts_with(b"<?xml version='1.0'?><stream:stream") {
        return Hit::bare(Protocol::Xmpp);
    }
    if d.len() >= 12 && d[0] == 0x10 && d.windows(4).any(|w| w == b"MQTT") {
        return Hit::bare(Protocol::Mqtt);
    }
    None
}

const SIP_METHODS: &[&[u8]] = &[
    b"INVITE ",
    b"REGISTER ",
    b"OPTIONS ",
    b"ACK ",
    b"BYE ",
    b"CANCEL ",
    b"SUBSCRIBE ",
    b"NOTIFY ",
    b"MESSAGE ",
    b"INFO ",
    b"PRACK ",
    b"UPDATE ",
    b"REFER ",
    b"PUBLISH ",
];

fn sip(p: &Payload<'_>) -> Option<Hit> {
    let d = p.data;
    let line_end = d
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .unwrap_or(d.len());
    let line = &d[..line_end];
    let request = SIP_METHODS.iter().any(|m| line.starts_with(m)) && line.ends_with(b"SIP/2.0");
    if request || line.starts_with(b"SIP/2.0 ") {
        return Hit::bare(Protocol::Sip);
    }
    None
}

fn rtsp(p: &Payload<'_>) -> Option<Hit> {
    let d = p.data;
    let line_end = d.iter().position(|&b| b == b'\r').unwrap_or(d.len());
    let line = &d[..line_end];
    (line.starts_with(b"RTSP/1.") || line.ends_with(b" RTSP/1.0")).then_some(())?;
    Hit::bare(Protocol::Rtsp)
}

/// STUN/TURN: a message type with the top two bits clear, a length that fits, and the
/// RFC 5389 magic cookie (or, on the classic ports, an RFC 3489 message without it).
/// Over TCP the message may carry an RFC 4571 two-byte length prefix.
pub fn stun(p: &Payload<'_>) -> Option<Hit> {
    let check = |d: &[u8]| -> bool {
        if d.len() < 20 || d[0] & 0xc0 != 0 {
            return false;
        }
        let Some(len) = be16(d, 2) else { return false };
        let len = usize::from(len);
        if len % 4 != 0 || len + 20 > d.len() {
            return false;
        }
        let cookie = d[4..8] == [0x21, 0x12, 0xa4, 0x42];
        let method = be16(d, 0).unwrap_or(0) & 0x3eef;
        let classic = (p.port(3478) || p.port(3479)) && method <= 0x0b && len + 20 == d.len();
        cookie && method <= 0x0f || classic
    };
    let d = p.data;
    if check(d) || p.tcp() && d.len() > 2 && check(&d[2..]) {
        return Hit::bare(Protocol::Stun);
    }
    // TURN ChannelData (0x4000–0x7fff channel numbers) on the TURN port.
    if p.udp() && p.port(3478) && d.len() >= 4 && (0x40..0x80).contains(&d[0]) {
        let len = usize::from(be16(d, 2)?);
        if len + 4 <= d.len() && d.len() <= len + 7 {
            return Hit::bare(Protocol::Stun);
        }
    }
    None
}

fn teamviewer(p: &Payload<'_>) -> Option<Hit> {
    let d = p.data;
    if d.len() >= 4
        && (d[0] == 0x17 && d[1] == 0x24 || d[0] == 0x11 && d[1] == 0x30)
        && (p.port(5938) || p.udp() && d[0] == 0x17 && d[1] == 0x24 && d.len() > 12)
    {
        return Hit::bare(Protocol::TeamViewer);
    }
    None
}

/// OpenVPN over TCP: a two-byte length, then a reset opcode with key id 0.
fn openvpn_tcp(p: &Payload<'_>) -> Option<Hit> {
    let d = p.data;
    let len = usize::from(be16(d, 0)?);
    let opcode = *d.get(2)? >> 3;
    (len + 2 == d.len() && matches!(opcode, 7 | 8 | 10) && d[2] & 0x07 == 0 && d.len() >= 16)
        .then_some(())?;
    Hit::bare(Protocol::OpenVpn)
}

/// OpenVPN over UDP: a hard-reset opcode (v2/v3) with key id 0, session id, then an
/// empty or short ack array and a zero packet id.
fn openvpn_udp(p: &Payload<'_>) -> Option<Hit> {
    let d = p.data;
    let opcode = *d.first()? >> 3;
    if !matches!(opcode, 7 | 10) || d[0] & 0x07 != 0 || d.len() < 14 {
        return None;
    }
    // [opcode][session 8][ack len n][acks 4n][remote session 8 if n>0][packet id 4]
    let acks = usize::from(*d.get(9)?);
    let id_at = 10 + acks * 4 + if acks > 0 { 8 } else { 0 };
    if acks <= 4 && be32(d, id_at)? == 0 {
        return Hit::bare(Protocol::OpenVpn);
    }
    // With tls-auth, an HMAC (20 bytes) and a replay id (8) come before the ack array.
    let acks = usize::from(*d.get(9 + 28)?);
    let id_at = 38 + acks * 4 + if acks > 0 { 8 } else { 0 };
    if acks <= 4 && be32(d, id_at)? == 0 {
        return Hit::bare(Protocol::OpenVpn);
    }
    None
}

/// Kerberos: a 4-byte record mark over TCP, then an AS-REQ/TGS-REQ/AS-REP/… tag.
fn kerberos(p: &Payload<'_>) -> Option<Hit> {
    if !p.port(88) {
        return None;
    }
    let d = if p.tcp() { p.data.get(4..)? } else { p.data };
    matches!(*d.first()?, 0x6a | 0x6b | 0x6c | 0x6d | 0x7e).then_some(())?;
    Hit::bare(Protocol::Kerberos)
}

/// LDAP: a BER SEQUENCE with a message id and a known protocol-op tag.
fn ldap(p: &Payload<'_>) -> Option<Hit> {
    let d = p.data;
    if *d.first()? != 0x30 {
        return None;
    }
    let (len_bytes, _) = match *d.get(1)? {
        n if n < 0x80 => (0usize, usize::from(n)),
        0x81 => (1, usize::from(*d.get(2)?)),
        0x82 => (2, usize::from(be16(d, 2)?)),
        0x84 => (4, be32(d, 2)? as usize),
        _ => return None,
    };
    let at = 2 + len_bytes;
    if *d.get(at)? != 0x02 {
        return None;
    }
    let id_len = usize::from(*d.get(at + 1)?);
    let op = *d.get(at + 2 + id_len)?;
    (matches!(
        op,
        0x60 | 0x61 | 0x63 | 0x64 | 0x65 | 0x42 | 0x66 | 0x68 | 0x77 | 0x78
    ) && id_len <= 4
        && (p.port(389) || p.port(3268)))
    .then_some(())?;
    Hit::bare(Protocol::Ldap)
}

/// Cisco Skinny (SCCP): little-endian length, zero reserved word, small message id.
fn skinny(p: &Payload<'_>) -> Option<Hit> {
    let d = p.data;
    if d.len() < 12 || !p.port(2000) {
        return None;
    }
    let len = u32::from_le_bytes(d[0..4].try_into().ok()?) as usize;
    let reserved = u32::from_le_bytes(d[4..8].try_into().ok()?);
    (len + 8 <= d.len() && len >= 4 && reserved <= 0x16).then_some(())?;
    Hit::bare(Protocol::Skinny)
}

/// Syslog: `<PRI>` with a priority of at most 191.
fn syslog(p: &Payload<'_>) -> Option<Hit> {
    let d = p.data;
    // TCP syslog may be octet-counted: "123 <34>…".
    let d = if p.tcp() && d.first()?.is_ascii_digit() {
        let space = d.iter().take(6).position(|&b| b == b' ')?;
        &d[space + 1..]
    } else {
        d
    };
    if *d.first()? != b'<' {
        return None;
    }
    let close = d.iter().take(5).position(|&b| b == b'>')?;
    let digits = &d[1..close];
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let pri: u32 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    let next = *d.get(close + 1)?;
    (pri <= 191 && (next.is_ascii_alphanumeric() || next == b' ' || next == b'-')).then_some(())?;
    Hit::bare(Protocol::Syslog)
}

fn socks(p: &Payload<'_>) -> Option<Hit> {
    let d = p.data;
    let v5 = d.len() >= 3
        && d[0] == 5
        && usize::from(d[1]) + 2 == d.len()
        && d[1] > 0
        && d[2..].iter().all(|&m| m <= 0x09 || m == 0x80);
    let v4 = d.len() >= 9 && d[0] == 4 && matches!(d[1], 1 | 2) && d.ends_with(&[0]);
    ((v5 || v4) && (p.port(1080) || p.port(9050))).then_some(())?;
    Hit::bare(Protocol::Socks)
}

fn dhcp(p: &Payload<'_>) -> Option<Hit> {
    let d = p.data;
    if (p.port(67) || p.port(68)) && d.len() >= 240 && d[236..240] == [0x63, 0x82, 0x53, 0x63] {
        return Hit::bare(Protocol::Dhcp);
    }
    if (p.port(546) || p.port(547)) && matches!(*d.first()?, 1..=13) {
        return Hit::bare(Protocol::Dhcpv6);
    }
    None
}

fn ntp(p: &Payload<'_>) -> Option<Hit> {
    let d = p.data;
    if !p.port(123) || d.len() < 48 {
        return None;
    }
    let version = (d[0] >> 3) & 0x07;
    let mode = d[0] & 0x07;
    ((1..=4).contains(&version) && mode != 0).then_some(())?;
    Hit::bare(Protocol::Ntp)
}

fn ssdp(p: &Payload<'_>) -> Option<Hit> {
    let d = p.data;
    (d.starts_with(b"M-SEARCH * HTTP/1.1")
        || d.starts_with(b"NOTIFY * HTTP/1.1")
        || d.starts_with(b"HTTP/1.1 200 OK") && p.port(1900))
    .then_some(())?;
    Hit::bare(Protocol::Ssdp)
}

fn dropbox_lansync(p: &Payload<'_>) -> Option<Hit> {
    (p.port(17500) && p.data.starts_with(b"{\"host_int\"")).then_some(())?;
    Hit::bare(Protocol::DropboxLanSync)
}

fn spotify_lan(p: &Payload<'_>) -> Option<Hit> {
    (p.port(57621) && p.data.starts_with(b"SpotUdp")).then_some(())?;
    Hit::bare(Protocol::SpotifyLan)
}

/// MGCP: a verb, a transaction id and `MGCP 1.0` on the first line.
fn mgcp(p: &Payload<'_>) -> Option<Hit> {
    const VERBS: &[&[u8]] = &[
        b"AUEP ", b"AUCX ", b"CRCX ", b"DLCX ", b"EPCF ", b"MDCX ", b"NTFY ", b"RQNT ", b"RSIP ",
    ];
    let d = p.data;
    let line_end = d
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .unwrap_or(d.len());
    let line = &d[..line_end];
    (VERBS.iter().any(|v| line.starts_with(v)) && line.windows(8).any(|w| w == b"MGCP 1.0"))
        .then_some(())?;
    Hit::bare(Protocol::Mgcp)
}

fn megaco(p: &Payload<'_>) -> Option<Hit> {
    let d = p.data;
    (d.starts_with(b"MEGACO/") || d.starts_with(b"!/1 ") || d.starts_with(b"!/1[")).then_some(())?;
    Hit::bare(Protocol::Megaco)
}

/// IAX2 full frames: the F bit, a known frame type, and the IAX port.
fn iax(p: &Payload<'_>) -> Option<Hit> {
    let d = p.data;
    if !p.port(4569) || d.len() < 12 {
        return None;
    }
    let full = d[0] & 0x80 != 0;
    let frame_type = d[10];
    (full && (1..=10).contains(&frame_type) || !full && d.len() > 4).then_some(())?;
    Hit::bare(Protocol::Iax)
}

/// DTLS: a record header with a DTLS version (1.0 0xfeff, 1.2 0xfefd).
fn dtls(p: &Payload<'_>) -> Option<Hit> {
    let d = p.data;
    if d.len() < 13
        || !(20..=25).contains(&d[0])
        || d[1] != 0xfe
        || !matches!(d[2], 0xff | 0xfd | 0xfc)
    {
        return None;
    }
    let len = usize::from(be16(d, 11)?);
    (len + 13 <= d.len()).then_some(())?;
    Hit::bare(Protocol::Dtls)
}

/// WireGuard: message types 1–4 with three zero bytes and the type's fixed length.
fn wireguard(p: &Payload<'_>) -> Option<Hit> {
    let d = p.data;
    if d.len() < 32 || d[1..4] != [0, 0, 0] {
        return None;
    }
    let ok = match d[0] {
        1 => d.len() == 148,
        2 => d.len() == 92,
        3 => d.len() == 64,
        4 => d.len() >= 32 && d.len().is_multiple_of(16),
        _ => false,
    };
    ok.then_some(())?;
    Hit::bare(Protocol::WireGuard)
}

/// IKE (ISAKMP) on 500, or behind the 4-byte non-ESP marker on 4500.
fn ike(p: &Payload<'_>) -> Option<Hit> {
    let d = if p.port(4500) && p.data.get(..4) == Some(&[0, 0, 0, 0]) {
        &p.data[4..]
    } else if p.port(500) {
        p.data
    } else if p.port(4500) && p.data.len() > 8 {
        return Hit::bare(Protocol::IpSec); // ESP in UDP
    } else {
        return None;
    };
    if d.len() < 28 {
        return None;
    }
    let version = d[17];
    let len = be32(d, 24)? as usize;
    (matches!(version, 0x10 | 0x20) && len == d.len()).then_some(())?;
    Hit::bare(Protocol::IpSec)
}

/// ONC RPC (NFS, portmapper, mountd) calls and replies over UDP.
fn sun_rpc(p: &Payload<'_>) -> Option<Hit> {
    let d = p.data;
    if d.len() < 24 {
        return None;
    }
    let msg_type = be32(d, 4)?;
    if msg_type == 0 {
        let rpc_version = be32(d, 8)?;
        let program = be32(d, 12)?;
        if rpc_version != 2 {
            return None;
        }
        return match program {
            100003 | 100005 | 100021 | 100024 | 100227 => Hit::bare(Protocol::Nfs),
            100000 => Hit::bare(Protocol::SunRpc),
            _ => None,
        };
    }
    // A reply (msg_type 1, accepted or denied) on an NFS/portmapper port.
    (msg_type == 1 && be32(d, 8)? <= 1 && (p.port(2049) || p.port(111))).then_some(())?;
    Hit::bare(Protocol::Nfs)
}

/// Zoom media/control over UDP 8801–8810: Zoom's own packet header types.
fn zoom_media(p: &Payload<'_>) -> Option<Hit> {
    let d = p.data;
    let on_port = (8801..=8810).contains(&p.sport) || (8801..=8810).contains(&p.dport);
    (on_port && d.len() >= 8 && matches!(d[0], 0x01..=0x05 | 0x0f | 0x10 | 0x1f | 0x20 | 0x21))
        .then_some(())?;
    Hit::bare(Protocol::ZoomMedia)
}

fn netbios_udp(p: &Payload<'_>) -> Option<Hit> {
    let d = p.data;
    if p.port(137) && d.len() >= 12 {
        let qd = be16(d, 4)?;
        let an = be16(d, 6)?;
        if qd <= 1 && an <= 1 && qd + an >= 1 {
            return Hit::bare(Protocol::NetBios);
        }
    }
    if p.port(138) && d.len() >= 14 && (0x10..=0x16).contains(&d[0]) {
        return Hit::bare(Protocol::NetBios);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(dport: u16, data: &[u8]) -> Option<Protocol> {
        detect(&Payload {
            proto: 6,
            sport: 50000,
            dport,
            data,
        })
        .map(|h| h.protocol)
    }

    fn udp(dport: u16, data: &[u8]) -> Option<Protocol> {
        detect(&Payload {
            proto: 17,
            sport: 50000,
            dport,
            data,
        })
        .map(|h| h.protocol)
    }

    #[test]
    fn http_host_is_read_without_port() {
        let hit = detect(&Payload {
            proto: 6,
            sport: 40000,
            dport: 8080,
            data: b"GET /a HTTP/1.1\r\nUser-Agent: x\r\nHost: WWW.Example.COM:8080\r\n\r\n",
        })
        .unwrap();
        assert_eq!(hit.protocol, Protocol::Http);
        assert_eq!(hit.host.as_deref(), Some("www.example.com"));
    }

    #[test]
    fn banners_and_magic_numbers() {
        assert_eq!(tcp(22, b"SSH-2.0-OpenSSH_9.6\r\n"), Some(Protocol::Ssh));
        assert_eq!(tcp(2222, b"SSH-2.0-OpenSSH_9.6\r\n"), Some(Protocol::Ssh));
        let mut rdp_cr =
            b"\x03\x00\x00\x00\x27\xe0\x00\x00\x00\x00\x00Cookie: mstshash=user\r\n".to_vec();
        rdp_cr.extend_from_slice(b"\x01\x00\x08\x00\x03\x00\x00\x00");
        rdp_cr[3] = rdp_cr.len() as u8;
        assert_eq!(tcp(3389, &rdp_cr), Some(Protocol::Rdp));
        assert_eq!(tcp(8443, &rdp_cr), Some(Protocol::Rdp));
        assert_eq!(
            tcp(6881, b"\x13BitTorrent protocol\0\0\0\0\0\0\0\0"),
            Some(Protocol::BitTorrent)
        );
        assert_eq!(
            udp(5060, b"INVITE sip:bob@example.com SIP/2.0\r\nVia: x\r\n"),
            Some(Protocol::Sip)
        );
        assert_eq!(udp(5060, b"SIP/2.0 200 OK\r\n"), Some(Protocol::Sip));
        assert_eq!(
            udp(514, b"<34>Oct 11 22:14:15 host su: failed"),
            Some(Protocol::Syslog)
        );
        assert_eq!(tcp(873, b"@RSYNCD: 31.0\n"), Some(Protocol::Rsync));
        assert_eq!(
            tcp(445, b"\x00\x00\x00\x45\xfeSMB\x40\x00"),
            Some(Protocol::Smb)
        );
    }

    #[test]
    fn stun_needs_its_cookie_and_a_consistent_length() {
        let mut binding = vec![0x00, 0x01, 0x00, 0x08, 0x21, 0x12, 0xa4, 0x42];
        binding.extend_from_slice(&[7; 12]);
        binding.extend_from_slice(&[0x80, 0x22, 0x00, 0x04, b'a', b'b', b'c', b'd']);
        assert_eq!(udp(19302, &binding), Some(Protocol::Stun));
        binding[3] = 0x40; // claims more than is there
        assert_eq!(udp(19302, &binding), None);
    }

    #[test]
    fn fuzz_regression_utp_extension_length_past_the_end() {
        // Found by the rtp_stun_signatures fuzz target: a uTP STATE header with an extension
        // whose length byte would sit one past the datagram.
        let mut data = vec![0x21, 0x01];
        data.extend_from_slice(&[0x41; 10]);
        data.extend_from_slice(&[0, 0, 1, 0]);
        data.extend_from_slice(&[0x41; 5]);
        assert_eq!(data.len(), 21);
        for proto in [6, 17] {
            let _ = detect(&Payload {
                proto,
                sport: 1,
                dport: 2,
                data: &data,
            });
        }
    }

    #[test]
    fn wireguard_handshake_initiation_has_a_fixed_size() {
        let mut init = vec![1, 0, 0, 0];
        init.resize(148, 0x5a);
        assert_eq!(udp(51820, &init), Some(Protocol::WireGuard));
        init.push(0);
        assert_ne!(udp(51820, &init), Some(Protocol::WireGuard));
    }
}
