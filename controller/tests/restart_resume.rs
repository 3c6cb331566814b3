//! A restarted controller resumes where it was: the same placements, the same rule-set
//! versions and hashes, nothing re-pushed — even when a fresh start would place classes
//! differently (voice failed over to inet, mpls recovered but is still in its hold-down).
//! And a policy change keeps the hold-down and dampening history of what still exists.

use std::collections::BTreeMap;
use std::time::Duration;

use wansteer_controller::audit::Retention;
use wansteer_controller::auth::TokensFile;
use wansteer_controller::graph::{LineHealth as GraphHealth, LineMeasurement as GraphMeasurement};
use wansteer_controller::plan::{Planner, ReasonKind};
use wansteer_controller::planning::{Plan, Planning};
use wansteer_controller::service::{Controller, ControllerConfig, now_ms};
use wansteer_controller::solver_planning::SolverPlanning;
use wansteer_policies::Policy;
use wansteer_wire::ruleset::RuleSet;
use wansteer_wire::session::{ClassDemand, LineHealth, LineMeasurement, Report};

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

fn line(name: &str, loss_bounds: (f64, f64)) -> LineMeasurement {
    LineMeasurement {
        line: name.into(),
        rtt_ms: 20.0,
        loss_percent: loss_bounds.0,
        loss_bounds_percent: Some(loss_bounds),
        jitter_ms: 1.0,
        samples: 600,
        health: LineHealth::Up,
    }
}

fn report(site: &str, mpls_loss: (f64, f64)) -> Report {
    let destination = if site == "dc" { "b1" } else { "dc" };
    Report {
        site: site.into(),
        at_ms: now_ms(),
        lines: vec![line("mpls", mpls_loss), line("inet", (0.0, 0.5))],
        events: vec![],
        demand: vec![ClassDemand {
            class: "voice".into(),
            line: None,
            destination: Some(destination.into()),
            bps: 3_000_000,
        }],
    }
}

async fn start(dir: &std::path::Path) -> Controller {
    start_with(dir, POLICY, Box::new(SolverPlanning::new()))
        .await
        .expect("controller starts")
}

async fn start_with(
    dir: &std::path::Path,
    policy: &str,
    planner: Box<dyn Planning>,
) -> Result<Controller, wansteer_controller::service::StartError> {
    let config = ControllerConfig {
        state_dir: dir.to_path_buf(),
        policy_file: "policy.yaml".into(),
        policy_text: policy.into(),
        tokens: TokensFile::generate(["dc", "b1"]),
        token_source: wansteer_controller::auth::TokenSource::Given,
        retention: Retention::default(),
        plan_interval: Duration::from_millis(10),
        report_interval: Duration::from_secs(1),
        metrics_public: false,
        check: Default::default(),
    };
    Controller::start(config, planner).await
}

async fn both_report(controller: &Controller, mpls_loss: (f64, f64)) {
    for site in ["dc", "b1"] {
        controller
            .report(site, report(site, mpls_loss))
            .await
            .unwrap();
    }
    controller.settle().await;
}

fn voice_line(published: &BTreeMap<String, std::sync::Arc<RuleSet>>) -> String {
    published["b1"]
        .routes
        .iter()
        .find(|r| r.class == "voice")
        .expect("voice is routed")
        .primary
        .clone()
}

