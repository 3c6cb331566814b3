//! Load generator for the controller: N simulated agents over loopback, each registering,
//! holding a push stream, acking rule sets and reporting once a second. Measures report
//! ingestion, the time from a policy change until every agent has the new rule set, and
//! the controller's RSS (it runs as a child process so the figure is its own).
//!
//!     cargo run --release -p wansteer-controller --example loadgen -- --agents 10000 --seconds 20
//!
//! The planner inside is a benchmark fixture, not the product's solver: it puts every class
//! on each site's first line, so the figures are the service's (ingestion, hashing,
//! persistence, push fan-out), not the path solver's.
//!
//! Options:
//! - `--pin`: the controller runs on CPU 0 and the generator on CPU 1 (the two share the
//!   machine's 2 cores otherwise, and the generator's 10,000 agents starve the controller);
//! - `--restart`: after the push, restart the controller gracefully (same port and state)
//!   and measure how soon the agents are back; `--ignore-restart-hint` makes them back off
//!   exponentially as before the `restarting` event;
//! - `--full-parse`: each simulated agent decodes the whole rule set and checks its seal, as
//!   a real agent does; by default it reads only `version` and `hash` from the event, since
//!   a generator that does 10,000 agents' work on the controller's machine measures itself.
//!
//! For the same reason the agents' reports and acks go over hand-written HTTP/1.1 on pooled
//! keep-alive connections ([`Posts`]), each report serialised once: through reqwest the
//! generator's core ran at 100% before the policy change. Registration and the push streams
//! still use reqwest.
//!
//! After the policy change it prints where the time went: the policy check and diff (timed
//! here on the same text, the controller does the same work), the fixture's plan (printed
//! by the child), the rest of the PUT (hashing, JSON, the durable commit, the audit log),
//! and the fan-out after the PUT answered.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use std::io::Write as _;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::{Mutex, Semaphore, watch};
use wansteer_agent::control::Backoff;
use wansteer_agent::control::sse::SseDecoder;
use wansteer_controller::audit::Retention;
use wansteer_controller::auth::TokensFile;
use wansteer_controller::planning::{Plan, Planning};
use wansteer_controller::service::{Controller, ControllerConfig};
use wansteer_policies::Policy;
use wansteer_wire::ruleset::{ClassRoute, ClassSpec, LineSpec, RuleSet};
use wansteer_wire::session::{
    Ack, AckOutcome, EVENT_RESTARTING, EVENT_RULE_SET, LineHealth, LineMeasurement, Push, Register,
    Report, RuleSetId,
};

/// What a cheap simulated agent reads from a `rule-set` event.
#[derive(serde::Deserialize)]
struct RuleSetHead {
    version: u64,
    hash: String,
}

/// Benchmark fixture planner: every class on the site's first line. Reports never move
/// anything, so like an incremental planner it returns rule sets only after a policy change.
#[derive(Default)]
struct FirstLine {
    policy: Option<Policy>,
    changed: bool,
}

impl Planning for FirstLine {
    fn on_policy(&mut self, policy: &Policy) {
        self.policy = Some(policy.clone());
        self.changed = true;
    }
    fn on_report(&mut self, _report: &Report) {}
    fn plan(&mut self, _now_ms: u64) -> Plan {
        let Some(policy) = &self.policy else {
            return Plan::default();
        };
        if !std::mem::take(&mut self.changed) {
            return Plan::default();
        }
        let started = Instant::now();
        let plan = self.plan_every_site(policy);
        eprintln!(
            "controller: fixture planned {} sites in {:.0} ms",
            plan.rule_sets.len(),
            started.elapsed().as_secs_f64() * 1000.0
        );
        plan
    }
}

