//! Topology files (`lab/topologies/*.yaml`) and the plan they expand to.
//!
//! A topology names sites (a DC hub, branches), the hosts on each site's LAN, the WAN lines
//! from one site to another with their line characteristics, and where the controller sits.
//! [`Topology::plan`] turns it, plus a per-run name prefix, into a [`Plan`]: plain data naming
//! every namespace, veth pair, address, route and sysctl. Building the plan into the kernel is
//! `netns.rs`/`lab.rs`; this module does no I/O, so addressing and naming are unit-tested.
//!
//! Shape of the network (one line shown):
//!
//! ```text
//!  host ns          site router ns               wan-<site>-<line> ns             hub router ns
//!  eth0 ──veth── p-<host> ⊂ bridge lan   <line> ──veth── near [emulator] far ──veth── <site>-<line>
//! ```
//!
//! The wan namespace is a layer-2 bump: its veths carry no addresses, the emulator moves frames.
//! Each line gets a transit subnet (IPv4 /24 and IPv6 /64) shared by both router ends.
//!
//! A line may also go `to:` a *cloud* the topology lists under `clouds:` (e.g. `internet`):
//! a router namespace of its own that forwards between every line attached to it, so sites
//! on one cloud reach each other directly (branch ↔ branch over the internet) next to their
//! point-to-point lines to the hub. Each attachment is an ordinary line (its own wan
//! namespace, emulator and impairments), ending on the cloud router instead of a site:
//!
//! ```text
//!  br1 router  inet ──veth── [wan-br1-inet emulator] ──veth── br1-inet ┐
//!                                                                     cloud router `internet`
//!  br2 router  inet ──veth── [wan-br2-inet emulator] ──veth── br2-inet ┘
//! ```
//!
//! The cloud router routes each attached site's LAN to that site's (first) attachment, as an
//! overlay tunnel would deliver it, and every attached site routes the other attachments'
//! transit subnets over its own attachment, so probes to a peer's cloud address and their
//! replies cross the cloud both ways.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::time::Duration;

use ipnet::{Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

use crate::emulator::model::{Impairment, JitterShape};
use crate::units::serde_units;

/// A topology file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    pub name: String,
    #[serde(default)]
    pub transit: Transit,
    pub sites: Vec<SiteSpec>,
    /// Shared transport networks lines can attach to (`to: <cloud>`).
    #[serde(default)]
    pub clouds: Vec<CloudSpec>,
    pub controller: Option<ControllerSpec>,
}

/// A shared network (the internet): a router every attached line ends on.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloudSpec {
    pub name: String,
}

/// Address pools the line subnets are cut from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transit {
    pub ipv4: Ipv4Net,
    pub ipv6: Ipv6Net,
}

