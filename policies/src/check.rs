//! Checking a policy file: every problem found, each with `file:line:column`, what is wrong
//! and a hint. This is the one entry point the CLI, the controller's API and the agent use,
//! so a policy refused in one place is refused the same way everywhere.

use std::fmt;
use std::path::Path;

use crate::model::Policy;
use crate::read;
use crate::schema;
use crate::source::Node;
use crate::source::{self, Pos};
use crate::validate;

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

/// What a check may know beyond the file itself.
#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    /// The classifier's application catalogue. When given, `apps` entries outside it are
    /// errors (with "did you mean"); when not, only their syntax is checked.
    pub known_apps: Option<Vec<String>>,
}

/// Checks policy text; `file` names it in diagnostics. On failure every error is returned
/// (with warnings after them), sorted by position.
pub fn check_source(file: &str, text: &str) -> Result<Checked, Vec<Diagnostic>> {
    check_source_with(file, text, &CheckOptions::default())
}

/// [`check_source`] with extra knowledge, such as the classifier's app catalogue.
///
/// Three passes: the YAML is parsed into a located tree (a syntax error stops here); the
/// tree is walked against the policy's shape, collecting every structural problem; the
/// policy is then read into the model (with placeholders where values were broken) and
/// the semantic rules of [`crate::validate`] run over it, so a misspelt key and a steering
/// entry naming a missing line are reported in one go.
pub fn check_source_with(
    file: &str,
    text: &str,
    options: &CheckOptions,
) -> Result<Checked, Vec<Diagnostic>> {
    let end = end_of(text);
    let diagnostic = |pos: Pos, severity, message: String, hint: Option<String>| {
        let pos = within(pos, end);
        Diagnostic {
            file: file.to_string(),
            line: pos.line,
            column: pos.column,
            severity,
            message,
            hint,
        }
    };
    let root = match source::parse(text) {
        Ok(Some(root)) if !root.is_null() => root,
        Ok(_) => {
            return Err(vec![diagnostic(
                Pos { line: 1, column: 1 },
                Severity::Error,
                "the policy is empty".into(),
                Some(
                    "a policy needs at least `sites:` and `classes:`; see policies/examples/"
                        .into(),
                ),
            )]);
        }
        Err(error) => {
            return Err(vec![diagnostic(
                error.pos,
                Severity::Error,
                error.message,
                Some("check indentation and that every `[`, `{` and quote is closed".into()),
            )]);
        }
    };
    let walked = schema::walk(&root);
    let mut diagnostics: Vec<Diagnostic> = walked
        .problems
        .iter()
        .map(|problem| {
            diagnostic(
                problem.pos,
                Severity::Error,
                problem.message.clone(),
                problem.hint.clone(),
            )
        })
        .collect();
    let policy = if diagnostics.is_empty() {
        // The file is structurally sound: read the model from the tree already parsed
        // (as `yaml_serde` would read the text). Should the two readers disagree, read the
        // text exactly as every other reader will, for its verdict and its location.
        match read::from_tree::<Policy>(&root).or_else(|_| yaml_serde::from_str::<Policy>(text)) {
            Ok(policy) => Some(policy),
            Err(error) => {
                let (line, column) = error
                    .location()
                    .map_or((1, 1), |location| (location.line(), location.column()));
                diagnostics.push(diagnostic(
                    Pos { line, column },
                    Severity::Error,
                    error.to_string(),
                    None,
                ));
                None
            }
        }
    } else {
        walked
            .value
            .clone()
            .and_then(|value| yaml_serde::from_value::<Policy>(value).ok())
    };
    if let Some(policy) = &policy {
        let places = Places(&root);
        for finding in validate::validate(policy, &places, options.known_apps.as_deref()) {
            let moot = std::iter::once(&finding.path)
                .chain(&finding.related)
                .any(|path| touches_broken(path, &walked.broken))
                || depends_on_broken_names(&finding, &walked.broken);
            if moot {
                continue;
            }
            diagnostics.push(diagnostic(
                places.pos(&finding.path),
                finding.severity,
                finding.message,
                finding.hint,
            ));
        }
    }
    diagnostics.sort_by_key(|d| (d.severity, d.line, d.column));
    diagnostics.dedup();
    let has_errors = diagnostics.iter().any(|d| d.severity == Severity::Error);
    match policy {
        Some(policy) if !has_errors => Ok(Checked {
            policy,
            warnings: diagnostics,
        }),
        _ => Err(diagnostics),
    }
}

/// Where the text ends: its last line and the column after its last character.
fn end_of(text: &str) -> Pos {
    let last_line = text.matches(['\n', '\r']).count() - text.matches("\r\n").count() + 1;
    let tail = text.rsplit(['\n', '\r']).next().unwrap_or("");
    Pos {
        line: last_line,
        column: tail.chars().count() + 1,
    }
}

/// The scanner may report a position one line past the end of the text; point at the end
/// instead, so every diagnostic names a place the operator can find.
fn within(pos: Pos, end: Pos) -> Pos {
    if pos.line <= end.line { pos } else { end }
}

/// Positions of paths, falling back to the nearest written ancestor for defaulted fields.
struct Places<'a>(&'a Node);

impl Places<'_> {
    fn pos(&self, path: &str) -> Pos {
        let mut path = path;
        loop {
            if let Some(place) = schema::locate(self.0, path) {
                return place.value;
            }
            match path.rfind(['.', '[']) {
                Some(cut) => path = &path[..cut],
                None => return self.0.pos,
            }
        }
    }
}

impl validate::Locate for Places<'_> {
    fn line_of(&self, path: &str) -> usize {
        self.pos(path).line
    }
}

