//! The real path planner behind the service's [`Planning`] seam.
//!
//! Translates what agents report (per-line measurements in the session's units, per-class
//! demand) into the planner's inputs, and the planner's decisions into the records the
//! service stores, audits and shows. No decision is taken here.

use std::time::Duration;

use tracing::{info, warn};
use wansteer_policies::Policy;
use wansteer_wire::session::{self, Report};

use crate::graph::{self, LineMeasurement};
use crate::plan::{ClassDemand, Decision, Planner, PlannerMemory};
use crate::planning::{DecisionRecord, Plan, Planning};

/// The SLA-aware solver of [`crate::plan`], driven by the service.
#[derive(Debug, Default)]
pub struct SolverPlanning {
    planner: Option<Planner>,
}

impl SolverPlanning {
    pub fn new() -> Self {
        SolverPlanning::default()
    }
}

/// The planner's view of a line's health. A line the agent cannot judge yet (`unknown`,
/// e.g. right after start) is treated as degraded: usable when nothing better fits, never
/// preferred over a line known to be good.
fn health(health: session::LineHealth) -> graph::LineHealth {
    match health {
        session::LineHealth::Up => graph::LineHealth::Up,
        session::LineHealth::Degraded | session::LineHealth::Unknown => graph::LineHealth::Degraded,
        session::LineHealth::Down => graph::LineHealth::Down,
    }
}

/// The loss the planner holds a line to: the lower bound of the agent's 95% interval when
/// it sent one, so a class leaves a line only when the line surely breaks its SLA, not on a
/// short run of bad luck. Gross loss is caught by the agent's own health machine (and its
/// local failover) long before the interval matters.
fn judged_loss_percent(line: &session::LineMeasurement) -> f64 {
    line.loss_bounds_percent
        .map_or(line.loss_percent, |(lower, _)| lower)
}

/// True when the figures rest on probes. A line the agent has not probed yet reports zeros
/// (no RTT, no loss) with no samples; those are "not measured", not "0.0 ms". A line reported
/// down counts anyway: its health matters, its figures do not.
fn measured(line: &session::LineMeasurement) -> bool {
    line.samples > 0 || line.health == session::LineHealth::Down
}

fn millis(ms: f64) -> Duration {
    Duration::from_secs_f64(ms.max(0.0) / 1000.0)
}

fn record(decision: Decision) -> DecisionRecord {
    DecisionRecord {
        at_ms: decision.at.as_millis() as u64,
        site: decision.site.to_string(),
        class: decision.class.to_string(),
        destination: decision.destination.to_string(),
        from_line: decision.from_line.map(|line| line.to_string()),
        to_line: decision
            .to_line
            .map_or_else(|| "none".to_string(), |line| line.to_string()),
        reason: decision.reason.text(),
        measurements: serde_json::json!({
            "kind": decision.reason.kind,
            "path": decision.path.iter().map(|hop| &**hop).collect::<Vec<&str>>(),
            "evidence": decision.reason.evidence(),
        }),
    }
}

impl Planning for SolverPlanning {
    fn on_policy(&mut self, policy: &Policy) {
        match &mut self.planner {
            Some(planner) => planner.replace_policy(policy.clone()),
            None => self.planner = Some(Planner::new(policy.clone())),
        }
    }

