//! Line measurement.
//!
//! STAMP-style (RFC 8762) test packets sent per WAN line to a reflector in the far agent;
//! pure estimators over their timestamps (RTT percentiles, RFC 3550 and RFC 5481 jitter,
//! loss with confidence bounds over short and long windows) and the `LineHealth` state
//! machine (fail fast, recover slowly, dampen flaps). Sockets live only in thin tokio tasks.
//!
//! Main types: [`packet::SenderPacket`] / [`packet::ReflectorPacket`] (wire codec),
//! [`tracker::ProbeTracker`] (probes and replies → [`tracker::Evidence`]),
//! [`health::LineHealth`] (evidence → transitions, judged against a [`health::Sla`]),
//! [`monitor::LineMonitor`] (the sans-IO core of one line's prober) and
//! [`tasks::spawn_sender`] / [`tasks::run_reflector`] (the tokio driver the agent embeds).
//!
//! Embedding one line's prober (the handle stops it when dropped):
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use wansteer_probes::net::SocketOptions;
//! use wansteer_probes::{MonitorConfig, SenderConfig, Sla, spawn_sender};
//!
//! let mut monitor = MonitorConfig::new("mpls");
//! monitor.slas = vec![Sla::loss_only("voice", 0.01), Sla::loss_only("bulk", 0.03)];
//! let mut prober = spawn_sender(SenderConfig {
//!     monitor,
//!     reflector: "192.0.2.1:862".parse().unwrap(),
//!     socket: SocketOptions { mark: Some(0x100), ..SocketOptions::default() },
//!     count: None,
//! })?;
//! while let Some(report) = prober.reports.recv().await {
//!     // wire::report::LineReport: a summary per second, a transition the moment it happens.
//!     println!("{}", serde_json::to_string(&report).unwrap());
//! }
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]

pub mod cli;
pub mod health;
pub mod monitor;
pub mod net;
pub mod packet;
pub mod reflector;
pub mod sim;
pub mod stats;
pub mod tasks;
pub mod tracker;

pub use health::{Dampening, HealthConfig, LineHealth, Sla};
pub use monitor::{LineMonitor, MonitorConfig};
pub use tasks::{SenderConfig, SenderHandle, run_reflector, spawn_sender};
pub use tracker::{Evidence, TrackerConfig};
