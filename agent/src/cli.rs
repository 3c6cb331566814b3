//! `wansteer agent` command line.

use std::process::ExitCode;

/// Run the branch/hub agent, classify captures, or clean up.
#[derive(Debug, clap::Args)]
pub struct AgentArgs {}

/// Runs the subcommand.
pub async fn run(_args: AgentArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`wansteer agent` is not built yet")
}
