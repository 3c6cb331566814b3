//! Runs a scenario: builds its topology, starts the emulators and voice calls, plays the
//! timeline of impairments, records what every call felt each second, judges the
//! expectations and returns a [`Report`]. The lab is removed at the end, also on error or
//! Ctrl-C.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;

use crate::emulator::{Emulator, Request};
use crate::lab::{self, LabState};
use crate::report::{self, CallRecord, Event, Report};
use crate::scenario::{Action, ControllerAction, Scenario};
use crate::steer::{Mode, Steer};
use crate::topology::{Plan, Topology};
use crate::{netns, voice};

/// Removes the run's lab when dropped.
struct Running {
    plan: Plan,
    emulators: Vec<Emulator>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.emulators.clear();
        let _ = lab::teardown(&self.plan);
    }
}

/// Loads a scenario and its topology, refusing errors with `file:line:col`.
pub fn load(file: &Path) -> anyhow::Result<(Scenario, Topology)> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    // The topology path is needed to validate line and node names: read it leniently first.
    #[derive(serde::Deserialize)]
    struct Head {
        topology: std::path::PathBuf,
    }
    let origin = file.display().to_string();
    let head: Head = yaml_serde::from_str(&text).map_err(|e| {
        let (l, c) = e
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((0, 0));
        anyhow::anyhow!("{origin}:{l}:{c}: {e}")
    })?;
    let topology_file = file.parent().unwrap_or(Path::new(".")).join(&head.topology);
    let topology = Topology::load(&topology_file)?;
    let plan = topology.plan("x");
    let lines: Vec<String> = plan.lines.iter().map(|l| l.id.clone()).collect();
    let nodes: Vec<String> = plan.namespaces.iter().map(|n| n.node.clone()).collect();
    let scenario = Scenario::parse(&text, &origin, &lines, &nodes)?;
    Ok((scenario, topology))
}

/// How to run a scenario beyond what its file says.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Steering off whatever the file says (`wansteer: {mode: off}`): the baseline.
    pub baseline: bool,
    /// Where the controller's and agents' logs go (default: the run's state directory,
    /// removed with the lab).
    pub logs: Option<std::path::PathBuf>,
}

/// Runs the scenario in `file` under run prefix `prefix`.
pub async fn run(file: &Path, prefix: &str) -> anyhow::Result<Report> {
    run_with(file, prefix, &RunOptions::default()).await
}

/// Runs the scenario in `file` under run prefix `prefix` with `options`.
pub async fn run_with(file: &Path, prefix: &str, options: &RunOptions) -> anyhow::Result<Report> {
    let (scenario, topology) = load(file)?;
    let mode = if options.baseline {
        Mode::Off
    } else {
        scenario.mode()
    };
    let plan = topology.plan(prefix);
    lab::build(&plan)?;
    let mut running = Running {
        plan: plan.clone(),
        emulators: Vec::new(),
    };
    let state = LabState {
        prefix: prefix.to_string(),
        topology_file: scenario.topology_path(file).display().to_string(),
        owner_pid: Some(std::process::id()),
        detached: false,
        plan: plan.clone(),
    };
    for l in &plan.lines {
        running.emulators.push(Emulator::start(
            &l.id,
            &l.namespace,
            "near",
            "far",
            l.baseline,
            Some(&state.socket(&l.id)),
        )?);
    }
    state.save()?;
    let logs = options
        .logs
        .clone()
        .unwrap_or_else(|| LabState::dir(prefix).join("wansteer"));
    let policy = scenario
        .wansteer
        .as_ref()
        .and_then(|w| w.policy.clone())
        .unwrap_or_else(|| "../demo/bank-lab.yaml".into());
    let policy = file.parent().unwrap_or(Path::new(".")).join(policy);
    // Declared after `running`, so it is dropped (agents stopped) before the lab goes.
    let mut steer = Steer::start(mode, &policy, &logs, &plan).await?;
    let mut processes = start_processes(&scenario, &plan, &LabState::dir(prefix))?;
    let result = tokio::select! {
        report = play(&scenario, file, &plan, &running.emulators, &topology, steer.as_mut()) => report,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted; lab removed")),
    };
    let ended = stop_processes(&mut processes);
    let mut report = result?;
    report.mode = mode;
    report.events.extend(ended.into_iter().map(|mut e| {
        e.t = report.duration_s;
        e
    }));
    if let Some(steer) = &mut steer {
        for dead in steer.exited_early() {
            report.events.push(Event {
                t: report.duration_s,
                kind: "process-exited-early".into(),
                detail: format!("{dead}; logs in {}", logs.display()),
            });
        }
    }
    drop(steer);
    drop(running);
    Ok(report)
}

