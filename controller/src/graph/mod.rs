//! The link graph: sites and their WAN lines, with each line's live measurements and the
//! health history hysteresis needs (when it recovered, its flap-dampening penalty).
//!
//! Sites are nodes of a petgraph `StableGraph`; each transport cloud (the MPLS network, the
//! internet that broadband, LTE and satellite lines share) is a node too, and every WAN line
//! is an edge from its site to its cloud. A tunnel between two sites is then two line edges
//! meeting in one cloud: its latency and jitter are the sum of both lines' and its loss
//! compounds, `1 - (1 - a)(1 - b)`, when each `LineMeasurement` describes one line's access
//! into the cloud. When one of the two lines is a point-to-point link to the other's site,
//! both agents probe that same tunnel end to end, and the planner takes the worse of the two
//! measurements instead of adding them.
//! MPLS only connects a branch to hubs and DCs; branch-to-branch tunnels run over the
//! internet cloud. A hub or DC line that is a point-to-point link to one branch (its policy
//! `site:`, or a name `<site>-<name>`) reaches only that site: a tunnel needs neither line's
//! reach to exclude the other end. Time is an input everywhere (a `Duration` since any fixed origin).

use std::collections::HashMap;
use std::time::Duration;

use petgraph::stable_graph::{EdgeIndex, NodeIndex, StableUnGraph};
use serde::{Deserialize, Serialize};
use wansteer_policies::Policy;
use wansteer_policies::model::{SiteKind, Timers, Transport};

/// A point in time: how long after a fixed origin (e.g. the Unix epoch). Callers pass it in,
/// so planning is deterministic and replayable.
pub type At = Duration;

/// Index of a site in the graph (dense, in policy order).
pub type SiteId = u32;
/// Index of a line in the graph (dense, in policy order, site by site).
pub type LineId = u32;

/// The health a site's agent reports for one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LineHealth {
    Up,
    /// Usable, but the agent's state machine flags it; used only when nothing settled fits.
    Degraded,
    /// Not usable at all.
    Down,
}

/// One report about one line, as the integrator maps a probe report onto it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LineMeasurement {
    pub site: String,
    pub line: String,
    /// Round-trip time of the line's segment; one-way latency is taken as half of it, the
    /// same convention the policy's SLA latency uses.
    pub rtt: Duration,
    /// Loss as a fraction (0.01 is 1%).
    pub loss: f64,
    pub jitter: Duration,
    pub health: LineHealth,
    pub at: At,
}

/// The transport network a line attaches to; two lines form a tunnel only inside one cloud.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Cloud {
    Mpls,
    Internet,
}

impl Cloud {
    pub fn of(transport: Transport) -> Cloud {
        match transport {
            Transport::Mpls => Cloud::Mpls,
            Transport::Internet | Transport::Lte | Transport::Satellite => Cloud::Internet,
        }
    }
}

/// Quality numbers of a line or a path (one-way latency and jitter in ms, loss as fraction).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Quality {
    pub latency_ms: f64,
    pub jitter_ms: f64,
    pub loss: f64,
}

impl Quality {
    /// Two measurements of one path (from its two ends): the worse figure of each.
    pub fn worst(self, other: Quality) -> Quality {
        Quality {
            latency_ms: self.latency_ms.max(other.latency_ms),
            jitter_ms: self.jitter_ms.max(other.jitter_ms),
            loss: self.loss.max(other.loss),
        }
    }

    /// The quality of two segments in series: latency and jitter add, loss compounds.
    pub fn then(self, next: Quality) -> Quality {
        Quality {
            latency_ms: self.latency_ms + next.latency_ms,
            jitter_ms: self.jitter_ms + next.jitter_ms,
            loss: 1.0 - (1.0 - self.loss) * (1.0 - next.loss),
        }
    }
}

/// A site as the solver sees it.
#[derive(Debug, Clone)]
pub struct SiteNode {
    pub name: String,
    pub kind: SiteKind,
    pub lan: Vec<ipnet::IpNet>,
    pub lines: Vec<LineId>,
    node: NodeIndex,
}

