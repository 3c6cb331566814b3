//! The demo with the controller in charge: a real `wansteer controller` on loopback, its
//! generated tokens handed to each site's agent, and the controller's steering decisions
//! followed through its REST API so the timeline shows why a class moved.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// A controller the demo started, and how to reach it.
#[derive(Debug)]
pub struct DemoController {
    pub url: String,
    pub admin_token: String,
    /// Token file per site, for `wansteer agent --token-file`.
    pub token_files: Vec<(String, PathBuf)>,
}

pub fn free_port() -> anyhow::Result<u16> {
    let socket = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(socket.local_addr()?.port())
}

/// Starts `wansteer controller` with `policy`, fresh state under `dir`; waits until it answers.
pub fn start(exe: &Path, policy: &Path, dir: &Path) -> anyhow::Result<(Child, DemoController)> {
    let state = dir.join("controller-state");
    if state.exists() {
        std::fs::remove_dir_all(&state)
            .with_context(|| format!("cannot clear {}", state.display()))?;
    }
    for old_log in ["controller.log", "controller.out"] {
        let _ = std::fs::remove_file(dir.join(old_log));
    }
    let listen = format!("127.0.0.1:{}", free_port()?);
    launch(exe, policy, &state, &listen, dir)
}

/// Starts `wansteer controller` on `listen` with its store in `state` as it is (a restart
/// resumes from it; the generated tokens are reused); logs go to `log_dir`. Waits until it
/// answers.
pub fn launch(
    exe: &Path,
    policy: &Path,
    state: &Path,
    listen: &str,
    log_dir: &Path,
) -> anyhow::Result<(Child, DemoController)> {
    let log = log_dir.join("controller.log");
    let append = |path: PathBuf| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
    };
    let mut child = Command::new(exe)
        .args(["controller", "--policy"])
        .arg(policy)
        .args(["--listen", listen, "--state"])
        .arg(state)
        .stdin(Stdio::null())
        .stdout(append(log_dir.join("controller.out"))?)
        .stderr(append(log.clone())?)
        .spawn()
        .context("cannot start the controller")?;
    let tokens_file = state.join("tokens.yaml");
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !(tokens_file.exists() && std::net::TcpStream::connect(listen).is_ok()) {
        if let Ok(Some(status)) = child.try_wait() {
            bail!("the controller exited ({status}); see {}", log.display());
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            bail!(
                "the controller did not answer within 15 s; see {}",
                log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let tokens: Value = yaml_serde::from_str(&std::fs::read_to_string(&tokens_file)?)
        .with_context(|| format!("cannot read {}", tokens_file.display()))?;
    let admin_token = tokens["api"]
        .as_array()
        .and_then(|api| api.iter().find(|t| t["role"] == "admin"))
        .and_then(|t| t["token"].as_str())
        .context("the tokens file has no admin token")?
        .to_string();
    let mut token_files = Vec::new();
    for agent in tokens["agents"].as_array().into_iter().flatten() {
        let (Some(site), Some(token)) = (agent["site"].as_str(), agent["token"].as_str()) else {
            continue;
        };
        let path = state.join(format!("{site}.token"));
        std::fs::write(&path, format!("{token}\n"))?;
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        token_files.push((site.to_string(), path));
    }
    let controller = DemoController {
        url: format!("http://{listen}"),
        admin_token,
        token_files,
    };
    Ok((child, controller))
}

impl DemoController {
    pub fn token_file(&self, site: &str) -> anyhow::Result<&Path> {
        self.token_files
            .iter()
            .find(|(s, _)| s == site)
            .map(|(_, path)| path.as_path())
            .with_context(|| format!("the controller generated no token for site {site}"))
    }

    /// Follows the controller's decisions: every class move (not first placements) is sent
    /// to `tx` as a `decision` event of the site it concerns, once.
    pub fn follow_decisions(&self, tx: mpsc::UnboundedSender<(String, Value)>) {
        let url = format!("{}/api/v1/decisions?limit=500", self.url);
        let token = self.admin_token.clone();
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut seen = BTreeSet::new();
            loop {
                if let Ok(response) = client.get(&url).bearer_auth(&token).send().await
                    && let Ok(decisions) = response.json::<Vec<Value>>().await
                {
                    let mut fresh: Vec<&Value> = decisions
                        .iter()
                        .filter(|d| !d["from_line"].is_null() && d["from_line"] != d["to_line"])
                        .filter(|d| seen.insert(d.to_string()))
                        .collect();
                    fresh.sort_by_key(|d| d["at_ms"].as_u64().unwrap_or(0));
                    for decision in fresh {
                        let site = decision["site"].as_str().unwrap_or_default().to_string();
                        let event = json!({
                            "kind": "decision",
                            "class": decision["class"],
                            "text": format!(
                                "{} {}→{} towards {}: {}",
                                decision["class"].as_str().unwrap_or_default(),
                                decision["from_line"].as_str().unwrap_or_default(),
                                decision["to_line"].as_str().unwrap_or_default(),
                                decision["destination"].as_str().unwrap_or_default(),
                                decision["reason"].as_str().unwrap_or_default(),
                            ),
                        });
                        if tx.send((site, event)).is_err() {
                            return;
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        });
    }
}
