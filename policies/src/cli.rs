//! `wansteer policy` command line: `check` prints every problem of one or more policy
//! files; `diff` says what changing one policy into another would do.
//!
//! The work is done by plain functions returning the text to print and the exit status, so
//! the output is tested without running a process.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde::Serialize;

use crate::check::{CheckOptions, Diagnostic, Severity, check_file_with};
use crate::diff;

/// Check policy files and show what a change would do.
#[derive(Debug, clap::Args)]
pub struct PolicyArgs {
    #[command(subcommand)]
    pub command: PolicyCommand,
}

/// The `wansteer policy` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum PolicyCommand {
    /// Check policy files: every problem with file:line:column, what is wrong and a hint.
    /// Exits 1 if any file has errors (warnings alone do not fail).
    Check {
        /// Policy files to check.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Print the findings as JSON (one object with every file's diagnostics).
        #[arg(long)]
        json: bool,
        /// Fail on warnings too.
        #[arg(long)]
        deny_warnings: bool,
    },
    /// Show what replacing OLD by NEW would change: classes, SLAs, steering, lines, shares,
    /// timers. Both files must pass `check`.
    Diff {
        #[arg(value_name = "OLD")]
        old: PathBuf,
        #[arg(value_name = "NEW")]
        new: PathBuf,
        /// Print the changes as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs the subcommand. `options` carries what the binary knows beyond the files, such as
/// the classifier's application catalogue (this crate does not depend on the classifier).
pub async fn run(args: PolicyArgs, options: &CheckOptions) -> anyhow::Result<ExitCode> {
    let (text, status) = match args.command {
        PolicyCommand::Check {
            files,
            json,
            deny_warnings,
        } => check_command(&files, json, deny_warnings, options),
        PolicyCommand::Diff { old, new, json } => diff_command(&old, &new, json, options),
    };
    print!("{text}");
    Ok(ExitCode::from(status))
}

#[derive(Serialize)]
struct FileReport<'a> {
    file: String,
    ok: bool,
    diagnostics: &'a [Diagnostic],
}

#[derive(Serialize)]
struct CheckReport<'a> {
    ok: bool,
    errors: usize,
    warnings: usize,
    files: Vec<FileReport<'a>>,
}

fn plural(count: usize, word: &str) -> String {
    format!("{count} {word}{}", if count == 1 { "" } else { "s" })
}

/// `wansteer policy check`: the text to print and the exit status (0 ok, 1 errors).
pub fn check_command(
    files: &[PathBuf],
    json: bool,
    deny_warnings: bool,
    options: &CheckOptions,
) -> (String, u8) {
    let results: Vec<(String, Vec<Diagnostic>)> = files
        .iter()
        .map(|path| {
            let diagnostics = match check_file_with(path, options) {
                Ok(checked) => checked.warnings,
                Err(diagnostics) => diagnostics,
            };
            (path.display().to_string(), diagnostics)
        })
        .collect();
    let count = |severity| {
        results
            .iter()
            .flat_map(|(_, diagnostics)| diagnostics)
            .filter(|d| d.severity == severity)
            .count()
    };
    let (errors, warnings) = (count(Severity::Error), count(Severity::Warning));
    let failed = errors > 0 || (deny_warnings && warnings > 0);
    let status = u8::from(failed);
    if json {
        let report = CheckReport {
            ok: !failed,
            errors,
            warnings,
            files: results
                .iter()
                .map(|(file, diagnostics)| FileReport {
                    file: file.clone(),
                    ok: !diagnostics.iter().any(|d| {
                        d.severity == Severity::Error
                            || (deny_warnings && d.severity == Severity::Warning)
                    }),
                    diagnostics,
                })
                .collect(),
        };
        let text = serde_json::to_string_pretty(&report).unwrap_or_default() + "\n";
        return (text, status);
    }
    let mut out = String::new();
    for (_, diagnostics) in &results {
        for diagnostic in diagnostics {
            out.push_str(&format!("{diagnostic}\n"));
        }
    }
    let bad_files = results
        .iter()
        .filter(|(_, diagnostics)| diagnostics.iter().any(|d| d.severity == Severity::Error))
        .count();
    let summary = if errors > 0 {
        format!(
            "{}, {} in {} of {}: policy refused",
            plural(errors, "error"),
            plural(warnings, "warning"),
            bad_files,
            plural(results.len(), "file")
        )
    } else {
        format!(
            "{} ok, {}",
            plural(results.len(), "file"),
            plural(warnings, "warning")
        )
    };
    out.push_str(&summary);
    out.push('\n');
    (out, status)
}

