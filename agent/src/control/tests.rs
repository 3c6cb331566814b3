//! The client against a scripted fake controller (real HTTP on loopback): it applies sealed
//! pushes, refuses tampered ones and keeps the last good, acks both, and on reconnect tells
//! the controller the hash it runs.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::sse::{Event, Sse};
use axum::routing::{get, post};
use axum::{Json, Router};
use tokio::sync::{Mutex, mpsc};
use wansteer_wire::ruleset::RuleSet;
use wansteer_wire::session::{Ack, AckOutcome, Register, RegisterReply, RuleSetId};

use super::*;

const TOKEN: &str = "0123456789abcdef0123456789abcdef";

/// One scripted SSE event (name, data); `None` ends the current push stream.
type Step = Option<(String, String)>;
type Script = mpsc::UnboundedSender<Step>;

#[derive(Clone)]
struct Fake {
    script: Arc<Mutex<mpsc::UnboundedReceiver<Step>>>,
    registers: mpsc::UnboundedSender<Register>,
    rules_hashes: mpsc::UnboundedSender<Option<String>>,
    acks: mpsc::UnboundedSender<Ack>,
}

#[derive(serde::Deserialize)]
struct HashQuery {
    hash: Option<String>,
}

fn authorised(headers: &axum::http::HeaderMap) -> bool {
    headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {TOKEN}"))
}

async fn register(
    State(fake): State<Fake>,
    headers: axum::http::HeaderMap,
    Json(body): Json<Register>,
) -> Result<Json<RegisterReply>, axum::http::StatusCode> {
    if !authorised(&headers) {
        return Err(axum::http::StatusCode::UNAUTHORIZED);
    }
    fake.registers.send(body).unwrap();
    Ok(Json(RegisterReply {
        protocol: wansteer_wire::PROTOCOL_VERSION,
        published: None,
        report_interval_ms: 1000,
    }))
}

async fn rules(
    State(fake): State<Fake>,
    Query(query): Query<HashQuery>,
) -> Sse<impl futures::Stream<Item = Result<Event, Infallible>>> {
    fake.rules_hashes.send(query.hash).unwrap();
    let stream = futures::stream::unfold(fake.script, |script| async move {
        let next = script.lock().await.recv().await.flatten()?;
        Some((Ok(Event::default().event(next.0).data(next.1)), script))
    });
    Sse::new(stream)
}

async fn ack(State(fake): State<Fake>, Json(body): Json<Ack>) -> Json<serde_json::Value> {
    fake.acks.send(body).unwrap();
    Json(serde_json::json!({}))
}

struct Harness {
    script: Script,
    registers: mpsc::UnboundedReceiver<Register>,
    rules_hashes: mpsc::UnboundedReceiver<Option<String>>,
    acks: mpsc::UnboundedReceiver<Ack>,
    base_url: String,
}

async fn fake_controller() -> Harness {
    let (script, script_rx) = mpsc::unbounded_channel();
    let (registers_tx, registers) = mpsc::unbounded_channel();
    let (hashes_tx, rules_hashes) = mpsc::unbounded_channel();
    let (acks_tx, acks) = mpsc::unbounded_channel();
    let fake = Fake {
        script: Arc::new(Mutex::new(script_rx)),
        registers: registers_tx,
        rules_hashes: hashes_tx,
        acks: acks_tx,
    };
    let app = Router::new()
        .route("/api/v1/agent/register", post(register))
        .route("/api/v1/agent/rules", get(rules))
        .route("/api/v1/agent/ack", post(ack))
        .with_state(fake);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Harness {
        script,
        registers,
        rules_hashes,
        acks,
        base_url,
    }
}

fn rule_set(version: u64, default_class: &str) -> RuleSet {
    RuleSet {
        site: "branch-1".into(),
        version,
        hash: String::new(),
        classes: vec![],
        default_class: default_class.into(),
        lines: vec![],
        routes: vec![],
    }
    .seal()
}

fn push(rule_set: &RuleSet) -> Option<(String, String)> {
    Some(("rule-set".into(), serde_json::to_string(rule_set).unwrap()))
}

async fn next<T>(rx: &mut mpsc::UnboundedReceiver<T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("the client did not answer within 10 s")
        .expect("channel open")
}

