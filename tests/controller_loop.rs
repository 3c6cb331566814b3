//! End-to-end in controller mode: a real `wansteer controller` on loopback and one
//! `wansteer agent --controller …` per site of the bank lab. The agents register and ack
//! the controller's rule sets, the kernel holds the pushed routes, the controller sees the
//! agents' line reports; when br1's mpls line loses 5% of its packets the controller moves
//! voice off it (a decision with its reason) and br1 applies the new version. Then the
//! controller is killed: the agents keep their rules, and when the line voice moved to dies,
//! br1 routes around it locally, without the controller.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const SITES: [&str; 3] = ["dc", "br1", "br2"];

#[allow(dead_code)] // each test binary uses part of it
mod support;

use support::*;

/// Kills a process this test started (declared after the lab guard, so dropped first).
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Minimal HTTP/1.0 GET against the controller (no client library in the root package).
fn get(addr: SocketAddr, path: &str, token: &str) -> Result<Value, String> {
    let mut stream =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| e.to_string())?;
    let (head, body) = response.split_once("\r\n\r\n").ok_or("no HTTP body")?;
    if !head.starts_with("HTTP/1.0 200") && !head.starts_with("HTTP/1.1 200") {
        return Err(format!("{path}: {head}\n{body}"));
    }
    serde_json::from_str(body).map_err(|e| format!("{path}: {e}: {body}"))
}

/// Polls `check` until it gives a value or `limit` passes.
fn wait_for<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            started.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `token:` of the entry whose `site:` or `name:` is `who` in the generated tokens file.
fn token_of(tokens: &str, key: &str, who: &str) -> String {
    let mut lines = tokens.lines().peekable();
    while let Some(line) = lines.next() {
        let mut entry = line.to_string();
        // An entry spans lines until the next `- `; flow style has it on one line.
        while let Some(next) = lines.peek() {
            if next.trim_start().starts_with("- ") || !next.starts_with(' ') {
                break;
            }
            entry.push(' ');
            entry.push_str(lines.next().unwrap());
        }
        let fields: Vec<&str> = entry
            .split([',', '{', '}', ' ', '-'])
            .filter(|w| !w.is_empty())
            .collect();
        let value_of = |k: &str| {
            fields
                .iter()
                .position(|w| *w == format!("{k}:"))
                .and_then(|i| fields.get(i + 1))
                .map(|v| v.trim_matches(['"', '\'']).to_string())
        };
        if value_of(key).as_deref() == Some(who)
            && let Some(token) = value_of("token")
        {
            return token;
        }
    }
    panic!("no token for {key} {who} in:\n{tokens}");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn ip_json(ns: &str, args: &[&str]) -> Value {
    let out = Command::new("ip")
        .args(["-n", ns, "-j"])
        .args(args)
        .output()
        .expect("ip runs");
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Array(vec![]))
}

fn number(value: &Value) -> Option<u64> {
    value
        .as_u64()
        .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
}

/// The interface the kernel in `ns` sends `class` traffic for `destination` out of, by the
/// class's fwmark rule and its table.
fn kernel_line_of(ns: &str, mark: u64, destination: &str) -> Option<String> {
    let rules = ip_json(ns, &["-4", "rule", "show"]);
    let table = rules.as_array()?.iter().find_map(|rule| {
        let fwmark = rule["fwmark"].as_str()?;
        let value = fwmark.split('/').next()?.trim_start_matches("0x");
        (u64::from_str_radix(value, 16).ok()? == mark)
            .then(|| number(&rule["table"]))
            .flatten()
    })?;
    let routes = ip_json(ns, &["-4", "route", "show", "table", &table.to_string()]);
    routes.as_array()?.iter().find_map(|route| {
        (route["dst"].as_str() == Some(destination))
            .then(|| route["dev"].as_str().map(str::to_string))
            .flatten()
    })
}

