//! `wansteer controller` start-up: tokens generated private into the state directory and
//! reused; a tokens file others can read is refused; a bad policy stops the start with its
//! location.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use wansteer_controller::auth::TokensFile;
use wansteer_controller::cli::{ControllerArgs, GENERATED_TOKENS, load_or_generate_tokens, run};

fn args(dir: &Path, tokens: Option<&Path>) -> ControllerArgs {
    ControllerArgs {
        policy: dir.join("policy.yaml"),
        listen: "127.0.0.1:0".into(),
        state: dir.join("state"),
        tokens: tokens.map(Path::to_path_buf),
        audit_max_mib: 1,
        audit_keep: 2,
        plan_interval_ms: 50,
        metrics_public: false,
        known_apps: None,
    }
}

#[test]
fn generated_tokens_are_private_reused_and_extended() {
    let dir = tempfile::tempdir().unwrap();
    let args = args(dir.path(), None);
    let first = load_or_generate_tokens(&args, &["branch-1", "hub"]).unwrap();
    let path = dir.path().join("state").join(GENERATED_TOKENS);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(first.agents.len(), 2);
    assert_eq!(first.api.len(), 2);

    let again = load_or_generate_tokens(&args, &["branch-1", "hub"]).unwrap();
    assert_eq!(
        again, first,
        "a restart keeps the tokens agents already have"
    );

    let more = load_or_generate_tokens(&args, &["branch-1", "hub", "branch-2"]).unwrap();
    assert_eq!(more.agents.len(), 3);
    assert_eq!(
        more.agents[..2],
        first.agents[..],
        "existing tokens unchanged"
    );
    assert_eq!(TokensFile::load(&path).unwrap(), more);
}

#[test]
fn a_tokens_file_others_can_read_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.yaml");
    TokensFile::generate(["branch-1"]).save(&tokens).unwrap();
    std::fs::set_permissions(&tokens, std::fs::Permissions::from_mode(0o640)).unwrap();
    let error = load_or_generate_tokens(&args(dir.path(), Some(&tokens)), &["branch-1"])
        .unwrap_err()
        .to_string();
    assert!(error.contains("chmod 600"), "{error}");
}

#[tokio::test]
async fn a_bad_policy_stops_the_start_and_touches_no_state() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("policy.yaml"),
        "sites: []\nclasses: []\nbogus: 1\n",
    )
    .unwrap();
    let code = run(args(dir.path(), None)).await.unwrap();
    assert_eq!(code, std::process::ExitCode::from(2));
    assert!(
        !dir.path().join("state").exists(),
        "nothing written for a refused policy"
    );
}
