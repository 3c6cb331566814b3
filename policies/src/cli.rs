//! `wansteer policies` command line.

use std::process::ExitCode;

/// Check policy files and show what a change would do.
#[derive(Debug, clap::Args)]
pub struct PolicyArgs {}

/// Runs the subcommand.
pub async fn run(_args: PolicyArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`wansteer policies` is not built yet")
}
