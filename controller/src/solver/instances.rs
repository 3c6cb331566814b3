//! Problem instances for tests and benchmarks: generated SD-WAN networks (a policy with
//! measurements and demand, fed through the planner) and the public WAN topologies in
//! `shared/topologies` (SNDlib with their demand matrices, Topology Zoo with a gravity
//! model) turned straight into allocator problems.
//!
//! Everything is seeded and deterministic. Conventions for the public topologies, as the
//! TE papers use them: every link 1000 Mb/s each way, latency 5 µs per km of fibre (plus
//! 0.1 ms per hop), 4 arc-disjoint shortest paths per pair, and three classes per demand —
//! 20% with a tight latency SLA (≤ 1.2 × the pair's shortest latency + 2 ms), 30% with a
//! loose one (≤ 2 × + 5 ms), 50% best effort. A *load level* scales the demand so that
//! routing all of it on shortest paths would fill the busiest link to that multiple.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::time::Duration;

use ipnet::IpNet;
use wansteer_policies::Policy;
use wansteer_policies::model::{
    Bandwidth, Class, Line, Site, SiteKind, Sla, Steering, Timers, Transport,
};
use wansteer_policies::units::{Dscp, Percent, Rate, Span};

use crate::graph::{LineHealth, LineMeasurement};
use crate::plan::ClassDemand;
use crate::solver::alloc::{Commodity, Paths};

/// A small deterministic generator (SplitMix64), so instances never depend on a crate's
/// RNG algorithm changing.
#[derive(Debug, Clone)]
pub struct Seeded(u64);

