//! The running controller: live state, the planner task, and the operations the API and the
//! agents' sessions call (apply a policy, register, report, ack, subscribe to pushes).
//!
//! ```text
//!   agents ──register/report/ack──▶ Controller (Mutex<State>) ──▶ metrics, store, audit
//!                   │ report                ▲ publish (new version only on new hash)
//!                   ▼                       │
//!   API ──apply──▶ planner task (owns Box<dyn Planning>; plans at most every plan_interval)
//!                                           │ watch channel per site
//!   agents ◀──────────── SSE push stream ◀──┘
//! ```
//!
//! Only the planner task publishes, so versions are assigned in one place. A rule set is
//! persisted before it is sent, so a restart never reuses a version for other content; a
//! new policy version is persisted in the same commit as the rule sets planned under it, so
//! a crash never leaves a policy beside rule sets compiled from another.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use wansteer_policies::{CheckOptions, Diagnostic, Policy};
use wansteer_wire::PROTOCOL_VERSION;
use wansteer_wire::ruleset::RuleSet;
use wansteer_wire::session::{
    Ack, ClassDemand, LineMeasurement, Register, RegisterReply, Report, RuleSetId,
};

use crate::audit::{AuditEntry, AuditLog, Retention};
use crate::auth::{Authenticator, TokenSource, TokensError, TokensFile};
use crate::drift::{Drift, drift};
use crate::metrics::{AgentRow, LineRow, Metrics, SiteRow};
use crate::planning::{DecisionRecord, Plan, Planning};
use crate::store::{AgentRecord, PolicyVersion, Store};

/// Decisions kept in memory for the API (older ones stay in the store and audit log).
const DECISIONS_IN_MEMORY: usize = 10_000;

/// Wall-clock milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// How to start a controller.
#[derive(Debug)]
pub struct ControllerConfig {
    pub state_dir: PathBuf,
    /// Name of the startup policy in diagnostics and history (usually its path).
    pub policy_file: String,
    pub policy_text: String,
    pub tokens: TokensFile,
    /// Where `tokens` came from: what a reload re-reads, where new sites' tokens go.
    pub token_source: TokenSource,
    pub retention: Retention,
    /// Re-plan at most this often while reports arrive.
    pub plan_interval: Duration,
    /// How often agents are asked to report.
    pub report_interval: Duration,
    /// Serve `/metrics` without a token (for a scraper on a trusted network); otherwise it
    /// needs a viewer (or admin) token like the rest of the API.
    pub metrics_public: bool,
    /// What policy checks know beyond the text: the classifier's app catalogue, so a
    /// policy naming an app no agent recognises is refused at start and through the API.
    pub check: CheckOptions,
}

/// Why the controller did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("the policy is not valid:\n{}", render(.0))]
    Policy(Vec<Diagnostic>),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("audit log: {0}")]
    Audit(#[from] std::io::Error),
    #[error("the startup policy was not planned and recorded: {0}")]
    Record(String),
}

fn render(diagnostics: &[Diagnostic]) -> String {
    diagnostics
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// A policy change refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("the policy is not valid")]
    Invalid(Vec<Diagnostic>),
    #[error("could not record the policy: {0}")]
    Record(String),
}

/// What applying a policy did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Applied {
    /// The version in force afterwards.
    pub version: u64,
    /// False when the text equals the policy in force (nothing recorded).
    pub changed: bool,
    /// One line per change, as the audit log and the policy history record them.
    pub changes: Vec<String>,
    /// The same changes, structured (area, kind, subject, text).
    pub details: Vec<PolicyChange>,
    pub warnings: Vec<Diagnostic>,
    /// Sites that got a new rule set version from this change.
    pub sites_republished: Vec<String>,
    /// Sites that got a freshly generated agent token (in the generated tokens file).
    #[serde(default)]
    pub tokens_added: Vec<String>,
}

/// One change between two policies, in the policies crate's operator wording.
pub type PolicyChange = wansteer_policies::diff::Change;

/// The changes from `old` to `new`, structured and as the lines that get recorded
/// (`~ class voice: …`, see [`wansteer_policies::diff::Change`]'s `Display`).
fn policy_changes(
    old: &wansteer_policies::Policy,
    new: &wansteer_policies::Policy,
) -> (Vec<String>, Vec<PolicyChange>) {
    let details = wansteer_policies::diff::diff(old, new);
    (details.iter().map(ToString::to_string).collect(), details)
}

/// An agent's operation refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SessionError {
    #[error("token of site {token_site} used for site {claimed}")]
    WrongSite { token_site: String, claimed: String },
    #[error("protocol version {0} not supported (controller speaks {1})")]
    Protocol(u32, u32),
    #[error("site {0} is not in the policy")]
    UnknownSite(String),
}

/// What a site's push channel carries: the rule set and its JSON, serialised once when it
/// was published (the store keeps the same text), so a push stream only copies bytes.
#[derive(Debug, Clone)]
pub struct Pushed {
    pub rule_set: Arc<RuleSet>,
    pub json: Arc<str>,
}

impl Pushed {
    fn new(rule_set: RuleSet) -> Pushed {
        let json = serde_json::to_string(&rule_set).expect("rule sets always serialise");
        Pushed {
            rule_set: Arc::new(rule_set),
            json: json.into(),
        }
    }
}

/// Rule sets are hashed, stored and sent this many sites at a time. Each chunk is one
/// durable commit (an fsync): measured on this machine, ten commits for 10,000 sites cost
/// more than the earlier start of the first sends gained, so a chunk holds every site a
/// large policy change touches.
const PUBLISH_CHUNK: usize = 100_000;

/// Runs CPU-heavy or blocking work (planning, hashing, a durable commit) without stalling
/// the runtime's other tasks: on a multi-threaded runtime the worker hands its queue to
/// another thread for the duration.
fn off_runtime<R>(work: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        _ => work(),
    }
}

struct Published {
    rule_set: Arc<RuleSet>,
    /// When this version was published in this process (none if loaded at start).
    at: Option<Instant>,
    /// Push latency already observed for this version.
    latency_seen: bool,
}

