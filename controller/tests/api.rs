//! The REST API against the real server on 127.0.0.1:0: tokens and roles, policy
//! validate/diff/apply (a bad policy is refused with file:line:col and changes nothing),
//! live lines, class placements and decisions, the OpenAPI document and `/metrics`.

mod api_support;

use std::collections::BTreeSet;

use api_support::*;
use reqwest::Method;
use serde_json::{Value, json};
use wansteer_controller::api::all_routes;
use wansteer_controller::audit::Retention;
use wansteer_controller::service::ControllerConfig;
use wansteer_wire::session::{ClassDemand, LineHealth, Register, Report};

fn register_body(site: &str) -> String {
    serde_json::to_string(&Register {
        protocol: wansteer_wire::PROTOCOL_VERSION,
        site: site.into(),
        agent_version: "test-agent".into(),
        lines: vec![],
        running: None,
    })
    .unwrap()
}

#[tokio::test]
async fn tokens_and_roles_are_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), POLICY, tokens(), 0).await;

    // No token, an unknown one, a revoked one: 401 with a Bearer challenge.
    let response = reqwest::get(server.url("/api/v1/sites")).await.unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    assert_eq!(
        server
            .get("/api/v1/sites", Some("not-a-token-at-all"))
            .await
            .0,
        401
    );
    let revoked = server.agent("branch-9").to_string();
    let (status, _) = server
        .send(
            Method::POST,
            "/api/v1/agent/register",
            Some(&revoked),
            register_body("branch-9"),
        )
        .await;
    assert_eq!(status, 401, "a revoked agent token is refused");

    // A viewer reads, and may validate or diff, but may not apply.
    assert_eq!(
        server.get("/api/v1/sites", Some(server.viewer())).await.0,
        200
    );
    let (status, _) = server
        .send(
            Method::POST,
            "/api/v1/policy/validate",
            Some(server.viewer()),
            POLICY.into(),
        )
        .await;
    assert_eq!(status, 200);
    let (status, body) = server
        .send(
            Method::PUT,
            "/api/v1/policy",
            Some(server.viewer()),
            policy_with_video(),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        server.get("/api/v1/policy", Some(server.viewer())).await.1["version"],
        1
    );

    // Agent tokens open only their own site's session, never the API.
    assert_eq!(
        server
            .get("/api/v1/sites", Some(server.agent("hub")))
            .await
            .0,
        403
    );
    let (status, _) = server
        .send(
            Method::POST,
            "/api/v1/agent/register",
            Some(server.agent("hub")),
            register_body("branch-1"),
        )
        .await;
    assert_eq!(status, 403, "hub's token cannot speak for branch-1");
    let (status, _) = server
        .send(
            Method::POST,
            "/api/v1/agent/register",
            Some(server.admin()),
            register_body("hub"),
        )
        .await;
    assert_eq!(status, 403, "API tokens cannot open agent sessions");
    let (status, body) = server
        .send(
            Method::POST,
            "/api/v1/agent/register",
            Some(server.agent("hub")),
            register_body("hub"),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["published"]["version"], 1);

    // Refusals are counted in the metrics and the bad tokens audited.
    let metrics = server.metrics().await;
    assert!(
        metrics.contains("wansteer_auth_refused_total{reason=\"revoked\"} 1"),
        "{metrics}"
    );
    server.stop().await;
    let audit = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
    assert!(audit.contains("\"kind\":\"auth_refused\""), "{audit}");
}

#[tokio::test]
async fn a_policy_naming_an_app_outside_the_catalogue_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = ControllerConfig {
        metrics_public: false,
        check: wansteer_policies::CheckOptions {
            known_apps: Some(vec!["teams".into(), "zoom".into()]),
        },
        state_dir: dir.path().to_path_buf(),
        policy_file: "policy.yaml".into(),
        policy_text: POLICY.to_string(),
        tokens: tokens(),
        token_source: wansteer_controller::auth::TokenSource::Given,
        retention: Retention::default(),
        plan_interval: std::time::Duration::from_millis(20),
        report_interval: std::time::Duration::from_secs(1),
    };
    let server = start_config(config, 0).await;
    let misspelt = POLICY.replace(
        r#"match: [{ protocols: [udp], ports: ["16384-32767"] }]"#,
        r#"match: [{ protocols: [udp], ports: ["16384-32767"] }, { apps: [temas] }]"#,
    );
    assert_ne!(misspelt, POLICY, "the test policy has voice's match");
    let (status, body) = server
        .send(
            Method::PUT,
            "/api/v1/policy?file=bank.yaml",
            Some(server.admin()),
            misspelt,
        )
        .await;
    assert_eq!(status, 422, "{body}");
    let first = &body["diagnostics"][0];
    assert!(
        first["message"].as_str().unwrap().contains("temas"),
        "{body}"
    );
    assert_eq!(first["hint"], "did you mean `teams`?", "{body}");
    let (_, policy) = server.get("/api/v1/policy", Some(server.viewer())).await;
    assert_eq!(policy["version"], 1, "nothing changed");
    server.stop().await;
}

