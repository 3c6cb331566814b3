//! The planner: policy, live line measurements and per-class demand in; per-site rule sets
//! and decisions (each with its reason as data) out. Holds what it decided last time, so
//! classes move only when they must (line down, SLA breach, capacity) or when a better
//! path clears the policy's `min_improvement` after the hold-down.
//!
//! For each (source site, destination site, class) — a *commodity* — the candidate paths
//! are tunnels between a line of the source and a line of the destination in one cloud
//! (MPLS only between a branch and a hub/DC; a hub line that reaches one site only to that
//! site), and two-tunnel paths through a hub or DC.
//! Candidates that use a `never` line or a down line are dropped, those that break the SLA
//! are kept only when no path meets it (least bad first). What is left is ordered by
//! settledness, the class's `prefer` list, line preference, cost and quality, hysteresis
//! puts the incumbent first when it may not move yet, and [`crate::solver::alloc`] fits
//! the demand to the capacities with strict priority between classes.
//!
//! Which commodities exist: every branch → every hub/DC with LAN prefixes, every pair when
//! the policy has at most [`FULL_MESH_UP_TO`] sites, plus every pair with measured demand.
//!
//! A plan after a few line reports re-solves only the commodities those lines touch, against
//! the capacity the others leave; it falls back to a full solve when the change is broad or
//! the re-placed demand no longer fits. Time is an input: nothing here reads a clock.

mod memory;
mod reason;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use wansteer_policies::Policy;
use wansteer_policies::model::SiteKind;
use wansteer_wire::ruleset::{ClassRoute, ClassSpec, RuleSet};

use crate::compile::{RouteOrigin, SiteInput, class_specs, compile_site, outranks};
use crate::graph::{
    At, Cloud, GraphError, LineChange, LineId, LineMeasurement, LinkGraph, Quality, SiteId,
};
use crate::solver::alloc::{self, Allocation, Commodity, PathId, Paths};
use crate::solver::sla::{Metric, SlaBounds, score};

pub use memory::{LineMemory, PlannerMemory, SlaBreachMemory};
pub use reason::{Breach, Evidence, Name, Reason, ReasonDetail, ReasonKind, RouteReason};

/// How a hub's route forwarded for another site begins its reason (`transit for br1: …`):
/// after a restart it tells a transit route from the hub's own placement.
const TRANSIT_REASON_PREFIX: &str = "transit for ";

/// Policies with at most this many sites get routes between every pair of sites.
pub const FULL_MESH_UP_TO: usize = 64;
/// Candidate paths kept per site pair: the best by quality, topped up with the best two of
/// each source line, at most [`CANDIDATES_PER_PAIR`].
pub const CANDIDATES_BEST: usize = 12;
pub const CANDIDATES_PER_PAIR: usize = 24;
/// A re-solve touching more than this share of commodities is done in full.
const INCREMENTAL_SHARE: f64 = 0.25;
/// Carried demand this close to the demand counts as carried (bits per second).
const CARRIED_SLACK: f64 = 1.0;
/// After a restart, how long the lines of a site whose agent has not reported again count
/// as known rather than "not measured yet". Until the agent is back, their being unmeasured
/// says only that the controller was away: ranking them as unknown would move classes off
/// paths through that site (and reorder backups) and back once it reports — churn pushed to
/// every agent. A site still silent after this is treated as unknown.
pub const RESUME_GRACE: Duration = Duration::from_secs(30);

/// Measured demand of one class from one site to another.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassDemand {
    pub site: String,
    pub class: String,
    pub destination: String,
    pub bps: f64,
}

/// A class moved (or was placed, or lost its route) for one destination.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub site: Name,
    pub class: Name,
    pub destination: Name,
    pub from_line: Option<Name>,
    pub to_line: Option<Name>,
    /// The new path as `site/line` hops (empty when there is none).
    pub path: Vec<Arc<str>>,
    pub reason: Reason,
    pub at: At,
}

/// Counters of one planning run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PlanStats {
    /// True when everything was re-solved, false for an incremental run.
    pub full: bool,
    pub commodities: usize,
    /// Commodities re-solved in this run.
    pub resolved: usize,
    pub demand_bps: f64,
    pub carried_bps: f64,
}

/// The outcome of one run: the rule sets that changed (new versions) and the decisions.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub rulesets: BTreeMap<String, RuleSet>,
    pub decisions: Vec<Decision>,
    pub stats: PlanStats,
}

/// A read-only view of the planner's last solver problem.
#[derive(Debug, Clone, Copy)]
pub struct ProblemView<'a> {
    pub capacity: &'a [f64],
    pub paths: &'a Paths,
    pub commodities: &'a [Commodity],
    pub allocation: Option<&'a Allocation>,
}

/// Why a demand report was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DemandError {
    #[error("unknown site `{0}`")]
    UnknownSite(String),
    #[error("unknown class `{0}`")]
    UnknownClass(String),
    #[error("demand must be a finite, non-negative rate")]
    BadRate,
}

/// Up to four lines: a tunnel is `[source line, destination line]`, a hub path
/// `[source line, hub in-line, hub out-line, destination line]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct PathKey {
    lines: [LineId; 4],
    len: u8,
}

impl PathKey {
    fn lines(&self) -> &[LineId] {
        &self.lines[..self.len as usize]
    }
    fn first(&self) -> LineId {
        self.lines[0]
    }
    fn arcs(&self) -> ([u32; 4], usize) {
        let l = self.lines;
        // Arc 2·l is the line's upstream, 2·l + 1 its downstream.
        if self.len == 2 {
            ([2 * l[0], 2 * l[1] + 1, 0, 0], 2)
        } else {
            ([2 * l[0], 2 * l[1] + 1, 2 * l[2], 2 * l[3] + 1], 4)
        }
    }
}

/// How candidates are ordered for a class: (unsettled, prefer rank, line preference),
/// cost, quality score, then the path itself for determinism.
type SortKey = ((bool, u32, u32), f64, f64, PathKey, PathId);

/// How backup lines are ordered (lower first): no SLA-meeting candidate through it, the
/// class's (unsettled, prefer rank, line preference), cost in thousandths. No quality score.
type BackupKey = (bool, (bool, u32, u32), u64);

#[derive(Debug, Clone, Copy)]
struct PathInfo {
    key: PathKey,
    via: Option<SiteId>,
    quality: Quality,
    cost: f64,
    score: f64,
    /// Some line of the path has no measurement yet: its quality is unknown (the numbers
    /// read as perfect), so it is usable but ranked after measured paths that meet the SLA.
    unmeasured: bool,
}

#[derive(Debug, Clone)]
struct ClassRules {
    name: String,
    level: u8,
    sla: SlaBounds,
    /// Per line: named by the class's `never` list.
    never: Vec<bool>,
    /// Per line: position in the class's `prefer` list (unlisted = list length).
    rank: Vec<u32>,
}

#[derive(Debug, Clone, Default)]
struct Pair {
    src: SiteId,
    dst: SiteId,
    paths: Vec<PathId>,
    commodities: Vec<usize>,
}

#[derive(Debug, Clone)]
struct CommodityState {
    pair: usize,
    class: usize,
    demand: f64,
    placed: Option<PathKey>,
    placed_at: At,
    /// Where the current route reads from: the chosen path's info.
    chosen: Option<PathInfo>,
    backups: Vec<LineId>,
    /// Why the route reads from `chosen` (none when there is no path).
    route: Option<RouteReason>,
    /// `route` in words, rendered when a rule set is compiled and kept while `route` reads
    /// the same.
    route_text: Option<Arc<str>>,
    /// True while no candidate meets the SLA.
    degraded: bool,
    /// False until the first plan has decided about it (so "no path" is reported once).
    seen: bool,
    /// Where a restored rule set had the class (after a restart): the first plan takes
    /// the best candidate matching it as the incumbent instead of placing afresh.
    restored: Option<Restored>,
}

/// A class's path as read back from the rule sets a previous process published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Restored {
    /// The line the class left the source on (the route's primary); `None` when the
    /// site's route is one it forwards for another site (a hub whose transit route won),
    /// so its own placement is unknown: the first plan takes its best path as the
    /// incumbent, silently — the restart moved nothing.
    first: Option<LineId>,
    /// The hub or DC the path went through (named by the route's reason), if any.
    via: Option<SiteId>,
    /// The hub's line towards the destination (its rule set's route for the class), if known.
    hub_out: Option<LineId>,
}

/// Names shared by reasons, so a decision refers to them instead of copying them.
#[derive(Debug, Clone, Default)]
struct Names {
    /// Per line: its name at its site.
    lines: Vec<Arc<str>>,
    /// Per line: `site/line`.
    labels: Vec<Arc<str>>,
    /// Per site.
    sites: Vec<Arc<str>>,
    /// Per class.
    classes: Vec<Arc<str>>,
}

