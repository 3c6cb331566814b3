//! The data-plane options of `wansteer agent` parse as documented.

use clap::{CommandFactory, Parser};

#[derive(Debug, Parser)]
struct Agent {
    #[command(flatten)]
    args: wansteer_agent::cli::AgentArgs,
}

#[test]
fn the_command_line_is_consistent() {
    Agent::command().debug_assert();
}

#[test]
fn standalone_and_cleanup_options_parse() {
    Agent::try_parse_from(["agent", "--policy", "bank.yaml", "--site", "branch-1"]).unwrap();
    Agent::try_parse_from([
        "agent", "--policy", "p.yaml", "--site", "b", "--netns", "lab", "--once",
    ])
    .unwrap();
    Agent::try_parse_from(["agent", "cleanup"]).unwrap();
    Agent::try_parse_from(["agent", "cleanup", "--netns", "lab"]).unwrap();
    let error = Agent::try_parse_from(["agent", "--site", "branch-1"]).unwrap_err();
    assert!(error.to_string().contains("--policy"), "{error}");
}