/// True when `path` is, contains or lies inside a path whose value was broken.
fn touches_broken(path: &str, broken: &[String]) -> bool {
    let inside = |outer: &str, inner: &str| {
        inner == outer
            || inner
                .strip_prefix(outer)
                .is_some_and(|rest| rest.starts_with(['.', '[']))
    };
    broken
        .iter()
        .any(|broken| inside(broken, path) || inside(path, broken))
}

/// Findings that resolve names across the policy (steering entries against lines, the
/// default class against classes) are unreliable when a name they resolve against was
/// broken; they are held back until those are fixed.
fn depends_on_broken_names(finding: &validate::Finding, broken: &[String]) -> bool {
    let structural = |b: &String, list: &str| {
        b.starts_with(list)
            && (b == list || b.ends_with(']') || b.ends_with(".name") || b.ends_with(".lines"))
    };
    if finding.path.contains(".steering") {
        return broken
            .iter()
            .any(|b| structural(b, "sites") || b.ends_with(".transport"));
    }
    if finding.path == "default_class" || finding.path.ends_with(".name") {
        return broken.iter().any(|b| structural(b, "classes"));
    }
    false
}

/// Reads and checks a policy file.
pub fn check_file(path: &Path) -> Result<Checked, Vec<Diagnostic>> {
    check_file_with(path, &CheckOptions::default())
}

/// [`check_file`] with extra knowledge, such as the classifier's app catalogue.
pub fn check_file_with(path: &Path, options: &CheckOptions) -> Result<Checked, Vec<Diagnostic>> {
    let file = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => check_source_with(&file, &text, options),
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

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = "sites:
  - name: s
    kind: branch
    lines:
      - { name: mpls, transport: mpls, interface: wan0, up: 10mbit, down: 10mbit }
classes:
  - name: saas
    priority: 2
    dscp: AF21
    match: [{ apps: [microsoft-365, salesfroce] }]
  - name: default
    priority: 3
";

    #[test]
    fn apps_are_checked_against_a_catalogue_when_one_is_given() {
        assert!(check_source("p.yaml", POLICY).is_ok());
        let options = CheckOptions {
            known_apps: Some(vec![
                "microsoft-365".into(),
                "salesforce".into(),
                "teams".into(),
            ]),
        };
        let errors = check_source_with("p.yaml", POLICY, &options).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!((errors[0].line, errors[0].column), (10, 37));
        assert_eq!(
            errors[0].message,
            "the classifier knows no application `salesfroce`"
        );
        assert_eq!(
            errors[0].hint.as_deref(),
            Some("did you mean `salesforce`?")
        );
    }

    #[test]
    fn a_broken_value_does_not_hide_unrelated_cross_checks() {
        // The line's capacity is broken; the class still steers to a line no site has.
        let text = POLICY.replace("up: 10mbit", "up: lots").replace(
            "priority: 2",
            "priority: 2\n    steering: { prefer: [mpsl] }",
        );
        let errors = check_source("p.yaml", &text).unwrap_err();
        let messages: Vec<&str> = errors.iter().map(|d| d.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "`lots` is not a bit rate",
                "class `saas` prefers line `mpsl`, which no site has"
            ]
        );
    }

    #[test]
    fn preferring_a_line_that_never_rules_out_by_transport_is_an_error() {
        let text = POLICY.replace("name: mpls,", "name: mpls-a,").replace(
            "priority: 2",
            "priority: 2\n    steering: { prefer: [mpls-a], never: [mpls] }",
        );
        let errors = check_source("p.yaml", &text).unwrap_err();
        let messages: Vec<&str> = errors.iter().map(|d| d.message.as_str()).collect();
        assert!(
            messages.contains(
                &"class `saas` prefers `mpls-a`, but its `never` list rules out every such line"
            ),
            "{messages:?}"
        );
    }

    #[test]
    fn a_number_the_shape_walk_passes_but_yaml_reads_as_text_is_refused_where_written() {
        // `010` passes the walk's whole-number check, but YAML 1.2 reads it as text; the
        // second parse of the text used to find this. The model is now read from the tree,
        // which must refuse it the same way, with the same words and place.
        let text = POLICY.replace("priority: 2", "priority: 010");
        let errors = check_source("p.yaml", &text).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!((errors[0].line, errors[0].column), (8, 15));
        assert_eq!(
            errors[0].message,
            "classes[0].priority: invalid type: string \"010\", expected u8 at line 8 column 15"
        );
        assert_eq!(errors[0].severity, Severity::Error);
    }

    #[test]
    fn syntax_errors_point_inside_the_text() {
        let errors = check_source("p.yaml", "- this is a list\n- not a policy\n)").unwrap_err();
        assert_eq!((errors[0].line, errors[0].column), (3, 2), "{errors:?}");
    }

    #[test]
    fn a_document_with_nothing_in_it_is_empty() {
        for text in ["---", "--- ~\n", "...\n"] {
            let errors = check_source("p.yaml", text).unwrap_err();
            assert_eq!(errors[0].message, "the policy is empty", "{text:?}");
            assert_eq!((errors[0].line, errors[0].column), (1, 1), "{text:?}");
        }
    }

    #[test]
    fn findings_about_broken_names_are_held_back() {
        // With the only line's name broken, "prefers a line no site has" would be a guess.
        let text = POLICY.replace("name: mpls,", "name: [mpls],").replace(
            "priority: 2",
            "priority: 2\n    steering: { prefer: [mpls] }",
        );
        let errors = check_source("p.yaml", &text).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0]
                .message
                .contains("expected a name or text, found a list")
        );
    }
}
