//! The HTTP surface: the REST API under `/api/v1/`, the agents' session endpoints under
//! `/api/v1/agent/`, the OpenAPI document and `/metrics`.
//!
//! Every route but the OpenAPI document needs a bearer token; `/metrics` too (a viewer token,
//! as Prometheus sends with `authorization: { credentials_file: … }`) unless the controller
//! runs with `--metrics-public`. The OpenAPI document stays public: it describes the API,
//! it holds no data. API tokens
//! carry a role: `viewer` reads (and may validate or diff a policy, which changes nothing),
//! `admin` may also apply a policy. Agent tokens only open their own site's session.
//! No token or an unknown one is 401; a known token on a route its role may not use is 403.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use wansteer_policies::Diagnostic;
use wansteer_wire::session::{Ack, Register, Report, RuleSetId};

use crate::audit::AuditEntry;
use crate::auth::{Principal, Refusal, Role};
use crate::service::{ApplyError, Controller, SessionError, now_ms};

/// The REST API's routes as (method, path in OpenAPI form); see [`all_routes`].
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/api/v1/openapi.json"),
    ("get", "/metrics"),
    ("get", "/api/v1/sites"),
    ("get", "/api/v1/sites/{site}"),
    ("get", "/api/v1/lines"),
    ("get", "/api/v1/classes"),
    ("get", "/api/v1/decisions"),
    ("get", "/api/v1/agents"),
    ("get", "/api/v1/policy"),
    ("put", "/api/v1/policy"),
    ("get", "/api/v1/policy/versions"),
    ("get", "/api/v1/policy/versions/{version}"),
    ("post", "/api/v1/policy/rollback"),
    ("post", "/api/v1/policy/validate"),
    ("post", "/api/v1/policy/diff"),
    ("post", "/api/v1/agent/register"),
    ("post", "/api/v1/agent/report"),
    ("post", "/api/v1/agent/ack"),
    ("get", "/api/v1/agent/rules"),
    ("get", "/api/v1/audit"),
];

/// Every route the server answers as API, the dashboard's included (its page and assets are
/// not API), as (method, path in OpenAPI form).
pub fn all_routes() -> Vec<(&'static str, &'static str)> {
    ROUTES
        .iter()
        .chain(crate::dashboard::openapi::ROUTES)
        .copied()
        .collect()
}

/// The router, with the controller as state.
pub fn router(controller: Controller) -> Router {
    Router::new()
        .route("/api/v1/openapi.json", get(openapi))
        .route("/metrics", get(metrics))
        .route("/api/v1/sites", get(sites))
        .route("/api/v1/sites/{site}", get(site))
        .route("/api/v1/lines", get(lines))
        .route("/api/v1/classes", get(classes))
        .route("/api/v1/decisions", get(decisions))
        .route("/api/v1/agents", get(agents))
        .route("/api/v1/policy", get(policy).put(apply_policy))
        .route("/api/v1/policy/versions", get(policy_versions))
        .route("/api/v1/policy/versions/{version}", get(policy_version))
        .route("/api/v1/policy/rollback", post(rollback_policy))
        .route("/api/v1/policy/validate", post(validate_policy))
        .route("/api/v1/policy/diff", post(diff_policy))
        .route("/api/v1/agent/register", post(agent_register))
        .route("/api/v1/agent/report", post(agent_report))
        .route("/api/v1/agent/ack", post(agent_ack))
        .route("/api/v1/agent/rules", get(agent_rules))
        .route("/api/v1/audit", get(audit))
        .merge(crate::dashboard::router(&controller))
        // A policy for thousands of sites is several MiB of YAML.
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(controller)
}

/// Largest request body accepted (policies are the large ones).
pub const MAX_BODY_BYTES: usize = 64 << 20;

// ----- errors -----

