//! Flow classification: policy matches and DPI over a bidirectional flow table.
//!
//! Frames come from a [`capture`] source (pcap/pcapng replay, or live through pnet), are
//! decoded by [`packet`], counted in the [`flow`] table and inspected by [`dpi`] until the
//! flow is known. The [`engine`] turns what DPI found into an application and class using
//! the data-driven [`catalogue`] (and, when given, the operator's [`policy`]), and emits a
//! [`verdict::Verdict`] per flow for the data plane plus per-class statistics for the
//! controller. Everything but the capture sources is pure and runs on plain data.

pub mod capture;
pub mod catalogue;
pub mod cli;
pub mod dpi;
pub mod engine;
pub mod flow;
pub mod packet;
pub mod policy;
pub mod verdict;

pub use catalogue::Catalogue;
pub use engine::{Classifier, Config, FlowRecord};
pub use verdict::{ClassCounters, ClassStats, FlowTuple, Verdict};
