//! Golden tests: every policy under `tests/golden/good` and `tests/golden/bad` is checked and
//! the exact diagnostics are compared with the `.expected` file beside it; every pair
//! `NAME.old.yaml`/`NAME.new.yaml` under `tests/golden/diff` is diffed and compared with
//! `NAME.expected`. Run with `WANSTEER_BLESS=1` to rewrite the expected files after an
//! intended change (then read the git diff).

use std::fs;
use std::path::{Path, PathBuf};

use wansteer_policies::CheckOptions;
use wansteer_policies::cli::{check_command, diff_command};

fn golden_dir(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(kind)
}

fn bless() -> bool {
    std::env::var_os("WANSTEER_BLESS").is_some_and(|value| value != "0")
}

/// Compares `actual` with the file, or rewrites the file when blessing. Returns a failure
/// description instead of panicking so every mismatch is listed in one run.
fn compare(expected_path: &Path, actual: &str) -> Option<String> {
    if bless() {
        fs::write(expected_path, actual).unwrap();
        return None;
    }
    let expected = fs::read_to_string(expected_path).unwrap_or_else(|_| {
        panic!(
            "{} is missing; run with WANSTEER_BLESS=1 to create it",
            expected_path.display()
        )
    });
    (expected != actual).then(|| {
        format!(
            "{} differs:\n--- expected\n{expected}\n--- actual\n{actual}",
            expected_path.display()
        )
    })
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    files
}

/// Checks each file from the crate directory so the file names in the output are stable.
fn check_output(path: &Path) -> (String, u8) {
    let relative = path
        .strip_prefix(env!("CARGO_MANIFEST_DIR"))
        .unwrap()
        .to_path_buf();
    std::env::set_current_dir(env!("CARGO_MANIFEST_DIR")).unwrap();
    check_command(&[relative], false, false, &CheckOptions::default())
}

fn run_checks(kind: &str, want_status: u8) {
    let mut failures = Vec::new();
    let files = yaml_files(&golden_dir(kind));
    assert!(!files.is_empty(), "no golden files in {kind}");
    for path in files {
        let (output, status) = check_output(&path);
        if status != want_status {
            failures.push(format!(
                "{}: exit status {status}, want {want_status}\n{output}",
                path.display()
            ));
        }
        if let Some(failure) = compare(&path.with_extension("expected"), &output) {
            failures.push(failure);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn good_policies_pass_with_the_expected_warnings() {
    run_checks("good", 0);
}

#[test]
fn bad_policies_fail_with_the_expected_diagnostics() {
    run_checks("bad", 1);
}

#[test]
fn diffs_read_as_expected() {
    let dir = golden_dir("diff");
    let mut failures = Vec::new();
    let olds: Vec<PathBuf> = yaml_files(&dir)
        .into_iter()
        .filter(|path| path.to_string_lossy().ends_with(".old.yaml"))
        .collect();
    assert!(!olds.is_empty(), "no diff pairs");
    std::env::set_current_dir(env!("CARGO_MANIFEST_DIR")).unwrap();
    for old in olds {
        let stem = old
            .to_string_lossy()
            .trim_end_matches(".old.yaml")
            .to_string();
        let new = PathBuf::from(format!("{stem}.new.yaml"));
        let relative = |path: &Path| {
            path.strip_prefix(env!("CARGO_MANIFEST_DIR"))
                .unwrap()
                .to_path_buf()
        };
        let (output, status) = diff_command(
            &relative(&old),
            &relative(&new),
            false,
            &CheckOptions::default(),
        );
        if status != 0 {
            failures.push(format!("{stem}: exit status {status}\n{output}"));
        }
        if let Some(failure) = compare(Path::new(&format!("{stem}.expected")), &output) {
            failures.push(failure);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
