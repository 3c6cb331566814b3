//! `wansteer agent classify`: classify the flows of a capture.

use std::process::ExitCode;

/// Classify every flow of a pcap/pcapng capture.
#[derive(Debug, clap::Args)]
pub struct ClassifyArgs {}

/// Runs `wansteer agent classify`.
pub async fn run(_args: ClassifyArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`wansteer agent classify` is not built yet")
}