impl Seeded {
    pub fn new(seed: u64) -> Seeded {
        Seeded(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[low, high)`.
    pub fn uniform(&mut self, low: f64, high: f64) -> f64 {
        let unit = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        low + unit * (high - low)
    }

    /// Uniform index below `n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

/// A plain allocator problem (no SD-WAN semantics).
#[derive(Debug, Clone)]
pub struct Instance {
    pub name: String,
    pub capacity: Vec<f64>,
    pub paths: Paths,
    pub commodities: Vec<Commodity>,
}

/// Shape of a generated SD-WAN network.
#[derive(Debug, Clone)]
pub struct SdwanSpec {
    pub branches: usize,
    pub hubs: usize,
    pub dcs: usize,
    /// Number of traffic classes (1..=8).
    pub classes: usize,
    /// Demand as a multiple of capacity: each branch's demand against its MPLS + internet
    /// lines, and each DC's lines are sized to run at the same multiple.
    pub load: f64,
    /// Share of lines reported down.
    pub down_share: f64,
    /// Also generate DC → branch demand (downloads), not only branch → DC.
    pub both_directions: bool,
}

const CLASS_SHARES: [f64; 8] = [0.05, 0.15, 0.10, 0.10, 0.10, 0.10, 0.20, 0.20];

fn class(index: usize) -> Class {
    let ms = |v: u64| Some(Span(Duration::from_millis(v)));
    let (name, sla, steering, dscp) = match index {
        0 => (
            "voice",
            Some(Sla {
                latency: ms(75),
                loss: Some(Percent(1.0)),
                jitter: ms(20),
            }),
            Steering {
                prefer: vec!["mpls".into()],
                never: vec!["satellite".into()],
                load_sharing: false,
            },
            46,
        ),
        1 => (
            "video",
            Some(Sla {
                latency: ms(150),
                loss: Some(Percent(2.0)),
                jitter: ms(40),
            }),
            Steering::default(),
            34,
        ),
        2 => (
            "trading",
            Some(Sla {
                latency: ms(60),
                loss: Some(Percent(0.5)),
                jitter: None,
            }),
            Steering {
                prefer: vec!["mpls".into()],
                never: vec!["lte".into()],
                load_sharing: false,
            },
            26,
        ),
        3 => (
            "business",
            Some(Sla {
                latency: ms(200),
                loss: Some(Percent(2.0)),
                jitter: None,
            }),
            Steering::default(),
            18,
        ),
        4 => ("backup", None, Steering::default(), 8),
        5 => (
            "web",
            Some(Sla {
                latency: ms(300),
                loss: Some(Percent(5.0)),
                jitter: None,
            }),
            Steering {
                prefer: vec!["internet".into()],
                never: vec![],
                load_sharing: false,
            },
            10,
        ),
        6 => ("bulk", None, Steering::default(), 8),
        _ => ("default", None, Steering::default(), 0),
    };
    Class {
        name: name.into(),
        priority: index as u8 + 1,
        dscp: Dscp(dscp),
        matches: vec![],
        sla,
        steering,
        bandwidth: Bandwidth {
            guaranteed: Percent(if index == 0 { 5.0 } else { 0.0 }),
            ceiling: Percent(100.0),
        },
    }
}

fn line(name: &str, transport: Transport, mbit: f64, cost: f64, preference: u32) -> Line {
    let rate = Rate((mbit * 1e6).round() as u64);
    Line {
        name: name.into(),
        transport,
        interface: format!("wan-{name}"),
        gateway: None,
        gateway6: None,
        up: rate,
        down: rate,
        cost,
        preference,
        reflector: None,
        probe_interval: None,
        site: None,
    }
}

fn lan(index: usize) -> IpNet {
    let a = (index >> 8) as u8;
    let b = (index & 0xff) as u8;
    format!("10.{a}.{b}.0/24").parse().expect("valid prefix")
}

/// A generated SD-WAN network: the policy, one measurement per line, and class demand.
pub fn sdwan(spec: &SdwanSpec, seed: u64) -> (Policy, Vec<LineMeasurement>, Vec<ClassDemand>) {
    let mut rng = Seeded::new(seed);
    let mut sites = Vec::new();
    let mut measurements = Vec::new();
    let measure = |rng: &mut Seeded,
                   site: &str,
                   line: &str,
                   rtt: (f64, f64),
                   loss: (f64, f64),
                   jitter: (f64, f64)| {
        let down = rng.uniform(0.0, 1.0) < spec.down_share;
        LineMeasurement {
            site: site.into(),
            line: line.into(),
            rtt: Duration::from_secs_f64(rng.uniform(rtt.0, rtt.1) / 1000.0),
            loss: rng.uniform(loss.0, loss.1),
            jitter: Duration::from_secs_f64(rng.uniform(jitter.0, jitter.1) / 1000.0),
            health: if down {
                LineHealth::Down
            } else {
                LineHealth::Up
            },
            at: Duration::ZERO,
        }
    };
    let mut branch_capacity = Vec::new();
    for b in 0..spec.branches {
        let name = format!("br{b:05}");
        let mpls = rng.uniform(10.0, 100.0).round();
        let inet = rng.uniform(50.0, 500.0).round();
        let lte = rng.uniform(10.0, 50.0).round();
        branch_capacity.push(mpls + inet);
        sites.push(Site {
            name: name.clone(),
            kind: SiteKind::Branch,
            lan: vec![lan(b)],
            lines: vec![
                line("mpls", Transport::Mpls, mpls, 1.0, 10),
                line("inet", Transport::Internet, inet, 1.0, 20),
                line("lte", Transport::Lte, lte, 5.0, 90),
            ],
        });
        measurements.push(measure(
            &mut rng,
            &name,
            "mpls",
            (10.0, 40.0),
            (0.0, 0.003),
            (0.2, 3.0),
        ));
        measurements.push(measure(
            &mut rng,
            &name,
            "inet",
            (15.0, 80.0),
            (0.0, 0.015),
            (1.0, 10.0),
        ));
        measurements.push(measure(
            &mut rng,
            &name,
            "lte",
            (40.0, 140.0),
            (0.0, 0.03),
            (5.0, 30.0),
        ));
    }
    let classes: Vec<Class> = (0..spec.classes.clamp(1, 8))
        .map(|i| {
            if i + 1 == spec.classes && i < 7 {
                class(7)
            } else {
                class(i)
            }
        })
        .collect();
    let share_total: f64 = classes
        .iter()
        .map(|c| CLASS_SHARES[usize::from(c.priority - 1).min(7)])
        .sum();
    let mut demands = Vec::new();
    let mut to_dc = vec![0.0; spec.dcs];
    let mut from_dc = vec![0.0; spec.dcs];
    for (b, capacity) in branch_capacity.iter().enumerate() {
        let total = capacity * spec.load * rng.uniform(0.6, 1.4) * 1e6;
        for d in 0..spec.dcs {
            let towards = total / spec.dcs as f64 * rng.uniform(0.5, 1.5);
            for c in &classes {
                let share = CLASS_SHARES[usize::from(c.priority - 1).min(7)] / share_total;
                let bps = towards * share * rng.uniform(0.5, 1.5);
                to_dc[d] += bps;
                demands.push(ClassDemand {
                    site: format!("br{b:05}"),
                    class: c.name.clone(),
                    destination: format!("dc{d}"),
                    bps,
                });
                if spec.both_directions {
                    let back = bps * rng.uniform(0.5, 1.5);
                    from_dc[d] += back;
                    demands.push(ClassDemand {
                        site: format!("dc{d}"),
                        class: c.name.clone(),
                        destination: format!("br{b:05}"),
                        bps: back,
                    });
                }
            }
        }
    }
    // DC lines are sized so the DCs run at the same load as the branches (two lines each);
    // hubs get half a DC line, so transit through them contends too.
    let dc_mbit: Vec<f64> = (0..spec.dcs)
        .map(|d| {
            (to_dc[d].max(from_dc[d]) / 1e6 / 2.0 / spec.load)
                .max(100.0)
                .round()
        })
        .collect();
    let hub_mbit = (dc_mbit.iter().sum::<f64>() / spec.dcs.max(1) as f64 / 2.0).round();
    for h in 0..spec.hubs {
        let name = format!("hub{h}");
        sites.push(Site {
            name: name.clone(),
            kind: SiteKind::Hub,
            lan: vec![],
            lines: vec![
                line("mpls", Transport::Mpls, hub_mbit, 1.0, 10),
                line("inet", Transport::Internet, hub_mbit, 1.0, 20),
            ],
        });
        measurements.push(measure(
            &mut rng,
            &name,
            "mpls",
            (1.0, 4.0),
            (0.0, 0.0005),
            (0.1, 0.5),
        ));
        measurements.push(measure(
            &mut rng,
            &name,
            "inet",
            (1.0, 4.0),
            (0.0, 0.001),
            (0.1, 0.5),
        ));
    }
    for (d, &mbit) in dc_mbit.iter().enumerate() {
        let name = format!("dc{d}");
        sites.push(Site {
            name: name.clone(),
            kind: SiteKind::Dc,
            lan: vec![
                format!("172.{}.0.0/16", 16 + d)
                    .parse()
                    .expect("valid prefix"),
            ],
            lines: vec![
                line("mpls", Transport::Mpls, mbit, 1.0, 10),
                line("inet", Transport::Internet, mbit, 1.0, 20),
            ],
        });
        measurements.push(measure(
            &mut rng,
            &name,
            "mpls",
            (1.0, 3.0),
            (0.0, 0.0005),
            (0.1, 0.5),
        ));
        measurements.push(measure(
            &mut rng,
            &name,
            "inet",
            (1.0, 3.0),
            (0.0, 0.001),
            (0.1, 0.5),
        ));
    }
    let policy = Policy {
        name: Some(format!("generated-{seed}")),
        sites,
        classes,
        default_class: None,
        timers: Timers::default(),
    };
    (policy, measurements, demands)
}

/// An undirected graph with per-edge latency and a demand matrix (nodes 0..n).
#[derive(Debug, Clone)]
pub struct Topology {
    pub name: String,
    pub nodes: usize,
    /// `(a, b, latency_ms)`.
    pub edges: Vec<(usize, usize, f64)>,
    /// `(src, dst, demand)` in arbitrary units.
    pub demands: Vec<(usize, usize, f64)>,
}

/// Reads an SNDlib network in networkx node-link JSON (`graph.demands[src][dst]`).
pub fn read_sndlib_json(name: &str, text: &str) -> Result<Topology, String> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let nodes = value["nodes"].as_array().ok_or("no nodes")?;
    let ids: BTreeMap<String, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n["id"].to_string().trim_matches('"').to_string(), i))
        .collect();
    let id_of = |v: &serde_json::Value| -> Result<usize, String> {
        let key = v.to_string().trim_matches('"').to_string();
        ids.get(&key).copied().ok_or(format!("unknown node {key}"))
    };
    let mut edges = Vec::new();
    for edge in value["edges"].as_array().ok_or("no edges")? {
        let km = edge["dist"].as_f64().unwrap_or(200.0);
        edges.push((
            id_of(&edge["source"])?,
            id_of(&edge["target"])?,
            0.1 + km * 0.005,
        ));
    }
    let mut demands = Vec::new();
    if let Some(matrix) = value["graph"]["demands"].as_object() {
        for (src, row) in matrix {
            for (dst, amount) in row.as_object().ok_or("bad demand row")? {
                let (s, d) = (ids.get(src), ids.get(dst));
                if let (Some(&s), Some(&d), Some(amount)) = (s, d, amount.as_f64())
                    && s != d
                    && amount > 0.0
                {
                    demands.push((s, d, amount));
                }
            }
        }
    }
    Ok(Topology {
        name: name.into(),
        nodes: nodes.len(),
        edges,
        demands,
    })
}

