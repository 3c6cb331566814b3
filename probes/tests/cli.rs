//! `wansteer probe …` as a user runs it: argument parsing, bad input refused with a
//! clear message, a counted `send` against a live reflector, and the JSON line format.

use std::process::ExitCode;

use clap::Parser;
use tokio::sync::oneshot;
use wansteer_probes::cli::{ProbeArgs, render_report, run};
use wansteer_probes::tasks::bind_reflector;
use wansteer_probes::{LineMonitor, MonitorConfig, run_reflector};
use wansteer_wire::report::LineReport;

#[derive(Debug, Parser)]
struct Probe {
    #[command(flatten)]
    args: ProbeArgs,
}

fn parse(args: &[&str]) -> Result<ProbeArgs, clap::Error> {
    let mut argv = vec!["probe"];
    argv.extend_from_slice(args);
    Probe::try_parse_from(argv).map(|p| p.args)
}

#[test]
fn bad_arguments_are_refused_with_the_reason() {
    let err = parse(&["send", "--to", "127.0.0.1:862", "--dscp", "64"]).unwrap_err();
    assert!(err.to_string().contains("64"), "{err}");
    let err = parse(&["send", "--to", "nowhere"]).unwrap_err();
    assert!(err.to_string().contains("nowhere"), "{err}");
    let err = parse(&["send", "--to", "127.0.0.1:862", "--interval-ms", "0"]).unwrap_err();
    assert!(err.to_string().contains("interval"), "{err}");
    assert!(parse(&["reflect"]).is_err(), "--listen is required");
    assert!(
        parse(&[
            "send",
            "--to",
            "127.0.0.1:862",
            "--bind-dev",
            "eth1",
            "--mark",
            "7",
            "--json"
        ])
        .is_ok()
    );
}

#[tokio::test]
async fn an_impossible_sla_is_an_error_not_a_run() {
    let args = parse(&[
        "send",
        "--to",
        "127.0.0.1:9",
        "--loss-limit-pct",
        "0",
        "--count",
        "1",
    ])
    .unwrap();
    let err = run(args).await.unwrap_err();
    assert!(err.to_string().contains("loss limit"), "{err}");
}

#[tokio::test]
async fn a_counted_send_against_a_live_reflector_succeeds() {
    let socket = bind_reflector("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = socket.local_addr().unwrap().to_string();
    let (stop, stopped) = oneshot::channel::<()>();
    let reflector = tokio::spawn(run_reflector(socket, async {
        let _ = stopped.await;
    }));
    let args = parse(&[
        "send",
        "--to",
        &addr,
        "--count",
        "20",
        "--interval-ms",
        "5",
        "--json",
    ])
    .unwrap();
    assert_eq!(run(args).await.unwrap(), ExitCode::SUCCESS);
    stop.send(()).unwrap();
    assert_eq!(reflector.await.unwrap().unwrap().reflected, 20);
}

#[tokio::test]
async fn nobody_answering_is_a_failure_exit() {
    // A bound UDP socket that never answers.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    let args = parse(&["send", "--to", &addr, "--count", "3", "--interval-ms", "5"]).unwrap();
    assert_eq!(run(args).await.unwrap(), ExitCode::FAILURE);
}

#[test]
fn summaries_print_as_one_json_object_per_line() {
    let mut monitor = LineMonitor::new(
        MonitorConfig::new("mpls"),
        std::time::Duration::from_secs(1_790_000_000),
    )
    .unwrap();
    monitor.on_send(std::time::Duration::ZERO);
    let summary = monitor.summary_now(std::time::Duration::from_secs(1));
    let line = render_report(&LineReport::Summary(Box::new(summary)), true).unwrap();
    assert!(!line.contains('\n'));
    let value: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(value["kind"], "summary");
    assert_eq!(value["line"], "mpls");
    assert_eq!(value["short"]["lost"], 1);
    assert_eq!(value["health"][0]["state"], "down");
    let text = render_report(&serde_json::from_str(&line).unwrap(), false).unwrap();
    assert!(text.starts_with("mpls no replies loss 100.00%"), "{text}");
}