/// Runs the scenario with wansteer as its file says, then again with steering off, and
/// returns the first report with the comparison of what voice felt in both.
pub async fn compare(file: &Path, prefix: &str, options: &RunOptions) -> anyhow::Result<Report> {
    let mut with = run_with(file, prefix, options).await?;
    let baseline_prefix = lab::new_prefix();
    let without = run_with(
        file,
        &baseline_prefix,
        &RunOptions {
            baseline: true,
            logs: None,
        },
    )
    .await?;
    with.comparison = Some(report::compare(&with, &without));
    Ok(with)
}

/// Every run of a repeated scenario.
#[derive(Debug, Default)]
pub struct Repeated {
    pub with: Vec<Report>,
    pub without: Vec<Report>,
    /// Runs that could not be played (`with 2: cannot start the controller: …`); the
    /// others are still summarized.
    pub errors: Vec<String>,
}

/// Runs the scenario `times` times with wansteer (unless `options.baseline`) and, with
/// `compare`, as many times with steering off, alternating so both see the same machine.
/// Each run has its own fresh prefix and lab; `logs_for(kind, i)` names where run `i`'s
/// wansteer logs go. `done` is told of every finished run. A run that fails to play is
/// recorded in [`Repeated::errors`] and the next one starts; a scenario file that does
/// not load stops everything at once.
pub async fn repeat(
    file: &Path,
    times: u32,
    compare: bool,
    options: &RunOptions,
    logs_for: impl Fn(&str, u32) -> Option<std::path::PathBuf>,
    mut done: impl FnMut(&str, u32, &Report),
) -> anyhow::Result<Repeated> {
    load(file)?;
    let mut runs = Repeated::default();
    let mut kinds = Vec::new();
    if !options.baseline {
        kinds.push(("with", false));
    }
    if compare || options.baseline {
        kinds.push(("without", true));
    }
    for i in 1..=times {
        for &(kind, baseline) in &kinds {
            let played = run_with(
                file,
                &lab::new_prefix(),
                &RunOptions {
                    baseline,
                    logs: logs_for(kind, i),
                },
            )
            .await;
            match played {
                Ok(report) => {
                    done(kind, i, &report);
                    if baseline {
                        runs.without.push(report);
                    } else {
                        runs.with.push(report);
                    }
                }
                Err(e) => runs.errors.push(format!("{kind} {i}: {e:#}")),
            }
        }
    }
    Ok(runs)
}

/// A scenario process and what to call it in events.
struct Started {
    label: String,
    child: std::process::Child,
    log: std::path::PathBuf,
}

fn start_processes(scenario: &Scenario, plan: &Plan, dir: &Path) -> anyhow::Result<Vec<Started>> {
    std::fs::create_dir_all(dir)?;
    let mut started = Vec::new();
    for (i, p) in scenario.processes.iter().enumerate() {
        let ns = plan.namespace_of(&p.node).context("node")?;
        let program = if p.command[0] == "wansteer" {
            std::env::current_exe()?.display().to_string()
        } else {
            p.command[0].clone()
        };
        let args: Vec<String> = p.command[1..]
            .iter()
            .map(|a| a.replace("{prefix}", &plan.prefix))
            .collect();
        let log = dir.join(format!("process-{i}.log"));
        let out = std::fs::File::create(&log)?;
        let child = netns::run_in(&ns.name, || {
            std::process::Command::new(&program)
                .args(&args)
                .stdin(std::process::Stdio::null())
                .stdout(out.try_clone()?)
                .stderr(out)
                .spawn()
        })?
        .with_context(|| format!("cannot start `{}` in {}", p.command.join(" "), p.node))?;
        started.push(Started {
            label: format!("{} on {}", p.command.join(" "), p.node),
            child,
            log,
        });
    }
    Ok(started)
}

