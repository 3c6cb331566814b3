//! The central controller.
//!
//! Holds the link graph of sites and WAN lines with live measurements, solves path
//! selection per traffic class against each class's SLA, compiles per-agent `RuleSet`s and
//! pushes them, and serves the REST API, Prometheus metrics, the audit log and the
//! dashboard. Solver and rule compiler are pure code.
//!
//! The service side: [`service::Controller`] owns live state and drives a planner through
//! [`planning::Planning`]; [`api`] serves it over HTTP with [`auth`] tokens; [`push`] streams
//! rule sets to agents; [`store`] keeps state across restarts; [`audit`] and [`metrics`]
//! record what happened.
#![forbid(unsafe_code)]

pub mod api;
pub mod audit;
pub mod auth;
pub mod cli;
pub mod compile;
pub mod dashboard;
pub mod drift;
pub mod graph;
pub mod lp;
pub mod metrics;
pub mod openapi;
pub mod plan;
pub mod planning;
pub mod push;
pub mod service;
pub mod solver;
pub mod solver_planning;
pub mod store;
