//! Hysteresis with deterministic time: small wobbles do not move a class, a better path
//! waits for the hold-down and must clear `min_improvement`, a dead line moves everything
//! at once, and a flapping line costs at most one move per class per minute.

use std::time::Duration;

use wansteer_controller::graph::{LineHealth, LineMeasurement};
use wansteer_controller::plan::{ClassDemand, Plan, Planner, ReasonKind};
use wansteer_controller::solver::instances::{SdwanSpec, sdwan};
use wansteer_policies::Policy;

const POLICY: &str = r#"
sites:
  - name: b1
    kind: branch
    lan: [10.1.0.0/24]
    lines:
      - { name: mpls, transport: mpls, interface: wan0, up: 20mbit, down: 20mbit }
      - { name: inet, transport: internet, interface: wan1, up: 50mbit, down: 50mbit }
  - name: dc
    kind: dc
    lan: [10.9.0.0/16]
    lines:
      - { name: mpls, transport: mpls, interface: wan0, up: 1gbit, down: 1gbit }
      - { name: inet, transport: internet, interface: wan1, up: 1gbit, down: 1gbit }
classes:
  - { name: voice, priority: 1, sla: { latency: 150ms, loss: 1%, jitter: 30ms } }
timers: { hold_down: 30s, min_improvement: 10% }
"#;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn report(line: &str, rtt_ms: u64, loss: f64, health: LineHealth, at: Duration) -> LineMeasurement {
    LineMeasurement {
        site: "b1".into(),
        line: line.into(),
        rtt: Duration::from_millis(rtt_ms),
        loss,
        jitter: Duration::from_millis(1),
        health,
        at,
    }
}

fn planner() -> Planner {
    let policy: Policy = yaml_serde::from_str(POLICY).unwrap();
    let mut planner = Planner::new(policy);
    for (site, line) in [("dc", "mpls"), ("dc", "inet")] {
        planner
            .update_measurement(LineMeasurement {
                site: site.into(),
                line: line.into(),
                rtt: Duration::from_millis(2),
                loss: 0.0,
                jitter: Duration::ZERO,
                health: LineHealth::Up,
                at: Duration::ZERO,
            })
            .unwrap();
    }
    planner
        .update_demand(ClassDemand {
            site: "b1".into(),
            class: "voice".into(),
            destination: "dc".into(),
            bps: 1e6,
        })
        .unwrap();
    planner
}

fn voice_moves(plan: &Plan) -> Vec<(Option<String>, Option<String>, ReasonKind)> {
    plan.decisions
        .iter()
        .filter(|d| d.site == "b1" && d.class == "voice")
        .map(|d| {
            (
                d.from_line.as_ref().map(|l| l.to_string()),
                d.to_line.as_ref().map(|l| l.to_string()),
                d.reason.kind,
            )
        })
        .collect()
}

fn voice_line(planner: &Planner) -> String {
    let ruleset = planner.ruleset("b1").unwrap();
    ruleset
        .routes
        .iter()
        .find(|r| r.class == "voice")
        .unwrap()
        .primary
        .clone()
}

#[test]
fn wobble_below_min_improvement_moves_nothing() {
    let mut planner = planner();
    planner
        .update_measurement(report("mpls", 40, 0.0, LineHealth::Up, secs(0)))
        .unwrap();
    planner
        .update_measurement(report("inet", 42, 0.0, LineHealth::Up, secs(0)))
        .unwrap();
    planner.plan(secs(0));
    let start = voice_line(&planner);
    // The two lines trade places by a few per cent, for ten minutes.
    for step in 1..=60u64 {
        let at = secs(step * 10);
        let (a, b) = if step % 2 == 0 { (40, 42) } else { (42, 40) };
        planner
            .update_measurement(report("mpls", a, 0.0, LineHealth::Up, at))
            .unwrap();
        planner
            .update_measurement(report("inet", b, 0.0, LineHealth::Up, at))
            .unwrap();
        let plan = planner.plan(at);
        assert!(
            voice_moves(&plan).is_empty(),
            "moved at {at:?}: {:?}",
            voice_moves(&plan)
        );
    }
    assert_eq!(voice_line(&planner), start);
}