struct AgentLive {
    record: AgentRecord,
    streams: u32,
    last_report_ms: Option<u64>,
}

/// The agent's applied version and drift against `published`, for `/metrics`.
fn agent_row(published: Option<&Published>, live: &AgentLive) -> AgentRow {
    let published = published.map(|p| RuleSetId::of(&p.rule_set));
    AgentRow {
        applied_version: live.record.applied.as_ref().map(|a| a.version),
        drift: drift(published.as_ref(), Some(&live.record)).is_drift(),
    }
}

/// The latest measurement of one line, and the latest per-class demand on it.
#[derive(Debug, Clone, Serialize)]
pub struct LineLive {
    pub measurement: LineMeasurement,
    pub at_ms: u64,
    /// Bits per second per class, summed over destinations, from the latest report that
    /// measured or carried demand for this line; a class it did not list is idle.
    pub class_bps: BTreeMap<String, u64>,
}

/// A line's key in the live state, (site, line); shared with the dashboard's feed.
pub type LineKey = Arc<(String, String)>;

/// One new measurement of a line, as the dashboard's feed carries it: two reference counts,
/// no copy of the measurement.
pub type LineUpdate = (LineKey, Arc<LineLive>);

/// Line updates waiting for the dashboard at most (a second of 10,000 sites × 3 lines
/// many times over); past it new updates are dropped until the dashboard takes them.
const LINE_FEED_MAX: usize = 1 << 20;

/// A report's per-class demand summed per (line, class); demand not tied to a line only
/// informs the planner and is left out.
fn demand_by_line(demand: &[ClassDemand]) -> BTreeMap<String, BTreeMap<String, u64>> {
    let mut by_line: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for d in demand {
        if let Some(line) = &d.line {
            let bps = by_line
                .entry(line.clone())
                .or_default()
                .entry(d.class.clone())
                .or_default();
            *bps = bps.saturating_add(d.bps);
        }
    }
    by_line
}

struct CurrentPolicy {
    record: PolicyVersion,
    /// Shared, so a diff against it runs outside the state lock.
    policy: Arc<Policy>,
}

impl State {
    fn line_updated(&mut self, key: LineKey, live: Arc<LineLive>) {
        self.lines_seq += 1;
        if self.line_feed_on && self.line_feed.len() < LINE_FEED_MAX {
            self.line_feed.push((key, live));
        }
    }
}

struct State {
    policy: CurrentPolicy,
    history: Vec<PolicyVersion>,
    published: BTreeMap<String, Published>,
    channels: HashMap<String, watch::Sender<Option<Pushed>>>,
    agents: BTreeMap<String, AgentLive>,
    lines: BTreeMap<LineKey, Arc<LineLive>>,
    /// Line updates since the dashboard last took them (collected once it asked).
    line_feed: Vec<LineUpdate>,
    line_feed_on: bool,
    /// Counts line updates: the dashboard's cheap "did lines change" digest.
    lines_seq: u64,
    decisions: VecDeque<DecisionRecord>,
    decision_seq: u64,
    connected: i64,
}

/// What the planner task is asked to do, ahead of the reports queued for it: a policy
/// change is never held up behind thousands of reports.
enum PlannerInput {
    /// A new policy and the version to record it as.
    Policy(Arc<Policy>, Box<PolicyVersion>, PolicyDone),
    /// Take in every report queued so far, plan if anything arrived, then answer.
    Settle(oneshot::Sender<()>),
}

/// Answers a policy change: the sites republished, or why nothing was recorded.
type PolicyDone = oneshot::Sender<Result<Vec<String>, String>>;

/// Reports queued for the planner at most; beyond that a report only updates live state
/// and metrics (the planner is behind, and the next report supersedes it anyway).
const PLANNER_REPORT_QUEUE: usize = 65_536;

/// How often the planner's line memory is written when it changed. A crash loses at most
/// this much of it (a clean stop writes it last thing); a breach still going on is noted
/// again by the next report anyway.
const MEMORY_SAVE_INTERVAL: Duration = Duration::from_secs(5);

struct Shared {
    state: Mutex<State>,
    /// Swapped whole on reload; requests hold the one they started with.
    auth: std::sync::RwLock<Arc<Authenticator>>,
    tokens: Mutex<(TokenSource, TokensFile)>,
    metrics: Metrics,
    audit: AuditLog,
    store: Store,
    planner: mpsc::Sender<PlannerInput>,
    reports: mpsc::Sender<Box<Report>>,
    apply_lock: tokio::sync::Mutex<()>,
    report_interval: Duration,
    metrics_public: bool,
    check: CheckOptions,
    /// Set once at shutdown: push streams and the planner task end.
    closing: watch::Sender<bool>,
    /// Set by the planner task once it has stopped and written its memory.
    planner_stopped: watch::Sender<bool>,
    /// Agent records waiting for the registry writer, by site (latest wins).
    pending_agents: Mutex<BTreeMap<String, AgentRecord>>,
    agents_dirty: tokio::sync::Notify,
}

/// Handle to the running controller; cheap to clone.
#[derive(Clone)]
pub struct Controller {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller").finish_non_exhaustive()
    }
}