    fn on_report(&mut self, report: &Report) {
        let Some(planner) = &mut self.planner else {
            return;
        };
        planner.note_report(&report.site);
        let at = Duration::from_millis(report.at_ms);
        for line in &report.lines {
            if !measured(line) {
                // Nothing measured yet: the planner keeps the line as unknown (usable, ranked
                // after measured lines), rather than reading the zeros as a perfect line.
                continue;
            }
            let measurement = LineMeasurement {
                site: report.site.clone(),
                line: line.line.clone(),
                rtt: millis(line.rtt_ms),
                loss: (judged_loss_percent(line) / 100.0).clamp(0.0, 1.0),
                jitter: millis(line.jitter_ms),
                health: health(line.health),
                at,
            };
            if let Err(error) = planner.update_measurement(measurement) {
                warn!(site = %report.site, line = %line.line, %error, "measurement ignored");
                continue;
            }
            planner.note_loss_ratio(
                &report.site,
                &line.line,
                (line.loss_percent / 100.0).clamp(0.0, 1.0),
                at,
            );
        }
        for demand in &report.demand {
            // Demand without a destination site cannot be placed on a path; agents that
            // know the destination send it.
            let Some(destination) = &demand.destination else {
                continue;
            };
            let class_demand = ClassDemand {
                site: report.site.clone(),
                class: demand.class.clone(),
                destination: destination.clone(),
                bps: demand.bps as f64,
            };
            if let Err(error) = planner.update_demand(class_demand) {
                warn!(site = %report.site, class = %demand.class, %error, "demand ignored");
            }
        }
    }

    fn restore(&mut self, rule_sets: &[wansteer_wire::ruleset::RuleSet], memory: Option<&str>) {
        let Some(planner) = &mut self.planner else {
            return;
        };
        planner.resume(rule_sets.iter().cloned());
        let Some(json) = memory else { return };
        match serde_json::from_str::<PlannerMemory>(json) {
            Ok(memory) => {
                planner.restore_memory(&memory);
                info!(
                    lines = memory.lines.len(),
                    sla_breaches = memory.sla_breaches.len(),
                    "line memory restored"
                );
            }
            // Only history is lost: lines are judged afresh from the next reports.
            Err(error) => warn!(%error, "stored line memory unreadable; starting without it"),
        }
    }

    fn memory_if_changed(&mut self, now_ms: u64) -> Option<String> {
        let memory = self
            .planner
            .as_mut()?
            .memory_if_changed(Duration::from_millis(now_ms))?;
        Some(serde_json::to_string(&memory).expect("planner memory serialises"))
    }

