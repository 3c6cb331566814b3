//! The daemon's tasks and its one event loop (the only owner of the data plane).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use tokio::net::UdpSocket;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, oneshot};
use wansteer_probes::LineMonitor;
use wansteer_probes::net::{SocketOptions, udp_socket};
use wansteer_probes::tasks::{UdpTransport, run_reflector, run_sender};
use wansteer_wire::report::{HealthState, LineReport};
use wansteer_wire::ruleset::RuleSet;

use super::dpi;
use super::events::{AgentEvent, EventLog};
use super::metrics::AgentMetrics;
use super::netns;
use super::plan::{LINE_SLA, SitePlan, plan_site, sla_score, steer_routes};
use super::probe_thread::{ProbePriority, ProbePriorityArg, ProbeThread};
use super::reflector::{self, ReflectAt};
use super::steering::{HealthBoard, Steering};
use crate::dataplane::standalone::compile_policy;
use crate::dataplane::{Dataplane, FailoverState, Kernel, LineEvent};

/// Options of the agent daemon.
#[derive(Debug, clap::Args)]
pub struct DaemonArgs {
    /// The policy file. Standalone: everything comes from it. With --controller: only this
    /// site's lines and probe settings (interfaces, reflectors, SLA limits, timers) are
    /// read from it; routes, QoS and DSCP come from the controller's rule sets.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// The site of the policy this agent is.
    #[arg(long, value_name = "NAME", requires = "policy")]
    pub site: Option<String>,
    /// Take routes and QoS from this controller, e.g. http://10.0.0.1:8080 (needs --site,
    /// --policy and --token-file). Reports line measurements to it every second; a dead
    /// line is still routed around locally at once; without the controller the rules in
    /// force stay.
    #[arg(long, value_name = "URL", requires_all = ["policy", "token_file"])]
    pub controller: Option<String>,
    /// File holding this site's agent token (first line), from the controller's tokens file.
    #[arg(long, value_name = "FILE", requires = "controller")]
    pub token_file: Option<PathBuf>,
    /// Run in this network namespace (kernel state and sockets) instead of the agent's own.
    #[arg(long, value_name = "NAME")]
    pub netns: Option<String>,
    /// Apply the policy once and exit (no probes, no steering).
    #[arg(long)]
    pub once: bool,
    /// Where the STAMP reflector listens for the far agents' probes, or `off` when a
    /// separate `wansteer agent reflector` answers for this site (it then outlives agent
    /// restarts, so the far ends do not see the site's lines die while the agent restarts).
    #[arg(long, value_name = "ADDR|off", default_value = "0.0.0.0:862")]
    pub reflect: ReflectAt,
    #[command(flatten)]
    pub probe: ProbePriorityArg,
    /// Recovery (long) window of the probes, e.g. `10s` (default 30s).
    #[arg(long, value_name = "DURATION", value_parser = parse_seconds)]
    pub long_window: Option<Duration>,
    /// One JSON object per event on stdout instead of text.
    #[arg(long)]
    pub json: bool,
    /// Also print each line's periodic measurement summary.
    #[arg(long)]
    pub summaries: bool,
    /// Classify the traffic of this LAN interface and install DPI verdicts (repeatable).
    #[arg(
        long,
        value_name = "IFACE",
        requires = "policy",
        conflicts_with = "once"
    )]
    pub lan: Vec<String>,
    /// Serve Prometheus metrics at http://ADDR/metrics (inside --netns when given).
    #[arg(
        long,
        value_name = "ADDR",
        requires = "policy",
        conflicts_with = "once"
    )]
    pub metrics: Option<SocketAddr>,
}

fn parse_seconds(text: &str) -> Result<Duration, String> {
    let number = text.strip_suffix('s').unwrap_or(text);
    number
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s > 0.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("`{text}`: expected seconds, e.g. 10s"))
}

