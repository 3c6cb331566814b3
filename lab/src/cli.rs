//! `wansteer lab` command line.

use std::process::ExitCode;

/// Build the namespace lab, impair lines, run scenarios.
#[derive(Debug, clap::Args)]
pub struct LabArgs {}

/// Runs the subcommand.
pub async fn run(_args: LabArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`wansteer lab` is not built yet")
}
