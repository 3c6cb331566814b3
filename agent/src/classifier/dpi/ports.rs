//! Well-known ports: the last resort when nothing in the payload named the protocol.

use super::protocol::Protocol;
use crate::classifier::packet::ip_proto;

/// The protocol a server port suggests for TCP or UDP.
pub fn guess(proto: u8, port: u16) -> Option<Protocol> {
    use Protocol::*;
    let tcp = proto == ip_proto::TCP;
    let udp = proto == ip_proto::UDP;
    Some(match port {
        20 if tcp => FtpData,
        21 if tcp => Ftp,
        22 if tcp => Ssh,
        23 if tcp => Telnet,
        25 | 465 | 587 if tcp => Smtp,
        53 => Dns,
        67 | 68 if udp => Dhcp,
        69 if udp => Tftp,
        80 | 8080 | 8000 if tcp => Http,
        3128 if tcp => HttpProxy,
        88 => Kerberos,
        110 | 995 if tcp => Pop3,
        111 => SunRpc,
        123 if udp => Ntp,
        137..=139 => NetBios,
        143 | 993 if tcp => Imap,
        161 | 162 if udp => Snmp,
        179 if tcp => Bgp,
        389 | 636 | 3268 | 3269 => Ldap,
        443 | 8443 if tcp => Tls,
        443 if udp => Quic,
        445 if tcp => Smb,
        500 | 4500 if udp => IpSec,
        514 => Syslog,
        546 | 547 if udp => Dhcpv6,
        554 => Rtsp,
        873 if tcp => Rsync,
        1080 if tcp => Socks,
        1194 => OpenVpn,
        1433 if tcp => MsSql,
        1494 | 2598 => Citrix,
        1701 if udp => IpSec,
        1720 if tcp => H323,
        1723 if tcp => Pptp,
        1935 if tcp => Rtmp,
        2055 | 9995 | 9996 | 6343 | 4739 if udp => NetFlow,
        1812 | 1813 if udp => Radius,
        1883 if tcp => Mqtt,
        1900 if udp => Ssdp,
        2000 if tcp => Skinny,
        2049 => Nfs,
        2427 | 2727 if udp => Mgcp,
        2944 | 2945 => Megaco,
        3306 if tcp => Mysql,
        3389 => Rdp,
        3478 | 3479 | 19302..=19309 => Stun,
        4569 if udp => Iax,
        5060 | 5061 => Sip,
        5222 | 5223 if tcp => Xmpp,
        5353 if udp => Mdns,
        5355 => Llmnr,
        5432 if tcp => Postgres,
        5900..=5903 if tcp => Vnc,
        5938 => TeamViewer,
        6379 if tcp => Redis,
        6881..=6889 => BitTorrent,
        7070 if tcp => AnyDesk,
        8801..=8810 if udp => ZoomMedia,
        17500 if udp => DropboxLanSync,
        51820 if udp => WireGuard,
        57621 if udp => SpotifyLan,
        _ => return None,
    })
}

/// Picks the port that most likely names the service of a flow between two ports.
pub fn service_port(
    proto: u8,
    initiator_port: u16,
    responder_port: u16,
) -> Option<(Protocol, u16)> {
    guess(proto, responder_port)
        .map(|p| (p, responder_port))
        .or_else(|| guess(proto, initiator_port).map(|p| (p, initiator_port)))
}
