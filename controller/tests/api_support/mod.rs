//! Shared by the API and push tests: a policy, a controller on 127.0.0.1:0 with a state
//! directory of its own, HTTP helpers, and a test-only planner.
//!
//! `FirstHealthyLinePlanner` is a test fixture, not product code: it puts every class of a
//! site on the site's first line that its agent has not reported down, and records a
//! decision when that changes. It exists so these tests exercise the service (versions,
//! pushes, decisions, drift) without the real path solver.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use wansteer_controller::audit::Retention;
use wansteer_controller::auth::TokensFile;
use wansteer_controller::planning::{DecisionRecord, Plan, Planning};
use wansteer_controller::service::{Controller, ControllerConfig};
use wansteer_policies::Policy;
use wansteer_wire::ruleset::{ClassRoute, ClassSpec, LineSpec, RuleSet};
use wansteer_wire::session::{LineHealth, LineMeasurement, Report};

pub const POLICY: &str = r#"name: test-bank
sites:
  - name: branch-1
    kind: branch
    lan: [10.1.0.0/24]
    lines:
      - { name: mpls, transport: mpls, interface: wan0, gateway: 192.0.2.1, up: 50mbit, down: 50mbit }
      - { name: lte, transport: lte, interface: wan1, gateway: 198.51.100.1, up: 20mbit, down: 20mbit, cost: 5 }
  - name: hub
    kind: hub
    lan: [10.0.0.0/16]
    lines:
      - { name: mpls, transport: mpls, interface: wan0, up: 1gbit, down: 1gbit }
classes:
  - name: voice
    priority: 1
    dscp: EF
    match: [{ protocols: [udp], ports: ["16384-32767"] }]
    sla: { latency: 150ms, loss: 1%, jitter: 30ms }
  - name: default
    priority: 7
"#;

/// The policy with one more class (changes every site's rule set).
pub fn policy_with_video() -> String {
    POLICY.replace(
        "  - name: default\n",
        "  - name: video\n    priority: 2\n    dscp: AF41\n  - name: default\n",
    )
}

/// Test fixture planner (see the module comment).
#[derive(Debug, Default)]
pub struct FirstHealthyLinePlanner {
    policy: Option<Policy>,
    down: BTreeMap<(String, String), bool>,
    placed: BTreeMap<(String, String), String>,
}

impl Planning for FirstHealthyLinePlanner {
    fn on_policy(&mut self, policy: &Policy) {
        self.policy = Some(policy.clone());
    }

    fn on_report(&mut self, report: &Report) {
        for line in &report.lines {
            self.down.insert(
                (report.site.clone(), line.line.clone()),
                line.health == LineHealth::Down,
            );
        }
    }

    fn plan(&mut self, now_ms: u64) -> Plan {
        let Some(policy) = &self.policy else {
            return Plan::default();
        };
        let mut plan = Plan::default();
        for site in &policy.sites {
            let line = site
                .lines
                .iter()
                .find(|l| {
                    !self
                        .down
                        .get(&(site.name.clone(), l.name.clone()))
                        .copied()
                        .unwrap_or(false)
                })
                .unwrap_or(&site.lines[0]);
            let mut routes = Vec::new();
            for class in &policy.classes {
                let key = (site.name.clone(), class.name.clone());
                let previous = self.placed.insert(key, line.name.clone());
                if previous.as_deref() != Some(line.name.as_str()) {
                    plan.decisions.push(DecisionRecord {
                        at_ms: now_ms,
                        site: site.name.clone(),
                        class: class.name.clone(),
                        destination: "*".into(),
                        from_line: previous.clone(),
                        to_line: line.name.clone(),
                        reason: match previous {
                            None => format!(
                                "{} placed on {}: first healthy line",
                                class.name, line.name
                            ),
                            Some(from) => format!("{} off {from}: line reported down", class.name),
                        },
                        measurements: Value::Null,
                    });
                }
                routes.push(ClassRoute {
                    class: class.name.clone(),
                    destination: "0.0.0.0/0".parse().unwrap(),
                    primary: line.name.clone(),
                    backups: vec![],
                    reason: format!("first healthy line of {}", site.name),
                });
            }
            plan.rule_sets.insert(
                site.name.clone(),
                RuleSet {
                    site: site.name.clone(),
                    version: 0,
                    hash: String::new(),
                    classes: policy
                        .classes
                        .iter()
                        .enumerate()
                        .map(|(i, c)| ClassSpec {
                            name: c.name.clone(),
                            mark: i as u32 + 1,
                            priority: c.priority,
                            dscp: c.dscp.0,
                            matches: vec![],
                            apps: vec![],
                            domains: vec![],
                        })
                        .collect(),
                    default_class: "default".into(),
                    lines: site
                        .lines
                        .iter()
                        .map(|l| LineSpec {
                            name: l.name.clone(),
                            interface: l.interface.clone(),
                            gateway: l.gateway,
                            gateway6: l.gateway6,
                            rate_bps: l.up.bps(),
                            shares: vec![],
                        })
                        .collect(),
                    routes,
                },
            );
        }
        plan
    }
}

/// A controller serving on 127.0.0.1 (port 0 unless given).
pub struct Running {
    pub controller: Controller,
    pub base: String,
    pub addr: SocketAddr,
    pub tokens: TokensFile,
    pub state_dir: PathBuf,
    server: tokio::task::JoinHandle<()>,
}

