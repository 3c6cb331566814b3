//! Controller mode: the controller decides routes and QoS, the agent measures, applies and
//! reports.
//!
//! ```text
//!  probes ──► LineReport ──► latest summary per line ──┐ every second: Report
//!                 │                                   ├──► ControllerClient ──► controller
//!                 └─ Down ─► local fast failover       │        │ pushed RuleSet
//!                    (no controller round-trip)        │        ▼
//!                                                      └── Dataplane::apply_from_controller
//! ```
//!
//! The agent still reads the policy file, but only for its own site's lines and probe
//! settings (which interface, which reflector, SLA limits, timers); which line each class
//! takes, the HTB rates and the DSCP come from the controller's rule sets. A dead line is
//! routed around at once; it is used again only when the controller says so (its next rule
//! set). When the controller goes away the rules in force stay and local failover still works.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, oneshot};
use wansteer_wire::report::{HealthState, HealthTransition, LineReport, LineSummary};
use wansteer_wire::ruleset::RuleSet;
use wansteer_wire::session::{HealthEvent, LineHealth, LineMeasurement, LineRegistration, Report};

use super::demand::{DemandMeter, PerLineClass, attribute, parse_htb_sent};
use super::dpi;
use super::events::{AgentEvent, EventLog};
use super::metrics::AgentMetrics;
use super::plan::{HubReach, LINE_SLA};
use super::run::{DaemonArgs, Probes, load, ms};
use crate::control::{ApplyRuleSet, Backoff, ClientConfig, ControllerClient};
use crate::dataplane::{Dataplane, FailoverState, Kernel, LineEvent};

/// How often the agent reports (the controller's `report_interval_ms` is 1000 too).
const REPORT_INTERVAL: Duration = Duration::from_secs(1);
/// A line getting worse for some class is reported at once rather than on the next tick
/// (up to a second later), but never sooner than this after the previous report.
const EARLIEST_EXTRA_REPORT: Duration = Duration::from_millis(250);

/// A line's outage goes into reports only once it has lasted this long. The agent routes
/// around the line at once anyway; but a +100 ms delay step silences the probes past the
/// outage timer for 0.1–0.2 s before late answers withdraw the outage, and a controller
/// told at once moved classes off a slow but living line and back again.
pub const OUTAGE_CONFIRM: Duration = Duration::from_millis(300);

/// Outages not yet confirmed, kept out of reports (pure: time comes in).
#[derive(Debug, Default)]
pub struct UnconfirmedOutages {
    since: BTreeMap<String, tokio::time::Instant>,
}

impl UnconfirmedOutages {
    /// Takes a transition; true when it withdraws an outage the controller never heard of
    /// (the line must be used again at once: no rule set will say so).
    pub fn on_transition(
        &mut self,
        transition: &HealthTransition,
        now: tokio::time::Instant,
    ) -> bool {
        // The line's own state machine says when the line is down and up again; the
        // per-class ones follow it.
        if transition.sla != LINE_SLA {
            return false;
        }
        if transition.to == HealthState::Down {
            self.since.entry(transition.line.clone()).or_insert(now);
            return false;
        }
        if transition.from != HealthState::Down {
            return false;
        }
        self.since
            .remove(&transition.line)
            .is_some_and(|since| now.duration_since(since) < OUTAGE_CONFIRM)
    }

    /// When a report due at `now` may go out, if it must wait for an outage to confirm.
    pub fn hold_until(&self, now: tokio::time::Instant) -> Option<tokio::time::Instant> {
        self.since
            .values()
            .map(|since| *since + OUTAGE_CONFIRM)
            .filter(|confirmed| *confirmed > now)
            .max()
    }
}

/// Whether a transition makes a line worse (for the line itself or for one class's SLA):
/// the controller should see the figures behind it now, not on the next tick.
pub fn worsens(transition: &HealthTransition) -> bool {
    let rank = |state: HealthState| match state {
        HealthState::Up => 0,
        HealthState::Degraded => 1,
        HealthState::Down => 2,
    };
    // Out of `Down` too: a withdrawn outage (late answers: the line is slow, not dead) or
    // answers again — the controller should not go on planning around a dead line.
    rank(transition.to) > rank(transition.from) || transition.from == HealthState::Down
}

