//! `wansteer agent --once` and `wansteer agent cleanup`: the data plane's own commands.
//!
//! `--once` compiles the policy for one site into a rule set, applies it and exits; the
//! rules stay. The long-running agent (probes, steering, failover, SIGHUP reload) is
//! [`crate::daemon`], which hands `--once` runs to [`run_daemon`].

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use super::failover::FailoverState;
use super::kernel::Kernel;
use super::reconcile::{ApplyReport, Dataplane, cleanup};
use super::standalone::compile_policy;

/// Options of a one-shot apply (`wansteer agent --once`).
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
    /// Apply once and exit (the only mode here; the daemon lives in `crate::daemon`).
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

/// Applies the policy for one site once and exits; the rules stay in place.
pub async fn run_daemon(args: DaemonArgs) -> anyhow::Result<ExitCode> {
    let (Some(policy), Some(site)) = (args.policy.clone(), args.site.clone()) else {
        anyhow::bail!(
            "give --policy FILE --site NAME (standalone), or --controller URL --site NAME --token-file FILE --policy FILE"
        );
    };
    let (ruleset, hold_down) = load_policy(&policy, &site, 1)?;
    let mut dataplane = Dataplane::new(kernel(&args.netns), FailoverState::standalone(hold_down));
    let report = dataplane.apply(ruleset).context("applying the policy")?;
    tracing::info!(site, "policy applied: {}", describe(&report));
    println!(
        "applied policy {} for site {site}: {}",
        policy.display(),
        describe(&report)
    );
    Ok(ExitCode::SUCCESS)
}

/// Re-reads the policy and applies it as rule set `version` on a running data plane. A policy that
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
