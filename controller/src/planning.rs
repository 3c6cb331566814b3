//! The seam between the service and the path planner.
//!
//! The service feeds the planner the policy and the agents' reports and asks it for rule
//! sets; it never decides a path itself. Rule sets come back unversioned: the service gives
//! a site a new version only when the content hash changed, so re-planning the same inputs
//! pushes nothing.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use wansteer_policies::Policy;
use wansteer_wire::ruleset::RuleSet;
use wansteer_wire::session::Report;

/// A path planner the service can drive.
pub trait Planning: Send + 'static {
    /// A new policy is in force (also called once at start).
    fn on_policy(&mut self, policy: &Policy);
    /// An agent reported measurements, health events and demand.
    fn on_report(&mut self, report: &Report);
    /// Plans every site now; `now_ms` is wall-clock milliseconds since the Unix epoch.
    fn plan(&mut self, now_ms: u64) -> Plan;
    /// The rule sets a previous process published (called once at start, after the first
    /// [`Planning::on_policy`]): a planner that keeps placements resumes from them, so a
    /// restart re-publishes the same content instead of re-placing every class.
    ///
    /// `memory` is what [`Planning::memory_if_changed`] last returned in that process.
    fn restore(&mut self, _rule_sets: &[RuleSet], _memory: Option<&str>) {}
    /// What the planner knows beyond the rule sets and should keep across a restart (line
    /// flap penalties, hold-downs, SLA breach history), as JSON; `None` when it did not
    /// change since the last call. `now_ms` is wall-clock milliseconds since the epoch.
    fn memory_if_changed(&mut self, _now_ms: u64) -> Option<String> {
        None
    }
}

/// What one planning round produced.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// The desired rule set per site (version and hash are set by the service). Sites left
    /// out keep what they have, so an incremental planner returns only the sites whose rule
    /// set may have changed; returning every site is correct too, only slower.
    pub rule_sets: BTreeMap<String, RuleSet>,
    /// Classes moved in this round, each with its reason.
    pub decisions: Vec<DecisionRecord>,
}

/// One steering decision: what moved, and why, with the measurements behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionRecord {
    /// Wall-clock milliseconds since the Unix epoch.
    pub at_ms: u64,
    pub site: String,
    pub class: String,
    /// Destination prefix, or `*` for all of the class's destinations.
    pub destination: String,
    /// The line the class was on (none on first placement).
    pub from_line: Option<String>,
    pub to_line: String,
    /// In words, e.g. "voice off mpls: loss 3.1% > 1% for 2.0 s".
    pub reason: String,
    /// The figures the decision rested on (free-form for now).
    #[serde(default)]
    pub measurements: serde_json::Value,
}

/// A planner that plans nothing: every site keeps the rule set it has.
///
/// Used until the path solver is wired into the command line, so the service, API and
/// agents' sessions run without it; it says so in the log at start.
#[derive(Debug, Default)]
pub struct NoPlanner;

impl Planning for NoPlanner {
    fn on_policy(&mut self, _policy: &Policy) {}
    fn on_report(&mut self, _report: &Report) {}
    fn plan(&mut self, _now_ms: u64) -> Plan {
        Plan::default()
    }
}