/// Reads a Topology Zoo GraphML file (nodes with Latitude/Longitude; edges); demand comes
/// from a gravity model over `pairs` random pairs with seeded random node weights.
pub fn read_zoo_graphml(
    name: &str,
    text: &str,
    pairs: usize,
    seed: u64,
) -> Result<Topology, String> {
    let attribute_id = |attr: &str, target: &str| -> Option<String> {
        text.split("<key ").skip(1).find_map(|key| {
            let head = key.split('>').next()?;
            (head.contains(&format!("attr.name=\"{attr}\""))
                && head.contains(&format!("for=\"{target}\"")))
            .then(|| between(head, "id=\"", "\"").map(str::to_string))
            .flatten()
        })
    };
    let lat_key = attribute_id("Latitude", "node");
    let lon_key = attribute_id("Longitude", "node");
    let mut ids = BTreeMap::new();
    let mut coords = Vec::new();
    for chunk in text.split("<node ").skip(1) {
        let id = between(chunk, "id=\"", "\"")
            .ok_or("node without id")?
            .to_string();
        let body = chunk.split("</node>").next().unwrap_or("");
        let read = |key: &Option<String>| -> Option<f64> {
            let key = key.as_ref()?;
            between(body, &format!("key=\"{key}\">"), "<")?
                .trim()
                .parse()
                .ok()
        };
        ids.insert(id, coords.len());
        coords.push((read(&lat_key), read(&lon_key)));
    }
    let mut edges = Vec::new();
    for chunk in text.split("<edge ").skip(1) {
        let s = between(chunk, "source=\"", "\"").ok_or("edge without source")?;
        let t = between(chunk, "target=\"", "\"").ok_or("edge without target")?;
        let (Some(&a), Some(&b)) = (ids.get(s), ids.get(t)) else {
            return Err(format!("edge {s}-{t} names unknown nodes"));
        };
        if a == b {
            continue;
        }
        let km = match (coords[a], coords[b]) {
            ((Some(la), Some(oa)), (Some(lb), Some(ob))) => haversine_km(la, oa, lb, ob),
            _ => 200.0,
        };
        edges.push((a, b, 0.1 + km * 0.005));
    }
    let n = coords.len();
    let mut rng = Seeded::new(seed);
    let weights: Vec<f64> = (0..n).map(|_| rng.uniform(0.1, 1.0)).collect();
    let mut demands = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    let wanted = pairs.min(n * n.saturating_sub(1));
    let mut tries = 0;
    while demands.len() < wanted && tries < wanted * 20 {
        tries += 1;
        let (s, d) = (rng.below(n), rng.below(n));
        if s == d || !seen.insert((s, d)) {
            continue;
        }
        demands.push((s, d, weights[s] * weights[d]));
    }
    Ok(Topology {
        name: name.into(),
        nodes: n,
        edges,
        demands,
    })
}

