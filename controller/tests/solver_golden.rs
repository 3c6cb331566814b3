//! Golden scenarios for the planner: a policy and a timeline of line measurements, demand
//! and plan runs go in; the decisions (with reasons) and the changed rule sets come out and
//! are compared with `tests/solver_golden/<name>.expected`. `WANSTEER_BLESS=1` rewrites the
//! expected files; review the diff before committing it.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use wansteer_controller::graph::{LineHealth, LineMeasurement};
use wansteer_controller::plan::{ClassDemand, Plan, Planner};
use wansteer_policies::Policy;
use wansteer_policies::units::{Percent, Rate, Span};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Scenario {
    policy: Policy,
    steps: Vec<Step>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Step {
    at: Span,
    /// `site line rtt loss jitter health`, e.g. `b1 mpls 20ms 0% 1ms up`.
    #[serde(default)]
    measure: Vec<String>,
    /// `site class destination rate`, e.g. `b1 voice dc 2mbit`.
    #[serde(default)]
    demand: Vec<String>,
    #[serde(default)]
    plan: bool,
}

fn measurement(text: &str, at: Span) -> LineMeasurement {
    let f: Vec<&str> = text.split_whitespace().collect();
    assert_eq!(f.len(), 6, "measure needs 6 fields: {text}");
    LineMeasurement {
        site: f[0].into(),
        line: f[1].into(),
        rtt: f[2].parse::<Span>().unwrap().0,
        loss: f[3].parse::<Percent>().unwrap().fraction(),
        jitter: f[4].parse::<Span>().unwrap().0,
        health: match f[5] {
            "up" => LineHealth::Up,
            "degraded" => LineHealth::Degraded,
            "down" => LineHealth::Down,
            other => panic!("health `{other}`"),
        },
        at: at.0,
    }
}

fn demand(text: &str) -> ClassDemand {
    let f: Vec<&str> = text.split_whitespace().collect();
    assert_eq!(f.len(), 4, "demand needs 4 fields: {text}");
    ClassDemand {
        site: f[0].into(),
        class: f[1].into(),
        destination: f[2].into(),
        bps: f[3].parse::<Rate>().unwrap().bps() as f64,
    }
}

fn render(out: &mut String, at: Span, plan: &Plan) {
    let kind = if plan.stats.full {
        "full"
    } else {
        "incremental"
    };
    writeln!(
        out,
        "== plan at {at} ({kind}, {} of {} commodities re-solved)",
        plan.stats.resolved, plan.stats.commodities
    )
    .unwrap();
    for d in &plan.decisions {
        writeln!(
            out,
            "decision {} {} -> {}: {} -> {} [{:?}] {}",
            d.site,
            d.class,
            d.destination,
            d.from_line.as_deref().unwrap_or("-"),
            d.to_line.as_deref().unwrap_or("-"),
            d.reason.kind,
            d.reason.text()
        )
        .unwrap();
        if !d.path.is_empty() {
            writeln!(out, "    path {}", d.path.join(" > ")).unwrap();
        }
    }
    for (site, ruleset) in &plan.rulesets {
        writeln!(out, "ruleset {site} v{}", ruleset.version).unwrap();
        for r in &ruleset.routes {
            writeln!(
                out,
                "    route {} {} via {} backups [{}] | {}",
                r.class,
                r.destination,
                r.primary,
                r.backups.join(","),
                r.reason
            )
            .unwrap();
        }
        for line in &ruleset.lines {
            let shares: Vec<String> = line
                .shares
                .iter()
                .map(|s| format!("{} {}/{}", s.class, Rate(s.rate_bps), Rate(s.ceil_bps)))
                .collect();
            writeln!(
                out,
                "    htb {} {}: {}",
                line.name,
                Rate(line.rate_bps),
                shares.join(", ")
            )
            .unwrap();
        }
    }
}

fn run(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let scenario: Scenario =
        yaml_serde::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut planner = Planner::new(scenario.policy);
    let mut out = String::new();
    for step in scenario.steps {
        for m in &step.measure {
            planner.update_measurement(measurement(m, step.at)).unwrap();
        }
        for d in &step.demand {
            planner.update_demand(demand(d)).unwrap();
        }
        if step.plan {
            let plan = planner.plan(step.at.0);
            for ruleset in plan.rulesets.values() {
                assert!(ruleset.is_sealed(), "rule sets come sealed");
            }
            render(&mut out, step.at, &plan);
        }
    }
    out
}

fn scenarios() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/solver_golden");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn golden_scenarios() {
    let bless = std::env::var_os("WANSTEER_BLESS").is_some();
    let files = scenarios();
    assert!(!files.is_empty(), "no scenarios found");
    let mut failed = Vec::new();
    for file in files {
        let actual = run(&file);
        let expected_path = file.with_extension("expected");
        if bless {
            std::fs::write(&expected_path, &actual).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if expected != actual {
            eprintln!(
                "--- {} differs; expected:\n{expected}\n--- actual:\n{actual}",
                file.display()
            );
            failed.push(file.display().to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "scenarios differ (WANSTEER_BLESS=1 to regenerate): {failed:?}"
    );
}

#[test]
fn a_scenario_is_deterministic() {
    for file in scenarios() {
        assert_eq!(run(&file), run(&file), "{}", file.display());
    }
}
