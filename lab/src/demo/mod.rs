//! `wansteer lab demo`: the closed loop, shown. Builds `lab/topologies/bank.yaml`, starts a
//! `wansteer agent` per site inside its router's namespace (with the controller, or standalone; with
//! `lab/demo/bank-lab.yaml`, DPI on each router's LAN bridge, `/metrics` in each router's
//! namespace), sends a voice stream from br1's pc1 to the DC, bulk TCP, SaaS over TLS (a
//! real ClientHello with SNI `crm.salesforce.com`, class `saas` by DPI) and DNS lookups
//! beside it, then degrades br1's mpls line (5% loss), clears it, takes it down and brings
//! it back. It prints a timeline an operator can follow, writes `report.json`, `report.md`
//! and `plot.svg`, removes everything on exit or Ctrl-C, and exits non-zero when voice did
//! not leave the lossy line within 5 s or the outage cost voice more than 1 s.
//!
//! [`report`] holds the pure part (expectations, report files); [`traffic`] the voice, bulk,
//! TLS and DNS generators; this module the orchestration.

pub mod controller;
pub mod report;
pub mod traffic;

use std::collections::BTreeMap;
use std::io::BufRead;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::emulator::Emulator;
use crate::emulator::control::{Request, Target};
use crate::emulator::loss::Loss;
use crate::emulator::model::ImpairmentChange;
use crate::lab::{self, LabState};
use crate::topology::{Plan, Role, Topology};
use report::{Event, LineSample, Recording, Schedule};
use traffic::VoiceEvent;

/// Run the closed-loop demo in the lab.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Topology to build.
    #[arg(long, default_value = "lab/topologies/bank.yaml")]
    pub topology: PathBuf,
    /// Policy the agents run (must match the topology's sites, lines and addresses).
    #[arg(long, default_value = "lab/demo/bank-lab.yaml")]
    pub policy: PathBuf,
    /// Directory for report.json, report.md, plot.svg and the agents' logs.
    #[arg(long, default_value = "demo-report")]
    pub report: PathBuf,
    /// Shortened timeline (about 35 s instead of 60 s), for CI.
    #[arg(long)]
    pub quick: bool,
    /// Name prefix for the lab's namespaces (default: `wl` + 4 random hex digits).
    #[arg(long)]
    pub prefix: Option<String>,
    /// Longest acceptable time for voice to leave the lossy line, seconds.
    #[arg(long, default_value_t = 5.0)]
    pub max_reaction: f64,
    /// Longest acceptable voice gap when the line dies, milliseconds.
    #[arg(long, default_value_t = 1000.0)]
    pub max_gap_ms: f64,
    /// Standalone agents only: each agent steers on its own from the policy, no controller.
    /// By default a `wansteer controller` on loopback decides and the agents apply its
    /// rule sets (and still fail over locally when a line dies).
    #[arg(long)]
    pub standalone: bool,
}

/// The branch and line the scenario hits.
const SITE: &str = "br1";
const LINE: &str = "mpls";
/// The agents' recovery window: short, so a line proves itself again within the demo.
pub const LONG_WINDOW: &str = "4s";
/// The LAN bridge of every router namespace: the agents classify its traffic (DPI).
const LAN_INTERFACE: &str = "lan";
/// Each agent serves `/metrics` here, inside its router's namespace.
pub const AGENT_METRICS: &str = "127.0.0.1:9464";

impl DemoArgs {
    fn schedule(&self) -> Schedule {
        let (impair_at, clear_at, down_at, up_at, end_at) = if self.quick {
            (5.0, 12.0, 22.0, 28.0, 33.0)
        } else {
            (10.0, 25.0, 35.0, 50.0, 60.0)
        };
        Schedule {
            line: LINE.into(),
            impair_at,
            loss: 0.05,
            clear_at,
            down_at,
            up_at,
            end_at,
        }
    }
}