#[test]
fn better_path_waits_for_hold_down_then_moves_with_its_numbers() {
    let mut planner = planner();
    planner
        .update_measurement(report("mpls", 60, 0.0, LineHealth::Up, secs(0)))
        .unwrap();
    planner
        .update_measurement(report("inet", 80, 0.0, LineHealth::Up, secs(0)))
        .unwrap();
    planner.plan(secs(0));
    assert_eq!(voice_line(&planner), "mpls");
    // At 10 s the internet becomes much better (20 ms vs 60 ms RTT): > 10% better, but voice
    // was placed at 0 s and the hold-down is 30 s.
    planner
        .update_measurement(report("inet", 20, 0.0, LineHealth::Up, secs(10)))
        .unwrap();
    assert!(voice_moves(&planner.plan(secs(10))).is_empty());
    assert!(voice_moves(&planner.plan(secs(29))).is_empty());
    assert_eq!(
        planner.next_wakeup(),
        Some(secs(30)),
        "the planner says when to look again"
    );
    let plan = planner.plan(secs(30));
    assert_eq!(
        voice_moves(&plan),
        vec![(
            Some("mpls".into()),
            Some("inet".into()),
            ReasonKind::Improvement
        )]
    );
    let evidence = &plan.decisions[0].reason.evidence();
    assert!(
        evidence
            .iter()
            .any(|e| e.metric == "score" && e.subject == "b1/inet")
    );
}

#[test]
fn dead_line_moves_the_class_at_once_even_inside_hold_down() {
    let mut planner = planner();
    planner
        .update_measurement(report("mpls", 20, 0.0, LineHealth::Up, secs(0)))
        .unwrap();
    planner
        .update_measurement(report("inet", 40, 0.0, LineHealth::Up, secs(0)))
        .unwrap();
    planner.plan(secs(0));
    assert_eq!(voice_line(&planner), "mpls");
    planner
        .update_measurement(report("mpls", 20, 1.0, LineHealth::Down, secs(1)))
        .unwrap();
    let plan = planner.plan(secs(1));
    assert_eq!(
        voice_moves(&plan),
        vec![(
            Some("mpls".into()),
            Some("inet".into()),
            ReasonKind::LineDown
        )]
    );
    // An SLA breach also moves at once: the internet now loses 5%, MPLS is back but in
    // its hold-down; MPLS is still the only compliant line, so voice goes there.
    planner
        .update_measurement(report("mpls", 20, 0.0, LineHealth::Up, secs(2)))
        .unwrap();
    planner
        .update_measurement(report("inet", 40, 0.05, LineHealth::Up, secs(3)))
        .unwrap();
    let plan = planner.plan(secs(3));
    assert_eq!(
        voice_moves(&plan),
        vec![(
            Some("inet".into()),
            Some("mpls".into()),
            ReasonKind::SlaBreach
        )]
    );
    let evidence = plan.decisions[0].reason.evidence();
    let loss = evidence.iter().find(|e| e.metric == "loss").unwrap();
    assert!((loss.value - 0.05).abs() < 1e-9, "path loss {}", loss.value);
    assert_eq!(loss.limit, Some(0.01));
}

#[test]
fn flapping_line_costs_at_most_one_move_per_minute() {
    let mut planner = planner();
    planner
        .update_measurement(report("mpls", 20, 0.0, LineHealth::Up, secs(0)))
        .unwrap();
    planner
        .update_measurement(report("inet", 40, 0.0, LineHealth::Up, secs(0)))
        .unwrap();
    planner.plan(secs(0));
    let mut moves_per_minute = [0usize; 5];
    // MPLS fails for 2 s every 6 s for five minutes; plans run every second.
    for t in 1..300u64 {
        let health = if t % 6 < 2 {
            LineHealth::Down
        } else {
            LineHealth::Up
        };
        let loss = if health == LineHealth::Down { 1.0 } else { 0.0 };
        planner
            .update_measurement(report("mpls", 20, loss, health, secs(t)))
            .unwrap();
        let plan = planner.plan(secs(t));
        moves_per_minute[(t / 60) as usize] += voice_moves(&plan).len();
    }
    assert!(
        moves_per_minute.iter().all(|&m| m <= 1),
        "moves per minute: {moves_per_minute:?}"
    );
    assert_eq!(
        voice_line(&planner),
        "inet",
        "the flapping line is not trusted back"
    );
    assert!(
        planner.graph().line(0).suppressed,
        "dampening suppressed the flapping line"
    );
}

