//! The STAMP reflector on its own: `wansteer agent reflector`.
//!
//! The far ends probe a site's lines through its reflector. Inside the agent it goes away
//! whenever the agent restarts (an upgrade, a crash), and for those few hundred
//! milliseconds every far end sees all of the site's lines die: it fails over locally and
//! reports them down, and the controller re-plans around a site that was never cut off.
//! Run as its own process (`dist/systemd/wansteer-reflector.service`, the agent with
//! `--reflect off`), the reflector outlives agent restarts, as BFD outlives a routing
//! daemon's restart on a router. It keeps no state, so there is nothing to hand over.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::str::FromStr;

use anyhow::Context;
use tokio::net::UdpSocket;
use wansteer_probes::tasks::run_reflector;

use super::netns;
use super::probe_thread::{ProbePriorityArg, ProbeThread};

/// Where the agent's own STAMP reflector listens, or `off` when a separate
/// `wansteer agent reflector` answers for the site.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReflectAt {
    Here(SocketAddr),
    Off,
}

impl FromStr for ReflectAt {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text == "off" {
            return Ok(ReflectAt::Off);
        }
        text.parse()
            .map(ReflectAt::Here)
            .map_err(|_| format!("`{text}` is neither an address such as 0.0.0.0:862 nor `off`"))
    }
}

impl std::fmt::Display for ReflectAt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReflectAt::Here(addr) => write!(f, "{addr}"),
            ReflectAt::Off => f.write_str("off (a separate `wansteer agent reflector` answers)"),
        }
    }
}

/// Binds the reflector's socket in namespace `netns` (or here), for the probe thread.
pub(super) fn bind(netns: Option<&str>, listen: SocketAddr) -> anyhow::Result<UdpSocket> {
    let socket = netns::run_in(netns, || -> std::io::Result<std::net::UdpSocket> {
        let socket = std::net::UdpSocket::bind(listen)?;
        socket.set_nonblocking(true)?;
        Ok(socket)
    })?
    .with_context(|| format!("cannot listen on {listen} for probes"))?;
    Ok(UdpSocket::from_std(socket)?)
}

#[derive(Debug, clap::Args)]
pub struct ReflectorArgs {
    /// Answer in this network namespace instead of the process's own.
    #[arg(long, value_name = "NAME")]
    pub netns: Option<String>,
    /// Where to listen for the far ends' probes.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:862")]
    pub listen: SocketAddr,
    /// As the agent's: a late answer reads as jitter at the far end.
    #[command(flatten)]
    pub probe: ProbePriorityArg,
}

/// Runs the reflector until SIGTERM or SIGINT.
pub async fn run(args: ReflectorArgs) -> anyhow::Result<ExitCode> {
    let thread =
        ProbeThread::start(args.probe.probe_priority).context("cannot start the probe thread")?;
    let socket = {
        // The socket's readiness is driven by the probe thread's reactor.
        let _entered = thread.enter();
        bind(args.netns.as_deref(), args.listen)?
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let reflector = thread.handle().spawn(async move {
        run_reflector(socket, async move {
            let _ = stopped.await;
        })
        .await
    });
    tracing::info!(
        listen = %args.listen,
        netns = args.netns.as_deref().unwrap_or("-"),
        scheduling = thread.scheduling().as_str(),
        "STAMP reflector running"
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    let _ = stop.send(());
    let counters = reflector.await.context("the reflector task failed")??;
    tracing::info!(?counters, "reflector stopped");
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reflect_is_an_address_or_off() {
        assert_eq!(
            "0.0.0.0:862".parse::<ReflectAt>(),
            Ok(ReflectAt::Here("0.0.0.0:862".parse().unwrap()))
        );
        assert_eq!("off".parse::<ReflectAt>(), Ok(ReflectAt::Off));
        let error = "of".parse::<ReflectAt>().unwrap_err();
        assert!(error.contains("`of`") && error.contains("`off`"), "{error}");
    }
}