impl Default for Transit {
    fn default() -> Self {
        Transit {
            ipv4: "172.16.0.0/16".parse().expect("valid"),
            ipv6: "fd57:ffff::/48".parse().expect("valid"),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteSpec {
    pub name: String,
    pub lan: LanSpec,
    #[serde(default)]
    pub hosts: Vec<String>,
    #[serde(default)]
    pub lines: Vec<LineSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LanSpec {
    pub ipv4: Ipv4Net,
    pub ipv6: Ipv6Net,
}

/// A WAN line from the site that lists it to site or cloud `to`. Figures are one-way, per
/// direction.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineSpec {
    pub name: String,
    pub to: String,
    #[serde(default, deserialize_with = "serde_units::opt_rate")]
    pub rate: Option<u64>,
    #[serde(default, deserialize_with = "serde_units::opt_duration")]
    pub delay: Option<Duration>,
    #[serde(default, deserialize_with = "serde_units::opt_duration")]
    pub jitter: Option<Duration>,
    #[serde(default)]
    pub jitter_shape: JitterShape,
    /// Let jitter reorder frames (default: keep order).
    #[serde(default)]
    pub reorder: bool,
    #[serde(default, deserialize_with = "serde_units::opt_ratio")]
    pub loss: Option<f64>,
    #[serde(default, deserialize_with = "serde_units::opt_duration")]
    pub queue: Option<Duration>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControllerSpec {
    /// The site whose LAN the controller namespace is attached to.
    pub site: String,
}

/// A topology file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {message}")]
    Syntax {
        path: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

const MAX_SITE: usize = 8;
const MAX_LINE: usize = 6;
const MAX_HOST: usize = 12;

fn valid_name(name: &str, max: usize) -> bool {
    !name.is_empty()
        && name.len() <= max
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
}

impl Topology {
    /// Reads and validates a topology file.
    pub fn load(path: &Path) -> Result<Topology, TopologyError> {
        let text = std::fs::read_to_string(path).map_err(|source| TopologyError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Topology::parse(&text, &path.display().to_string())
    }

    /// Parses and validates topology text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Topology, TopologyError> {
        let topology: Topology = yaml_serde::from_str(text).map_err(|e| {
            let (line, column) = e
                .location()
                .map(|l| (l.line(), l.column()))
                .unwrap_or((0, 0));
            TopologyError::Syntax {
                path: origin.to_string(),
                line,
                column,
                message: e.to_string(),
            }
        })?;
        topology
            .validate()
            .map_err(|message| TopologyError::Invalid {
                path: origin.to_string(),
                message,
            })?;
        Ok(topology)
    }

    fn validate(&self) -> Result<(), String> {
        let mut sites = BTreeSet::new();
        for site in &self.sites {
            if !valid_name(&site.name, MAX_SITE) {
                return Err(format!(
                    "site name `{}` must be 1-{MAX_SITE} lowercase letters/digits",
                    site.name
                ));
            }
            if !sites.insert(site.name.as_str()) {
                return Err(format!("site `{}` is defined twice", site.name));
            }
            let mut hosts = BTreeSet::new();
            for host in &site.hosts {
                if !valid_name(host, MAX_HOST) || host == "ctl" {
                    return Err(format!(
                        "host name `{host}` must be 1-{MAX_HOST} lowercase letters/digits, not `ctl`"
                    ));
                }
                if !hosts.insert(host) {
                    return Err(format!(
                        "host `{host}` appears twice in site `{}`",
                        site.name
                    ));
                }
            }
            if site.hosts.len() > 200 {
                return Err(format!("site `{}` has more than 200 hosts", site.name));
            }
            if site.lan.ipv4.prefix_len() > 24 || site.lan.ipv6.prefix_len() > 120 {
                return Err(format!(
                    "site `{}`: LAN prefixes must be /24 or larger (v4), /120 or larger (v6)",
                    site.name
                ));
            }
        }
        let mut clouds = BTreeSet::new();
        for cloud in &self.clouds {
            if !valid_name(&cloud.name, MAX_SITE) {
                return Err(format!(
                    "cloud name `{}` must be 1-{MAX_SITE} lowercase letters/digits",
                    cloud.name
                ));
            }
            if sites.contains(cloud.name.as_str()) || !clouds.insert(cloud.name.as_str()) {
                return Err(format!(
                    "cloud `{}` is defined twice (or also names a site)",
                    cloud.name
                ));
            }
        }
        let mut line_names = BTreeSet::new();
        for site in &self.sites {
            for line in &site.lines {
                if !valid_name(&line.name, MAX_LINE) {
                    return Err(format!(
                        "line name `{}` must be 1-{MAX_LINE} lowercase letters/digits",
                        line.name
                    ));
                }
                if !sites.contains(line.to.as_str()) && !clouds.contains(line.to.as_str()) {
                    return Err(format!(
                        "line `{}-{}` goes to unknown site or cloud `{}`",
                        site.name, line.name, line.to
                    ));
                }
                if line.to == site.name {
                    return Err(format!(
                        "line `{}-{}` loops to its own site",
                        site.name, line.name
                    ));
                }
                if !line_names.insert((site.name.as_str(), line.name.as_str())) {
                    return Err(format!(
                        "line `{}-{}` is defined twice",
                        site.name, line.name
                    ));
                }
                if let Some(loss) = line.loss
                    && !(0.0..1.0).contains(&loss)
                {
                    return Err(format!(
                        "line `{}-{}`: loss must be below 100%",
                        site.name, line.name
                    ));
                }
            }
        }
        for cloud in &self.clouds {
            let attached: BTreeSet<&str> = self
                .sites
                .iter()
                .filter(|s| s.lines.iter().any(|l| l.to == cloud.name))
                .map(|s| s.name.as_str())
                .collect();
            if attached.len() < 2 {
                return Err(format!(
                    "cloud `{}` needs lines from at least two sites (it has {})",
                    cloud.name,
                    attached.len()
                ));
            }
        }
        if line_names.len() > 250 {
            return Err("at most 250 lines".into());
        }
        if self.transit.ipv4.prefix_len() > 16 || self.transit.ipv6.prefix_len() > 48 {
            return Err("transit pools must be IPv4 /16 and IPv6 /48 or larger".into());
        }
        if let Some(c) = &self.controller
            && !sites.contains(c.site.as_str())
        {
            return Err(format!("controller attached to unknown site `{}`", c.site));
        }
        Ok(())
    }

    /// Expands the topology into namespaces, links and addresses for run `prefix`.
    pub fn plan(&self, prefix: &str) -> Plan {
        let mut plan = Plan {
            prefix: prefix.to_string(),
            topology: self.name.clone(),
            ..Plan::default()
        };
        let router_ns = |site: &str| format!("{prefix}-{site}");
        // Routers first, so their sysctls and bridge exist before anything links to them.
        for site in &self.sites {
            let lan_v4 = nth_v4(site.lan.ipv4, 1);
            let lan_v6 = nth_v6(site.lan.ipv6, 1);
            plan.namespaces.push(Namespace {
                name: router_ns(&site.name),
                role: Role::Router,
                node: site.name.clone(),
                commands: vec![
                    "link add lan type bridge".into(),
                    "link set lan up".into(),
                    format!("addr add {lan_v4}/{} dev lan", site.lan.ipv4.prefix_len()),
                    format!(
                        "addr add {lan_v6}/{} dev lan nodad",
                        site.lan.ipv6.prefix_len()
                    ),
                ],
                tx_offload_off: vec![],
                gro_off: vec![],
                addresses: vec![IpAddr::V4(lan_v4), IpAddr::V6(lan_v6)],
            });
        }
        // Cloud routers: plain forwarding namespaces the attached lines end on.
        for cloud in &self.clouds {
            plan.namespaces.push(Namespace {
                name: router_ns(&cloud.name),
                role: Role::Cloud,
                node: cloud.name.clone(),
                commands: vec![],
                tx_offload_off: vec![],
                gro_off: vec![],
                addresses: vec![],
            });
        }
        // Hosts and the controller on site LANs.
        let attach = |plan: &mut Plan, site: &SiteSpec, host: &str, index: u32, ns: String| {
            let v4 = nth_v4(site.lan.ipv4, index);
            let v6 = nth_v6(site.lan.ipv6, index);
            let port = format!("p-{host}");
            plan.veths.push(Veth {
                a_ns: ns.clone(),
                a_name: "eth0".into(),
                b_ns: router_ns(&site.name),
                b_name: port.clone(),
            });
            let router = plan
                .namespaces
                .iter_mut()
                .find(|n| n.name == router_ns(&site.name))
                .expect("router planned");
            router.commands.push(format!("link set {port} master lan"));
            router.commands.push(format!("link set {port} up"));
            plan.namespaces.push(Namespace {
                name: ns,
                role: if host == "ctl" {
                    Role::Controller
                } else {
                    Role::Host
                },
                node: if host == "ctl" {
                    "ctl".into()
                } else {
                    format!("{}-{host}", site.name)
                },
                commands: vec![
                    "link set eth0 up".into(),
                    format!("addr add {v4}/{} dev eth0", site.lan.ipv4.prefix_len()),
                    format!(
                        "addr add {v6}/{} dev eth0 nodad",
                        site.lan.ipv6.prefix_len()
                    ),
                    format!("route add default via {}", nth_v4(site.lan.ipv4, 1)),
                    format!("route add default via {}", nth_v6(site.lan.ipv6, 1)),
                ],
                tx_offload_off: vec![],
                gro_off: vec![],
                addresses: vec![IpAddr::V4(v4), IpAddr::V6(v6)],
            });
        };
        for site in &self.sites {
            for (j, host) in site.hosts.iter().enumerate() {
                let ns = format!("{prefix}-{}-{host}", site.name);
                attach(&mut plan, site, host, 10 + j as u32, ns);
            }
        }
        if let Some(c) = &self.controller {
            let site = self
                .sites
                .iter()
                .find(|s| s.name == c.site)
                .expect("validated");
            attach(&mut plan, site, "ctl", 5, format!("{prefix}-ctl"));
        }
        // Lines: a wan namespace between the two router ends.
        let mut first_line_of = std::collections::BTreeMap::new();
        // Per cloud: each attached site's first attachment (site, its subnets, cloud gateways).
        let mut attachments: std::collections::BTreeMap<&str, Vec<Attachment>> =
            std::collections::BTreeMap::new();
        let mut index = 0u32;
        for site in &self.sites {
            for line in &site.lines {
                index += 1;
                let id = format!("{}-{}", site.name, line.name);
                let wan_ns = format!("{prefix}-wan-{id}");
                let near_v4 = nth_v4(transit_v4(self.transit.ipv4, index), 1);
                let far_v4 = nth_v4(transit_v4(self.transit.ipv4, index), 2);
                let near_v6 = nth_v6(transit_v6(self.transit.ipv6, index), 1);
                let far_v6 = nth_v6(transit_v6(self.transit.ipv6, index), 2);
                let hub_if = id.clone();
                plan.veths.push(Veth {
                    a_ns: router_ns(&site.name),
                    a_name: line.name.clone(),
                    b_ns: wan_ns.clone(),
                    b_name: "near".into(),
                });
                plan.veths.push(Veth {
                    a_ns: wan_ns.clone(),
                    a_name: "far".into(),
                    b_ns: router_ns(&line.to),
                    b_name: hub_if.clone(),
                });
                for (ns, dev, v4, v6) in [
                    (router_ns(&site.name), line.name.as_str(), near_v4, near_v6),
                    (router_ns(&line.to), hub_if.as_str(), far_v4, far_v6),
                ] {
                    let n = plan
                        .namespaces
                        .iter_mut()
                        .find(|n| n.name == ns)
                        .expect("router");
                    n.commands.push(format!("link set {dev} up"));
                    n.commands.push(format!("addr add {v4}/24 dev {dev}"));
                    n.commands.push(format!("addr add {v6}/64 dev {dev} nodad"));
                    // Checksum offload off where frames enter the wan namespace (DESIGN §6).
                    n.tx_offload_off.push(dev.to_string());
                    n.addresses.push(IpAddr::V4(v4));
                    n.addresses.push(IpAddr::V6(v6));
                }
                plan.namespaces.push(Namespace {
                    name: wan_ns.clone(),
                    role: Role::Wan,
                    node: format!("wan-{id}"),
                    commands: vec!["link set near up".into(), "link set far up".into()],
                    tx_offload_off: vec![],
                    gro_off: vec!["near".into(), "far".into()],
                    addresses: vec![],
                });
                let first_to_there =
                    !first_line_of.contains_key(&(site.name.clone(), line.to.clone()));
                first_line_of
                    .entry((site.name.clone(), line.to.clone()))
                    .or_insert((near_v4, near_v6, far_v4, far_v6));
                if first_to_there && self.clouds.iter().any(|c| c.name == line.to) {
                    attachments
                        .entry(line.to.as_str())
                        .or_default()
                        .push(Attachment {
                            site: site.name.clone(),
                            subnet_v4: transit_v4(self.transit.ipv4, index),
                            subnet_v6: transit_v6(self.transit.ipv6, index),
                            gateway_v4: far_v4,
                            gateway_v6: far_v6,
                        });
                }
                if !plan.lines.iter().any(|l| l.site == site.name) {
                    // The site's first line carries its default route.
                    let n = plan
                        .namespaces
                        .iter_mut()
                        .find(|n| n.name == router_ns(&site.name))
                        .expect("router");
                    n.commands.push(format!("route add default via {far_v4}"));
                    n.commands.push(format!("route add default via {far_v6}"));
                }
                plan.lines.push(Line {
                    id,
                    site: site.name.clone(),
                    to: line.to.clone(),
                    namespace: wan_ns,
                    near_router: router_ns(&site.name),
                    far_router: router_ns(&line.to),
                    near_dev: line.name.clone(),
                    far_dev: hub_if,
                    near_addresses: vec![IpAddr::V4(near_v4), IpAddr::V6(near_v6)],
                    far_addresses: vec![IpAddr::V4(far_v4), IpAddr::V6(far_v6)],
                    baseline: line.impairment(),
                });
            }
        }
        // The far end reaches each site's LAN over that site's first line to it.
        for ((site_name, to), (near_v4, near_v6, _, _)) in &first_line_of {
            let site = self
                .sites
                .iter()
                .find(|s| &s.name == site_name)
                .expect("site");
            let n = plan
                .namespaces
                .iter_mut()
                .find(|n| n.name == router_ns(to))
                .expect("router");
            n.commands
                .push(format!("route add {} via {near_v4}", site.lan.ipv4.trunc()));
            n.commands
                .push(format!("route add {} via {near_v6}", site.lan.ipv6.trunc()));
        }
        // Sites on one cloud reach the other attachments' subnets over their own attachment
        // (probes to a peer's cloud address, and the peer's replies).
        for members in attachments.values() {
            for here in members {
                let n = plan
                    .namespaces
                    .iter_mut()
                    .find(|n| n.name == router_ns(&here.site))
                    .expect("router");
                for there in members.iter().filter(|a| a.site != here.site) {
                    n.commands.push(format!(
                        "route add {} via {}",
                        there.subnet_v4, here.gateway_v4
                    ));
                    n.commands.push(format!(
                        "route add {} via {}",
                        there.subnet_v6, here.gateway_v6
                    ));
                }
            }
        }
        plan
    }
}

/// One site's (first) line into a cloud, as the other attached sites route to it.
struct Attachment {
    site: String,
    subnet_v4: Ipv4Net,
    subnet_v6: Ipv6Net,
    /// The cloud router's address on this attachment.
    gateway_v4: Ipv4Addr,
    gateway_v6: Ipv6Addr,
}

impl LineSpec {
    /// The line's own characteristics, before any run-time impairment.
    pub fn impairment(&self) -> Impairment {
        let micros = |d: Option<Duration>| d.map(|d| d.as_micros() as u64).unwrap_or(0);
        Impairment {
            delay_us: micros(self.delay),
            jitter_us: micros(self.jitter),
            jitter_shape: self.jitter_shape,
            reorder: self.reorder,
            loss: match self.loss {
                Some(p) if p > 0.0 => crate::emulator::loss::Loss::Random { p },
                _ => crate::emulator::loss::Loss::None,
            },
            rate_bps: self.rate,
            queue_us: self.queue.map(|q| q.as_micros() as u64).unwrap_or(100_000),
            down: false,
        }
    }
}

fn nth_v4(net: Ipv4Net, n: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(net.network()) + n)
}

fn nth_v6(net: Ipv6Net, n: u32) -> Ipv6Addr {
    Ipv6Addr::from(u128::from(net.network()) + n as u128)
}

fn transit_v4(pool: Ipv4Net, index: u32) -> Ipv4Net {
    Ipv4Net::new(Ipv4Addr::from(u32::from(pool.network()) + (index << 8)), 24).expect("/24")
}

fn transit_v6(pool: Ipv6Net, index: u32) -> Ipv6Net {
    Ipv6Net::new(
        Ipv6Addr::from(u128::from(pool.network()) + ((index as u128) << 64)),
        64,
    )
    .expect("/64")
}

/// What a namespace is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A site's router (where its agent runs).
    Router,
    /// A LAN host.
    Host,
    /// The controller's namespace.
    Controller,
    /// A line's layer-2 bump running the emulator.
    Wan,
    /// A shared network's router (the internet): forwards between the lines attached to it.
    Cloud,
}

/// One namespace and what to run inside it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Namespace {
    pub name: String,
    pub role: Role,
    /// Name users give on the command line (`br1`, `br1-pc1`, `ctl`, `wan-br1-mpls`).
    pub node: String,
    /// `ip -batch` lines run inside the namespace, in order.
    pub commands: Vec<String>,
    /// Devices that send into a wan namespace: checksum offload off.
    pub tx_offload_off: Vec<String>,
    /// The emulator's own devices: GRO off so frames stay MTU-sized.
    pub gro_off: Vec<String>,
    pub addresses: Vec<IpAddr>,
}

/// A veth pair created straight into two namespaces.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Veth {
    pub a_ns: String,
    pub a_name: String,
    pub b_ns: String,
    pub b_name: String,
}

/// One WAN line as built.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Line {
    /// `<site>-<line>`, e.g. `br1-mpls`.
    pub id: String,
    pub site: String,
    /// The far site, or the cloud the line attaches to.
    pub to: String,
    pub namespace: String,
    pub near_router: String,
    pub far_router: String,
    pub near_dev: String,
    pub far_dev: String,
    pub near_addresses: Vec<IpAddr>,
    pub far_addresses: Vec<IpAddr>,
    pub baseline: Impairment,
}

