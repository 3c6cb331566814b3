//! Rule set push end to end: the real agent client against the real controller over
//! loopback. The agent gets a sealed rule set, acks it and the API shows it in sync; a
//! policy change pushes the next version; a failed apply shows as drift; a restarted
//! controller resumes with the same versions and pushes nothing again.

mod api_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use api_support::*;
use reqwest::Method;
use serde_json::json;
use tokio::sync::{mpsc, oneshot, watch};
use wansteer_agent::control::{Backoff, ClientConfig, ClientStatus, ControllerClient};
use wansteer_wire::ruleset::RuleSet;
use wansteer_wire::session::{LineHealth, LineRegistration, Report};

struct Agent {
    status: watch::Receiver<ClientStatus>,
    applied: mpsc::UnboundedReceiver<RuleSet>,
    apply_count: Arc<AtomicUsize>,
    fail_next: Arc<AtomicBool>,
    reports: mpsc::Sender<Report>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

fn agent(base: &str, token: &str) -> Agent {
    let config = ClientConfig {
        base_url: base.to_string(),
        site: "branch-1".into(),
        token: token.to_string(),
        agent_version: "0.1.0-test".into(),
        lines: vec![LineRegistration {
            name: "mpls".into(),
            interface: "wan0".into(),
        }],
        backoff: Backoff::try_new(Duration::from_millis(10), Duration::from_millis(100)).unwrap(),
        request_timeout: Duration::from_secs(5),
    };
    let client = ControllerClient::new(config, None).unwrap();
    let status = client.status();
    let (applied_tx, applied) = mpsc::unbounded_channel();
    let apply_count = Arc::new(AtomicUsize::new(0));
    let fail_next = Arc::new(AtomicBool::new(false));
    let (count, fail) = (apply_count.clone(), fail_next.clone());
    let apply = move |rule_set: &RuleSet| -> Result<(), String> {
        count.fetch_add(1, Ordering::SeqCst);
        if fail.load(Ordering::SeqCst) {
            return Err("nft: Could not process rule: No such file or directory".into());
        }
        applied_tx.send(rule_set.clone()).unwrap();
        Ok(())
    };
    let (stop, stop_rx) = oneshot::channel();
    let (reports, reports_rx) = mpsc::channel(4);
    let task = tokio::spawn(client.run(apply, reports_rx, async {
        let _ = stop_rx.await;
    }));
    Agent {
        status,
        applied,
        apply_count,
        fail_next,
        reports,
        stop: Some(stop),
        task,
    }
}

impl Agent {
    async fn next_applied(&mut self) -> RuleSet {
        tokio::time::timeout(Duration::from_secs(10), self.applied.recv())
            .await
            .expect("a rule set within 10 s")
            .unwrap()
    }

    async fn stop(mut self) {
        self.stop.take().unwrap().send(()).unwrap();
        self.task.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_applies_pushes_acks_and_drift_shows() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), POLICY, tokens(), 0).await;
    let mut agent = agent(&server.base, server.agent("branch-1"));

    let v1 = agent.next_applied().await;
    assert_eq!((v1.site.as_str(), v1.version), ("branch-1", 1));
    assert!(v1.is_sealed());
    server
        .eventually("branch-1 in sync at v1", || async {
            let row = server.agent_row("branch-1").await;
            row["drift"] == "in_sync" && row["agent"]["applied"]["version"] == 1
        })
        .await;
    let row = server.agent_row("branch-1").await;
    assert_eq!(row["connected"], true);
    assert_eq!(row["agent"]["agent_version"], "0.1.0-test");
    assert_eq!(
        row["agent"]["lines"],
        json!([{"name": "mpls", "interface": "wan0"}])
    );
    assert_eq!(server.agent_row("hub").await["drift"], "never_connected");

    // A policy change pushes v2 to the connected agent.
    let (status, _) = server.put_policy(policy_with_video()).await;
    assert_eq!(status, 200);
    let v2 = agent.next_applied().await;
    assert_eq!(v2.version, 2);
    assert!(v2.class("video").is_some());
    server
        .eventually("branch-1 in sync at v2", || async {
            server.agent_row("branch-1").await["drift"] == "in_sync"
        })
        .await;
    let metrics = server.metrics().await;
    assert!(
        metrics.contains("wansteer_agent_ruleset_version{site=\"branch-1\"} 2"),
        "{metrics}"
    );
    let pushes = metrics
        .lines()
        .find(|l| l.starts_with("wansteer_push_latency_seconds_count"))
        .unwrap();
    assert_ne!(
        pushes, "wansteer_push_latency_seconds_count 0",
        "push latency observed"
    );