/// The planner: state between runs.
#[derive(Debug)]
pub struct Planner {
    policy: Policy,
    graph: LinkGraph,
    names: Names,
    classes: Vec<ClassRules>,
    specs: Vec<ClassSpec>,
    transit_sites: Vec<SiteId>,
    demand: HashMap<(SiteId, SiteId, usize), f64>,
    pairs: Vec<Pair>,
    pair_index: HashMap<(SiteId, SiteId), usize>,
    pairs_of_site: Vec<Vec<usize>>,
    commodities: Vec<CommodityState>,
    engine: Vec<Commodity>,
    paths: Paths,
    infos: Vec<PathInfo>,
    /// Per path (as `infos`): unsettled when enumerated (see [`Planner::preference`]);
    /// shared by the classes of its pair.
    unsettled: Vec<bool>,
    /// Reused by [`Planner::order_candidates`]: the allowed paths of one commodity.
    scratch: Vec<(PathId, bool)>,
    /// Reused by [`Planner::order_candidates`]: sort keys of one commodity's candidates.
    scratch_keys: Vec<SortKey>,
    /// Reused by [`Planner::enumerate_pair`]: every path found for one pair.
    scratch_found: Vec<PathInfo>,
    allocation: Option<Allocation>,
    capacity: Vec<f64>,
    /// Per site: the commodities whose path transits it.
    transit: Vec<BTreeSet<usize>>,
    rulesets: Vec<Option<RuleSet>>,
    dirty_lines: BTreeSet<LineId>,
    dirty_commodities: BTreeSet<usize>,
    revisits: BTreeMap<At, BTreeSet<usize>>,
    line_revisits: BTreeMap<At, BTreeSet<LineId>>,
    needs_full: bool,
    rebuild_pending: bool,
    pending_sites: BTreeSet<SiteId>,
    /// Per arc: the lowest priority (largest level) with flow on it, to tell whether a
    /// commodity short after an incremental re-solve could preempt someone.
    lowest_level_on_arc: Vec<u8>,
    /// Total demand and carried demand, kept up to date by incremental runs.
    totals: (f64, f64),
    /// Per site: resumed from a stored rule set and not heard from since, so its measured
    /// demand is unknown and its HTB rates stay as they were.
    rates_held: Vec<bool>,
    /// After [`Planner::resume`]: the end of [`RESUME_GRACE`] (set by the first solve after
    /// it), and whether it is still running at the current solve.
    resume_grace: ResumeGrace,
    /// Per (line, class): when the line alone last broke the class's SLA. A class returns
    /// to such a line only once it has met the SLA for the hold-down (the policy's "how long
    /// a line must stay healthy before classes move back to it"), so loss hovering around an
    /// SLA does not move the class back and forth every hold-down.
    sla_breaches: HashMap<(LineId, usize), SlaBreach>,
    /// Line memory (penalties, hold-downs, SLA breaches) changed since it was last taken
    /// by [`Planner::memory_if_changed`].
    memory_changed: bool,
}

/// A line breaking one class's SLA, again and again: each breach after the line had
/// recovered is a new episode, and each episode doubles the time the line must then meet
/// the SLA before the class returns (route-flap dampening for SLA moves), up to the policy's
/// `max_suppress`. A line quiet for ten times its current wait starts over.
#[derive(Debug, Clone, Copy)]
struct SlaBreach {
    last: At,
    episodes: u32,
}

impl SlaBreach {
    /// How long the line must meet the SLA after `last` before the class returns.
    fn wait(&self, hold_down: Duration, cap: Duration) -> Duration {
        hold_down
            .saturating_mul(1 << self.episodes.clamp(1, 16).saturating_sub(1))
            .min(cap.max(hold_down))
    }

    /// Another breach at `at`: a new episode if the line had met the SLA for the wait,
    /// a fresh start if it had been quiet for ten times that.
    fn note(&mut self, at: At, hold_down: Duration, cap: Duration) {
        let quiet = at.saturating_sub(self.last);
        let wait = self.wait(hold_down, cap);
        if quiet > wait.saturating_mul(10) {
            self.episodes = 1;
        } else if quiet > wait {
            self.episodes = self.episodes.saturating_add(1).min(16);
        }
        self.last = self.last.max(at);
    }
}

/// See [`RESUME_GRACE`].
#[derive(Debug, Clone, Copy, Default)]
enum ResumeGrace {
    #[default]
    None,
    /// Resumed, not solved since.
    Pending,
    Until(At),
}

impl Planner {
    pub fn new(policy: Policy) -> Planner {
        let graph = LinkGraph::new(&policy);
        let mut planner = Planner {
            names: Names::default(),
            classes: Vec::new(),
            specs: class_specs(&policy),
            transit_sites: Vec::new(),
            demand: HashMap::new(),
            pairs: Vec::new(),
            pair_index: HashMap::new(),
            pairs_of_site: vec![Vec::new(); graph.sites.len()],
            commodities: Vec::new(),
            engine: Vec::new(),
            paths: Paths::new(),
            infos: Vec::new(),
            unsettled: Vec::new(),
            scratch: Vec::new(),
            scratch_keys: Vec::new(),
            scratch_found: Vec::new(),
            allocation: None,
            capacity: Vec::new(),
            transit: vec![BTreeSet::new(); graph.sites.len()],
            rulesets: vec![None; graph.sites.len()],
            dirty_lines: BTreeSet::new(),
            dirty_commodities: BTreeSet::new(),
            revisits: BTreeMap::new(),
            line_revisits: BTreeMap::new(),
            needs_full: true,
            rebuild_pending: false,
            pending_sites: BTreeSet::new(),
            lowest_level_on_arc: Vec::new(),
            totals: (0.0, 0.0),
            rates_held: vec![false; graph.sites.len()],
            resume_grace: ResumeGrace::None,
            sla_breaches: HashMap::new(),
            memory_changed: false,
            graph,
            policy,
        };
        planner.index_policy();
        planner.build_commodities();
        planner
    }

    /// Replaces the policy (after it passed validation): a new graph and commodity set. What
    /// the planner knows about lines and classes that still exist carries over — their last
    /// measurements and health history (recovery hold-down, flap-dampening penalty and
    /// suppression), the demand, and each class's placement with the time it was placed
    /// (so the hold-down keeps running) — and rule-set versions continue where they were, so
    /// agents never see a version go back.
    pub fn replace_policy(&mut self, policy: Policy) {
        let mut next = Planner::new(policy);
        let line_map: Vec<Option<LineId>> = self
            .graph
            .lines
            .iter()
            .map(|line| {
                let site = &self.graph.sites[line.site as usize].name;
                next.graph.line_id(site, &line.name)
            })
            .collect();
        for (old, line) in self.graph.lines.iter().enumerate() {
            let Some(id) = line_map[old] else { continue };
            let carried = &mut next.graph.lines[id as usize];
            carried.quality = line.quality;
            carried.health = line.health;
            carried.recovered_at = line.recovered_at;
            carried.penalty = line.penalty;
            carried.penalty_at = line.penalty_at;
            carried.suppressed = line.suppressed;
            carried.measured_at = line.measured_at;
            for at in [next.graph.settles_at(id), next.graph.reuse_at(id)]
                .into_iter()
                .flatten()
            {
                next.line_revisits.entry(at).or_default().insert(id);
            }
        }
        for (&(src, dst, class), &bps) in &self.demand {
            let demand = ClassDemand {
                site: self.graph.sites[src as usize].name.clone(),
                class: self.classes[class].name.clone(),
                destination: self.graph.sites[dst as usize].name.clone(),
                bps,
            };
            // Sites or classes the new policy dropped are refused; that is expected here.
            let _ = next.update_demand(demand);
        }
        if next.rebuild_pending {
            next.build_commodities();
            next.rebuild_pending = false;
        }
        let translate = |key: PathKey| -> Option<PathKey> {
            let mut out = key;
            for (i, &line) in key.lines().iter().enumerate() {
                out.lines[i] = line_map[line as usize]?;
            }
            Some(out)
        };
        for old in &self.commodities {
            let pair = &self.pairs[old.pair];
            let names = (
                &self.graph.sites[pair.src as usize].name,
                &self.graph.sites[pair.dst as usize].name,
                &self.classes[old.class].name,
            );
            let (Some(src), Some(dst), Some(class)) = (
                next.graph.site_id(names.0),
                next.graph.site_id(names.1),
                next.classes.iter().position(|c| &c.name == names.2),
            ) else {
                continue;
            };
            let Some(&new_pair) = next.pair_index.get(&(src, dst)) else {
                continue;
            };
            let Some(&commodity) = next.pairs[new_pair]
                .commodities
                .iter()
                .find(|&&c| next.commodities[c].class == class)
            else {
                continue;
            };
            let Some(placed) = old.placed.and_then(translate) else {
                continue;
            };
            let via = (placed.len == 4).then(|| next.graph.line(placed.lines[1]).site);
            let info = next.path_info(placed.lines(), via);
            let state = &mut next.commodities[commodity];
            state.placed = Some(placed);
            state.placed_at = old.placed_at;
            state.chosen = Some(info);
            state.seen = old.seen;
            state.degraded = old.degraded;
            state.route = old.route.clone();
            state.route_text = old.route_text.clone();
            state.backups = old
                .backups
                .iter()
                .filter_map(|&l| line_map[l as usize])
                .collect();
        }
        for (site, held) in self.rates_held.iter().enumerate() {
            if let Some(id) = next.graph.site_id(&self.graph.sites[site].name) {
                next.rates_held[id as usize] = *held;
            }
        }
        // A line that broke a class's SLA broke it under the new policy too when the class's
        // SLA did not change: its breach history (and the doubled wait) stays. A changed SLA
        // starts over, judged by the new bounds.
        for (&(line, class), breach) in &self.sla_breaches {
            let Some(line) = line_map[line as usize] else {
                continue;
            };
            let old = &self.classes[class];
            let same = next
                .classes
                .iter()
                .position(|c| c.name == old.name && c.sla == old.sla);
            if let Some(class) = same {
                next.sla_breaches.insert((line, class), *breach);
            }
        }
        next.resume_grace = self.resume_grace;
        next.memory_changed = true;
        next.restore_rulesets(self.rulesets.iter().flatten().cloned());
        *self = next;
    }