#[test]
fn incremental_re_solve_agrees_with_a_full_solve() {
    let spec = SdwanSpec {
        branches: 30,
        hubs: 2,
        dcs: 2,
        classes: 4,
        load: 0.3,
        down_share: 0.0,
        both_directions: true,
    };
    let (policy, measurements, demands) = sdwan(&spec, 3);
    let mut warm = Planner::new(policy.clone());
    for m in &measurements {
        warm.update_measurement(m.clone()).unwrap();
    }
    for d in &demands {
        warm.update_demand(d.clone()).unwrap();
    }
    assert!(warm.plan(secs(0)).stats.full);
    // Branch 7's MPLS goes bad: voice and trading must leave it.
    let mut changed = measurements.clone();
    for m in changed
        .iter_mut()
        .filter(|m| m.site == "br00007" && m.line == "mpls")
    {
        m.loss = 0.08;
        m.at = secs(100);
        warm.update_measurement(m.clone()).unwrap();
    }
    let plan = warm.plan(secs(100));
    assert!(
        !plan.stats.full,
        "one branch line is re-solved incrementally"
    );
    assert!(plan.stats.resolved < plan.stats.commodities / 4);
    assert!(
        plan.decisions
            .iter()
            .any(|d| d.site == "br00007" && d.reason.kind == ReasonKind::SlaBreach)
    );
    let mut cold = Planner::new(policy);
    for m in &changed {
        cold.update_measurement(m.clone()).unwrap();
    }
    for d in &demands {
        cold.update_demand(d.clone()).unwrap();
    }
    cold.plan(secs(100));
    for site in warm.policy().sites.iter().map(|s| s.name.clone()) {
        let (w, c) = (warm.ruleset(&site).unwrap(), cold.ruleset(&site).unwrap());
        let primaries = |r: &wansteer_wire::ruleset::RuleSet| {
            r.routes
                .iter()
                .map(|r| (r.class.clone(), r.destination, r.primary.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(primaries(w), primaries(c), "site {site}");
    }
}

#[test]
fn restart_and_policy_change_keep_versions_moving_forward() {
    let mut planner = planner();
    planner
        .update_measurement(report("mpls", 20, 0.0, LineHealth::Up, secs(0)))
        .unwrap();
    planner
        .update_measurement(report("inet", 40, 0.0, LineHealth::Up, secs(0)))
        .unwrap();
    planner.plan(secs(0));
    let before = planner.ruleset("b1").unwrap().clone();
    // A restarted controller seeded with the stored rule sets pushes nothing new.
    let mut restarted = planner_with_lines();
    restarted.restore_rulesets([before.clone(), planner.ruleset("dc").unwrap().clone()]);
    let plan = restarted.plan(secs(5));
    assert!(
        plan.rulesets.is_empty(),
        "same content, no new version: {:?}",
        plan.rulesets.keys()
    );
    // A policy change that alters the rule set continues the version sequence.
    let mut policy: Policy = yaml_serde::from_str(POLICY).unwrap();
    policy.classes[0].dscp = wansteer_policies::units::Dscp(46);
    planner.replace_policy(policy);
    let plan = planner.plan(secs(6));
    assert_eq!(plan.rulesets["b1"].version, before.version + 1);
    assert_eq!(
        plan.rulesets["b1"].routes[0].primary, "mpls",
        "measurements carried over"
    );
}

fn planner_with_lines() -> Planner {
    let mut planner = planner();
    planner
        .update_measurement(report("mpls", 20, 0.0, LineHealth::Up, secs(0)))
        .unwrap();
    planner
        .update_measurement(report("inet", 40, 0.0, LineHealth::Up, secs(0)))
        .unwrap();
    planner
}