impl Controller {
    /// Loads the state directory, brings the startup policy in force (a new version if its
    /// text differs from the last one recorded), and starts the planner task.
    pub async fn start(
        config: ControllerConfig,
        planner: Box<dyn Planning>,
    ) -> Result<Controller, StartError> {
        let checked = wansteer_policies::check_source_with(
            &config.policy_file,
            &config.policy_text,
            &config.check,
        )
        .map_err(StartError::Policy)?;
        std::fs::create_dir_all(&config.state_dir)?;
        let store = Store::open(&config.state_dir)?;
        let loaded = store.load(DECISIONS_IN_MEMORY)?;
        let audit = AuditLog::open(&config.state_dir, config.retention)?;
        let metrics = Metrics::new();

        let history = loaded.policies;
        let latest = history.last().cloned();
        let from_version = latest.as_ref().map(|l| l.version);
        let policy_is_new = latest
            .as_ref()
            .is_none_or(|latest| latest.text != config.policy_text);
        let record = if policy_is_new {
            let changes = match &latest {
                None => vec!["initial policy".to_string()],
                Some(latest) => match wansteer_policies::check_source(&latest.file, &latest.text) {
                    Ok(old) => policy_changes(&old.policy, &checked.policy).0,
                    Err(_) => vec!["replaced a policy this version cannot read".into()],
                },
            };
            let record = PolicyVersion {
                version: latest.as_ref().map_or(1, |l| l.version + 1),
                file: config.policy_file.clone(),
                text: config.policy_text.clone(),
                by: format!("startup:{}", config.policy_file),
                at_ms: now_ms(),
                changes,
            };
            // Recorded by the first plan, in one commit with the rule sets planned under it.
            record
        } else {
            latest.expect("not new means there is a latest")
        };

        let mut published = BTreeMap::new();
        let mut channels = HashMap::new();
        let restored = loaded.rule_sets.clone();
        let memory = loaded.planner_memory.clone();
        for rule_set in loaded.rule_sets {
            let pushed = Pushed::new(rule_set);
            let rule_set = pushed.rule_set.clone();
            channels.insert(rule_set.site.clone(), watch::Sender::new(Some(pushed)));
            published.insert(
                rule_set.site.clone(),
                Published {
                    rule_set,
                    at: None,
                    latency_seen: true,
                },
            );
        }
        let mut agents = BTreeMap::new();
        for record in loaded.agents {
            agents.insert(
                record.site.clone(),
                AgentLive {
                    record,
                    streams: 0,
                    last_report_ms: None,
                },
            );
        }
        let decision_seq = store.next_decision_seq()?;
        // Rule sets from another policy version than the one in force (a store from before
        // the two were committed together) are re-planned at once.
        let plan_now = policy_is_new
            || published.is_empty()
            || loaded.rule_sets_policy != Some(record.version);
        let policy = Arc::new(checked.policy);

        let (planner_tx, planner_rx) = mpsc::channel(64);
        let (reports_tx, reports_rx) = mpsc::channel(PLANNER_REPORT_QUEUE);
        let startup_record = policy_is_new.then(|| record.clone());
        let record_version = record.version;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                policy: CurrentPolicy {
                    record,
                    policy: policy.clone(),
                },
                history,
                published,
                channels,
                agents,
                lines: BTreeMap::new(),
                line_feed: Vec::new(),
                line_feed_on: false,
                lines_seq: 0,
                decisions: loaded.decisions.into(),
                decision_seq,
                connected: 0,
            }),
            auth: std::sync::RwLock::new(Arc::new(Authenticator::for_sites(
                &config.tokens,
                policy.sites.iter().map(|s| s.name.as_str()),
            ))),
            tokens: Mutex::new((config.token_source.clone(), config.tokens.clone())),
            metrics,
            audit,
            store,
            planner: planner_tx,
            reports: reports_tx,
            apply_lock: tokio::sync::Mutex::new(()),
            report_interval: config.report_interval,
            metrics_public: config.metrics_public,
            check: config.check.clone(),
            closing: watch::Sender::new(false),
            planner_stopped: watch::Sender::new(false),
            pending_agents: Mutex::new(BTreeMap::new()),
            agents_dirty: tokio::sync::Notify::new(),
        });
        let controller = Controller { shared };
        let task = PlannerTask {
            controller: Arc::downgrade(&controller.shared),
            closing: controller.shared.closing.subscribe(),
            planner,
            interval: config.plan_interval,
            policy,
            policy_version: record_version,
        };
        let (first_tx, first_plan) = oneshot::channel();
        let startup = startup_record.map(|record| (record, first_tx));
        tokio::spawn(task.run(planner_rx, reports_rx, restored, memory, plan_now, startup));
        tokio::spawn(registry_writer(
            Arc::downgrade(&controller.shared),
            controller.closing(),
        ));
        if policy_is_new {
            // The new version exists only once its first plan is committed with it.
            let failed = match first_plan.await {
                Ok(Ok(_)) => None,
                Ok(Err(error)) => Some(error),
                Err(_) => Some("the planner stopped".to_string()),
            };
            if let Some(error) = failed {
                // Release the store at once, so a successor can open it.
                let _ = controller.close();
                return Err(StartError::Record(error));
            }
            let record = controller.policy().0;
            controller
                .shared
                .audit
                .record_durably(&AuditEntry::PolicyChange {
                    at_ms: record.at_ms,
                    by: record.by.clone(),
                    from_version,
                    to_version: record.version,
                    changes: record.changes.clone(),
                })
                .await?;
        }
        controller.shared.metrics.set_policy_version(record_version);
        Ok(controller)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The tokens in force.
    pub fn auth(&self) -> Arc<Authenticator> {
        self.shared
            .auth
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Re-reads the tokens (see [`TokenSource`]) and brings them in force for the policy's
    /// sites: a generated tokens file first gets a fresh token for every site that has none
    /// (written mode 0600). Agent tokens of sites outside the policy are refused. Returns
    /// the sites that got a new token. On error the tokens in force stay.
    pub fn reload_tokens(&self) -> Result<Vec<String>, TokensError> {
        let sites: Vec<String> = self
            .state()
            .policy
            .policy
            .sites
            .iter()
            .map(|s| s.name.clone())
            .collect();
        let mut tokens = self.shared.tokens.lock().unwrap_or_else(|e| e.into_inner());
        let (source, current) = &mut *tokens;
        let mut file = match source {
            TokenSource::Given => current.clone(),
            TokenSource::File(path) => TokensFile::load(path)?,
            TokenSource::Generated(path) => {
                if path.exists() {
                    TokensFile::load(path)?
                } else {
                    current.clone()
                }
            }
        };
        let added = match source {
            TokenSource::Generated(path) => {
                let added = file.add_missing_sites(sites.iter().map(String::as_str));
                if !added.is_empty() || !path.exists() {
                    file.save(path)?;
                    tracing::info!(sites = ?added, path = %path.display(), "agent tokens generated for new sites");
                }
                added
            }
            TokenSource::Given => file.add_missing_sites(sites.iter().map(String::as_str)),
            TokenSource::File(path) => {
                let have: std::collections::HashSet<&str> =
                    file.agents.iter().map(|a| a.site.as_str()).collect();
                let missing: Vec<&String> = sites
                    .iter()
                    .filter(|site| !have.contains(site.as_str()))
                    .collect();
                if !missing.is_empty() {
                    tracing::warn!(sites = ?missing, path = %path.display(), "sites without an agent token; add them to the tokens file and send SIGHUP");
                }
                Vec::new()
            }
        };
        let auth = Authenticator::for_sites(&file, sites.iter().map(String::as_str));
        *self.shared.auth.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(auth);
        *current = file;
        Ok(added)
    }

    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// Everything `/metrics` serves, in the text exposition format. The state lock is held
    /// only to take reference counts of the lines and rule sets and each agent's drift;
    /// the text is written after (at 10,000 sites it is ≈ 30 MB).
    pub fn metrics_text(&self) -> String {
        let (lines, sites) = {
            let state = self.state();
            let lines: Vec<(LineKey, Arc<LineLive>)> = state
                .lines
                .iter()
                .map(|(key, live)| (key.clone(), live.clone()))
                .collect();
            let mut sites: Vec<(String, Option<Arc<RuleSet>>, Option<AgentRow>)> = state
                .published
                .iter()
                .map(|(site, published)| {
                    let agent = state
                        .agents
                        .get(site)
                        .map(|live| agent_row(Some(published), live));
                    (site.clone(), Some(published.rule_set.clone()), agent)
                })
                .collect();
            for (site, live) in &state.agents {
                if !state.published.contains_key(site) {
                    sites.push((site.clone(), None, Some(agent_row(None, live))));
                }
            }
            (lines, sites)
        };
        let line_rows: Vec<LineRow<'_>> = lines
            .iter()
            .map(|(key, live)| LineRow {
                site: &key.0,
                line: &key.1,
                measurement: &live.measurement,
            })
            .collect();
        let site_rows: Vec<SiteRow<'_>> = sites
            .iter()
            .map(|(site, published, agent)| SiteRow {
                site,
                published: published.as_deref(),
                agent: *agent,
            })
            .collect();
        let mut out = String::with_capacity(128 * (line_rows.len() * 7 + site_rows.len() * 12));
        crate::metrics::write_fleet(&mut out, &line_rows, &site_rows);
        self.shared.metrics.render_into(&mut out);
        out
    }

    /// True when `/metrics` is served without a token (`--metrics-public`).
    pub fn metrics_public(&self) -> bool {
        self.shared.metrics_public
    }

    pub fn audit(&self) -> &AuditLog {
        &self.shared.audit
    }

    /// Ends every push stream and the planner (so a graceful HTTP shutdown can finish).
    pub fn begin_shutdown(&self) {
        self.shared.closing.send_replace(true);
    }

    /// Follows the shutdown flag (push streams end when it turns true).
    pub fn closing(&self) -> watch::Receiver<bool> {
        self.shared.closing.subscribe()
    }

    /// Shuts down: ends the push streams, lets the planner write its line memory (waiting
    /// at most a few seconds for it), then releases the store durably. What `wansteer
    /// controller` does on SIGTERM.
    pub async fn shutdown(&self) -> Result<(), crate::store::StoreError> {
        self.begin_shutdown();
        let mut stopped = self.shared.planner_stopped.subscribe();
        let waited = tokio::time::timeout(
            Duration::from_secs(10),
            stopped.wait_for(|stopped| *stopped),
        )
        .await;
        if waited.is_err() {
            tracing::warn!("the planner did not stop in time; its latest line memory is lost");
        }
        off_runtime(|| self.close())
    }

    /// Shuts down and releases the store, durably, without waiting for the planner (its
    /// line memory is as of its last periodic write).
    pub fn close(&self) -> Result<(), crate::store::StoreError> {
        self.begin_shutdown();
        self.flush_agents();
        self.shared.store.close()
    }

    // ----- policy -----

    /// The policy in force and its record.
    pub fn policy(&self) -> (PolicyVersion, Policy) {
        let state = self.state();
        (state.policy.record.clone(), (*state.policy.policy).clone())
    }

    /// Every recorded policy version, oldest first.
    /// Every recorded policy version, oldest first, without their texts (at 10,000 sites a
    /// text is megabytes; [`Controller::policy_version`] gives one in full).
    pub fn policy_history(&self) -> Vec<PolicyVersion> {
        self.state()
            .history
            .iter()
            .map(|v| PolicyVersion {
                version: v.version,
                file: v.file.clone(),
                text: String::new(),
                by: v.by.clone(),
                at_ms: v.at_ms,
                changes: v.changes.clone(),
            })
            .collect()
    }

    /// One recorded policy version, text included.
    pub fn policy_version(&self, version: u64) -> Option<PolicyVersion> {
        let state = self.state();
        state.history.iter().find(|v| v.version == version).cloned()
    }

    /// Checks a policy text without changing anything; returns the changes it would make.
    pub fn preview(&self, file: &str, text: &str) -> Result<Applied, ApplyError> {
        let checked =
            off_runtime(|| wansteer_policies::check_source_with(file, text, &self.shared.check))
                .map_err(ApplyError::Invalid)?;
        let (version, current, same_text) = {
            let state = self.state();
            (
                state.policy.record.version,
                state.policy.policy.clone(),
                state.policy.record.text == text,
            )
        };
        let (changes, details) = off_runtime(|| policy_changes(&current, &checked.policy));
        Ok(Applied {
            version,
            changed: !same_text,
            changes,
            details,
            warnings: checked.warnings,
            sites_republished: Vec::new(),
            tokens_added: Vec::new(),
        })
    }

    /// Checks and applies a policy: records it, audits who changed what, re-plans and
    /// publishes. A policy with errors changes nothing.
    pub async fn apply_policy(
        &self,
        file: &str,
        text: &str,
        by: &str,
    ) -> Result<Applied, ApplyError> {
        let _one_at_a_time = self.shared.apply_lock.lock().await;
        // Checking and diffing a policy of thousands of sites takes a while: off the
        // runtime's workers, and the diff outside the state lock (reports keep flowing).
        let started = Instant::now();
        let checked =
            off_runtime(|| wansteer_policies::check_source_with(file, text, &self.shared.check));
        self.shared.metrics.policy_phase("check", started.elapsed());
        let checked = checked.map_err(ApplyError::Invalid)?;
        let (previous, current) = {
            let state = self.state();
            (state.policy.record.clone(), state.policy.policy.clone())
        };
        if previous.text == text {
            return Ok(Applied {
                version: previous.version,
                changed: false,
                changes: Vec::new(),
                details: Vec::new(),
                warnings: checked.warnings,
                sites_republished: Vec::new(),
                tokens_added: Vec::new(),
            });
        }
        // The change list is for people (history, audit, this answer): it is worked out
        // after the agents have their rule sets — at 10,000 sites the diff takes about as
        // long as the check — and added to the recorded version then.
        let mut record = PolicyVersion {
            version: previous.version + 1,
            file: file.to_string(),
            text: text.to_string(),
            by: by.to_string(),
            at_ms: now_ms(),
            changes: Vec::new(),
        };
        // The planner records the version in one commit with the rule sets planned under
        // it, and brings it in force; if that fails, nothing changed.
        let (done, republished) = oneshot::channel();
        let _ = self
            .shared
            .planner
            .send(PlannerInput::Policy(
                Arc::new(checked.policy),
                Box::new(record.clone()),
                done,
            ))
            .await;
        let sites_republished = match republished.await {
            Ok(Ok(sites)) => sites,
            Ok(Err(error)) => return Err(ApplyError::Record(error)),
            Err(_) => return Err(ApplyError::Record("the planner stopped".into())),
        };
        let in_force = self.state().policy.policy.clone();
        let (changes, details) = off_runtime(|| policy_changes(&current, &in_force));
        record.changes = changes.clone();
        if let Err(error) = off_runtime(|| {
            self.shared
                .store
                .set_policy_changes(record.version, &record.changes)
        }) {
            tracing::error!(%error, version = record.version, "policy change list not recorded in the history (the audit log has it)");
        }
        {
            let mut state = self.state();
            if let Some(entry) = state
                .history
                .iter_mut()
                .rev()
                .find(|h| h.version == record.version)
            {
                entry.changes = changes.clone();
            }
            if state.policy.record.version == record.version {
                state.policy.record.changes = changes.clone();
            }
        }
        self.shared
            .audit
            .record_durably(&AuditEntry::PolicyChange {
                at_ms: record.at_ms,
                by: by.to_string(),
                from_version: Some(previous.version),
                to_version: record.version,
                changes: changes.clone(),
            })
            .await
            .map_err(|e| ApplyError::Record(e.to_string()))?;
        tracing::info!(version = record.version, %by, changes = changes.len(), "policy applied");
        self.shared.metrics.set_policy_version(record.version);
        // New sites' agents can connect at once, removed sites' cannot any more.
        let tokens_added = match off_runtime(|| self.reload_tokens()) {
            Ok(added) => added,
            Err(error) => {
                tracing::error!(%error, "tokens not reloaded; the previous tokens stay in force");
                Vec::new()
            }
        };
        Ok(Applied {
            version: record.version,
            changed: true,
            changes,
            details,
            warnings: checked.warnings,
            sites_republished,
            tokens_added,
        })
    }

    /// Waits until every report sent so far has been planned on and the result published
    /// (for tests, benchmarks and orderly shutdowns; the planner plans on its own anyway).
    pub async fn settle(&self) {
        let (done, settled) = oneshot::channel();
        if self
            .shared
            .planner
            .send(PlannerInput::Settle(done))
            .await
            .is_ok()
        {
            let _ = settled.await;
        }
    }

    // ----- agents -----

    fn check_site(&self, token_site: &str, claimed: &str) -> Result<(), SessionError> {
        if token_site != claimed {
            return Err(SessionError::WrongSite {
                token_site: token_site.into(),
                claimed: claimed.into(),
            });
        }
        Ok(())
    }

    /// An agent connected: remember its lines and what it runs.
    pub fn register(
        &self,
        token_site: &str,
        register: Register,
    ) -> Result<RegisterReply, SessionError> {
        self.check_site(token_site, &register.site)?;
        if register.protocol != PROTOCOL_VERSION {
            return Err(SessionError::Protocol(register.protocol, PROTOCOL_VERSION));
        }
        let mut state = self.state();
        if state.policy.policy.site(&register.site).is_none() {
            return Err(SessionError::UnknownSite(register.site));
        }
        let published = state
            .published
            .get(&register.site)
            .map(|p| RuleSetId::of(&p.rule_set));
        let now = now_ms();
        let live = state
            .agents
            .entry(register.site.clone())
            .or_insert_with(|| AgentLive {
                record: AgentRecord {
                    site: register.site.clone(),
                    ..AgentRecord::default()
                },
                streams: 0,
                last_report_ms: None,
            });
        live.record.agent_version = register.agent_version;
        live.record.lines = register.lines;
        live.record.registered_at_ms = now;
        if let Some(running) = register.running {
            live.record.applied = Some(running);
        }
        let record = live.record.clone();
        drop(state);
        self.agent_changed(&record);
        tracing::info!(site = %record.site, version = %record.agent_version, "agent registered");
        Ok(RegisterReply {
            protocol: PROTOCOL_VERSION,
            published,
            report_interval_ms: self.shared.report_interval.as_millis() as u64,
        })
    }

    fn agent_changed(&self, record: &AgentRecord) {
        // Registry writes are batched by a writer task: one commit for many acks.
        self.shared
            .pending_agents
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(record.site.clone(), record.clone());
        self.shared.agents_dirty.notify_one();
    }

    /// Writes the queued agent records in one commit.
    fn flush_agents(&self) {
        let batch: Vec<AgentRecord> = std::mem::take(
            &mut *self
                .shared
                .pending_agents
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        )
        .into_values()
        .collect();
        if !batch.is_empty()
            && let Err(error) = self.shared.store.save_agents(&batch)
        {
            tracing::error!(%error, agents = batch.len(), "cannot record agents");
        }
    }

    /// An agent reported measurements: update live state and metrics, feed the planner.
    pub async fn report(&self, token_site: &str, report: Report) -> Result<(), SessionError> {
        self.check_site(token_site, &report.site)?;
        let now = now_ms();
        {
            let mut state = self.state();
            let mut demand = demand_by_line(&report.demand);
            for measurement in &report.lines {
                let key = (report.site.clone(), measurement.line.clone());
                let class_bps = demand.remove(&measurement.line).unwrap_or_default();
                let live = Arc::new(LineLive {
                    measurement: measurement.clone(),
                    at_ms: now,
                    class_bps,
                });
                let key = match state.lines.get_key_value(&key) {
                    Some((shared, _)) => shared.clone(),
                    None => Arc::new(key),
                };
                state.lines.insert(key.clone(), live.clone());
                state.line_updated(key, live);
            }
            // Demand on a line this report did not measure updates its last measurement's.
            for (line, class_bps) in demand {
                let key = (report.site.clone(), line);
                if let Some(live) = state.lines.get_mut(&key) {
                    Arc::make_mut(live).class_bps = class_bps;
                    let (key, live) = state.lines.get_key_value(&key).expect("just updated");
                    let update = (key.clone(), live.clone());
                    state.line_updated(update.0, update.1);
                }
            }
            if let Some(live) = state.agents.get_mut(&report.site) {
                live.last_report_ms = Some(now);
            }
        }
        for event in &report.events {
            tracing::info!(site = %report.site, line = %event.line, from = ?event.from, to = ?event.to, reason = %event.reason, "line health changed");
        }
        self.shared.metrics.on_report();
        if let Err(mpsc::error::TrySendError::Full(report)) =
            self.shared.reports.try_send(Box::new(report))
        {
            tracing::debug!(site = %report.site, "planner behind; report kept as live state only");
        }
        Ok(())
    }

    /// An agent acked a rule set: track what it runs, and the push latency.
    pub fn ack(&self, token_site: &str, ack: Ack) -> Result<Drift, SessionError> {
        self.check_site(token_site, &ack.site)?;
        let id = RuleSetId {
            version: ack.version,
            hash: ack.hash.clone(),
        };
        let mut state = self.state();
        let mut latency = None;
        let published = state.published.get_mut(&ack.site).map(|p| {
            if p.rule_set.hash == ack.hash
                && ack.outcome == wansteer_wire::session::AckOutcome::Applied
                && !p.latency_seen
            {
                p.latency_seen = true;
                latency = p.at.map(|at| at.elapsed().as_secs_f64());
            }
            RuleSetId::of(&p.rule_set)
        });
        let Some(live) = state.agents.get_mut(&ack.site) else {
            // Acks before registering are ignored: the agent registers on every connection.
            return Ok(drift(published.as_ref(), None));
        };
        live.record.on_ack(id, &ack.outcome, now_ms());
        let record = live.record.clone();
        drop(state);
        if let Some(seconds) = latency {
            self.shared.metrics.on_push_applied(seconds);
        }
        if let wansteer_wire::session::AckOutcome::Failed { error } = &ack.outcome {
            tracing::warn!(site = %ack.site, version = ack.version, %error, "agent failed to apply rule set");
        }
        self.agent_changed(&record);
        Ok(drift(published.as_ref(), Some(&record)))
    }

    /// The push channel of a site (created on first use).
    pub fn subscribe(&self, site: &str) -> watch::Receiver<Option<Pushed>> {
        let mut state = self.state();
        state
            .channels
            .entry(site.to_string())
            .or_insert_with(|| watch::Sender::new(None))
            .subscribe()
    }

    /// Counts an open push stream; the guard uncounts it when dropped.
    pub fn stream_opened(&self, site: &str) -> StreamGuard {
        let mut state = self.state();
        if let Some(live) = state.agents.get_mut(site) {
            live.streams += 1;
        }
        state.connected += 1;
        self.shared.metrics.set_connected(state.connected);
        StreamGuard {
            controller: self.clone(),
            site: site.to_string(),
        }
    }

    /// Push streams open now.
    pub fn connected_agents(&self) -> u64 {
        self.state().connected.max(0) as u64
    }

    // ----- views for the API -----

    /// Published rule sets, by site.
    pub fn published(&self) -> BTreeMap<String, Arc<RuleSet>> {
        self.state()
            .published
            .iter()
            .map(|(site, p)| (site.clone(), p.rule_set.clone()))
            .collect()
    }

    /// Every agent with its drift, by site (sites of the policy without agents included).
    pub fn agents(&self) -> Vec<AgentView> {
        let state = self.state();
        let mut sites: Vec<String> = state
            .policy
            .policy
            .sites
            .iter()
            .map(|s| s.name.clone())
            .collect();
        let known: std::collections::BTreeSet<String> = sites.iter().cloned().collect();
        for site in state.agents.keys() {
            if !known.contains(site) {
                sites.push(site.clone());
            }
        }
        sites
            .into_iter()
            .map(|site| {
                let published = state
                    .published
                    .get(&site)
                    .map(|p| RuleSetId::of(&p.rule_set));
                let live = state.agents.get(&site);
                AgentView {
                    drift: drift(published.as_ref(), live.map(|l| &l.record)),
                    connected: live.is_some_and(|l| l.streams > 0),
                    last_report_ms: live.and_then(|l| l.last_report_ms),
                    agent: live.map(|l| l.record.clone()),
                    published,
                    site,
                }
            })
            .collect()
    }

    /// Latest measurement per (site, line) (a copy: for API requests, not for polling).
    pub fn lines(&self) -> BTreeMap<(String, String), LineLive> {
        self.state()
            .lines
            .iter()
            .map(|(key, live)| ((**key).clone(), (**live).clone()))
            .collect()
    }

    /// The line updates since the last call (the first call: every line's latest). Cheap
    /// under the state lock whatever the number of lines: the updates were collected as
    /// reports came in, and this only swaps the list out.
    pub fn take_line_updates(&self) -> Vec<LineUpdate> {
        let mut state = self.state();
        if !state.line_feed_on {
            state.line_feed_on = true;
            return state
                .lines
                .iter()
                .map(|(key, live)| (key.clone(), live.clone()))
                .collect();
        }
        std::mem::take(&mut state.line_feed)
    }

    /// Grows with every line update; unchanged means no line changed.
    pub fn lines_seq(&self) -> u64 {
        self.state().lines_seq
    }

    /// Newest decisions last, filtered, at most `limit`.
    pub fn decisions(
        &self,
        site: Option<&str>,
        class: Option<&str>,
        limit: usize,
    ) -> Vec<DecisionRecord> {
        let state = self.state();
        let mut picked: Vec<DecisionRecord> = state
            .decisions
            .iter()
            .rev()
            .filter(|d| site.is_none_or(|s| d.site == s))
            .filter(|d| class.is_none_or(|c| d.class == c))
            .take(limit)
            .cloned()
            .collect();
        picked.reverse();
        picked
    }

    // ----- publishing (planner task only) -----

    /// Publishes a plan: sites whose content hash changed get the next version, persisted
    /// before it is sent. Returns the sites republished. Works through the sites a chunk at
    /// a time (hash, serialise, one commit, send), so the first agents get theirs while the
    /// rest are still prepared.
    ///
    /// With `policy` (a new version and the plan made under it), the version is recorded in
    /// the same commit as every rule set of the plan and brought in force with them; an
    /// error means neither happened.
    fn publish(
        &self,
        plan: Plan,
        compiled_from: u64,
        policy: Option<(&PolicyVersion, &Arc<Policy>)>,
    ) -> Result<Vec<String>, String> {
        let mut sites = Vec::new();
        let mut rule_sets = plan.rule_sets.into_iter().peekable();
        // A new policy goes in one commit with all of its rule sets.
        let chunk_size = if policy.is_some() {
            usize::MAX
        } else {
            PUBLISH_CHUNK
        };
        let mut result = Ok(());
        let mut first = true;
        while first || rule_sets.peek().is_some() {
            let chunk: Vec<(String, RuleSet)> = rule_sets.by_ref().take(chunk_size).collect();
            let policy = if first { policy } else { None };
            first = false;
            match self.publish_chunk(chunk, compiled_from, policy) {
                Ok(published) => sites.extend(published),
                Err(error) => {
                    result = Err(error);
                    break;
                }
            }
        }
        if !plan.decisions.is_empty() && result.is_ok() {
            self.record_decisions(plan.decisions);
        }
        result.map(|()| sites)
    }

    /// One chunk of [`Controller::publish`]; an error when it could not be persisted (then
    /// nothing of it is sent, and later chunks are not tried).
    fn publish_chunk(
        &self,
        chunk: Vec<(String, RuleSet)>,
        compiled_from: u64,
        policy: Option<(&PolicyVersion, &Arc<Policy>)>,
    ) -> Result<Vec<String>, String> {
        // Hash outside the lock: with thousands of sites this is the expensive part. A rule
        // set the planner sealed for this site already carries its content hash.
        let started = Instant::now();
        let hashed: Vec<(RuleSet, String)> = chunk
            .into_iter()
            .map(|(site, mut rule_set)| {
                let sealed = !rule_set.hash.is_empty() && rule_set.site == site;
                rule_set.site = site;
                let hash = if sealed {
                    std::mem::take(&mut rule_set.hash)
                } else {
                    rule_set.content_hash()
                };
                (rule_set, hash)
            })
            .collect();
        let mut fresh = Vec::new();
        {
            let state = self.state();
            for (mut rule_set, hash) in hashed {
                let previous = state.published.get(&rule_set.site);
                if previous.is_some_and(|p| p.rule_set.hash == hash) {
                    continue;
                }
                rule_set.version = previous.map_or(1, |p| p.rule_set.version + 1);
                rule_set.hash = hash;
                fresh.push(rule_set);
            }
        }
        if fresh.is_empty() && policy.is_none() {
            return Ok(Vec::new());
        }
        let fresh: Vec<Pushed> = fresh.into_iter().map(Pushed::new).collect();
        let prepared = Instant::now();
        let records = fresh
            .iter()
            .map(|p| (p.rule_set.site.as_str(), p.json.as_ref()));
        if let Err(error) = self.shared.store.save_published(
            policy.map(|(record, _)| record),
            compiled_from,
            records,
        ) {
            // Not persisted means not published: a restart must not reuse the versions.
            tracing::error!(%error, "cannot record rule sets; not publishing them");
            return Err(error.to_string());
        }
        let committed = Instant::now();
        let mut sites = Vec::with_capacity(fresh.len());
        let mut state = self.state();
        if let Some((record, policy)) = policy {
            if state.history.last().map(|h| h.version) != Some(record.version) {
                state.history.push(record.clone());
            }
            state.policy = CurrentPolicy {
                record: record.clone(),
                // Shared, not copied: a 10,000-site policy takes a while to clone, and
                // this runs under the state lock.
                policy: policy.clone(),
            };
        }
        let at = Instant::now();
        for pushed in fresh {
            let rule_set = pushed.rule_set.clone();
            let site = rule_set.site.clone();
            state.published.insert(
                site.clone(),
                Published {
                    rule_set,
                    at: Some(at),
                    latency_seen: false,
                },
            );
            state
                .channels
                .entry(site.clone())
                .or_insert_with(|| watch::Sender::new(None))
                .send_replace(Some(pushed));
            sites.push(site);
        }
        if policy.is_some() {
            let metrics = &self.shared.metrics;
            metrics.policy_phase("prepare", prepared - started);
            metrics.policy_phase("commit", committed - prepared);
            metrics.policy_phase("send", committed.elapsed());
        }
        drop(state);
        Ok(sites)
    }

    fn record_decisions(&self, decisions: Vec<DecisionRecord>) {
        for decision in &decisions {
            self.shared
                .metrics
                .on_decision(&decision.site, &decision.class);
            self.shared
                .audit
                .record(&AuditEntry::Decision(decision.clone()));
        }
        let mut state = self.state();
        match self
            .shared
            .store
            .save_decisions(state.decision_seq, &decisions)
        {
            Ok(next) => state.decision_seq = next,
            Err(error) => tracing::error!(%error, "cannot record decisions"),
        }
        for decision in decisions {
            if state.decisions.len() == DECISIONS_IN_MEMORY {
                state.decisions.pop_front();
            }
            state.decisions.push_back(decision);
        }
    }
}