    /// Resumes from the rule sets a previous process published (after a restart): their
    /// versions continue, each class starts on the path its rule sets had it on — the
    /// route's line, and the hub with the hub's line onward when it went through one — (as
    /// the incumbent, with a fresh hold-down), and a site's HTB rates stay as they were until
    /// its agent reports demand again. Same inputs then give the same content: nothing is
    /// re-pushed.
    pub fn resume(&mut self, rulesets: impl IntoIterator<Item = RuleSet>) {
        let rulesets: Vec<RuleSet> = rulesets.into_iter().collect();
        for ruleset in &rulesets {
            let Some(src) = self.graph.site_id(&ruleset.site) else {
                continue;
            };
            self.rates_held[src as usize] = true;
            for route in &ruleset.routes {
                let Some(line) = self.graph.line_id(&ruleset.site, &route.primary) else {
                    continue;
                };
                let Some(class) = self.classes.iter().position(|c| c.name == route.class) else {
                    continue;
                };
                let via = via_of(route).and_then(|hub| self.graph.site_id(hub));
                let hub_out = via.and_then(|hub| {
                    let hub_name = &self.graph.sites[hub as usize].name;
                    let hub_route = rulesets
                        .iter()
                        .filter(|r| &r.site == hub_name)
                        .flat_map(|r| r.routes.iter())
                        .find(|r| r.class == route.class && r.destination == route.destination)?;
                    self.graph.line_id(hub_name, &hub_route.primary)
                });
                let restored = if route.reason.starts_with(TRANSIT_REASON_PREFIX) {
                    Restored {
                        first: None,
                        via: None,
                        hub_out: None,
                    }
                } else {
                    Restored {
                        first: Some(line),
                        via,
                        hub_out,
                    }
                };
                for &pair in &self.pairs_of_site[src as usize] {
                    let pair = &self.pairs[pair];
                    if pair.src != src
                        || !self.graph.sites[pair.dst as usize]
                            .lan
                            .contains(&route.destination)
                    {
                        continue;
                    }
                    for &commodity in &pair.commodities {
                        let state = &mut self.commodities[commodity];
                        if state.class == class && state.placed.is_none() {
                            state.restored = Some(restored);
                        }
                    }
                }
            }
        }
        self.restore_rulesets(rulesets);
        self.resume_grace = ResumeGrace::Pending;
    }

    /// A site's agent reported: its measured demand is known again, so its HTB rates follow
    /// it (see [`Planner::resume`]).
    pub fn note_report(&mut self, site: &str) {
        if let Some(id) = self.graph.site_id(site)
            && std::mem::take(&mut self.rates_held[id as usize])
        {
            self.pending_sites.insert(id);
            // Its lines no longer count as known by the resume grace: re-read them.
            self.dirty_lines.extend(self.graph.lines_of_site(id));
        }
    }

    /// Seeds the last rule sets (e.g. from the state store after a restart): a plan that
    /// produces the same content keeps their version and reports no change; different
    /// content gets the next version.
    pub fn restore_rulesets(&mut self, rulesets: impl IntoIterator<Item = RuleSet>) {
        for ruleset in rulesets {
            if let Some(site) = self.graph.site_id(&ruleset.site) {
                self.rulesets[site as usize] = Some(ruleset);
            }
        }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn graph(&self) -> &LinkGraph {
        &self.graph
    }

    /// The current rule set of a site (the last one a plan produced).
    pub fn ruleset(&self, site: &str) -> Option<&RuleSet> {
        let id = self.graph.site_id(site)?;
        self.rulesets[id as usize].as_ref()
    }

    /// The site whose LAN holds this address (most specific prefix), for mapping flow
    /// destinations onto sites.
    pub fn site_of(&self, address: std::net::IpAddr) -> Option<&str> {
        self.graph
            .sites
            .iter()
            .flat_map(|site| site.lan.iter().map(move |net| (net, site)))
            .filter(|(net, _)| net.contains(&address))
            .max_by_key(|(net, _)| net.prefix_len())
            .map(|(_, site)| site.name.as_str())
    }

    /// Records one line measurement; a bad report changes nothing.
    pub fn update_measurement(&mut self, m: LineMeasurement) -> Result<LineChange, GraphError> {
        let (line, change) = self.graph.apply(&m)?;
        if change != LineChange::None {
            self.dirty_lines.insert(line);
        }
        if change == LineChange::Health {
            self.memory_changed = true;
        }
        if let Some(quality) = self.graph.line(line).quality {
            for (class, rules) in self.classes.iter().enumerate() {
                if !rules.sla.met_by(quality) {
                    self.memory_changed = true;
                    record_breach(
                        &mut self.sla_breaches,
                        self.graph.timers(),
                        line,
                        class,
                        m.at,
                    );
                }
            }
        }
        if change == LineChange::Health {
            if let Some(at) = self.graph.settles_at(line) {
                self.line_revisits.entry(at).or_default().insert(line);
            }
            if let Some(at) = self.graph.reuse_at(line) {
                self.line_revisits.entry(at).or_default().insert(line);
            }
        }
        Ok(change)
    }

    /// Records a line's measured loss ratio as it is, beside the judged figure
    /// [`Planner::update_measurement`] steers on (the lower bound of its 95% interval). A
    /// class leaves a line when the line *surely* breaks its SLA, but returns only after
    /// the ratio itself has stayed within it for the hold-down: with loss near an SLA the
    /// lower bound dips under the limit often, the ratio rarely, so the two give the
    /// hysteresis band that keeps the class from moving back and forth.
    pub fn note_loss_ratio(&mut self, site: &str, line: &str, loss: f64, at: At) {
        let Some(line) = self.graph.line_id(site, line) else {
            return;
        };
        for (class, rules) in self.classes.iter().enumerate() {
            if rules.sla.loss.is_some_and(|limit| loss > limit) {
                self.memory_changed = true;
                record_breach(&mut self.sla_breaches, self.graph.timers(), line, class, at);
            }
        }
    }

    /// Records the measured demand of one class between two sites.
    pub fn update_demand(&mut self, d: ClassDemand) -> Result<(), DemandError> {
        let src = self
            .graph
            .site_id(&d.site)
            .ok_or_else(|| DemandError::UnknownSite(d.site.clone()))?;
        let dst = self
            .graph
            .site_id(&d.destination)
            .ok_or_else(|| DemandError::UnknownSite(d.destination.clone()))?;
        let class = self
            .policy
            .classes
            .iter()
            .position(|c| c.name == d.class)
            .ok_or_else(|| DemandError::UnknownClass(d.class.clone()))?;
        if !d.bps.is_finite() || d.bps < 0.0 {
            return Err(DemandError::BadRate);
        }
        if src == dst {
            return Ok(());
        }
        self.demand.insert((src, dst, class), d.bps);
        match self.pair_index.get(&(src, dst)).and_then(|&p| {
            self.pairs[p]
                .commodities
                .iter()
                .find(|&&c| self.commodities[c].class == class)
        }) {
            Some(&commodity) => {
                if self.commodities[commodity].demand != d.bps {
                    self.totals.0 += d.bps - self.commodities[commodity].demand;
                    self.commodities[commodity].demand = d.bps;
                    self.engine[commodity].demand = d.bps;
                    self.dirty_commodities.insert(commodity);
                }
            }
            None => {
                // A new commodity: the set is rebuilt and re-solved in full at the next plan.
                self.rebuild_pending = true;
                self.needs_full = true;
            }
        }
        Ok(())
    }

    /// Plans at `now`: re-solves what changed since the last run, compiles the rule sets
    /// that changed, and returns them with the decisions. Same as [`Planner::solve`]
    /// followed by [`Planner::compile_pending`].
    pub fn plan(&mut self, now: At) -> Plan {
        let mut plan = self.solve(now);
        plan.rulesets = self.compile_pending();
        plan
    }

    /// Re-solves what changed since the last run; the rule sets of the sites it touched are
    /// compiled by the next [`Planner::compile_pending`] (a service may batch that for big
    /// hub/DC rule sets). The returned plan has decisions and stats, no rule sets.
    pub fn solve(&mut self, now: At) -> Plan {
        if self.rebuild_pending {
            self.build_commodities();
            self.rebuild_pending = false;
        }
        if let ResumeGrace::Pending = self.resume_grace {
            // When the grace ends, the lines of sites still silent are re-read as unknown.
            let until = now + RESUME_GRACE;
            self.resume_grace = ResumeGrace::Until(until);
            for (site, _) in self.rates_held.iter().enumerate().filter(|(_, h)| **h) {
                let lines = self.graph.lines_of_site(site as SiteId);
                self.line_revisits.entry(until).or_default().extend(lines);
            }
        }
        if let ResumeGrace::Until(until) = self.resume_grace
            && now >= until
        {
            self.resume_grace = ResumeGrace::None;
        }
        for line in self.graph.decay(now) {
            self.dirty_lines.insert(line);
            self.memory_changed = true;
        }
        let due_lines: Vec<At> = self
            .line_revisits
            .range(..=now)
            .map(|(at, _)| *at)
            .collect();
        for at in due_lines {
            if let Some(lines) = self.line_revisits.remove(&at) {
                self.dirty_lines.extend(lines);
            }
        }
        let due: Vec<At> = self.revisits.range(..=now).map(|(at, _)| *at).collect();
        for at in due {
            if let Some(commodities) = self.revisits.remove(&at) {
                self.dirty_commodities.extend(commodities);
            }
        }
        let mut plan = Plan::default();
        let affected = if self.needs_full {
            None
        } else {
            self.affected()
        };
        let touched_sites = match affected {
            Some(affected) => match self.solve_incremental(&affected, now, &mut plan) {
                Some(sites) => {
                    plan.stats.resolved = affected.len();
                    sites
                }
                None => {
                    plan.decisions.clear();
                    self.solve_full(now, &mut plan)
                }
            },
            None => self.solve_full(now, &mut plan),
        };
        self.dirty_lines.clear();
        self.dirty_commodities.clear();
        self.needs_full = false;
        self.pending_sites.extend(touched_sites);
        plan.stats.commodities = self.commodities.len();
        if plan.stats.full {
            self.totals = (
                self.commodities.iter().map(|c| c.demand).sum(),
                self.allocation.as_ref().map_or(0.0, |a| {
                    (0..self.commodities.len()).map(|i| a.carried(i)).sum()
                }),
            );
        }
        (plan.stats.demand_bps, plan.stats.carried_bps) = self.totals;
        plan
    }

    /// Compiles the rule sets of the sites solved since the last call; only those whose
    /// content changed are returned, each with the next version.
    pub fn compile_pending(&mut self) -> BTreeMap<String, RuleSet> {
        let sites = std::mem::take(&mut self.pending_sites);
        let mut plan = Plan::default();
        self.compile(&sites, &mut plan);
        plan.rulesets
    }

    /// The solver problem as last built (capacities per arc, candidate paths, commodities
    /// in allocator order) and its allocation, for comparing against the LP reference.
    pub fn problem(&self) -> ProblemView<'_> {
        ProblemView {
            capacity: &self.capacity,
            paths: &self.paths,
            commodities: &self.engine,
            allocation: self.allocation.as_ref(),
        }
    }

