//! A class that left a line because the line broke its SLA returns only once the line has
//! met the SLA for the hold-down — not as soon as its own placement is older than the
//! hold-down. Loss hovering around an SLA (2% true loss judged against 1%: the interval's
//! lower bound crosses 1% now and then) otherwise moves voice back and forth every few
//! seconds (seen in the lab: `lab/scenarios/brownout-2pct.yaml`).

use std::time::Duration;

use wansteer_controller::graph::{LineHealth, LineMeasurement};
use wansteer_controller::plan::{ClassDemand, Planner, PlannerMemory};
use wansteer_policies::Policy;

const POLICY: &str = r#"
sites:
  - name: br
    kind: branch
    lan: [10.1.0.0/24]
    lines:
      - { name: mpls, transport: mpls, interface: wan0, up: 20mbit, down: 20mbit }
      - { name: inet, transport: internet, interface: wan1, up: 50mbit, down: 50mbit }
  - name: dc
    kind: dc
    lan: [10.0.0.0/24]
    lines:
      - { name: mpls, transport: mpls, interface: wan0, up: 1gbit, down: 1gbit }
      - { name: inet, transport: internet, interface: wan1, up: 1gbit, down: 1gbit }
classes:
  - name: voice
    priority: 1
    sla: { latency: 100ms, loss: 1%, jitter: 30ms }
    steering: { prefer: [mpls, internet] }
timers: { hold_down: 2s }
"#;

/// One round of reports at `at_ms`: br's mpls line loses `mpls_loss`, everything else is clean.
fn report(planner: &mut Planner, at_ms: u64, mpls_loss: f64) {
    report_health(planner, at_ms, mpls_loss, LineHealth::Up);
}

/// [`report`], with br's mpls line in health `mpls_health`.
fn report_health(planner: &mut Planner, at_ms: u64, mpls_loss: f64, mpls_health: LineHealth) {
    let at = Duration::from_millis(at_ms);
    for site in ["br", "dc"] {
        for line in ["mpls", "inet"] {
            let loss = if (site, line) == ("br", "mpls") {
                mpls_loss
            } else {
                0.0
            };
            planner
                .update_measurement(LineMeasurement {
                    site: site.into(),
                    line: line.into(),
                    rtt: Duration::from_millis(20),
                    loss,
                    jitter: Duration::from_millis(1),
                    health: if (site, line) == ("br", "mpls") {
                        mpls_health
                    } else {
                        LineHealth::Up
                    },
                    at,
                })
                .unwrap();
        }
    }
    planner
        .update_demand(ClassDemand {
            site: "br".into(),
            class: "voice".into(),
            destination: "dc".into(),
            bps: 100_000.0,
        })
        .unwrap();
}

/// Voice's moves from br to dc, as "<ms> <from>-><to>".
fn voice_moves(planner: &mut Planner, at_ms: u64) -> Vec<String> {
    planner
        .plan(Duration::from_millis(at_ms))
        .decisions
        .iter()
        .filter(|d| d.site == "br" && d.class == "voice" && d.destination == "dc")
        .map(|d| {
            format!(
                "{at_ms} {}->{}",
                d.from_line.as_deref().unwrap_or("-"),
                d.to_line.as_deref().unwrap_or("-")
            )
        })
        .collect()
}

#[test]
fn voice_returns_only_after_the_line_met_its_sla_for_the_hold_down() {
    let policy: Policy = yaml_serde::from_str(POLICY).unwrap();
    let mut planner = Planner::new(policy);
    let mut moves = Vec::new();
    // Judged loss on mpls, every 500 ms: clean, then around the 1% SLA, then clean.
    let mut timeline: Vec<(u64, f64)> = (0..20).map(|i| (i * 500, 0.0)).collect();
    let hovering = [1.5, 0.8, 0.9, 0.7, 1.2, 0.8, 0.6, 0.9, 1.1, 0.7, 0.8, 0.9];
    timeline.extend(
        hovering
            .iter()
            .enumerate()
            .map(|(i, &loss)| (10_000 + i as u64 * 500, loss / 100.0)),
    );
    timeline.extend((0..12).map(|i| (16_000 + i * 500, 0.002)));
    for (at_ms, loss) in timeline {
        report(&mut planner, at_ms, loss);
        moves.extend(voice_moves(&mut planner, at_ms));
    }
    // Placed on mpls; off at 10 s (1.5%); the last breach is at 14 s (1.1%), so back at
    // the first plan from 16 s on — not at 12 s, when its own hold-down ended.
    assert_eq!(moves, ["0 -->mpls", "10000 mpls->inet", "16000 inet->mpls"]);
}