/// One row of the agents view.
#[derive(Debug, Clone, Serialize)]
pub struct AgentView {
    pub site: String,
    pub drift: Drift,
    pub connected: bool,
    pub published: Option<RuleSetId>,
    pub agent: Option<AgentRecord>,
    pub last_report_ms: Option<u64>,
}

/// Uncounts an open push stream when dropped.
#[derive(Debug)]
pub struct StreamGuard {
    controller: Controller,
    site: String,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let mut state = self.controller.state();
        if let Some(live) = state.agents.get_mut(&self.site) {
            live.streams = live.streams.saturating_sub(1);
        }
        state.connected -= 1;
        self.controller
            .shared
            .metrics
            .set_connected(state.connected);
    }
}

/// Writes queued agent records, a batch at a time, until shutdown.
async fn registry_writer(shared: std::sync::Weak<Shared>, mut closing: watch::Receiver<bool>) {
    loop {
        let Some(notified) = shared.upgrade() else {
            return;
        };
        tokio::select! {
            () = notified.agents_dirty.notified() => {}
            _ = closing.wait_for(|closing| *closing) => return,
        }
        drop(notified);
        // Let a burst of acks gather into one commit.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let controller = Controller { shared };
        tokio::task::spawn_blocking(move || controller.flush_agents())
            .await
            .ok();
    }
}