/// An error answer: status plus a JSON body `{error, diagnostics?}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: Value,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            body: json!({ "error": message.into() }),
        }
    }

    fn invalid_policy(diagnostics: &[Diagnostic]) -> Self {
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            body: json!({
                "error": "the policy is not valid; nothing was changed",
                "diagnostics": diagnostics_json(diagnostics),
            }),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<SessionError> for ApiError {
    fn from(error: SessionError) -> Self {
        let status = match error {
            SessionError::WrongSite { .. } => StatusCode::FORBIDDEN,
            SessionError::Protocol(..) => StatusCode::BAD_REQUEST,
            SessionError::UnknownSite(_) => StatusCode::NOT_FOUND,
        };
        ApiError::new(status, error.to_string())
    }
}

impl From<ApplyError> for ApiError {
    fn from(error: ApplyError) -> Self {
        match error {
            ApplyError::Invalid(diagnostics) => ApiError::invalid_policy(&diagnostics),
            ApplyError::Record(message) => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("could not record the policy, nothing was changed: {message}"),
            ),
        }
    }
}

fn diagnostics_json(diagnostics: &[Diagnostic]) -> Value {
    diagnostics
        .iter()
        .map(|d| {
            let mut value = serde_json::to_value(d).expect("diagnostics serialise");
            value["location"] = json!(format!("{}:{}:{}", d.file, d.line, d.column));
            value
        })
        .collect()
}

// ----- authentication -----

/// Whoever presented a valid bearer token.
#[derive(Debug)]
pub struct Caller(pub Principal);

impl FromRequestParts<Controller> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        controller: &Controller,
    ) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok());
        match controller.auth().identify_header(header) {
            Ok(principal) => Ok(Caller(principal)),
            Err(refusal) => {
                let peer = parts
                    .extensions
                    .get::<ConnectInfo<SocketAddr>>()
                    .map_or_else(|| "unknown".to_string(), |info| info.0.to_string());
                let reason = refusal.as_str();
                controller.metrics().on_auth_refused(reason);
                tracing::warn!(%peer, path = %parts.uri.path(), reason, "token refused");
                if refusal != Refusal::Missing {
                    controller.audit().record(&AuditEntry::AuthRefused {
                        at_ms: now_ms(),
                        peer,
                        reason: format!("{reason} token on {}", parts.uri.path()),
                    });
                }
                let message = match refusal {
                    Refusal::SiteNotInPolicy => {
                        "the token's site is not in the policy in force".to_string()
                    }
                    _ => format!("{reason} bearer token"),
                };
                Err(ApiError::new(StatusCode::UNAUTHORIZED, message))
            }
        }
    }
}

impl Caller {
    /// An API user with at least `role`.
    fn user(&self, role: Role) -> Result<&str, ApiError> {
        match &self.0 {
            Principal::User { name, role: has } if *has >= role => Ok(name),
            Principal::User { .. } => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "this needs the admin role",
            )),
            Principal::Agent { .. } => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "agent tokens only open agent sessions",
            )),
        }
    }

    fn viewer(&self) -> Result<&str, ApiError> {
        self.user(Role::Viewer)
    }

    /// The site of an agent token.
    fn agent_site(&self) -> Result<&str, ApiError> {
        match &self.0 {
            Principal::Agent { site } => Ok(site),
            Principal::User { .. } => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "agent endpoints need an agent token",
            )),
        }
    }
}

// ----- public -----

async fn openapi() -> Json<Value> {
    Json(crate::openapi::document())
}

async fn metrics(
    State(controller): State<Controller>,
    request: axum::extract::Request,
) -> Result<Response, ApiError> {
    if !controller.metrics_public() {
        let (mut parts, _) = request.into_parts();
        Caller::from_request_parts(&mut parts, &controller)
            .await?
            .viewer()?;
    }
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        // Off the async workers: at 10,000 sites the text takes tens of milliseconds.
        tokio::task::spawn_blocking(move || controller.metrics_text())
            .await
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?,
    )
        .into_response())
}

// ----- reads -----

#[derive(Debug, Serialize)]
struct SiteView {
    name: String,
    kind: wansteer_policies::model::SiteKind,
    lan: Vec<ipnet::IpNet>,
    lines: Vec<String>,
    drift: crate::drift::Drift,
    connected: bool,
    published: Option<RuleSetId>,
    applied: Option<RuleSetId>,
    agent_version: Option<String>,
}