/// Ends the scenario's processes; reports any that had already exited, with their last words.
fn stop_processes(processes: &mut [Started]) -> Vec<Event> {
    let mut events = Vec::new();
    for p in processes.iter_mut() {
        if let Ok(Some(status)) = p.child.try_wait() {
            let text = std::fs::read_to_string(&p.log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(3).collect();
            events.push(Event {
                t: 0.0,
                kind: "process-exited-early".into(),
                detail: format!(
                    "{}: {status}; {}",
                    p.label,
                    tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
                ),
            });
            continue;
        }
        // SAFETY: kill has no memory effects; the pid is our own child, not yet reaped.
        unsafe { libc::kill(p.child.id() as i32, libc::SIGTERM) };
    }
    for p in processes.iter_mut() {
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        while matches!(p.child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = p.child.kill();
        let _ = p.child.wait();
    }
    events
}

async fn play(
    scenario: &Scenario,
    file: &Path,
    plan: &Plan,
    emulators: &[Emulator],
    topology: &Topology,
    mut steer: Option<&mut Steer>,
) -> anyhow::Result<Report> {
    let duration = scenario.duration;
    let events: Arc<Mutex<Vec<Event>>> = Arc::default();
    let mut calls = BTreeMap::new();
    let mut tasks = Vec::new();
    let start = tokio::time::Instant::now();
    if let Some(steer) = &steer {
        steer.set_zero();
    }
    let mut bulk_tasks = Vec::new();
    let mut app_tasks = Vec::new();
    for (i, t) in scenario.traffic.iter().enumerate() {
        if let Some(name) = &t.bulk {
            bulk_tasks.push(spawn_bulk(plan, t, name, start, duration, events.clone())?);
            continue;
        }
        if t.dns.is_some() || t.tls.is_some() {
            app_tasks.push(spawn_app(plan, t, start, duration, events.clone())?);
            continue;
        }
        let to = plan.namespace_of(&t.to).context("node")?;
        let from = plan.namespace_of(&t.from).context("node")?;
        let addr = *to
            .addresses
            .iter()
            .find(|a| a.is_ipv6() == t.ipv6)
            .context("no address of that family")?;
        let target = SocketAddr::new(addr, 4000 + i as u16);
        let rx = netns::run_in(&to.name, || std::net::UdpSocket::bind(target))??;
        let bind: SocketAddr = if t.ipv6 { "[::]:0" } else { "0.0.0.0:0" }.parse()?;
        // IP phones mark their media EF (DSCP 46): what the policy classifies voice on.
        let tx = netns::run_in(&from.name, || -> std::io::Result<std::net::UdpSocket> {
            let socket = socket2::Socket::new(
                socket2::Domain::for_address(bind),
                socket2::Type::DGRAM,
                None,
            )?;
            if t.ipv6 {
                socket.set_tclass_v6(46 << 2)?;
            } else {
                socket.set_tos_v4(46 << 2)?;
            }
            socket.bind(&bind.into())?;
            Ok(socket.into())
        })??;
        rx.set_nonblocking(true)?;
        tx.set_nonblocking(true)?;
        let rx = tokio::net::UdpSocket::from_std(rx)?;
        let tx = tokio::net::UdpSocket::from_std(tx)?;
        let seconds: Arc<Mutex<Vec<voice::IntervalReport>>> = Arc::default();
        calls.insert(t.name().to_string(), (t.clone(), seconds.clone()));
        let listen = duration + Duration::from_millis(500);
        tasks.push(tokio::spawn(async move {
            let (_, summary) = tokio::join!(
                voice::cli::send(&tx, target, i as u32, Some(duration)),
                voice::cli::receive(&rx, Some(listen), |r| {
                    seconds.lock().expect("lock").push(r.clone())
                })
            );
            summary.ok()
        }));
        events.lock().expect("lock").push(Event {
            t: 0.0,
            kind: "traffic".into(),
            detail: format!("voice {} {} → {} ({addr})", t.name(), t.from, t.to),
        });
    }
    for (at, action) in scenario.actions() {
        tokio::time::sleep_until(start + at).await;
        let t = start.elapsed().as_secs_f64();
        let (kind, detail) = match action {
            Action::Impair(i) => {
                emulator_of(emulators, &i.line)?
                    .apply(&Request::Change {
                        target: i.direction,
                        change: i.change(),
                    })
                    .into_result()?;
                ("impair", format!("{}: {}", i.line, describe(&i)))
            }
            Action::Clear(line) => {
                emulator_of(emulators, &line)?
                    .apply(&Request::Clear {
                        target: Default::default(),
                    })
                    .into_result()?;
                ("clear", format!("{line}: back to topology figures"))
            }
            Action::Controller(c) => match steer.as_deref_mut() {
                None => ("skipped", "controller step: steering is off".to_string()),
                Some(steer) => match c {
                    ControllerAction::Kill => {
                        steer.kill_controller()?;
                        ("controller", "controller killed (SIGKILL)".to_string())
                    }
                    ControllerAction::Stop => {
                        steer.stop_controller().await?;
                        (
                            "controller",
                            format!(
                                "controller stopped cleanly (SIGTERM; exited after {:.2} s)",
                                start.elapsed().as_secs_f64() - t
                            ),
                        )
                    }
                    ControllerAction::Restart => {
                        steer.restart_controller().await?;
                        (
                            "controller",
                            format!(
                                "controller restarted from its store (up after {:.2} s)",
                                start.elapsed().as_secs_f64() - t
                            ),
                        )
                    }
                },
            },
            Action::RestartAgent(site) => match steer.as_deref_mut() {
                None => ("skipped", format!("restart agent {site}: steering is off")),
                Some(steer) => {
                    steer.restart_agent(&site)?;
                    (
                        "agent",
                        format!("agent {site} killed (SIGKILL) and started again"),
                    )
                }
            },
            Action::StopAgent(site) => match steer.as_deref_mut() {
                None => ("skipped", format!("stop agent {site}: steering is off")),
                Some(steer) => {
                    steer.stop_agent(&site)?;
                    ("agent", format!("agent {site} killed (SIGKILL), left down"))
                }
            },
            Action::StartAgent(site) => match steer.as_deref_mut() {
                None => ("skipped", format!("start agent {site}: steering is off")),
                Some(steer) => {
                    steer.start_stopped_agent(&site)?;
                    ("agent", format!("agent {site} started again"))
                }
            },
            Action::ApplyPolicy(p) => match steer.as_deref_mut() {
                None => ("skipped", format!("policy {}: steering is off", p.name)),
                Some(steer) => {
                    let path = file.parent().unwrap_or(Path::new(".")).join(&p.file);
                    let text = std::fs::read_to_string(&path)
                        .with_context(|| format!("cannot read {}", path.display()))?;
                    let name = p
                        .file
                        .file_name()
                        .map_or("policy.yaml".into(), |n| n.to_string_lossy().to_string());
                    steer.apply_policy(&p.name, &name, text).await?;
                    (
                        "policy",
                        format!("policy {} ({name}) sent to the controller", p.name),
                    )
                }
            },
        };
        events.lock().expect("lock").push(Event {
            t,
            kind: kind.into(),
            detail,
        });
    }
    tokio::time::sleep_until(start + duration).await;
    let mut summaries = Vec::new();
    for task in tasks {
        summaries.push(task.await?);
    }
    for task in app_tasks {
        task.await?;
    }
    let mut bulks = BTreeMap::new();
    for (name, task) in bulk_tasks {
        if let Some(bps) = task.await? {
            bulks.insert(name, bps);
        }
    }
    let mut records = BTreeMap::new();
    let mut per_second = BTreeMap::new();
    for ((name, (t, seconds)), summary) in calls.into_iter().zip(summaries) {
        let seconds: Vec<voice::IntervalReport> = seconds
            .lock()
            .expect("lock")
            .iter()
            .filter(|r| r.t < duration.as_secs_f64())
            .cloned()
            .collect();
        per_second.insert(name.clone(), seconds.clone());
        records.insert(
            name,
            CallRecord {
                from: t.from,
                to: t.to,
                seconds,
                summary,
            },
        );
    }
    // Let the last decisions and rule-set polls land.
    let observed = match &steer {
        Some(steer) => {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let o = steer.observed.lock().expect("lock");
            Some(crate::steer::Observed {
                events: o.events.clone(),
                rules: o.rules.clone(),
                policies: o.policies.clone(),
            })
        }
        None => None,
    };
    let expectations = scenario.judge(&per_second, &bulks, observed.as_ref());
    let mut events = events.lock().expect("lock").clone();
    if let Some(o) = &observed {
        events.extend(
            o.events
                .iter()
                .filter(|e| e.kind != "health" && e.t >= 0.0 && e.t <= duration.as_secs_f64())
                .map(|e| Event {
                    t: e.t,
                    kind: format!("wansteer-{}", e.kind),
                    detail: format!("{}: {}", e.site, e.text),
                }),
        );
        events.sort_by(|a, b| a.t.total_cmp(&b.t));
    }
    for e in &expectations {
        events.push(Event {
            t: duration.as_secs_f64(),
            kind: "expectation".into(),
            detail: format!(
                "{}: {} ({})",
                if e.passed { "passed" } else { "FAILED" },
                e.text,
                e.measured
            ),
        });
    }
    let end = duration.as_secs_f64();
    Ok(Report {
        scenario: scenario.name.clone(),
        topology: topology.name.clone(),
        prefix: plan.prefix.clone(),
        duration_s: end,
        passed: expectations.iter().all(|e| e.passed),
        impairments: report::windows(&events, end),
        expectations,
        events,
        voice: records,
        bulk: bulks,
        lines: emulators.iter().map(Emulator::status).collect(),
        mode: Mode::Off,
        steering: observed.unwrap_or_default(),
        comparison: None,
    })
}

fn emulator_of<'a>(emulators: &'a [Emulator], line: &str) -> anyhow::Result<&'a Emulator> {
    emulators
        .iter()
        .find(|e| e.line() == line)
        .with_context(|| format!("no emulator for line {line}"))
}

