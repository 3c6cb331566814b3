//! The `wansteer` binary: one command, a subcommand per role.

use std::process::ExitCode;

mod allocator;

use clap::{Parser, Subcommand};

/// SD-WAN intelligent traffic steering: measure every WAN line, classify flows by
/// application, steer each traffic class onto the line that meets its SLA.
#[derive(Debug, Parser)]
#[command(name = "wansteer", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the central controller (path solver, rule push, REST API, dashboard).
    Controller(wansteer_controller::cli::ControllerArgs),
    /// Run a branch/hub agent, classify a capture, or clean up what wansteer installed.
    Agent(wansteer_agent::cli::AgentArgs),
    /// Build the network-namespace lab, impair lines, run scenarios and the demo.
    Lab(wansteer_lab::cli::LabArgs),
    /// Check a policy file, or show what changing it would do.
    Policy(wansteer_policies::cli::PolicyArgs),
    /// Send or reflect STAMP line-measurement probes.
    Probe(wansteer_probes::cli::ProbeArgs),
}

/// The classifier's application names. The binary knows the catalogue, so policies are
/// checked against it: a misspelt app would otherwise never match a flow.
fn known_apps() -> Vec<String> {
    wansteer_agent::classifier::catalogue::Catalogue::builtin().app_names()
}

#[global_allocator]
static ALLOCATOR: allocator::ByRole = allocator::ByRole;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WANSTEER_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Controller(mut args) => {
                args.known_apps = Some(known_apps());
                wansteer_controller::cli::run(args).await
            }
            Command::Agent(args) => wansteer_agent::cli::run(args).await,
            Command::Lab(args) => wansteer_lab::cli::run(args).await,
            Command::Policy(args) => {
                let options = wansteer_policies::CheckOptions {
                    known_apps: Some(known_apps()),
                };
                wansteer_policies::cli::run(args, &options).await
            }
            Command::Probe(args) => wansteer_probes::cli::run(args).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
