//! The dashboard's HTTP side without a browser: assets and their headers, who may open the
//! event stream and how a ticket is spent, and the line history, against the real server.

mod api_support;

use std::time::Duration;

use api_support::{POLICY, measurement, start, tokens};
use futures::StreamExt;
use wansteer_wire::session::{LineHealth, Report};

async fn post_report(running: &api_support::Running, rtt_ms: f64) {
    let mut line = measurement("mpls", LineHealth::Up, 0.0);
    line.rtt_ms = rtt_ms;
    let report = Report {
        site: "branch-1".into(),
        at_ms: wansteer_controller::service::now_ms(),
        lines: vec![line],
        events: vec![],
        demand: vec![],
    };
    let (status, _) = running
        .send(
            reqwest::Method::POST,
            "/api/v1/agent/report",
            Some(running.agent("branch-1")),
            serde_json::to_string(&report).unwrap(),
        )
        .await;
    assert_eq!(status, 204);
}

#[tokio::test]
async fn the_page_is_served_offline_with_a_strict_content_policy() {
    let dir = tempfile::tempdir().unwrap();
    let running = start(dir.path(), POLICY, tokens(), 0).await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let root = client.get(running.url("/")).send().await.unwrap();
    assert_eq!(root.status(), 303);
    assert_eq!(root.headers()["location"], "/dashboard/");

    let page = client.get(running.url("/dashboard/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("connect-src 'self'"),
        "{csp}"
    );
    let html = page.text().await.unwrap();
    assert!(html.contains("/dashboard/app.js"));
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no CDN: {html}"
    );

    for (asset, kind) in [("app.js", "text/javascript"), ("app.css", "text/css")] {
        let response = client
            .get(running.url(&format!("/dashboard/{asset}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with(kind)
        );
        let body = response.text().await.unwrap();
        assert!(
            !body.contains("https://"),
            "{asset} loads nothing from elsewhere"
        );
    }
    running.stop().await;
}

#[tokio::test]
async fn whoami_names_the_role_and_refuses_agents() {
    let dir = tempfile::tempdir().unwrap();
    let running = start(dir.path(), POLICY, tokens(), 0).await;
    let (status, _) = running.get("/api/v1/whoami", None).await;
    assert_eq!(status, 401);
    let (status, me) = running.get("/api/v1/whoami", Some(running.viewer())).await;
    assert_eq!((status, me["role"].as_str()), (200, Some("viewer")));
    let (status, me) = running.get("/api/v1/whoami", Some(running.admin())).await;
    assert_eq!((status, me["role"].as_str()), (200, Some("admin")));
    let (status, _) = running
        .get("/api/v1/whoami", Some(running.agent("branch-1")))
        .await;
    assert_eq!(status, 403);
    running.stop().await;
}

#[tokio::test]
async fn the_event_stream_opens_once_per_ticket_and_announces_new_measurements() {
    let dir = tempfile::tempdir().unwrap();
    let running = start(dir.path(), POLICY, tokens(), 0).await;
    let client = reqwest::Client::new();

    let (status, _) = running
        .send(
            reqwest::Method::POST,
            "/api/v1/events/ticket",
            None,
            String::new(),
        )
        .await;
    assert_eq!(status, 401, "a ticket needs a token");
    let (status, _) = running
        .send(
            reqwest::Method::POST,
            "/api/v1/events/ticket",
            Some(running.agent("branch-1")),
            String::new(),
        )
        .await;
    assert_eq!(status, 403, "agents get no ticket");
    for refused in [
        "/api/v1/events/stream",
        "/api/v1/events/stream?ticket=guess",
    ] {
        let response = client.get(running.url(refused)).send().await.unwrap();
        assert_eq!(response.status(), 401, "{refused}");
    }

    let (status, issued) = running
        .send(
            reqwest::Method::POST,
            "/api/v1/events/ticket",
            Some(running.viewer()),
            String::new(),
        )
        .await;
    assert_eq!(status, 200);
    let ticket = issued["ticket"].as_str().unwrap().to_string();
    assert_eq!(ticket.len(), 64, "256 random bits");
    let url = running.url(&format!("/api/v1/events/stream?ticket={ticket}"));
    let response = client.get(&url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let again = client.get(&url).send().await.unwrap();
    assert_eq!(again.status(), 401, "a ticket works once");

    let mut body = response.bytes_stream();
    let mut seen = String::new();
    let mut reported = false;
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(chunk) = body.next().await {
            seen.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
            if seen.contains("event: hello") && !reported {
                post_report(&running, 20.0).await;
                reported = true;
            }
            if seen.contains("event: changed") && seen.contains("\"lines\"") {
                return;
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "no change announced; the stream said:\n{seen}"
    );
    running.stop().await;
}

#[tokio::test]
async fn line_history_keeps_each_measurement_and_the_sla_to_draw() {
    let dir = tempfile::tempdir().unwrap();
    let running = start(dir.path(), POLICY, tokens(), 0).await;
    let path = "/api/v1/lines/branch-1/mpls/history";
    let (status, _) = running
        .get("/api/v1/lines/branch-1/dsl/history", Some(running.viewer()))
        .await;
    assert_eq!(status, 404);
    let (status, _) = running.get(path, Some(running.agent("branch-1"))).await;
    assert_eq!(status, 403);
    let (status, _) = running.get(path, None).await;
    assert_eq!(status, 401);

    for (n, rtt) in [(1, 20.0), (2, 35.0), (3, 50.0)] {
        post_report(&running, rtt).await;
        running
            .eventually("the sampler records the report", || async {
                let (_, body) = running.get(path, Some(running.viewer())).await;
                body["samples"].as_array().is_some_and(|s| s.len() == n)
            })
            .await;
    }
    let (status, body) = running.get(path, Some(running.viewer())).await;
    assert_eq!(status, 200);
    let rtts: Vec<f64> = body["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["rtt_ms"].as_f64().unwrap())
        .collect();
    assert_eq!(rtts, [20.0, 35.0, 50.0]);
    let voice = &body["thresholds"][0];
    assert_eq!(voice["class"], "voice");
    assert_eq!(
        voice["rtt_ms"].as_f64(),
        Some(300.0),
        "twice the 150 ms one-way SLA"
    );
    assert_eq!(voice["loss_percent"].as_f64(), Some(1.0));
    assert_eq!(voice["jitter_ms"].as_f64(), Some(30.0));
    running.stop().await;
}

fn site_report(site: &str, rtt_ms: f64) -> Report {
    Report {
        site: site.into(),
        at_ms: wansteer_controller::service::now_ms(),
        lines: ["mpls", "inet", "lte"]
            .into_iter()
            .map(|name| {
                let mut line = measurement(name, LineHealth::Up, 0.0);
                line.rtt_ms = rtt_ms;
                line
            })
            .collect(),
        events: vec![],
        demand: vec![],
    }
}

/// The dashboard's sampler takes the line updates since its last look, not a copy of
/// every line: first everything, then only what reports changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_gets_line_updates_not_a_copy_of_every_line() {
    let dir = tempfile::tempdir().unwrap();
    let running = start(dir.path(), POLICY, tokens(), 0).await;
    let controller = &running.controller;
    // The running server's sampler is already taking updates: wait for the first (full)
    // take, so what follows is only what the reports below change.
    controller.take_line_updates();
    for site in ["s1", "s2"] {
        controller
            .report(site, site_report(site, 20.0))
            .await
            .unwrap();
    }
    let seq = controller.lines_seq();
    controller
        .report("s2", site_report("s2", 30.0))
        .await
        .unwrap();
    assert_eq!(controller.lines_seq(), seq + 3, "three lines updated");
    // The sampler may have taken some; together the two takes hold every update once.
    let updates = controller.take_line_updates();
    let of_s2_at_30: Vec<_> = updates
        .iter()
        .filter(|(key, live)| key.0 == "s2" && live.measurement.rtt_ms == 30.0)
        .collect();
    assert!(of_s2_at_30.len() <= 3);
    assert!(controller.take_line_updates().len() <= 9);
    assert_eq!(controller.lines().len(), 6, "s1 and s2, three lines each");
    running.stop().await;
}

/// Not a timed test: prints what the dashboard's sampler costs under the state lock at
/// 10,000 sites × 3 lines, the old way (copy every line) against the new (take the
/// updates). `cargo test --release -p wansteer-controller --test dashboard_api -- --ignored
/// --nocapture sampler_cost`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement; prints figures"]
async fn sampler_cost_at_10k_sites() {
    let dir = tempfile::tempdir().unwrap();
    let running = start(dir.path(), POLICY, tokens(), 0).await;
    let controller = running.controller.clone();
    let sites: Vec<String> = (0..10_000).map(|i| format!("s{i}")).collect();
    let mut copy = Vec::new();
    let mut take = Vec::new();
    for round in 0..9 {
        for site in &sites {
            controller
                .report(site, site_report(site, 20.0 + f64::from(round)))
                .await
                .unwrap();
        }
        let started = std::time::Instant::now();
        let all = controller.lines();
        copy.push(started.elapsed());
        assert_eq!(all.len(), 30_000);
        let started = std::time::Instant::now();
        let updates = controller.take_line_updates();
        take.push(started.elapsed());
        drop(updates);
    }
    copy.sort();
    take.sort();
    println!(
        "30,000 lines, one report round between looks: copy every line {:?} (median of 9), take updates {:?}",
        copy[4], take[4]
    );
    running.stop().await;
}
