//! The path solver's pure parts.
//!
//! - [`alloc`]: capacity allocation over candidate paths (priority levels, preference,
//!   fair fill, repair) — the part the LP reference judges;
//! - [`balance`]: penalty balancing of one short level with the higher levels' flows
//!   (the fractional optimum the LP finds, approached on plain numbers), used by `alloc`;
//! - [`sla`]: path quality against a class's SLA, and the numbers that explain a verdict;
//! - [`instances`]: generated SD-WAN instances and the public topologies
//!   (`shared/topologies`) turned into solver problems, for tests and benchmarks.
//!
//! The SD-WAN specifics (which lines form paths, hysteresis, reasons) live in
//! [`crate::plan`], which feeds `alloc`.

pub mod alloc;
pub mod balance;
pub mod instances;
pub mod sla;