    // The agent cannot apply v3: drift shows it failed, with the agent's error; it keeps v2.
    agent.fail_next.store(true, Ordering::SeqCst);
    let (status, _) = server
        .send(
            Method::PUT,
            "/api/v1/policy",
            Some(server.admin()),
            POLICY.into(),
        )
        .await;
    assert_eq!(status, 200);
    server
        .eventually("branch-1 drift failed", || async {
            server.agent_row("branch-1").await["drift"] == "failed"
        })
        .await;
    let row = server.agent_row("branch-1").await;
    assert_eq!(row["published"]["version"], 3);
    assert_eq!(row["agent"]["applied"]["version"], 2);
    assert!(
        row["agent"]["failed"]["error"]
            .as_str()
            .unwrap()
            .contains("nft"),
        "{row}"
    );
    assert_eq!(agent.status.borrow().running.as_ref().unwrap().version, 2);
    let metrics = server.metrics().await;
    assert!(
        metrics.contains("wansteer_agent_drift{site=\"branch-1\"} 1"),
        "{metrics}"
    );

    agent.stop().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_controller_resumes_without_pushing_again() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = tokens();
    let server = start(dir.path(), POLICY, tokens.clone(), 0).await;
    let addr = server.addr;
    let mut agent = agent(&server.base, server.agent("branch-1"));
    let v1 = agent.next_applied().await;
    server
        .eventually("in sync before the restart", || async {
            server.agent_row("branch-1").await["drift"] == "in_sync"
        })
        .await;
    let (sessions_before, received_before) = {
        let status = agent.status.borrow();
        (status.sessions, status.received)
    };
    server.stop().await;

    // Same state directory, same policy, same address.
    let server = start(dir.path(), POLICY, tokens, addr.port()).await;
    let (_, policy) = server.get("/api/v1/policy", Some(server.viewer())).await;
    assert_eq!(policy["version"], 1, "the same policy is no new version");
    let row = server.agent_row("branch-1").await;
    assert_eq!(row["published"]["version"], 1);
    assert_eq!(row["published"]["hash"], v1.hash.as_str());
    assert_eq!(row["drift"], "in_sync", "the registry survived the restart");

    // The agent reconnects with its hash and gets `in-sync`, not the rule set again.
    let mut status = agent.status.clone();
    tokio::time::timeout(
        Duration::from_secs(10),
        status.wait_for(|s| s.connected && s.sessions > sessions_before),
    )
    .await
    .expect("the agent reconnects within 10 s")
    .unwrap();
    server
        .eventually("reconnected agent shows connected", || async {
            server.agent_row("branch-1").await["connected"] == true
        })
        .await;
    // A report makes the new process plan; the same inputs give the same content, so
    // the version stays and nothing is pushed.
    let (_, decisions) = server
        .get("/api/v1/decisions?limit=10000", Some(server.viewer()))
        .await;
    let decisions_before = decisions.as_array().unwrap().len();
    agent
        .reports
        .send(Report {
            site: "branch-1".into(),
            at_ms: 2,
            lines: vec![measurement("mpls", LineHealth::Up, 0.0)],
            events: vec![],
            demand: vec![],
        })
        .await
        .unwrap();
    server
        .eventually("the report was planned on", || async {
            let (_, decisions) = server
                .get("/api/v1/decisions?limit=10000", Some(server.viewer()))
                .await;
            decisions.as_array().unwrap().len() > decisions_before
        })
        .await;
    let (_, site) = server
        .get("/api/v1/sites/branch-1", Some(server.viewer()))
        .await;
    assert_eq!(
        site["rule_set"]["version"], 1,
        "re-planning the same inputs is no new version"
    );
    assert_eq!(site["lines"][0]["health"], "up");
    assert_eq!(
        agent.apply_count.load(Ordering::SeqCst),
        1,
        "nothing re-applied"
    );
    assert_eq!(
        agent.status.borrow().received,
        received_before,
        "the controller sent `in-sync`, not the rule set again"
    );
    assert_eq!(agent.status.borrow().running.as_ref().unwrap().version, 1);
    assert!(agent.applied.try_recv().is_err());

    agent.stop().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_shutdown_tells_agents_to_reconnect_within_a_window() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), POLICY, tokens(), 0).await;
    let response = reqwest::Client::new()
        .get(server.url("/api/v1/agent/rules"))
        .bearer_auth(server.agent("branch-1"))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    let mut stream = response.bytes_stream();
    let mut text = String::new();
    use futures::StreamExt;
    while !text.contains("event: rule-set") {
        let chunk = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("the first push within 10 s")
            .unwrap()
            .unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    server.controller.begin_shutdown();
    let mut rest = String::new();
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("the stream ends within 10 s")
    {
        rest.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
    }
    assert!(
        rest.contains("event: restarting\ndata: {\"reconnect_within_ms\":1000}"),
        "one agent connected: reconnect within the 1 s minimum; got {rest:?}"
    );
    server.stop().await;
}
