//! `wansteer probe` command line: `reflect` answers STAMP test packets, `send` probes a
//! reflector over one line and prints summaries and health transitions.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use wansteer_wire::report::LineReport;

use crate::health::Sla;
use crate::monitor::MonitorConfig;
use crate::net::SocketOptions;
use crate::tasks::{SenderConfig, bind_reflector, run_reflector, spawn_sender};

/// Send or reflect STAMP (RFC 8762) test packets on a WAN line.
#[derive(Debug, clap::Args)]
pub struct ProbeArgs {
    #[command(subcommand)]
    command: ProbeCommand,
}

#[derive(Debug, clap::Subcommand)]
enum ProbeCommand {
    /// Answer STAMP test packets (stateless session-reflector) until interrupted.
    Reflect(ReflectArgs),
    /// Probe a reflector over one line; print per-window summaries and health transitions.
    Send(SendArgs),
}

#[derive(Debug, clap::Args)]
struct ReflectArgs {
    /// Address to listen on, e.g. 0.0.0.0:862.
    #[arg(long)]
    listen: SocketAddr,
}

#[derive(Debug, clap::Args)]
struct SendArgs {
    /// The reflector's address, e.g. 192.0.2.1:862.
    #[arg(long)]
    to: SocketAddr,
    /// Line name used in reports.
    #[arg(long, default_value = "line")]
    line: String,
    /// Local address to send from.
    #[arg(long)]
    bind: Option<SocketAddr>,
    /// Leave by this interface (SO_BINDTODEVICE).
    #[arg(long)]
    bind_dev: Option<String>,
    /// Firewall mark for policy routing (SO_MARK).
    #[arg(long)]
    mark: Option<u32>,
    /// DSCP (0-63) carried by the probes.
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=63))]
    dscp: Option<u8>,
    /// Milliseconds between probes (50 = 20 probes/s).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    interval_ms: u64,
    /// Stop after this many probes (default: run until interrupted).
    #[arg(long)]
    count: Option<u64>,
    /// Milliseconds between summaries.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    summary_ms: u64,
    /// SLA loss limit in percent, judged by the health machine.
    #[arg(long, default_value_t = 1.0)]
    loss_limit_pct: f64,
    /// SLA median RTT limit in milliseconds.
    #[arg(long)]
    rtt_limit_ms: Option<f64>,
    /// SLA jitter limit in milliseconds.
    #[arg(long)]
    jitter_limit_ms: Option<f64>,
    /// The 2 s window breaches when its loss lower bound exceeds this many times the
    /// loss limit (1 = fastest reaction, more false alarms near the limit; default 2).
    #[arg(long)]
    fast_loss_factor: Option<f64>,
    /// Print reports as JSON lines (otherwise one readable line each).
    #[arg(long)]
    json: bool,
}

/// Runs the subcommand.
pub async fn run(args: ProbeArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        ProbeCommand::Reflect(args) => reflect(args).await,
        ProbeCommand::Send(args) => send(args).await,
    }
}

async fn reflect(args: ReflectArgs) -> anyhow::Result<ExitCode> {
    let socket = bind_reflector(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    tracing::info!(listen = %socket.local_addr()?, "STAMP reflector running");
    let shutdown = async {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
        }
    };
    let counters = run_reflector(socket, shutdown).await?;
    tracing::info!(?counters, "reflector stopped");
    Ok(ExitCode::SUCCESS)
}

fn millis(ms: f64, what: &str) -> anyhow::Result<Duration> {
    anyhow::ensure!(
        ms.is_finite() && ms > 0.0,
        "{what} must be a positive number of ms"
    );
    Ok(Duration::from_secs_f64(ms / 1e3))
}

async fn send(args: SendArgs) -> anyhow::Result<ExitCode> {
    let mut monitor = MonitorConfig::new(&args.line);
    monitor.interval = Duration::from_millis(args.interval_ms);
    monitor.summary_every = Duration::from_millis(args.summary_ms);
    monitor.slas = vec![Sla {
        name: "cli".into(),
        loss_limit: args.loss_limit_pct / 100.0,
        rtt_limit: args
            .rtt_limit_ms
            .map(|ms| millis(ms, "--rtt-limit-ms"))
            .transpose()?,
        jitter_limit: args
            .jitter_limit_ms
            .map(|ms| millis(ms, "--jitter-limit-ms"))
            .transpose()?,
        fast_loss_factor: args.fast_loss_factor,
    }];
    monitor.validate().map_err(anyhow::Error::msg)?;
    let config = SenderConfig {
        monitor,
        reflector: args.to,
        socket: SocketOptions {
            bind: args.bind,
            device: args.bind_dev,
            mark: args.mark,
            dscp: args.dscp,
        },
        count: args.count,
    };
    let mut handle = spawn_sender(config).context("cannot start the prober")?;
    loop {
        tokio::select! {
            report = handle.reports.recv() => match report {
                Some(report) => {
                    if !print_report(&report, args.json)? {
                        // Whoever read our output is gone (`| head`): stop quietly.
                        return Ok(ExitCode::SUCCESS);
                    }
                }
                None => break,
            },
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
        }
    }
    let counters = handle.finish().await?;
    Ok(if counters.answered > 0 {
        ExitCode::SUCCESS
    } else {
        eprintln!("no probe was answered");
        ExitCode::FAILURE
    })
}

/// Prints one report; `false` when stdout is closed.
fn print_report(report: &LineReport, json: bool) -> anyhow::Result<bool> {
    use std::io::Write as _;
    let line = render_report(report, json)?;
    match writeln!(std::io::stdout().lock(), "{line}") {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// One report as printed by `wansteer probe send`: a JSON line with `--json`, else a
/// readable line.
pub fn render_report(report: &LineReport, json: bool) -> anyhow::Result<String> {
    if json {
        return Ok(serde_json::to_string(report)?);
    }
    Ok(match report {
        LineReport::Transition(t) => t.to_string(),
        LineReport::Summary(s) => {
            let rtt = s
                .short
                .rtt_ms
                .map(|r| format!("rtt p50 {:.2} ms p99 {:.2} ms", r.p50, r.p99))
                .unwrap_or_else(|| "no replies".into());
            let states: Vec<String> = s
                .health
                .iter()
                .map(|h| format!("{}={}", h.sla, h.state))
                .collect();
            format!(
                "{} {} loss {:.2}% [{:.2}%, {:.2}%] of {} ({:.1} s) jitter {:.2} ms {}",
                s.line,
                rtt,
                s.short.loss.ratio * 100.0,
                s.short.loss.lower * 100.0,
                s.short.loss.upper * 100.0,
                s.short.probes,
                s.short.window_ms as f64 / 1e3,
                s.short.jitter_ms.unwrap_or(0.0),
                states.join(" "),
            )
        }
    })
}
