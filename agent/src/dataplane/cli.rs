//! `wansteer agent` (the daemon) and `wansteer agent cleanup`.
//!
//! Standalone (`--policy FILE --site NAME`) the daemon compiles the policy into a rule
//! set, applies it, keeps local failover running, re-reads the policy on SIGHUP (a bad
//! policy is refused and the rules in force stay) and removes nothing when it exits, so
//! traffic keeps flowing across an agent restart.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use super::failover::{FailoverState, LineEvent};
use super::kernel::Kernel;
use super::reconcile::{ApplyReport, Dataplane, cleanup};
use super::standalone::compile_policy;

/// Options of the agent daemon.
#[derive(Debug, clap::Args)]
pub struct DaemonArgs {
    /// Run standalone from this policy file (no controller).
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// The site of the policy this agent is (standalone mode).
    #[arg(long, value_name = "NAME", requires = "policy")]
    pub site: Option<String>,
    /// Program this network namespace instead of the agent's own (lab and tests).
    #[arg(long, value_name = "NAME")]
    pub netns: Option<String>,
    /// Apply once and exit instead of running as a daemon.
    #[arg(long)]
    pub once: bool,
}

/// Remove everything wansteer installed in the kernel, and nothing else.
#[derive(Debug, clap::Args)]
pub struct CleanupArgs {
    /// Clean this network namespace instead of the agent's own.
    #[arg(long, value_name = "NAME")]
    pub netns: Option<String>,
}

fn kernel(netns: &Option<String>) -> Kernel {
    netns.clone().map_or_else(Kernel::here, Kernel::in_netns)
}

/// Reads, checks and compiles the policy for `site`; every diagnostic in the error.
fn load_policy(
    path: &Path,
    site: &str,
    version: u64,
) -> anyhow::Result<(wansteer_wire::ruleset::RuleSet, Duration)> {
    let checked = wansteer_policies::check_file(path).map_err(|diagnostics| {
        let text: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
        anyhow::anyhow!("policy refused:\n{}", text.join("\n"))
    })?;
    let ruleset = compile_policy(&checked.policy, site, version)
        .with_context(|| format!("policy {} cannot run at site {site}", path.display()))?;
    Ok((ruleset, checked.policy.timers.hold_down.0))
}

fn describe(report: &ApplyReport) -> String {
    format!(
        "{} nft, {} qdisc, {} rule, {} route changes; {} flow groups moved ({} conntrack entries)",
        report.nft_commands,
        report.qdisc_commands,
        report.rule_commands,
        report.route_commands,
        report.flows_moved.len(),
        report.conntrack_entries_deleted
    )
}

/// Runs the agent daemon.
pub async fn run_daemon(args: DaemonArgs) -> anyhow::Result<ExitCode> {
    let (Some(policy), Some(site)) = (args.policy.clone(), args.site.clone()) else {
        anyhow::bail!(
            "give --policy FILE --site NAME to run standalone (the controller client is not wired in yet)"
        );
    };
    let (_events_in, events) = mpsc::channel(64);
    run_standalone(&args, &policy, &site, events).await
}

/// The standalone daemon; `events` carries line health from the probes.
pub async fn run_standalone(
    args: &DaemonArgs,
    policy: &Path,
    site: &str,
    mut events: mpsc::Receiver<LineEvent>,
) -> anyhow::Result<ExitCode> {
    let mut version = 1;
    let (ruleset, hold_down) = load_policy(policy, site, version)?;
    let mut dataplane = Dataplane::new(kernel(&args.netns), FailoverState::standalone(hold_down));
    let report = dataplane.apply(ruleset).context("applying the policy")?;
    tracing::info!(site, "policy applied: {}", describe(&report));
    println!(
        "applied policy {} for site {site}: {}",
        policy.display(),
        describe(&report)
    );
    if args.once {
        return Ok(ExitCode::SUCCESS);
    }

    let mut hangup = signal(SignalKind::hangup())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut events_open = true;
    loop {
        let deadline = dataplane.next_deadline();
        tokio::select! {
            _ = hangup.recv() => match reload_policy(&mut dataplane, policy, site, version + 1) {
                Ok(report) => {
                    version += 1;
                    tracing::info!(site, version, "policy reloaded: {}", describe(&report));
                }
                Err(error) => {
                    tracing::error!(site, "reload refused, the rules in force stay: {error:#}");
                }
            },
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
            event = events.recv(), if events_open => match event {
                Some(event) => match dataplane.on_line_event(&event, tokio::time::Instant::now()) {
                    Ok(report) => tracing::warn!(line = %event.line, up = event.up, "line event: {}", describe(&report)),
                    Err(error) => tracing::error!(line = %event.line, "failover failed: {error:#}"),
                },
                None => events_open = false,
            },
            _ = async { tokio::time::sleep_until(deadline.expect("guarded")).await }, if deadline.is_some() => {
                match dataplane.on_tick(tokio::time::Instant::now()) {
                    Ok(report) => tracing::info!("fail-back after hold-down: {}", describe(&report)),
                    Err(error) => tracing::error!("fail-back failed: {error:#}"),
                }
            }
        }
    }
    tracing::info!("agent stopping; the installed rules stay in place");
    Ok(ExitCode::SUCCESS)
}

/// Re-reads the policy (on SIGHUP) and applies it as rule set `version`. A policy that
/// does not parse, does not fit the site or does not fit this host is refused and the
/// rules in force stay untouched.
pub fn reload_policy(
    dataplane: &mut Dataplane,
    policy: &Path,
    site: &str,
    version: u64,
) -> anyhow::Result<ApplyReport> {
    let (ruleset, _) = load_policy(policy, site, version)?;
    Ok(dataplane.apply(ruleset)?)
}

/// Runs `wansteer agent cleanup`.
pub async fn run_cleanup(args: CleanupArgs) -> anyhow::Result<ExitCode> {
    let report = cleanup(&kernel(&args.netns))?;
    println!(
        "removed: nft table {}, {} ip rules, {} routes, {} HTB qdiscs",
        if report.nft_table {
            "inet wansteer"
        } else {
            "(none)"
        },
        report.rules,
        report.routes,
        report.qdiscs
    );
    Ok(ExitCode::SUCCESS)
}