struct PlannerTask {
    /// Weak, so the task never keeps a closed controller alive.
    controller: std::sync::Weak<Shared>,
    closing: watch::Receiver<bool>,
    planner: Box<dyn Planning>,
    interval: Duration,
    /// The policy in force and its version (what a failed policy change reverts to).
    policy: Arc<Policy>,
    policy_version: u64,
}

impl PlannerTask {
    async fn run(
        mut self,
        mut control: mpsc::Receiver<PlannerInput>,
        mut reports: mpsc::Receiver<Box<Report>>,
        restored: Vec<RuleSet>,
        memory: Option<String>,
        plan_now: bool,
        startup: Option<(PolicyVersion, PolicyDone)>,
    ) {
        self.planner.on_policy(&self.policy);
        if !restored.is_empty() || memory.is_some() {
            self.planner.restore(&restored, memory.as_deref());
        }
        match startup {
            Some((record, done)) => {
                let policy = self.policy.clone();
                let _ = done.send(self.plan_policy(record, policy));
            }
            None if plan_now => {
                self.plan();
            }
            None => {}
        }
        let mut dirty = false;
        let mut closing = self.closing.clone();
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut memory_tick = tokio::time::interval(MEMORY_SAVE_INTERVAL);
        memory_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = closing.wait_for(|closing| *closing) => break,
                input = control.recv() => {
                    let Some(input) = input else { break };
                    match input {
                        PlannerInput::Policy(policy, record, done) => {
                            let _ = done.send(self.plan_policy(*record, policy));
                            dirty = false;
                        }
                        PlannerInput::Settle(done) => {
                            while let Ok(report) = reports.try_recv() {
                                self.planner.on_report(&report);
                                dirty = true;
                            }
                            if dirty {
                                self.plan();
                                dirty = false;
                            }
                            let _ = done.send(());
                        }
                    }
                }
                // Before the reports: a steady stream of them must not starve planning.
                _ = tick.tick(), if dirty => {
                    dirty = false;
                    self.plan();
                }
                _ = memory_tick.tick() => self.save_memory(),
                report = reports.recv() => {
                    let Some(report) = report else { break };
                    self.planner.on_report(&report);
                    dirty = true;
                    // Take in what else is queued, a bounded batch at a time, so a policy
                    // change or a due plan gets its turn.
                    for _ in 0..16_384 {
                        match reports.try_recv() {
                            Ok(report) => self.planner.on_report(&report),
                            Err(_) => break,
                        }
                    }
                }
            }
        }
        self.save_memory();
        if let Some(shared) = self.controller.upgrade() {
            shared.planner_stopped.send_replace(true);
        }
    }

    /// Writes the planner's line memory when it changed.
    fn save_memory(&mut self) {
        let Some(shared) = self.controller.upgrade() else {
            return;
        };
        let planner = &mut self.planner;
        off_runtime(|| {
            let Some(json) = planner.memory_if_changed(now_ms()) else {
                return;
            };
            if let Err(error) = shared.store.save_planner_memory(&json) {
                tracing::warn!(%error, "cannot record the planner's line memory");
            }
        });
    }

    /// Plans and publishes under the policy in force.
    fn plan(&mut self) -> Vec<String> {
        let Some(shared) = self.controller.upgrade() else {
            return Vec::new();
        };
        let planner = &mut self.planner;
        let version = self.policy_version;
        off_runtime(|| {
            let plan = planner.plan(now_ms());
            Controller { shared }
                .publish(plan, version, None)
                .unwrap_or_default()
        })
    }

    /// Plans under a new policy version and records both in one commit; when that fails,
    /// the planner goes back to the policy in force and nothing changed.
    fn plan_policy(
        &mut self,
        record: PolicyVersion,
        policy: Arc<Policy>,
    ) -> Result<Vec<String>, String> {
        let Some(shared) = self.controller.upgrade() else {
            return Err("the controller is shutting down".into());
        };
        let planner = &mut self.planner;
        let result = off_runtime(|| {
            let started = Instant::now();
            planner.on_policy(&policy);
            let plan = planner.plan(now_ms());
            shared.metrics.policy_phase("plan", started.elapsed());
            Controller { shared }.publish(plan, record.version, Some((&record, &policy)))
        });
        match result {
            Ok(sites) => {
                self.policy = policy;
                self.policy_version = record.version;
                Ok(sites)
            }
            Err(error) => {
                self.planner.on_policy(&self.policy);
                Err(error)
            }
        }
    }
}
