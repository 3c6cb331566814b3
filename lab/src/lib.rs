//! The network-namespace lab.
//!
//! Builds topologies of namespaces and veths ([`topology`], [`lab`], [`netns`]), runs a
//! userspace WAN emulator (delay, jitter, loss, rate, outage) in each line's namespace
//! ([`emulator`]), and generates traffic that reports what a user would feel ([`voice`]).
//!
//! Unsafe code is limited to the few system calls std does not wrap: `setns` (enter a
//! namespace), AF_PACKET socket options, `prctl` timer slack, `kill`, `clock_gettime`.

pub mod accuracy;
pub mod apps;
pub mod bulk;
pub mod cli;
pub mod demo;
pub mod echo;
pub mod emulator;
pub mod lab;
pub mod netns;
pub mod repeat;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod sched;
pub mod steer;
pub mod topology;
pub mod units;
pub mod voice;