#[test]
fn the_loss_ratio_not_its_lower_bound_decides_the_return() {
    // 2% true loss against a 1% SLA: the judged lower bound dips under 1% most of the time,
    // the measured ratio stays above it. Voice left on a judged 1.3%; it comes back only
    // after the ratio itself has been within 1% for the hold-down.
    let policy: Policy = yaml_serde::from_str(POLICY).unwrap();
    let mut planner = Planner::new(policy);
    let mut moves = Vec::new();
    // (ms, judged lower bound, measured ratio), in per cent.
    let mut timeline: Vec<(u64, f64, f64)> = (0..20).map(|i| (i * 500, 0.0, 0.0)).collect();
    timeline.push((10_000, 1.3, 2.4));
    timeline.extend((1..16).map(|i| (10_000 + i * 500, 0.6, 1.9)));
    timeline.extend((0..8).map(|i| (18_000 + i * 500, 0.0, 0.3)));
    for (at_ms, judged, ratio) in timeline {
        report(&mut planner, at_ms, judged / 100.0);
        planner.note_loss_ratio("br", "mpls", ratio / 100.0, Duration::from_millis(at_ms));
        moves.extend(voice_moves(&mut planner, at_ms));
    }
    // The last ratio over 1% is at 17.5 s: back at 19.5 s.
    assert_eq!(moves, ["0 -->mpls", "10000 mpls->inet", "19500 inet->mpls"]);
}

#[test]
fn each_new_breach_after_a_return_doubles_the_wait() {
    // A line that keeps breaking voice's SLA after voice came back: the wait before the
    // next return doubles (2 s, 4 s, 8 s) instead of a move every hold-down.
    assert_eq!(
        moves_with_breaches(30_000, &[10_000, 13_000, 18_000], |_, _| {}),
        [
            "0 -->mpls",
            "10000 mpls->inet",
            "12000 inet->mpls",
            "13000 mpls->inet",
            "17000 inet->mpls",
            "18000 mpls->inet",
            "26000 inet->mpls"
        ]
    );
}

/// [`POLICY`] with one more class, or with voice's loss bound changed.
fn changed_policy(voice_loss: &str) -> Policy {
    let text = POLICY
        .replace(
            "loss: 1%, jitter: 30ms",
            &format!("loss: {voice_loss}, jitter: 30ms"),
        )
        .replace(
            "timers:",
            "  - name: bulk\n    priority: 6\n    steering: { prefer: [internet] }\ntimers:",
        );
    yaml_serde::from_str(&text).unwrap()
}

/// Breaches at 10 s and 13 s (the second episode doubles the wait to 4 s), a policy change
/// at 14 s, clean from then on: voice's moves.
fn moves_across_a_policy_change(new_policy: Policy) -> Vec<String> {
    let mut new_policy = Some(new_policy);
    moves_with_breaches(24_000, &[10_000, 13_000], |planner, at_ms| {
        if at_ms == 14_000 {
            planner.replace_policy(new_policy.take().unwrap());
        }
    })
}

/// Voice's moves, a round of reports and a plan every 500 ms up to `until_ms`, mpls
/// breaking voice's SLA (1.5% loss) at the times in `breaches` and clean otherwise;
/// `before_round` may change the planner before each round.
fn moves_with_breaches(
    until_ms: u64,
    breaches: &[u64],
    mut before_round: impl FnMut(&mut Planner, u64),
) -> Vec<String> {
    let policy: Policy = yaml_serde::from_str(POLICY).unwrap();
    let mut planner = Planner::new(policy);
    let mut moves = Vec::new();
    for at_ms in (0..=until_ms).step_by(500) {
        before_round(&mut planner, at_ms);
        let loss = if breaches.contains(&at_ms) {
            0.015
        } else {
            0.0
        };
        report(&mut planner, at_ms, loss);
        moves.extend(voice_moves(&mut planner, at_ms));
    }
    moves
}

#[test]
fn a_policy_change_keeps_the_breach_history_of_a_class_whose_sla_it_kept() {
    // Adding a class does not reset voice's dampening: the second episode's 4 s wait after
    // 13 s still holds, so voice returns at 17 s, not at 15 s.
    assert_eq!(
        moves_across_a_policy_change(changed_policy("1%")),
        [
            "0 -->mpls",
            "10000 mpls->inet",
            "12000 inet->mpls",
            "13000 mpls->inet",
            "17000 inet->mpls"
        ]
    );
}