fn site_views(controller: &Controller) -> Vec<SiteView> {
    let (_, policy) = controller.policy();
    let agents: BTreeMap<String, _> = controller
        .agents()
        .into_iter()
        .map(|a| (a.site.clone(), a))
        .collect();
    policy
        .sites
        .iter()
        .map(|site| {
            let agent = agents.get(&site.name);
            SiteView {
                name: site.name.clone(),
                kind: site.kind,
                lan: site.lan.clone(),
                lines: site.lines.iter().map(|l| l.name.clone()).collect(),
                drift: agent.map_or(crate::drift::Drift::NeverConnected, |a| a.drift),
                connected: agent.is_some_and(|a| a.connected),
                published: agent.and_then(|a| a.published.clone()),
                applied: agent.and_then(|a| a.agent.as_ref().and_then(|r| r.applied.clone())),
                agent_version: agent
                    .and_then(|a| a.agent.as_ref().map(|r| r.agent_version.clone())),
            }
        })
        .collect()
}

async fn sites(
    caller: Caller,
    State(controller): State<Controller>,
) -> Result<Json<Vec<SiteView>>, ApiError> {
    caller.viewer()?;
    Ok(Json(site_views(&controller)))
}

async fn site(
    caller: Caller,
    State(controller): State<Controller>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.viewer()?;
    let view = site_views(&controller)
        .into_iter()
        .find(|s| s.name == name)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no site {name}")))?;
    let rule_set = controller
        .published()
        .get(&name)
        .map(|r| r.as_ref().clone());
    let lines: Vec<LineView> = line_views(&controller)
        .into_iter()
        .filter(|l| l.site == name)
        .collect();
    Ok(Json(
        json!({ "site": view, "lines": lines, "rule_set": rule_set }),
    ))
}

#[derive(Debug, Serialize)]
struct LineView {
    site: String,
    line: String,
    transport: wansteer_policies::model::Transport,
    interface: String,
    up_bps: u64,
    down_bps: u64,
    cost: f64,
    preference: u32,
    health: wansteer_wire::session::LineHealth,
    rtt_ms: Option<f64>,
    loss_percent: Option<f64>,
    jitter_ms: Option<f64>,
    samples: Option<u64>,
    measured_at_ms: Option<u64>,
    /// Latest throughput per class on the line, bits per second.
    class_bps: BTreeMap<String, u64>,
    /// Their sum.
    load_bps: u64,
    /// `load_bps` against the line's upstream capacity, per cent.
    load_percent: f64,
}

fn line_views(controller: &Controller) -> Vec<LineView> {
    let (_, policy) = controller.policy();
    let live = controller.lines();
    let mut views = Vec::new();
    for site in &policy.sites {
        for line in &site.lines {
            let now = live.get(&(site.name.clone(), line.name.clone()));
            let m = now.map(|n| &n.measurement);
            let load_bps = now.map_or(0, |n| {
                n.class_bps.values().fold(0u64, |a, b| a.saturating_add(*b))
            });
            views.push(LineView {
                site: site.name.clone(),
                line: line.name.clone(),
                transport: line.transport,
                interface: line.interface.clone(),
                up_bps: line.up.bps(),
                down_bps: line.down.bps(),
                cost: line.cost,
                preference: line.preference,
                health: m.map_or(wansteer_wire::session::LineHealth::Unknown, |m| m.health),
                rtt_ms: m.map(|m| m.rtt_ms),
                loss_percent: m.map(|m| m.loss_percent),
                jitter_ms: m.map(|m| m.jitter_ms),
                samples: m.map(|m| m.samples),
                measured_at_ms: now.map(|n| n.at_ms),
                class_bps: now.map(|n| n.class_bps.clone()).unwrap_or_default(),
                load_bps,
                load_percent: if line.up.bps() == 0 {
                    0.0
                } else {
                    100.0 * load_bps as f64 / line.up.bps() as f64
                },
            });
        }
    }
    views
}

