//! `wansteer lab` command line.

/// `println!` that does not panic when stdout is a closed pipe (`wansteer lab stats | head`).
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Subcommand;

use crate::emulator::control::{self, Request, Target};
use crate::emulator::loss::Loss;
use crate::emulator::model::{Impairment, ImpairmentChange, JitterShape};
use crate::emulator::{Emulator, LineStatus};
use crate::lab::{self, LabState};
use crate::topology::Topology;
use crate::{bulk, echo, netns, units, voice};

/// Build the namespace lab, impair lines, run scenarios.
#[derive(Debug, clap::Args)]
pub struct LabArgs {
    #[command(subcommand)]
    command: LabCommand,
}

#[derive(Debug, Subcommand)]
enum LabCommand {
    /// Build a topology (namespaces, veths, addresses, routes, one WAN emulator per line).
    /// Stays in the foreground and removes everything on exit or Ctrl-C, unless --detach.
    Up {
        /// Topology file, e.g. lab/topologies/bank.yaml.
        file: PathBuf,
        /// Name prefix for this run's namespaces (default: `wl` + 4 random hex digits).
        #[arg(long)]
        prefix: Option<String>,
        /// Leave the lab running in the background (emulators as processes); remove it with
        /// `wansteer lab down`.
        #[arg(long)]
        detach: bool,
    },
    /// Remove a lab run (namespaces, processes inside them, state).
    Down {
        /// Which run (needed when several are up).
        #[arg(long, conflicts_with = "all")]
        prefix: Option<String>,
        /// Remove every lab run, recorded or stray.
        #[arg(long)]
        all: bool,
    },
    /// List running labs with their namespaces and lines.
    List,
    /// Change a line's impairment at run time.
    Impair(ImpairArgs),
    /// Show what each line's emulator did (frames delayed, queued, dropped).
    Stats {
        /// One line (e.g. br1-mpls); all lines if omitted.
        line: Option<String>,
        #[arg(long)]
        prefix: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Run a command inside a node's namespace (`br1`, `br1-pc1`, `dc-dc1`, `ctl`, `wan-br1-mpls`).
    Exec {
        node: String,
        #[arg(long)]
        prefix: Option<String>,
        #[arg(trailing_var_arg = true, required = true)]
        command: Vec<String>,
    },
    /// Measure round-trip time with UDP echo probes between two nodes, or across one line
    /// (from its branch router to its hub router).
    Rtt {
        #[command(flatten)]
        path: PathArgs,
        /// Number of probes.
        #[arg(long, default_value_t = 200)]
        count: u32,
        /// Time between probes, e.g. 20ms.
        #[arg(long, default_value = "20ms", value_parser = parse_duration)]
        interval: Duration,
        /// Probe size in bytes (UDP payload).
        #[arg(long, default_value_t = 64)]
        size: usize,
        #[arg(long)]
        json: bool,
    },
    /// Measure bulk TCP goodput (cubic) between two nodes, or across one line.
    Bulk {
        #[command(flatten)]
        path: PathArgs,
        /// Measured window, after a 1 s warm-up.
        #[arg(long, default_value = "5s", value_parser = parse_duration)]
        duration: Duration,
        /// Use iperf3 (`-C cubic`) instead of the built-in sender/receiver.
        #[arg(long)]
        iperf3: bool,
        #[arg(long)]
        json: bool,
    },
    /// Run a scenario file: build its topology, play its timeline, judge its expectations,
    /// write report.json, report.md and plot.svg. Exits non-zero if an expectation fails.
    Run {
        /// Scenario file, e.g. lab/scenarios/emulator-selfcheck.yaml.
        file: PathBuf,
        /// Directory for the report (created).
        #[arg(long, default_value = "lab-report")]
        report: PathBuf,
        #[arg(long)]
        prefix: Option<String>,
        /// Steering off whatever the file says: static routes, no QoS (the baseline).
        #[arg(long, conflicts_with = "compare")]
        baseline: bool,
        /// Run with wansteer, then again with steering off; the report compares them.
        #[arg(long)]
        compare: bool,
        /// Run the scenario N times (each with its own lab; with --compare, N times with
        /// and N without, alternating) and summarize voice loss, longest gap and MOS per
        /// phase as median (min–max). Writes DIR/with-I/, DIR/without-I/ and
        /// DIR/summary.{md,json}.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
        repeat: u32,
    },
    /// Check a scenario file (and its topology) without running it.
    Check { file: PathBuf },
    /// Measurement accuracy: inject a grid of delay, jitter and loss on a lab line and
    /// compare what wansteer's probes measure (RTT, RFC 3550 jitter, loss with its 95%
    /// interval) with what was injected. Builds and removes its own one-line lab.
    BenchMeasurement {
        /// Probe sessions per grid point.
        #[arg(long, default_value_t = 3)]
        repetitions: usize,
        /// Probes per session.
        #[arg(long, default_value_t = 500)]
        probes: u64,
        /// Time between probes (the agent's default is 20ms).
        #[arg(long, default_value = "20ms", value_parser = parse_duration)]
        interval: Duration,
        /// Three points (delay, jitter, loss) instead of the full grid.
        #[arg(long)]
        quick: bool,
        /// Prober and reflector at real-time priority (as the emulator runs): the
        /// estimators' accuracy without the host's scheduling delays.
        #[arg(long)]
        realtime: bool,
        #[arg(long)]
        prefix: Option<String>,
        /// Print JSON (rows and every session's sample) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// DNS lookups against a local dnsmasq (real client bytes for DPI).
    #[command(subcommand)]
    Dns(DnsCommand),
    /// TLS handshakes with real SNIs against a local openssl s_server.
    #[command(subcommand)]
    Tls(TlsCommand),
    /// Voice-like UDP traffic (50 packets/s, 160-byte payload) and its receiver.
    #[command(subcommand)]
    Voice(voice::cli::VoiceCommand),
    /// The closed loop, shown: build bank.yaml, start an agent per site, send voice and
    /// bulk traffic, degrade and kill br1's mpls line, print the timeline, write a report.
    Demo(crate::demo::DemoArgs),
    /// Run one line's emulator in this process (used by `lab up --detach`).
    #[command(hide = true)]
    Emulate {
        #[arg(long)]
        namespace: String,
        #[arg(long)]
        line: String,
        #[arg(long)]
        socket: PathBuf,
        /// Baseline impairment as JSON.
        #[arg(long)]
        baseline: String,
    },
}

#[derive(Debug, Subcommand)]
enum DnsCommand {
    /// Run dnsmasq on a node until Ctrl-C.
    Serve {
        #[arg(long)]
        node: String,
        /// NAME=IPV4, repeatable, e.g. crm.bank.example=10.0.0.11.
        #[arg(long = "record", required = true)]
        records: Vec<String>,
        #[arg(long)]
        prefix: Option<String>,
    },
    /// Look names up from a node.
    Query {
        #[arg(long)]
        from: String,
        /// The node running dnsmasq.
        #[arg(long)]
        server: String,
        #[arg(required = true)]
        names: Vec<String>,
        #[arg(long)]
        prefix: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum TlsCommand {
    /// Run openssl s_server (self-signed certificate) on a node until Ctrl-C.
    Serve {
        #[arg(long)]
        node: String,
        #[arg(long, default_value_t = 443)]
        port: u16,
        #[arg(long, default_value = "bank.example")]
        cn: String,
        #[arg(long)]
        prefix: Option<String>,
    },
    /// Handshake from a node with each SNI given.
    Connect {
        #[arg(long)]
        from: String,
        #[arg(long)]
        to: String,
        #[arg(long, default_value_t = 443)]
        port: u16,
        #[arg(long = "sni", required = true)]
        snis: Vec<String>,
        #[arg(long)]
        prefix: Option<String>,
    },
}

fn node_ns_and_v4(state: &LabState, node: &str) -> anyhow::Result<(String, IpAddr)> {
    let ns = state
        .plan
        .namespace_of(node)
        .with_context(|| format!("no node `{node}` in lab {}", state.prefix))?;
    let addr = *ns
        .addresses
        .iter()
        .find(|a| a.is_ipv4())
        .with_context(|| format!("node `{node}` has no IPv4 address"))?;
    Ok((ns.name.clone(), addr))
}

/// Where traffic goes: `--from NODE --to NODE`, or `--line LINE`.
#[derive(Debug, clap::Args)]
struct PathArgs {
    /// Sending node (e.g. br1-pc1).
    #[arg(long, requires = "to", conflicts_with = "line")]
    from: Option<String>,
    /// Receiving node (e.g. dc-dc1).
    #[arg(long, requires = "from")]
    to: Option<String>,
    /// Across one line only, router to router (e.g. br1-mpls).
    #[arg(long)]
    line: Option<String>,
    /// Use IPv6 addresses.
    #[arg(long)]
    ipv6: bool,
    #[arg(long)]
    prefix: Option<String>,
}

impl PathArgs {
    /// (sending namespace, receiving namespace, receiving address)
    fn resolve(&self, state: &LabState) -> anyhow::Result<(String, String, IpAddr)> {
        let pick = |addrs: &[IpAddr]| {
            addrs
                .iter()
                .copied()
                .find(|a| a.is_ipv6() == self.ipv6)
                .context("node has no address of that family")
        };
        if let Some(line) = &self.line {
            let l = line_or_err(state, line)?;
            return Ok((
                l.near_router.clone(),
                l.far_router.clone(),
                pick(&l.far_addresses)?,
            ));
        }
        let (Some(from), Some(to)) = (&self.from, &self.to) else {
            bail!("give --from and --to, or --line");
        };
        let node = |n: &str| {
            state
                .plan
                .namespace_of(n)
                .with_context(|| format!("no node `{n}` in lab {}", state.prefix))
        };
        let to_ns = node(to)?;
        Ok((
            node(from)?.name.clone(),
            to_ns.name.clone(),
            pick(&to_ns.addresses)?,
        ))
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    units::parse_duration(s).map_err(|e| e.to_string())
}

#[derive(Debug, clap::Args)]
struct ImpairArgs {
    /// Line id, e.g. br1-mpls.
    line: String,
    #[arg(long)]
    prefix: Option<String>,
    /// Which direction: both, up (branch → hub) or down (hub → branch).
    #[arg(long, default_value = "both", value_parser = parse_target)]
    direction: Target,
    /// One-way delay, e.g. 80ms.
    #[arg(long, value_parser = parse_micros)]
    delay: Option<u64>,
    /// Delay variation, e.g. 10ms (σ for normal, half-width for uniform).
    #[arg(long, value_parser = parse_micros)]
    jitter: Option<u64>,
    /// Jitter distribution: normal or uniform.
    #[arg(long, value_parser = parse_shape)]
    jitter_shape: Option<JitterShape>,
    /// Let jitter reorder packets (true/false).
    #[arg(long)]
    reorder: Option<bool>,
    /// Loss ratio, e.g. 5%.
    #[arg(long, value_parser = parse_ratio)]
    loss: Option<f64>,
    /// Mean loss burst length in packets (Gilbert model); with --loss.
    #[arg(long, requires = "loss")]
    burst: Option<f64>,
    /// Line rate, e.g. 10mbit, or `unlimited`.
    #[arg(long, value_parser = parse_rate_or_unlimited)]
    rate: Option<u64>,
    /// Longest queueing delay before tail drop, e.g. 50ms.
    #[arg(long, value_parser = parse_micros)]
    queue: Option<u64>,
    /// Take the line down (drop everything).
    #[arg(long, conflicts_with = "up")]
    down: bool,
    /// Bring the line back up.
    #[arg(long)]
    up: bool,
    /// Back to the topology's figures for this line.
    #[arg(long, conflicts_with_all = ["delay", "jitter", "loss", "rate", "queue", "down", "up", "reorder", "jitter_shape"])]
    clear: bool,
}

fn parse_micros(s: &str) -> Result<u64, String> {
    units::parse_duration(s)
        .map(|d| d.as_micros() as u64)
        .map_err(|e| e.to_string())
}

fn parse_ratio(s: &str) -> Result<f64, String> {
    units::parse_ratio(s).map_err(|e| e.to_string())
}

fn parse_rate_or_unlimited(s: &str) -> Result<u64, String> {
    if s == "unlimited" {
        return Ok(0);
    }
    units::parse_rate(s).map_err(|e| e.to_string())
}

fn parse_target(s: &str) -> Result<Target, String> {
    match s {
        "both" => Ok(Target::Both),
        "up" => Ok(Target::Up),
        "down" => Ok(Target::Down),
        _ => Err(format!("`{s}`: expected both, up or down")),
    }
}

fn parse_shape(s: &str) -> Result<JitterShape, String> {
    match s {
        "normal" => Ok(JitterShape::Normal),
        "uniform" => Ok(JitterShape::Uniform),
        _ => Err(format!("`{s}`: expected normal or uniform")),
    }
}

impl ImpairArgs {
    fn request(&self) -> Request {
        if self.clear {
            return Request::Clear {
                target: self.direction,
            };
        }
        let loss = self.loss.map(|p| match self.burst {
            Some(burst) => Loss::bursty(p, burst),
            None if p == 0.0 => Loss::None,
            None => Loss::Random { p },
        });
        Request::Change {
            target: self.direction,
            change: ImpairmentChange {
                delay_us: self.delay,
                jitter_us: self.jitter,
                jitter_shape: self.jitter_shape,
                reorder: self.reorder,
                loss,
                rate_bps: self.rate,
                queue_us: self.queue,
                down: if self.down {
                    Some(true)
                } else if self.up {
                    Some(false)
                } else {
                    None
                },
            },
        }
    }
}

/// Runs the subcommand.
pub async fn run(args: LabArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        LabCommand::Up {
            file,
            prefix,
            detach,
        } => up(&file, prefix, detach).await,
        LabCommand::Down { prefix, all } => down(prefix.as_deref(), all),
        LabCommand::List => list(),
        LabCommand::Impair(a) => {
            let state = LabState::find(a.prefix.as_deref())?;
            line_or_err(&state, &a.line)?;
            let status = control::request(&state.socket(&a.line), &a.request())?.into_result()?;
            print_status(&status);
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Stats { line, prefix, json } => {
            let state = LabState::find(prefix.as_deref())?;
            let lines: Vec<String> = match line {
                Some(l) => {
                    line_or_err(&state, &l)?;
                    vec![l]
                }
                None => state.plan.lines.iter().map(|l| l.id.clone()).collect(),
            };
            let mut all = Vec::new();
            for l in &lines {
                all.push(control::request(&state.socket(l), &Request::Status)?.into_result()?);
            }
            if json {
                say!("{}", serde_json::to_string_pretty(&all)?);
            } else {
                all.iter().for_each(print_status);
            }
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Exec {
            node,
            prefix,
            command,
        } => {
            let state = LabState::find(prefix.as_deref())?;
            let ns = state.plan.namespace_of(&node).with_context(|| {
                format!(
                    "no node `{node}` in lab {} (nodes: {})",
                    state.prefix,
                    state
                        .plan
                        .namespaces
                        .iter()
                        .map(|n| n.node.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })?;
            let status = std::process::Command::new("ip")
                .args(["netns", "exec", &ns.name])
                .args(&command)
                .status()?;
            Ok(ExitCode::from(
                status.code().unwrap_or(1).clamp(0, 255) as u8
            ))
        }
        LabCommand::Rtt {
            path,
            count,
            interval,
            size,
            json,
        } => {
            let state = LabState::find(path.prefix.as_deref())?;
            let (from, to_ns, addr) = path.resolve(&state)?;
            let reflector = echo::Reflector::start(&to_ns, SocketAddr::new(addr, 0))?;
            let samples = echo::probe(
                &from,
                SocketAddr::new(addr, reflector.port()),
                count,
                interval,
                size,
                Duration::from_secs(1),
            )?;
            drop(reflector);
            let Some(stats) = echo::RttStats::from_samples(&samples) else {
                bail!("no reply from {addr} ({count} probes sent)");
            };
            if json {
                say!("{}", serde_json::to_string_pretty(&stats)?);
            } else {
                say!(
                    "{} probes to {addr}: received {}, loss {:.1}%, rtt min/median/mean/p95/max = {:.2}/{:.2}/{:.2}/{:.2}/{:.2} ms, stddev {:.2} ms",
                    stats.sent,
                    stats.received,
                    stats.loss * 100.0,
                    stats.min_ms,
                    stats.median_ms,
                    stats.mean_ms,
                    stats.p95_ms,
                    stats.max_ms,
                    stats.stddev_ms
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Bulk {
            path,
            duration,
            iperf3,
            json,
        } => {
            let state = LabState::find(path.prefix.as_deref())?;
            let (from, to_ns, addr) = path.resolve(&state)?;
            let result = tokio::task::spawn_blocking(move || {
                let warmup = Duration::from_secs(1);
                if iperf3 {
                    bulk::run_iperf3(&from, &to_ns, addr, warmup, duration)
                } else {
                    bulk::run(&from, &to_ns, SocketAddr::new(addr, 0), warmup, duration)
                }
            })
            .await??;
            if json {
                say!("{}", serde_json::to_string_pretty(&result)?);
            } else {
                say!(
                    "TCP (cubic) to {addr}: {:.2} Mbit/s over {:.1} s",
                    result.bits_per_second / 1e6,
                    result.window.as_secs_f64()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Run {
            file,
            report,
            prefix,
            baseline,
            compare,
            repeat,
        } => {
            if repeat > 1 {
                if prefix.is_some() {
                    bail!("--prefix names one run; repeated runs each get a fresh prefix");
                }
                return run_repeated(&file, &report, repeat, baseline, compare).await;
            }
            let prefix = match prefix {
                Some(p) => {
                    valid_prefix(&p)?;
                    p
                }
                None => lab::new_prefix(),
            };
            std::fs::create_dir_all(&report)
                .with_context(|| format!("cannot create {}", report.display()))?;
            let options = crate::runner::RunOptions {
                baseline,
                logs: Some(report.join("logs")),
            };
            let result = if compare {
                crate::runner::compare(&file, &prefix, &options).await?
            } else {
                crate::runner::run_with(&file, &prefix, &options).await?
            };
            std::fs::write(report.join("report.json"), result.to_json())?;
            std::fs::write(report.join("report.md"), result.to_markdown())?;
            std::fs::write(report.join("plot.svg"), result.to_svg())?;
            for e in &result.expectations {
                say!(
                    "{} {} — {}",
                    if e.passed { "PASS" } else { "FAIL" },
                    e.text,
                    e.measured
                );
            }
            say!(
                "scenario {} {}; report in {}",
                result.scenario,
                if result.passed { "passed" } else { "FAILED" },
                report.display()
            );
            Ok(if result.passed {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        LabCommand::Check { file } => {
            let (scenario, topology) = crate::runner::load(&file)?;
            say!(
                "{}: scenario {} on topology {} ({} steps, {} traffic items, {} expectations) is valid",
                file.display(),
                scenario.name,
                topology.name,
                scenario.timeline.len(),
                scenario.traffic.len(),
                scenario.expect.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::BenchMeasurement {
            repetitions,
            probes,
            interval,
            quick,
            realtime,
            prefix,
            json,
        } => {
            let prefix = match prefix {
                Some(p) => {
                    valid_prefix(&p)?;
                    p
                }
                None => lab::new_prefix(),
            };
            if repetitions == 0 || probes < 50 || interval.is_zero() {
                bail!("need at least 1 repetition, 50 probes and an interval above zero");
            }
            let options = crate::accuracy::Options {
                grid: if quick {
                    crate::accuracy::quick_grid()
                } else {
                    crate::accuracy::full_grid()
                },
                repetitions,
                probes,
                interval,
                prefix,
                realtime,
            };
            let outcome = tokio::select! {
                o = crate::accuracy::run(&options, |line| eprintln!("{line}")) => o?,
                _ = tokio::signal::ctrl_c() => bail!("interrupted; lab removed"),
            };
            if json {
                say!("{}", serde_json::to_string_pretty(&outcome)?);
            } else {
                say!(
                    "{} probes every {:.0} ms per session, {repetitions} sessions per point{}\n",
                    probes,
                    interval.as_secs_f64() * 1e3,
                    if realtime {
                        ", prober and reflector at real-time priority"
                    } else {
                        ""
                    }
                );
                say!("{}", crate::accuracy::render(&outcome.rows));
            }
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Dns(DnsCommand::Serve {
            node,
            records,
            prefix,
        }) => {
            let state = LabState::find(prefix.as_deref())?;
            let (ns, addr) = node_ns_and_v4(&state, &node)?;
            let records = records
                .iter()
                .map(|r| {
                    let (name, ip) = r
                        .split_once('=')
                        .with_context(|| format!("`{r}`: expected NAME=IPV4"))?;
                    Ok((
                        name.to_string(),
                        ip.parse()
                            .with_context(|| format!("`{ip}`: not an IPv4 address"))?,
                    ))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let server = crate::apps::dns_server(&ns, addr, &records)?;
            say!(
                "dnsmasq on {node} ({addr}:53) answering {} names; Ctrl-C to stop",
                records.len()
            );
            serve_until_shutdown(server, &ns).await
        }
        LabCommand::Dns(DnsCommand::Query {
            from,
            server,
            names,
            prefix,
        }) => {
            let state = LabState::find(prefix.as_deref())?;
            let (from_ns, _) = node_ns_and_v4(&state, &from)?;
            let (_, addr) = node_ns_and_v4(&state, &server)?;
            let mut failed = false;
            for name in &names {
                match crate::apps::dns_query(
                    &from_ns,
                    SocketAddr::new(addr, 53),
                    name,
                    Duration::from_secs(2),
                ) {
                    Ok(answers) => say!("{name}: {answers:?}"),
                    Err(e) => {
                        failed = true;
                        say!("{name}: {e:#}");
                    }
                }
            }
            Ok(if failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        LabCommand::Tls(TlsCommand::Serve {
            node,
            port,
            cn,
            prefix,
        }) => {
            let state = LabState::find(prefix.as_deref())?;
            let (ns, addr) = node_ns_and_v4(&state, &node)?;
            let server = crate::apps::tls_server(&ns, addr, port, &cn)?;
            say!("openssl s_server on {node} ({addr}:{port}, CN {cn}); Ctrl-C to stop");
            serve_until_shutdown(server, &ns).await
        }
        LabCommand::Tls(TlsCommand::Connect {
            from,
            to,
            port,
            snis,
            prefix,
        }) => {
            let state = LabState::find(prefix.as_deref())?;
            let (from_ns, _) = node_ns_and_v4(&state, &from)?;
            let (_, addr) = node_ns_and_v4(&state, &to)?;
            let mut failed = false;
            for sni in &snis {
                match crate::apps::tls_connect(&from_ns, SocketAddr::new(addr, port), sni) {
                    Ok(t) => say!("{sni}: handshake in {:.1} ms", t.as_secs_f64() * 1e3),
                    Err(e) => {
                        failed = true;
                        say!("{sni}: {e:#}");
                    }
                }
            }
            Ok(if failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        LabCommand::Voice(cmd) => voice::cli::run(cmd).await,
        LabCommand::Demo(args) => crate::demo::run(args).await,
        LabCommand::Emulate {
            namespace,
            line,
            socket,
            baseline,
        } => emulate(&namespace, &line, &socket, &baseline).await,
    }
}

/// `lab run --repeat N`: every run's report in its own directory, the summary beside them.
async fn run_repeated(
    file: &Path,
    dir: &Path,
    times: u32,
    baseline: bool,
    compare: bool,
) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let options = crate::runner::RunOptions {
        baseline,
        logs: None,
    };
    let run_dir = |kind: &str, i: u32| dir.join(format!("{kind}-{i}"));
    let runs = tokio::select! {
        r = crate::runner::repeat(
            file,
            times,
            compare,
            &options,
            |kind, i| Some(run_dir(kind, i).join("logs")),
            |kind, i, result| {
                let d = run_dir(kind, i);
                let written = std::fs::create_dir_all(&d)
                    .and_then(|_| std::fs::write(d.join("report.json"), result.to_json()))
                    .and_then(|_| std::fs::write(d.join("report.md"), result.to_markdown()))
                    .and_then(|_| std::fs::write(d.join("plot.svg"), result.to_svg()));
                if let Err(e) = written {
                    eprintln!("cannot write {}: {e}", d.display());
                }
                let failed: Vec<&str> = result
                    .expectations
                    .iter()
                    .filter(|e| !e.passed)
                    .map(|e| e.text.as_str())
                    .collect();
                eprintln!(
                    "run {i}/{times} {kind} wansteer ({}): {}; report in {}",
                    result.prefix,
                    if failed.is_empty() {
                        "every expectation passed".to_string()
                    } else {
                        format!("failed: {}", failed.join("; "))
                    },
                    d.display()
                );
            },
        ) => r?,
        _ = tokio::signal::ctrl_c() => bail!("interrupted; lab removed"),
    };
    for e in &runs.errors {
        eprintln!("run not played: {e}");
    }
    let mut summary = crate::repeat::summarize(&runs.with, &runs.without)
        .with_context(|| format!("no run finished: {}", runs.errors.join("; ")))?;
    summary.errors = runs.errors;
    std::fs::write(dir.join("summary.json"), summary.to_json())?;
    let md = summary.to_markdown();
    std::fs::write(dir.join("summary.md"), &md)?;
    say!("{md}");
    say!("summary in {}", dir.join("summary.md").display());
    // As for a single run: failing when wansteer's runs did not meet their expectations
    // (or a run could not be played).
    Ok(
        if summary.passed_with == summary.runs_with && summary.errors.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        },
    )
}

fn line_or_err<'a>(state: &'a LabState, line: &str) -> anyhow::Result<&'a crate::topology::Line> {
    state.plan.line(line).with_context(|| {
        format!(
            "no line `{line}` in lab {} (lines: {})",
            state.prefix,
            state
                .plan
                .lines
                .iter()
                .map(|l| l.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    })
}

fn valid_prefix(prefix: &str) -> anyhow::Result<()> {
    if prefix.is_empty()
        || prefix.len() > 10
        || !prefix
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    {
        bail!("prefix `{prefix}` must be 1-10 lowercase letters or digits");
    }
    Ok(())
}

async fn up(file: &Path, prefix: Option<String>, detach: bool) -> anyhow::Result<ExitCode> {
    let topology = Topology::load(file)?;
    let prefix = match prefix {
        Some(p) => {
            valid_prefix(&p)?;
            if LabState::dir(&p).exists() {
                bail!("a lab run `{p}` already exists; `wansteer lab down --prefix {p}` first");
            }
            p
        }
        None => lab::new_prefix(),
    };
    let plan = topology.plan(&prefix);
    let build_time = lab::build(&plan)?;
    let mut state = LabState {
        prefix: prefix.clone(),
        topology_file: file.display().to_string(),
        owner_pid: Some(std::process::id()),
        detached: detach,
        plan: plan.clone(),
    };
    if detach {
        state.owner_pid = None;
        if let Err(e) = state.save().and_then(|_| spawn_emulators(&state)) {
            let _ = lab::teardown(&plan);
            return Err(e);
        }
        print_summary(&state, build_time);
        say!("running in the background; remove with `wansteer lab down --prefix {prefix}`");
        return Ok(ExitCode::SUCCESS);
    }
    let started = start_emulators(&state).and_then(|e| state.save().map(|_| e));
    let emulators = match started {
        Ok(e) => e,
        Err(e) => {
            let _ = lab::teardown(&plan);
            return Err(e);
        }
    };
    print_summary(&state, build_time);
    say!("press Ctrl-C to remove the lab");
    wait_for_shutdown().await;
    drop(emulators);
    let t = Instant::now();
    lab::teardown(&plan)?;
    eprintln!("lab {prefix} removed in {:.2} s", t.elapsed().as_secs_f64());
    Ok(ExitCode::SUCCESS)
}

fn start_emulators(state: &LabState) -> anyhow::Result<Vec<Emulator>> {
    state
        .plan
        .lines
        .iter()
        .map(|l| {
            Emulator::start(
                &l.id,
                &l.namespace,
                "near",
                "far",
                l.baseline,
                Some(&state.socket(&l.id)),
            )
        })
        .collect()
}

fn spawn_emulators(state: &LabState) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("cannot find the wansteer binary")?;
    let dir = LabState::dir(&state.prefix);
    for l in &state.plan.lines {
        let log = std::fs::File::create(dir.join(format!("{}.log", l.id)))?;
        let mut cmd = std::process::Command::new("ip");
        cmd.args(["netns", "exec", &l.namespace])
            .arg(&exe)
            .args([
                "lab",
                "emulate",
                "--namespace",
                &l.namespace,
                "--line",
                &l.id,
            ])
            .arg("--socket")
            .arg(state.socket(&l.id))
            .arg("--baseline")
            .arg(serde_json::to_string(&l.baseline)?)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        cmd.spawn().context("cannot start an emulator")?;
    }
    // Ready when every control socket answers.
    let deadline = Instant::now() + Duration::from_secs(5);
    for l in &state.plan.lines {
        loop {
            if control::request(&state.socket(&l.id), &Request::Status).is_ok() {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "emulator for {} did not start; see {}",
                    l.id,
                    dir.join(format!("{}.log", l.id)).display()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(())
}

async fn emulate(
    namespace: &str,
    line: &str,
    socket: &Path,
    baseline: &str,
) -> anyhow::Result<ExitCode> {
    let baseline: Impairment = serde_json::from_str(baseline).context("bad --baseline")?;
    let emulator = Emulator::start(line, namespace, "near", "far", baseline, Some(socket))?;
    wait_for_shutdown().await;
    emulator.stop();
    Ok(ExitCode::SUCCESS)
}

/// Keeps a server until Ctrl-C/SIGTERM, or until it dies (its lab was taken down).
async fn serve_until_shutdown(
    mut server: crate::apps::ServerProcess,
    namespace: &str,
) -> anyhow::Result<ExitCode> {
    let watch = async {
        while server.running() && netns::exists(namespace) {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    tokio::select! {
        _ = wait_for_shutdown() => Ok(ExitCode::SUCCESS),
        _ = watch => {
            eprintln!("server ended (lab removed?)");
            Ok(ExitCode::FAILURE)
        }
    }
}

async fn wait_for_shutdown() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

fn down(prefix: Option<&str>, all: bool) -> anyhow::Result<ExitCode> {
    let runs = if all {
        LabState::all()
    } else {
        vec![LabState::find(prefix)?]
    };
    for run in &runs {
        stop_owner(run);
        lab::teardown(&run.plan)?;
        say!("removed lab {} ({})", run.prefix, run.plan.topology);
    }
    if all {
        let stray = lab::stray_namespaces();
        if !stray.is_empty() {
            netns::delete(&stray)?;
            say!("removed {} stray namespaces", stray.len());
        }
        for prefix in lab::remove_orphan_run_dirs() {
            say!("removed state of dead run {prefix}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Asks a foreground `lab up` to clean up after itself, briefly waiting for it.
fn stop_owner(run: &LabState) {
    let Some(pid) = run.owner_pid else { return };
    if pid == std::process::id() || !Path::new(&format!("/proc/{pid}")).exists() {
        return;
    }
    // SAFETY: kill has no memory effects.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(5);
    while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn list() -> anyhow::Result<ExitCode> {
    let runs = LabState::all();
    if runs.is_empty() {
        say!("no lab running");
    }
    for run in runs {
        say!(
            "{}  {} ({})  {} namespaces  lines: {}",
            run.prefix,
            run.plan.topology,
            run.topology_file,
            run.plan.namespaces.len(),
            run.plan
                .lines
                .iter()
                .map(|l| l.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let stray = lab::stray_namespaces();
    if !stray.is_empty() {
        say!(
            "stray namespaces (remove with `lab down --all`): {}",
            stray.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn print_summary(state: &LabState, build_time: Duration) {
    say!(
        "lab {} ({}) up in {:.2} s: {} namespaces",
        state.prefix,
        state.plan.topology,
        build_time.as_secs_f64(),
        state.plan.namespaces.len()
    );
    for ns in &state.plan.namespaces {
        let addrs: Vec<String> = ns.addresses.iter().map(|a| a.to_string()).collect();
        say!("  {:<14} {:<24} {}", ns.node, ns.name, addrs.join(" "));
    }
    for l in &state.plan.lines {
        say!("  line {:<10} {}", l.id, describe(&l.baseline));
    }
}

fn describe(i: &Impairment) -> String {
    let mut parts = vec![format!("delay {:.1}ms", i.delay_us as f64 / 1000.0)];
    if i.jitter_us > 0 {
        parts.push(format!(
            "jitter {:.1}ms {:?}{}",
            i.jitter_us as f64 / 1000.0,
            i.jitter_shape,
            if i.reorder { " reorder" } else { "" }
        ));
    }
    match i.loss {
        Loss::None => {}
        Loss::Random { p } => parts.push(format!("loss {:.2}%", p * 100.0)),
        l @ Loss::GilbertElliott { r, .. } => parts.push(format!(
            "loss {:.2}% bursts of {:.1}",
            l.expected_ratio() * 100.0,
            1.0 / r
        )),
    }
    if let Some(rate) = i.rate_bps {
        parts.push(format!(
            "rate {} queue {}ms",
            units::format_rate(rate),
            i.queue_us / 1000
        ));
    }
    if i.down {
        parts.push("DOWN".into());
    }
    parts.join(", ")
}

fn print_status(s: &LineStatus) {
    for (name, d) in [("up", &s.up), ("down", &s.down)] {
        let c = &d.counters;
        say!(
            "{:<10} {:<4} {}\n           rx {} sent {} delayed {} queued {} dropped {} (loss {}, queue {}, outage {}) backlog {:.1}ms max-queue {:.1}ms",
            s.line,
            name,
            describe(&d.impairment),
            c.received,
            c.sent,
            c.delayed,
            c.queued,
            c.dropped(),
            c.dropped_loss,
            c.dropped_queue,
            c.dropped_outage,
            d.backlog_us as f64 / 1000.0,
            c.max_queue_delay_us as f64 / 1000.0,
        );
    }
}