/// One WAN line with its policy attributes, live quality and health history.
#[derive(Debug, Clone)]
pub struct LineState {
    pub site: SiteId,
    pub name: String,
    pub transport: Transport,
    pub cloud: Cloud,
    pub up_bps: f64,
    pub down_bps: f64,
    pub cost: f64,
    pub preference: u32,
    /// The only site this line reaches, when the policy restricts it (a hub or DC line that
    /// is a point-to-point link to one branch); `None` reaches every site of its cloud.
    pub reaches: Option<SiteId>,
    /// Latest measured quality; `None` until the first report (treated as meeting SLAs).
    pub quality: Option<Quality>,
    pub health: LineHealth,
    /// When the line last came back from `Down`; it is not chosen voluntarily until it has
    /// stayed up for the hold-down.
    pub recovered_at: Option<At>,
    /// Flap-dampening penalty and when it was last updated.
    pub penalty: f64,
    pub penalty_at: At,
    pub suppressed: bool,
    pub measured_at: Option<At>,
    edge: EdgeIndex,
}

/// What changed on a line with a measurement, so the planner knows what to re-solve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineChange {
    /// Nothing a decision depends on changed.
    None,
    /// Quality numbers moved.
    Quality,
    /// The line went down, came back, or was suppressed/reused.
    Health,
}

/// Why a measurement was not applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GraphError {
    #[error("unknown line `{line}` at site `{site}`")]
    UnknownLine { site: String, line: String },
    #[error("measurement of {site}/{line} is not a number or out of range")]
    BadMeasurement { site: String, line: String },
}

/// Node of the petgraph: a site or a transport cloud.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GraphNode {
    Site(SiteId),
    Cloud(Cloud),
}

/// Sites, clouds and lines, with the flat per-line state the solver reads.
#[derive(Debug, Clone)]
pub struct LinkGraph {
    graph: StableUnGraph<GraphNode, LineId>,
    pub sites: Vec<SiteNode>,
    pub lines: Vec<LineState>,
    site_index: HashMap<String, SiteId>,
    line_index: HashMap<(String, String), LineId>,
    timers: Timers,
}

/// The site a line reaches only: its `site:` field, or for a line named `<site>-<name>` that
/// site (the same rule the agent routes hub traffic by: the first such site in policy order).
/// Looks up each prefix before a `-`, so 10,000 sites cost no site × line scan.
fn reach_of(
    site_index: &HashMap<String, SiteId>,
    here: SiteId,
    line: &wansteer_policies::model::Line,
) -> Option<SiteId> {
    if let Some(far) = &line.site {
        return site_index.get(far).copied();
    }
    line.name
        .match_indices('-')
        .filter_map(|(at, _)| site_index.get(&line.name[..at]).copied())
        .filter(|&site| site != here)
        .min()
}

/// Quality changes smaller than these do not count as a change worth re-solving.
const LATENCY_EPSILON_MS: f64 = 0.5;
const LOSS_EPSILON: f64 = 0.0005;

impl LinkGraph {
    pub fn new(policy: &Policy) -> LinkGraph {
        let mut graph = StableUnGraph::default();
        let mpls = graph.add_node(GraphNode::Cloud(Cloud::Mpls));
        let internet = graph.add_node(GraphNode::Cloud(Cloud::Internet));
        let mut sites = Vec::with_capacity(policy.sites.len());
        let mut lines = Vec::new();
        let mut site_index = HashMap::with_capacity(policy.sites.len());
        let mut line_index = HashMap::new();
        for (site_id, site) in policy.sites.iter().enumerate() {
            let site_id = site_id as SiteId;
            let node = graph.add_node(GraphNode::Site(site_id));
            let mut line_ids = Vec::with_capacity(site.lines.len());
            for line in &site.lines {
                let line_id = lines.len() as LineId;
                let cloud = Cloud::of(line.transport);
                let cloud_node = match cloud {
                    Cloud::Mpls => mpls,
                    Cloud::Internet => internet,
                };
                let edge = graph.add_edge(node, cloud_node, line_id);
                lines.push(LineState {
                    site: site_id,
                    name: line.name.clone(),
                    transport: line.transport,
                    cloud,
                    up_bps: line.up.bps() as f64,
                    down_bps: line.down.bps() as f64,
                    cost: line.cost,
                    preference: line.preference,
                    reaches: None,
                    quality: None,
                    health: LineHealth::Up,
                    recovered_at: None,
                    penalty: 0.0,
                    penalty_at: Duration::ZERO,
                    suppressed: false,
                    measured_at: None,
                    edge,
                });
                line_index.insert((site.name.clone(), line.name.clone()), line_id);
                line_ids.push(line_id);
            }
            site_index.insert(site.name.clone(), site_id);
            sites.push(SiteNode {
                name: site.name.clone(),
                kind: site.kind,
                lan: site.lan.clone(),
                lines: line_ids,
                node,
            });
        }
        for (site, policy_site) in sites.iter().zip(&policy.sites) {
            let here = site_index[&policy_site.name];
            for (&id, line) in site.lines.iter().zip(&policy_site.lines) {
                lines[id as usize].reaches = reach_of(&site_index, here, line);
            }
        }
        LinkGraph {
            graph,
            sites,
            lines,
            site_index,
            line_index,
            timers: policy.timers.clone(),
        }
    }