#[tokio::test]
async fn bad_policy_is_refused_with_its_location_and_nothing_changes() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), POLICY, tokens(), 0).await;
    let before = server.get("/api/v1/agents", Some(server.viewer())).await.1;

    // A typo in the `priority` key of class voice, at column 5 of its line.
    let typo = POLICY.replace("    priority: 1\n", "    prioity: 1\n");
    let line = typo.lines().position(|l| l == "    prioity: 1").unwrap() + 1;
    for (method, path) in [
        (Method::PUT, "/api/v1/policy?file=bank.yaml"),
        (Method::POST, "/api/v1/policy/validate?file=bank.yaml"),
        (Method::POST, "/api/v1/policy/diff?file=bank.yaml"),
    ] {
        let (status, body) = server
            .send(method, path, Some(server.admin()), typo.clone())
            .await;
        assert_eq!(status, 422, "{path}: {body}");
        let first = &body["diagnostics"][0];
        assert_eq!(first["location"], format!("bank.yaml:{line}:5"), "{body}");
        assert_eq!(first["severity"], "error");
        assert!(
            first["message"].as_str().unwrap().contains("prioity"),
            "{body}"
        );
    }

    let (_, policy) = server.get("/api/v1/policy", Some(server.viewer())).await;
    assert_eq!(policy["version"], 1);
    assert_eq!(policy["text"], POLICY);
    let (_, versions) = server
        .get("/api/v1/policy/versions", Some(server.viewer()))
        .await;
    assert_eq!(versions.as_array().unwrap().len(), 1);
    assert_eq!(
        server.get("/api/v1/agents", Some(server.viewer())).await.1,
        before
    );
    server.stop().await;
    let audit = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
    assert_eq!(
        audit.matches("policy_change").count(),
        1,
        "only the startup policy: {audit}"
    );
}

fn demand(class: &str, line: Option<&str>, destination: Option<&str>, bps: u64) -> ClassDemand {
    ClassDemand {
        class: class.into(),
        line: line.map(Into::into),
        destination: destination.map(Into::into),
        bps,
    }
}

/// How the policies crate's diff words the class the test policy adds.
const VIDEO_ADDED: &str =
    "+ class video: new class: priority 2, DSCP AF41, share 0% guaranteed / 100% ceiling";