/// `wansteer policy diff`: the text to print and the exit status (0 shown, 1 a file is bad).
pub fn diff_command(old: &Path, new: &Path, json: bool, options: &CheckOptions) -> (String, u8) {
    let mut out = String::new();
    let mut policies = Vec::new();
    for path in [old, new] {
        match check_file_with(path, options) {
            Ok(checked) => policies.push(checked.policy),
            Err(diagnostics) => {
                for diagnostic in diagnostics {
                    out.push_str(&format!("{diagnostic}\n"));
                }
                out.push_str(&format!(
                    "{} does not pass `wansteer policy check`; fix it before comparing\n",
                    path.display()
                ));
            }
        }
    }
    let [before, after] = policies.as_slice() else {
        return (out, 1);
    };
    let changes = diff::diff(before, after);
    if json {
        let text = serde_json::to_string_pretty(&changes).unwrap_or_default() + "\n";
        return (text, 0);
    }
    out.push_str(&format!("{} → {}\n", old.display(), new.display()));
    out.push_str(&diff::render(&changes));
    (out, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    const GOOD: &str = "sites:\n  - name: s\n    kind: branch\n    lines:\n      - { name: mpls, transport: mpls, interface: wan0, up: 10mbit, down: 10mbit }\nclasses:\n  - name: default\n    priority: 1\n";

    #[test]
    fn check_fails_only_when_some_file_has_errors() {
        let dir = tempfile::tempdir().unwrap();
        let good = write(dir.path(), "good.yaml", GOOD);
        let bad = write(
            dir.path(),
            "bad.yaml",
            &GOOD.replace("priority: 1", "priorty: 1"),
        );
        let (text, status) = check_command(
            std::slice::from_ref(&good),
            false,
            false,
            &CheckOptions::default(),
        );
        assert_eq!((text.as_str(), status), ("1 file ok, 0 warnings\n", 0));
        let (text, status) = check_command(&[good, bad], false, false, &CheckOptions::default());
        assert_eq!(status, 1);
        assert!(
            text.contains("bad.yaml:8:5: error: unknown key `priorty` in a class"),
            "{text}"
        );
        assert!(
            text.ends_with("1 error, 0 warnings in 1 of 2 files: policy refused\n"),
            "{text}"
        );
    }

    #[test]
    fn json_output_lists_every_file_and_diagnostic() {
        let dir = tempfile::tempdir().unwrap();
        let bad = write(
            dir.path(),
            "bad.yaml",
            &GOOD.replace("10mbit, down", "10 furlongs, down"),
        );
        let (text, status) = check_command(&[bad], true, false, &CheckOptions::default());
        assert_eq!(status, 1);
        let report: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(report["ok"], false);
        assert_eq!(report["errors"], 1);
        let diagnostic = &report["files"][0]["diagnostics"][0];
        assert_eq!(diagnostic["line"], 5);
        assert_eq!(diagnostic["severity"], "error");
        assert!(diagnostic["hint"].as_str().unwrap().contains("50mbit"));
    }

    #[test]
    fn warnings_fail_only_when_denied() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "w.yaml",
            &format!("{GOOD}timers: {{ hold_down: 0s }}\n"),
        );
        assert_eq!(
            check_command(
                std::slice::from_ref(&path),
                false,
                false,
                &CheckOptions::default()
            )
            .1,
            0
        );
        assert_eq!(
            check_command(&[path], false, true, &CheckOptions::default()).1,
            1
        );
    }

    #[test]
    fn diff_refuses_a_policy_that_does_not_check() {
        let dir = tempfile::tempdir().unwrap();
        let old = write(dir.path(), "old.yaml", GOOD);
        let new = write(
            dir.path(),
            "new.yaml",
            &GOOD.replace("interface: wan0", "interface: wan0, cost: -1"),
        );
        let (text, status) = diff_command(&old, &new, false, &CheckOptions::default());
        assert_eq!(status, 1);
        assert!(text.contains("negative cost"), "{text}");
        assert!(text.contains("does not pass"), "{text}");
        let same = diff_command(&old, &old, false, &CheckOptions::default());
        assert!(same.0.ends_with("no changes\n"), "{}", same.0);
        assert_eq!(same.1, 0);
    }

    #[test]
    fn check_refuses_an_app_outside_the_catalogue_it_is_given() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "{GOOD}  - name: voice\n    priority: 2\n    dscp: EF\n    match: [{{ apps: [temas] }}]\n"
        );
        let path = write(dir.path(), "apps.yaml", &text);
        let catalogue = CheckOptions {
            known_apps: Some(vec!["teams".into(), "zoom".into()]),
        };
        assert_eq!(
            check_command(
                std::slice::from_ref(&path),
                false,
                false,
                &CheckOptions::default()
            )
            .1,
            0,
            "without a catalogue only the syntax of app names is checked"
        );
        let (output, status) = check_command(&[path], false, false, &catalogue);
        assert_eq!(status, 1, "{output}");
        assert!(output.contains("apps.yaml:12:"), "{output}");
        assert!(
            output.contains("teams"),
            "a did-you-mean names the close app: {output}"
        );
    }
}