    /// True when line `a` of site `x` and line `b` of site `y` can form a tunnel at all: the
    /// same cloud, and neither line restricted to a site other than the far end. Health is
    /// not considered here.
    pub fn can_tunnel(&self, x: SiteId, a: LineId, y: SiteId, b: LineId) -> bool {
        let (la, lb) = (self.line(a), self.line(b));
        la.cloud == lb.cloud
            && la.reaches.is_none_or(|far| far == y)
            && lb.reaches.is_none_or(|far| far == x)
    }

    pub fn site_id(&self, name: &str) -> Option<SiteId> {
        self.site_index.get(name).copied()
    }

    pub fn line_id(&self, site: &str, line: &str) -> Option<LineId> {
        self.line_index
            .get(&(site.to_string(), line.to_string()))
            .copied()
    }

    pub fn line(&self, id: LineId) -> &LineState {
        &self.lines[id as usize]
    }

    /// `site/line`, for reasons and logs.
    pub fn line_label(&self, id: LineId) -> String {
        let line = self.line(id);
        format!("{}/{}", self.sites[line.site as usize].name, line.name)
    }

    /// The lines attached to one cloud, read from the graph.
    pub fn lines_in_cloud(&self, cloud: Cloud) -> Vec<LineId> {
        let node = self
            .graph
            .node_indices()
            .find(|&n| self.graph[n] == GraphNode::Cloud(cloud))
            .expect("both clouds are always in the graph");
        let mut lines: Vec<LineId> = self.graph.edges(node).map(|edge| *edge.weight()).collect();
        lines.sort_unstable();
        lines
    }

    /// The lines of a site, read from the graph.
    pub fn lines_of_site(&self, site: SiteId) -> Vec<LineId> {
        let node = self.sites[site as usize].node;
        let mut lines: Vec<LineId> = self.graph.edges(node).map(|edge| *edge.weight()).collect();
        lines.sort_unstable();
        lines
    }

    /// True when the line's edge is still in the graph (it always is; lines leave only with
    /// a new policy, which builds a new graph).
    pub fn has_edge(&self, id: LineId) -> bool {
        self.graph.edge_weight(self.line(id).edge).is_some()
    }

    /// Applies one measurement; says what changed so the planner can re-solve only that.
    pub fn apply(&mut self, m: &LineMeasurement) -> Result<(LineId, LineChange), GraphError> {
        let id = self
            .line_id(&m.site, &m.line)
            .ok_or_else(|| GraphError::UnknownLine {
                site: m.site.clone(),
                line: m.line.clone(),
            })?;
        let sane = m.loss.is_finite() && (0.0..=1.0).contains(&m.loss);
        if !sane {
            return Err(GraphError::BadMeasurement {
                site: m.site.clone(),
                line: m.line.clone(),
            });
        }
        let dampening = &self.timers.dampening;
        let half_life = dampening.half_life.0.as_secs_f64().max(1e-3);
        let line = &mut self.lines[id as usize];
        let quality = Quality {
            latency_ms: m.rtt.as_secs_f64() * 1000.0 / 2.0,
            jitter_ms: m.jitter.as_secs_f64() * 1000.0,
            loss: m.loss,
        };
        let mut change = match line.quality {
            None => LineChange::Quality,
            Some(old) => {
                let moved = (old.latency_ms - quality.latency_ms).abs() > LATENCY_EPSILON_MS
                    || (old.jitter_ms - quality.jitter_ms).abs() > LATENCY_EPSILON_MS
                    || (old.loss - quality.loss).abs() > LOSS_EPSILON;
                if moved {
                    LineChange::Quality
                } else {
                    LineChange::None
                }
            }
        };
        line.quality = Some(quality);
        line.measured_at = Some(m.at);
        // Decay the dampening penalty to now, then add one on a new failure.
        let elapsed = m.at.saturating_sub(line.penalty_at).as_secs_f64();
        line.penalty *= 0.5f64.powf(elapsed / half_life);
        line.penalty_at = m.at;
        let was_down = line.health == LineHealth::Down;
        let is_down = m.health == LineHealth::Down;
        if is_down && !was_down {
            line.penalty += f64::from(dampening.penalty);
            change = LineChange::Health;
        }
        if was_down && !is_down {
            line.recovered_at = Some(m.at);
            change = LineChange::Health;
        }
        if line.health != m.health && change == LineChange::None {
            change = LineChange::Quality;
        }
        line.health = m.health;
        let suppressed = if line.suppressed {
            line.penalty >= f64::from(dampening.reuse)
        } else {
            line.penalty > f64::from(dampening.suppress)
        };
        if suppressed != line.suppressed {
            line.suppressed = suppressed;
            change = LineChange::Health;
        }
        Ok((id, change))
    }