/// When a report asked for by a worsening transition at `now` goes out: at once, or
/// [`EARLIEST_EXTRA_REPORT`] after the previous report if that was more recent.
pub fn extra_report_at(
    last_report: tokio::time::Instant,
    now: tokio::time::Instant,
) -> tokio::time::Instant {
    now.max(last_report + EARLIEST_EXTRA_REPORT)
}

/// Reads an agent token: the file's first non-empty line, trimmed.
pub fn read_token(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the token file {}", path.display()))?;
    let token = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or_default();
    if token.len() < 16 {
        anyhow::bail!(
            "{}: expected the site's agent token (at least 16 characters) on its first line",
            path.display()
        );
    }
    Ok(token.to_string())
}

/// The line health the controller sees: the line's reachability machine ([`LINE_SLA`]);
/// per-class SLA judgements are the controller's, from the figures.
fn line_health(summary: &LineSummary) -> LineHealth {
    match summary.health.iter().find(|h| h.sla == LINE_SLA) {
        Some(h) => session_health(h.state),
        None => LineHealth::Unknown,
    }
}

fn session_health(state: HealthState) -> LineHealth {
    match state {
        HealthState::Up => LineHealth::Up,
        HealthState::Degraded => LineHealth::Degraded,
        HealthState::Down => LineHealth::Down,
    }
}

/// One line's figures for the controller. RTT and jitter come from the short (fail-fast)
/// window so latency spikes show at once; loss from the long window, which holds enough
/// probes to tell 1% from 5% (DESIGN §4).
pub fn measurement(summary: &LineSummary) -> LineMeasurement {
    let loss_window = if summary.long.probes > 0 {
        &summary.long
    } else {
        &summary.short
    };
    LineMeasurement {
        line: summary.line.clone(),
        // The newest answers' median too: a delay step shows in ≈ 15 probes, in the short
        // window's median only after a second; a drop waits for the window (recover slowly).
        rtt_ms: summary
            .short
            .rtt_ms
            .map_or(0.0, |r| r.p50)
            .max(summary.recent_rtt_ms.unwrap_or(0.0)),
        loss_percent: loss_window.loss.ratio * 100.0,
        loss_bounds_percent: Some((
            loss_window.loss.lower * 100.0,
            loss_window.loss.upper * 100.0,
        )),
        jitter_ms: summary.short.jitter_ms.unwrap_or(0.0),
        samples: u64::from(loss_window.probes),
        health: line_health(summary),
    }
}

/// A line-reachability transition as the session's health event.
pub fn health_event(transition: &HealthTransition) -> HealthEvent {
    HealthEvent {
        line: transition.line.clone(),
        at_ms: transition.at_unix_ms,
        from: session_health(transition.from),
        to: session_health(transition.to),
        reason: transition.to_string(),
    }
}

/// What the agent knows between two reports (pure).
#[derive(Debug, Default)]
pub struct ReportBuilder {
    latest: BTreeMap<String, LineSummary>,
    events: Vec<HealthEvent>,
}

impl ReportBuilder {
    pub fn on_line_report(&mut self, report: &LineReport) {
        match report {
            LineReport::Summary(summary) => {
                self.latest
                    .insert(summary.line.clone(), (**summary).clone());
            }
            LineReport::Transition(t) if t.sla == LINE_SLA => self.events.push(health_event(t)),
            LineReport::Transition(_) => {}
        }
    }

    /// The report to send now; events are sent once.
    pub fn take(&mut self, site: &str, at_ms: u64) -> Report {
        Report {
            site: site.to_string(),
            at_ms,
            lines: self.latest.values().map(measurement).collect(),
            events: std::mem::take(&mut self.events),
            // Filled in by the daemon from the HTB counters.
            demand: Vec::new(),
        }
    }
}

