//! `wansteer probes` command line.

use std::process::ExitCode;

/// Send or reflect STAMP test packets on a WAN line.
#[derive(Debug, clap::Args)]
pub struct ProbeArgs {}

/// Runs the subcommand.
pub async fn run(_args: ProbeArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`wansteer probes` is not built yet")
}