pub fn tokens() -> TokensFile {
    let mut tokens = TokensFile::generate(["branch-1", "hub"]);
    tokens.agents.push(wansteer_controller::auth::AgentToken {
        site: "branch-9".into(),
        token: wansteer_controller::auth::fresh_token(),
        revoked: true,
    });
    tokens
}

pub async fn start(state_dir: &Path, policy: &str, tokens: TokensFile, port: u16) -> Running {
    start_with_source(
        state_dir,
        policy,
        tokens,
        port,
        wansteer_controller::auth::TokenSource::Given,
    )
    .await
}

/// [`start`] with the tokens read from (and reloaded from) `source`.
pub async fn start_with_source(
    state_dir: &Path,
    policy: &str,
    tokens: TokensFile,
    port: u16,
    token_source: wansteer_controller::auth::TokenSource,
) -> Running {
    start_with(state_dir, policy, tokens, port, token_source, false).await
}

/// [`start`] with every option.
pub async fn start_with(
    state_dir: &Path,
    policy: &str,
    tokens: TokensFile,
    port: u16,
    token_source: wansteer_controller::auth::TokenSource,
    metrics_public: bool,
) -> Running {
    let config = ControllerConfig {
        metrics_public,
        check: Default::default(),
        state_dir: state_dir.to_path_buf(),
        policy_file: "policy.yaml".into(),
        policy_text: policy.to_string(),
        tokens: tokens.clone(),
        token_source,
        retention: Retention::default(),
        plan_interval: Duration::from_millis(20),
        report_interval: Duration::from_secs(1),
    };
    start_config(config, port).await
}

/// Starts the controller and its API server from a complete configuration.
pub async fn start_config(config: ControllerConfig, port: u16) -> Running {
    let (tokens, state_dir) = (config.tokens.clone(), config.state_dir.clone());
    let controller = Controller::start(config, Box::new(FirstHealthyLinePlanner::default()))
        .await
        .expect("controller starts");
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().unwrap();
    let closing = controller.clone();
    let serving = controller.clone();
    let server = tokio::spawn(async move {
        let mut flag = closing.closing();
        wansteer_controller::api::serve(listener, serving, async move {
            let _ = flag.wait_for(|closing| *closing).await;
        })
        .await
        .unwrap();
    });
    Running {
        controller,
        base: format!("http://{addr}"),
        addr,
        tokens,
        state_dir,
        server,
    }
}

impl Running {
    pub fn admin(&self) -> &str {
        &self
            .tokens
            .api
            .iter()
            .find(|t| t.name == "admin")
            .unwrap()
            .token
    }

    pub fn viewer(&self) -> &str {
        &self
            .tokens
            .api
            .iter()
            .find(|t| t.name == "viewer")
            .unwrap()
            .token
    }

    pub fn agent(&self, site: &str) -> &str {
        &self
            .tokens
            .agents
            .iter()
            .find(|t| t.site == site)
            .unwrap()
            .token
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `/metrics` as a scraper with the viewer token reads it.
    pub async fn metrics(&self) -> String {
        let response = reqwest::Client::new()
            .get(self.url("/metrics"))
            .bearer_auth(self.viewer())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.text().await.unwrap()
    }

    /// GET as `token`, returning status and JSON body (Null if none).
    pub async fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let mut request = reqwest::Client::new().get(self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: String,
    ) -> (u16, Value) {
        let content_type = if body.starts_with('{') {
            "application/json"
        } else {
            "application/yaml"
        };
        let mut request = reqwest::Client::new()
            .request(method, self.url(path))
            .header("content-type", content_type)
            .body(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// PUTs a policy text as the admin.
    pub async fn put_policy(&self, text: String) -> (u16, Value) {
        self.send(
            reqwest::Method::PUT,
            "/api/v1/policy",
            Some(self.admin()),
            text,
        )
        .await
    }

    /// Asks for a rollback to `version` with `token`.
    pub async fn rollback(&self, version: u64, token: &str) -> (u16, Value) {
        let path = format!("/api/v1/policy/rollback?version={version}");
        self.send(reqwest::Method::POST, &path, Some(token), String::new())
            .await
    }

    /// Stops serving and releases the state directory.
    pub async fn stop(self) {
        self.controller.close().unwrap();
        self.server.await.unwrap();
    }

    /// The agents view row of `site`.
    pub async fn agent_row(&self, site: &str) -> Value {
        let (status, agents) = self.get("/api/v1/agents", Some(self.viewer())).await;
        assert_eq!(status, 200);
        agents
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["site"] == site)
            .cloned()
            .unwrap()
    }

    /// Polls `check` over the API until it holds (bounded; the server works in real time).
    pub async fn eventually<F, Fut>(&self, what: &str, mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        for _ in 0..500 {
            if check().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{what} did not happen within 5 s");
    }
}

pub fn measurement(line: &str, health: LineHealth, loss_percent: f64) -> LineMeasurement {
    LineMeasurement {
        line: line.into(),
        rtt_ms: 21.5,
        loss_percent,
        loss_bounds_percent: None,
        jitter_ms: 1.25,
        samples: 600,
        health,
    }
}