/// Applies the controller's rule sets to the shared data plane.
struct Applier {
    dataplane: Arc<Mutex<Dataplane>>,
    log: EventLog,
    /// A hub's lines that reach one site only: traffic to a site never leaves by a line
    /// that does not lead there, whatever the rule set says (it would loop or vanish).
    reach: HubReach,
}

impl ApplyRuleSet for Applier {
    fn apply(&mut self, pushed: &RuleSet) -> Result<(), String> {
        let started = std::time::Instant::now();
        let mut rule_set = pushed.clone();
        let restricted = self.reach.restrict_ruleset(&mut rule_set);
        if restricted > 0 {
            // Checked before it is changed (a corrupted push is refused as ever), then
            // sealed again; the ack still names the pushed hash.
            if !pushed.is_sealed() {
                let text = format!(
                    "rule set v{} refused: its hash does not match its content",
                    pushed.version
                );
                self.log.emit(AgentEvent::Error { text: text.clone() });
                return Err(text);
            }
            rule_set = rule_set.seal();
        }
        let rule_set = &rule_set;
        let mut dataplane = self.dataplane.lock().map_err(|_| "data plane poisoned")?;
        match dataplane.apply_from_controller(rule_set.clone()) {
            Ok(report) => {
                self.log.emit(AgentEvent::Applied {
                    version: rule_set.version,
                    hash: rule_set.hash.clone(),
                    apply_ms: ms(started),
                    text: format!(
                        "rule set v{} from the controller ({} route, {} rule, {} nft, {} qdisc commands; {} lines avoided{})",
                        rule_set.version,
                        report.route_commands,
                        report.rule_commands,
                        report.nft_commands,
                        report.qdisc_commands,
                        dataplane.avoided_lines().len(),
                        if restricted > 0 {
                            format!("; {restricted} routes kept to the lines that reach their site")
                        } else {
                            String::new()
                        }
                    ),
                    placement: placement(rule_set, dataplane.avoided_lines()),
                });
                Ok(())
            }
            Err(error) => {
                let text = format!("rule set v{} refused: {error:#}", rule_set.version);
                self.log.emit(AgentEvent::Error { text: text.clone() });
                Err(text)
            }
        }
    }
}

