//! Agent tokens follow the policy without a restart: a site added through the API gets a
//! token in the generated tokens file at once and its agent can connect; a site removed
//! from the policy, or a token revoked in the file and reloaded, is locked out.

mod api_support;

use api_support::*;
use reqwest::Method;
use serde_json::json;
use std::os::unix::fs::PermissionsExt;
use wansteer_controller::auth::{TokenSource, TokensFile};
use wansteer_wire::session::Register;

const BRANCH_2: &str = r#"  - name: branch-2
    kind: branch
    lan: [10.2.0.0/24]
    lines:
      - { name: mpls, transport: mpls, interface: wan0, gateway: 192.0.2.9, up: 50mbit, down: 50mbit }
"#;

fn with_branch_2() -> String {
    POLICY.replace("classes:\n", &format!("{BRANCH_2}classes:\n"))
}

fn without_branch_1() -> String {
    let start = POLICY.find("  - name: branch-1\n").unwrap();
    let end = POLICY.find("  - name: hub\n").unwrap();
    let mut text = with_branch_2();
    text.replace_range(start..end, "");
    text
}

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

async fn register(server: &Running, site: &str, token: &str) -> u16 {
    server
        .send(
            Method::POST,
            "/api/v1/agent/register",
            Some(token),
            register_body(site),
        )
        .await
        .0
}

fn token_of(file: &TokensFile, site: &str) -> Option<String> {
    file.agents
        .iter()
        .find(|a| a.site == site)
        .map(|a| a.token.clone())
}

#[tokio::test]
async fn a_site_added_by_the_api_gets_a_token_and_removed_or_revoked_ones_stop_working() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens.yaml");
    let tokens = TokensFile::generate(["branch-1", "hub"]);
    tokens.save(&path).unwrap();
    let server = start_with_source(
        dir.path(),
        POLICY,
        tokens.clone(),
        0,
        TokenSource::Generated(path.clone()),
    )
    .await;
    let branch_1 = token_of(&tokens, "branch-1").unwrap();
    assert_eq!(register(&server, "branch-1", &branch_1).await, 200);

    // The admin adds branch-2: its token is generated into the file, and works at once.
    let (status, applied) = server
        .send(
            Method::PUT,
            "/api/v1/policy",
            Some(server.admin()),
            with_branch_2(),
        )
        .await;
    assert_eq!(status, 200, "{applied}");
    assert_eq!(applied["tokens_added"], json!(["branch-2"]));
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the tokens file stays private");
    let file = TokensFile::load(&path).unwrap();
    let branch_2 = token_of(&file, "branch-2").expect("branch-2 has a token in the file");
    assert_eq!(
        token_of(&file, "branch-1").as_deref(),
        Some(branch_1.as_str()),
        "existing tokens are kept"
    );
    assert_eq!(register(&server, "branch-2", &branch_2).await, 200);

    // branch-1 leaves the policy: its token no longer opens a session.
    let (status, applied) = server
        .send(
            Method::PUT,
            "/api/v1/policy",
            Some(server.admin()),
            without_branch_1(),
        )
        .await;
    assert_eq!(status, 200, "{applied}");
    let (status, body) = server
        .send(
            Method::POST,
            "/api/v1/agent/register",
            Some(&branch_1),
            register_body("branch-1"),
        )
        .await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("not in the policy"),
        "{body}"
    );

    // The operator revokes branch-2's token in the file and reloads (SIGHUP does this).
    let mut file = TokensFile::load(&path).unwrap();
    file.agents
        .iter_mut()
        .find(|a| a.site == "branch-2")
        .unwrap()
        .revoked = true;
    file.save(&path).unwrap();
    assert_eq!(
        register(&server, "branch-2", &branch_2).await,
        200,
        "in force until reloaded"
    );
    server.controller.reload_tokens().unwrap();
    assert_eq!(register(&server, "branch-2", &branch_2).await, 401);
    // API tokens are untouched by all this.
    let (status, _) = server.get("/api/v1/sites", Some(server.viewer())).await;
    assert_eq!(status, 200);
    server.stop().await;
}

#[tokio::test]
async fn an_operator_tokens_file_is_reread_not_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("operator-tokens.yaml");
    let tokens = TokensFile::generate(["branch-1", "hub"]);
    tokens.save(&path).unwrap();
    let server = start_with_source(
        dir.path(),
        POLICY,
        tokens,
        0,
        TokenSource::File(path.clone()),
    )
    .await;
    let before = std::fs::read_to_string(&path).unwrap();
    let (status, applied) = server
        .send(
            Method::PUT,
            "/api/v1/policy",
            Some(server.admin()),
            with_branch_2(),
        )
        .await;
    assert_eq!(status, 200, "{applied}");
    assert_eq!(applied["tokens_added"], json!([]));
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        before,
        "the operator's file is never written"
    );
    // The operator adds branch-2's token to the file and reloads.
    let mut file = TokensFile::load(&path).unwrap();
    file.add_missing_sites(["branch-2"]);
    file.save(&path).unwrap();
    server.controller.reload_tokens().unwrap();
    let token = token_of(&file, "branch-2").unwrap();
    assert_eq!(register(&server, "branch-2", &token).await, 200);
    server.stop().await;
}