fn ids(published: &BTreeMap<String, std::sync::Arc<RuleSet>>) -> Vec<(String, u64, String)> {
    published
        .iter()
        .map(|(site, r)| (site.clone(), r.version, r.hash.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_controller_keeps_its_placements_and_versions() {
    let dir = tempfile::tempdir().unwrap();
    let controller = start(dir.path()).await;
    let clean = (0.0, 0.5);
    both_report(&controller, clean).await;
    assert_eq!(voice_line(&controller.published()), "mpls");

    // mpls loses 5%: voice fails over to inet.
    both_report(&controller, (2.1, 11.0)).await;
    assert_eq!(voice_line(&controller.published()), "inet");
    // mpls is clean again, but voice waits out the hold-down on inet.
    both_report(&controller, clean).await;
    let before = controller.published();
    assert_eq!(voice_line(&before), "inet");
    let decisions_before = controller.decisions(None, None, usize::MAX).len();
    controller.close().unwrap();
    drop(controller);

    let controller = start(dir.path()).await;
    both_report(&controller, clean).await;
    both_report(&controller, clean).await;
    let after = controller.published();
    assert_eq!(voice_line(&after), "inet", "voice resumes where it was");
    assert_eq!(
        ids(&after),
        ids(&before),
        "same versions and hashes after the restart: nothing to push"
    );
    assert_eq!(
        controller.decisions(None, None, usize::MAX).len(),
        decisions_before,
        "a restart is no decision: {:?}",
        controller.decisions(None, None, 5)
    );
    controller.close().unwrap();
}

fn measurement(
    site: &str,
    line: &str,
    loss: f64,
    health: GraphHealth,
    at: u64,
) -> GraphMeasurement {
    GraphMeasurement {
        site: site.into(),
        line: line.into(),
        rtt: Duration::from_millis(20),
        loss,
        jitter: Duration::from_millis(1),
        health,
        at: Duration::from_secs(at),
    }
}

#[test]
fn a_policy_change_keeps_hold_down_and_dampening_history() {
    let policy = wansteer_policies::check_source("p.yaml", POLICY)
        .unwrap()
        .policy;
    let mut planner = Planner::new(policy);
    let up = GraphHealth::Up;
    for (site, line) in [
        ("dc", "mpls"),
        ("dc", "inet"),
        ("b1", "mpls"),
        ("b1", "inet"),
    ] {
        planner
            .update_measurement(measurement(site, line, 0.0, up, 0))
            .unwrap();
    }
    planner.plan(Duration::from_secs(0));
    // b1/mpls flaps three times in a few seconds: voice leaves it, the line is suppressed.
    for t in 0..3 {
        planner
            .update_measurement(measurement("b1", "mpls", 1.0, GraphHealth::Down, 1 + 2 * t))
            .unwrap();
        planner.plan(Duration::from_secs(1 + 2 * t));
        planner
            .update_measurement(measurement("b1", "mpls", 0.0, up, 2 + 2 * t))
            .unwrap();
        planner.plan(Duration::from_secs(2 + 2 * t));
    }
    let on = |planner: &Planner| {
        planner
            .ruleset("b1")
            .unwrap()
            .routes
            .iter()
            .find(|r| r.class == "voice")
            .unwrap()
            .primary
            .clone()
    };
    assert_eq!(on(&planner), "inet");
    let suppressed = |planner: &Planner| {
        let id = planner.graph().line_id("b1", "mpls").unwrap();
        planner.graph().line(id).suppressed
    };
    assert!(
        suppressed(&planner),
        "three failures in 6 s suppress the line"
    );

    // An operator adds a class. Nothing about voice or b1/mpls changed.
    let changed = POLICY.replace(
        "  - name: default\n",
        "  - name: video\n    priority: 2\n    dscp: AF41\n  - name: default\n",
    );
    let version_before = planner.ruleset("b1").unwrap().version;
    planner.replace_policy(
        wansteer_policies::check_source("p.yaml", &changed)
            .unwrap()
            .policy,
    );
    assert!(
        suppressed(&planner),
        "the dampening penalty survives the change"
    );
    let plan = planner.plan(Duration::from_secs(8));
    assert_eq!(on(&planner), "inet", "voice stays off the flapping line");
    assert!(planner.ruleset("b1").unwrap().version > version_before);
    let voice: Vec<_> = plan
        .decisions
        .iter()
        .filter(|d| d.class == "voice")
        .collect();
    assert!(voice.is_empty(), "voice was not re-placed: {voice:?}");
    let video: Vec<_> = plan
        .decisions
        .iter()
        .filter(|d| d.class == "video")
        .collect();
    assert!(
        video.iter().all(|d| d.reason.kind == ReasonKind::Initial),
        "only the new class is placed: {video:?}"
    );
    assert!(!video.is_empty());
}

/// A planner that dies in the middle of planning (the process crashing between taking in
/// a new policy and publishing what it planned under it).
struct CrashesWhilePlanning;

impl Planning for CrashesWhilePlanning {
    fn on_policy(&mut self, _policy: &Policy) {}
    fn on_report(&mut self, _report: &Report) {}
    fn plan(&mut self, _now_ms: u64) -> Plan {
        panic!("controller crashed while planning");
    }
}

fn classes_of(rule_set: &RuleSet) -> Vec<String> {
    rule_set.classes.iter().map(|c| c.name.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_while_planning_a_new_policy_leaves_policy_and_rule_sets_in_agreement() {
    let dir = tempfile::tempdir().unwrap();
    let controller = start(dir.path()).await;
    both_report(&controller, (0.0, 0.5)).await;
    assert_eq!(
        classes_of(&controller.published()["b1"]),
        ["voice", "default"]
    );
    controller.close().unwrap();
    drop(controller);

    // The operator adds a video class to the policy file and restarts; the controller
    // crashes while planning under the new policy.
    let with_video = POLICY.replace(
        "  - name: default\n",
        "  - name: video\n    priority: 2\n    dscp: AF41\n  - name: default\n",
    );
    if let Ok(crashed) = start_with(dir.path(), &with_video, Box::new(CrashesWhilePlanning)).await {
        crashed.settle().await;
        crashed.close().unwrap();
    }

    // Restarted (by systemd) with the same file: the policy in force and the rule sets
    // pushed to agents must describe the same classes.
    let controller = start_with(dir.path(), &with_video, Box::new(SolverPlanning::new()))
        .await
        .expect("controller restarts");
    controller.settle().await;
    let (record, policy) = controller.policy();
    let in_force: Vec<String> = policy.classes.iter().map(|c| c.name.clone()).collect();
    assert_eq!(in_force, ["voice", "video", "default"]);
    for (site, rule_set) in controller.published() {
        assert_eq!(
            classes_of(&rule_set),
            in_force,
            "{site}'s rule set was compiled from another policy than version {} in force",
            record.version
        );
    }
    controller.close().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_change_is_recorded_with_its_change_list_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let controller = start(dir.path()).await;
    let with_video = POLICY.replace(
        "  - name: default\n",
        "  - name: video\n    priority: 2\n    dscp: AF41\n  - name: default\n",
    );
    let applied = controller
        .apply_policy("policy.yaml", &with_video, "alice")
        .await
        .unwrap();
    assert_eq!(applied.version, 2);
    assert!(
        applied.changes.iter().any(|c| c.contains("video")),
        "{:?}",
        applied.changes
    );
    assert_eq!(controller.policy_history()[1].changes, applied.changes);
    assert_eq!(controller.policy().0.changes, applied.changes);
    controller.close().unwrap();
    drop(controller);

    let controller = start_with(dir.path(), &with_video, Box::new(SolverPlanning::new()))
        .await
        .unwrap();
    let history = controller.policy_history();
    assert_eq!(history.len(), 2, "the same text is no new version");
    assert_eq!(history[1].by, "alice");
    assert_eq!(history[1].changes, applied.changes);
    controller.close().unwrap();
}

/// [`POLICY`] with a one-second hold-down, so a test can outwait it.
fn short_hold_down_policy() -> String {
    format!("{POLICY}timers: {{ hold_down: 1s }}\n")
}

async fn both_report_mpls(controller: &Controller, mpls: LineHealth) {
    for site in ["dc", "b1"] {
        let mut report = report(site, (0.0, 0.5));
        report.lines[0].health = mpls;
        controller.report(site, report).await.unwrap();
    }
    controller.settle().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_controller_keeps_a_flapping_line_suppressed() {
    let dir = tempfile::tempdir().unwrap();
    let policy = short_hold_down_policy();
    let start = || async {
        start_with(dir.path(), &policy, Box::new(SolverPlanning::new()))
            .await
            .expect("controller starts")
    };
    let controller = start().await;
    both_report_mpls(&controller, LineHealth::Up).await;
    assert_eq!(voice_line(&controller.published()), "mpls");
    // mpls fails three times in a row: penalty ≈ 3000 over the default suppress limit of
    // 2000, so it stays out of use until the penalty has halved twice (minutes).
    for _ in 0..3 {
        both_report_mpls(&controller, LineHealth::Down).await;
        both_report_mpls(&controller, LineHealth::Up).await;
    }
    assert_eq!(voice_line(&controller.published()), "inet");
    controller.shutdown().await.unwrap();
    drop(controller);

    let controller = start().await;
    // Well past the one-second hold-down of the restored placement and of mpls's last
    // recovery: a controller that forgot the flaps would move voice back now.
    for _ in 0..8 {
        both_report_mpls(&controller, LineHealth::Up).await;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    both_report_mpls(&controller, LineHealth::Up).await;
    assert_eq!(
        voice_line(&controller.published()),
        "inet",
        "mpls is still suppressed after the restart: {:?}",
        controller.decisions(None, None, 5)
    );
    controller.shutdown().await.unwrap();
}
