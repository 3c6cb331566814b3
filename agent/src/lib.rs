//! The branch/hub agent.
//!
//! Classifies flows (policy matches and DPI), programs the data plane (nftables, policy
//! routing, HTB) from a `RuleSet` by reconciliation, fails over locally when a line dies,
//! and talks to the controller. Decision logic is pure; kernel and socket I/O are thin.

pub mod classifier;
pub mod cli;
pub mod control;
pub mod daemon;
pub mod dataplane;