fn between<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = text.find(start)? + start.len();
    let to = text[from..].find(end)? + from;
    Some(&text[from..to])
}

fn haversine_km(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = p2 - p1;
    let dl = (lon2 - lon1).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    6371.0 * 2.0 * a.sqrt().asin()
}

/// Arc `2e` runs edge `e` from its first node to its second, `2e + 1` back.
fn adjacency(topology: &Topology) -> Vec<Vec<(usize, u32, f64)>> {
    let mut adjacency = vec![Vec::new(); topology.nodes];
    for (e, &(a, b, latency)) in topology.edges.iter().enumerate() {
        adjacency[a].push((b, 2 * e as u32, latency));
        adjacency[b].push((a, 2 * e as u32 + 1, latency));
    }
    adjacency
}

/// Shortest path by latency avoiding `banned` arcs: (arcs, latency).
fn shortest(
    adjacency: &[Vec<(usize, u32, f64)>],
    src: usize,
    dst: usize,
    banned: &std::collections::BTreeSet<u32>,
) -> Option<(Vec<u32>, f64)> {
    let n = adjacency.len();
    let mut dist = vec![f64::INFINITY; n];
    let mut previous: Vec<Option<(usize, u32)>> = vec![None; n];
    let mut heap = BinaryHeap::new();
    dist[src] = 0.0;
    heap.push(Reverse((OrderedMs(0.0), src)));
    while let Some(Reverse((OrderedMs(d), node))) = heap.pop() {
        if d > dist[node] {
            continue;
        }
        if node == dst {
            break;
        }
        for &(next, arc, latency) in &adjacency[node] {
            if banned.contains(&arc) {
                continue;
            }
            let candidate = d + latency;
            if candidate < dist[next] {
                dist[next] = candidate;
                previous[next] = Some((node, arc));
                heap.push(Reverse((OrderedMs(candidate), next)));
            }
        }
    }
    if !dist[dst].is_finite() {
        return None;
    }
    let mut arcs = Vec::new();
    let mut at = dst;
    while let Some((from, arc)) = previous[at] {
        arcs.push(arc);
        at = from;
    }
    arcs.reverse();
    Some((arcs, dist[dst]))
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct OrderedMs(f64);
impl Eq for OrderedMs {}
impl PartialOrd for OrderedMs {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for OrderedMs {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// Paths kept per pair on the public topologies.
pub const PATHS_PER_PAIR: usize = 4;
/// Link capacity on the public topologies (Mb/s each way).
pub const LINK_CAPACITY: f64 = 1000.0;

/// Turns a topology into an allocator problem at a load level (see the module doc);
/// `seed` varies the per-pair class split.
pub fn topology_instance(topology: &Topology, load: f64, seed: u64) -> Instance {
    let adjacency = adjacency(topology);
    let mut rng = Seeded::new(seed);
    let mut paths = Paths::new();
    let mut per_pair = Vec::new();
    let mut shortest_load = vec![0.0; topology.edges.len() * 2];
    for &(src, dst, amount) in &topology.demands {
        let mut banned = std::collections::BTreeSet::new();
        let mut found: Vec<(Vec<u32>, f64)> = Vec::new();
        for _ in 0..PATHS_PER_PAIR {
            let Some((arcs, latency)) = shortest(&adjacency, src, dst, &banned) else {
                break;
            };
            banned.extend(arcs.iter().copied());
            found.push((arcs, latency));
        }
        if let Some((arcs, _)) = found.first() {
            for &arc in arcs {
                shortest_load[arc as usize] += amount;
            }
        }
        per_pair.push((amount, found));
    }
    let busiest = shortest_load.iter().copied().fold(0.0, f64::max).max(1e-9);
    let scale = load * LINK_CAPACITY / busiest;
    let mut commodities = Vec::new();
    for (amount, found) in per_pair {
        let Some(best) = found.first().map(|p| p.1) else {
            continue;
        };
        let ids: Vec<(u32, f64)> = found
            .iter()
            .map(|(arcs, latency)| (paths.push(arcs), *latency))
            .collect();
        let tight = rng.uniform(0.15, 0.25);
        let loose = rng.uniform(0.25, 0.35);
        let shares = [
            (0u8, tight, Some(1.2 * best + 2.0)),
            (1, loose, Some(2.0 * best + 5.0)),
            (2, 1.0 - tight - loose, None),
        ];
        for (level, share, bound) in shares {
            let allowed: Vec<u32> = ids
                .iter()
                .filter(|(_, latency)| bound.is_none_or(|b| *latency <= b))
                .map(|(id, _)| *id)
                .collect();
            commodities.push(Commodity {
                level,
                demand: amount * scale * share,
                paths: allowed,
            });
        }
    }
    Instance {
        name: format!("{}@{load}", topology.name),
        capacity: vec![LINK_CAPACITY; topology.edges.len() * 2],
        paths,
        commodities,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generator_is_deterministic() {
        let spec = SdwanSpec {
            branches: 5,
            hubs: 1,
            dcs: 1,
            classes: 3,
            load: 0.5,
            down_share: 0.1,
            both_directions: true,
        };
        let (a, ma, da) = sdwan(&spec, 7);
        let (b, mb, db) = sdwan(&spec, 7);
        assert_eq!(a, b);
        assert_eq!(ma, mb);
        assert_eq!(da, db);
        assert_eq!(a.sites.len(), 7);
        assert_eq!(a.classes.last().unwrap().name, "default");
    }

    #[test]
    fn graphml_and_json_readers_work_on_small_text() {
        let json = r#"{"directed":false,"multigraph":false,"graph":{"demands":{"0":{"1":5.0}}},
            "nodes":[{"id":0},{"id":1},{"id":2}],
            "edges":[{"source":0,"target":1,"dist":100.0},{"source":1,"target":2,"dist":50.0},{"source":0,"target":2,"dist":10.0}]}"#;
        let topology = read_sndlib_json("t", json).unwrap();
        assert_eq!(topology.demands, vec![(0, 1, 5.0)]);
        let instance = topology_instance(&topology, 1.0, 1);
        // Two arc-disjoint paths 0→1: direct, and 0→2→1.
        assert_eq!(instance.commodities.len(), 3);
        assert_eq!(instance.commodities[2].paths.len(), 2);
        let graphml = r#"<key attr.name="Latitude" attr.type="double" for="node" id="d30" />
            <key attr.name="Longitude" attr.type="double" for="node" id="d33" />
            <node id="0"><data key="d30">50.0</data><data key="d33">8.0</data></node>
            <node id="1"><data key="d30">51.0</data><data key="d33">8.0</data></node>
            <edge source="0" target="1"><data key="d37">0</data></edge>"#;
        let zoo = read_zoo_graphml("z", graphml, 10, 1).unwrap();
        assert_eq!(zoo.edges.len(), 1);
        assert!((zoo.edges[0].2 - (0.1 + 111.2 * 0.005)).abs() < 0.01);
        assert_eq!(zoo.demands.len(), 2);
    }
}