async fn lines(
    caller: Caller,
    State(controller): State<Controller>,
) -> Result<Json<Vec<LineView>>, ApiError> {
    caller.viewer()?;
    Ok(Json(line_views(&controller)))
}

async fn classes(
    caller: Caller,
    State(controller): State<Controller>,
) -> Result<Json<Value>, ApiError> {
    caller.viewer()?;
    let (_, policy) = controller.policy();
    let published = controller.published();
    let classes: Vec<Value> = policy
        .classes
        .iter()
        .map(|class| {
            let placements: Vec<Value> = published
                .values()
                .flat_map(|rule_set| {
                    rule_set
                        .routes
                        .iter()
                        .filter(|route| route.class == class.name)
                        .map(|route| {
                            json!({
                                "site": rule_set.site,
                                "destination": route.destination,
                                "line": route.primary,
                                "backups": route.backups,
                                "reason": route.reason,
                                "rule_set_version": rule_set.version,
                            })
                        })
                })
                .collect();
            json!({
                "name": class.name,
                "priority": class.priority,
                "dscp": class.dscp,
                "sla": class.sla,
                "steering": class.steering,
                "placements": placements,
            })
        })
        .collect();
    Ok(Json(Value::Array(classes)))
}

#[derive(Debug, Deserialize)]
struct DecisionQuery {
    site: Option<String>,
    class: Option<String>,
    limit: Option<usize>,
}

async fn decisions(
    caller: Caller,
    State(controller): State<Controller>,
    Query(query): Query<DecisionQuery>,
) -> Result<Json<Value>, ApiError> {
    caller.viewer()?;
    let limit = query.limit.unwrap_or(100).min(10_000);
    Ok(Json(json!(controller.decisions(
        query.site.as_deref(),
        query.class.as_deref(),
        limit
    ))))
}

async fn agents(
    caller: Caller,
    State(controller): State<Controller>,
) -> Result<Json<Value>, ApiError> {
    caller.viewer()?;
    Ok(Json(json!(controller.agents())))
}

// ----- policy -----

async fn policy(
    caller: Caller,
    State(controller): State<Controller>,
) -> Result<Json<Value>, ApiError> {
    caller.viewer()?;
    let (record, _) = controller.policy();
    Ok(Json(json!(record)))
}

async fn policy_versions(
    caller: Caller,
    State(controller): State<Controller>,
) -> Result<Json<Value>, ApiError> {
    caller.viewer()?;
    let versions: Vec<Value> = controller
        .policy_history()
        .into_iter()
        .map(|v| {
            json!({
                "version": v.version, "file": v.file, "by": v.by,
                "at_ms": v.at_ms, "changes": v.changes,
            })
        })
        .collect();
    Ok(Json(Value::Array(versions)))
}

async fn policy_version(
    caller: Caller,
    State(controller): State<Controller>,
    Path(version): Path<u64>,
) -> Result<Json<Value>, ApiError> {
    caller.viewer()?;
    let record = controller.policy_version(version).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no policy version {version}"),
        )
    })?;
    Ok(Json(json!(record)))
}

#[derive(Debug, Deserialize)]
struct RollbackQuery {
    /// The recorded version whose text becomes the policy again.
    version: u64,
}

/// Applies an earlier version's text again, as a new version: checked against today's
/// rules (a text that no longer passes is refused, and nothing changes), recorded and
/// audited like any change, by the caller.
async fn rollback_policy(
    caller: Caller,
    State(controller): State<Controller>,
    Query(query): Query<RollbackQuery>,
) -> Result<Json<Value>, ApiError> {
    let who = caller.user(Role::Admin)?.to_string();
    let earlier = controller.policy_version(query.version).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no policy version {}", query.version),
        )
    })?;
    let applied = controller
        .apply_policy(&earlier.file, &earlier.text, &who)
        .await?;
    let mut body = json!(applied);
    body["warnings"] = diagnostics_json(&applied.warnings);
    body["rolled_back_to"] = json!(query.version);
    Ok(Json(body))
}

#[derive(Debug, Deserialize)]
struct PolicyQuery {
    /// Name the text is checked under in diagnostics.
    file: Option<String>,
}

