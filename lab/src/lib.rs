//! The network-namespace lab.
//!
//! Builds topologies of namespaces and veths, runs a userspace WAN emulator (delay, jitter,
//! loss, rate, outage) in each line's namespace, generates traffic that reports what a user
//! would feel, runs scenario files with expectations, and writes reports with plots.

pub mod cli;