/// Every IPv4 route of the published rule set is in the kernel on its primary line, or
/// (with `or_backup`, while a line is impaired and may have been failed over locally) on
/// one of its backups.
fn kernel_has_routes(ns: &str, rule_set: &Value, or_backup: bool) -> Result<(), String> {
    let lines = rule_set["lines"].as_array().ok_or("no lines")?;
    let classes = rule_set["classes"].as_array().ok_or("no classes")?;
    let routes = rule_set["routes"].as_array().ok_or("no routes")?;
    if routes.is_empty() {
        return Err("the rule set has no routes".into());
    }
    for route in routes {
        let destination = route["destination"].as_str().unwrap_or_default();
        if destination.contains(':') {
            continue;
        }
        let class = route["class"].as_str().unwrap_or_default();
        let mut order: Vec<&str> = std::iter::once(&route["primary"])
            .chain(route["backups"].as_array().into_iter().flatten())
            .filter_map(Value::as_str)
            .collect();
        // The hub's lines reach one branch each (`br1-mpls`): the agent keeps a route to a
        // branch on that branch's lines whatever the rule set says.
        let branch = match destination {
            "10.1.0.0/24" => Some("br1-"),
            "10.2.0.0/24" => Some("br2-"),
            _ => None,
        };
        if let Some(prefix) = branch
            && order.iter().any(|l| l.starts_with(prefix))
        {
            order.retain(|l| l.starts_with(prefix));
        }
        let primary = order.first().copied().unwrap_or_default();
        let backups = order.get(1..).unwrap_or_default().to_vec();
        let interface_of = |name: &str| {
            lines
                .iter()
                .find(|l| l["name"] == name)
                .and_then(|l| l["interface"].as_str())
                .ok_or(format!("line {name} not in the rule set"))
        };
        let interface = interface_of(primary)?;
        let mut allowed = vec![interface];
        if or_backup {
            for backup in backups {
                allowed.push(interface_of(backup)?);
            }
        }
        let mark = classes
            .iter()
            .find(|c| c["name"] == class)
            .and_then(|c| c["mark"].as_u64())
            .ok_or(format!("class {class} not in the rule set"))?;
        let installed = kernel_line_of(ns, mark, destination);
        if !installed.as_deref().is_some_and(|i| allowed.contains(&i)) {
            return Err(format!(
                "{ns}: {class} to {destination} should leave by {interface}, the kernel has {installed:?}"
            ));
        }
    }
    Ok(())
}

fn agent_row(agents: &Value, site: &str) -> Value {
    agents
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["site"] == site))
        .cloned()
        .unwrap_or(Value::Null)
}

fn in_sync(row: &Value) -> bool {
    row["drift"] == "in_sync" && row["connected"] == true
}

fn voice_primary(rule_set: &Value, destination: &str) -> Option<String> {
    rule_set["routes"].as_array()?.iter().find_map(|r| {
        (r["class"] == "voice" && r["destination"] == destination)
            .then(|| r["primary"].as_str().map(str::to_string))
            .flatten()
    })
}