impl PolicyQuery {
    fn file(&self) -> &str {
        self.file.as_deref().unwrap_or("policy.yaml")
    }
}

async fn validate_policy(
    caller: Caller,
    State(controller): State<Controller>,
    Query(query): Query<PolicyQuery>,
    text: String,
) -> Result<Json<Value>, ApiError> {
    caller.viewer()?;
    let preview = controller.preview(query.file(), &text)?;
    Ok(Json(json!({
        "valid": true,
        "warnings": diagnostics_json(&preview.warnings),
    })))
}

async fn diff_policy(
    caller: Caller,
    State(controller): State<Controller>,
    Query(query): Query<PolicyQuery>,
    text: String,
) -> Result<Json<Value>, ApiError> {
    caller.viewer()?;
    let preview = controller.preview(query.file(), &text)?;
    Ok(Json(json!({
        "current_version": preview.version,
        "changes": preview.changes,
        "details": preview.details,
        "warnings": diagnostics_json(&preview.warnings),
    })))
}

async fn apply_policy(
    caller: Caller,
    State(controller): State<Controller>,
    Query(query): Query<PolicyQuery>,
    text: String,
) -> Result<Json<Value>, ApiError> {
    let who = caller.user(Role::Admin)?.to_string();
    let applied = controller.apply_policy(query.file(), &text, &who).await?;
    let mut body = json!(applied);
    body["warnings"] = diagnostics_json(&applied.warnings);
    Ok(Json(body))
}

// ----- audit -----

#[derive(Debug, Deserialize)]
struct AuditQuery {
    /// Only entries at or after this time (ms since the epoch).
    since: Option<u64>,
    /// Only entries of this kind.
    kind: Option<String>,
    limit: Option<usize>,
}

const AUDIT_KINDS: [&str; 3] = ["policy_change", "decision", "auth_refused"];

/// The live audit file, for admins only: it names who changed what and who was refused.
async fn audit(
    caller: Caller,
    State(controller): State<Controller>,
    Query(query): Query<AuditQuery>,
) -> Result<Json<Value>, ApiError> {
    caller.user(Role::Admin)?;
    if let Some(kind) = &query.kind
        && !AUDIT_KINDS.contains(&kind.as_str())
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("unknown kind {kind:?}; one of {}", AUDIT_KINDS.join(", ")),
        ));
    }
    let filter = crate::audit::AuditFilter {
        since_ms: query.since,
        kind: query.kind,
        limit: query.limit.unwrap_or(1000).min(10_000),
    };
    let controller = controller.clone();
    let entries = tokio::task::spawn_blocking(move || controller.audit().read(&filter))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("could not read the audit log: {e}"),
            )
        })?;
    Ok(Json(Value::Array(entries)))
}

// ----- agent sessions -----

async fn agent_register(
    caller: Caller,
    State(controller): State<Controller>,
    Json(register): Json<Register>,
) -> Result<Json<Value>, ApiError> {
    let site = caller.agent_site()?;
    Ok(Json(json!(controller.register(site, register)?)))
}

async fn agent_report(
    caller: Caller,
    State(controller): State<Controller>,
    Json(report): Json<Report>,
) -> Result<StatusCode, ApiError> {
    let site = caller.agent_site()?.to_string();
    controller.report(&site, report).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn agent_ack(
    caller: Caller,
    State(controller): State<Controller>,
    Json(ack): Json<Ack>,
) -> Result<Json<Value>, ApiError> {
    let site = caller.agent_site()?;
    let drift = controller.ack(site, ack)?;
    Ok(Json(json!({ "drift": drift })))
}

#[derive(Debug, Deserialize)]
struct RulesQuery {
    /// Hash of the rule set the agent runs, if any.
    hash: Option<String>,
}

async fn agent_rules(
    caller: Caller,
    State(controller): State<Controller>,
    Query(query): Query<RulesQuery>,
) -> Result<Response, ApiError> {
    let site = caller.agent_site()?;
    Ok(crate::push::stream(&controller, site, query.hash).into_response())
}

/// Serves the API on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    controller: Controller,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router(controller).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
