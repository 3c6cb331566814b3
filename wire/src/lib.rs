//! The agent <-> controller protocol.
//!
//! Plain serde types, versioned, with no I/O: line measurement reports and health events
//! that agents send up, per-class demand from the classifier, and the `RuleSet` the
//! controller pushes down (per-class routes with backups, HTB rates, DSCP), plus acks.
//! Every other wansteer crate may depend on this one; it depends on none of them.
#![forbid(unsafe_code)]

/// Protocol version carried in every message envelope; bump on incompatible change.
pub const PROTOCOL_VERSION: u32 = 1;

pub mod report;
pub mod ruleset;
pub mod session;
