//! wansteer under test in a scenario: the scenario's `wansteer:` section starts a
//! `wansteer controller` on loopback (controller mode) and a `wansteer agent` per site
//! router, the way `wansteer lab demo` does (it reuses [`crate::demo::controller`] and
//! [`crate::demo::start_agent`]). The timeline can kill and restart the controller, restart
//! an agent and apply a policy through the controller's API; what the agents did (their JSON
//! events with the line each class takes), the controller's published rule sets and the
//! answers to policy changes are recorded for the expectations.
//!
//! `mode: off` is the baseline: nothing is started, branches route statically over the
//! lab's default routes (their first line) with no QoS, as today's branches run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::demo::controller::{self, DemoController};
use crate::topology::{Plan, Role};

/// How a scenario runs wansteer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// A controller decides; the agents apply its rule sets and fail over locally.
    Controller,
    /// Each agent steers on its own from the policy.
    Standalone,
    /// No wansteer: static routing over each branch's first line, no QoS (the baseline).
    #[default]
    Off,
}

/// The scenario's `wansteer:` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Section {
    pub mode: Mode,
    /// Policy file, relative to the scenario file (default `../demo/bank-lab.yaml`).
    #[serde(default)]
    pub policy: Option<PathBuf>,
}

/// Something an agent (or the controller) did, on the scenario clock.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SteerEvent {
    /// Seconds since the scenario's traffic started (negative: before).
    pub t: f64,
    pub site: String,
    /// `ready`, `move`, `failover`, `failback`, `applied`, `decision`, `health`, `error`.
    pub kind: String,
    pub text: String,
    /// The line each class takes after this event (empty when the event carries none).
    pub placement: BTreeMap<String, String>,
}

/// The rule set the controller published for each site, and the one its agent applied,
/// as `version:hash`, at one moment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleSnapshot {
    pub t: f64,
    pub published: BTreeMap<String, String>,
    pub applied: BTreeMap<String, String>,
}

/// What the controller answered to a policy change from the timeline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PolicyOutcome {
    pub name: String,
    /// The file name the text was sent under (diagnostics must point into it).
    pub file: String,
    pub t: f64,
    pub status: u16,
    pub body: Value,
    pub version_before: Option<u64>,
    pub version_after: Option<u64>,
}

/// What the run observed of wansteer, shared with the tasks that record it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Observed {
    pub events: Vec<SteerEvent>,
    pub rules: Vec<RuleSnapshot>,
    pub policies: Vec<PolicyOutcome>,
}

#[derive(Debug)]
struct ControllerRun {
    child: Option<Child>,
    handle: DemoController,
    listen: String,
    state: PathBuf,
}

/// The wansteer processes of a run; dropping it stops them all.
#[derive(Debug)]
pub struct Steer {
    pub mode: Mode,
    exe: PathBuf,
    policy: PathBuf,
    dir: PathBuf,
    /// (site, router namespace) of every site.
    routers: Vec<(String, String)>,
    controller: Option<ControllerRun>,
    agents: BTreeMap<String, Child>,
    /// Each site's STAMP reflector, apart from its agent so that it outlives the agent's
    /// restarts (`restart_agent` leaves it running).
    reflectors: BTreeMap<String, Child>,
    restarts: u32,
    tx: mpsc::UnboundedSender<(String, Value)>,
    pub observed: Arc<Mutex<Observed>>,
    /// Wall-clock ms of the scenario's t = 0.
    zero_unix_ms: Arc<Mutex<f64>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    client: reqwest::Client,
}

pub fn unix_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

