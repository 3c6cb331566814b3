//! Resuming after a controller restart keeps each class's whole path, hub hop included:
//! a class that went branch → hub → branch is not put on a direct tunnel of the same first
//! line (and moved back once measurements arrive).

use std::time::Duration;

use wansteer_controller::graph::{LineHealth, LineMeasurement};
use wansteer_controller::plan::{ClassDemand, Plan, Planner};
use wansteer_policies::Policy;
use wansteer_wire::ruleset::RuleSet;

// Voice prefers the internet line; b2's internet line loses 3%, so voice from b1 to b2
// leaves on b1/inet and crosses over to MPLS at the hub.
const POLICY: &str = r#"
sites:
  - name: b1
    kind: branch
    lan: [10.1.0.0/24]
    lines:
      - { name: mpls, transport: mpls, interface: wan0, up: 20mbit, down: 20mbit }
      - { name: inet, transport: internet, interface: wan1, up: 50mbit, down: 50mbit }
  - name: b2
    kind: branch
    lan: [10.2.0.0/24]
    lines:
      - { name: mpls, transport: mpls, interface: wan0, up: 20mbit, down: 20mbit }
      - { name: inet, transport: internet, interface: wan1, up: 50mbit, down: 50mbit }
  - name: hub
    kind: hub
    lines:
      - { name: mpls, transport: mpls, interface: wan0, up: 1gbit, down: 1gbit }
      - { name: inet, transport: internet, interface: wan1, up: 1gbit, down: 1gbit }
classes:
  - name: voice
    priority: 1
    sla: { latency: 100ms, loss: 1%, jitter: 30ms }
    steering: { prefer: [inet] }
"#;

fn measure(planner: &mut Planner, at: Duration) {
    for (site, line, rtt, loss) in [
        ("b1", "mpls", 30, 0.0),
        ("b1", "inet", 20, 0.0),
        ("b2", "mpls", 30, 0.0),
        ("b2", "inet", 20, 0.03),
        ("hub", "mpls", 4, 0.0),
        ("hub", "inet", 4, 0.0),
    ] {
        planner
            .update_measurement(LineMeasurement {
                site: site.into(),
                line: line.into(),
                rtt: Duration::from_millis(rtt),
                loss,
                jitter: Duration::from_millis(1),
                health: LineHealth::Up,
                at,
            })
            .unwrap();
    }
}

fn voice_to_b2(plan: &Plan) -> Vec<String> {
    plan.decisions
        .iter()
        .filter(|d| d.site == "b1" && d.class == "voice" && d.destination == "b2")
        .map(|d| format!("{:?} {}", d.reason.kind, d.path.join(" > ")))
        .collect()
}

/// Every site's rule set, as a restarted controller reads them back from its store.
fn rule_sets(planner: &Planner) -> Vec<RuleSet> {
    ["b1", "b2", "hub"]
        .iter()
        .map(|site| planner.ruleset(site).unwrap().clone())
        .collect()
}

const VIA_HUB: &str = "b1/inet > hub/inet > hub/mpls > b2/mpls";

#[test]
fn a_restart_keeps_the_hub_hop_of_a_placement() {
    let policy: Policy = yaml_serde::from_str(POLICY).unwrap();
    let mut before = Planner::new(policy.clone());
    measure(&mut before, Duration::ZERO);
    before
        .update_demand(ClassDemand {
            site: "b1".into(),
            class: "voice".into(),
            destination: "b2".into(),
            bps: 300_000.0,
        })
        .unwrap();
    let plan = before.plan(Duration::ZERO);
    assert_eq!(voice_to_b2(&plan), [format!("Initial {VIA_HUB}")]);
    let published = rule_sets(&before);

    // The restarted controller plans once before any agent has reported (every line
    // unmeasured: the direct b1/inet > b2/inet tunnel would rank first), then again once
    // the measurements are back.
    let mut after = Planner::new(policy);
    after.resume(published);
    let first = after.plan(Duration::from_secs(100));
    assert_eq!(voice_to_b2(&first), Vec::<String>::new());
    measure(&mut after, Duration::from_secs(101));
    let second = after.plan(Duration::from_secs(101));
    assert_eq!(
        voice_to_b2(&second),
        Vec::<String>::new(),
        "voice stays on its hub path, no move after the restart"
    );
    assert_eq!(after.ruleset("b1").unwrap().routes[0].primary, "inet");
    assert!(
        after.ruleset("b1").unwrap().routes[0]
            .reason
            .starts_with("inet via hub: "),
        "{}",
        after.ruleset("b1").unwrap().routes[0].reason
    );
}

