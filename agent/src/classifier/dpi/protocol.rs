//! The protocols DPI can name. Their SD-WAN class lives in the catalogue data file, so an
//! operator can move e.g. `ssh` to another class without a rebuild.

use serde::{Deserialize, Serialize};

macro_rules! protocols {
    ($($variant:ident => $name:literal),* $(,)?) => {
        /// A protocol recognised on the wire (or, as a last resort, guessed from a port).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "kebab-case")]
        pub enum Protocol { $($variant),* }

        impl Protocol {
            /// Every protocol, for the catalogue check that each has a class.
            pub const ALL: &'static [Protocol] = &[$(Protocol::$variant),*];

            /// The name used in the catalogue, in verdicts and on the command line.
            pub fn name(self) -> &'static str {
                match self { $(Protocol::$variant => $name),* }
            }

            /// The protocol with this catalogue name.
            pub fn from_name(name: &str) -> Option<Protocol> {
                match name { $($name => Some(Protocol::$variant),)* _ => None }
            }
        }
    };
}

protocols! {
    Tls => "tls", Dtls => "dtls", Quic => "quic", Http => "http", HttpProxy => "http-proxy",
    Dns => "dns", Mdns => "mdns", Llmnr => "llmnr", Ssdp => "ssdp", Dhcp => "dhcp",
    Dhcpv6 => "dhcpv6", Ntp => "ntp", Snmp => "snmp", Syslog => "syslog", NetBios => "netbios",
    Kerberos => "kerberos", Ldap => "ldap", Radius => "radius", Icmp => "icmp",
    Icmpv6 => "icmpv6", Igmp => "igmp", Bgp => "bgp", Ospf => "ospf", Vrrp => "vrrp", Pim => "pim",
    NetFlow => "netflow",
    Sip => "sip", Rtp => "rtp", Rtcp => "rtcp", Stun => "stun", Iax => "iax",
    Megaco => "megaco", Mgcp => "mgcp", Skinny => "skinny", H323 => "h323",
    Ssh => "ssh", Telnet => "telnet", Rdp => "rdp", Vnc => "vnc", TeamViewer => "teamviewer",
    AnyDesk => "anydesk", Citrix => "citrix",
    Smb => "smb", Nfs => "nfs", SunRpc => "sunrpc", Ftp => "ftp", FtpData => "ftp-data",
    Tftp => "tftp", Rsync => "rsync", BitTorrent => "bittorrent", DropboxLanSync => "dropbox-lansync",
    SpotifyLan => "spotify-lan",
    Imap => "imap", Pop3 => "pop3", Smtp => "smtp", Xmpp => "xmpp", Mqtt => "mqtt",
    ApplePush => "apple-push", Rtsp => "rtsp", Rtmp => "rtmp",
    IpSec => "ipsec", Esp => "esp", Gre => "gre", OpenVpn => "openvpn", WireGuard => "wireguard",
    Pptp => "pptp", Socks => "socks",
    Mysql => "mysql", Postgres => "postgres", MsSql => "mssql", Redis => "redis",
    ZoomMedia => "zoom-media",
}