impl FirstLine {
    fn plan_every_site(&self, policy: &Policy) -> Plan {
        let classes: Vec<ClassSpec> = policy
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
            .collect();
        let mut rule_sets = BTreeMap::new();
        for site in &policy.sites {
            let line = &site.lines[0];
            rule_sets.insert(
                site.name.clone(),
                RuleSet {
                    site: site.name.clone(),
                    version: 0,
                    hash: String::new(),
                    classes: classes.clone(),
                    default_class: "default".into(),
                    lines: site
                        .lines
                        .iter()
                        .map(|l| LineSpec {
                            name: l.name.clone(),
                            interface: l.interface.clone(),
                            gateway: l.gateway,
                            gateway6: None,
                            rate_bps: l.up.bps(),
                            shares: vec![],
                        })
                        .collect(),
                    routes: policy
                        .classes
                        .iter()
                        .map(|c| ClassRoute {
                            class: c.name.clone(),
                            destination: "10.0.0.0/8".parse().unwrap(),
                            primary: line.name.clone(),
                            backups: site.lines[1..].iter().map(|l| l.name.clone()).collect(),
                            reason: "first line".into(),
                        })
                        .collect(),
                },
            );
        }
        Plan {
            rule_sets,
            decisions: vec![],
        }
    }
}

fn policy(sites: usize, extra_class: bool) -> String {
    let mut text = String::from("name: loadgen\nsites:\n");
    for i in 0..sites {
        text.push_str(&format!(
            "  - name: s{i}\n    kind: branch\n    lines:\n      - {{ name: mpls, transport: mpls, interface: wan0, gateway: 192.0.2.1, up: 50mbit, down: 50mbit }}\n      - {{ name: inet, transport: internet, interface: wan1, up: 100mbit, down: 100mbit }}\n"
        ));
    }
    text.push_str("classes:\n  - name: voice\n    priority: 1\n    dscp: EF\n");
    if extra_class {
        text.push_str("  - name: video\n    priority: 2\n    dscp: AF41\n");
    }
    text.push_str("  - name: default\n    priority: 7\n");
    text
}

fn flag(name: &str) -> bool {
    std::env::args().any(|a| a == name)
}

/// Pins the calling thread (and the threads it starts afterwards) to one CPU.
fn pin_to_cpu(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET writes inside it, and
    // sched_setaffinity reads it for the calling thread (pid 0).
    let ok = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    };
    assert!(ok, "cannot pin to CPU {cpu}");
}

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The child's `/proc/PID/status`, opened once: with 10,000 agents the generator runs at
/// its open-files limit, and opening the file later fails (RSS read as 0).
static STATUS: std::sync::OnceLock<std::sync::Mutex<std::fs::File>> = std::sync::OnceLock::new();

/// The child's CPU time so far (user + system), from `/proc/PID/stat`; opened once, like
/// [`rss_kib`]'s file, so a generator short of file descriptors can still read it.
fn cpu_seconds(pid: u32) -> f64 {
    use std::io::{Read, Seek};
    static STAT: std::sync::OnceLock<std::sync::Mutex<std::fs::File>> = std::sync::OnceLock::new();
    let stat = STAT.get_or_init(|| {
        std::sync::Mutex::new(std::fs::File::open(format!("/proc/{pid}/stat")).unwrap())
    });
    let mut text = String::new();
    let mut file = stat.lock().unwrap();
    if file.rewind().is_err() || file.read_to_string(&mut text).is_err() {
        return 0.0;
    }
    // Fields after the command name (which may hold spaces): utime and stime are the
    // 12th and 13th of them.
    let after_name = text.rsplit_once(')').map_or("", |(_, rest)| rest);
    let ticks: f64 = after_name
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse::<f64>().ok())
        .sum();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks / hz
}