pub(super) fn wall_clock() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// Reads, checks and compiles the policy for `site`; every diagnostic in the error.
pub(super) fn load(
    policy_path: &std::path::Path,
    site: &str,
    long_window: Option<Duration>,
) -> anyhow::Result<(SitePlan, RuleSet)> {
    // The agent knows its classifier's catalogue: an app it cannot recognise is refused.
    let options = wansteer_policies::CheckOptions {
        known_apps: Some(crate::classifier::Catalogue::builtin().app_names()),
    };
    let checked =
        wansteer_policies::check_file_with(policy_path, &options).map_err(|diagnostics| {
            let text: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
            anyhow::anyhow!("policy refused:\n{}", text.join("\n"))
        })?;
    let policy = checked.policy;
    let mut ruleset = compile_policy(&policy, site, 1)
        .with_context(|| format!("policy {} cannot run at site {site}", policy_path.display()))?;
    let plan = plan_site(&policy, site, &mut ruleset, long_window)
        .map_err(|e| anyhow::anyhow!("policy {}: {e}", policy_path.display()))?;
    Ok((plan, ruleset))
}

/// Runs `wansteer agent` (no subcommand).
pub async fn run(args: DaemonArgs) -> anyhow::Result<ExitCode> {
    if let Some(controller) = args.controller.clone() {
        if args.once {
            anyhow::bail!("--once applies a policy standalone; it does not go with --controller");
        }
        return super::controller_mode::run(args, controller).await;
    }
    if args.once || args.policy.is_none() {
        return crate::dataplane::cli::run_daemon(crate::dataplane::cli::DaemonArgs {
            policy: args.policy,
            site: args.site,
            netns: args.netns,
            once: args.once,
        })
        .await;
    }
    let (Some(policy_path), Some(site)) = (args.policy.clone(), args.site.clone()) else {
        anyhow::bail!("give --policy FILE --site NAME to run standalone");
    };
    let (plan, ruleset) = load(&policy_path, &site, args.long_window)?;
    let metrics = args.metrics.map(|_| AgentMetrics::new(&site));
    let log = EventLog {
        site: site.clone(),
        json: args.json,
        summaries: args.summaries,
        metrics: metrics.clone(),
    };
    let kernel = args
        .netns
        .clone()
        .map_or_else(Kernel::here, Kernel::in_netns);
    let mut dataplane = Dataplane::new(kernel, FailoverState::standalone(plan.hold_down));
    dataplane
        .apply(ruleset.clone().seal())
        .context("applying the policy")?;

    let netns = args.netns.as_deref();
    let metrics_task = match (args.metrics, metrics) {
        (Some(addr), Some(metrics)) => Some(super::metrics::spawn(addr, netns, metrics)?),
        _ => None,
    };
    let policy = wansteer_policies::check_file(&policy_path)
        .map_err(|_| anyhow::anyhow!("policy {} refused", policy_path.display()))?
        .policy;
    let mut dpi = dpi::spawn(&args.lan, netns, &policy, log.metrics.clone())?;
    if let Some(metrics) = &log.metrics {
        let classes = plan.groups.iter().map(|g| g.lines.class.as_str());
        metrics.declare(plan.probes.iter().map(|p| p.line.as_str()), classes);
    }
    let probes = Probes::start(&plan, netns, args.reflect, args.probe.probe_priority)?;
    let reflect = args.reflect;
    let mut reports = probes.reports;
    log.emit(AgentEvent::Ready {
        lines: plan
            .probes
            .iter()
            .map(|p| format!("{} via {} to {}", p.line, p.interface, p.reflector))
            .collect(),
        reflector: reflect.to_string(),
    });

    let reload = || load(&policy_path, &site, args.long_window);
    let result = event_loop(
        plan,
        &log,
        &mut dataplane,
        ruleset,
        &mut reports,
        reload,
        &mut dpi,
    )
    .await;
    metrics_task.inspect(tokio::task::JoinHandle::abort);
    probes.tasks.stop().await;
    tracing::info!("agent stopping; the installed rules stay in place");
    result.map(|()| ExitCode::SUCCESS)
}

/// What the loop owns besides the data plane.
struct Loop<'a> {
    plan: SitePlan,
    log: &'a EventLog,
    ruleset: RuleSet,
    steering: Steering,
    board: HealthBoard,
    down: BTreeSet<String>,
}

