//! The wansteer policy language.
//!
//! One YAML file describes the sites and their WAN lines, the traffic classes with their
//! match rules, SLAs, steering preferences and bandwidth shares, and the timers. This crate
//! parses it, validates it with `file:line:column` diagnostics, and diffs two versions in
//! words an operator reads.
#![forbid(unsafe_code)]

pub mod check;
pub mod cli;
pub mod model;
pub mod units;

pub use check::{Checked, Diagnostic, Severity, check_file, check_source};
pub use model::Policy;
