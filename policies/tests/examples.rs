//! The example policies are what operators copy: each must pass `check` without a single
//! warning, and the bank example must catch the three classic mistakes at their places.

use std::fs;
use std::path::{Path, PathBuf};

use wansteer_policies::{Severity, check_file, check_source};

fn examples() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_example_passes_check_without_warnings() {
    let files = examples();
    assert!(files.len() >= 3, "{files:?}");
    for path in files {
        match check_file(&path) {
            Ok(checked) => assert!(
                checked.warnings.is_empty(),
                "{}: {:#?}",
                path.display(),
                checked.warnings
            ),
            Err(diagnostics) => {
                let text: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
                panic!("{} fails:\n{}", path.display(), text.join("\n"));
            }
        }
    }
}

/// 1-based line of the first line containing `needle`, and the column where it starts.
fn find(text: &str, needle: &str) -> (usize, usize) {
    text.lines()
        .enumerate()
        .find_map(|(index, line)| line.find(needle).map(|column| (index + 1, column + 1)))
        .unwrap_or_else(|| panic!("`{needle}` not in the text"))
}

#[test]
fn a_bank_copy_with_three_mistakes_gets_three_located_errors() {
    let bank = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/bank.yaml"))
        .unwrap();
    // A misspelt key, a class preferring a line no site has, a 130% share.
    let broken = bank
        .replacen("    dscp: AF41", "    dsp: AF41", 1)
        .replacen(
            "steering: { prefer: [mpls, internet] }\n    bandwidth: { guaranteed: 15%",
            "steering: { prefer: [mpls2, internet] }\n    bandwidth: { guaranteed: 15%",
            1,
        )
        .replacen(
            "guaranteed: 10%, ceiling: 30%",
            "guaranteed: 130%, ceiling: 30%",
            1,
        );
    assert_eq!(broken.matches("dsp: AF41").count(), 1);
    assert_eq!(broken.matches("mpls2").count(), 1);
    assert_eq!(broken.matches("130%").count(), 1);

    let diagnostics = check_source("bank.yaml", &broken).unwrap_err();
    let shown: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
    assert_eq!(diagnostics.len(), 3, "{}", shown.join("\n"));
    assert!(diagnostics.iter().all(|d| d.severity == Severity::Error));

    let share = find(&broken, "130%");
    let missing_line = find(&broken, "mpls2");
    let typo = find(&broken, "dsp:");
    assert_eq!((diagnostics[0].line, diagnostics[0].column), share);
    assert_eq!((diagnostics[1].line, diagnostics[1].column), missing_line);
    assert_eq!((diagnostics[2].line, diagnostics[2].column), typo);
    assert!(shown[0].starts_with(&format!("bank.yaml:{}:{}: error: ", share.0, share.1)));
    assert!(shown[0].contains("outside 0%..100%"), "{}", shown[0]);
    assert!(
        shown[1].contains("prefers line `mpls2`, which no site has"),
        "{}",
        shown[1]
    );
    assert!(shown[1].contains("did you mean `mpls`?"), "{}", shown[1]);
    assert!(shown[2].contains("unknown key `dsp`"), "{}", shown[2]);
    assert!(shown[2].contains("did you mean `dscp`?"), "{}", shown[2]);
}
