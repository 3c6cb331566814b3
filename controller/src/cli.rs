//! `wansteer controller` command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use crate::audit::Retention;
use crate::auth::{TokenSource, TokensFile};
use crate::service::{Controller, ControllerConfig};

/// File name of generated tokens inside the state directory.
pub const GENERATED_TOKENS: &str = "tokens.yaml";

const TOKENS_HELP: &str = "\
Tokens file, YAML, mode 0600 (a file group or others can read is refused):

  agents:                  # one per site; its agent sends `Authorization: Bearer <token>`
    - { site: branch-1, token: <64 hex>, revoked: false }
  api:                     # viewer reads; admin also validates/applies policies
    - { name: alice, role: admin, token: <64 hex> }
    - { name: grafana, role: viewer, token: <64 hex> }

Tokens must be unique and at least 16 characters (`openssl rand -hex 32`). Without
--tokens the controller generates one token per site plus `admin` and `viewer` API tokens
into DIR/tokens.yaml, reuses them on restart, and adds tokens for new sites — also when a
policy applied through the API adds a site (the token is in the file at once; the answer
lists the sites under `tokens_added`).

Tokens are re-read on SIGHUP and whenever a policy is applied: set `revoked: true` (or
delete the entry) and send SIGHUP to lock an agent or API user out. Agent tokens of sites
that are not in the policy in force are refused.";

/// Run the central controller: REST API and agent sessions under /api/v1/, the OpenAPI
/// document at /api/v1/openapi.json, Prometheus metrics at /metrics.
#[derive(Debug, clap::Args)]
pub struct ControllerArgs {
    /// The policy to bring in force at start (a new version when it differs from the last
    /// one recorded in the state directory).
    #[arg(long, value_name = "FILE")]
    pub policy: PathBuf,
    /// Address to listen on, e.g. 127.0.0.1:8080 or [::]:8080.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// State directory: the redb store, the audit log, generated tokens.
    #[arg(long, value_name = "DIR")]
    pub state: PathBuf,
    /// Tokens file (agent tokens per site, API tokens with roles); must be mode 0600.
    /// Without it tokens are generated into DIR/tokens.yaml.
    #[arg(long, value_name = "FILE", long_help = TOKENS_HELP)]
    pub tokens: Option<PathBuf>,
    /// Rotate the audit log when it reaches this many MiB.
    #[arg(long, value_name = "MIB", default_value_t = 64)]
    pub audit_max_mib: u64,
    /// Rotated audit logs kept.
    #[arg(long, value_name = "N", default_value_t = 30)]
    pub audit_keep: u32,
    /// Re-plan at most this often (milliseconds) while reports arrive.
    #[arg(long, value_name = "MS", default_value_t = 200)]
    pub plan_interval_ms: u64,
    /// Serve /metrics without a token. By default a scraper sends a viewer token
    /// (`Authorization: Bearer …`; Prometheus: `authorization: { credentials_file: … }`).
    #[arg(long)]
    pub metrics_public: bool,
    /// The classifier's application names, filled in by the `wansteer` binary (this crate
    /// does not depend on the agent): policies naming other apps are refused.
    #[arg(skip)]
    pub known_apps: Option<Vec<String>>,
}

/// Reads the tokens file, or loads/creates the generated one in the state directory
/// (adding a token for any site of the policy that has none).
pub fn load_or_generate_tokens(
    args: &ControllerArgs,
    sites: &[&str],
) -> anyhow::Result<TokensFile> {
    if let Some(path) = &args.tokens {
        return Ok(TokensFile::load(path)?);
    }
    std::fs::create_dir_all(&args.state)
        .with_context(|| format!("cannot create state directory {}", args.state.display()))?;
    let path = args.state.join(GENERATED_TOKENS);
    let mut file = if path.exists() {
        TokensFile::load(&path)?
    } else {
        TokensFile::generate(sites.iter().copied())
    };
    let added = file.add_missing_sites(sites.iter().copied());
    if !path.exists() || !added.is_empty() {
        file.save(&path)?;
        eprintln!(
            "wansteer: agent and API tokens written to {} (mode 0600); give each site's agent its token",
            path.display()
        );
    } else {
        eprintln!("wansteer: using tokens from {}", path.display());
    }
    Ok(file)
}

fn read_policy(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read policy {}", path.display()))
}

/// Runs the subcommand until Ctrl-C or SIGTERM.
pub async fn run(args: ControllerArgs) -> anyhow::Result<ExitCode> {
    let policy_text = read_policy(&args.policy)?;
    let file = args.policy.display().to_string();
    let check = wansteer_policies::CheckOptions {
        known_apps: args.known_apps.clone(),
    };
    let checked = match wansteer_policies::check_source_with(&file, &policy_text, &check) {
        Ok(checked) => checked,
        Err(diagnostics) => {
            for diagnostic in &diagnostics {
                eprintln!("{diagnostic}");
            }
            return Ok(ExitCode::from(2));
        }
    };
    let sites: Vec<&str> = checked
        .policy
        .sites
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    let tokens = load_or_generate_tokens(&args, &sites)?;
    let token_source = match &args.tokens {
        Some(path) => TokenSource::File(path.clone()),
        None => TokenSource::Generated(args.state.join(GENERATED_TOKENS)),
    };
    let config = ControllerConfig {
        token_source,
        state_dir: args.state.clone(),
        policy_file: file,
        policy_text,
        tokens,
        retention: Retention {
            max_bytes: args.audit_max_mib << 20,
            keep: args.audit_keep,
        },
        plan_interval: Duration::from_millis(args.plan_interval_ms.max(1)),
        report_interval: Duration::from_secs(1),
        metrics_public: args.metrics_public,
        check,
    };
    let planner = Box::new(crate::solver_planning::SolverPlanning::new());
    let controller = Controller::start(config, planner).await?;
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    tracing::info!(address = %listener.local_addr()?, "controller listening");
    tokio::spawn(reload_tokens_on_hangup(controller.clone()));
    let closing = controller.clone();
    crate::api::serve(listener, controller.clone(), async move {
        shutdown_signal().await;
        closing.begin_shutdown();
    })
    .await?;
    controller.shutdown().await?;
    Ok(ExitCode::SUCCESS)
}

/// SIGHUP re-reads the tokens (revocations, tokens for new sites).
async fn reload_tokens_on_hangup(controller: Controller) {
    let Ok(mut hangup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
    else {
        return;
    };
    while hangup.recv().await.is_some() {
        match controller.reload_tokens() {
            Ok(added) => tracing::info!(?added, "tokens reloaded"),
            Err(error) => tracing::error!(%error, "tokens not reloaded; the previous ones stay"),
        }
    }
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
}