#[tokio::test]
async fn admin_applies_a_policy_with_a_diff_and_an_audit_trail() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), POLICY, tokens(), 0).await;
    let new = policy_with_video();

    let (status, diff) = server
        .send(
            Method::POST,
            "/api/v1/policy/diff",
            Some(server.viewer()),
            new.clone(),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(diff["changes"], json!([VIDEO_ADDED]));
    assert_eq!(
        diff["details"],
        json!([{ "area": "classes", "kind": "added", "subject": "class video",
                 "text": "new class: priority 2, DSCP AF41, share 0% guaranteed / 100% ceiling" }])
    );

    let (status, applied) = server
        .send(
            Method::PUT,
            "/api/v1/policy",
            Some(server.admin()),
            new.clone(),
        )
        .await;
    assert_eq!(status, 200, "{applied}");
    assert_eq!(applied["version"], 2);
    assert_eq!(applied["changed"], true);
    assert_eq!(applied["sites_republished"], json!(["branch-1", "hub"]));
    assert_eq!(applied["changes"], json!([VIDEO_ADDED]));

    let (_, policy) = server.get("/api/v1/policy", Some(server.viewer())).await;
    assert_eq!(
        (policy["version"].clone(), policy["by"].clone()),
        (json!(2), json!("admin"))
    );
    let (_, classes) = server.get("/api/v1/classes", Some(server.viewer())).await;
    let video = classes
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "video")
        .unwrap();
    assert_eq!(video["placements"].as_array().unwrap().len(), 2, "{video}");

    // The audit log through the API: admins only, filtered by kind and time.
    let (status, _) = server.get("/api/v1/audit", Some(server.viewer())).await;
    assert_eq!(status, 403);
    let (status, entries) = server
        .get("/api/v1/audit?kind=policy_change", Some(server.admin()))
        .await;
    assert_eq!(status, 200, "{entries}");
    let entries = entries.as_array().unwrap();
    assert_eq!(entries.len(), 2, "startup and admin: {entries:?}");
    assert!(entries.iter().all(|e| e["kind"] == "policy_change"));
    let last = entries.last().unwrap();
    assert_eq!(
        (
            last["by"].clone(),
            last["to_version"].clone(),
            last["changes"].clone()
        ),
        (json!("admin"), json!(2), json!([VIDEO_ADDED]))
    );
    let since = last["at_ms"].as_u64().unwrap() + 1;
    let (_, later) = server
        .get(
            &format!("/api/v1/audit?kind=policy_change&since={since}"),
            Some(server.admin()),
        )
        .await;
    assert_eq!(later, json!([]));
    let (status, _) = server
        .get("/api/v1/audit?kind=nonsense", Some(server.admin()))
        .await;
    assert_eq!(status, 400);
    // A refused token is audited and readable.
    let (status, _) = server
        .get("/api/v1/sites", Some("not-a-token-anyone-has"))
        .await;
    assert_eq!(status, 401);
    let refused = async {
        loop {
            let (_, refused) = server
                .get("/api/v1/audit?kind=auth_refused", Some(server.admin()))
                .await;
            if !refused.as_array().unwrap().is_empty() {
                return refused;
            }
            tokio::task::yield_now().await;
        }
    };
    let refused = tokio::time::timeout(std::time::Duration::from_secs(10), refused)
        .await
        .expect("the refused token reaches the audit log");
    assert!(
        refused[0]["reason"]
            .as_str()
            .unwrap()
            .contains("unknown token on /api/v1/sites"),
        "{refused}"
    );

    // The same text again is no new version.
    let (_, again) = server
        .send(Method::PUT, "/api/v1/policy", Some(server.admin()), new)
        .await;
    assert_eq!(
        (again["version"].clone(), again["changed"].clone()),
        (json!(2), json!(false))
    );
    server.stop().await;

    let audit = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
    let change: Value = audit
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .rfind(|e| e["kind"] == "policy_change")
        .unwrap();
    assert_eq!(change["by"], "admin");
    assert_eq!(change["to_version"], 2);
    assert_eq!(change["changes"], json!([VIDEO_ADDED]));
}