/// Runs `wansteer agent --controller URL …`.
pub async fn run(args: DaemonArgs, controller: String) -> anyhow::Result<ExitCode> {
    let (Some(policy_path), Some(site), Some(token_file)) = (
        args.policy.clone(),
        args.site.clone(),
        args.token_file.clone(),
    ) else {
        anyhow::bail!(
            "controller mode needs --site NAME, --token-file FILE and --policy FILE (for the site's lines and probe settings)"
        );
    };
    let token = read_token(&token_file)?;
    // The locally compiled rule set is not applied: the controller's is.
    let (plan, _) = load(&policy_path, &site, args.long_window)?;
    // The reflector first: the far agents probe through it, and while it is away (an agent
    // restart) they count this site's lines as dead and the controller moves traffic off
    // them. Everything else the agent starts (DPI, metrics, the second policy read) can wait.
    let probes = Probes::start(
        &plan,
        args.netns.as_deref(),
        args.reflect,
        args.probe.probe_priority,
    )?;
    let policy = wansteer_policies::check_file(&policy_path)
        .map_err(|_| anyhow::anyhow!("policy {} refused", policy_path.display()))?
        .policy;
    // The sites' LAN prefixes name the destination of measured demand.
    let sites: Vec<(String, Vec<ipnet::IpNet>)> = policy
        .sites
        .iter()
        .map(|s| (s.name.clone(), s.lan.clone()))
        .collect();
    let mut meter = DemandMeter::default();
    let started = tokio::time::Instant::now();
    let metrics = args.metrics.map(|_| AgentMetrics::new(&site));
    let log = EventLog {
        site: site.clone(),
        json: args.json,
        summaries: args.summaries,
        metrics: metrics.clone(),
    };
    let netns = args.netns.as_deref();
    let metrics_task = match (args.metrics, metrics) {
        (Some(addr), Some(metrics)) => Some(super::metrics::spawn(addr, netns, metrics)?),
        _ => None,
    };
    if let Some(metrics) = &log.metrics {
        // Classes are the policy's; which line each takes comes with the rule sets.
        let classes = policy.classes.iter().map(|c| c.name.as_str());
        metrics.declare(plan.probes.iter().map(|p| p.line.as_str()), classes);
    }
    // Verdicts name the policy's classes; they are installed with the marks of the rule
    // set in force (the controller's, compiled from the same policy). Before the first
    // rule set arrives there is nothing to install into, and the verdicts are dropped.
    let mut dpi = dpi::spawn(&args.lan, netns, &policy, log.metrics.clone())?;
    let kernel = args
        .netns
        .clone()
        .map_or_else(Kernel::here, Kernel::in_netns);
    let dataplane = Arc::new(Mutex::new(Dataplane::new(
        kernel,
        FailoverState::with_controller(),
    )));

    let mut line_reports = probes.reports;
    log.emit(AgentEvent::Ready {
        lines: plan
            .probes
            .iter()
            .map(|p| format!("{} via {} to {}", p.line, p.interface, p.reflector))
            .collect(),
        reflector: args.reflect.to_string(),
    });

    let config = ClientConfig {
        base_url: controller.clone(),
        site: site.clone(),
        token,
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
        lines: plan
            .probes
            .iter()
            .map(|p| LineRegistration {
                name: p.line.clone(),
                interface: p.interface.clone(),
            })
            .collect(),
        backoff: Backoff::default(),
        request_timeout: Duration::from_secs(5),
    };
    let client = ControllerClient::new(config, None).context("cannot build the HTTP client")?;
    let (reports_out, reports_to_send) = mpsc::channel(8);
    let (stop_client, client_stopped) = oneshot::channel::<()>();
    let applier = Applier {
        dataplane: dataplane.clone(),
        log: log.clone(),
        reach: HubReach::new(&policy, &site),
    };
    let client_task = tokio::spawn(client.run(applier, reports_to_send, async move {
        let _ = client_stopped.await;
    }));
    tracing::info!(%controller, %site, "agent in controller mode");

    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut tick = tokio::time::interval(REPORT_INTERVAL);
    let mut last_report = tokio::time::Instant::now();
    let mut builder = ReportBuilder::default();
    let mut down = std::collections::BTreeSet::new();
    let mut outages = UnconfirmedOutages::default();
    let result = loop {
        tokio::select! {
            _ = terminate.recv() => break Ok(()),
            _ = interrupt.recv() => break Ok(()),
            report = line_reports.recv() => {
                let Some(report) = report else { break Err(anyhow::anyhow!("every line prober stopped")) };
                builder.on_line_report(&report);
                match report {
                    LineReport::Summary(summary) => log.emit(AgentEvent::Summary { summary }),
                    LineReport::Transition(transition) => {
                        let withdrawn = outages.on_transition(&transition, tokio::time::Instant::now());
                        if worsens(&transition) {
                            // Too soon after the last report: send it as soon as allowed,
                            // not on the next regular tick (up to a second later). A
                            // withdrawn outage right after the outage, or a class's
                            // breach right after it, must not wait.
                            tick.reset_at(extra_report_at(last_report, tokio::time::Instant::now()));
                        }
                        on_transition(&dataplane, &log, &mut down, transition, withdrawn);
                    }
                }
            }
            batch = dpi::next(&mut dpi) => {
                let errors = match (dpi.as_mut(), dataplane.lock()) {
                    (Some(dpi), Ok(dataplane)) if dataplane.ruleset().is_some() => {
                        dpi.install(&dataplane, batch)
                    }
                    _ => Vec::new(),
                };
                for text in errors {
                    log.emit(AgentEvent::Error { text });
                }
            }
            _ = tick.tick() => {
                if let Some(until) = outages.hold_until(tokio::time::Instant::now()) {
                    tick.reset_at(until);
                    continue;
                }
                last_report = tokio::time::Instant::now();
                let mut report = builder.take(&site, super::run::wall_clock().as_millis() as u64);
                let rule_set = dataplane.lock().ok().and_then(|d| d.ruleset().cloned());
                if let Some(rule_set) = rule_set {
                    let counters = htb_counters(args.netns.as_deref(), &rule_set).await;
                    let rates = meter.update(started.elapsed(), counters);
                    report.demand = attribute(&rates, &rule_set, &sites);
                }
                if let (Some(metrics), Ok(dataplane)) = (&log.metrics, dataplane.lock())
                    && let Some(rule_set) = dataplane.ruleset()
                {
                    metrics.set_ruleset_version(rule_set.version);
                    metrics.set_placement(&placement(rule_set, dataplane.avoided_lines()));
                }
                if reports_out.try_send(report).is_err() {
                    tracing::debug!("report dropped: the controller session is not keeping up");
                }
            }
        }
    };
    metrics_task.inspect(tokio::task::JoinHandle::abort);
    let _ = stop_client.send(());
    let _ = client_task.await;
    probes.tasks.stop().await;
    tracing::info!("agent stopping; the installed rules stay in place");
    result.map(|()| ExitCode::SUCCESS)
}