/// Everything the demo started; dropping it stops and removes all of it.
struct Running {
    plan: Plan,
    emulators: Vec<Emulator>,
    agents: Vec<(String, Child)>,
    reflectors: Vec<Child>,
    controller: Option<Child>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut controller) = self.controller.take() {
            let _ = controller.kill();
            let _ = controller.wait();
        }
        for (_, child) in &self.agents {
            // SAFETY: kill has no memory effects; the pid is our own child's.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        for (_, child) in &mut self.agents {
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        for reflector in &mut self.reflectors {
            let _ = reflector.kill();
            let _ = reflector.wait();
        }
        for emulator in self.emulators.drain(..) {
            emulator.stop();
        }
        if let Err(error) = lab::teardown(&self.plan) {
            eprintln!("removing lab {}: {error:#}", self.plan.prefix);
        }
    }
}

fn unix_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

fn v4_of(plan: &Plan, node: &str) -> anyhow::Result<(String, IpAddr)> {
    let ns = plan
        .namespace_of(node)
        .with_context(|| format!("the topology has no node `{node}`"))?;
    let addr = ns
        .addresses
        .iter()
        .copied()
        .find(IpAddr::is_ipv4)
        .with_context(|| format!("node {node} has no IPv4 address"))?;
    Ok((ns.name.clone(), addr))
}

/// Starts `wansteer agent reflector` for the router in namespace `ns`: the site's STAMP
/// reflector as its own process, as `dist/systemd/wansteer-reflector.service` runs it, so
/// an agent restart does not look like the site's lines dying to the far ends.
pub fn start_reflector(exe: &Path, ns: &str, log: &Path) -> anyhow::Result<Child> {
    Command::new(exe)
        .args(["agent", "reflector", "--netns", ns])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log)?)
        .spawn()
        .with_context(|| format!("cannot start the reflector in {ns}"))
}

/// Starts `wansteer agent` for `site` inside namespace `ns`; its JSON events go to `tx`.
/// The site's reflector runs apart ([`start_reflector`]): the agent has `--reflect off`.
pub fn start_agent(
    exe: &Path,
    policy: &Path,
    site: &str,
    ns: &str,
    log: &Path,
    controller: Option<&controller::DemoController>,
    tx: mpsc::UnboundedSender<(String, Value)>,
) -> anyhow::Result<Child> {
    let mut command;
    match controller {
        // In the root namespace so it reaches the controller on loopback; probes and
        // kernel state go into the router's namespace through --netns.
        Some(controller) => {
            command = Command::new(exe);
            command
                .args(["agent", "--controller", &controller.url, "--token-file"])
                .arg(controller.token_file(site)?)
                .args(["--netns", ns]);
        }
        None => {
            command = Command::new("ip");
            command.args(["netns", "exec", ns]).arg(exe).arg("agent");
        }
    }
    command
        .arg("--policy")
        .arg(policy)
        .args([
            "--site",
            site,
            "--reflect",
            "off",
            "--json",
            "--summaries",
            "--long-window",
            LONG_WINDOW,
            "--lan",
            LAN_INTERFACE,
            "--metrics",
            AGENT_METRICS,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log)?);
    let mut child = command
        .spawn()
        .with_context(|| format!("cannot start the agent of {site}"))?;
    let stdout = child.stdout.take().expect("piped");
    let site = site.to_string();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Ok(value) = serde_json::from_str::<Value>(&line)
                && tx.send((site.clone(), value)).is_err()
            {
                break;
            }
        }
    });
    Ok(child)
}

