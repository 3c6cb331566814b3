//! The controller client: the agent's side of the session.
//!
//! ```text
//!   run() ── register ──▶ controller           (who we are, which lines, what runs now)
//!     │◀── SSE push stream ── rule-set / in-sync
//!     │      judge() ─ Apply ─▶ apply callback ─▶ ack applied | failed
//!     │              ─ AlreadyRunning ────────────▶ ack applied (no data-plane change)
//!     │              ─ Refuse (bad hash, wrong site, stale) ─▶ ack failed, keep last good
//!     │── reports (from a channel) ──▶ POST report
//!     └─ connection lost ─▶ backoff with jitter ─▶ register again with the running hash,
//!                           so an unchanged rule set is not pushed again
//! ```
//!
//! [`sse`] and [`verdict`] are pure; [`client`] is the thin I/O around them.

pub mod backoff;
pub mod client;
pub mod sse;
pub mod verdict;

pub use backoff::Backoff;
pub use client::{ApplyRuleSet, ClientConfig, ClientStatus, ControllerClient};
pub use verdict::{Verdict, judge};

#[cfg(test)]
mod tests;