/// Bytes sent per (line, HTB minor) on every line of the rule set; a line whose counters
/// cannot be read is left out.
async fn htb_counters(netns: Option<&str>, rule_set: &RuleSet) -> PerLineClass {
    let mut counters = BTreeMap::new();
    for line in &rule_set.lines {
        let mut command = tokio::process::Command::new("tc");
        if let Some(ns) = netns {
            command.args(["-n", ns]);
        }
        command.args(["-s", "class", "show", "dev", &line.interface]);
        match command.output().await {
            Ok(out) if out.status.success() => {
                for (minor, bytes) in parse_htb_sent(&String::from_utf8_lossy(&out.stdout)) {
                    counters.insert((line.name.clone(), minor), bytes);
                }
            }
            Ok(out) => {
                tracing::debug!(line = %line.name, stderr = %String::from_utf8_lossy(&out.stderr), "tc counters unreadable")
            }
            Err(error) => tracing::debug!(line = %line.name, %error, "tc not run"),
        }
    }
    counters
}

/// Local fast failover on a line's outage; a line up again waits for the controller's word,
/// unless its outage was `withdrawn` before the controller heard of it.
fn on_transition(
    dataplane: &Mutex<Dataplane>,
    log: &EventLog,
    down: &mut std::collections::BTreeSet<String>,
    transition: HealthTransition,
    withdrawn: bool,
) {
    let text = transition.to_string();
    let line = transition.line.clone();
    let (to, is_line_sla) = (transition.to, transition.sla == LINE_SLA);
    log.emit(AgentEvent::Health {
        transition,
        text: text.clone(),
    });
    if withdrawn && down.remove(&line) {
        let Ok(mut dataplane) = dataplane.lock() else {
            return;
        };
        match dataplane.withdraw_outage(&line) {
            Ok(_) => {
                tracing::info!(%line, "outage withdrawn before it was reported; line used again")
            }
            Err(error) => log.emit(AgentEvent::Error {
                text: format!("line {line} back after a withdrawn outage: {error:#}"),
            }),
        }
        return;
    }
    let event = if to == HealthState::Down && down.insert(line.clone()) {
        LineEvent {
            line: line.clone(),
            up: false,
        }
    } else if is_line_sla && to == HealthState::Up && down.remove(&line) {
        // Up after a hold-down, or straight from `Down` when late answers withdrew the
        // outage (the line was slow, not dead).
        LineEvent {
            line: line.clone(),
            up: true,
        }
    } else {
        return;
    };
    let started = std::time::Instant::now();
    let Ok(mut dataplane) = dataplane.lock() else {
        return;
    };
    // The classes whose current route uses the line, before it is routed around.
    let mut classes: Vec<String> = dataplane
        .ruleset()
        .map(|rules| {
            rules
                .routes
                .iter()
                .filter(|r| r.primary == line && !dataplane.avoided_lines().contains(&line))
                .map(|r| r.class.clone())
                .collect()
        })
        .unwrap_or_default();
    classes.sort();
    classes.dedup();
    match dataplane.on_line_event(&event, tokio::time::Instant::now()) {
        Ok(report) if !event.up => log.emit(AgentEvent::Failover {
            line: line.clone(),
            classes: classes.clone(),
            text: format!(
                "{text}; {} routed around it locally ({} routes replaced, {} conntrack entries moved)",
                if classes.is_empty() {
                    "no class was on it;".to_string()
                } else {
                    classes.join(", ")
                },
                report.route_commands,
                report.conntrack_entries_deleted
            ),
            apply_ms: ms(started),
            placement: dataplane
                .ruleset()
                .map(|rules| placement(rules, dataplane.avoided_lines()))
                .unwrap_or_default(),
        }),
        Ok(_) => tracing::info!(%line, "line up again; used once the controller says so"),
        Err(error) => log.emit(AgentEvent::Error {
            text: format!(
                "line {line} {}: {error:#}",
                if event.up { "up" } else { "down" }
            ),
        }),
    }
}

