//! The policy as data: what one YAML file says, with every optional field defaulted.
//!
//! These types only describe; the rules that tie them together (names resolve, shares add
//! up, SLAs are reachable) live in validation. Unknown keys are refused everywhere so a typo
//! never silently turns into a default.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::units::{Dscp, Percent, Rate, Reflector, Span, UnitError};

/// A whole policy file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Free-form name shown in the dashboard and audit log.
    #[serde(default)]
    pub name: Option<String>,
    /// Branches, hubs and data centres with their LANs and WAN lines.
    pub sites: Vec<Site>,
    /// Traffic classes, in the order their match rules are tried.
    pub classes: Vec<Class>,
    /// The class for traffic no rule matches (default: a class named `default`, else the
    /// class with the lowest priority).
    #[serde(default)]
    pub default_class: Option<String>,
    /// Measurement and decision timers.
    #[serde(default)]
    pub timers: Timers,
}

/// The role a site plays in the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SiteKind {
    /// A branch office: users, few lines, reaches the DCs.
    Branch,
    /// A regional hub that transit traffic may pass through.
    Hub,
    /// A data centre: hosts the applications, terminates every branch's lines.
    Dc,
}

/// One site and its WAN lines.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Site {
    pub name: String,
    pub kind: SiteKind,
    /// LAN prefixes behind the site (IPv4 and IPv6).
    #[serde(default)]
    pub lan: Vec<IpNet>,
    pub lines: Vec<Line>,
}

/// The kind of circuit a WAN line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Mpls,
    Internet,
    Lte,
    Satellite,
}

impl Transport {
    /// All transports, for hints and for matching steering entries by transport name.
    pub const ALL: [Transport; 4] = [
        Transport::Mpls,
        Transport::Internet,
        Transport::Lte,
        Transport::Satellite,
    ];

    /// The name used in policy files.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Mpls => "mpls",
            Transport::Internet => "internet",
            Transport::Lte => "lte",
            Transport::Satellite => "satellite",
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One WAN line of a site.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Line {
    /// Name, unique within the site (e.g. `mpls`); steering lists refer to it.
    pub name: String,
    pub transport: Transport,
    /// The Linux interface the line leaves by.
    pub interface: String,
    /// Next hop for IPv4 on this line.
    #[serde(default)]
    pub gateway: Option<IpAddr>,
    /// Next hop for IPv6 on this line.
    #[serde(default)]
    pub gateway6: Option<Ipv6Addr>,
    /// Upstream capacity (site → WAN).
    pub up: Rate,
    /// Downstream capacity (WAN → site).
    pub down: Rate,
    /// Relative cost of carrying traffic on the line; cheaper lines win ties.
    #[serde(default = "default_cost")]
    pub cost: f64,
    /// Lower is preferred when classes do not say otherwise (1 = first choice).
    #[serde(default = "default_preference")]
    pub preference: u32,
    /// Where this line's probes go (`address[:port]`); default: the gateway at port 862.
    #[serde(default)]
    pub reflector: Option<Reflector>,
    /// Probe interval on this line; default `timers.probe_interval`.
    #[serde(default)]
    pub probe_interval: Option<Span>,
    /// On a hub: the site this line reaches (it carries only traffic to that site). Without
    /// it, a hub line named `<site>-<name>` reaches `<site>`.
    #[serde(default)]
    pub site: Option<String>,
}

fn default_cost() -> f64 {
    1.0
}

fn default_preference() -> u32 {
    100
}

/// One traffic class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Class {
    pub name: String,
    /// Strict priority between classes: 1 is served first.
    pub priority: u8,
    /// The DSCP the edge marks this class with, so transit sites classify without DPI.
    #[serde(default)]
    pub dscp: Dscp,
    /// Traffic belongs to the class when any rule matches (fields inside a rule all must).
    #[serde(default, rename = "match")]
    pub matches: Vec<MatchRule>,
    #[serde(default)]
    pub sla: Option<Sla>,
    #[serde(default)]
    pub steering: Steering,
    #[serde(default)]
    pub bandwidth: Bandwidth,
}

