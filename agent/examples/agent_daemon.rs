//! The standalone agent alone (`wansteer agent` without the controller and lab in the
//! binary), for measuring its footprint: `scripts/agent-footprint.sh` runs it in release.
//!
//! ```text
//! cargo build --release -p wansteer-agent --example agent_daemon
//! target/release/examples/agent_daemon --policy P --site S [--netns NS] [--lan IFACE] [--metrics ADDR]
//! ```

use clap::Parser;

#[derive(Debug, Parser)]
struct Args {
    #[command(flatten)]
    daemon: wansteer_agent::daemon::DaemonArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<std::process::ExitCode> {
    wansteer_agent::daemon::run(Args::parse().daemon).await
}
