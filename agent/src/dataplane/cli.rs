//! `wansteer agent` (the daemon) and `wansteer agent cleanup`.

use std::process::ExitCode;

/// Options of the agent daemon.
#[derive(Debug, clap::Args)]
pub struct DaemonArgs {}

/// Remove everything wansteer installed in the kernel, and nothing else.
#[derive(Debug, clap::Args)]
pub struct CleanupArgs {}

/// Runs the agent daemon.
pub async fn run_daemon(_args: DaemonArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("the wansteer agent daemon is not built yet")
}

/// Runs `wansteer agent cleanup`.
pub async fn run_cleanup(_args: CleanupArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`wansteer agent cleanup` is not built yet")
}