#[test]
fn a_changed_sla_starts_the_breach_history_over() {
    // Under a 2% loss bound the 1.5% of 13 s was no breach: voice returns once its own
    // placement is past the hold-down (15 s), not after the doubled wait.
    assert_eq!(
        moves_across_a_policy_change(changed_policy("2%")),
        [
            "0 -->mpls",
            "10000 mpls->inet",
            "12000 inet->mpls",
            "13000 mpls->inet",
            "15000 inet->mpls"
        ]
    );
}

/// How a restart at 19 s carries the line memory across: the planner of a new process
/// resumes from the old one's rule sets, and from its memory when `keep_memory`.
fn restart(before: &Planner, at_ms: u64, keep_memory: bool) -> Planner {
    restart_under(POLICY, before, at_ms, keep_memory)
}

/// [`restart`] under the policy `text`.
fn restart_under(text: &str, before: &Planner, at_ms: u64, keep_memory: bool) -> Planner {
    let policy: Policy = yaml_serde::from_str(text).unwrap();
    let mut after = Planner::new(policy);
    after.resume(
        ["br", "dc"]
            .iter()
            .map(|site| before.ruleset(site).unwrap().clone()),
    );
    if keep_memory {
        // Through its stored form, as the controller keeps it.
        let json = serde_json::to_string(&before.memory(Duration::from_millis(at_ms))).unwrap();
        after.restore_memory(&serde_json::from_str::<PlannerMemory>(&json).unwrap());
    }
    after
}

/// Voice's moves with mpls breaking its SLA at 10, 13 and 18 s (third episode: an 8 s
/// wait, back at 26 s) and the controller restarted at 19 s.
fn moves_across_a_restart(keep_memory: bool) -> Vec<String> {
    moves_with_breaches(30_000, &[10_000, 13_000, 18_000], |planner, at_ms| {
        if at_ms == 19_000 {
            *planner = restart(planner, at_ms, keep_memory);
        }
    })
}

#[test]
fn a_restarted_controller_keeps_the_doubled_wait_of_a_line_that_kept_breaking_the_sla() {
    let expected = [
        "0 -->mpls",
        "10000 mpls->inet",
        "12000 inet->mpls",
        "13000 mpls->inet",
        "17000 inet->mpls",
        "18000 mpls->inet",
        "26000 inet->mpls",
    ];
    assert_eq!(moves_across_a_restart(true), expected);
    // Without the memory the restart forgets the episodes: voice is back on the line one
    // hold-down after the restart (21 s), five seconds early.
    let forgetful = moves_across_a_restart(false);
    assert_eq!(
        forgetful.last().map(String::as_str),
        Some("21000 inet->mpls")
    );
}

/// Voice's moves with mpls going down and up three times (penalty 3000 > suppress 2000:
/// suppressed until it decays under reuse 750, two half-lives of 10 s) and the controller
/// restarted at 12 s.
fn moves_across_a_restart_after_flaps(keep_memory: bool) -> Vec<String> {
    let text = POLICY.replace(
        "timers: { hold_down: 2s }",
        "timers: { hold_down: 2s, dampening: { half_life: 10s, max_suppress: 5m } }",
    );
    let policy: Policy = yaml_serde::from_str(&text).unwrap();
    let mut planner = Planner::new(policy);
    let mut moves = Vec::new();
    for at_ms in (0..=40_000).step_by(500) {
        if at_ms == 12_000 {
            planner = restart_under(&text, &planner, at_ms, keep_memory);
        }
        let down = [5_000, 6_000, 7_000].contains(&at_ms);
        let health = if down {
            LineHealth::Down
        } else {
            LineHealth::Up
        };
        report_health(&mut planner, at_ms, 0.0, health);
        moves.extend(voice_moves(&mut planner, at_ms));
    }
    moves
}

#[test]
fn a_restarted_controller_keeps_a_flapping_line_suppressed() {
    let remembered = moves_across_a_restart_after_flaps(true);
    let forgetful = moves_across_a_restart_after_flaps(false);
    assert_eq!(remembered[..2], ["0 -->mpls", "5000 mpls->inet"]);
    // Suppressed from the third failure (7 s, penalty ≈ 2900) until it decays under 750
    // (≈ 26.5 s): voice returns only then, restart or not.
    let back = |moves: &[String]| -> u64 {
        let last = moves.last().unwrap();
        assert!(last.ends_with("inet->mpls"), "{moves:?}");
        last.split(' ').next().unwrap().parse().unwrap()
    };
    assert_eq!(remembered.len(), 3, "{remembered:?}");
    assert!(
        (26_000..=27_500).contains(&back(&remembered)),
        "{remembered:?}"
    );
    // Forgotten, the flaps count for nothing: back one hold-down after the restart.
    assert_eq!(back(&forgetful), 14_000, "{forgetful:?}");
}