    /// Re-evaluates suppression at `now` (penalties decay without new reports).
    pub fn decay(&mut self, now: At) -> Vec<LineId> {
        let dampening = &self.timers.dampening;
        let half_life = dampening.half_life.0.as_secs_f64().max(1e-3);
        let max_suppress = dampening.max_suppress.0;
        let mut released = Vec::new();
        for (id, line) in self.lines.iter_mut().enumerate() {
            if !line.suppressed {
                continue;
            }
            let elapsed = now.saturating_sub(line.penalty_at).as_secs_f64();
            let penalty = line.penalty * 0.5f64.powf(elapsed / half_life);
            let overdue = now.saturating_sub(line.penalty_at) >= max_suppress;
            if penalty < f64::from(dampening.reuse) || overdue {
                line.penalty = penalty;
                line.penalty_at = now;
                line.suppressed = false;
                released.push(id as LineId);
            }
        }
        released
    }

    /// When a suppressed line's penalty will have decayed below the reuse limit.
    pub fn reuse_at(&self, id: LineId) -> Option<At> {
        let line = self.line(id);
        if !line.suppressed {
            return None;
        }
        let dampening = &self.timers.dampening;
        let reuse = f64::from(dampening.reuse).max(1.0);
        let halvings = (line.penalty / reuse).log2().max(0.0);
        let wait = dampening.half_life.0.mul_f64(halvings + 1e-6);
        Some(line.penalty_at + wait.min(dampening.max_suppress.0))
    }

    /// True when the line can carry traffic at all.
    pub fn usable(&self, id: LineId) -> bool {
        self.line(id).health != LineHealth::Down
    }

    /// True when the line may be chosen voluntarily at `now`: up (not degraded), not
    /// suppressed, and past the hold-down since it last recovered.
    pub fn settled(&self, id: LineId, now: At) -> bool {
        let line = self.line(id);
        line.health == LineHealth::Up
            && !line.suppressed
            && line
                .recovered_at
                .is_none_or(|at| now.saturating_sub(at) >= self.timers.hold_down.0)
    }

    /// When a recovering line's hold-down ends.
    pub fn settles_at(&self, id: LineId) -> Option<At> {
        self.line(id)
            .recovered_at
            .map(|at| at + self.timers.hold_down.0)
    }

    /// The line's quality, or perfect when not measured yet.
    pub fn quality(&self, id: LineId) -> Quality {
        self.line(id).quality.unwrap_or_default()
    }

    pub fn timers(&self) -> &Timers {
        &self.timers
    }
}

