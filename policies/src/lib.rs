//! The wansteer policy language.
//!
//! One YAML file describes the sites and their WAN lines, the traffic classes with their
//! match rules, SLAs, steering preferences and bandwidth shares, and the timers. This crate
//! parses it ([`model`], [`units`]), validates it with `file:line:column` diagnostics
//! ([`check`]: a located YAML tree in [`source`], the shape walk in [`schema`], the model
//! read from that same tree by [`read`], the semantic rules in [`validate`]), and diffs two
//! versions in words an operator reads ([`diff`]).
#![forbid(unsafe_code)]

pub mod check;
pub mod classes;
pub mod cli;
pub mod diff;
pub mod model;
pub mod read;
pub mod schema;
pub mod source;
mod suggest;
pub mod units;
pub mod validate;

pub use check::{
    CheckOptions, Checked, Diagnostic, Severity, check_file, check_file_with, check_source,
    check_source_with,
};
pub use model::Policy;
