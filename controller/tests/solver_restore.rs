//! Resuming after a controller restart keeps each class's whole path, hub hop included:
//! a class that went branch → hub → branch is not put on a direct tunnel of the same first
//! line (and moved back once measurements arrive).

use std::time::Duration;

use wansteer_controller::graph::{LineHealth, LineMeasurement};
use wansteer_controller::plan::{ClassDemand, Plan, Planner};
use wansteer_policies::Policy;

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
    let published: Vec<_> = ["b1", "b2", "hub"]
        .iter()
        .map(|site| before.ruleset(site).unwrap().clone())
        .collect();

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