async fn event_loop(
    plan: SitePlan,
    log: &EventLog,
    dataplane: &mut Dataplane,
    ruleset: RuleSet,
    reports: &mut mpsc::UnboundedReceiver<LineReport>,
    reload: impl Fn() -> anyhow::Result<(SitePlan, RuleSet)>,
    dpi: &mut Option<dpi::Dpi>,
) -> anyhow::Result<()> {
    let mut state = Loop {
        steering: steering_for(&plan),
        plan,
        log,
        ruleset,
        board: HealthBoard::default(),
        down: BTreeSet::new(),
    };
    let mut terminate = signal(SignalKind::terminate())?;
    let mut hangup = signal(SignalKind::hangup())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        let deadline = dataplane.next_deadline();
        tokio::select! {
            _ = terminate.recv() => return Ok(()),
            _ = hangup.recv() => state.reload(dataplane, &reload),
            _ = interrupt.recv() => return Ok(()),
            report = reports.recv() => match report {
                Some(report) => state.on_report(dataplane, report),
                None => anyhow::bail!("every line prober stopped"),
            },
            _ = tick.tick() => {
                state.steer(dataplane);
                if let (Some(metrics), Some(ruleset)) = (&log.metrics, dataplane.ruleset()) {
                    metrics.set_ruleset_version(ruleset.version);
                    metrics.set_placement(&state.placement(dataplane));
                }
            }
            batch = dpi::next(dpi) => {
                for text in dpi.as_mut().map(|d| d.install(dataplane, batch)).unwrap_or_default() {
                    log.emit(AgentEvent::Error { text });
                }
            }
            _ = async { tokio::time::sleep_until(deadline.expect("guarded")).await }, if deadline.is_some() => {
                let before = dataplane.avoided_lines().clone();
                let started = std::time::Instant::now();
                match dataplane.on_tick(tokio::time::Instant::now()) {
                    Ok(_) => {
                        let back: Vec<String> = before.difference(dataplane.avoided_lines()).cloned().collect();
                        if !back.is_empty() {
                            log.emit(AgentEvent::Failback { lines: back, apply_ms: ms(started), placement: state.placement(dataplane) });
                        }
                    }
                    Err(error) => log.emit(AgentEvent::Error { text: format!("fail-back failed: {error:#}") }),
                }
                state.steer(dataplane);
            }
        }
    }
}

fn steering_for(plan: &SitePlan) -> Steering {
    Steering::new(
        plan.groups.iter().map(|g| g.lines.clone()).collect(),
        plan.hold_down,
        plan.min_improvement,
    )
}

pub(super) fn ms(started: std::time::Instant) -> f64 {
    started.elapsed().as_secs_f64() * 1000.0
}