/// Runs `wansteer lab demo`.
pub async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    // SAFETY: geteuid has no side effects.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the demo builds network namespaces: run it as root");
    }
    let topology = Topology::load(&args.topology)?;
    if let Err(diagnostics) = wansteer_policies::check_file(&args.policy) {
        let text: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
        bail!("policy refused:\n{}", text.join("\n"));
    }
    let policy = std::fs::canonicalize(&args.policy)?;
    std::fs::create_dir_all(&args.report)
        .with_context(|| format!("cannot create {}", args.report.display()))?;
    let exe = std::env::current_exe().context("cannot find the wansteer binary")?;
    let schedule = args.schedule();
    let prefix = match &args.prefix {
        Some(p) => p.clone(),
        None => lab::new_prefix(),
    };

    let plan = topology.plan(&prefix);
    let built_in = lab::build(&plan)?;
    let mut running = Running {
        plan: plan.clone(),
        emulators: Vec::new(),
        agents: Vec::new(),
        reflectors: Vec::new(),
        controller: None,
    };
    let state = LabState {
        prefix: prefix.clone(),
        topology_file: args.topology.display().to_string(),
        owner_pid: Some(std::process::id()),
        detached: false,
        plan: plan.clone(),
    };
    state.save()?;
    for line in &plan.lines {
        running.emulators.push(Emulator::start(
            &line.id,
            &line.namespace,
            "near",
            "far",
            line.baseline,
            Some(&state.socket(&line.id)),
        )?);
    }
    println!(
        "lab {prefix} up in {:.2} s ({} namespaces, {} emulated lines)",
        built_in.as_secs_f64(),
        plan.namespaces.len(),
        plan.lines.len()
    );

    let demo_controller = if args.standalone {
        None
    } else {
        let (child, demo_controller) = controller::start(&exe, &policy, &args.report)?;
        running.controller = Some(child);
        println!("controller up at {}", demo_controller.url);
        Some(demo_controller)
    };
    let (agent_tx, mut agent_rx) = mpsc::unbounded_channel();
    // Every site's reflector first: they run apart from the agents (as their own service
    // would), so no agent starts probing a far end that is not answering yet.
    for ns in plan.namespaces.iter().filter(|n| n.role == Role::Router) {
        let log = args.report.join(format!("reflector-{}.log", ns.node));
        running
            .reflectors
            .push(start_reflector(&exe, &ns.name, &log)?);
    }
    for ns in plan.namespaces.iter().filter(|n| n.role == Role::Router) {
        let log = args.report.join(format!("agent-{}.log", ns.node));
        let child = start_agent(
            &exe,
            &policy,
            &ns.node,
            &ns.name,
            &log,
            demo_controller.as_ref(),
            agent_tx.clone(),
        )?;
        running.agents.push((ns.node.clone(), child));
    }
    if let Some(demo_controller) = &demo_controller {
        demo_controller.follow_decisions(agent_tx.clone());
    }
    drop(agent_tx);
    let sites: Vec<String> = running.agents.iter().map(|(s, _)| s.clone()).collect();
    let mut ready = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while ready.len() < sites.len() {
        match tokio::time::timeout_at(deadline, agent_rx.recv()).await {
            Ok(Some((site, event))) if event["kind"] == "ready" => {
                println!(
                    "agent {site} ready: probing {}",
                    event["lines"].as_array().map_or(0, Vec::len)
                );
                ready.push(site);
            }
            Ok(Some(_)) => {}
            _ => {
                for (site, child) in &mut running.agents {
                    if let Ok(Some(status)) = child.try_wait() {
                        eprintln!(
                            "agent {site} exited ({status}); see {}",
                            args.report.join(format!("agent-{site}.log")).display()
                        );
                    }
                }
                bail!("not every agent became ready within 15 s (ready: {ready:?})");
            }
        }
    }
    // Let the probes fill their short window before anything happens.
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Where the branch's classes start (the latest placement any event showed).
    let mut initial_placement: BTreeMap<String, String> = BTreeMap::new();
    while let Ok((site, event)) = agent_rx.try_recv() {
        // Start-up moves are shown: they explain where the classes start.
        if site == SITE && matches!(event["kind"].as_str(), Some("move" | "failover" | "health")) {
            println!(
                "  (before t=0) {site}: {}",
                event["text"].as_str().unwrap_or_default()
            );
        }
        if site == SITE
            && let Ok(placement) =
                serde_json::from_value::<BTreeMap<String, String>>(event["placement"].clone())
            && !placement.is_empty()
        {
            initial_placement = placement;
        }
    }

    let (voice_ns, voice_to) = v4_of(&plan, "dc-dc1")?;
    let (pc_ns, _) = v4_of(&plan, &format!("{SITE}-pc1"))?;
    let (bulk_ns, bulk_to) = v4_of(&plan, "dc-dc2")?;
    let (bulk_from_ns, _) = v4_of(&plan, &format!("{SITE}-pc2"))?;
    let voice_rx_socket = traffic::udp_in(&voice_ns, SocketAddr::new(voice_to, 4000), None)?;
    let voice_tx_socket = traffic::udp_in(&pc_ns, "0.0.0.0:0".parse()?, Some(46))?;
    let zero_instant = tokio::time::Instant::now();
    let zero_unix_ms = unix_ms();
    let zero_mono = crate::voice::monotonic_ns();
    let stop_voice = Arc::new(AtomicBool::new(false));
    let (voice_tx, mut voice_rx) = mpsc::unbounded_channel();
    let receiver = tokio::spawn(traffic::receive_voice(
        voice_rx_socket,
        zero_mono,
        stop_voice.clone(),
        voice_tx,
    ));
    let sender = tokio::spawn(traffic::send_voice(
        voice_tx_socket,
        SocketAddr::new(voice_to, 4000),
        stop_voice.clone(),
    ));
    let bulk = traffic::Bulk::start(&bulk_from_ns, &bulk_ns, SocketAddr::new(bulk_to, 5201))
        .map_err(|e| eprintln!("bulk TCP not started: {e:#}"))
        .ok();
    let (app_tx, mut app_rx) = mpsc::unbounded_channel();
    let apps = start_apps(&plan, zero_mono, app_tx)
        .map_err(|e| eprintln!("SaaS/DNS traffic not started: {e:#}"))
        .ok();
    println!(
        "t=0: voice {SITE}-pc1 → dc-dc1 (EF, 50 packets/s){}{}; timeline: {:.0}s {SITE} {LINE} loss {:.0}%, {:.0}s clear, {:.0}s {LINE} down, {:.0}s up, end {:.0}s",
        if bulk.is_some() {
            ", bulk TCP br1-pc2 → dc-dc2"
        } else {
            ""
        },
        if apps.is_some() {
            format!(
                ", SaaS TLS (SNI {SAAS_SNI}) br1-pc1 → dc-dc2:443 every 0.5 s, DNS br1-pc2 → dc-dc1:53 every 0.25 s"
            )
        } else {
            String::new()
        },
        schedule.impair_at,
        schedule.loss * 100.0,
        schedule.clear_at,
        schedule.down_at,
        schedule.up_at,
        schedule.end_at
    );

    let mut rec = Recording {
        voice_line: vec![(
            0.0,
            initial_placement
                .get("voice")
                .cloned()
                .unwrap_or_else(|| LINE.to_string()),
        )],
        class_lines: TRACKED
            .iter()
            .filter_map(|c| {
                let line = initial_placement.get(*c)?;
                Some((c.to_string(), vec![(0.0, line.clone())]))
            })
            .collect(),
        ..Recording::default()
    };
    let line_id = format!("{SITE}-{LINE}");
    let emulator_index = plan
        .lines
        .iter()
        .position(|l| l.id == line_id)
        .with_context(|| format!("the topology has no line {line_id}"))?;
    let steps: Vec<(f64, &str, Request)> = vec![
        (
            schedule.impair_at,
            "impair",
            Request::Change {
                target: Target::Both,
                change: ImpairmentChange {
                    loss: Some(Loss::Random { p: schedule.loss }),
                    ..ImpairmentChange::default()
                },
            },
        ),
        (
            schedule.clear_at,
            "clear",
            Request::Clear {
                target: Target::Both,
            },
        ),
        (
            schedule.down_at,
            "down",
            Request::Change {
                target: Target::Both,
                change: ImpairmentChange {
                    down: Some(true),
                    ..ImpairmentChange::default()
                },
            },
        ),
        (
            schedule.up_at,
            "up",
            Request::Change {
                target: Target::Both,
                change: ImpairmentChange {
                    down: Some(false),
                    ..ImpairmentChange::default()
                },
            },
        ),
    ];
    let mut next_step = 0;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut interrupted = false;
    let mut last_voice: Option<crate::voice::IntervalReport> = None;
    let mut app_seconds = AppSeconds::default();
    let mut log = |rec: &mut Recording, t: f64, kind: &str, detail: String| {
        println!("{t:7.2}s  {detail}");
        rec.events.push(Event {
            t,
            kind: kind.to_string(),
            detail,
        });
    };
    loop {
        let at = steps.get(next_step).map_or(schedule.end_at, |(t, _, _)| *t);
        tokio::select! {
            _ = tokio::time::sleep_until(zero_instant + Duration::from_secs_f64(at)) => {
                let Some((_, kind, request)) = steps.get(next_step) else { break };
                next_step += 1;
                let t = zero_instant.elapsed().as_secs_f64();
                let response = running.emulators[emulator_index].apply(request);
                let detail = match *kind {
                    "impair" => format!("▶ {SITE} {LINE}: {:.0}% loss in both directions", schedule.loss * 100.0),
                    "clear" => format!("▶ {SITE} {LINE}: loss cleared"),
                    "down" => format!("▶ {SITE} {LINE}: line down (outage)"),
                    _ => format!("▶ {SITE} {LINE}: line restored"),
                };
                if let Err(error) = response.into_result() {
                    log(&mut rec, t, "error", format!("emulator refused {kind}: {error:#}"));
                }
                log(&mut rec, t, "impairment", detail);
            }
            Some((site, event)) = agent_rx.recv() => {
                let t = (event["t_unix_ms"].as_f64().unwrap_or_else(unix_ms) - zero_unix_ms) / 1000.0;
                on_agent_event(&mut rec, &mut log, t, &site, &event, last_voice.as_ref());
            }
            Some(event) = voice_rx.recv() => match event {
                VoiceEvent::Interval(report) => {
                    let t = report.t + 1.0;
                    if report.loss > 0.0 || (report.t as u64).is_multiple_of(10) {
                        let on = report::voice_line_at(&rec, t).unwrap_or("?").to_string();
                        println!(
                            "{t:7.2}s    voice on {on}: {}/{} packets, loss {:.1}%, longest gap {:.0} ms, latency {}, MOS {:.2}",
                            report.received, report.expected, report.loss * 100.0, report.longest_gap_ms,
                            report.latency_ms.map_or("-".into(), |l| format!("{l:.1} ms")), report.mos
                        );
                    }
                    rec.voice.push(report.clone());
                    last_voice = Some(report);
                }
                VoiceEvent::Gap { start_s, ms } => {
                    rec.gaps.push((start_s, ms));
                    log(&mut rec, start_s, "gap", format!("voice stream gap {ms:.0} ms"));
                }
            },
            Some(sample) = app_rx.recv() => {
                on_app_sample(&mut rec, &mut log, &mut app_seconds, sample);
            }
            _ = tokio::signal::ctrl_c() => { interrupted = true; break; }
            _ = terminate.recv() => { interrupted = true; break; }
        }
    }
    stop_voice.store(true, Ordering::Relaxed);
    let _ = sender.await;
    rec.voice_total = receiver.await.ok();
    if let Some(bulk) = bulk {
        rec.bulk_mbit =
            Some(bulk.bytes() as f64 * 8.0 / 1e6 / zero_instant.elapsed().as_secs_f64());
        drop(bulk);
    }
    drop(apps);
    // The branch agent's DPI verdicts, before the lab goes.
    let br1_ns = plan
        .namespace_of(SITE)
        .map(|n| n.name.clone())
        .unwrap_or_default();
    match traffic::scrape(&br1_ns, AGENT_METRICS.parse()?) {
        Ok(page) => {
            rec.dpi_verdicts = Some(traffic::per_class(
                &page,
                "wansteer_agent_dpi_verdicts_installed_total",
            ))
        }
        Err(error) => eprintln!("cannot read the {SITE} agent's /metrics: {error:#}"),
    }
    let removing = Instant::now();
    drop(running);
    println!(
        "lab {prefix} removed in {:.2} s",
        removing.elapsed().as_secs_f64()
    );

    let expectations = report::judge(&rec, &schedule, args.max_reaction, args.max_gap_ms);
    let scenario = if args.quick {
        "brownout and blackout (quick)"
    } else {
        "brownout and blackout"
    };
    report::write(&args.report, scenario, &schedule, &rec, &expectations)?;
    println!();
    for e in &expectations {
        println!(
            "{} {} — {}",
            if e.passed { "PASS" } else { "FAIL" },
            e.text,
            e.measured
        );
    }
    println!("report: {}", args.report.join("report.md").display());
    if interrupted {
        println!("interrupted: the run is incomplete");
        return Ok(ExitCode::from(130));
    }
    Ok(if expectations.iter().all(|e| e.passed) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Prints and records what an agent did; tracks the line br1's voice uses.
fn on_agent_event(
    rec: &mut Recording,
    log: &mut impl FnMut(&mut Recording, f64, &str, String),
    t: f64,
    site: &str,
    event: &Value,
    last_voice: Option<&crate::voice::IntervalReport>,
) {
    let text = event["text"].as_str().unwrap_or_default().to_string();
    let placement: BTreeMap<String, String> =
        serde_json::from_value(event["placement"].clone()).unwrap_or_default();
    let voice_now = placement.get("voice").cloned();
    let voice_before = report::voice_line_at(rec, t).map(str::to_string);
    if site == SITE {
        track_classes(rec, log, t, &placement);
    }
    let track_voice = |rec: &mut Recording| {
        if site == SITE
            && let Some(now) = &voice_now
            && voice_before.as_ref() != Some(now)
        {
            rec.voice_moves
                .push((t, voice_before.clone().unwrap_or_default(), now.clone()));
            rec.voice_line.push((t, now.clone()));
        }
    };
    match event["kind"].as_str().unwrap_or_default() {
        "move" => {
            track_voice(rec);
            let mos = last_voice.map_or(String::new(), |v| {
                format!("; voice MOS {:.2} in the last second", v.mos)
            });
            log(
                rec,
                t,
                "move",
                format!(
                    "{site}: {text} (applied in {:.0} ms){}",
                    event["apply_ms"].as_f64().unwrap_or(0.0),
                    if event["class"] == "voice" {
                        mos
                    } else {
                        String::new()
                    }
                ),
            );
        }
        "failover" => {
            track_voice(rec);
            log(
                rec,
                t,
                "failover",
                format!(
                    "{site}: local failover — {text} (applied in {:.0} ms)",
                    event["apply_ms"].as_f64().unwrap_or(0.0)
                ),
            );
        }
        "applied" => {
            track_voice(rec);
            log(
                rec,
                t,
                "applied",
                format!(
                    "{site}: {text} (applied in {:.0} ms)",
                    event["apply_ms"].as_f64().unwrap_or(0.0)
                ),
            );
        }
        "decision" => log(rec, t, "decision", format!("controller → {site}: {text}")),
        "failback" => {
            track_voice(rec);
            log(
                rec,
                t,
                "failback",
                format!(
                    "{site}: {} in use again after the hold-down",
                    event["lines"]
                        .as_array()
                        .map(|l| l
                            .iter()
                            .filter_map(Value::as_str)
                            .collect::<Vec<_>>()
                            .join(", "))
                        .unwrap_or_default()
                ),
            );
        }
        "health" => {
            let sla = event["transition"]["sla"].as_str().unwrap_or_default();
            if site == SITE && (sla == "voice" || sla == "line") {
                log(rec, t, "health", format!("{site}: {text}"));
            }
        }
        "summary" if site == SITE => {
            let summary = &event["summary"];
            rec.lines.push(LineSample {
                t,
                line: summary["line"].as_str().unwrap_or_default().to_string(),
                loss: summary["short"]["loss"]["ratio"].as_f64().unwrap_or(0.0),
                rtt_ms: summary["short"]["rtt_ms"]["p50"].as_f64(),
            });
        }
        "error" => log(rec, t, "error", format!("{site}: {text}")),
        _ => {}
    }
}

/// The SNI of the demo's SaaS traffic (the policy's `saas` class matches `salesforce.com`).
const SAAS_SNI: &str = "crm.salesforce.com";
/// Classes besides voice whose line at the branch the timeline follows.
const TRACKED: [&str; 3] = ["saas", "dns", "bulk"];

/// DNS (dnsmasq on dc-dc1) and TLS (`openssl s_server` on dc-dc2:443) servers, and the
/// clients at the branch; the servers stop with the returned handle.
fn start_apps(
    plan: &Plan,
    zero_ns: u64,
    tx: mpsc::UnboundedSender<traffic::AppSample>,
) -> anyhow::Result<(
    crate::apps::ServerProcess,
    crate::apps::ServerProcess,
    traffic::Apps,
)> {
    let (dns_ns, dns_addr) = v4_of(plan, "dc-dc1")?;
    let (tls_ns, tls_addr) = v4_of(plan, "dc-dc2")?;
    let (tls_from, _) = v4_of(plan, &format!("{SITE}-pc1"))?;
    let (dns_from, _) = v4_of(plan, &format!("{SITE}-pc2"))?;
    let IpAddr::V4(tls_v4) = tls_addr else {
        bail!("dc-dc2 has no IPv4 address");
    };
    let dns = crate::apps::dns_server(&dns_ns, dns_addr, &[(SAAS_SNI.to_string(), tls_v4)])?;
    let tls = crate::apps::tls_server(&tls_ns, tls_addr, 443, SAAS_SNI)?;
    let clients = traffic::Apps::start(
        traffic::AppsPlan {
            tls_from,
            tls_to: SocketAddr::new(tls_addr, 443),
            sni: SAAS_SNI.to_string(),
            tls_every: Duration::from_millis(500),
            dns_from,
            dns_to: SocketAddr::new(dns_addr, 53),
            dns_name: SAAS_SNI.to_string(),
            dns_every: Duration::from_millis(250),
        },
        zero_ns,
        tx,
    )?;
    Ok((dns, tls, clients))
}

/// Per-second tallies of the application traffic, printed every 10 s and on failures.
#[derive(Debug, Default)]
struct AppSeconds {
    /// (class, whole second) → (ok, tried)
    tally: BTreeMap<(String, u64), (u32, u32)>,
    printed: BTreeMap<String, u64>,
}

fn on_app_sample(
    rec: &mut Recording,
    log: &mut impl FnMut(&mut Recording, f64, &str, String),
    seconds: &mut AppSeconds,
    sample: traffic::AppSample,
) {
    let second = sample.t.max(0.0) as u64;
    let entry = seconds
        .tally
        .entry((sample.class.clone(), second))
        .or_default();
    entry.0 += u32::from(sample.ok);
    entry.1 += 1;
    // Close the previous seconds of this class: print failures and a heartbeat every 10 s.
    let last = seconds.printed.get(&sample.class).copied();
    let closed: Vec<(u64, (u32, u32))> = seconds
        .tally
        .iter()
        .filter(|((c, s), _)| *c == sample.class && *s < second && last.is_none_or(|l| *s > l))
        .map(|((_, s), v)| (*s, *v))
        .collect();
    for (s, (ok, tried)) in closed {
        seconds.printed.insert(sample.class.clone(), s);
        let t = s as f64 + 1.0;
        let on = report::class_line_at(rec, &sample.class, t)
            .unwrap_or("?")
            .to_string();
        let what = if sample.class == "saas" {
            "TLS handshakes"
        } else {
            "DNS lookups"
        };
        if ok < tried {
            log(
                rec,
                t,
                "app",
                format!(
                    "{} on {on}: {ok}/{tried} {what} succeeded in the last second",
                    sample.class
                ),
            );
        } else if s % 10 == 9 {
            println!(
                "{t:7.2}s    {} on {on}: {ok}/{tried} {what} ok",
                sample.class
            );
        }
    }
    seconds.tally.retain(|(_, s), _| *s + 2 >= second);
    rec.apps.push(sample);
}

/// Records and prints the branch's placement changes of the tracked classes.
fn track_classes(
    rec: &mut Recording,
    log: &mut impl FnMut(&mut Recording, f64, &str, String),
    t: f64,
    placement: &BTreeMap<String, String>,
) {
    let mut changes = Vec::new();
    for class in TRACKED {
        let Some(now) = placement.get(class) else {
            continue;
        };
        let before = report::class_line_at(rec, class, t).map(str::to_string);
        if before.as_ref() != Some(now) {
            if let Some(before) = &before {
                changes.push(format!("{class} {before}→{now}"));
            }
            rec.class_lines
                .entry(class.to_string())
                .or_default()
                .push((t, now.clone()));
        }
    }
    if !changes.is_empty() {
        log(
            rec,
            t,
            "placement",
            format!("{SITE}: {}", changes.join(", ")),
        );
    }
}
