//! End-to-end: the scenario runner starts wansteer itself (a controller on loopback and an
//! agent per site) and plays the CI copies of the scenario suite (`lab/scenarios/ci/`):
//! a brownout (voice off a 5%-loss line within 5 s), a blackout (no voice gap over 1 s) and
//! a bad policy through the controller's API (refused with file:line:col, nothing changes)
//! and branch-to-branch voice leaving the direct internet path for the hub on loss.
//! Bounds are loose for a shared 2-core machine but fail when steering does not happen;
//! tight figures are in docs/benchmarks/closed-loop.md.
//!
//! Each scenario runs under its own prefix (`wst` + tag + pid), one after the other, and
//! the run is removed by the runner and, should it crash, by a Drop guard.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[allow(dead_code)] // each test binary uses part of it
mod support;

use support::*;

/// Runs `wansteer lab run lab/scenarios/ci/<name>.yaml`; returns report.json and the output.
fn run_scenario(name: &str, tag: &str) -> (serde_json::Value, String, bool) {
    let prefix = format!("wst{tag}{}", std::process::id() % 10000);
    let _guard = LabGuard(prefix.clone());
    let report = tempfile::tempdir().expect("tempdir");
    // Raised CPU priority, as in closed_loop.rs: a starved emulator or agent on a shared
    // machine looks like every line failing at once.
    let mut child = Command::new("nice")
        .args(["-n", "-10", env!("CARGO_BIN_EXE_wansteer")])
        .args(["lab", "run", "--prefix", &prefix, "--report"])
        .arg(report.path())
        .arg(repo().join(format!("lab/scenarios/ci/{name}.yaml")))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("wansteer lab run starts");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            panic!("scenario {name} ran longer than 120 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let output = child.wait_with_output().expect("output");
    let mut context = format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    for log in ["controller.log", "agent-br1.log"] {
        if let Ok(text) = std::fs::read_to_string(report.path().join("logs").join(log)) {
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            context.push_str(&format!(
                "\n{log} (last lines, newest first):\n{}",
                tail.join("\n")
            ));
        }
    }
    assert!(
        namespaces_with(&prefix).is_empty(),
        "the run left namespaces behind: {:?}",
        namespaces_with(&prefix)
    );
    let json: serde_json::Value = serde_json::from_slice(
        &std::fs::read(report.path().join("report.json"))
            .unwrap_or_else(|e| panic!("report.json of {name}: {e}\n{context}")),
    )
    .expect("report.json parses");
    (json, context, status.success())
}

fn expectation<'a>(json: &'a serde_json::Value, starts: &str) -> &'a serde_json::Value {
    json["expectations"]
        .as_array()
        .expect("expectations")
        .iter()
        .find(|e| e["text"].as_str().is_some_and(|t| t.starts_with(starts)))
        .unwrap_or_else(|| panic!("no expectation `{starts}…` in {json:#}"))
}

/// Why a scenario run failed, or `None` if every check passed.
fn judge(name: &str, json: &serde_json::Value, context: &str, success: bool) -> Option<String> {
    let mut problems = Vec::new();
    if json["mode"] != "controller" {
        problems.push(format!("mode {}", json["mode"]));
    }
    // The agents' decisions were recorded with the line each class takes.
    let events = json["steering"]["events"].as_array();
    if !events.is_some_and(|events| {
        events
            .iter()
            .any(|e| e["kind"] == "ready" && e["site"] == "br1")
    }) {
        problems.push("br1's agent never became ready".to_string());
    }
    let key = match name {
        "brownout" | "blackout" => "voice at br1 leaves mpls",
        "mesh-direct-vs-hub" => "voice at br1 leaves inet",
        _ => "policy `bad` refused",
    };
    let main = expectation(json, key);
    if main["passed"] != true {
        problems.push(format!("{main}"));
    }
    if name == "bad-policy"
        && !main["measured"]
            .as_str()
            .is_some_and(|m| m.contains("bad-voice-sla.yaml:"))
    {
        problems.push(format!("no location in the policy file: {main}"));
    }
    let failed: Vec<&serde_json::Value> = json["expectations"]
        .as_array()
        .expect("expectations")
        .iter()
        .filter(|e| e["passed"] != true)
        .collect();
    if !failed.is_empty() {
        problems.push(format!("{failed:#?}"));
    }
    if !success {
        problems.push("non-zero exit".to_string());
    }
    (!problems.is_empty()).then(|| format!("{name}: {}\n{context}", problems.join("\n")))
}

#[test]
fn the_ci_scenarios_pass_with_wansteer_started_by_the_runner() {
    if !is_root() {
        eprintln!("skipped: the scenario suite builds network namespaces and needs root");
        return;
    }
    let mut failures = Vec::new();
    for (name, tag) in [
        ("brownout", "sb"),
        ("blackout", "sk"),
        ("bad-policy", "sp"),
        ("mesh-direct-vs-hub", "sm"),
    ] {
        let (json, context, success) = run_scenario(name, tag);
        let Some(first) = judge(name, &json, &context, success) else {
            continue;
        };
        // One retry: on this shared 2-core machine a whole-host stall (every line of every
        // site silent at once) occasionally makes the agents fail over before the scenario's
        // event. Steering that does not happen fails both attempts. The first failure is
        // printed either way.
        eprintln!("first attempt failed, retrying once:\n{first}");
        let (json, context, success) = run_scenario(name, tag);
        if let Some(second) = judge(name, &json, &context, success) {
            failures.push(format!("{first}\n\nretry:\n{second}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