impl Loop<'_> {
    fn on_report(&mut self, dataplane: &mut Dataplane, report: LineReport) {
        match report {
            LineReport::Summary(summary) => {
                for (name, sla) in &self.plan.slas {
                    self.board
                        .set_score(&summary.line, name, sla_score(sla, &summary));
                }
                self.log.emit(AgentEvent::Summary { summary });
            }
            LineReport::Transition(transition) => {
                let text = transition.to_string();
                self.board.set_state(
                    &transition.line,
                    &transition.sla,
                    transition.to,
                    transition.reasons.clone(),
                );
                let line = transition.line.clone();
                let is_line_sla = transition.sla == LINE_SLA;
                let to = transition.to;
                self.log.emit(AgentEvent::Health {
                    transition,
                    text: text.clone(),
                });
                if to == HealthState::Down && self.down.insert(line.clone()) {
                    // Any SLA machine seeing the outage is the line's outage: fail over first,
                    // before any per-class move.
                    self.failover(dataplane, &line, &text);
                } else if is_line_sla && to == HealthState::Up {
                    // Proven again for a whole hold-down, or straight from `Down` when late
                    // answers withdrew the outage (slow, not dead): the data plane's own
                    // hold-down (standalone fail-back) starts now.
                    if self.down.remove(&line) {
                        let event = LineEvent { line, up: true };
                        if let Err(error) =
                            dataplane.on_line_event(&event, tokio::time::Instant::now())
                        {
                            self.log.emit(AgentEvent::Error {
                                text: format!("line {} up: {error:#}", event.line),
                            });
                        }
                    }
                }
                self.steer(dataplane);
            }
        }
    }

    /// SIGHUP: a new policy. Refused (the rules in force stay) when it does not check or
    /// compile, or when it changes the probed lines (that needs a restart).
    fn reload(
        &mut self,
        dataplane: &mut Dataplane,
        reload: &impl Fn() -> anyhow::Result<(SitePlan, RuleSet)>,
    ) {
        let outcome = reload().and_then(|(plan, mut ruleset)| {
            let targets = |p: &SitePlan| {
                p.probes
                    .iter()
                    .map(|l| (l.line.clone(), l.reflector, l.monitor.clone()))
                    .collect::<Vec<_>>()
            };
            if targets(&plan) != targets(&self.plan) {
                anyhow::bail!("the policy changes the probed lines or timers: restart the agent");
            }
            ruleset.version = self.ruleset.version + 1;
            dataplane.apply(ruleset.clone().seal())?;
            Ok((plan, ruleset))
        });
        match outcome {
            Ok((plan, ruleset)) => {
                self.steering = steering_for(&plan);
                self.plan = plan;
                self.ruleset = ruleset;
                tracing::info!("policy reloaded");
                self.steer(dataplane);
            }
            Err(error) => self.log.emit(AgentEvent::Error {
                text: format!("reload refused, the rules in force stay: {error:#}"),
            }),
        }
    }

    /// The line each steering group's traffic takes now.
    fn placement(&self, dataplane: &Dataplane) -> BTreeMap<String, String> {
        self.plan
            .groups
            .iter()
            .filter_map(|g| {
                self.steering
                    .effective(&g.lines.class, dataplane.avoided_lines())
                    .map(|line| (g.lines.class.clone(), line))
            })
            .collect()
    }

    /// Local fast failover: the line is routed around now.
    fn failover(&mut self, dataplane: &mut Dataplane, line: &str, why: &str) {
        let on_line: Vec<String> = self
            .plan
            .groups
            .iter()
            .map(|g| g.lines.class.clone())
            .filter(|class| {
                self.steering
                    .effective(class, dataplane.avoided_lines())
                    .is_some_and(|l| l == line)
            })
            .collect();
        let started = std::time::Instant::now();
        let event = LineEvent {
            line: line.to_string(),
            up: false,
        };
        match dataplane.on_line_event(&event, tokio::time::Instant::now()) {
            Ok(report) => {
                let moved: Vec<String> = on_line
                    .iter()
                    .map(|class| {
                        format!(
                            "{class} {line}→{}",
                            self.steering
                                .effective(class, dataplane.avoided_lines())
                                .unwrap_or_else(|| "(none)".into())
                        )
                    })
                    .collect();
                self.log.emit(AgentEvent::Failover {
                    line: line.to_string(),
                    classes: on_line,
                    text: format!(
                        "{why}; {} ({} routes replaced, {} conntrack entries moved)",
                        if moved.is_empty() {
                            "no class was on it".to_string()
                        } else {
                            moved.join(", ")
                        },
                        report.route_commands,
                        report.conntrack_entries_deleted
                    ),
                    apply_ms: ms(started),
                    placement: self.placement(dataplane),
                });
            }
            Err(error) => self.log.emit(AgentEvent::Error {
                text: format!("failover off {line} failed: {error:#}"),
            }),
        }
    }

    /// Moves classes whose line breaks their SLA, and fails back when due.
    fn steer(&mut self, dataplane: &mut Dataplane) {
        let pinned = self
            .steering
            .pin_failed_over(&self.board, dataplane.avoided_lines());
        if !pinned.is_empty() {
            tracing::info!(
                ?pinned,
                "classes stay on their failover line until their SLA is met again"
            );
        }
        let moves = self.steering.decide(
            &self.board,
            dataplane.avoided_lines(),
            tokio::time::Instant::now(),
        );
        if moves.is_empty() && pinned.is_empty() {
            return;
        }
        let orders: BTreeMap<String, Vec<String>> = self
            .plan
            .groups
            .iter()
            .filter_map(|g| {
                self.steering
                    .route_order(&g.lines.class)
                    .map(|order| (g.lines.class.clone(), order))
            })
            .collect();
        steer_routes(&mut self.ruleset, &self.plan.groups, &orders);
        self.ruleset.version += 1;
        let started = std::time::Instant::now();
        match dataplane.apply(self.ruleset.clone().seal()) {
            Ok(_) => {
                let apply_ms = ms(started);
                let placement = self.placement(dataplane);
                for r#move in moves {
                    let text = r#move.to_string();
                    self.log.emit(AgentEvent::Move {
                        r#move,
                        text,
                        apply_ms,
                        placement: placement.clone(),
                    });
                }
            }
            Err(error) => self.log.emit(AgentEvent::Error {
                text: format!(
                    "moving {} failed, the rules in force stay: {error:#}",
                    moves
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
            }),
        }
    }
}

