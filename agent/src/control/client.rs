//! The session loop over HTTP: register, hold the push stream, ack, send reports, reconnect.

use std::future::Future;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::{mpsc, watch};
use wansteer_wire::PROTOCOL_VERSION;
use wansteer_wire::ruleset::RuleSet;
use wansteer_wire::session::{
    AGENT_API, Ack, AckOutcome, LineRegistration, Push, Register, RegisterReply, Report, RuleSetId,
};

use super::backoff::Backoff;
use super::sse::SseDecoder;
use super::verdict::{Verdict, judge};

/// How to reach the controller.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Base URL, e.g. `http://10.0.0.1:8080`.
    pub base_url: String,
    pub site: String,
    /// The site's agent token.
    pub token: String,
    pub agent_version: String,
    pub lines: Vec<LineRegistration>,
    pub backoff: Backoff,
    /// Gives up on a request (not the push stream) after this long.
    pub request_timeout: Duration,
}

/// Applies a rule set to the data plane; an error is acked as a failure.
pub trait ApplyRuleSet: Send {
    fn apply(&mut self, rule_set: &RuleSet) -> Result<(), String>;
}

impl<F: FnMut(&RuleSet) -> Result<(), String> + Send> ApplyRuleSet for F {
    fn apply(&mut self, rule_set: &RuleSet) -> Result<(), String> {
        self(rule_set)
    }
}

/// What the client is doing, for the agent's own API and metrics (and tests).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientStatus {
    /// The push stream is open.
    pub connected: bool,
    /// The last good rule set applied.
    pub running: Option<RuleSetId>,
    /// Push streams opened so far.
    pub sessions: u64,
    /// `rule-set` events received (including ones refused or already running).
    pub received: u64,
    /// Rule sets handed to the apply callback.
    pub applied: u64,
    /// Pushes refused or failed, with the last reason.
    pub refused: u64,
    pub last_error: Option<String>,
}

/// Why a session ended.
#[derive(Debug, thiserror::Error)]
enum SessionEnd {
    #[error("controller closed the push stream")]
    Closed,
    #[error("{0}")]
    Http(#[from] reqwest::Error),
    #[error("controller answered {status} to {what}: {body}")]
    Refused {
        what: &'static str,
        status: reqwest::StatusCode,
        body: String,
    },
    #[error("shutting down")]
    Shutdown,
}

/// The client; [`ControllerClient::run`] drives it until shutdown.
#[derive(Debug)]
pub struct ControllerClient {
    config: ClientConfig,
    http: reqwest::Client,
    status: watch::Sender<ClientStatus>,
    /// The controller announced a restart on this session: reconnect within this window.
    restart_window: Option<Duration>,
}

impl ControllerClient {
    /// `running` is what the agent adopted from the kernel at start, if anything.
    pub fn new(config: ClientConfig, running: Option<RuleSetId>) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(config.request_timeout)
            .build()?;
        let status = watch::Sender::new(ClientStatus {
            running,
            ..ClientStatus::default()
        });
        Ok(ControllerClient {
            config,
            http,
            status,
            restart_window: None,
        })
    }

    /// Follows the client's status.
    pub fn status(&self) -> watch::Receiver<ClientStatus> {
        self.status.subscribe()
    }

    fn url(&self, path: &str) -> String {
        format!(
            "{}{AGENT_API}/{path}",
            self.config.base_url.trim_end_matches('/')
        )
    }