/// DNS lookups or TLS handshakes at a steady pace for the whole run (real client bytes for
/// the agents' DPI); a tally of successes lands in an event at the end.
fn spawn_app(
    plan: &Plan,
    t: &crate::scenario::Traffic,
    start: tokio::time::Instant,
    duration: Duration,
    events: Arc<Mutex<Vec<Event>>>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let to = plan.namespace_of(&t.to).context("node")?.clone();
    let from = plan.namespace_of(&t.from).context("node")?.name.clone();
    let addr = *to
        .addresses
        .iter()
        .find(|a| a.is_ipv4())
        .context("no IPv4 address")?;
    let t = t.clone();
    let every = t.every.unwrap_or(Duration::from_secs(1));
    Ok(tokio::spawn(async move {
        let is_dns = t.dns.is_some();
        let ip = match addr {
            std::net::IpAddr::V4(ip) => ip,
            std::net::IpAddr::V6(_) => unreachable!("IPv4 picked"),
        };
        let records: Vec<(String, std::net::Ipv4Addr)> =
            t.names.iter().map(|n| (n.clone(), ip)).collect();
        let server_ns = to.name.clone();
        let server = tokio::task::spawn_blocking(move || {
            if is_dns {
                crate::apps::dns_server(&server_ns, addr, &records)
            } else {
                crate::apps::tls_server(&server_ns, addr, 443, "bank.example")
            }
        })
        .await;
        let server = match server {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                events.lock().expect("lock").push(Event {
                    t: start.elapsed().as_secs_f64(),
                    kind: "app-failed".into(),
                    detail: format!("{}: {e:#}", t.name()),
                });
                return;
            }
            Err(_) => return,
        };
        let items = if is_dns {
            t.names.clone()
        } else {
            t.sni.clone()
        };
        let (mut ok, mut failed) = (0u32, 0u32);
        let mut tick = tokio::time::interval(every);
        let mut i = 0usize;
        while start.elapsed() + every <= duration {
            tick.tick().await;
            let item = items[i % items.len()].clone();
            i += 1;
            let from = from.clone();
            let done = tokio::task::spawn_blocking(move || {
                if is_dns {
                    crate::apps::dns_query(
                        &from,
                        SocketAddr::new(addr, 53),
                        &item,
                        Duration::from_millis(900),
                    )
                    .map(|_| ())
                } else {
                    crate::apps::tls_connect(&from, SocketAddr::new(addr, 443), &item).map(|_| ())
                }
            })
            .await;
            match done {
                Ok(Ok(())) => ok += 1,
                _ => failed += 1,
            }
        }
        drop(server);
        events.lock().expect("lock").push(Event {
            t: start.elapsed().as_secs_f64(),
            kind: if is_dns { "dns-result" } else { "tls-result" }.into(),
            detail: format!("{}: {ok} ok, {failed} failed", t.name()),
        });
    }))
}