/// The running probers and reflector of one site.
pub(super) struct Probes {
    /// Every line's summaries and health transitions.
    pub reports: mpsc::UnboundedReceiver<LineReport>,
    pub tasks: ProbeTasks,
}

/// Handles to stop the probe tasks, and the thread they run on.
pub(super) struct ProbeTasks {
    /// The agent's own reflector (none with `--reflect off`).
    reflector: Option<(oneshot::Sender<()>, tokio::task::JoinHandle<()>)>,
    senders: Vec<tokio::task::AbortHandle>,
    thread: ProbeThread,
}

impl ProbeTasks {
    pub async fn stop(self) {
        for sender in &self.senders {
            sender.abort();
        }
        if let Some((stop, task)) = self.reflector {
            let _ = stop.send(());
            let _ = task.await;
        }
        drop(self.thread);
    }
}

impl Probes {
    /// Starts the STAMP reflector on `reflect` and one prober per line of `plan`, with
    /// their sockets in namespace `netns` (or here), on a probe thread of `priority`.
    pub fn start(
        plan: &SitePlan,
        netns: Option<&str>,
        reflect: ReflectAt,
        priority: ProbePriority,
    ) -> anyhow::Result<Probes> {
        let thread = ProbeThread::start(priority).context("cannot start the probe thread")?;
        // Sockets made from here on are driven by the probe thread's reactor.
        let entered = thread.enter();
        let reflector = match reflect {
            ReflectAt::Off => None,
            ReflectAt::Here(listen) => {
                let socket = reflector::bind(netns, listen)?;
                let (stop, stopped) = oneshot::channel::<()>();
                let task = thread.handle().spawn(async move {
                    if let Err(error) = run_reflector(socket, async move {
                        let _ = stopped.await;
                    })
                    .await
                    {
                        tracing::error!(%error, "the STAMP reflector stopped");
                    }
                });
                Some((stop, task))
            }
        };

        let (reports_in, reports) = mpsc::unbounded_channel();
        let mut senders = Vec::new();
        for probe in &plan.probes {
            let options = SocketOptions {
                device: Some(probe.interface.clone()),
                ..SocketOptions::default()
            };
            let bind: SocketAddr = if probe.reflector.is_ipv4() {
                ([0, 0, 0, 0], 0).into()
            } else {
                ([0u16; 8], 0).into()
            };
            let socket = netns::run_in(netns, || udp_socket(bind, &options))?
                .with_context(|| format!("probe socket for line {}", probe.line))?;
            let monitor = LineMonitor::new(probe.monitor.clone(), wall_clock())
                .map_err(|e| anyhow::anyhow!("line {}: {e}", probe.line))?;
            let transport = UdpTransport::new(UdpSocket::from_std(socket.into())?, probe.reflector);
            senders.push(
                thread
                    .handle()
                    .spawn(run_sender(monitor, transport, None, reports_in.clone()))
                    .abort_handle(),
            );
        }
        drop(reports_in);
        drop(entered);
        Ok(Probes {
            reports,
            tasks: ProbeTasks {
                reflector,
                senders,
                thread,
            },
        })
    }
}