    /// Runs sessions until `shutdown` resolves, reconnecting with backoff.
    pub async fn run(
        mut self,
        mut apply: impl ApplyRuleSet,
        mut reports: mpsc::Receiver<Report>,
        shutdown: impl Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        let mut backoff = self.config.backoff.clone();
        loop {
            let end = tokio::select! {
                end = self.session(&mut apply, &mut reports, &mut backoff) => end,
                () = &mut shutdown => SessionEnd::Shutdown,
            };
            self.status.send_modify(|s| {
                s.connected = false;
            });
            if matches!(end, SessionEnd::Shutdown) {
                return;
            }
            if let Some(window) = self.restart_window.take() {
                backoff.expect_restart(window);
            }
            let delay = backoff.next_delay();
            tracing::warn!(error = %end, retry_in = ?delay, "controller session ended");
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = &mut shutdown => return,
            }
        }
    }

    async fn session(
        &mut self,
        apply: &mut impl ApplyRuleSet,
        reports: &mut mpsc::Receiver<Report>,
        backoff: &mut Backoff,
    ) -> SessionEnd {
        match self.session_inner(apply, reports, backoff).await {
            Ok(never) => match never {},
            Err(end) => end,
        }
    }

    async fn session_inner(
        &mut self,
        apply: &mut impl ApplyRuleSet,
        reports: &mut mpsc::Receiver<Report>,
        backoff: &mut Backoff,
    ) -> Result<std::convert::Infallible, SessionEnd> {
        let running = self.status.borrow().running.clone();
        let register = Register {
            protocol: PROTOCOL_VERSION,
            site: self.config.site.clone(),
            agent_version: self.config.agent_version.clone(),
            lines: self.config.lines.clone(),
            running: running.clone(),
        };
        let reply: RegisterReply = check(
            "register",
            self.http
                .post(self.url("register"))
                .bearer_auth(&self.config.token)
                .timeout(self.config.request_timeout)
                .json(&register)
                .send()
                .await?,
        )
        .await?
        .json()
        .await?;
        tracing::info!(site = %self.config.site, published = ?reply.published, "registered with the controller");

        // The hash is hex, so it needs no URL escaping.
        let url = match &running {
            Some(running) if running.hash.bytes().all(|b| b.is_ascii_hexdigit()) => {
                format!("{}?hash={}", self.url("rules"), running.hash)
            }
            _ => self.url("rules"),
        };
        let request = self.http.get(url).bearer_auth(&self.config.token);
        let response = check("rules", request.send().await?).await?;
        backoff.reset();
        self.status.send_modify(|s| {
            s.connected = true;
            s.sessions += 1;
        });
        let mut stream = response.bytes_stream();
        let mut decoder = SseDecoder::new();
        let mut reports_open = !reports.is_closed();
        loop {
            tokio::select! {
                chunk = stream.next() => {
                    let chunk = chunk.ok_or(SessionEnd::Closed)??;
                    for event in decoder.feed(&chunk) {
                        self.on_event(&event.event, &event.data, apply).await?;
                    }
                }
                report = reports.recv(), if reports_open => {
                    let Some(report) = report else {
                        reports_open = false;
                        continue;
                    };
                    // Reports go out beside the stream so a slow POST never delays a push.
                    let request = self.http
                        .post(self.url("report"))
                        .bearer_auth(&self.config.token)
                        .timeout(self.config.request_timeout)
                        .json(&report);
                    tokio::spawn(async move {
                        match request.send().await {
                            Ok(r) if r.status().is_success() => {}
                            Ok(r) => tracing::warn!(status = %r.status(), "report refused"),
                            Err(error) => tracing::debug!(%error, "report not delivered"),
                        }
                    });
                }
            }
        }
    }

    async fn on_event(
        &mut self,
        event: &str,
        data: &str,
        apply: &mut impl ApplyRuleSet,
    ) -> Result<(), SessionEnd> {
        let push = match Push::decode(event, data) {
            Ok(push) => push,
            Err(error) => {
                tracing::warn!(%error, "ignoring a push the agent cannot read");
                self.status.send_modify(|s| {
                    s.refused += 1;
                    s.last_error = Some(error.to_string());
                });
                return Ok(());
            }
        };
        let rule_set = match push {
            Push::InSync(in_sync) => {
                self.status.send_modify(|s| {
                    if s.running.as_ref().is_some_and(|r| r.hash == in_sync.hash) {
                        s.running = Some(RuleSetId {
                            version: in_sync.version,
                            hash: in_sync.hash,
                        });
                    }
                });
                return Ok(());
            }
            Push::Restarting(restarting) => {
                let window = Duration::from_millis(restarting.reconnect_within_ms);
                tracing::info!(within = ?window, "controller restarting; reconnecting within the window it gave");
                self.restart_window = Some(window);
                return Ok(());
            }
            Push::RuleSet(rule_set) => rule_set,
        };
        self.status.send_modify(|s| s.received += 1);
        let running = self.status.borrow().running.clone();
        let outcome = match judge(&self.config.site, running.as_ref(), &rule_set) {
            Verdict::AlreadyRunning => {
                self.status
                    .send_modify(|s| s.running = Some(RuleSetId::of(&rule_set)));
                AckOutcome::Applied
            }
            Verdict::Apply => match apply.apply(&rule_set) {
                Ok(()) => {
                    tracing::info!(version = rule_set.version, hash = %rule_set.hash, "rule set applied");
                    self.status.send_modify(|s| {
                        s.running = Some(RuleSetId::of(&rule_set));
                        s.applied += 1;
                    });
                    AckOutcome::Applied
                }
                Err(error) => self.refused(format!("apply failed: {error}")),
            },
            Verdict::Refuse(reason) => self.refused(reason),
        };
        let ack = Ack {
            site: self.config.site.clone(),
            version: rule_set.version,
            hash: rule_set.hash.clone(),
            outcome,
        };
        check(
            "ack",
            self.http
                .post(self.url("ack"))
                .bearer_auth(&self.config.token)
                .timeout(self.config.request_timeout)
                .json(&ack)
                .send()
                .await?,
        )
        .await?;
        Ok(())
    }

    fn refused(&self, reason: String) -> AckOutcome {
        tracing::warn!(%reason, "rule set refused; keeping the last good one");
        self.status.send_modify(|s| {
            s.refused += 1;
            s.last_error = Some(reason.clone());
        });
        AckOutcome::Failed { error: reason }
    }
}

async fn check(
    what: &'static str,
    response: reqwest::Response,
) -> Result<reqwest::Response, SessionEnd> {
    if response.status().is_success() {
        return Ok(response);
    }
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    Err(SessionEnd::Refused { what, status, body })
}