fn rss_kib(pid: u32, field: &str) -> u64 {
    use std::io::{Read, Seek};
    let status = STATUS.get_or_init(|| {
        std::sync::Mutex::new(std::fs::File::open(format!("/proc/{pid}/status")).unwrap())
    });
    let mut text = String::new();
    let mut file = status.lock().unwrap();
    if file.rewind().is_err() || file.read_to_string(&mut text).is_err() {
        return 0;
    }
    text.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Child mode: run the controller on 127.0.0.1 (the port in DIR/listen_port if there is
/// one, else any) and write the port to DIR/port; shut down gracefully when `stop` fires.
async fn serve(dir: PathBuf, stop: tokio::sync::oneshot::Receiver<()>) {
    let text = std::fs::read_to_string(dir.join("policy.yaml")).unwrap();
    let tokens = TokensFile::load(&dir.join("tokens.yaml")).unwrap();
    let config = ControllerConfig {
        state_dir: dir.join("state"),
        policy_file: "policy.yaml".into(),
        policy_text: text,
        tokens,
        token_source: wansteer_controller::auth::TokenSource::Given,
        retention: Retention::default(),
        plan_interval: Duration::from_millis(200),
        report_interval: Duration::from_secs(1),
        metrics_public: false,
        check: Default::default(),
    };
    let controller = Controller::start(config, Box::new(FirstLine::default()))
        .await
        .unwrap();
    let port: u16 = std::fs::read_to_string(dir.join("listen_port"))
        .ok()
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or(0);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    std::fs::write(
        dir.join("port.tmp"),
        listener.local_addr().unwrap().port().to_string(),
    )
    .unwrap();
    std::fs::rename(dir.join("port.tmp"), dir.join("port")).unwrap();
    let closing = controller.clone();
    tokio::spawn(async move {
        let _ = stop.await;
        // As on SIGTERM: push streams end with `restarting`, then the server stops.
        closing.begin_shutdown();
    });
    let mut flag = controller.closing();
    wansteer_controller::api::serve(listener, controller.clone(), async move {
        let _ = flag.wait_for(|closing| *closing).await;
    })
    .await
    .unwrap();
    controller.close().unwrap();
}

/// Reports and acks in flight at most. The generator holds one push stream per agent, and
/// its open-files limit here is 20,000: without a cap, a slow controller makes reports and
/// acks pile up until connects fail with EMFILE (the policy PUT among them).
const REQUESTS_IN_FLIGHT: usize = 4096;

fn in_flight() -> &'static Semaphore {
    static REQUESTS: std::sync::OnceLock<Semaphore> = std::sync::OnceLock::new();
    REQUESTS.get_or_init(|| Semaphore::new(REQUESTS_IN_FLIGHT))
}

/// Keep-alive HTTP/1.1 connections for the simulated agents' reports and acks, written and
/// read by hand. Through reqwest each of these requests cost the generator more CPU than
/// the controller spends answering it, so with 10,000 agents the generator's core, not the
/// controller's, set the pace of the fan-out (it ran at 100% before the policy change).
/// Any agent uses any idle connection: the bearer token is per request.
struct Posts {
    addr: std::net::SocketAddr,
    idle: std::sync::Mutex<Vec<BufReader<TcpStream>>>,
}

impl Posts {
    fn new(addr: std::net::SocketAddr) -> Posts {
        Posts {
            addr,
            idle: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// POSTs `body` (JSON) to `path` as `token`; the response status. A pooled connection
    /// the controller closed meanwhile is retried once on a new one.
    async fn post(&self, path: &str, token: &str, body: &[u8]) -> std::io::Result<u16> {
        let mut request = Vec::with_capacity(160 + token.len() + body.len());
        let _ = write!(
            request,
            "POST {path} HTTP/1.1\r\nhost: loadgen\r\nauthorization: Bearer {token}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        request.extend_from_slice(body);
        let pooled = self.idle.lock().unwrap().pop();
        if let Some(connection) = pooled
            && let Ok(status) = self.exchange(connection, &request).await
        {
            return Ok(status);
        }
        let fresh = BufReader::new(TcpStream::connect(self.addr).await?);
        self.exchange(fresh, &request).await
    }

    async fn exchange(
        &self,
        mut connection: BufReader<TcpStream>,
        request: &[u8],
    ) -> std::io::Result<u16> {
        connection.get_mut().write_all(request).await?;
        let mut status = 0;
        let mut length = 0;
        let mut keep = true;
        let mut line = String::new();
        loop {
            line.clear();
            if connection.read_line(&mut line).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            if status == 0 {
                status = line
                    .split(' ')
                    .nth(1)
                    .and_then(|code| code.parse().ok())
                    .ok_or(std::io::ErrorKind::InvalidData)?;
                continue;
            }
            if line == "\r\n" {
                break;
            }
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            if name.eq_ignore_ascii_case("content-length") {
                length = value
                    .trim()
                    .parse()
                    .map_err(|_| std::io::ErrorKind::InvalidData)?;
            } else if name.eq_ignore_ascii_case("connection") {
                keep = !value.trim().eq_ignore_ascii_case("close");
            }
        }
        let mut body = vec![0; length];
        connection.read_exact(&mut body).await?;
        if keep {
            self.idle.lock().unwrap().push(connection);
        }
        Ok(status)
    }
}

#[derive(Default)]
struct Stats {
    registered: AtomicU64,
    have_v1: AtomicU64,
    reports_ok: AtomicU64,
    reports_failed: AtomicU64,
    acks: AtomicU64,
    errors: AtomicU64,
    push_ms: Mutex<Vec<f64>>,
    /// When agents got their push stream back after a controller restart.
    reconnect_at: Mutex<Vec<Instant>>,
}

#[allow(clippy::too_many_arguments)]
async fn agent(
    i: usize,
    http: reqwest::Client,
    posts: Arc<Posts>,
    base: String,
    token: String,
    stats: Arc<Stats>,
    changed_at: watch::Receiver<Option<Instant>>,
    gate: Arc<Semaphore>,
) {
    let full_parse = FULL_PARSE.load(Ordering::Relaxed);
    let site = format!("s{i}");
    let connect = |running: Option<RuleSetId>| {
        let (http, base, token, site, gate) = (&http, &base, &token, &site, &gate);
        async move {
            let _permit = gate.acquire().await.unwrap();
            let hash = running.as_ref().map(|r| r.hash.clone());
            let register = Register {
                protocol: wansteer_wire::PROTOCOL_VERSION,
                site: site.clone(),
                agent_version: "loadgen".into(),
                lines: vec![],
                running,
            };
            http.post(format!("{base}/api/v1/agent/register"))
                .bearer_auth(token)
                .json(&register)
                .send()
                .await?
                .error_for_status()?;
            let url = match hash {
                Some(hash) => format!("{base}/api/v1/agent/rules?hash={hash}"),
                None => format!("{base}/api/v1/agent/rules"),
            };
            http.get(url)
                .bearer_auth(token)
                .send()
                .await?
                .error_for_status()
        }
    };
    let response = match connect(None).await {
        Ok(response) => response,
        Err(error) => {
            if stats.errors.fetch_add(1, Ordering::Relaxed) < 5 {
                eprintln!("agent {i}: {error}");
            }
            return;
        }
    };
    stats.registered.fetch_add(1, Ordering::Relaxed);
    // Reports once a second, spread over the second.
    {
        let (posts, token, stats) = (posts.clone(), token.clone(), stats.clone());
        // The same report every second: serialised once (the controller parses it each time).
        let report = serde_json::to_vec(&Report {
            site: site.clone(),
            at_ms: 0,
            lines: ["mpls", "inet"]
                .into_iter()
                .map(|line| LineMeasurement {
                    line: line.into(),
                    rtt_ms: 20.0,
                    loss_percent: 0.1,
                    loss_bounds_percent: None,
                    jitter_ms: 1.0,
                    samples: 20,
                    health: LineHealth::Up,
                })
                .collect(),
            events: vec![],
            demand: vec![],
        })
        .unwrap();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis((i as u64 * 7919) % 1000)).await;
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                let _permit = in_flight().acquire().await.unwrap();
                let ok = posts
                    .post("/api/v1/agent/report", &token, &report)
                    .await
                    .is_ok_and(|status| (200..300).contains(&status));
                let counter = if ok {
                    &stats.reports_ok
                } else {
                    &stats.reports_failed
                };
                counter.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    let mut stream = response.bytes_stream();
    let mut decoder = SseDecoder::new();
    let mut running: Option<RuleSetId> = None;
    let mut restart_window: Option<Duration> = None;
    loop {
        let Some(Ok(chunk)) = stream.next().await else {
            // The controller went away: reconnect as the agent's client does.
            if !RESTARTS.load(Ordering::Relaxed) {
                return;
            }
            let mut backoff = Backoff::default();
            if let Some(window) = restart_window.take()
                && !IGNORE_HINT.load(Ordering::Relaxed)
            {
                backoff.expect_restart(window);
            }
            loop {
                tokio::time::sleep(backoff.next_delay()).await;
                if let Ok(response) = connect(running.clone()).await {
                    stats.reconnect_at.lock().await.push(Instant::now());
                    stream = response.bytes_stream();
                    decoder = SseDecoder::new();
                    break;
                }
            }
            continue;
        };
        for event in decoder.feed(&chunk) {
            if event.event == EVENT_RESTARTING {
                if let Ok(Push::Restarting(r)) = Push::decode(&event.event, &event.data) {
                    restart_window = Some(Duration::from_millis(r.reconnect_within_ms));
                }
                continue;
            }
            let rule_set = if full_parse {
                let Ok(Push::RuleSet(rule_set)) = Push::decode(&event.event, &event.data) else {
                    continue;
                };
                assert!(rule_set.is_sealed());
                RuleSetHead {
                    version: rule_set.version,
                    hash: rule_set.hash,
                }
            } else {
                if event.event != EVENT_RULE_SET {
                    continue;
                }
                let Ok(head) = serde_json::from_str::<RuleSetHead>(&event.data) else {
                    continue;
                };
                head
            };
            running = Some(RuleSetId {
                version: rule_set.version,
                hash: rule_set.hash.clone(),
            });
            let changed = *changed_at.borrow();
            if rule_set.version == 1 {
                stats.have_v1.fetch_add(1, Ordering::Relaxed);
            } else if let Some(at) = changed {
                stats
                    .push_ms
                    .lock()
                    .await
                    .push(at.elapsed().as_secs_f64() * 1000.0);
            }
            let ack = Ack {
                site: site.clone(),
                version: rule_set.version,
                hash: rule_set.hash.clone(),
                outcome: AckOutcome::Applied,
            };
            let ack = serde_json::to_vec(&ack).unwrap();
            let _permit = in_flight().acquire().await.unwrap();
            let acked = posts
                .post("/api/v1/agent/ack", &token, &ack)
                .await
                .is_ok_and(|status| (200..300).contains(&status));
            if acked {
                stats.acks.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// `wansteer_reports_total` from one `/metrics` scrape, and how long the scrape took and
/// how many bytes it carried.
async fn reports_total(http: &reqwest::Client, base: &str, viewer: &str) -> (u64, Duration, usize) {
    let started = Instant::now();
    let scrape = http.get(format!("{base}/metrics")).bearer_auth(viewer);
    let text = match scrape.send().await {
        Ok(response) => response.text().await.unwrap_or_default(),
        Err(error) => {
            eprintln!("metrics scrape failed: {error}");
            return (0, started.elapsed(), 0);
        }
    };
    let took = started.elapsed();
    let total = text
        .lines()
        .find(|l| l.starts_with("wansteer_reports_total "))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0) as u64;
    (total, took, text.len())
}

/// The controller's `wansteer_policy_change_phase_seconds`: where the last policy change
/// spent its time before the sends, e.g. `check 412 ms, plan 60 ms, …`.
async fn policy_phases(http: &reqwest::Client, base: &str, viewer: &str) -> String {
    let scrape = http.get(format!("{base}/metrics")).bearer_auth(viewer);
    let text = match scrape.send().await {
        Ok(response) => response.text().await.unwrap_or_default(),
        Err(error) => return format!("metrics scrape failed: {error}"),
    };
    ["check", "plan", "prepare", "commit", "send"]
        .iter()
        .map(|phase| {
            let prefix = format!("wansteer_policy_change_phase_seconds{{phase=\"{phase}\"}} ");
            let seconds = text
                .lines()
                .find_map(|l| l.strip_prefix(prefix.as_str()))
                .and_then(|v| v.trim().parse::<f64>().ok())
                .unwrap_or(f64::NAN);
            format!("{phase} {:.0} ms", seconds * 1000.0)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank]
}

async fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        if start.elapsed() > limit {
            eprintln!("gave up waiting for {what} after {limit:?}");
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Starts the controller child (the child exits when its stdin closes, so it never outlives
/// this process).
fn spawn_controller(root: &Path, pin: bool) -> std::process::Child {
    let exe = std::env::current_exe().unwrap();
    let mut command = if pin {
        let mut command = std::process::Command::new("taskset");
        command.args(["-c", "0"]).arg(&exe);
        command
    } else {
        std::process::Command::new(&exe)
    };
    command
        .args(["serve", root.to_str().unwrap()])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// `--full-parse`: simulated agents decode and check whole rule sets.
static FULL_PARSE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
/// `--restart`: agents reconnect when their stream ends (the controller is restarted).
static RESTARTS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
/// `--ignore-restart-hint`: agents back off exponentially even after `restarting`.
static IGNORE_HINT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

async fn generate(agents: usize, seconds: u64, pin: bool, full_parse: bool) {
    FULL_PARSE.store(full_parse, Ordering::Relaxed);
    RESTARTS.store(flag("--restart"), Ordering::Relaxed);
    IGNORE_HINT.store(flag("--ignore-restart-hint"), Ordering::Relaxed);
    let dir = tempfile::tempdir().unwrap();
    let root: &Path = dir.path();
    std::fs::write(root.join("policy.yaml"), policy(agents, false)).unwrap();
    let names: Vec<String> = (0..agents).map(|i| format!("s{i}")).collect();
    let tokens = TokensFile::generate(names.iter().map(String::as_str));
    tokens.save(&root.join("tokens.yaml")).unwrap();
    let admin = tokens.api[0].token.clone();
    let viewer = tokens.api[1].token.clone();

    // The child exits when its stdin closes, so it never outlives this process.
    let mut child = spawn_controller(root, pin);
    println!(
        "generator: {} parse of pushes, {}",
        if full_parse {
            "full (agent-like)"
        } else {
            "version+hash only"
        },
        if pin {
            "controller pinned to CPU 0, generator to CPU 1"
        } else {
            "controller and generator share both CPUs"
        }
    );
    let started = Instant::now();
    wait_for("the controller", Duration::from_secs(120), || {
        root.join("port").exists()
    })
    .await;
    let port = std::fs::read_to_string(root.join("port")).unwrap();
    let base = format!("http://127.0.0.1:{port}");
    println!(
        "controller up after {:.2} s ({agents} sites), RSS {} MiB",
        started.elapsed().as_secs_f64(),
        rss_kib(child.id(), "VmRSS:") / 1024
    );

    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(4096)
        .build()
        .unwrap();
    // The admin's own connection, opened before the agents take the open-files budget.
    let admin_http = reqwest::Client::builder()
        .pool_idle_timeout(None)
        .build()
        .unwrap();
    admin_http
        .get(format!("{base}/api/v1/openapi.json"))
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .expect("the controller answers");
    let posts = Arc::new(Posts::new(
        format!("127.0.0.1:{port}")
            .parse()
            .expect("a loopback address"),
    ));
    let stats = Arc::new(Stats::default());
    let (changed_tx, changed_rx) = watch::channel(None);
    let gate = Arc::new(Semaphore::new(256));
    let connect_start = Instant::now();
    for (i, site) in tokens.agents.iter().enumerate() {
        assert_eq!(site.site, format!("s{i}"));
        tokio::spawn(agent(
            i,
            http.clone(),
            posts.clone(),
            base.clone(),
            site.token.clone(),
            stats.clone(),
            changed_rx.clone(),
            gate.clone(),
        ));
    }
    wait_for("every agent to hold v1", Duration::from_secs(180), || {
        stats.have_v1.load(Ordering::Relaxed) as usize
            + stats.errors.load(Ordering::Relaxed) as usize
            >= agents
    })
    .await;
    println!(
        "{} agents registered and got v1 in {:.2} s ({} failed to connect)",
        stats.have_v1.load(Ordering::Relaxed),
        connect_start.elapsed().as_secs_f64(),
        stats.errors.load(Ordering::Relaxed)
    );

    // Ingestion: reports per second accepted by the controller over the window.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (before, _, _) = reports_total(&http, &base, &viewer).await;
    let window = Instant::now();
    let cpu_before = cpu_seconds(child.id());
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let cpu_share = (cpu_seconds(child.id()) - cpu_before) / window.elapsed().as_secs_f64();
    let (after, scrape_took, scrape_bytes) = reports_total(&http, &base, &viewer).await;
    let rate = (after - before) as f64 / window.elapsed().as_secs_f64();
    println!(
        "ingestion: {rate:.0} reports/s accepted (offered {agents}/s), controller CPU {:.0}% of a core ({:.1} µs per report); agent-side failed reports so far: {}",
        cpu_share * 100.0,
        cpu_share * 1e6 / rate.max(1.0),
        stats.reports_failed.load(Ordering::Relaxed)
    );
    println!(
        "a /metrics scrape under load: {:.0} ms, {:.1} MB",
        scrape_took.as_secs_f64() * 1000.0,
        scrape_bytes as f64 / 1e6
    );
    println!(
        "controller RSS under load: {} MiB (peak {} MiB)",
        rss_kib(child.id(), "VmRSS:") / 1024,
        rss_kib(child.id(), "VmHWM:") / 1024
    );

    // The controller's policy check and diff, timed here on the same texts (same code).
    let (old_text, new_text) = (policy(agents, false), policy(agents, true));
    let started = Instant::now();
    let old = wansteer_policies::check_source("policy.yaml", &old_text).unwrap();
    let new = wansteer_policies::check_source("policy.yaml", &new_text).unwrap();
    let check_ms = started.elapsed().as_secs_f64() * 1000.0 / 2.0;
    let started = Instant::now();
    let changes = wansteer_policies::diff::diff(&old.policy, &new.policy).len();
    let diff_ms = started.elapsed().as_secs_f64() * 1000.0;
    drop((old, new));
    println!(
        "policy check of {} bytes: {check_ms:.0} ms; diff ({changes} changes): {diff_ms:.0} ms (timed in the generator)",
        new_text.len()
    );

    // A policy change: time until every agent received its new rule set.
    let acks_before = stats.acks.load(Ordering::Relaxed);
    let change = Instant::now();
    changed_tx.send_replace(Some(change));
    let response = admin_http
        .put(format!("{base}/api/v1/policy"))
        .bearer_auth(&admin)
        .body(policy(agents, true))
        .send()
        .await
        .expect("policy PUT");
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    let put_ms = change.elapsed().as_secs_f64() * 1000.0;
    println!(
        "policy PUT answered {status} after {:.0} ms ({} bytes)",
        change.elapsed().as_secs_f64() * 1000.0,
        body.len()
    );
    let have = stats.have_v1.load(Ordering::Relaxed) as usize;
    let stats_ref = stats.clone();
    let mut received = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        received = stats_ref.push_ms.lock().await.len();
        if received >= have {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut latencies = stats.push_ms.lock().await.clone();
    latencies.sort_by(f64::total_cmp);
    println!(
        "push after policy change: {received}/{have} agents got v2; p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        percentile(&latencies, 50.0),
        percentile(&latencies, 99.0),
        latencies.last().copied().unwrap_or(f64::NAN)
    );
    let first = latencies.first().copied().unwrap_or(f64::NAN);
    println!(
        "  of which: first agent had v2 at {first:.0} ms (PUT answered at {put_ms:.0} ms); fan-out from the first to the 99th percentile {:.0} ms",
        percentile(&latencies, 99.0) - first
    );
    let phases = policy_phases(&admin_http, &base, &viewer).await;
    println!("  controller's steps before the sends: {phases}");
    wait_for("acks", Duration::from_secs(30), || {
        stats.acks.load(Ordering::Relaxed) - acks_before >= received as u64
    })
    .await;
    println!(
        "acks for v2: {}; controller RSS after the push {} MiB (peak {} MiB)",
        stats.acks.load(Ordering::Relaxed) - acks_before,
        rss_kib(child.id(), "VmRSS:") / 1024,
        rss_kib(child.id(), "VmHWM:") / 1024
    );
    if RESTARTS.load(Ordering::Relaxed) {
        restart(root, &mut child, pin, &stats, received).await;
    }
    child.kill().ok();
    child.wait().unwrap();
}

/// Restarts the controller gracefully on the same port and state, and measures how soon
/// the agents are back.
async fn restart(
    root: &Path,
    child: &mut std::process::Child,
    pin: bool,
    stats: &Stats,
    agents: usize,
) {
    let port = std::fs::read_to_string(root.join("port")).unwrap();
    std::fs::write(root.join("listen_port"), &port).unwrap();
    std::fs::remove_file(root.join("port")).unwrap();
    let stopping = Instant::now();
    drop(child.stdin.take());
    let _ = tokio::task::block_in_place(|| child.wait());
    let stopped_after = stopping.elapsed();
    *child = spawn_controller(root, pin);
    wait_for("the restarted controller", Duration::from_secs(120), || {
        root.join("port").exists()
    })
    .await;
    let up = Instant::now();
    println!(
        "restart: old controller stopped in {:.2} s, new one listening {:.2} s after the stop began; agents {}",
        stopped_after.as_secs_f64(),
        (up - stopping).as_secs_f64(),
        if IGNORE_HINT.load(Ordering::Relaxed) {
            "ignore the restart hint (exponential backoff)"
        } else {
            "follow the restart hint"
        }
    );
    let deadline = Instant::now() + Duration::from_secs(90);
    while stats.reconnect_at.lock().await.len() < agents && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut back: Vec<f64> = stats
        .reconnect_at
        .lock()
        .await
        .iter()
        .map(|at| at.saturating_duration_since(up).as_secs_f64() * 1000.0)
        .collect();
    back.sort_by(f64::total_cmp);
    println!(
        "agents back after the controller was: {}/{agents}; p50 {:.0} ms, p99 {:.0} ms, last {:.0} ms",
        back.len(),
        percentile(&back, 50.0),
        percentile(&back, 99.0),
        back.last().copied().unwrap_or(f64::NAN)
    );
}

// mimalloc, as `wansteer controller` runs (src/allocator.rs), so the controller child
// measures as shipped.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) != Some("serve") && flag("--pin") {
        // Before the runtime starts its threads, so they inherit it.
        pin_to_cpu(1);
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    if args.get(1).map(String::as_str) == Some("serve") {
        // The parent closing our stdin (or dying) stops us, gracefully.
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new());
            let _ = stop_tx.send(());
            std::thread::sleep(Duration::from_secs(30));
            std::process::exit(0);
        });
        runtime.block_on(serve(PathBuf::from(&args[2]), stop_rx));
        return;
    }
    let agents = arg("--agents", 1000) as usize;
    let seconds = arg("--seconds", 10);
    runtime.block_on(generate(
        agents,
        seconds,
        flag("--pin"),
        flag("--full-parse"),
    ));
}