/// The line each class takes now towards its first destination: the pushed primary, or the
/// first backup not routed around locally. Operators and the lab demo follow classes by it.
fn placement(
    rule_set: &wansteer_wire::ruleset::RuleSet,
    avoided: &std::collections::BTreeSet<String>,
) -> BTreeMap<String, String> {
    let mut placement = BTreeMap::new();
    for route in &rule_set.routes {
        if placement.contains_key(&route.class) {
            continue;
        }
        let line = std::iter::once(&route.primary)
            .chain(&route.backups)
            .find(|line| !avoided.contains(*line));
        if let Some(line) = line {
            placement.insert(route.class.clone(), line.clone());
        }
    }
    placement
}

#[cfg(test)]
mod tests {
    use wansteer_wire::report::{
        DelayPercentiles, HealthReason, LossEstimate, SlaHealth, WindowSummary,
    };

    use super::*;

    fn summary(line: &str, state: HealthState, short_loss: f64, long_loss: f64) -> LineSummary {
        let window = |loss: f64, probes: u32| WindowSummary {
            probes,
            loss: LossEstimate {
                ratio: loss,
                lower: 0.0,
                upper: 1.0,
            },
            rtt_ms: Some(DelayPercentiles {
                p50: 21.0,
                ..DelayPercentiles::default()
            }),
            jitter_ms: Some(1.5),
            ..WindowSummary::default()
        };
        LineSummary {
            line: line.into(),
            at_unix_ms: 1,
            health: vec![
                SlaHealth {
                    sla: "voice".into(),
                    state: HealthState::Degraded,
                    penalty: 0.0,
                    suppressed: false,
                },
                SlaHealth {
                    sla: LINE_SLA.into(),
                    state,
                    penalty: 0.0,
                    suppressed: false,
                },
            ],
            short: window(short_loss, 40),
            long: window(long_loss, 600),
            recent_rtt_ms: None,
            counters: Default::default(),
        }
    }

    fn transition(line: &str, sla: &str, to: HealthState) -> HealthTransition {
        HealthTransition {
            line: line.into(),
            sla: sla.into(),
            at_unix_ms: 7,
            elapsed_ms: 7,
            from: HealthState::Up,
            to,
            reasons: vec![HealthReason::Outage {
                missing: 5,
                silent_ms: 250,
            }],
        }
    }