#[tokio::test]
async fn reports_show_as_live_lines_decisions_placements_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), POLICY, tokens(), 0).await;
    let token = server.agent("branch-1").to_string();
    let (status, _) = server
        .send(
            Method::POST,
            "/api/v1/agent/register",
            Some(&token),
            register_body("branch-1"),
        )
        .await;
    assert_eq!(status, 200);
    let report = Report {
        site: "branch-1".into(),
        at_ms: 1,
        lines: vec![
            measurement("mpls", LineHealth::Down, 100.0),
            measurement("lte", LineHealth::Up, 0.2),
        ],
        events: vec![],
        demand: vec![
            demand("voice", Some("lte"), Some("hub"), 64_000),
            demand("voice", Some("lte"), Some("branch-2"), 36_000),
            demand("bulk", Some("lte"), Some("hub"), 9_900_000),
            // Not tied to a line: informs the planner only.
            demand("bulk", None, Some("hub"), 1_000_000),
        ],
    };
    let (status, _) = server
        .send(
            Method::POST,
            "/api/v1/agent/report",
            Some(&token),
            serde_json::to_string(&report).unwrap(),
        )
        .await;
    assert_eq!(status, 204);
    let spoofed = Report {
        site: "hub".into(),
        ..report.clone()
    };
    let (status, _) = server
        .send(
            Method::POST,
            "/api/v1/agent/report",
            Some(&token),
            serde_json::to_string(&spoofed).unwrap(),
        )
        .await;
    assert_eq!(status, 403, "branch-1 cannot report for hub");

    server
        .eventually("voice moved to lte", || async {
            let (_, decisions) = server
                .get(
                    "/api/v1/decisions?site=branch-1&class=voice",
                    Some(server.viewer()),
                )
                .await;
            decisions
                .as_array()
                .unwrap()
                .iter()
                .any(|d| d["to_line"] == "lte")
        })
        .await;
    let (_, decisions) = server
        .get(
            "/api/v1/decisions?site=branch-1&class=voice",
            Some(server.viewer()),
        )
        .await;
    let last = decisions.as_array().unwrap().last().unwrap();
    assert_eq!(last["from_line"], "mpls");
    assert_eq!(last["reason"], "voice off mpls: line reported down");

    let (_, classes) = server.get("/api/v1/classes", Some(server.viewer())).await;
    let voice = classes
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "voice")
        .unwrap();
    let placement = voice["placements"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["site"] == "branch-1")
        .unwrap();
    assert_eq!(placement["line"], "lte");
    assert_eq!(placement["rule_set_version"], 2);
    assert!(
        placement["reason"]
            .as_str()
            .unwrap()
            .contains("first healthy line")
    );

    let (_, lines) = server.get("/api/v1/lines", Some(server.viewer())).await;
    let mpls = lines
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["site"] == "branch-1" && l["line"] == "mpls")
        .unwrap();
    assert_eq!(mpls["health"], "down");
    assert_eq!(mpls["loss_percent"], 100.0);
    assert_eq!(mpls["up_bps"], 50_000_000);
    assert_eq!(mpls["class_bps"], json!({}), "nothing reported on mpls");
    let lte = lines
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["site"] == "branch-1" && l["line"] == "lte")
        .unwrap();
    assert_eq!(
        lte["class_bps"],
        json!({ "voice": 100_000, "bulk": 9_900_000 }),
        "summed over destinations, per class"
    );
    assert_eq!(lte["load_bps"], 10_000_000);
    assert_eq!(lte["load_percent"], 50.0, "10 of 20 Mbit/s");
    let (status, site) = server
        .get("/api/v1/sites/branch-1", Some(server.viewer()))
        .await;
    assert_eq!(status, 200);
    assert_eq!(site["rule_set"]["version"], 2);
    assert_eq!(
        server
            .get("/api/v1/sites/nowhere", Some(server.viewer()))
            .await
            .0,
        404
    );

    let metrics = server.metrics().await;
    for expected in [
        r#"wansteer_line_loss_ratio{line="mpls",site="branch-1"} 1"#,
        r#"wansteer_line_health{line="mpls",site="branch-1",state="down"} 1"#,
        r#"wansteer_class_placement{class="voice",destination="0.0.0.0/0",line="lte",site="branch-1"} 1"#,
        r#"wansteer_decisions_total{class="voice",site="branch-1"}"#,
        r#"wansteer_ruleset_published_version{site="branch-1"} 2"#,
    ] {
        assert!(metrics.contains(expected), "missing {expected}\n{metrics}");
    }
    assert!(
        !metrics.contains(r#"class="voice",destination="0.0.0.0/0",line="mpls",site="branch-1""#),
        "the old placement is gone"
    );
    server.stop().await;
    let audit = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
    assert!(
        audit.contains("voice off mpls: line reported down"),
        "{audit}"
    );
}

#[tokio::test]
async fn metrics_pass_promtool() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), POLICY, tokens(), 0).await;
    let token = server.agent("branch-1").to_string();
    server
        .send(
            Method::POST,
            "/api/v1/agent/register",
            Some(&token),
            register_body("branch-1"),
        )
        .await;
    let report = Report {
        site: "branch-1".into(),
        at_ms: 1,
        lines: vec![measurement("mpls", LineHealth::Degraded, 3.1)],
        events: vec![],
        demand: vec![],
    };
    server
        .send(
            Method::POST,
            "/api/v1/agent/report",
            Some(&token),
            serde_json::to_string(&report).unwrap(),
        )
        .await;
    server
        .get("/api/v1/sites", Some("wrong-token-wrong-token"))
        .await;
    let metrics = server.metrics().await;
    assert!(
        metrics.contains("wansteer_line_jitter_seconds"),
        "{metrics}"
    );
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool is installed (Debian package prometheus)");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(metrics.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    server.stop().await;
}

#[tokio::test]
async fn openapi_describes_every_route_and_only_those() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), POLICY, tokens(), 0).await;
    let (status, doc) = server.get("/api/v1/openapi.json", None).await;
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let described: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .map(move |method| (method.clone(), path.clone()))
        })
        .collect();
    let routes = all_routes();
    assert!(routes.contains(&("get", "/api/v1/lines/{site}/{line}/history")));
    let routed: BTreeSet<(String, String)> = routes
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(described, routed);
    for (method, path) in &routes {
        let operation = &doc["paths"][*path][*method];
        assert!(
            operation["summary"].is_string(),
            "{method} {path} has no summary"
        );
        assert!(
            operation["responses"].is_object(),
            "{method} {path} has no responses"
        );
        // The route really exists on the server: without a token it is 401 (or public), never 404/405.
        let concrete = path.replace("{site}", "branch-1").replace("{line}", "mpls");
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let (status, _) = server
            .send(method.clone(), &concrete, None, String::new())
            .await;
        assert!(
            status == 401 || status == 200,
            "{method} {concrete} answered {status}"
        );
    }
    // Every schema reference resolves.
    let text = doc.to_string();
    for reference in text.split("\"$ref\":\"#/components/").skip(1) {
        let target = reference.split('"').next().unwrap();
        let mut node = &doc["components"];
        for part in target.split('/') {
            node = &node[part];
        }
        assert!(!node.is_null(), "dangling $ref {target}");
    }
    server.stop().await;
}

