//! Hub lines that reach one site (the bank lab's DC: `br1-mpls` is a point-to-point link to
//! br1). Whatever the lines measure and whichever are down, the DC's traffic for a branch
//! leaves only on that branch's lines — as route, as backup and as the hub hop of a
//! branch-to-branch path.

use std::time::Duration;

use proptest::prelude::*;
use wansteer_controller::graph::{LineHealth, LineMeasurement};
use wansteer_controller::plan::{ClassDemand, Plan, Planner};
use wansteer_policies::Policy;

const BRANCHES: [&str; 2] = ["br1", "br2"];
const DC_LINES: [&str; 6] = [
    "br1-mpls", "br1-inet", "br1-lte", "br2-mpls", "br2-inet", "br2-lte",
];
const BRANCH_LINES: [&str; 3] = ["mpls", "inet", "lte"];

fn policy() -> Policy {
    let text = r#"
sites:
  - name: dc
    kind: dc
    lan: [10.0.0.0/24]
    lines:
      - { name: br1-mpls, transport: mpls, interface: br1-mpls, up: 50mbit, down: 50mbit, cost: 3, preference: 10 }
      - { name: br1-inet, transport: internet, interface: br1-inet, up: 100mbit, down: 100mbit, preference: 20 }
      - { name: br1-lte, transport: lte, interface: br1-lte, up: 20mbit, down: 20mbit, cost: 10, preference: 90 }
      - { name: br2-mpls, transport: mpls, interface: br2-mpls, up: 50mbit, down: 50mbit, cost: 3, preference: 10 }
      - { name: br2-inet, transport: internet, interface: br2-inet, up: 100mbit, down: 100mbit, preference: 20 }
      - { name: br2-lte, transport: lte, interface: br2-lte, up: 20mbit, down: 20mbit, cost: 10, preference: 90 }
  - name: br1
    kind: branch
    lan: [10.1.0.0/24]
    lines:
      - { name: mpls, transport: mpls, interface: mpls, up: 50mbit, down: 50mbit, cost: 3, preference: 10 }
      - { name: inet, transport: internet, interface: inet, up: 100mbit, down: 100mbit, preference: 20 }
      - { name: lte, transport: lte, interface: lte, up: 20mbit, down: 20mbit, cost: 10, preference: 90 }
  - name: br2
    kind: branch
    lan: [10.2.0.0/24]
    lines:
      - { name: mpls, transport: mpls, interface: mpls, up: 50mbit, down: 50mbit, cost: 3, preference: 10 }
      - { name: inet, transport: internet, interface: inet, up: 100mbit, down: 100mbit, preference: 20 }
      - { name: lte, transport: lte, interface: lte, up: 20mbit, down: 20mbit, cost: 10, preference: 90 }
classes:
  - { name: voice, priority: 1, dscp: EF, sla: { latency: 100ms, loss: 1%, jitter: 30ms }, steering: { prefer: [mpls, internet] } }
  - { name: business, priority: 2, dscp: AF21, sla: { latency: 150ms, loss: 2% } }
  - { name: bulk, priority: 8, dscp: LE, steering: { prefer: [internet, mpls], never: [lte] } }
timers: { hold_down: 2s }
"#;
    yaml_serde::from_str(text).unwrap()
}

fn measure(
    site: &str,
    line: &str,
    rtt_ms: f64,
    loss: f64,
    up: bool,
    at: Duration,
) -> LineMeasurement {
    LineMeasurement {
        site: site.into(),
        line: line.into(),
        rtt: Duration::from_secs_f64(rtt_ms / 1000.0),
        loss,
        jitter: Duration::from_millis(1),
        health: if up { LineHealth::Up } else { LineHealth::Down },
        at,
    }
}

fn demands(planner: &mut Planner) {
    for (src, dst) in [
        ("dc", "br1"),
        ("dc", "br2"),
        ("br1", "br2"),
        ("br2", "br1"),
        ("br1", "dc"),
    ] {
        for class in ["voice", "business", "bulk"] {
            planner
                .update_demand(ClassDemand {
                    site: src.into(),
                    class: class.into(),
                    destination: dst.into(),
                    bps: 2e6,
                })
                .unwrap();
        }
    }
}

/// The branch a DC line leads to (`br1-mpls` → `br1`).
fn reach(dc_line: &str) -> &str {
    dc_line.split_once('-').unwrap().0
}