/// One match rule: every field given must match; empty fields match anything.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchRule {
    /// Destination or source prefixes (either end of the flow).
    #[serde(default)]
    pub prefixes: Vec<IpNet>,
    /// Destination ports or ranges (`443`, `16384-32767`).
    #[serde(default)]
    pub ports: Vec<PortRange>,
    #[serde(default)]
    pub protocols: Vec<Protocol>,
    /// DSCP already on the packet (e.g. set by an IP phone).
    #[serde(default)]
    pub dscp: Vec<Dscp>,
    /// Application names from the classifier's catalogue (`teams`, `zoom`, …).
    #[serde(default)]
    pub apps: Vec<String>,
    /// Domain suffixes learned from TLS/QUIC SNI, DNS and HTTP Host (`bloomberg.net`).
    #[serde(default)]
    pub domains: Vec<String>,
}

impl MatchRule {
    /// True when the rule has no condition at all and so matches every packet.
    pub fn is_catch_all(&self) -> bool {
        *self == MatchRule::default()
    }
}

/// An inclusive port range; a single port is a range of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    pub fn contains(self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }

    pub fn overlaps(self, other: PortRange) -> bool {
        self.first <= other.last && other.first <= self.last
    }
}

impl FromStr for PortRange {
    type Err = UnitError;
    fn from_str(text: &str) -> Result<Self, UnitError> {
        let hint = || {
            UnitError(format!(
                "`{text}` is not a port or port range; write e.g. `443` or `16384-32767`"
            ))
        };
        let (first, last) = match text.trim().split_once('-') {
            Some((first, last)) => (first.trim(), last.trim()),
            None => (text.trim(), text.trim()),
        };
        let first: u16 = first.parse().map_err(|_| hint())?;
        let last: u16 = last.parse().map_err(|_| hint())?;
        if first > last {
            return Err(UnitError(format!(
                "port range `{text}` runs backwards; write the lower port first"
            )));
        }
        Ok(PortRange { first, last })
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

impl Serialize for PortRange {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PortRange {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = PortRange;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port such as 443 or a range such as `16384-32767`")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<PortRange, E> {
                text.parse().map_err(|e: UnitError| E::custom(e))
            }
            fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<PortRange, E> {
                self.visit_str(&value.to_string())
            }
            fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<PortRange, E> {
                self.visit_str(&value.to_string())
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// IP protocols a match rule can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
    Icmp,
    Icmpv6,
    Sctp,
    Gre,
    Esp,
}

impl Protocol {
    /// The IANA protocol number.
    pub fn number(self) -> u8 {
        match self {
            Protocol::Icmp => 1,
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Gre => 47,
            Protocol::Esp => 50,
            Protocol::Icmpv6 => 58,
            Protocol::Sctp => 132,
        }
    }
}

/// What a class needs from a line. A line that breaks any bound is not used for the class.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sla {
    /// Maximum one-way latency (half the measured RTT).
    #[serde(default)]
    pub latency: Option<Span>,
    #[serde(default)]
    pub loss: Option<Percent>,
    #[serde(default)]
    pub jitter: Option<Span>,
}

/// Where a class may and may not go. Entries name a line (`mpls`) or a transport (`lte`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Steering {
    /// Lines in order of preference; lines not listed come after, by their own preference.
    #[serde(default)]
    pub prefer: Vec<String>,
    /// Lines the class must never use, even when every other line is down.
    #[serde(default)]
    pub never: Vec<String>,
    /// Spread the class over every line that meets its SLA instead of one line.
    #[serde(default)]
    pub load_sharing: bool,
}

/// The class's share of each line it runs on, in per cent of the line's capacity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bandwidth {
    /// Always available to the class when it has traffic.
    #[serde(default)]
    pub guaranteed: Percent,
    /// Never exceeded, even on an idle line.
    #[serde(default = "full_line")]
    pub ceiling: Percent,
}

fn full_line() -> Percent {
    Percent(100.0)
}

impl Default for Bandwidth {
    fn default() -> Self {
        Bandwidth {
            guaranteed: Percent(0.0),
            ceiling: full_line(),
        }
    }
}

/// Measurement and decision timers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timers {
    /// Gap between probes on each line (default 15ms: about 67 probes/s, ≈ 0.5% of a core
    /// per line, so a dead line is found in ≈ 150 ms).
    pub probe_interval: Span,
    /// A line is down after this many probes in a row go unanswered (default 8: a line
    /// losing 5% each way goes falsely down about once per 500 line-hours; 3 would be
    /// tens of times an hour).
    pub down_after_missed: u32,
    /// How long a line must stay healthy before classes move back to it (default 30s).
    pub hold_down: Span,
    /// A class moves to a better line only if its score improves by this much (default 10%).
    pub min_improvement: Percent,
    pub dampening: Dampening,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            probe_interval: Span(Duration::from_millis(15)),
            down_after_missed: 8,
            hold_down: Span(Duration::from_secs(30)),
            min_improvement: Percent(10.0),
            dampening: Dampening::default(),
        }
    }
}

