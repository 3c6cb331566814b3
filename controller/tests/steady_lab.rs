//! A steady lab settles: the demo's bank policy with every line healthy, probe figures that
//! wobble a little every second and demand that wiggles around a constant level must stop
//! producing new rule-set versions once placed — at the branches and at the hub — and must
//! never report a "move" that leaves a class on the line it was on.

use std::collections::BTreeMap;

use wansteer_controller::planning::{Plan, Planning};
use wansteer_controller::solver_planning::SolverPlanning;
use wansteer_wire::session::{ClassDemand, LineHealth, LineMeasurement, Report};

const POLICY: &str = include_str!("../../lab/demo/bank-lab.yaml");

/// A small deterministic noise source (xorshift), so the run is the same every time.
struct Noise(u64);

impl Noise {
    /// A value in [-1, 1).
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 52) as f64 - 1.0
    }
}

fn line(name: &str, rtt_ms: f64, jitter_ms: f64) -> LineMeasurement {
    LineMeasurement {
        line: name.into(),
        rtt_ms,
        loss_percent: 0.0,
        loss_bounds_percent: Some((0.0, 0.4)),
        jitter_ms,
        samples: 200,
        health: LineHealth::Up,
    }
}

fn demand(class: &str, line: &str, destination: &str, bps: f64) -> ClassDemand {
    ClassDemand {
        class: class.into(),
        line: Some(line.into()),
        destination: Some(destination.into()),
        bps: bps.max(0.0) as u64,
    }
}

/// One second of the lab: each agent reports its lines (base RTT with ±1 ms noise, jitter
/// 0.2–1.8 ms) and its demand (constant level ±15%, plus probe traffic near zero).
fn reports(second: u64, noise: &mut Noise) -> Vec<Report> {
    let at_ms = 1_700_000_000_000 + second * 1000;
    let base = [("mpls", 20.0), ("inet", 30.0), ("lte", 60.0)];
    let mut out = Vec::new();
    for branch in ["br1", "br2"] {
        let lines = base
            .iter()
            .map(|(name, rtt)| line(name, rtt + noise.next(), 1.0 + 0.8 * noise.next()))
            .collect();
        let wiggle = |level: f64, noise: &mut Noise| level * (1.0 + 0.15 * noise.next());
        let demand = vec![
            demand("voice", "mpls", "dc", wiggle(800e3, noise)),
            demand("business", "mpls", "dc", wiggle(3e6, noise)),
            demand("bulk", "inet", "dc", wiggle(20e6, noise)),
            demand("default", "inet", "dc", wiggle(60e3, noise)),
        ];
        out.push(Report {
            site: branch.into(),
            at_ms,
            lines,
            demand,
            ..Report::default()
        });
    }
    let mut hub_lines = Vec::new();
    for branch in ["br1", "br2"] {
        for (name, rtt) in base {
            hub_lines.push(line(
                &format!("{branch}-{name}"),
                rtt + noise.next(),
                1.0 + 0.8 * noise.next(),
            ));
        }
    }
    let mut hub_demand = Vec::new();
    for branch in ["br1", "br2"] {
        let w = |level: f64, noise: &mut Noise| level * (1.0 + 0.15 * noise.next());
        hub_demand.push(demand(
            "voice",
            &format!("{branch}-mpls"),
            branch,
            w(800e3, noise),
        ));
        hub_demand.push(demand(
            "business",
            &format!("{branch}-mpls"),
            branch,
            w(6e6, noise),
        ));
        hub_demand.push(demand(
            "bulk",
            &format!("{branch}-inet"),
            branch,
            w(30e6, noise),
        ));
        hub_demand.push(demand(
            "default",
            &format!("{branch}-inet"),
            branch,
            w(40e3, noise),
        ));
    }
    out.push(Report {
        site: "dc".into(),
        at_ms,
        lines: hub_lines,
        demand: hub_demand,
        ..Report::default()
    });
    out
}

struct Run {
    /// New rule-set versions per site after the settling time.
    late_versions: BTreeMap<String, Vec<u64>>,
    plans: Vec<(u64, Plan)>,
}

fn run(seconds: u64, settle: u64) -> Run {
    let policy = wansteer_policies::check_source("bank-lab.yaml", POLICY)
        .expect("the demo policy is valid")
        .policy;
    let mut planning = SolverPlanning::new();
    planning.on_policy(&policy);
    let mut noise = Noise(0x9e37_79b9_7f4a_7c15);
    let mut late_versions: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut plans = Vec::new();
    for second in 0..seconds {
        for report in reports(second, &mut noise) {
            planning.on_report(&report);
        }
        let plan = planning.plan(1_700_000_000_000 + second * 1000);
        if second >= settle {
            for (site, rule_set) in &plan.rule_sets {
                late_versions
                    .entry(site.clone())
                    .or_default()
                    .push(rule_set.version);
            }
        }
        plans.push((second, plan));
    }
    Run {
        late_versions,
        plans,
    }
}

#[test]
fn a_steady_lab_settles_to_no_new_rule_set_versions() {
    let run = run(180, 30);
    let first = &run.plans[0].1;
    assert_eq!(
        first.rule_sets.keys().collect::<Vec<_>>(),
        ["br1", "br2", "dc"],
        "every site gets a rule set at once"
    );
    assert!(
        run.late_versions.is_empty(),
        "rule sets still change after 30 s of a steady lab: {:?}",
        run.late_versions
    );
}

#[test]
fn no_decision_leaves_a_class_where_it_was() {
    let run = run(180, 0);
    for (second, plan) in &run.plans {
        for decision in &plan.decisions {
            assert_ne!(
                decision.from_line.as_deref(),
                Some(decision.to_line.as_str()),
                "second {second}: a no-op move: {decision:?}"
            );
        }
    }
    let late: Vec<_> = run
        .plans
        .iter()
        .filter(|(second, _)| *second >= 30)
        .flat_map(|(_, plan)| plan.decisions.iter())
        .collect();
    assert!(late.is_empty(), "moves in a steady lab: {late:?}");
}