type BulkTask = (String, tokio::task::JoinHandle<Option<f64>>);

/// Starts bulk TCP at its start time; its goodput (after a 1 s warm-up) lands in an event.
fn spawn_bulk(
    plan: &Plan,
    t: &crate::scenario::Traffic,
    name: &str,
    start: tokio::time::Instant,
    duration: Duration,
    events: Arc<Mutex<Vec<Event>>>,
) -> anyhow::Result<BulkTask> {
    let to = plan.namespace_of(&t.to).context("node")?.clone();
    let from = plan.namespace_of(&t.from).context("node")?.name.clone();
    let addr = *to
        .addresses
        .iter()
        .find(|a| a.is_ipv6() == t.ipv6)
        .context("no address of that family")?;
    let begin = t.start.unwrap_or_default();
    let port = t.port.unwrap_or(0);
    let window = t.stop.unwrap_or(duration).saturating_sub(begin) - Duration::from_secs(1);
    let (name, label) = (
        name.to_string(),
        format!("bulk {name} {} → {} ({addr})", t.from, t.to),
    );
    let task_name = name.clone();
    let task = tokio::spawn(async move {
        tokio::time::sleep_until(start + begin).await;
        events.lock().expect("lock").push(Event {
            t: start.elapsed().as_secs_f64(),
            kind: "traffic".into(),
            detail: label,
        });
        let result = tokio::task::spawn_blocking(move || {
            crate::bulk::run(
                &from,
                &to.name,
                SocketAddr::new(addr, port),
                Duration::from_secs(1),
                window,
            )
        })
        .await;
        let (detail, bps) = match result {
            Ok(Ok(r)) => (
                format!("{task_name}: {:.1} Mbit/s", r.bits_per_second / 1e6),
                Some(r.bits_per_second),
            ),
            Ok(Err(e)) => (format!("{task_name}: failed: {e:#}"), None),
            Err(e) => (format!("{task_name}: failed: {e}"), None),
        };
        events.lock().expect("lock").push(Event {
            t: start.elapsed().as_secs_f64(),
            kind: "bulk-result".into(),
            detail,
        });
        bps
    });
    Ok((name, task))
}

fn describe(i: &crate::scenario::ImpairStep) -> String {
    let mut parts = Vec::new();
    if let Some(d) = i.delay {
        parts.push(format!("delay {}ms", d.as_millis()));
    }
    if let Some(j) = i.jitter {
        parts.push(format!("jitter {}ms", j.as_millis()));
    }
    if let Some(l) = i.loss {
        parts.push(match i.burst {
            Some(b) => format!("loss {:.1}% bursts {b}", l * 100.0),
            None => format!("loss {:.1}%", l * 100.0),
        });
    }
    if let Some(r) = i.rate {
        parts.push(format!("rate {}", crate::units::format_rate(r)));
    }
    match i.down {
        Some(true) => parts.push("down".into()),
        Some(false) => parts.push("up".into()),
        None => {}
    }
    parts.join(", ")
}