/// Everything a topology expands to for one run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Plan {
    pub prefix: String,
    pub topology: String,
    pub namespaces: Vec<Namespace>,
    pub veths: Vec<Veth>,
    pub lines: Vec<Line>,
}

impl Plan {
    /// Finds a namespace by the node name users type, or by its full name.
    pub fn namespace_of(&self, node: &str) -> Option<&Namespace> {
        self.namespaces
            .iter()
            .find(|n| n.node == node || n.name == node)
    }

    pub fn line(&self, id: &str) -> Option<&Line> {
        self.lines.iter().find(|l| l.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BANK: &str = include_str!("../topologies/bank.yaml");

    #[test]
    fn bank_topology_expands_to_namespaces_and_lines() {
        let topo = Topology::parse(BANK, "bank.yaml").unwrap();
        let plan = topo.plan("wl0001");
        let ids: Vec<&str> = plan.lines.iter().map(|l| l.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "br1-mpls", "br1-inet", "br1-lte", "br2-mpls", "br2-inet", "br2-lte"
            ]
        );
        let mpls = plan.line("br1-mpls").unwrap();
        assert_eq!(mpls.baseline.rate_bps, Some(50_000_000));
        assert_eq!(mpls.baseline.delay_us, 10_000);
        assert_eq!(mpls.namespace, "wl0001-wan-br1-mpls");
        assert_eq!(mpls.far_router, "wl0001-dc");
        let lte = plan.line("br2-lte").unwrap();
        assert!(lte.baseline.jitter_us > 0);
        assert_eq!(lte.baseline.rate_bps, Some(20_000_000));
        // Every namespace is prefixed; every veth end lives in a planned namespace.
        let names: BTreeSet<&str> = plan.namespaces.iter().map(|n| n.name.as_str()).collect();
        assert!(names.iter().all(|n| n.starts_with("wl0001-")));
        assert_eq!(names.len(), plan.namespaces.len());
        for v in &plan.veths {
            assert!(names.contains(v.a_ns.as_str()) && names.contains(v.b_ns.as_str()));
            assert!(v.a_name.len() <= 15 && v.b_name.len() <= 15);
        }
        assert!(plan.namespace_of("ctl").is_some());
        assert!(plan.namespace_of("dc-dc1").is_some());
    }

    #[test]
    fn transit_addresses_are_distinct_per_line_and_dual_stack() {
        let plan = Topology::parse(BANK, "bank.yaml").unwrap().plan("wl0001");
        let mut seen = BTreeSet::new();
        for line in &plan.lines {
            for a in line.near_addresses.iter().chain(&line.far_addresses) {
                assert!(seen.insert(*a), "{a} used twice");
            }
            assert!(line.near_addresses.iter().any(IpAddr::is_ipv6));
        }
        let first = plan.line("br1-mpls").unwrap();
        assert_eq!(first.near_addresses[0].to_string(), "172.16.1.1");
        assert_eq!(first.far_addresses[1].to_string(), "fd57:ffff:0:1::2");
    }

    #[test]
    fn hub_routes_each_branch_lan_over_its_first_line() {
        let plan = Topology::parse(BANK, "bank.yaml").unwrap().plan("wl0001");
        let dc = plan.namespace_of("dc").unwrap();
        let routes: Vec<&String> = dc.commands.iter().filter(|c| c.contains("route")).collect();
        assert!(
            routes
                .iter()
                .any(|r| r.starts_with("route add 10.1.0.0/24 via 172.16.1.1"))
        );
        assert!(
            routes
                .iter()
                .any(|r| r.starts_with("route add 10.2.0.0/24 via 172.16.4.1"))
        );
        let br1 = plan.namespace_of("br1").unwrap();
        assert!(
            br1.commands
                .contains(&"route add default via 172.16.1.2".to_string())
        );
        assert_eq!(br1.tx_offload_off, ["mpls", "inet", "lte"]);
    }

    const MESH: &str = include_str!("../topologies/bank-mesh.yaml");

    #[test]
    fn mesh_topology_attaches_both_branches_to_one_internet_router() {
        let plan = Topology::parse(MESH, "bank-mesh.yaml")
            .unwrap()
            .plan("wl0002");
        let ids: Vec<&str> = plan.lines.iter().map(|l| l.id.as_str()).collect();
        assert_eq!(ids, ["br1-mpls", "br1-inet", "br2-mpls", "br2-inet"]);
        let cloud = plan.namespace_of("internet").unwrap();
        assert_eq!(cloud.role, Role::Cloud);
        assert_eq!(cloud.name, "wl0002-internet");
        // Both internet lines end on the cloud router, each with its own emulator namespace.
        for id in ["br1-inet", "br2-inet"] {
            let line = plan.line(id).unwrap();
            assert_eq!(line.to, "internet");
            assert_eq!(line.far_router, "wl0002-internet");
            assert_eq!(line.namespace, format!("wl0002-wan-{id}"));
            assert_eq!(line.baseline.delay_us, 10_000);
        }
        assert_eq!(plan.line("br2-mpls").unwrap().far_router, "wl0002-dc");
        // The cloud delivers each branch LAN over that branch's attachment.
        assert!(
            cloud
                .commands
                .contains(&"route add 10.1.0.0/24 via 172.16.2.1".to_string())
        );
        assert!(
            cloud
                .commands
                .contains(&"route add 10.2.0.0/24 via 172.16.4.1".to_string())
        );
        assert!(
            cloud
                .commands
                .contains(&"route add fd57:0:0:2::/64 via fd57:ffff:0:4::1".to_string())
        );
        // br1 reaches br2's internet address over its own attachment (probes and replies),
        // and its default route stays on its first line (mpls to the DC).
        let br1 = plan.namespace_of("br1").unwrap();
        assert!(
            br1.commands
                .contains(&"route add 172.16.4.0/24 via 172.16.2.2".to_string())
        );
        assert!(
            br1.commands
                .contains(&"route add default via 172.16.1.2".to_string())
        );
        let br2 = plan.namespace_of("br2").unwrap();
        assert!(
            br2.commands
                .contains(&"route add 172.16.2.0/24 via 172.16.4.2".to_string())
        );
        // The DC knows nothing of the internet: branch traffic via the hub uses mpls only.
        let dc = plan.namespace_of("dc").unwrap();
        assert!(!dc.commands.iter().any(|c| c.contains("172.16.2.")));
        // Only site routers run agents.
        let routers: Vec<&str> = plan
            .namespaces
            .iter()
            .filter(|n| n.role == Role::Router)
            .map(|n| n.node.as_str())
            .collect();
        assert_eq!(routers, ["dc", "br1", "br2"]);
    }

    #[test]
    fn clouds_are_checked() {
        let lonely = MESH.replacen("to: internet", "to: dc", 1);
        let err = Topology::parse(&lonely, "m.yaml").unwrap_err().to_string();
        assert!(
            err.contains("cloud `internet` needs lines from at least two sites"),
            "{err}"
        );
        let clash = MESH.replace("  - name: internet", "  - name: br1");
        let err = Topology::parse(&clash, "m.yaml").unwrap_err().to_string();
        assert!(err.contains("cloud `br1` is defined twice"), "{err}");
        let bad = MESH.replace("  - name: internet", "  - name: Internet");
        let err = Topology::parse(&bad, "m.yaml").unwrap_err().to_string();
        assert!(err.contains("cloud name `Internet`"), "{err}");
    }

    #[test]
    fn errors_name_file_line_and_column() {
        let bad = "name: x\nsites:\n  - name: dc\n    lan: {ipv4: 10.0.0.0/24, ipv6: 'fd00::/64'}\n    hostz: []\n";
        let err = Topology::parse(bad, "t.yaml").unwrap_err().to_string();
        assert!(err.starts_with("t.yaml:5:"), "{err}");
        let bad_rate = BANK.replace("rate: 50mbit", "rate: 50megs");
        let err = Topology::parse(&bad_rate, "bank.yaml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("invalid rate `50megs`"), "{err}");
        let unknown = BANK.replacen("to: dc", "to: nowhere", 1);
        let err = Topology::parse(&unknown, "bank.yaml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown site or cloud `nowhere`"), "{err}");
    }
}
