//! `wansteer controller` command line.

use std::process::ExitCode;

/// Run the central controller.
#[derive(Debug, clap::Args)]
pub struct ControllerArgs {}

/// Runs the subcommand.
pub async fn run(_args: ControllerArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`wansteer controller` is not built yet")
}