#[tokio::test]
async fn metrics_need_a_viewer_token_unless_public_and_openapi_stays_public() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), POLICY, tokens(), 0).await;
    let scrape = |token: Option<String>| {
        let mut request = reqwest::Client::new().get(server.url("/metrics"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(scrape(None).await, 401, "no token");
    assert_eq!(scrape(Some("wrong-token-wrong-token".into())).await, 401);
    assert_eq!(
        scrape(Some(server.agent("hub").to_string())).await,
        403,
        "agent tokens open sessions, not metrics"
    );
    assert_eq!(scrape(Some(server.viewer().to_string())).await, 200);
    assert_eq!(scrape(Some(server.admin().to_string())).await, 200);
    let (status, doc) = server.get("/api/v1/openapi.json", None).await;
    assert_eq!(status, 200, "the API description needs no token");
    assert_eq!(
        doc["paths"]["/metrics"]["get"]["security"][0]["viewer"],
        json!([])
    );
    server.stop().await;

    let dir = tempfile::tempdir().unwrap();
    let public = start_with(
        dir.path(),
        POLICY,
        tokens(),
        0,
        wansteer_controller::auth::TokenSource::Given,
        true,
    )
    .await;
    let status = reqwest::get(public.url("/metrics")).await.unwrap().status();
    assert_eq!(status, 200, "--metrics-public serves without a token");
    public.stop().await;
}

#[tokio::test]
async fn an_admin_rolls_the_policy_back_to_an_earlier_version() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), POLICY, tokens(), 0).await;
    let (status, _) = server.put_policy(policy_with_video()).await;
    assert_eq!(status, 200);

    // The listing leaves the texts out; one version gives its text.
    let (_, versions) = server
        .get("/api/v1/policy/versions", Some(server.viewer()))
        .await;
    let listed: Vec<(u64, bool)> = versions
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["version"].as_u64().unwrap(), v.get("text").is_some()))
        .collect();
    assert_eq!(listed, [(1, false), (2, false)]);
    let (status, first) = server
        .get("/api/v1/policy/versions/1", Some(server.viewer()))
        .await;
    assert_eq!(status, 200);
    assert_eq!(first["text"], POLICY);
    let (status, _) = server
        .get("/api/v1/policy/versions/9", Some(server.viewer()))
        .await;
    assert_eq!(status, 404);

    // Viewers may not roll back; an unknown version changes nothing.
    let (status, _) = server.rollback(1, server.viewer()).await;
    assert_eq!(status, 403);
    let (status, _) = server.rollback(9, server.admin()).await;
    assert_eq!(status, 404);
    let (_, policy) = server.get("/api/v1/policy", Some(server.viewer())).await;
    assert_eq!(policy["version"], 2);

    // Back to version 1's text, recorded as version 3 by the admin; video is gone again.
    let (status, applied) = server.rollback(1, server.admin()).await;
    assert_eq!(status, 200, "{applied}");
    assert_eq!(
        (
            applied["version"].clone(),
            applied["changed"].clone(),
            applied["rolled_back_to"].clone()
        ),
        (json!(3), json!(true), json!(1))
    );
    assert!(
        applied["changes"][0]
            .as_str()
            .is_some_and(|c| c.starts_with("- class video")),
        "{applied}"
    );
    let (_, policy) = server.get("/api/v1/policy", Some(server.viewer())).await;
    assert_eq!(
        (
            policy["version"].clone(),
            policy["by"].clone(),
            policy["text"].clone()
        ),
        (json!(3), json!("admin"), json!(POLICY))
    );
    let (_, classes) = server.get("/api/v1/classes", Some(server.viewer())).await;
    assert!(
        !classes
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "video")
    );
    // Rolling back to the text in force is no change.
    let (status, again) = server.rollback(1, server.admin()).await;
    assert_eq!(status, 200);
    assert_eq!(
        (again["version"].clone(), again["changed"].clone()),
        (json!(3), json!(false))
    );
}
