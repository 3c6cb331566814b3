//! The lab's branch mesh (`lab/topologies/bank-mesh.yaml` with
//! `lab/scenarios/policies/mesh-lab.yaml`) as the controller sees it: br1 and br2 reach each
//! other directly through the internet cloud or through the DC over MPLS, and each class
//! takes the way its SLA allows. Measurements are what the lab's agents report: a branch's
//! `inet` line probes the peer branch (the whole direct path), the MPLS lines probe their
//! far end at the DC.

use std::time::Duration;

use wansteer_policies::Policy;

use super::{Cloud, LineHealth, LineMeasurement, LinkGraph};
use crate::plan::{Planner, ReasonKind};

const MESH_POLICY: &str = include_str!("../../../lab/scenarios/policies/mesh-lab.yaml");

fn policy() -> Policy {
    yaml_serde::from_str(MESH_POLICY).expect("the lab's mesh policy parses")
}

fn measure(planner: &mut Planner, site: &str, line: &str, rtt_ms: u64, loss: f64, at: u64) {
    planner
        .update_measurement(LineMeasurement {
            site: site.into(),
            line: line.into(),
            rtt: Duration::from_millis(rtt_ms),
            loss,
            jitter: Duration::from_millis(1),
            health: LineHealth::Up,
            at: Duration::from_secs(at),
        })
        .expect("a line of the policy");
}

/// The lab at rest: direct br1 ↔ br2 RTT 40 ms, each MPLS line 30 ms.
fn lab_at_rest(planner: &mut Planner, at: u64) {
    for (site, line) in [
        ("br1", "mpls"),
        ("br2", "mpls"),
        ("dc", "br1-mpls"),
        ("dc", "br2-mpls"),
    ] {
        measure(planner, site, line, 30, 0.0, at);
    }
    measure(planner, "br1", "inet", 40, 0.0, at);
    measure(planner, "br2", "inet", 40, 0.0, at);
}

/// The line br1's rule set routes `class` towards br2's LAN by, and the hop list of the
/// decision that put it there last.
/// A decision's path as `site/line` labels.
fn path(decision: &crate::plan::Decision) -> Vec<&str> {
    decision.path.iter().map(|line| &**line).collect()
}

fn route_to_br2(planner: &Planner, class: &str) -> String {
    let rules = planner.ruleset("br1").expect("br1 has a rule set");
    rules
        .routes
        .iter()
        .find(|r| r.class == class && r.destination.to_string() == "10.2.0.0/24")
        .map(|r| r.primary.clone())
        .unwrap_or_else(|| panic!("no {class} route to br2: {:#?}", rules.routes))
}

#[test]
fn branches_tunnel_directly_over_the_internet_and_only_via_the_dc_over_mpls() {
    let graph = LinkGraph::new(&policy());
    let (dc, br1, br2) = (0, 1, 2);
    let line = |site: &str, name: &str| graph.line_id(site, name).unwrap();
    let (dc_br1, dc_br2) = (line("dc", "br1-mpls"), line("dc", "br2-mpls"));
    let (br1_mpls, br1_inet) = (line("br1", "mpls"), line("br1", "inet"));
    let (br2_mpls, br2_inet) = (line("br2", "mpls"), line("br2", "inet"));
    assert_eq!(
        graph.lines_in_cloud(Cloud::Internet),
        vec![br1_inet, br2_inet]
    );
    assert!(graph.can_tunnel(br1, br1_inet, br2, br2_inet), "direct");
    assert!(graph.can_tunnel(br1, br1_mpls, dc, dc_br1), "first hop");
    assert!(graph.can_tunnel(dc, dc_br2, br2, br2_mpls), "second hop");
    assert!(
        !graph.can_tunnel(br1, br1_mpls, dc, dc_br2),
        "dc/br2-mpls reaches br2 only"
    );
    assert!(
        !graph.can_tunnel(br1, br1_inet, dc, dc_br1),
        "mpls and internet do not meet"
    );
}

#[test]
fn voice_goes_direct_while_the_internet_meets_its_sla_and_via_the_hub_when_not() {
    let mut planner = Planner::new(policy());
    lab_at_rest(&mut planner, 0);
    let plan = planner.plan(Duration::from_secs(1));
    let voice = plan
        .decisions
        .iter()
        .find(|d| d.site == "br1" && d.class == "voice" && d.destination == "br2")
        .expect("voice br1 → br2 placed");
    assert_eq!(path(voice), ["br1/inet", "br2/inet"], "direct: {voice:#?}");
    assert_eq!(route_to_br2(&planner, "voice"), "inet");
    assert_eq!(route_to_br2(&planner, "bulk"), "inet");

    // br1's internet access +100 ms each way: the direct path's RTT 240 ms (latency 240 ms
    // as the controller adds both ends' halves, 120 ms one way in truth), beyond 100 ms.
    for t in 5..8 {
        lab_at_rest(&mut planner, t);
        measure(&mut planner, "br1", "inet", 240, 0.0, t);
        measure(&mut planner, "br2", "inet", 240, 0.0, t);
    }
    let plan = planner.plan(Duration::from_secs(8));
    let moved = plan
        .decisions
        .iter()
        .find(|d| d.site == "br1" && d.class == "voice" && d.destination == "br2")
        .expect("voice br1 → br2 moved");
    assert_eq!(moved.reason.kind, ReasonKind::SlaBreach, "{moved:#?}");
    assert_eq!(
        path(moved),
        ["br1/mpls", "dc/br1-mpls", "dc/br2-mpls", "br2/mpls"],
        "through the hub"
    );
    assert!(
        moved.reason.text().contains("latency"),
        "{}",
        moved.reason.text()
    );
    assert_eq!(route_to_br2(&planner, "voice"), "mpls");
    // Bulk has no SLA: it stays on the cheaper direct path.
    assert_eq!(route_to_br2(&planner, "bulk"), "inet");
    assert!(
        !plan
            .decisions
            .iter()
            .any(|d| d.site == "br1" && d.class == "bulk" && d.destination == "br2"),
        "bulk not moved"
    );
    // The DC carries the call on to br2 over br2's MPLS line.
    let dc = planner.ruleset("dc").expect("dc rule set");
    let transit = dc
        .routes
        .iter()
        .find(|r| r.class == "voice" && r.destination.to_string() == "10.2.0.0/24")
        .expect("dc routes voice to br2");
    assert_eq!(transit.primary, "br2-mpls");
}

#[test]
fn loss_on_the_direct_path_moves_voice_but_not_business_within_its_looser_sla() {
    let mut planner = Planner::new(policy());
    lab_at_rest(&mut planner, 0);
    planner.plan(Duration::from_secs(1));
    assert_eq!(route_to_br2(&planner, "business"), "inet");
    // 0.7% each end: 1.4% over the direct path, beyond voice's 1%, within business's 2%.
    // (Both internet lines are open to the whole cloud, so the planner adds the two ends'
    // figures even though in this lab each end measures the whole direct path.)
    for t in 5..8 {
        lab_at_rest(&mut planner, t);
        measure(&mut planner, "br1", "inet", 40, 0.007, t);
        measure(&mut planner, "br2", "inet", 40, 0.007, t);
    }
    planner.plan(Duration::from_secs(8));
    assert_eq!(route_to_br2(&planner, "voice"), "mpls");
    assert_eq!(route_to_br2(&planner, "business"), "inet");
}