#[tokio::test]
async fn applies_sealed_pushes_refuses_tampered_ones_and_resumes_with_its_hash() {
    let mut harness = fake_controller().await;
    let config = ClientConfig {
        base_url: harness.base_url.clone(),
        site: "branch-1".into(),
        token: TOKEN.into(),
        agent_version: "test".into(),
        lines: vec![],
        backoff: Backoff::try_new(Duration::from_millis(5), Duration::from_millis(20)).unwrap(),
        request_timeout: Duration::from_secs(5),
    };
    let client = ControllerClient::new(config, None).unwrap();
    let status = client.status();
    let (applied_tx, mut applied) = mpsc::unbounded_channel::<RuleSet>();
    let apply = move |rule_set: &RuleSet| -> Result<(), String> {
        applied_tx.send(rule_set.clone()).unwrap();
        Ok(())
    };
    let (_reports_tx, reports) = mpsc::channel(4);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(client.run(apply, reports, async {
        let _ = stop_rx.await;
    }));

    assert_eq!(next(&mut harness.registers).await.running, None);
    assert_eq!(next(&mut harness.rules_hashes).await, None);

    let v1 = rule_set(1, "default");
    harness.script.send(push(&v1)).unwrap();
    assert_eq!(next(&mut applied).await, v1);
    let ack = next(&mut harness.acks).await;
    assert_eq!((ack.version, ack.outcome), (1, AckOutcome::Applied));

    let mut tampered = rule_set(2, "bulk");
    tampered.default_class = "voice".into();
    harness.script.send(push(&tampered)).unwrap();
    harness
        .script
        .send(Some(("rule-set".into(), "{not json".into())))
        .unwrap();
    let ack = next(&mut harness.acks).await;
    assert_eq!(ack.version, 2);
    assert!(
        matches!(&ack.outcome, AckOutcome::Failed { error } if error.contains("hash")),
        "{ack:?}"
    );
    assert_eq!(
        status.borrow().running,
        Some(RuleSetId::of(&v1)),
        "keeps the last good"
    );

    let v2 = rule_set(2, "bulk");
    harness.script.send(push(&v2)).unwrap();
    assert_eq!(
        next(&mut applied).await,
        v2,
        "the tampered one was never applied"
    );
    assert_eq!(next(&mut harness.acks).await.outcome, AckOutcome::Applied);

    // The controller goes away; the client comes back saying what it runs.
    harness.script.send(None).unwrap();
    let again = next(&mut harness.registers).await;
    assert_eq!(again.running, Some(RuleSetId::of(&v2)));
    assert_eq!(next(&mut harness.rules_hashes).await, Some(v2.hash.clone()));
    // The same content again (a controller that lost track) is acked, not re-applied.
    harness.script.send(push(&v2)).unwrap();
    assert_eq!(next(&mut harness.acks).await.outcome, AckOutcome::Applied);
    assert!(
        applied.try_recv().is_err(),
        "an unchanged rule set is not applied twice"
    );
    {
        let now = status.borrow();
        assert_eq!(now.applied, 2);
        assert_eq!(now.refused, 2, "the tampered push and the unreadable one");
        assert!(now.sessions >= 2);
    }
    stop_tx.send(()).unwrap();
    task.await.unwrap();
}

/// A fleet of agents, each running the client's reconnect schedule (on the push stream's
/// end: an announced restart window if there was one, then sleep the backoff's next delay
/// and try again until the controller answers), against a controller that is away for
/// `down`. Returns when each agent got back in, relative to the controller's return.
async fn fleet_reconnects(
    agents: u32,
    announced: Option<Duration>,
    down: Duration,
) -> Vec<Duration> {
    let back_at = tokio::time::Instant::now() + down;
    let tasks: Vec<_> = (0..agents)
        .map(|agent| {
            tokio::spawn(async move {
                // Deterministic jitter per agent (xorshift), standing in for the random one.
                let mut seed = 0x9E37_79B9_7F4A_7C15_u64
                    ^ (u64::from(agent) + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                let mut unit = move || {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    (seed >> 11) as f64 / (1u64 << 53) as f64
                };
                let mut backoff = Backoff::default();
                if let Some(window) = announced {
                    backoff.expect_restart(window);
                }
                loop {
                    tokio::time::sleep(backoff.next_with(unit())).await;
                    let now = tokio::time::Instant::now();
                    if now >= back_at {
                        return now - back_at;
                    }
                }
            })
        })
        .collect();
    let mut back = Vec::with_capacity(tasks.len());
    for task in tasks {
        back.push(task.await.unwrap());
    }
    back
}

#[tokio::test(start_paused = true)]
async fn after_an_announced_restart_10k_agents_are_back_within_the_window_without_a_herd() {
    // What the controller announces for 10,000 agents (5,000 reconnects a second).
    let window = Duration::from_secs(2);
    let down = Duration::from_secs(5);
    let back = fleet_reconnects(10_000, Some(window), down).await;
    let last = back.iter().max().unwrap();
    assert!(
        *last <= window,
        "every agent is back within the window after the controller: last after {last:?}"
    );
    // Spread, not a herd: no 100 ms slice gets more than 10% of the fleet (uniform
    // retries over 2 s put ≈ 5% in the first slice and less after).
    let mut per_slice = std::collections::BTreeMap::<u128, u32>::new();
    for gap in &back {
        *per_slice.entry(gap.as_millis() / 100).or_default() += 1;
    }
    let busiest = per_slice.values().max().unwrap();
    assert!(
        *busiest <= 1_500,
        "{busiest} reconnects in one 100 ms slice"
    );

    // Unannounced (a crash), exponential backoff still spreads a long outage out.
    let back = fleet_reconnects(10_000, None, down).await;
    let last = back.iter().max().unwrap();
    assert!(*last > window, "an outage backs off further: {last:?}");
}
