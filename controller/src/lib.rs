//! The central controller.
//!
//! Holds the link graph of sites and WAN lines with live measurements, solves path
//! selection per traffic class against each class's SLA, compiles per-agent `RuleSet`s and
//! pushes them, and serves the REST API, Prometheus metrics, the audit log and the
//! dashboard. Solver and rule compiler are pure code.
#![forbid(unsafe_code)]

pub mod cli;
pub mod compile;
pub mod graph;
pub mod lp;
pub mod plan;
pub mod solver;
