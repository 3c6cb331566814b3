//! Line measurement.
//!
//! STAMP-style (RFC 8762) test packets sent per WAN line to a reflector in the far agent;
//! pure estimators over their timestamps (RTT percentiles, RFC 3550 and RFC 5481 jitter,
//! loss with confidence bounds over short and long windows) and the `LineHealth` state
//! machine (fail fast, recover slowly, dampen flaps). Sockets live only in thin tokio tasks.
#![forbid(unsafe_code)]

pub mod cli;
