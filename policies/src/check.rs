//! Checking a policy file: every problem found, each with `file:line:column`, what is wrong
//! and a hint. This is the one entry point the CLI, the controller's API and the agent use,
//! so a policy refused in one place is refused the same way everywhere.

use std::fmt;
use std::path::Path;

use crate::model::Policy;

/// How serious a finding is: errors refuse the policy, warnings only inform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One finding, located in the source text (1-based line and column).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Diagnostic {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub severity: Severity,
    pub message: String,
    pub hint: Option<String>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let severity = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(
            f,
            "{}:{}:{}: {severity}: {}",
            self.file, self.line, self.column, self.message
        )?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

/// A policy that passed: the parsed policy and any warnings about it.
#[derive(Debug, Clone)]
pub struct Checked {
    pub policy: Policy,
    pub warnings: Vec<Diagnostic>,
}

/// Checks policy text; `file` names it in diagnostics. On failure every error is returned
/// (with warnings after them), sorted by position.
pub fn check_source(file: &str, text: &str) -> Result<Checked, Vec<Diagnostic>> {
    match yaml_serde::from_str::<Policy>(text) {
        Ok(policy) => Ok(Checked {
            policy,
            warnings: Vec::new(),
        }),
        Err(error) => {
            let (line, column) = error
                .location()
                .map_or((1, 1), |location| (location.line(), location.column()));
            Err(vec![Diagnostic {
                file: file.to_string(),
                line,
                column,
                severity: Severity::Error,
                message: error.to_string(),
                hint: None,
            }])
        }
    }
}

/// Reads and checks a policy file.
pub fn check_file(path: &Path) -> Result<Checked, Vec<Diagnostic>> {
    let file = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => check_source(&file, &text),
        Err(error) => Err(vec![Diagnostic {
            file,
            line: 1,
            column: 1,
            severity: Severity::Error,
            message: format!("cannot read the policy: {error}"),
            hint: None,
        }]),
    }
}