    /// The earliest time a plan would change something without new input (a hold-down or
    /// dampening ends), so the service can schedule the next run.
    pub fn next_wakeup(&self) -> Option<At> {
        let commodities = self.revisits.keys().next().copied();
        let lines = self.line_revisits.keys().next().copied();
        match (commodities, lines) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn index_policy(&mut self) {
        let lines = &self.graph.lines;
        self.classes = self
            .policy
            .classes
            .iter()
            .map(|class| ClassRules {
                name: class.name.clone(),
                level: class.priority,
                sla: SlaBounds::from_policy(class.sla.as_ref()),
                never: lines
                    .iter()
                    .map(|line| {
                        let policy_line = &self.policy.sites[line.site as usize]
                            .lines
                            .iter()
                            .find(|l| l.name == line.name)
                            .expect("graph lines come from the policy");
                        class
                            .steering
                            .never
                            .iter()
                            .any(|e| policy_line.is_named_by(e))
                    })
                    .collect(),
                rank: lines
                    .iter()
                    .map(|line| {
                        let policy_line = self.policy.sites[line.site as usize]
                            .lines
                            .iter()
                            .find(|l| l.name == line.name)
                            .expect("graph lines come from the policy");
                        class
                            .steering
                            .prefer
                            .iter()
                            .position(|e| policy_line.is_named_by(e))
                            .unwrap_or(class.steering.prefer.len()) as u32
                    })
                    .collect(),
            })
            .collect();
        self.names = Names {
            lines: lines.iter().map(|l| Arc::from(l.name.as_str())).collect(),
            labels: (0..lines.len() as LineId)
                .map(|l| Arc::from(self.graph.line_label(l)))
                .collect(),
            sites: self
                .graph
                .sites
                .iter()
                .map(|s| Arc::from(s.name.as_str()))
                .collect(),
            classes: self
                .classes
                .iter()
                .map(|c| Arc::from(c.name.as_str()))
                .collect(),
        };
        self.transit_sites = self
            .graph
            .sites
            .iter()
            .enumerate()
            .filter(|(_, s)| matches!(s.kind, SiteKind::Hub | SiteKind::Dc))
            .map(|(i, _)| i as SiteId)
            .collect();
        self.capacity = self
            .graph
            .lines
            .iter()
            .flat_map(|line| [line.up_bps, line.down_bps])
            .collect();
    }

    /// (Re)builds the set of commodities, keeping incumbents of those that stay.
    fn build_commodities(&mut self) {
        let sites = &self.graph.sites;
        let full_mesh = sites.len() <= FULL_MESH_UP_TO;
        // Every wanted pair (class `None`) and every measured demand, sorted by pair: one
        // pass then makes the pairs in order with their demand per class.
        let mut entries: Vec<(SiteId, SiteId, Option<usize>, f64)> =
            Vec::with_capacity(self.demand.len() + self.pairs.len());
        let destinations: Vec<SiteId> = (0..sites.len() as SiteId)
            .filter(|&dst| {
                let other = &sites[dst as usize];
                !other.lan.is_empty() && (full_mesh || other.kind != SiteKind::Branch)
            })
            .collect();
        for (src, site) in sites.iter().enumerate() {
            if !full_mesh && site.kind != SiteKind::Branch {
                continue;
            }
            for &dst in &destinations {
                if dst as usize != src {
                    entries.push((src as SiteId, dst, None, 0.0));
                }
            }
        }
        for (&(src, dst, class), &bps) in &self.demand {
            entries.push((src, dst, Some(class), bps));
        }
        entries.sort_unstable_by_key(|&(src, dst, class, _)| (src, dst, class));
        let old_pairs = std::mem::take(&mut self.pairs);
        let old_index = std::mem::take(&mut self.pair_index);
        let mut old: Vec<Option<CommodityState>> = self.commodities.drain(..).map(Some).collect();
        self.pairs_of_site = vec![Vec::new(); sites.len()];
        self.engine.clear();
        let pair_count = 1 + entries
            .windows(2)
            .filter(|w| (w[0].0, w[0].1) != (w[1].0, w[1].1))
            .count();
        self.pairs.reserve(pair_count);
        self.commodities.reserve(pair_count * self.classes.len());
        self.engine.reserve(pair_count * self.classes.len());
        let mut demand = vec![0.0; self.classes.len()];
        let mut next = 0;
        while next < entries.len() {
            let (src, dst) = (entries[next].0, entries[next].1);
            demand.fill(0.0);
            while let Some(&(s, d, class, bps)) = entries.get(next)
                && (s, d) == (src, dst)
            {
                if let Some(class) = class {
                    demand[class] = bps;
                }
                next += 1;
            }
            let pair_id = self.pairs.len();
            let mut pair = Pair {
                src,
                dst,
                ..Pair::default()
            };
            let previous = old_index
                .get(&(src, dst))
                .map(|&p| old_pairs[p].commodities.as_slice())
                .unwrap_or(&[]);
            for (class, rules) in self.classes.iter().enumerate() {
                let demand = demand[class];
                let kept = previous
                    .iter()
                    .find_map(|&c| old[c].take_if(|state| state.class == class));
                let state = match kept {
                    Some(previous) => CommodityState {
                        pair: pair_id,
                        demand,
                        ..previous
                    },
                    None => CommodityState {
                        pair: pair_id,
                        class,
                        demand,
                        placed: None,
                        placed_at: Duration::ZERO,
                        chosen: None,
                        backups: Vec::new(),
                        route: None,
                        route_text: None,
                        degraded: false,
                        seen: false,
                        restored: None,
                    },
                };
                pair.commodities.push(self.commodities.len());
                self.commodities.push(state);
                self.engine.push(Commodity {
                    level: rules.level,
                    demand,
                    paths: Vec::new(),
                });
            }
            self.pair_index.insert((src, dst), pair_id);
            self.pairs_of_site[src as usize].push(pair_id);
            self.pairs_of_site[dst as usize].push(pair_id);
            self.pairs.push(pair);
        }
        self.transit = vec![BTreeSet::new(); sites.len()];
        self.allocation = None;
    }

    /// Commodities to re-solve for the changes since the last run, or `None` when a full
    /// solve is cheaper.
    fn affected(&self) -> Option<Vec<usize>> {
        let mut pairs: BTreeSet<usize> = BTreeSet::new();
        for &line in &self.dirty_lines {
            let site = self.graph.line(line).site;
            if self.transit_sites.contains(&site) {
                return None;
            }
            pairs.extend(&self.pairs_of_site[site as usize]);
        }
        let mut commodities: BTreeSet<usize> = self.dirty_commodities.clone();
        for pair in pairs {
            commodities.extend(&self.pairs[pair].commodities);
        }
        if commodities.len() as f64 > INCREMENTAL_SHARE * self.commodities.len() as f64 {
            return None;
        }
        Some(commodities.into_iter().collect())
    }

    fn solve_full(&mut self, now: At, plan: &mut Plan) -> BTreeSet<SiteId> {
        plan.stats.full = true;
        plan.stats.resolved = self.commodities.len();
        self.paths = Paths::new();
        self.infos.clear();
        self.unsettled.clear();
        for pair in 0..self.pairs.len() {
            self.enumerate_pair(pair, now);
        }
        // Most commodities are placed for the first time in the first plan: one decision each.
        let unseen = self.commodities.iter().filter(|c| !c.seen).count();
        plan.decisions.reserve(unseen);
        for commodity in 0..self.commodities.len() {
            self.engine[commodity].paths = self.order_candidates(commodity, now);
        }
        let allocation = alloc::allocate(&self.capacity, &self.paths, &self.engine);
        self.lowest_level_on_arc = vec![0; self.capacity.len()];
        for (commodity, flows) in allocation.flows.iter().enumerate() {
            self.note_levels(commodity, flows);
        }
        self.allocation = Some(allocation);
        self.transit = vec![BTreeSet::new(); self.graph.sites.len()];
        let mut touched = BTreeSet::new();
        for commodity in 0..self.commodities.len() {
            self.settle(commodity, now, plan, &mut touched);
        }
        // Every site is compiled after a full solve (a no-op when its content is unchanged).
        (0..self.graph.sites.len() as SiteId).collect()
    }

    /// Re-places only `affected` against what the others leave. `None` when that does not
    /// fit (then a full solve follows, from the same incumbents).
    fn solve_incremental(
        &mut self,
        affected: &[usize],
        now: At,
        plan: &mut Plan,
    ) -> Option<BTreeSet<SiteId>> {
        // Worked on in place: when it does not fit, the full solve that follows rebuilds it.
        let mut allocation = self.allocation.take()?;
        let before: f64 = affected.iter().map(|&c| allocation.carried(c)).sum();
        let pairs: BTreeSet<usize> = affected.iter().map(|&c| self.commodities[c].pair).collect();
        for &commodity in affected {
            for (path, amount) in std::mem::take(&mut allocation.flows[commodity]) {
                for &arc in self.paths.arcs(path) {
                    allocation.residual[arc as usize] += amount;
                }
            }
        }
        for pair in pairs {
            self.enumerate_pair(pair, now);
        }
        let mut by_level: BTreeMap<u8, Vec<usize>> = BTreeMap::new();
        for &commodity in affected {
            self.engine[commodity].paths = self.order_candidates(commodity, now);
            by_level
                .entry(self.engine[commodity].level)
                .or_default()
                .push(commodity);
        }
        for members in by_level.values() {
            alloc::allocate_level(&self.paths, &self.engine, members, &mut allocation);
        }
        // A commodity left short is fine only when no lower class holds room it could use
        // (strict priority would preempt that class: only a full solve does).
        let preempts = affected.iter().any(|&c| {
            let engine = &self.engine[c];
            allocation.carried(c) + CARRIED_SLACK < engine.demand
                && engine.paths.iter().any(|&p| {
                    self.paths
                        .arcs(p)
                        .iter()
                        .any(|&arc| self.lowest_level_on_arc[arc as usize] > engine.level)
                })
        });
        if preempts {
            return None;
        }
        for &commodity in affected {
            let flows = allocation.flows[commodity].clone();
            self.note_levels(commodity, &flows);
        }
        let after: f64 = affected.iter().map(|&c| allocation.carried(c)).sum();
        self.totals.1 += after - before;
        self.allocation = Some(allocation);
        let mut touched = BTreeSet::new();
        for &commodity in affected {
            self.settle(commodity, now, plan, &mut touched);
        }
        Some(touched)
    }

    fn note_levels(&mut self, commodity: usize, flows: &[(PathId, f64)]) {
        let level = self.engine[commodity].level;
        for &(path, amount) in flows {
            if amount > 0.0 {
                for &arc in self.paths.arcs(path) {
                    let lowest = &mut self.lowest_level_on_arc[arc as usize];
                    *lowest = (*lowest).max(level);
                }
            }
        }
    }

    /// Candidate paths of one pair, best quality first, appended to the path store.
    fn enumerate_pair(&mut self, pair: usize, now: At) {
        let (src, dst) = (self.pairs[pair].src, self.pairs[pair].dst);
        let mut found = std::mem::take(&mut self.scratch_found);
        found.clear();
        for &a in &self.graph.sites[src as usize].lines {
            for &b in &self.graph.sites[dst as usize].lines {
                if self.tunnel(src, a, dst, b) {
                    found.push(self.path_info(&[a, b], None));
                }
            }
        }
        for &hub in &self.transit_sites {
            if hub == src || hub == dst {
                continue;
            }
            let hub_lines = &self.graph.sites[hub as usize].lines;
            let ins: Vec<(LineId, LineId)> = self.graph.sites[src as usize]
                .lines
                .iter()
                .flat_map(|&a| hub_lines.iter().map(move |&x| (a, x)))
                .filter(|&(a, x)| self.tunnel(src, a, hub, x))
                .collect();
            let outs: Vec<(LineId, LineId)> = hub_lines
                .iter()
                .flat_map(|&y| {
                    self.graph.sites[dst as usize]
                        .lines
                        .iter()
                        .map(move |&b| (y, b))
                })
                .filter(|&(y, b)| self.tunnel(hub, y, dst, b))
                .collect();
            if ins.len() * outs.len() <= 16 {
                for &(a, x) in &ins {
                    for &(y, b) in &outs {
                        found.push(self.path_info(&[a, x, y, b], Some(hub)));
                    }
                }
            } else {
                // Many combinations: per source line the best way in, per destination line
                // the best way out.
                let best = |pairs: &[(LineId, LineId)], hub_side_first: bool| {
                    let mut best: BTreeMap<LineId, (LineId, f64)> = BTreeMap::new();
                    for &(p, q) in pairs {
                        let (outer, hub_line) = if hub_side_first { (q, p) } else { (p, q) };
                        let s = score(self.graph.quality(hub_line));
                        let entry = best.entry(outer).or_insert((hub_line, s));
                        if s < entry.1 {
                            *entry = (hub_line, s);
                        }
                    }
                    best
                };
                let best_in = best(&ins, false);
                let best_out = best(&outs, true);
                for (&a, &(x, _)) in &best_in {
                    for (&b, &(y, _)) in &best_out {
                        found.push(self.path_info(&[a, x, y, b], Some(hub)));
                    }
                }
            }
        }
        // Keys are distinct (the path breaks ties), so an unstable sort orders as a stable one.
        found.sort_unstable_by(|p, q| {
            (p.score + p.cost * 1e-3)
                .total_cmp(&(q.score + q.cost * 1e-3))
                .then(p.key.cmp(&q.key))
        });
        // The best few by quality, plus the best two of every (source line, destination line)
        // combination, so each line at either end can take load, serve classes that prefer or
        // forbid others, and back up the rest.
        let found_count = found.len();
        // A few (source line, destination line) combinations: a vector beats a map.
        let mut per_ends: Vec<((LineId, LineId), usize)> = Vec::new();
        let mut kept = Vec::with_capacity(CANDIDATES_PER_PAIR);
        for &info in &found {
            let ends = (
                info.key.first(),
                info.key.lines()[info.key.len as usize - 1],
            );
            let slot = match per_ends.iter().position(|&(e, _)| e == ends) {
                Some(slot) => slot,
                None => {
                    per_ends.push((ends, 0));
                    per_ends.len() - 1
                }
            };
            let count = &mut per_ends[slot].1;
            let small = kept.len() < CANDIDATES_PER_PAIR && found_count <= CANDIDATES_PER_PAIR;
            if small
                || kept.len() < CANDIDATES_BEST
                || (*count < 2 && kept.len() < CANDIDATES_PER_PAIR)
            {
                *count += 1;
                kept.push(info);
            }
        }
        self.scratch_found = found;
        // The paths classes are on now stay candidates while their lines can still carry
        // them, so hysteresis (not the quality noise that picked the best way through a hub)
        // decides whether they move.
        for &commodity in &self.pairs[pair].commodities {
            let Some(placed) = self.commodities[commodity].placed else {
                continue;
            };
            if kept.iter().any(|info| info.key == placed) || !self.still_valid(src, dst, placed) {
                continue;
            }
            let via = (placed.len == 4).then(|| self.graph.line(placed.lines[1]).site);
            kept.push(self.path_info(placed.lines(), via));
        }
        let mut ids = Vec::with_capacity(kept.len());
        for info in kept {
            let (arcs, len) = info.key.arcs();
            ids.push(self.paths.push(&arcs[..len]));
            self.unsettled.push(self.unsettled_at(&info, now));
            self.infos.push(info);
        }
        self.pairs[pair].paths = ids;
    }

    /// True when a path found earlier between `src` and `dst` still consists of usable
    /// tunnels.
    fn still_valid(&self, src: SiteId, dst: SiteId, path: PathKey) -> bool {
        let l = path.lines;
        let site = |line: LineId| self.graph.line(line).site;
        if site(l[0]) != src || site(l[path.len as usize - 1]) != dst {
            return false;
        }
        match path.len {
            2 => self.tunnel(src, l[0], dst, l[1]),
            4 => {
                let hub = site(l[1]);
                site(l[2]) == hub
                    && self.transit_sites.contains(&hub)
                    && self.tunnel(src, l[0], hub, l[1])
                    && self.tunnel(hub, l[2], dst, l[3])
            }
            _ => false,
        }
    }

    /// True when line `a` of site `x` and line `b` of site `y` form a usable tunnel.
    fn tunnel(&self, x: SiteId, a: LineId, y: SiteId, b: LineId) -> bool {
        if !self.graph.can_tunnel(x, a, y, b) || !self.graph.usable(a) || !self.graph.usable(b) {
            return false;
        }
        let branch = |s: SiteId| self.graph.sites[s as usize].kind == SiteKind::Branch;
        !(self.graph.line(a).cloud == Cloud::Mpls && branch(x) && branch(y))
    }

    /// The quality of the tunnel from line `a` to line `b`. Each agent probes its line's far
    /// end, so when either line is a point-to-point link to the other's site (a hub line's
    /// `site:`), both ends measure the same tunnel: the worse of the two views counts, not
    /// their sum, which counted its latency twice. Between two lines open to their whole
    /// cloud each measurement covers one access into the cloud, and the two add.
    fn tunnel_quality(&self, a: LineId, b: LineId) -> Quality {
        let (from, to) = (self.graph.line(a), self.graph.line(b));
        let (seen_from, seen_to) = (self.graph.quality(a), self.graph.quality(b));
        if from.reaches == Some(to.site) || to.reaches == Some(from.site) {
            seen_from.worst(seen_to)
        } else {
            seen_from.then(seen_to)
        }
    }

    fn path_info(&self, lines: &[LineId], via: Option<SiteId>) -> PathInfo {
        let mut key = PathKey {
            lines: [0; 4],
            len: lines.len() as u8,
        };
        key.lines[..lines.len()].copy_from_slice(lines);
        let mut quality = Quality::default();
        let mut cost = 0.0;
        for tunnel in lines.chunks(2) {
            quality = quality.then(self.tunnel_quality(tunnel[0], tunnel[1]));
        }
        for &line in lines {
            cost += self.graph.line(line).cost;
        }
        PathInfo {
            key,
            via,
            quality,
            cost,
            score: score(quality),
            unmeasured: lines.iter().any(|&line| self.unmeasured(line)),
        }
    }

    /// No measurement of the line yet, and not one of a site resumed after a restart whose
    /// agent has yet to report again (see [`RESUME_GRACE`]).
    fn unmeasured(&self, line: LineId) -> bool {
        let line = self.graph.line(line);
        line.quality.is_none()
            && !(matches!(self.resume_grace, ResumeGrace::Until(_))
                && self.rates_held[line.site as usize])
    }

    /// Preference key of a path for a class: lower is better. A path with a line not yet
    /// measured counts as unsettled: used when nothing measured fits, never preferred.
    fn preference(&self, class: &ClassRules, info: &PathInfo, now: At) -> (bool, u32, u32, f64) {
        self.preference_with(class, info, self.unsettled_at(info, now))
    }

    /// [`Planner::preference`] of an enumerated path, its settledness read from the cache.
    fn path_preference(&self, class: &ClassRules, path: PathId) -> (bool, u32, u32, f64) {
        self.preference_with(
            class,
            &self.infos[path as usize],
            self.unsettled[path as usize],
        )
    }

    fn preference_with(
        &self,
        class: &ClassRules,
        info: &PathInfo,
        unsettled: bool,
    ) -> (bool, u32, u32, f64) {
        let first = info.key.first();
        (
            unsettled,
            class.rank[first as usize],
            self.graph.line(first).preference,
            info.cost,
        )
    }

    /// When the lines of `info` will have met `class`'s SLA for the hold-down, if one of
    /// them broke it more recently than that (see `sla_breaches`).
    fn recovering_until(&self, class: usize, info: &PathInfo, now: At) -> Option<At> {
        if self.sla_breaches.is_empty() {
            return None;
        }
        let timers = self.graph.timers();
        let (hold_down, cap) = (timers.hold_down.0, timers.dampening.max_suppress.0);
        info.key
            .lines()
            .iter()
            .filter_map(|&line| self.sla_breaches.get(&(line, class)))
            .map(|breach| breach.last + breach.wait(hold_down, cap))
            .filter(|&until| until > now)
            .max()
    }

    fn unsettled_at(&self, info: &PathInfo, now: At) -> bool {
        info.unmeasured
            || info
                .key
                .lines()
                .iter()
                .any(|&l| !self.graph.settled(l, now))
    }

    /// The commodity's candidates in the order the allocator should try them, with the
    /// incumbent first when hysteresis keeps it.
    fn order_candidates(&mut self, commodity: usize, now: At) -> Vec<PathId> {
        let state = &self.commodities[commodity];
        let class = &self.classes[state.class];
        let pair = &self.pairs[state.pair];
        // One pass: the paths the class may use, and whether any meets the SLA.
        let mut allowed = std::mem::take(&mut self.scratch);
        allowed.clear();
        let mut any_meets = false;
        for &p in &pair.paths {
            let info = &self.infos[p as usize];
            if info.key.lines().iter().any(|&l| class.never[l as usize]) {
                continue;
            }
            let meets = class.sla.met_by(info.quality);
            any_meets |= meets;
            allowed.push((p, meets));
        }
        let degraded = !any_meets;
        let mut feasible: Vec<PathId>;
        if degraded {
            feasible = allowed.iter().map(|&(p, _)| p).collect();
            feasible.sort_by(|&p, &q| {
                let (p, q) = (&self.infos[p as usize], &self.infos[q as usize]);
                class
                    .sla
                    .violation(p.quality)
                    .total_cmp(&class.sla.violation(q.quality))
                    .then(p.score.total_cmp(&q.score))
            });
        } else {
            // Keys computed once per path, then sorted (the comparator stays cheap).
            let mut keyed = std::mem::take(&mut self.scratch_keys);
            keyed.clear();
            keyed.extend(allowed.iter().filter(|&&(_, meets)| meets).map(|&(p, _)| {
                let info = &self.infos[p as usize];
                let (unsettled, rank, preference, cost) = self.path_preference(class, p);
                ((unsettled, rank, preference), cost, info.score, info.key, p)
            }));
            keyed.sort_unstable_by(|a, b| {
                a.0.cmp(&b.0)
                    .then(a.1.total_cmp(&b.1))
                    .then(a.2.total_cmp(&b.2))
                    .then(a.3.cmp(&b.3))
            });
            feasible = keyed.iter().map(|k| k.4).collect();
            self.scratch_keys = keyed;
        }
        // Resumed after a restart: the best candidate matching the restored path is the
        // incumbent — same first line, hub and hub out-line if there is one, else the
        // closest match.
        if state.placed.is_none()
            && let Some(restored) = state.restored
        {
            let candidates = || {
                feasible
                    .iter()
                    .copied()
                    .chain(allowed.iter().map(|&(p, _)| p))
            };
            let resumed = (0..=2).rev().find_map(|strictness| {
                candidates().find(|&p| restored.matches(&self.infos[p as usize], strictness))
            });
            let state = &mut self.commodities[commodity];
            state.restored = None;
            if let Some(path) = resumed {
                let info = self.infos[path as usize];
                state.placed = Some(info.key);
                state.chosen = Some(info);
                state.placed_at = now;
                state.seen = true;
            }
        }
        let state = &self.commodities[commodity];
        let class = &self.classes[state.class];
        // Hysteresis: keep the incumbent in front unless a move is due.
        if let (Some(placed), Some(&best)) = (state.placed, feasible.first()) {
            let position = feasible
                .iter()
                .position(|&p| self.infos[p as usize].key == placed);
            if let Some(position) = position.filter(|&p| p > 0) {
                let incumbent = self.infos[feasible[position] as usize];
                let best_info = self.infos[best as usize];
                let hold_down = self.graph.timers().hold_down.0;
                let held = now.saturating_sub(state.placed_at) < hold_down;
                let a = self.path_preference(class, best);
                let b = self.path_preference(class, feasible[position]);
                let preferred = (a.0, a.1, a.2) < (b.0, b.1, b.2)
                    || ((a.0, a.1, a.2) == (b.0, b.1, b.2) && a.3 < b.3);
                let min_improvement = self.policy.timers.min_improvement.fraction();
                let better_enough = (a.0, a.1, a.2) == (b.0, b.1, b.2)
                    && best_info.score <= incumbent.score * (1.0 - min_improvement);
                // Degraded incumbents (no SLA-compliant path) move freely towards less bad,
                // and so do incumbents on a line nobody has measured yet towards a measured one.
                let leaves_unknown = incumbent.unmeasured && !best_info.unmeasured;
                let recovering = self.recovering_until(state.class, &best_info, now);
                if !degraded
                    && !leaves_unknown
                    && (held || recovering.is_some() || !(preferred || better_enough))
                {
                    let kept = feasible.remove(position);
                    feasible.insert(0, kept);
                    if held && (preferred || better_enough) {
                        let at = state.placed_at + hold_down;
                        self.revisits.entry(at).or_default().insert(commodity);
                    }
                    if let Some(at) = recovering.filter(|_| preferred || better_enough) {
                        self.revisits.entry(at).or_default().insert(commodity);
                    }
                }
            }
        }
        self.scratch = allowed;
        self.commodities[commodity].degraded = degraded;
        feasible
    }

    /// Reads the allocator's result for one commodity: route, backups, decision.
    fn settle(
        &mut self,
        commodity: usize,
        now: At,
        plan: &mut Plan,
        touched: &mut BTreeSet<SiteId>,
    ) {
        let allocation = self.allocation.as_ref().expect("allocated before settling");
        let ordered = &self.engine[commodity].paths;
        let chosen_path = allocation
            .main_path(commodity)
            .or_else(|| allocation.flows[commodity].first().map(|f| f.0))
            .or_else(|| ordered.first().copied());
        let carried = allocation.carried(commodity);
        let chosen = chosen_path.map(|p| self.infos[p as usize]);
        let state = &self.commodities[commodity];
        let class = &self.classes[state.class];
        let pair = &self.pairs[state.pair];
        // Backups: the other first lines, those with an SLA-meeting candidate first, then by
        // the class's preference, line preference and cost — not by the quality score, so
        // probe noise between two equal lines does not reorder them (and re-push the site).
        let mut backups: Vec<LineId> = Vec::new();
        if let Some(chosen) = chosen {
            let allowed = pair.paths.iter().copied().filter(|&p| {
                self.infos[p as usize]
                    .key
                    .lines()
                    .iter()
                    .all(|&l| !class.never[l as usize])
            });
            // A handful of first lines: a vector beats a map.
            let mut best: Vec<(LineId, BackupKey)> = Vec::new();
            for p in allowed {
                let info = &self.infos[p as usize];
                let first = info.key.first();
                if first == chosen.key.first() {
                    continue;
                }
                let (unsettled, rank, preference, cost) = self.path_preference(class, p);
                let key = (
                    !ordered.contains(&p),
                    (unsettled, rank, preference),
                    (cost.max(0.0) * 1000.0).round() as u64,
                );
                match best.iter_mut().find(|(line, _)| *line == first) {
                    Some(entry) => entry.1 = entry.1.min(key),
                    None => best.push((first, key)),
                }
            }
            let mut ranked = best;
            ranked.sort_by_key(|&(line, key)| (key, line));
            backups = ranked.into_iter().map(|(line, _)| line).collect();
        }
        let new_key = chosen.map(|c| c.key);
        let old_key = state.placed;
        let old_via = state.chosen.and_then(|c| c.via);
        let new_via = chosen.and_then(|c| c.via);
        let src = pair.src;
        let route = chosen.map(|info| self.route_reason(commodity, &info, carried));
        let state = &self.commodities[commodity];
        // The route's words change only when what they say changes (figures at the
        // precision they are shown): otherwise the old reason, and its text, stay.
        let same_words = match (&state.route, &route) {
            (Some(old), Some(new)) => old.reads_as(new),
            (None, None) => state.seen,
            _ => false,
        };
        // A move is what an operator would call one: the class leaves on another line, or
        // goes through another hub. Another way through the same hub (or the far end's
        // other line of the same cloud) re-routes quietly; the hold-down keeps running.
        let moved = !state.seen
            || new_key.map(|k| k.first()) != old_key.map(|k| k.first())
            || new_via != old_via;
        if new_key != old_key && !moved {
            self.commodities[commodity].placed = new_key;
        }
        if moved {
            let reason = self.move_reason(commodity, chosen, carried, route.as_ref(), now);
            let state = &self.commodities[commodity];
            let pair = &self.pairs[state.pair];
            let name = |names: &[Arc<str>], i: u32| Name::from(names[i as usize].clone());
            plan.decisions.push(Decision {
                site: name(&self.names.sites, pair.src),
                class: name(&self.names.classes, state.class as u32),
                destination: name(&self.names.sites, pair.dst),
                from_line: old_key.map(|k| name(&self.names.lines, k.first())),
                to_line: new_key.map(|k| name(&self.names.lines, k.first())),
                path: new_key
                    .map(|k| {
                        k.lines()
                            .iter()
                            .map(|&l| self.names.labels[l as usize].clone())
                            .collect()
                    })
                    .unwrap_or_default(),
                reason,
                at: now,
            });
            let state = &mut self.commodities[commodity];
            state.placed = new_key;
            state.placed_at = now;
            state.seen = true;
        }
        let state = &mut self.commodities[commodity];
        let changed_route = !same_words || state.backups != backups || new_key != old_key;
        state.chosen = chosen;
        state.backups = backups;
        if !same_words {
            state.route = route;
            state.route_text = None;
        }
        if let Some(hub) = old_via {
            self.transit[hub as usize].remove(&commodity);
            touched.insert(hub);
        }
        if let Some(hub) = new_via {
            self.transit[hub as usize].insert(commodity);
            touched.insert(hub);
        }
        if changed_route || self.engine[commodity].demand > 0.0 {
            touched.insert(src);
        }
    }

    /// Why the route reads from `info`: the data, not yet words.
    fn route_reason(&self, commodity: usize, info: &PathInfo, carried: f64) -> RouteReason {
        let state = &self.commodities[commodity];
        let class = &self.classes[state.class];
        let unmeasured = if info.unmeasured {
            info.key
                .lines()
                .iter()
                .filter(|&&l| self.unmeasured(l))
                .map(|&l| self.names.labels[l as usize].clone())
                .collect()
        } else {
            Vec::new()
        };
        RouteReason {
            line: self.names.lines[info.key.first() as usize].clone(),
            via: info.via.map(|hub| self.names.sites[hub as usize].clone()),
            quality: info.quality,
            sla: class.sla,
            unmeasured,
            degraded: state.degraded,
            short: (carried + CARRIED_SLACK < state.demand).then_some((carried, state.demand)),
        }
    }

    /// Why a commodity left its old path (or got its first one).
    fn move_reason(
        &self,
        commodity: usize,
        chosen: Option<PathInfo>,
        carried: f64,
        route: Option<&RouteReason>,
        now: At,
    ) -> Reason {
        let state = &self.commodities[commodity];
        let rules = &self.classes[state.class];
        let class = self.names.classes[state.class].clone();
        let label = |l: LineId| self.names.labels[l as usize].clone();
        let (Some(chosen), Some(route)) = (chosen, route) else {
            return Reason::new(ReasonDetail::NoPath { class });
        };
        let Some(old) = state.placed else {
            return Reason::new(ReasonDetail::Initial {
                class,
                line: label(chosen.key.first()),
                route: route.clone(),
            });
        };
        let from = label(old.first());
        let to = label(chosen.key.first());
        if let Some(&down) = old.lines().iter().find(|&&l| !self.graph.usable(l)) {
            return Reason::new(ReasonDetail::LineDown {
                class,
                from,
                to,
                down: label(down),
            });
        }
        if let Some(&never) = old.lines().iter().find(|&&l| rules.never[l as usize]) {
            return Reason::new(ReasonDetail::Forbidden {
                class,
                from,
                never: label(never),
            });
        }
        let old_quality = self.path_info(old.lines(), None).quality;
        let breaches = rules.sla.breaches(old_quality);
        if let Some(&(metric, _, _)) = breaches.first() {
            return Reason::new(ReasonDetail::SlaBreach {
                class,
                from,
                to,
                now: match metric {
                    Metric::Latency => chosen.quality.latency_ms,
                    Metric::Loss => chosen.quality.loss,
                    Metric::Jitter => chosen.quality.jitter_ms,
                },
                breaches: breaches
                    .into_iter()
                    .map(|(metric, value, bound)| Breach {
                        metric,
                        value,
                        bound,
                    })
                    .collect(),
            });
        }
        let still_candidate = self.pairs[state.pair]
            .paths
            .iter()
            .any(|&p| self.infos[p as usize].key == old);
        if !still_candidate {
            return Reason::new(ReasonDetail::PathGone { class, from, to });
        }
        let ordered_first = self.engine[commodity]
            .paths
            .first()
            .map(|&p| self.infos[p as usize].key);
        if ordered_first == Some(old) || carried + CARRIED_SLACK < state.demand {
            return Reason::new(ReasonDetail::Capacity {
                class,
                from,
                to,
                demand_bps: state.demand,
            });
        }
        let old_info = self.path_info(old.lines(), None);
        if old_info.unmeasured && !chosen.unmeasured {
            return Reason::new(ReasonDetail::LeftUnmeasured {
                class,
                from,
                to,
                route: route.clone(),
            });
        }
        let a = self.preference(rules, &chosen, now);
        let b = self.preference(rules, &old_info, now);
        if (a.0, a.1, a.2) < (b.0, b.1, b.2) {
            return Reason::new(ReasonDetail::PreferenceRestored {
                class,
                from,
                to,
                hold_down: self.policy.timers.hold_down,
                rank: a.1,
                old_rank: b.1,
            });
        }
        Reason::new(ReasonDetail::Improvement {
            class,
            from,
            to,
            score_ms: chosen.score,
            old_score_ms: old_info.score,
            min_improvement: self.policy.timers.min_improvement,
        })
    }

    /// Compiles the touched sites; changed content gets the next version.
    fn compile(&mut self, sites: &BTreeSet<SiteId>, plan: &mut Plan) {
        let mut by_src: HashMap<SiteId, Vec<usize>> = HashMap::new();
        if sites.len() == self.graph.sites.len() {
            for (i, state) in self.commodities.iter().enumerate() {
                by_src
                    .entry(self.pairs[state.pair].src)
                    .or_default()
                    .push(i);
            }
        } else {
            for &site in sites {
                let mine: Vec<usize> = self.pairs_of_site[site as usize]
                    .iter()
                    .filter(|&&p| self.pairs[p].src == site)
                    .flat_map(|&p| self.pairs[p].commodities.iter().copied())
                    .collect();
                by_src.insert(site, mine);
            }
        }
        // Route reasons are words only in rule sets: render those not rendered yet.
        let mut words = String::new();
        for &site in sites {
            let own = by_src.get(&site).map(Vec::as_slice).unwrap_or(&[]);
            for &commodity in own.iter().chain(self.transit[site as usize].iter()) {
                let state = &mut self.commodities[commodity];
                if state.route_text.is_none() {
                    reason::render_route(&mut words, state.route.as_ref());
                    state.route_text = Some(Arc::from(words.as_str()));
                }
            }
        }
        let allocation = self.allocation.as_ref();
        let class_count = self.policy.classes.len();
        for &site in sites {
            let site_name = &self.graph.sites[site as usize].name;
            // One route per (class, destination prefix), for the site's own traffic and what
            // it forwards for others alike: see [`crate::compile::outranks`].
            // Per (class, prefix): the winning route, whose commodity it is and its line.
            let mut routes: BTreeMap<(usize, IpNet), (RouteOrigin, usize, LineId, ClassRoute)> =
                BTreeMap::new();
            let mut in_force = TransitInForce::default();
            // Whether two commodities ever competed for one route (only at hubs and DCs).
            let mut contested = false;
            let own = by_src.get(&site).map(Vec::as_slice).unwrap_or(&[]);
            let transit = self.transit[site as usize].iter().copied();
            let contributing: Vec<usize> = own.iter().copied().chain(transit).collect();
            for &commodity in &contributing {
                let state = &self.commodities[commodity];
                let Some(chosen) = state.chosen else { continue };
                let is_own = self.pairs[state.pair].src == site;
                // At the source the first line carries the class; at a hub the out-line.
                let line = if is_own {
                    chosen.key.lines[0]
                } else {
                    chosen.key.lines[2]
                };
                let backups: Vec<String> = if is_own {
                    state
                        .backups
                        .iter()
                        .map(|&l| self.graph.line(l).name.clone())
                        .collect()
                } else {
                    // At a hub: its other lines that still reach the destination.
                    let dst = self.pairs[state.pair].dst;
                    self.graph.sites[site as usize]
                        .lines
                        .iter()
                        .filter(|&&l| {
                            l != line
                                && self.graph.sites[dst as usize]
                                    .lines
                                    .iter()
                                    .any(|&b| self.tunnel(site, l, dst, b))
                        })
                        .map(|&l| self.graph.line(l).name.clone())
                        .collect()
                };
                let origin = if is_own {
                    RouteOrigin::Own
                } else {
                    RouteOrigin::Transit {
                        demand_bps: state.demand,
                    }
                };
                let route_text = state.route_text.as_deref().unwrap_or("no usable path");
                let dst = self.pairs[state.pair].dst;
                for &prefix in &self.graph.sites[dst as usize].lan {
                    let entry = routes.entry((state.class, prefix));
                    let candidate = ClassRoute {
                        class: self.classes[state.class].name.clone(),
                        destination: prefix,
                        primary: self.graph.line(line).name.clone(),
                        backups: backups.clone(),
                        reason: if is_own {
                            route_text.to_string()
                        } else {
                            format!(
                                "{TRANSIT_REASON_PREFIX}{}: {route_text}",
                                self.graph.sites[self.pairs[state.pair].src as usize].name,
                            )
                        },
                    };
                    match entry {
                        std::collections::btree_map::Entry::Vacant(v) => {
                            v.insert((origin, commodity, line, candidate));
                        }
                        std::collections::btree_map::Entry::Occupied(mut o) => {
                            contested = true;
                            let (held, holder, _, _) = o.get();
                            let displaces = if *held == RouteOrigin::Own {
                                self.transit_displaces_own(
                                    site,
                                    *holder,
                                    commodity,
                                    prefix,
                                    &mut in_force,
                                )
                            } else {
                                outranks(origin, *held)
                            };
                            if displaces {
                                o.insert((origin, commodity, line, candidate));
                            }
                        }
                    }
                }
            }
            // The load of each line by class, for HTB: where the allocation put each
            // commodity, except that a commodity whose route lost to another's goes
            // wherever the winning route sends it.
            let mut loads: BTreeMap<String, Vec<f64>> = BTreeMap::new();
            if let Some(allocation) = allocation {
                for &commodity in &contributing {
                    let state = &self.commodities[commodity];
                    if state.chosen.is_none() {
                        continue;
                    }
                    let is_own = self.pairs[state.pair].src == site;
                    let dst = self.pairs[state.pair].dst;
                    let winner = contested
                        .then(|| self.graph.sites[dst as usize].lan.first())
                        .flatten()
                        .and_then(|prefix| routes.get(&(state.class, *prefix)))
                        .filter(|(_, won, _, _)| *won != commodity)
                        .map(|(_, _, line, _)| *line);
                    for &(path, amount) in &allocation.flows[commodity] {
                        let key = self.infos[path as usize].key;
                        let on = if is_own {
                            key.lines[0]
                        } else if key.len == 4 {
                            key.lines[2]
                        } else {
                            continue;
                        };
                        let on = winner.unwrap_or(on);
                        let name = &self.graph.line(on).name;
                        loads
                            .entry(name.clone())
                            .or_insert_with(|| vec![0.0; class_count])[state.class] += amount;
                    }
                }
            }
            let Some(mut ruleset) = compile_site(SiteInput {
                policy: &self.policy,
                specs: &self.specs,
                site: site_name,
                line_loads: loads,
                routes: routes.into_values().map(|(_, _, _, r)| r).collect(),
                previous: self.rulesets[site as usize].as_ref(),
                hold_rates: self.rates_held[site as usize],
            }) else {
                continue;
            };
            let previous = &self.rulesets[site as usize];
            if previous.as_ref().is_some_and(|p| p.hash == ruleset.hash) {
                continue;
            }
            ruleset.version = previous.as_ref().map_or(1, |p| p.version + 1);
            plan.rulesets.insert(site_name.clone(), ruleset.clone());
            self.rulesets[site as usize] = Some(ruleset);
        }
    }
}

impl Planner {
    /// Whether the traffic of `transit` (through the hub that is the source of `own`, same
    /// class and destination) meets its class's SLA when the hub forwards it on `own`'s
    /// path instead of the out-line chosen for it; `None` when a line of that path has no
    /// measurement to tell.
    fn own_route_serves(&self, own: usize, transit: usize) -> Option<bool> {
        let (own, transit) = (&self.commodities[own], &self.commodities[transit]);
        let (Some(own_path), Some(transit_path)) = (own.chosen, transit.chosen) else {
            return Some(false);
        };
        let (own_key, transit_key) = (own_path.key, transit_path.key);
        if own_key.len != 2 || transit_key.len != 4 {
            return Some(false);
        }
        if own_key.lines[0] == transit_key.lines[2] {
            return Some(true);
        }
        let hub = self.pairs[own.pair].src;
        let lines = [
            transit_key.lines[0],
            transit_key.lines[1],
            own_key.lines[0],
            own_key.lines[1],
        ];
        if lines.iter().any(|&l| self.graph.line(l).quality.is_none()) {
            return None;
        }
        let rerouted = self.path_info(&lines, Some(hub));
        Some(self.classes[transit.class].sla.met_by(rerouted.quality))
    }