impl Steer {
    /// Starts the controller (controller mode) and an agent per site router, and waits until
    /// every agent is ready and has had a few seconds to measure its lines. `None` in mode
    /// off.
    pub async fn start(
        mode: Mode,
        policy: &Path,
        dir: &Path,
        plan: &Plan,
    ) -> anyhow::Result<Option<Steer>> {
        if mode == Mode::Off {
            return Ok(None);
        }
        if let Err(diagnostics) = wansteer_policies::check_file(policy) {
            let text: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
            bail!("policy refused:\n{}", text.join("\n"));
        }
        std::fs::create_dir_all(dir)?;
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut steer = Steer {
            mode,
            exe: std::env::current_exe().context("cannot find the wansteer binary")?,
            policy: std::fs::canonicalize(policy)?,
            dir: std::fs::canonicalize(dir)?,
            routers: plan
                .namespaces
                .iter()
                .filter(|n| n.role == Role::Router)
                .map(|n| (n.node.clone(), n.name.clone()))
                .collect(),
            controller: None,
            agents: BTreeMap::new(),
            reflectors: BTreeMap::new(),
            restarts: 0,
            tx,
            observed: Arc::default(),
            zero_unix_ms: Arc::new(Mutex::new(unix_ms())),
            tasks: Vec::new(),
            client: reqwest::Client::new(),
        };
        if mode == Mode::Controller {
            let state = steer.dir.join("controller-state");
            if state.exists() {
                std::fs::remove_dir_all(&state)?;
            }
            let listen = format!("127.0.0.1:{}", controller::free_port()?);
            let (exe, policy, dir) = (steer.exe.clone(), steer.policy.clone(), steer.dir.clone());
            let (state2, listen2) = (state.clone(), listen.clone());
            let (child, handle) = tokio::task::spawn_blocking(move || {
                controller::launch(&exe, &policy, &state2, &listen2, &dir)
            })
            .await??;
            handle.follow_decisions(steer.tx.clone());
            steer.controller = Some(ControllerRun {
                child: Some(child),
                handle,
                listen,
                state,
            });
        }
        let sites: Vec<String> = steer.routers.iter().map(|(s, _)| s.clone()).collect();
        for site in &sites {
            steer.start_agent(site)?;
        }
        let mut ready = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let mut early = Vec::new();
        while ready.len() < sites.len() {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some((site, event))) => {
                    if event["kind"] == "ready" {
                        ready.push(site.clone());
                    }
                    early.push((site, event));
                }
                _ => bail!(
                    "not every agent became ready within 20 s (ready: {ready:?}); logs in {}",
                    steer.dir.display()
                ),
            }
        }
        // Let the probes fill their short window before the scenario starts.
        tokio::time::sleep(Duration::from_secs(3)).await;
        *steer.zero_unix_ms.lock().expect("lock") = unix_ms();
        let (observed, zero) = (steer.observed.clone(), steer.zero_unix_ms.clone());
        steer.tasks.push(tokio::spawn(async move {
            let record = |site: String, event: Value| {
                let zero = *zero.lock().expect("lock");
                let t = (event["t_unix_ms"].as_f64().unwrap_or_else(unix_ms) - zero) / 1000.0;
                if let Some(e) = steer_event(t, &site, &event) {
                    observed.lock().expect("lock").events.push(e);
                }
            };
            for (site, event) in early {
                record(site, event);
            }
            while let Some((site, event)) = rx.recv().await {
                record(site, event);
            }
        }));
        if let Some(c) = &steer.controller {
            steer.tasks.push(tokio::spawn(poll_rule_sets(
                steer.client.clone(),
                c.handle.url.clone(),
                c.handle.admin_token.clone(),
                steer.observed.clone(),
                steer.zero_unix_ms.clone(),
            )));
        }
        Ok(Some(steer))
    }

    /// Sets the scenario's t = 0 to now.
    pub fn set_zero(&self) {
        *self.zero_unix_ms.lock().expect("lock") = unix_ms();
    }

    fn now(&self) -> f64 {
        (unix_ms() - *self.zero_unix_ms.lock().expect("lock")) / 1000.0
    }

    fn start_agent(&mut self, site: &str) -> anyhow::Result<()> {
        let ns = self
            .routers
            .iter()
            .find(|(s, _)| s == site)
            .map(|(_, ns)| ns.clone())
            .with_context(|| format!("no site router `{site}`"))?;
        if self.reflectors.is_empty() {
            // Every site's reflector before the first agent: they run independently of the
            // agents, as their own service would, so no agent starts probing a far end
            // that is not answering yet.
            for (router, router_ns) in &self.routers {
                let log = self.dir.join(format!("reflector-{router}.log"));
                let reflector = crate::demo::start_reflector(&self.exe, router_ns, &log)?;
                self.reflectors.insert(router.clone(), reflector);
            }
        }
        let log = if self.restarts == 0 {
            self.dir.join(format!("agent-{site}.log"))
        } else {
            self.dir
                .join(format!("agent-{site}.restart{}.log", self.restarts))
        };
        let child = crate::demo::start_agent(
            &self.exe,
            &self.policy,
            site,
            &ns,
            &log,
            self.controller.as_ref().map(|c| &c.handle),
            self.tx.clone(),
        )?;
        self.agents.insert(site.to_string(), child);
        Ok(())
    }

    /// Kills an agent the hard way (SIGKILL: nothing cleaned up, as in a crash or an OOM
    /// kill) and starts a new one, which must adopt the kernel state it finds. The site's
    /// reflector keeps answering meanwhile.
    pub fn restart_agent(&mut self, site: &str) -> anyhow::Result<()> {
        self.stop_agent(site)?;
        self.start_stopped_agent(site)
    }

    /// Kills an agent (SIGKILL) and leaves it down; its kernel state and its site's
    /// reflector stay.
    pub fn stop_agent(&mut self, site: &str) -> anyhow::Result<()> {
        let mut old = self
            .agents
            .remove(site)
            .with_context(|| format!("no agent running for site `{site}`"))?;
        let _ = old.kill();
        let _ = old.wait();
        Ok(())
    }

    /// Starts a new agent for a site whose agent was stopped.
    pub fn start_stopped_agent(&mut self, site: &str) -> anyhow::Result<()> {
        if self.agents.contains_key(site) {
            bail!("the agent of `{site}` is still running: stop it first");
        }
        self.restarts += 1;
        self.start_agent(site)
    }

    /// Kills the controller (SIGKILL); the agents keep their rules.
    pub fn kill_controller(&mut self) -> anyhow::Result<()> {
        let c = self
            .controller
            .as_mut()
            .context("no controller in this mode (wansteer: {mode: controller})")?;
        let mut child = c.child.take().context("the controller is not running")?;
        let _ = child.kill();
        let _ = child.wait();
        Ok(())
    }

    /// Stops the controller cleanly (SIGTERM, as systemd does for an upgrade) and waits for
    /// it to exit (SIGKILL after 15 s); the agents keep their rules.
    pub async fn stop_controller(&mut self) -> anyhow::Result<()> {
        let c = self
            .controller
            .as_mut()
            .context("no controller in this mode (wansteer: {mode: controller})")?;
        let mut child = c.child.take().context("the controller is not running")?;
        // SAFETY: kill has no memory effects; the pid is our own child's, not reaped.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let status = tokio::task::spawn_blocking(move || {
            let deadline = std::time::Instant::now() + Duration::from_secs(15);
            while matches!(child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            child.wait()
        })
        .await??;
        if !status.success() {
            bail!("the controller did not stop cleanly: {status}");
        }
        Ok(())
    }

    /// Starts the controller again on the same address and store.
    pub async fn restart_controller(&mut self) -> anyhow::Result<()> {
        let c = self
            .controller
            .as_mut()
            .context("no controller in this mode (wansteer: {mode: controller})")?;
        if c.child.is_some() {
            bail!("the controller is still running: kill or stop it first");
        }
        let (exe, policy, dir) = (self.exe.clone(), self.policy.clone(), self.dir.clone());
        let (state, listen) = (c.state.clone(), c.listen.clone());
        let (child, _) = tokio::task::spawn_blocking(move || {
            controller::launch(&exe, &policy, &state, &listen, &dir)
        })
        .await??;
        c.child = Some(child);
        Ok(())
    }

    async fn policy_version(&self) -> Option<u64> {
        let c = self.controller.as_ref()?;
        let body: Value = self
            .client
            .get(format!("{}/api/v1/policy", c.handle.url))
            .bearer_auth(&c.handle.admin_token)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        body["version"].as_u64()
    }

    /// PUTs `text` as the policy through the controller's API with the admin token, and
    /// records the answer with the policy version before and after.
    pub async fn apply_policy(&self, name: &str, file: &str, text: String) -> anyhow::Result<()> {
        let c = self
            .controller
            .as_ref()
            .context("no controller in this mode (wansteer: {mode: controller})")?;
        if !file
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            bail!("policy file name `{file}`: letters, digits, `-`, `_`, `.` only");
        }
        let t = self.now();
        let version_before = self.policy_version().await;
        let response = self
            .client
            .put(format!("{}/api/v1/policy?file={file}", c.handle.url))
            .bearer_auth(&c.handle.admin_token)
            .body(text)
            .send()
            .await
            .context("the controller did not answer the policy change")?;
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let version_after = self.policy_version().await;
        self.observed
            .lock()
            .expect("lock")
            .policies
            .push(PolicyOutcome {
                name: name.to_string(),
                file: file.to_string(),
                t,
                status,
                body,
                version_before,
                version_after,
            });
        Ok(())
    }

    /// Agents or controller that died on their own, with their log's last words.
    pub fn exited_early(&mut self) -> Vec<String> {
        let mut dead = Vec::new();
        for (site, child) in &mut self.agents {
            if let Ok(Some(status)) = child.try_wait() {
                dead.push(format!("agent {site} exited early: {status}"));
            }
        }
        if let Some(c) = &mut self.controller
            && let Some(child) = &mut c.child
            && let Ok(Some(status)) = child.try_wait()
        {
            dead.push(format!("controller exited early: {status}"));
        }
        dead
    }
}