    #[test]
    fn a_report_carries_the_line_health_and_the_long_window_loss() {
        let mut builder = ReportBuilder::default();
        builder.on_line_report(&LineReport::Summary(Box::new(summary(
            "mpls",
            HealthState::Up,
            0.10,
            0.05,
        ))));
        let report = builder.take("br1", 99);
        assert_eq!(report.site, "br1");
        assert_eq!(report.at_ms, 99);
        let mpls = &report.lines[0];
        assert_eq!(mpls.line, "mpls");
        // The line's own machine, not the voice SLA's degraded state.
        assert_eq!(mpls.health, LineHealth::Up);
        assert!((mpls.loss_percent - 5.0).abs() < 1e-9, "{mpls:?}");
        assert_eq!(mpls.samples, 600);
        assert_eq!(mpls.rtt_ms, 21.0);
        assert_eq!(mpls.jitter_ms, 1.5);
    }

    #[test]
    fn line_transitions_are_reported_once_and_class_ones_not_at_all() {
        let mut builder = ReportBuilder::default();
        builder.on_line_report(&LineReport::Transition(transition(
            "inet",
            LINE_SLA,
            HealthState::Down,
        )));
        builder.on_line_report(&LineReport::Transition(transition(
            "inet",
            "voice",
            HealthState::Down,
        )));
        let first = builder.take("br1", 1);
        assert_eq!(first.events.len(), 1);
        assert_eq!(first.events[0].to, LineHealth::Down);
        assert!(
            first.events[0].reason.contains("inet [line] up -> down"),
            "{:?}",
            first.events
        );
        assert!(builder.take("br1", 2).events.is_empty());
    }

    #[test]
    fn a_short_token_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "\n  short \n").unwrap();
        assert!(read_token(&path).is_err());
        std::fs::write(&path, "\n 0123456789abcdef0123 \n").unwrap();
        assert_eq!(read_token(&path).unwrap(), "0123456789abcdef0123");
    }

    #[test]
    fn a_line_getting_worse_for_any_class_is_reported_at_once_and_recovery_waits() {
        assert!(worsens(&transition("mpls", "voice", HealthState::Degraded)));
        assert!(worsens(&transition("mpls", LINE_SLA, HealthState::Down)));
        let mut recovered = transition("mpls", "voice", HealthState::Up);
        recovered.from = HealthState::Degraded;
        assert!(!worsens(&recovered), "recovery goes with the next tick");
        let mut deeper = transition("mpls", "voice", HealthState::Down);
        deeper.from = HealthState::Degraded;
        assert!(worsens(&deeper));
        let mut withdrawn = transition("mpls", LINE_SLA, HealthState::Up);
        withdrawn.from = HealthState::Down;
        assert!(
            worsens(&withdrawn),
            "a withdrawn outage is news for the controller at once"
        );
    }

    #[test]
    fn an_outage_is_reported_only_once_confirmed_and_a_quick_withdrawal_never() {
        let start = tokio::time::Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut outages = UnconfirmedOutages::default();
        assert_eq!(outages.hold_until(at(0)), None);
        let mut down = transition("mpls", LINE_SLA, HealthState::Down);
        down.from = HealthState::Up;
        assert!(!outages.on_transition(&down, at(0)));
        // Reports wait until the outage has lasted OUTAGE_CONFIRM.
        assert_eq!(outages.hold_until(at(50)), Some(at(0) + OUTAGE_CONFIRM));
        // Late answers withdraw it within the window: never reported, used again at once.
        let mut back = transition("mpls", LINE_SLA, HealthState::Up);
        back.from = HealthState::Down;
        assert!(outages.on_transition(&back, at(120)));
        assert_eq!(outages.hold_until(at(130)), None);

        // A real outage: confirmed after the window; its recovery waits for the controller.
        assert!(!outages.on_transition(&down, at(1000)));
        assert_eq!(outages.hold_until(at(1000) + OUTAGE_CONFIRM), None);
        assert!(!outages.on_transition(&back, at(5000)));
    }

    #[test]
    fn a_transition_too_soon_after_a_report_is_sent_when_allowed_not_a_second_later() {
        let last = tokio::time::Instant::now();
        let soon = last + Duration::from_millis(110);
        assert_eq!(extra_report_at(last, soon), last + EARLIEST_EXTRA_REPORT);
        let later = last + Duration::from_millis(510);
        assert_eq!(extra_report_at(last, later), later);
    }
}