#[test]
fn the_controller_decides_and_the_agents_apply_and_report() {
    if !is_root() {
        eprintln!("skipped: the controller-mode test builds network namespaces and needs root");
        return;
    }
    let prefix = format!("wstcm{}", std::process::id() % 10000);
    let _lab = LabGuard(prefix.clone());
    let up = wansteer()
        .args(["lab", "up"])
        .arg(repo().join("lab/topologies/bank.yaml"))
        .args(["--detach", "--prefix", &prefix])
        .output()
        .expect("lab up runs");
    assert!(
        up.status.success(),
        "lab up failed: {}",
        String::from_utf8_lossy(&up.stderr)
    );

    let state = tempfile::tempdir().expect("tempdir");
    let policy = repo().join("lab/demo/bank-lab.yaml");
    let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let controller_log = state.path().join("controller.log");
    let mut controller = ChildGuard(
        wansteer()
            .args(["controller", "--policy"])
            .arg(&policy)
            .args(["--listen", &addr.to_string(), "--state"])
            .arg(state.path().join("state"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&controller_log).unwrap())
            .spawn()
            .expect("controller starts"),
    );
    let tokens_path = state.path().join("state/tokens.yaml");
    let tokens = wait_for("the generated tokens", Duration::from_secs(20), || {
        std::fs::read_to_string(&tokens_path)
            .ok()
            .filter(|t| t.contains("token"))
    });
    let viewer = token_of(&tokens, "name", "viewer");
    wait_for("the controller API", Duration::from_secs(20), || {
        get(addr, "/api/v1/agents", &viewer).ok()
    });
    let logs = |dir: &Path| {
        let mut text = std::fs::read_to_string(&controller_log).unwrap_or_default();
        let names = SITES.iter().map(|s| format!("agent-{s}.log"));
        for name in names.chain(["agent-br1-restarted.log".to_string()]) {
            text += &format!("\n--- {name}:\n");
            text += &std::fs::read_to_string(dir.join(name)).unwrap_or_default();
        }
        text
    };

    // Each site's reflector runs apart from its agent, as wansteer-reflector.service runs
    // it: an agent restart then goes unnoticed by the far ends' probes.
    let _reflectors: Vec<ChildGuard> = SITES
        .iter()
        .map(|site| {
            let log =
                std::fs::File::create(state.path().join(format!("reflector-{site}.log"))).unwrap();
            ChildGuard(
                wansteer()
                    .args(["agent", "reflector", "--netns", &format!("{prefix}-{site}")])
                    .stdout(log.try_clone().unwrap())
                    .stderr(log)
                    .spawn()
                    .expect("reflector starts"),
            )
        })
        .collect();
    let start_agent = |site: &str, log_name: &str| {
        let token_file = state.path().join(format!("{site}.token"));
        std::fs::write(&token_file, token_of(&tokens, "site", site)).unwrap();
        let log = std::fs::File::create(state.path().join(log_name)).unwrap();
        ChildGuard(
            wansteer()
                .args(["agent", "--controller", &format!("http://{addr}")])
                .args(["--site", site, "--policy"])
                .arg(&policy)
                .arg("--token-file")
                .arg(&token_file)
                .args(["--netns", &format!("{prefix}-{site}")])
                .args(["--reflect", "off"])
                .args(["--long-window", "4s"])
                // Live DPI on the LAN bridge and /metrics inside the router's namespace.
                .args(["--lan", "lan", "--metrics", "127.0.0.1:9464"])
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("agent starts"),
        )
    };
    let mut agents: Vec<ChildGuard> = SITES
        .iter()
        .map(|site| start_agent(site, &format!("agent-{site}.log")))
        .collect();

    // Registered, pushed, applied, acked: every agent in sync with what is published.
    let first = wait_for("every agent in sync", Duration::from_secs(40), || {
        let agents = get(addr, "/api/v1/agents", &viewer).ok()?;
        SITES
            .iter()
            .all(|s| in_sync(&agent_row(&agents, s)))
            .then_some(agents)
    });
    let br1_version = agent_row(&first, "br1")["published"]["version"]
        .as_u64()
        .expect("br1 has a published version");

    // The kernel has the pushed routes.
    let br1_rules = get(addr, "/api/v1/sites/br1", &viewer).unwrap()["rule_set"].clone();
    assert_eq!(
        voice_primary(&br1_rules, "10.0.0.0/24").as_deref(),
        Some("mpls"),
        "voice starts on its preferred line: {br1_rules:#}"
    );
    for site in SITES {
        let rule_set =
            get(addr, &format!("/api/v1/sites/{site}"), &viewer).unwrap()["rule_set"].clone();
        if let Err(error) = kernel_has_routes(&format!("{prefix}-{site}"), &rule_set, false) {
            panic!("{error}\n{}", logs(state.path()));
        }
    }

    // Controller mode serves the agent's /metrics: the rule set in force and where voice is.
    let br1_metrics = || {
        let out = Command::new("ip")
            .args(["netns", "exec", &format!("{prefix}-br1")])
            .args([
                "curl",
                "-s",
                "--max-time",
                "2",
                "http://127.0.0.1:9464/metrics",
            ])
            .output()
            .ok()?;
        Some(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    wait_for(
        "br1's /metrics in controller mode",
        Duration::from_secs(10),
        || {
            let text = br1_metrics()?;
            (text.contains(&format!(
                "wansteer_agent_ruleset_version{{site=\"br1\"}} {br1_version}"
            )) && text.contains(
                "wansteer_agent_class_line{class=\"voice\",line=\"mpls\",site=\"br1\"} 1",
            ))
            .then_some(())
        },
    );

    // The agents report their lines: the controller sees br1's mpls measured and up.
    wait_for("br1's line reports", Duration::from_secs(20), || {
        let lines = get(addr, "/api/v1/lines", &viewer).ok()?;
        lines.as_array()?.iter().find(|l| {
            l["site"] == "br1"
                && l["line"] == "mpls"
                && l["health"] == "up"
                && l["samples"].as_u64().is_some_and(|s| s > 0)
                && l["rtt_ms"].as_f64().is_some_and(|r| r > 5.0)
        })?;
        Some(())
    });

    // Brownout on br1's mpls line: the controller moves voice, br1 applies the new version.
    let before = get(addr, "/api/v1/decisions?site=br1&class=voice", &viewer)
        .unwrap()
        .as_array()
        .map_or(0, Vec::len);
    let impaired_at = Instant::now();
    let impair = wansteer()
        .args([
            "lab", "impair", "br1-mpls", "--prefix", &prefix, "--loss", "5%",
        ])
        .output()
        .expect("lab impair runs");
    assert!(
        impair.status.success(),
        "{}",
        String::from_utf8_lossy(&impair.stderr)
    );
    let decision = wait_for(
        "the controller moving br1's voice off mpls",
        Duration::from_secs(30),
        || {
            let decisions = get(addr, "/api/v1/decisions?site=br1&class=voice", &viewer).ok()?;
            let decisions = decisions.as_array()?;
            // Oldest first: only decisions taken after the impairment count.
            decisions
                .get(before..)?
                .iter()
                .find(|d| d["from_line"] == "mpls" && d["to_line"] != "mpls")
                .cloned()
        },
    );
    assert!(
        decision["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "a decision carries its reason: {decision:#}"
    );
    let moved = wait_for("br1 in sync with the move", Duration::from_secs(20), || {
        let agents = get(addr, "/api/v1/agents", &viewer).ok()?;
        let row = agent_row(&agents, "br1");
        (in_sync(&row) && row["published"]["version"].as_u64()? > br1_version).then_some(row)
    });
    let br1_rules = get(addr, "/api/v1/sites/br1", &viewer).unwrap()["rule_set"].clone();
    assert_eq!(
        br1_rules["version"], moved["published"]["version"],
        "the rule set shown is the one acked"
    );
    let now = voice_primary(&br1_rules, "10.0.0.0/24");
    assert!(
        now.as_deref().is_some_and(|l| l != "mpls"),
        "voice left mpls: {now:?}\n{decision:#}"
    );
    if let Err(error) = kernel_has_routes(&format!("{prefix}-br1"), &br1_rules, true) {
        panic!("{error}\n{}", logs(state.path()));
    }
    let voice_mark = br1_rules["classes"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == "voice"))
        .and_then(|c| c["mark"].as_u64())
        .expect("voice has a mark");
    let br1_ns = format!("{prefix}-br1");
    assert_eq!(
        kernel_line_of(&br1_ns, voice_mark, "10.0.0.0/24").as_deref(),
        now.as_deref(),
        "the kernel sends br1's voice where the controller moved it"
    );
    eprintln!(
        "voice moved {now:?} {:.1} s after the impairment: {}",
        impaired_at.elapsed().as_secs_f64(),
        decision["reason"]
    );
    let log = logs(state.path());
    assert!(
        log.contains(&format!(
            "applied rule set v{}",
            moved["published"]["version"]
        )),
        "the agent says what it applied:\n{log}"
    );

    // br1's agent restarts: the kernel keeps its rules meanwhile, and the new agent adopts
    // them and syncs without a new version (no churn). First the brownout's other moves
    // (business, 2% SLA, leaves a little after voice) must be done: the version compared is
    // one br1 has held, in sync, for 3 s.
    let mut held: Option<(Value, Instant)> = None;
    let settled = wait_for("br1's rule set to settle", Duration::from_secs(30), || {
        let row = agent_row(&get(addr, "/api/v1/agents", &viewer).ok()?, "br1");
        if !in_sync(&row) {
            held = None;
            return None;
        }
        match &held {
            Some((published, since)) if *published == row["published"] => {
                (since.elapsed() >= Duration::from_secs(3)).then_some(row)
            }
            _ => {
                held = Some((row["published"].clone(), Instant::now()));
                None
            }
        }
    });
    let br1_rules = get(addr, "/api/v1/sites/br1", &viewer).unwrap()["rule_set"].clone();
    let killed_at_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    // The DC's probes to br1 go through br1's reflector: count the DC's "br1-… -> down".
    let br1_down_at_dc = || {
        std::fs::read_to_string(state.path().join("agent-dc.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("health br1-") && l.contains("-> down"))
            .count()
    };
    let down_before = br1_down_at_dc();
    {
        let old = &mut agents[1].0;
        old.kill().expect("agent killed");
        old.wait().expect("agent reaped");
    }
    // A slow restart (an upgrade): longer than the far ends take to call a line dead.
    std::thread::sleep(Duration::from_secs(1));
    if let Err(error) = kernel_has_routes(&format!("{prefix}-br1"), &br1_rules, true) {
        panic!("rules gone with the agent: {error}");
    }
    wait_for(
        "the controller noticing br1 left",
        Duration::from_secs(10),
        || {
            let row = agent_row(&get(addr, "/api/v1/agents", &viewer).ok()?, "br1");
            (row["connected"] == false).then_some(())
        },
    );
    agents[1] = start_agent("br1", "agent-br1-restarted.log");
    let resynced = wait_for("the restarted br1 in sync", Duration::from_secs(20), || {
        let row = agent_row(&get(addr, "/api/v1/agents", &viewer).ok()?, "br1");
        in_sync(&row).then_some(row)
    });
    // The restart itself changes nothing: the agent adopts the kernel state, and br1's
    // reflector (apart from the agent) answered the DC's probes throughout, so no line of
    // br1 looked down and nothing was re-planned.
    let decisions = get(addr, "/api/v1/decisions?limit=1000", &viewer).unwrap_or_default();
    let since_kill: Vec<&Value> = decisions
        .as_array()
        .into_iter()
        .flatten()
        .filter(|d| d["at_ms"].as_u64() > Some(killed_at_ms))
        .filter(|d| d["site"] == "br1" || d["destination"] == "br1")
        .collect();
    assert_eq!(
        br1_down_at_dc(),
        down_before,
        "the DC saw br1's lines die while only its agent restarted\n{}",
        logs(state.path())
    );
    assert!(
        resynced["published"] == settled["published"] && since_kill.is_empty(),
        "a restart changes nothing (settled {}, now {}); decisions since the kill: {since_kill:#?}\n{}",
        settled["published"],
        resynced["published"],
        logs(state.path())
    );
    // What the agent is in sync with now is what the kernel must hold.
    let br1_rules = get(addr, "/api/v1/sites/br1", &viewer).unwrap()["rule_set"].clone();
    if let Err(error) = kernel_has_routes(&format!("{prefix}-br1"), &br1_rules, true) {
        panic!("{error}\n{}", logs(state.path()));
    }

    // The controller goes away: the rules stay, and a dead line is still routed around.
    controller.0.kill().expect("controller killed");
    controller.0.wait().expect("controller reaped");
    let voice_line = now.expect("voice has a line");
    let interface_of = |line: &str| {
        br1_rules["lines"]
            .as_array()
            .and_then(|l| l.iter().find(|l| l["name"] == line))
            .and_then(|l| l["interface"].as_str())
            .map(str::to_string)
            .expect("line in the rule set")
    };
    assert_eq!(
        kernel_line_of(&br1_ns, voice_mark, "10.0.0.0/24"),
        Some(interface_of(&voice_line)),
        "the rules stay when the controller goes away"
    );
    let down = wansteer()
        .args([
            "lab",
            "impair",
            &format!("br1-{voice_line}"),
            "--prefix",
            &prefix,
            "--down",
        ])
        .output()
        .expect("lab impair runs");
    assert!(
        down.status.success(),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
    let dead = interface_of(&voice_line);
    let backup = wait_for(
        "br1 routing voice around its dead line without the controller",
        Duration::from_secs(10),
        || kernel_line_of(&br1_ns, voice_mark, "10.0.0.0/24").filter(|dev| *dev != dead),
    );
    let backups: Vec<String> = br1_rules["routes"]
        .as_array()
        .and_then(|r| {
            r.iter()
                .find(|r| r["class"] == "voice" && r["destination"] == "10.0.0.0/24")
        })
        .and_then(|r| r["backups"].as_array())
        .map(|b| {
            b.iter()
                .filter_map(|l| l.as_str())
                .map(interface_of)
                .collect()
        })
        .unwrap_or_default();
    assert!(
        backups.contains(&backup),
        "voice on {backup}, one of its pushed backups {backups:?}"
    );
    for agent in &mut agents {
        assert!(
            agent.0.try_wait().expect("wait").is_none(),
            "agents keep running without the controller"
        );
    }
    // The event is written just after the routes change.
    let failover = wait_for(
        "the local failover in br1's log",
        Duration::from_secs(5),
        || {
            logs(state.path())
                .lines()
                .find(|l| l.starts_with(&format!("br1: failover {voice_line} ")))
                .map(str::to_string)
        },
    );
    assert!(failover.contains("voice"), "{failover}");
    let controller_log = std::fs::read_to_string(&controller_log).unwrap_or_default();
    assert!(
        !controller_log.contains("ignored"),
        "the controller takes every report the agents send:\n{controller_log}"
    );
    eprintln!("{failover}");
}
