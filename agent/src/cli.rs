//! `wansteer agent` command line: the daemon, or one of its tools.

use std::process::ExitCode;

/// Run the agent daemon (with a controller, or standalone from a policy), or a tool.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AgentArgs {
    #[command(subcommand)]
    command: Option<AgentCommand>,
    #[command(flatten)]
    daemon: crate::daemon::DaemonArgs,
}

#[derive(Debug, clap::Subcommand)]
enum AgentCommand {
    /// Classify the flows of a pcap/pcapng capture and print them.
    Classify(crate::classifier::cli::ClassifyArgs),
    /// Remove everything wansteer installed (nft table, ip rules, routes, qdiscs), nothing else.
    Cleanup(crate::dataplane::cli::CleanupArgs),
    /// Answer the far ends' STAMP probes for this site on their own, outliving agent
    /// restarts (run the agent with `--reflect off`).
    Reflector(crate::daemon::reflector::ReflectorArgs),
}

/// Runs `wansteer agent …`.
pub async fn run(args: AgentArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        Some(AgentCommand::Classify(args)) => crate::classifier::cli::run(args).await,
        Some(AgentCommand::Cleanup(args)) => crate::dataplane::cli::run_cleanup(args).await,
        Some(AgentCommand::Reflector(args)) => crate::daemon::reflector::run(args).await,
        None => crate::daemon::run(args.daemon).await,
    }
}