#[cfg(test)]
mod mesh_tests;

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        yaml_serde::from_str(
            r#"
sites:
  - name: b1
    kind: branch
    lines:
      - { name: mpls, transport: mpls, interface: w0, up: 10mbit, down: 10mbit }
      - { name: inet, transport: internet, interface: w1, up: 50mbit, down: 50mbit }
  - name: dc
    kind: dc
    lines:
      - { name: mpls, transport: mpls, interface: w0, up: 1gbit, down: 1gbit }
classes:
  - { name: default, priority: 1 }
"#,
        )
        .unwrap()
    }

    fn report(line: &str, health: LineHealth, secs: u64) -> LineMeasurement {
        LineMeasurement {
            site: "b1".into(),
            line: line.into(),
            rtt: Duration::from_millis(20),
            loss: 0.0,
            jitter: Duration::from_millis(1),
            health,
            at: Duration::from_secs(secs),
        }
    }

    #[test]
    fn hub_lines_reach_the_site_they_name_or_are_named_after() {
        let policy: Policy = yaml_serde::from_str(
            r#"
sites:
  - name: dc
    kind: dc
    lines:
      - { name: br-1-mpls, transport: mpls, interface: w0, up: 1gbit, down: 1gbit }
      - { name: to-b2, transport: mpls, interface: w1, up: 1gbit, down: 1gbit, site: b2 }
      - { name: mpls, transport: mpls, interface: w2, up: 1gbit, down: 1gbit }
  - name: br-1
    kind: branch
    lines:
      - { name: mpls, transport: mpls, interface: w0, up: 10mbit, down: 10mbit }
  - name: b2
    kind: branch
    lines:
      - { name: mpls, transport: mpls, interface: w0, up: 10mbit, down: 10mbit }
classes:
  - { name: default, priority: 1 }
"#,
        )
        .unwrap();
        let graph = LinkGraph::new(&policy);
        let (dc, b1, b2) = (0, 1, 2);
        let reaches: Vec<Option<SiteId>> = graph.lines.iter().map(|l| l.reaches).collect();
        assert_eq!(reaches, [Some(b1), Some(b2), None, None, None]);
        assert!(graph.can_tunnel(dc, 0, b1, 3));
        assert!(!graph.can_tunnel(dc, 0, b2, 4));
        assert!(
            !graph.can_tunnel(b2, 4, dc, 0),
            "the rule holds from either end"
        );
        assert!(graph.can_tunnel(b2, 4, dc, 1));
        assert!(!graph.can_tunnel(b1, 3, dc, 1));
        assert!(graph.can_tunnel(dc, 2, b1, 3) && graph.can_tunnel(dc, 2, b2, 4));
    }

    #[test]
    fn lines_hang_off_sites_and_clouds() {
        let graph = LinkGraph::new(&policy());
        assert_eq!(graph.lines_in_cloud(Cloud::Mpls), vec![0, 2]);
        assert_eq!(graph.lines_in_cloud(Cloud::Internet), vec![1]);
        assert_eq!(graph.lines_of_site(0), vec![0, 1]);
        assert!(graph.has_edge(2));
    }

    #[test]
    fn series_quality_adds_delay_and_compounds_loss() {
        let a = Quality {
            latency_ms: 10.0,
            jitter_ms: 1.0,
            loss: 0.01,
        };
        let both = a.then(a);
        assert_eq!(both.latency_ms, 20.0);
        assert!((both.loss - 0.0199).abs() < 1e-12);
    }

    #[test]
    fn recovered_line_waits_for_hold_down() {
        let mut graph = LinkGraph::new(&policy());
        graph.apply(&report("mpls", LineHealth::Up, 0)).unwrap();
        assert!(graph.settled(0, Duration::from_secs(0)));
        let (_, change) = graph.apply(&report("mpls", LineHealth::Down, 5)).unwrap();
        assert_eq!(change, LineChange::Health);
        assert!(!graph.usable(0));
        graph.apply(&report("mpls", LineHealth::Up, 10)).unwrap();
        assert!(graph.usable(0));
        assert!(!graph.settled(0, Duration::from_secs(39)));
        assert!(graph.settled(0, Duration::from_secs(40)));
    }

    #[test]
    fn flapping_line_is_suppressed_then_reused() {
        let mut graph = LinkGraph::new(&policy());
        for t in 0..3 {
            graph
                .apply(&report("mpls", LineHealth::Down, t * 2))
                .unwrap();
            graph
                .apply(&report("mpls", LineHealth::Up, t * 2 + 1))
                .unwrap();
        }
        assert!(graph.line(0).suppressed, "three failures in 6 s suppress");
        let reuse = graph.reuse_at(0).unwrap();
        assert!(graph.decay(reuse - Duration::from_secs(1)).is_empty());
        assert_eq!(graph.decay(reuse), vec![0]);
        assert!(!graph.line(0).suppressed);
    }

    #[test]
    fn unknown_line_and_nonsense_are_refused() {
        let mut graph = LinkGraph::new(&policy());
        assert!(matches!(
            graph.apply(&report("sat", LineHealth::Up, 0)),
            Err(GraphError::UnknownLine { .. })
        ));
        let mut bad = report("mpls", LineHealth::Up, 0);
        bad.loss = f64::NAN;
        assert!(graph.apply(&bad).is_err());
        assert!(graph.line(0).quality.is_none(), "nothing changed");
    }
}