/// Route-flap-style dampening of lines that keep failing and recovering.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Dampening {
    /// Penalty added on every failure of the line (default 1000).
    pub penalty: u32,
    /// The penalty halves over this time (default 1m).
    pub half_life: Span,
    /// Above this penalty the line is suppressed (default 2000).
    pub suppress: u32,
    /// Below this penalty a suppressed line may be used again (default 750).
    pub reuse: u32,
    /// A line is never suppressed longer than this (default 10m).
    pub max_suppress: Span,
}

impl Default for Dampening {
    fn default() -> Self {
        Dampening {
            penalty: 1000,
            half_life: Span(Duration::from_secs(60)),
            suppress: 2000,
            reuse: 750,
            max_suppress: Span(Duration::from_secs(600)),
        }
    }
}

impl Policy {
    /// The site with this name.
    pub fn site(&self, name: &str) -> Option<&Site> {
        self.sites.iter().find(|site| site.name == name)
    }

    /// The class with this name.
    pub fn class(&self, name: &str) -> Option<&Class> {
        self.classes.iter().find(|class| class.name == name)
    }

    /// The class unmatched traffic falls into: `default_class` if set, else a class named
    /// `default`, else the class with the lowest priority (largest number).
    pub fn default_class(&self) -> Option<&Class> {
        if let Some(name) = &self.default_class {
            return self.class(name);
        }
        self.class("default")
            .or_else(|| self.classes.iter().max_by_key(|class| class.priority))
    }
}

impl Line {
    /// True when a steering entry (a line name or a transport name) refers to this line.
    pub fn is_named_by(&self, entry: &str) -> bool {
        self.name == entry || self.transport.as_str() == entry
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
sites:
  - name: branch-1
    kind: branch
    lan: [10.1.0.0/24, "2001:db8:1::/64"]
    lines:
      - { name: mpls, transport: mpls, interface: wan0, gateway: 192.0.2.1, up: 50mbit, down: 50mbit }
      - { name: lte, transport: lte, interface: wan1, up: 20mbit, down: 20mbit, cost: 5 }
classes:
  - name: voice
    priority: 1
    dscp: EF
    match: [{ protocols: [udp], ports: ["16384-32767"] }]
    sla: { latency: 150ms, loss: 1%, jitter: 30ms }
    steering: { prefer: [mpls], never: [] }
    bandwidth: { guaranteed: 10%, ceiling: 30% }
  - name: default
    priority: 7
"#;

    #[test]
    fn minimal_policy_reads_with_defaults() {
        let policy: Policy = yaml_serde::from_str(MINIMAL).unwrap();
        let branch = policy.site("branch-1").unwrap();
        assert_eq!(branch.lan.len(), 2);
        assert_eq!(branch.lines[1].preference, 100);
        assert_eq!(branch.lines[1].cost, 5.0);
        let voice = policy.class("voice").unwrap();
        assert_eq!(voice.dscp, Dscp(46));
        assert!(voice.matches[0].ports[0].contains(20000));
        assert_eq!(voice.sla.as_ref().unwrap().loss, Some(Percent(1.0)));
        assert_eq!(policy.timers.down_after_missed, 8);
        assert_eq!(policy.default_class().unwrap().name, "default");
        let default = policy.class("default").unwrap();
        assert_eq!(default.bandwidth.ceiling, Percent(100.0));
    }

    #[test]
    fn unknown_keys_are_refused() {
        let typo = MINIMAL.replace("priority: 7", "priority: 7\n    prioity: 3");
        let error = yaml_serde::from_str::<Policy>(&typo)
            .unwrap_err()
            .to_string();
        assert!(error.contains("prioity"), "{error}");
    }

    #[test]
    fn steering_entries_name_lines_or_transports() {
        let policy: Policy = yaml_serde::from_str(MINIMAL).unwrap();
        let lte = &policy.sites[0].lines[1];
        assert!(lte.is_named_by("lte"));
        assert!(!lte.is_named_by("mpls"));
    }
}