    fn plan(&mut self, now_ms: u64) -> Plan {
        let Some(planner) = &mut self.planner else {
            return Plan::default();
        };
        let plan = planner.plan(Duration::from_millis(now_ms));
        Plan {
            rule_sets: plan.rulesets,
            decisions: plan.decisions.into_iter().map(record).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = r#"
sites:
  - name: dc
    kind: dc
    lan: [10.0.0.0/24]
    lines:
      - { name: mpls, transport: mpls, interface: m0, gateway: 172.16.1.1, up: 1gbit, down: 1gbit }
      - { name: inet, transport: internet, interface: i0, gateway: 172.16.2.1, up: 1gbit, down: 1gbit }
  - name: b1
    kind: branch
    lan: [10.1.0.0/24]
    lines:
      - { name: mpls, transport: mpls, interface: m0, gateway: 172.16.1.254, up: 50mbit, down: 50mbit, preference: 1 }
      - { name: inet, transport: internet, interface: i0, gateway: 172.16.2.254, up: 100mbit, down: 100mbit, preference: 2 }
classes:
  - name: voice
    priority: 1
    dscp: EF
    match: [{ protocols: [udp], ports: ["16384-32767"] }]
    sla: { latency: 150ms, loss: 1%, jitter: 30ms }
    steering: { prefer: [mpls] }
  - name: default
    priority: 7
"#;

    fn line(
        name: &str,
        loss_percent: f64,
        health: session::LineHealth,
    ) -> session::LineMeasurement {
        session::LineMeasurement {
            line: name.to_string(),
            rtt_ms: 20.0,
            loss_percent,
            loss_bounds_percent: None,
            jitter_ms: 1.0,
            samples: 100,
            health,
        }
    }

    fn report(site: &str, at_ms: u64, lines: Vec<session::LineMeasurement>) -> Report {
        Report {
            site: site.to_string(),
            at_ms,
            lines,
            ..Report::default()
        }
    }

    fn voice_line(plan: &Plan, site: &str) -> Option<String> {
        plan.rule_sets.get(site).and_then(|rules| {
            rules
                .routes
                .iter()
                .find(|route| route.class == "voice")
                .map(|route| route.primary.clone())
        })
    }

    /// [`POLICY`], and a planner under it.
    fn planning() -> (Policy, SolverPlanning) {
        let policy = wansteer_policies::check_source("p.yaml", POLICY)
            .unwrap()
            .policy;
        let mut planning = SolverPlanning::new();
        planning.on_policy(&policy);
        (policy, planning)
    }

    #[test]
    fn reported_loss_moves_voice_off_the_line_and_says_why() {
        let (_, mut planning) = planning();
        let up = session::LineHealth::Up;
        for site in ["dc", "b1"] {
            planning.on_report(&report(
                site,
                1_000,
                vec![line("mpls", 0.0, up), line("inet", 0.0, up)],
            ));
        }
        let first = planning.plan(1_000);
        assert_eq!(voice_line(&first, "b1").as_deref(), Some("mpls"));

        planning.on_report(&report(
            "b1",
            2_000,
            vec![
                line("mpls", 5.0, session::LineHealth::Degraded),
                line("inet", 0.0, up),
            ],
        ));
        let second = planning.plan(2_000);
        assert_eq!(voice_line(&second, "b1").as_deref(), Some("inet"));
        let moved = second
            .decisions
            .iter()
            .find(|d| d.site == "b1" && d.class == "voice")
            .expect("the move is recorded as a decision");
        assert_eq!(moved.from_line.as_deref(), Some("mpls"));
        assert!(moved.reason.contains("loss"), "{}", moved.reason);
    }

    #[test]
    fn line_memory_survives_its_json_and_unreadable_memory_only_loses_history() {
        let (policy, mut planning) = planning();
        let up = session::LineHealth::Up;
        let down = session::LineHealth::Down;
        for (at_ms, mpls) in [(1_000, up), (2_000, down), (3_000, up), (4_000, down)] {
            for site in ["dc", "b1"] {
                planning.on_report(&report(
                    site,
                    at_ms,
                    vec![line("mpls", 0.0, mpls), line("inet", 0.0, up)],
                ));
            }
        }
        let plan = planning.plan(4_000);
        let json = planning
            .memory_if_changed(4_000)
            .expect("the flaps are news");
        assert_eq!(planning.memory_if_changed(4_100), None, "nothing new since");
        let rule_sets: Vec<_> = plan.rule_sets.into_values().collect();

        let mut restored = SolverPlanning::new();
        restored.on_policy(&policy);
        restored.restore(&rule_sets, Some(&json));
        let memory: PlannerMemory = serde_json::from_str(&json).unwrap();
        let again = restored
            .planner
            .as_ref()
            .unwrap()
            .memory(Duration::from_millis(4_000));
        assert_eq!(
            again.lines, memory.lines,
            "both mpls lines, down, penalised"
        );
        assert_eq!(memory.lines.len(), 2, "{memory:?}");
        assert!(
            memory
                .lines
                .iter()
                .all(|l| l.health == graph::LineHealth::Down)
        );

        let mut fresh = SolverPlanning::new();
        fresh.on_policy(&policy);
        fresh.restore(&rule_sets, Some("{not json"));
        let memory = fresh
            .planner
            .as_ref()
            .unwrap()
            .memory(Duration::from_millis(4_000));
        assert!(memory.lines.is_empty() && memory.sla_breaches.is_empty());
        // The placements still resumed: voice stays where it was.
        let replanned = fresh.plan(4_100);
        assert!(
            replanned.decisions.is_empty(),
            "resumed without the memory: {:?}",
            replanned.decisions
        );
    }

    #[test]
    fn voice_stays_while_the_loss_interval_still_admits_its_sla() {
        let (_, mut planning) = planning();
        let up = session::LineHealth::Up;
        for site in ["dc", "b1"] {
            planning.on_report(&report(
                site,
                1_000,
                vec![line("mpls", 0.0, up), line("inet", 0.0, up)],
            ));
        }
        assert_eq!(
            voice_line(&planning.plan(1_000), "b1").as_deref(),
            Some("mpls")
        );

        // 2 of 80 probes lost: 2.5% as a ratio, but the interval reaches down to 0.7%.
        let mut unlucky = line("mpls", 2.5, up);
        unlucky.loss_bounds_percent = Some((0.7, 8.7));
        planning.on_report(&report("b1", 2_000, vec![unlucky, line("inet", 0.0, up)]));
        let second = planning.plan(2_000);
        assert!(
            !second
                .decisions
                .iter()
                .any(|d| d.site == "b1" && d.class == "voice"),
            "{:?}",
            second.decisions
        );

        // 5% with an interval wholly above 1%: voice leaves.
        let mut lossy = line("mpls", 5.0, up);
        lossy.loss_bounds_percent = Some((2.1, 11.0));
        planning.on_report(&report("b1", 3_000, vec![lossy, line("inet", 0.0, up)]));
        assert_eq!(
            voice_line(&planning.plan(3_000), "b1").as_deref(),
            Some("inet")
        );
    }

    fn voice_route(plan: &Plan, site: &str) -> wansteer_wire::ruleset::ClassRoute {
        plan.rule_sets[site]
            .routes
            .iter()
            .find(|route| route.class == "voice")
            .cloned()
            .expect("voice has a route")
    }

    #[test]
    fn a_fresh_deployment_routes_on_unmeasured_lines_and_says_they_are_not_measured() {
        let (_, mut planning) = planning();
        // Agents connected but have not probed yet: zeros and no samples.
        let mut silent = line("mpls", 0.0, session::LineHealth::Unknown);
        silent.rtt_ms = 0.0;
        silent.jitter_ms = 0.0;
        silent.samples = 0;
        let mut silent_inet = silent.clone();
        silent_inet.line = "inet".into();
        for site in ["dc", "b1"] {
            planning.on_report(&report(
                site,
                1_000,
                vec![silent.clone(), silent_inet.clone()],
            ));
        }
        let plan = planning.plan(1_000);
        let route = voice_route(&plan, "b1");
        assert_eq!(route.primary, "mpls", "still routed, on the preferred line");
        assert!(
            route.reason.contains("not measured yet"),
            "{}",
            route.reason
        );
        assert!(!route.reason.contains(" 0.0 ms"), "{}", route.reason);
        let placed = plan
            .decisions
            .iter()
            .find(|d| d.site == "b1" && d.class == "voice")
            .unwrap();
        assert!(
            placed.reason.contains("not measured yet"),
            "{}",
            placed.reason
        );
        assert!(!placed.reason.contains(" 0.0 ms"), "{}", placed.reason);
    }

    #[test]
    fn a_measured_line_meeting_the_sla_ranks_before_an_unmeasured_preferred_one() {
        let (_, mut planning) = planning();
        let up = session::LineHealth::Up;
        planning.on_report(&report(
            "dc",
            1_000,
            vec![line("mpls", 0.0, up), line("inet", 0.0, up)],
        ));
        // b1's mpls has no measurement yet (not in any report); its inet has one, and it
        // meets voice's SLA.
        planning.on_report(&report("b1", 1_000, vec![line("inet", 0.0, up)]));
        let plan = planning.plan(1_000);
        let route = voice_route(&plan, "b1");
        assert_eq!(route.primary, "inet", "{}", route.reason);
        assert_eq!(route.backups, vec!["mpls".to_string()]);
        assert!(!route.reason.contains(" 0.0 ms"), "{}", route.reason);

        // Once mpls is measured and good, voice goes back to its preferred line after the
        // hold-down, like onto any line that just became trustworthy.
        let good = || vec![line("mpls", 0.0, up), line("inet", 0.0, up)];
        planning.on_report(&report("b1", 2_000, good()));
        let plan = planning.plan(2_000);
        assert!(plan.decisions.is_empty(), "{:?}", plan.decisions);
        planning.on_report(&report("b1", 31_000, good()));
        planning.on_report(&report("dc", 31_000, good()));
        let plan = planning.plan(31_000);
        assert_eq!(voice_route(&plan, "b1").primary, "mpls");
    }
}
