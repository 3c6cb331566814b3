//! `wansteer agent classify`: classify the flows of a capture (or a live interface) and
//! print one line — or one JSON object — per flow.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use serde_json::json;

use super::capture;
use super::catalogue::Catalogue;
use super::engine::{Classifier, Config, FlowRecord};
use super::packet::LinkType;
use super::policy::PolicyClasses;

/// Classify every flow of a pcap/pcapng capture.
#[derive(Debug, clap::Args)]
#[command(group = clap::ArgGroup::new("source").required(true).args(["pcap", "interface"]))]
pub struct ClassifyArgs {
    /// Capture file to replay (pcap or pcapng; the format is read from the file, not its name).
    #[arg(long, value_name = "FILE")]
    pub pcap: Option<PathBuf>,
    /// Capture live on this interface instead (needs CAP_NET_RAW), for `--seconds`.
    #[arg(long, value_name = "IFACE")]
    pub interface: Option<String>,
    /// How long to capture live.
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub seconds: u64,
    /// Report the classes of this policy file instead of the catalogue's classes.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Use this application catalogue instead of the built-in one.
    #[arg(long, value_name = "FILE")]
    pub catalogue: Option<PathBuf>,
    /// Print a JSON array, one object per flow.
    #[arg(long)]
    pub json: bool,
}

/// Runs `wansteer agent classify`.
pub async fn run(args: ClassifyArgs) -> anyhow::Result<ExitCode> {
    tokio::task::spawn_blocking(move || run_blocking(args)).await?
}

fn run_blocking(args: ClassifyArgs) -> anyhow::Result<ExitCode> {
    let catalogue = match &args.catalogue {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read catalogue {}", path.display()))?;
            Catalogue::from_yaml(&text).with_context(|| format!("catalogue {}", path.display()))?
        }
        None => Catalogue::builtin().clone(),
    };
    let policy = match &args.policy {
        Some(path) => match wansteer_policies::check_file(path) {
            Ok(checked) => {
                for warning in &checked.warnings {
                    eprintln!("{warning}");
                }
                Some(PolicyClasses::new(&checked.policy)?)
            }
            Err(diagnostics) => {
                for diagnostic in &diagnostics {
                    eprintln!("{diagnostic}");
                }
                anyhow::bail!("policy {} has errors", path.display());
            }
        },
        None => None,
    };
    // A capture on disk can hold far more flows than a live branch: keep them all.
    let config = Config {
        max_flows: 1 << 20,
        dns_cache_entries: 1 << 18,
        ..Config::default()
    };
    let mut classifier = Classifier::new(catalogue, policy, config);
    classifier.keep_flow_records(true);
    if let Some(path) = &args.pcap {
        let bytes = capture::read_file(path)?;
        let summary = capture::replay(&bytes, |frame| {
            classifier.process_frame(frame.time, frame.link, frame.data);
        })
        .with_context(|| format!("reading {}", path.display()))?;
        if summary.skipped_link > 0 {
            eprintln!(
                "note: {} frames on interfaces with a link type the classifier does not decode",
                summary.skipped_link
            );
        }
    } else if let Some(interface) = &args.interface {
        let (frames, _thread) = capture::spawn_live(interface, 4096)?;
        let until = std::time::Instant::now() + Duration::from_secs(args.seconds);
        while let Some(left) = until.checked_duration_since(std::time::Instant::now()) {
            match frames.recv_timeout(left) {
                Ok(frame) if !frame.data.is_empty() => {
                    classifier.process_frame(frame.time, LinkType::Ethernet, &frame.data)
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    }
    let records = classifier.finish();
    match print_flows(&records, args.json) {
        // A closed pipe (`… | head`) is the reader's choice, not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        other => other?,
    }
    if !args.json {
        eprintln!(
            "{} flows, {} packets",
            records.len(),
            classifier.counters.packets
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn print_flows(records: &[FlowRecord], json: bool) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if json {
        let flows: Vec<serde_json::Value> = records.iter().map(flow_json).collect();
        serde_json::to_writer_pretty(&mut out, &flows)?;
        writeln!(out)?;
    } else {
        for record in records {
            let v = &record.verdict;
            writeln!(
                out,
                "{:<5} {} -> {}{}  {}  {}  ({})",
                v.tuple.l4_name(),
                std::net::SocketAddr::new(v.tuple.src, v.tuple.sport),
                std::net::SocketAddr::new(v.tuple.dst, v.tuple.dport),
                v.tuple
                    .vlan
                    .map(|id| format!(" vlan {id}"))
                    .unwrap_or_default(),
                v.app,
                v.class,
                v.reason
            )?;
        }
    }
    out.flush()
}

fn flow_json(record: &FlowRecord) -> serde_json::Value {
    let v = &record.verdict;
    let mut object = json!({
        "l4": v.tuple.l4_name(),
        "src": v.tuple.src.to_string(),
        "sport": v.tuple.sport,
        "dst": v.tuple.dst.to_string(),
        "dport": v.tuple.dport,
        "app": v.app,
        "sdwan_class": v.class,
        "reason": v.reason,
    });
    if let Some(vlan) = v.tuple.vlan {
        object["vlan"] = json!(vlan);
    }
    object
}