impl Drop for Steer {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        if let Some(c) = &mut self.controller
            && let Some(mut child) = c.child.take()
        {
            let _ = child.kill();
            let _ = child.wait();
        }
        for child in self.agents.values() {
            // SAFETY: kill has no memory effects; the pid is our own child's, not reaped.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        for child in self.agents.values_mut() {
            while matches!(child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        for reflector in self.reflectors.values_mut() {
            let _ = reflector.kill();
            let _ = reflector.wait();
        }
    }
}

/// An agent's JSON event (or a controller decision) as a [`SteerEvent`]; summaries and
/// unknown kinds are dropped.
fn steer_event(t: f64, site: &str, event: &Value) -> Option<SteerEvent> {
    let kind = event["kind"].as_str()?;
    if !matches!(
        kind,
        "ready" | "move" | "failover" | "failback" | "applied" | "decision" | "health" | "error"
    ) {
        return None;
    }
    let text = match kind {
        "failback" => format!(
            "fail-back: {} in use again",
            event["lines"]
                .as_array()
                .map(|l| l
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", "))
                .unwrap_or_default()
        ),
        "ready" => "ready".to_string(),
        _ => event["text"].as_str().unwrap_or_default().to_string(),
    };
    Some(SteerEvent {
        t,
        site: site.to_string(),
        kind: kind.to_string(),
        text,
        placement: serde_json::from_value(event["placement"].clone()).unwrap_or_default(),
    })
}

