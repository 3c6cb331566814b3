//! The operators' web dashboard: embedded assets at `/dashboard/`, plus the few endpoints
//! the page needs beyond the REST API.
//!
//! The page is hand-written HTML, CSS and vanilla JavaScript with SVG charts, embedded with
//! `include_str!`: no build step, no CDN, works offline. It reads the REST API with the
//! bearer token the operator typed (kept in `sessionStorage`) and refreshes when the event
//! stream says something changed.
//!
//! Endpoints added here:
//! - `GET /api/v1/whoami`: the caller's name and role (the page hides what a viewer may not do;
//!   the API refuses it anyway).
//! - `POST /api/v1/events/ticket` then `GET /api/v1/events/stream?ticket=…`: server-sent
//!   events naming what changed (`lines`, `decisions`, `policy`, `agents`); see [`tickets`]
//!   for why a single-use ticket and not the token.
//! - `GET /api/v1/lines/{site}/{line}/history`: the last hour of a line's measurements and
//!   the SLA thresholds to draw over them.
//!
//! ```text
//!   sampler task (every 500 ms) ──reads──▶ Controller::take_line_updates/decisions/policy/agents
//!        │ records LineHistory             │
//!        └──▶ watch<Fingerprint> ──▶ one SSE stream per open page ──▶ page refetches REST
//! ```

pub mod history;
pub mod openapi;
pub mod tickets;

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::extract::{Path, Query};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::watch;

use crate::api::Caller;
use crate::auth::{Principal, Role};
use crate::service::{Controller, now_ms};
use history::LineHistory;
use tickets::{Holder, TICKET_LIFETIME_MS, Tickets};

/// How often the sampler looks at the controller's state.
const SAMPLE_EVERY: Duration = Duration::from_millis(500);
/// How much line history the charts get.
const HISTORY_WINDOW_MS: u64 = 3_600_000;
/// Samples kept per line at most (an hour of one report a second).
const HISTORY_PER_LINE: usize = 3_600;
/// Samples kept across all lines (about 50 MB): a network of more than ~280 lines keeps
/// fewer per line, spaced over the hour.
const HISTORY_BUDGET: usize = 1_000_000;

const INDEX_HTML: &str = include_str!("../../assets/index.html");
const APP_JS: &str = include_str!("../../assets/app.js");
const APP_CSS: &str = include_str!("../../assets/app.css");

/// A digest of each part of the controller's state the page shows; a part whose digest
/// moved is announced on the event stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Fingerprint {
    lines: u64,
    decisions: u64,
    policy: u64,
    agents: u64,
}

impl Fingerprint {
    fn of(controller: &Controller) -> Fingerprint {
        let mut decisions = DefaultHasher::new();
        for d in controller.decisions(None, None, 1) {
            (d.at_ms, d.site, d.class, d.to_line).hash(&mut decisions);
        }
        let mut agents = DefaultHasher::new();
        serde_json::to_string(&controller.agents())
            .unwrap_or_default()
            .hash(&mut agents);
        Fingerprint {
            lines: controller.lines_seq(),
            decisions: decisions.finish(),
            policy: controller.policy().0.version,
            agents: agents.finish(),
        }
    }

    /// The parts that differ from `before`.
    fn changed_since(&self, before: &Fingerprint) -> Vec<&'static str> {
        let mut topics = Vec::new();
        if self.lines != before.lines {
            topics.push("lines");
        }
        if self.decisions != before.decisions {
            topics.push("decisions");
        }
        if self.policy != before.policy {
            topics.push("policy");
        }
        if self.agents != before.agents {
            topics.push("agents");
        }
        topics
    }
}

/// The dashboard's own state, shared by its handlers and the sampler.
#[derive(Debug)]
struct Dashboard {
    tickets: Mutex<Tickets>,
    history: Mutex<LineHistory>,
    changes: OnceLock<watch::Receiver<Fingerprint>>,
}

impl Dashboard {
    /// The change feed; starts the sampler on first use (needs a tokio runtime).
    fn changes(self: &Arc<Self>, controller: &Controller) -> watch::Receiver<Fingerprint> {
        self.changes
            .get_or_init(|| {
                let (tx, rx) = watch::channel(Fingerprint::of(controller));
                tokio::spawn(sample(self.clone(), controller.clone(), tx));
                rx
            })
            .clone()
    }
}

/// Records line history and publishes fingerprints until the controller shuts down.
async fn sample(dashboard: Arc<Dashboard>, controller: Controller, tx: watch::Sender<Fingerprint>) {
    let mut closing = controller.closing();
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = closing.wait_for(|closing| *closing) => break,
            _ = tick.tick() => {
                // Only the updates since the last tick, taken without copying under the
                // controller's lock (it used to copy every line's latest every tick).
                let updates = controller.take_line_updates();
                dashboard
                    .history
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .record(updates.iter().map(|(key, live)| (&**key, &**live)), now_ms());
                if tx.receiver_count() <= 1 {
                    // Only the dashboard's own receiver: no page is open, skip the digest.
                    continue;
                }
                tx.send_if_modified(|old| {
                    let now = Fingerprint::of(&controller);
                    let moved = now != *old;
                    *old = now;
                    moved
                });
            }
        }
    }
}