    /// Whether the route at `site` (a hub) for `transit`'s traffic to `prefix` displaces the
    /// hub's own route (`own`) for the same class and prefix. The hub's own route stands
    /// where the traffic it forwards meets its SLA on it too: no reason to move the hub's
    /// own. Otherwise a transit route carrying demand wins ([`outranks`]). Not knowing —
    /// lines unmeasured or the source's demand unknown since a restart — the route in
    /// force stands.
    fn transit_displaces_own(
        &self,
        site: SiteId,
        own: usize,
        transit: usize,
        prefix: IpNet,
        in_force: &mut TransitInForce,
    ) -> bool {
        let state = &self.commodities[transit];
        let src = self.pairs[state.pair].src;
        let carries = outranks(
            RouteOrigin::Transit {
                demand_bps: state.demand,
            },
            RouteOrigin::Own,
        );
        if !self.rates_held[src as usize] && !carries {
            return false;
        }
        match self.own_route_serves(own, transit) {
            Some(serves) if !self.rates_held[src as usize] => !serves,
            _ => in_force.source(self, site, state.class, prefix) == Some(src),
        }
    }
}

/// Per (class, prefix): the site a hub's rule set in force forwards for, where its route
/// is a transit route. Read from the rule set once per compile, and only if asked: after a
/// restart a hub's rule set may hold a route per branch and class.
#[derive(Debug, Default)]
struct TransitInForce {
    by_route: Option<HashMap<(usize, IpNet), SiteId>>,
}

impl TransitInForce {
    fn source(
        &mut self,
        planner: &Planner,
        site: SiteId,
        class: usize,
        prefix: IpNet,
    ) -> Option<SiteId> {
        let by_route = self.by_route.get_or_insert_with(|| {
            let Some(ruleset) = planner.rulesets[site as usize].as_ref() else {
                return HashMap::new();
            };
            ruleset
                .routes
                .iter()
                .filter_map(|route| {
                    let rest = route.reason.strip_prefix(TRANSIT_REASON_PREFIX)?;
                    let (name, _) = rest.split_once(':')?;
                    let src = planner.graph.site_id(name)?;
                    let class = planner.classes.iter().position(|c| c.name == route.class)?;
                    Some(((class, route.destination), src))
                })
                .collect()
        });
        by_route.get(&(class, prefix)).copied()
    }
}

impl Restored {
    /// Whether a candidate is the restored path: same first line; with `strictness` ≥ 1
    /// also the same hub (or none); with 2 also the hub's out-line when it is known.
    fn matches(&self, info: &PathInfo, strictness: u8) -> bool {
        let Some(first) = self.first else {
            return true;
        };
        info.key.first() == first
            && (strictness < 1 || info.via == self.via)
            && (strictness < 2
                || self
                    .hub_out
                    .is_none_or(|out| info.key.len == 4 && info.key.lines[2] == out))
    }
}

/// The hub or DC a route goes through, as its reason names it (`mpls via hub1: …`, written
/// by [`RouteReason`]'s rendering): rule sets carry the first hop as data, the hub only in
/// these words.
fn via_of(route: &ClassRoute) -> Option<&str> {
    let (hub, _) = route
        .reason
        .strip_prefix(route.primary.as_str())?
        .strip_prefix(" via ")?
        .split_once(": ")?;
    Some(hub)
}

/// Records that `line` broke `class`'s SLA at `at` (see [`SlaBreach`]).
fn record_breach(
    breaches: &mut HashMap<(LineId, usize), SlaBreach>,
    timers: &wansteer_policies::model::Timers,
    line: LineId,
    class: usize,
    at: At,
) {
    let (hold_down, cap) = (timers.hold_down.0, timers.dampening.max_suppress.0);
    breaches
        .entry((line, class))
        .and_modify(|breach| breach.note(at, hold_down, cap))
        .or_insert(SlaBreach {
            last: at,
            episodes: 1,
        });
}