/// Every DC route, backup and DC hop in `plan` stays on lines of the branch it serves.
fn check(plan: &Plan) -> Result<(), String> {
    if let Some(dc) = plan.rulesets.get("dc") {
        for route in &dc.routes {
            let branch = match route.destination.to_string().as_str() {
                "10.1.0.0/24" => "br1",
                "10.2.0.0/24" => "br2",
                other => return Err(format!("dc routes {other}")),
            };
            for line in std::iter::once(&route.primary).chain(&route.backups) {
                if reach(line) != branch {
                    return Err(format!(
                        "dc {} for {branch} on {line} (backups {:?})",
                        route.class, route.backups
                    ));
                }
            }
        }
    }
    for d in &plan.decisions {
        // Hops pair up into tunnels: [0,1] and, through the DC, [2,3].
        for tunnel in d.path.chunks(2) {
            let [a, b] = tunnel else {
                return Err(format!("odd path {:?}", d.path));
            };
            let (sa, la) = a.split_once('/').unwrap();
            let (sb, lb) = b.split_once('/').unwrap();
            let bad = (sa == "dc" && reach(la) != sb) || (sb == "dc" && reach(lb) != sa);
            if bad {
                return Err(format!(
                    "{} {} -> {} on {:?}",
                    d.site, d.class, d.destination, d.path
                ));
            }
        }
    }
    Ok(())
}

#[test]
fn dc_traffic_for_br1_never_takes_br2s_line_even_when_it_is_better() {
    let mut planner = Planner::new(policy());
    let at = Duration::ZERO;
    for line in DC_LINES {
        let better = reach(line) == "br2";
        planner
            .update_measurement(measure(
                "dc",
                line,
                if better { 2.0 } else { 30.0 },
                0.0,
                true,
                at,
            ))
            .unwrap();
    }
    for branch in BRANCHES {
        for line in BRANCH_LINES {
            planner
                .update_measurement(measure(branch, line, 20.0, 0.0, true, at))
                .unwrap();
        }
    }
    demands(&mut planner);
    let plan = planner.plan(at);
    check(&plan).unwrap();
    let dc = plan.rulesets.get("dc").expect("the dc gets a rule set");
    let voice_br1 = dc
        .routes
        .iter()
        .find(|r| r.class == "voice" && r.destination.to_string() == "10.1.0.0/24")
        .expect("dc has a voice route to br1");
    assert_eq!(voice_br1.primary, "br1-mpls");
    assert_eq!(voice_br1.backups, ["br1-inet", "br1-lte"]);

    // br1's MPLS dies: the DC moves to br1's other lines, not to br2-mpls.
    let later = Duration::from_secs(5);
    planner
        .update_measurement(measure("dc", "br1-mpls", 30.0, 1.0, false, later))
        .unwrap();
    planner
        .update_measurement(measure("br1", "mpls", 30.0, 1.0, false, later))
        .unwrap();
    let plan = planner.plan(later);
    check(&plan).unwrap();
    let moved = plan
        .decisions
        .iter()
        .find(|d| d.site == "dc" && d.class == "voice" && d.destination == "br1")
        .expect("dc voice for br1 moves");
    assert_eq!(moved.to_line.as_deref(), Some("br1-inet"));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn dc_lines_carry_only_their_branchs_traffic(
        steps in prop::collection::vec(
            prop::collection::vec((1.0..150.0f64, 0.0..0.05f64, prop::bool::weighted(0.7)), 12),
            1..4,
        )
    ) {
        let mut planner = Planner::new(policy());
        demands(&mut planner);
        for (i, draws) in steps.iter().enumerate() {
            let at = Duration::from_secs(3 * i as u64);
            let lines = DC_LINES.iter().map(|l| ("dc", *l)).chain(
                BRANCHES.iter().flat_map(|b| BRANCH_LINES.iter().map(move |l| (*b, *l))),
            );
            for ((site, line), &(rtt, loss, up)) in lines.zip(draws) {
                planner.update_measurement(measure(site, line, rtt, loss, up, at)).unwrap();
            }
            let plan = planner.plan(at);
            prop_assert!(check(&plan).is_ok(), "step {i}: {}", check(&plan).unwrap_err());
        }
    }
}
