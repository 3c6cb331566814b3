//! Flow classification: policy matches and DPI over a bidirectional flow table.

pub mod cli;