/// The dashboard's routes, to merge into the API router (state: the controller).
pub fn router(controller: &Controller) -> Router<Controller> {
    let dashboard = Arc::new(Dashboard {
        tickets: Mutex::new(Tickets::default()),
        history: Mutex::new(LineHistory::new(
            HISTORY_WINDOW_MS,
            HISTORY_PER_LINE,
            HISTORY_BUDGET,
        )),
        changes: OnceLock::new(),
    });
    if tokio::runtime::Handle::try_current().is_ok() {
        // Start sampling now so the charts have history before anyone opens the page.
        dashboard.changes(controller);
    }
    Router::new()
        .route("/", get(|| async { Redirect::to("/dashboard/") }))
        .route("/dashboard", get(|| async { Redirect::to("/dashboard/") }))
        .route(
            "/dashboard/",
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/dashboard/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/dashboard/app.css",
            get(|| async { asset("text/css; charset=utf-8", APP_CSS) }),
        )
        .route("/api/v1/whoami", get(whoami))
        .route("/api/v1/events/ticket", post(issue_ticket))
        .route("/api/v1/events/stream", get(event_stream))
        .route("/api/v1/lines/{site}/{line}/history", get(line_history))
        .layer(Extension(dashboard))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

fn refuse(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

/// The API user behind a request; `None` for an agent (the dashboard is for people).
fn user(caller: &Caller) -> Option<(&str, Role)> {
    match &caller.0 {
        Principal::User { name, role } => Some((name, *role)),
        Principal::Agent { .. } => None,
    }
}

fn agent_refused() -> Response {
    refuse(
        StatusCode::FORBIDDEN,
        "agent tokens only open agent sessions",
    )
}

async fn whoami(caller: Caller) -> Response {
    match user(&caller) {
        Some((name, role)) => Json(json!({ "name": name, "role": role })).into_response(),
        None => agent_refused(),
    }
}

async fn issue_ticket(caller: Caller, Extension(dashboard): Extension<Arc<Dashboard>>) -> Response {
    let Some((name, _)) = user(&caller) else {
        return agent_refused();
    };
    let name = name.to_string();
    let ticket = dashboard
        .tickets
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .issue(Holder { name }, now_ms());
    Json(json!({ "ticket": ticket, "expires_in_ms": TICKET_LIFETIME_MS })).into_response()
}

#[derive(Debug, Deserialize)]
struct StreamQuery {
    ticket: Option<String>,
}

#[derive(Debug, Serialize)]
struct Changed {
    topics: Vec<&'static str>,
}

async fn event_stream(
    axum::extract::State(controller): axum::extract::State<Controller>,
    Extension(dashboard): Extension<Arc<Dashboard>>,
    Query(query): Query<StreamQuery>,
) -> Response {
    let holder = query.ticket.as_deref().and_then(|ticket| {
        dashboard
            .tickets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .spend(ticket, now_ms())
    });
    let Some(holder) = holder else {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "missing, spent or expired ticket; get one from POST /api/v1/events/ticket",
        );
    };
    tracing::debug!(user = %holder.name, "dashboard event stream opened");
    let changes = dashboard.changes(&controller);
    let mut last = *changes.borrow();
    let hello = futures::stream::once(async {
        Ok::<_, std::convert::Infallible>(Event::default().event("hello").data("{}"))
    });
    let updates =
        tokio_stream::wrappers::WatchStream::from_changes(changes).filter_map(move |now| {
            let topics = now.changed_since(&last);
            last = now;
            async move {
                (!topics.is_empty()).then(|| {
                    Ok(Event::default()
                        .event("changed")
                        .json_data(Changed { topics })
                        .expect("serialises"))
                })
            }
        });
    let mut closing = controller.closing();
    let until_closing = async move {
        let _ = closing.wait_for(|closing| *closing).await;
    };
    Sse::new(hello.chain(updates).take_until(until_closing))
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// The thresholds one class's SLA puts on a line, in the units the chart draws.
#[derive(Debug, Serialize)]
struct Threshold {
    class: String,
    /// Round-trip: twice the SLA's one-way latency.
    rtt_ms: Option<f64>,
    jitter_ms: Option<f64>,
    loss_percent: Option<f64>,
}

async fn line_history(
    caller: Caller,
    axum::extract::State(controller): axum::extract::State<Controller>,
    Extension(dashboard): Extension<Arc<Dashboard>>,
    Path((site, line)): Path<(String, String)>,
) -> Response {
    if user(&caller).is_none() {
        return agent_refused();
    }
    let (_, policy) = controller.policy();
    let known = policy
        .site(&site)
        .is_some_and(|s| s.lines.iter().any(|l| l.name == line));
    if !known {
        return refuse(StatusCode::NOT_FOUND, &format!("no line {site}/{line}"));
    }
    dashboard.changes(&controller);
    let samples = dashboard
        .history
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .samples(&site, &line);
    let thresholds: Vec<Threshold> = policy
        .classes
        .iter()
        .filter_map(|class| {
            let sla = class.sla.as_ref()?;
            Some(Threshold {
                class: class.name.clone(),
                rtt_ms: sla.latency.map(|l| 2.0 * l.0.as_secs_f64() * 1e3),
                jitter_ms: sla.jitter.map(|j| j.0.as_secs_f64() * 1e3),
                loss_percent: sla.loss.map(|l| l.0),
            })
        })
        .collect();
    Json(json!({
        "site": site,
        "line": line,
        "window_ms": HISTORY_WINDOW_MS,
        "samples": samples,
        "thresholds": thresholds,
    }))
    .into_response()
}