/// The same network with voice preferring MPLS: from b1 to b2 it goes b1/mpls > hub >
/// b2/mpls; the direct internet tunnel b1/inet > b2/inet also meets its SLA.
fn mpls_first() -> String {
    POLICY.replace("prefer: [inet]", "prefer: [mpls]")
}

/// What the controller takes from the agents' reports: each site's lines, and b1's voice
/// demand towards b2.
fn report_from(planner: &mut Planner, sites: &[&str], at: Duration) {
    for &site in sites {
        planner.note_report(site);
        if site == "b1" {
            planner
                .update_demand(ClassDemand {
                    site: "b1".into(),
                    class: "voice".into(),
                    destination: "b2".into(),
                    bps: 300_000.0,
                })
                .unwrap();
        }
        for line in ["mpls", "inet"] {
            planner
                .update_measurement(LineMeasurement {
                    site: site.into(),
                    line: line.into(),
                    rtt: Duration::from_millis(if site == "hub" { 4 } else { 20 }),
                    loss: 0.0,
                    jitter: Duration::from_millis(1),
                    health: LineHealth::Up,
                    at,
                })
                .unwrap();
        }
    }
}

/// Plans b1's voice to b2 before a restart, then resumes a new planner from its rule sets;
/// also returns the rule sets published before.
fn restarted_with_voice_via_the_hub() -> (Planner, Vec<RuleSet>) {
    let policy: Policy = yaml_serde::from_str(&mpls_first()).unwrap();
    let mut before = Planner::new(policy.clone());
    report_from(&mut before, &["b1", "b2", "hub"], Duration::ZERO);
    let plan = before.plan(Duration::ZERO);
    let placed = voice_to_b2(&plan);
    assert_eq!(placed.len(), 1, "{placed:?}");
    assert!(
        placed[0].starts_with("Initial b1/mpls > hub/"),
        "{placed:?}"
    );
    let published = rule_sets(&before);
    let mut after = Planner::new(policy);
    after.resume(published.clone());
    assert_eq!(
        voice_to_b2(&after.plan(Duration::from_secs(100))),
        Vec::<String>::new()
    );
    (after, published)
}

#[test]
fn a_restart_keeps_a_hub_path_while_the_hub_has_not_reported_again() {
    // The branches' agents are back first; the hub's reconnects 6 s later. Its lines are
    // unmeasured meanwhile, the direct internet tunnel is measured and meets the SLA: that
    // is no reason to move voice off MPLS (and back after the hold-down).
    let (mut after, published) = restarted_with_voice_via_the_hub();
    let mut moves = Vec::new();
    let mut republished = Vec::new();
    for second in 101..=115 {
        let sites: &[&str] = if second < 107 {
            &["b1", "b2"]
        } else {
            &["b1", "b2", "hub"]
        };
        report_from(&mut after, sites, Duration::from_secs(second));
        let plan = after.plan(Duration::from_secs(second));
        moves.extend(voice_to_b2(&plan));
        republished.extend(
            plan.rulesets
                .keys()
                .map(|site| format!("{second} s: {site}")),
        );
    }
    assert_eq!(moves, Vec::<String>::new(), "no move after the restart");
    assert_eq!(
        republished,
        Vec::<String>::new(),
        "no rule set re-published (routes, backups and rates as before)"
    );
    for before in &published {
        let now = after.ruleset(&before.site).unwrap();
        assert_eq!((now.version, &now.hash), (before.version, &before.hash));
    }
}

#[test]
fn a_hub_silent_past_the_resume_grace_counts_as_unknown() {
    // A hub that never comes back: after RESUME_GRACE its unmeasured lines are treated like
    // any unknown line, and voice moves to the measured tunnel that meets its SLA.
    let (mut after, _) = restarted_with_voice_via_the_hub();
    let grace = wansteer_controller::plan::RESUME_GRACE.as_secs();
    let mut moves = Vec::new();
    for second in (101..=100 + grace + 2).step_by(1) {
        report_from(&mut after, &["b1", "b2"], Duration::from_secs(second));
        let plan = after.plan(Duration::from_secs(second));
        moves.extend(voice_to_b2(&plan).into_iter().map(|m| (second, m)));
    }
    assert_eq!(moves.len(), 1, "{moves:?}");
    let (at, ref moved) = moves[0];
    assert!(
        at >= 100 + grace,
        "moved at {at} s, before the grace ended: {moved}"
    );
    assert!(moved.contains("b1/inet > b2/inet"), "{moved}");
}