/// Every 500 ms while the controller answers: the rule set published for each site and the
/// one its agent reports applied.
async fn poll_rule_sets(
    client: reqwest::Client,
    url: String,
    token: String,
    observed: Arc<Mutex<Observed>>,
    zero: Arc<Mutex<f64>>,
) {
    let id = |v: &Value| -> Option<String> {
        Some(format!(
            "{}:{}",
            v["version"].as_u64()?,
            v["hash"].as_str()?
        ))
    };
    loop {
        let answer = client
            .get(format!("{url}/api/v1/sites"))
            .bearer_auth(&token)
            .timeout(Duration::from_secs(1))
            .send()
            .await;
        if let Ok(response) = answer
            && let Ok(sites) = response.json::<Vec<Value>>().await
        {
            let t = (unix_ms() - *zero.lock().expect("lock")) / 1000.0;
            let mut snapshot = RuleSnapshot {
                t,
                published: BTreeMap::new(),
                applied: BTreeMap::new(),
            };
            for s in &sites {
                let name = s["name"].as_str().unwrap_or_default().to_string();
                if let Some(p) = id(&s["published"]) {
                    snapshot.published.insert(name.clone(), p);
                }
                if let Some(a) = id(&s["applied"]) {
                    snapshot.applied.insert(name, a);
                }
            }
            observed.lock().expect("lock").rules.push(snapshot);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_events_keep_their_placement() {
        let event = serde_json::json!({
            "t_unix_ms": 1000, "site": "br1", "kind": "move", "class": "voice",
            "text": "voice mpls→inet: loss 5%", "apply_ms": 3.0,
            "placement": {"voice": "inet", "bulk": "inet"}
        });
        let e = steer_event(1.5, "br1", &event).unwrap();
        assert_eq!(e.kind, "move");
        assert_eq!(e.placement["voice"], "inet");
        let summary = serde_json::json!({"kind": "summary", "summary": {}});
        assert_eq!(steer_event(0.0, "br1", &summary), None);
    }
}
