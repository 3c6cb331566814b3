//! The userspace WAN emulator (this kernel has no netem).
//!
//! Each `wan-<line>` namespace is a layer-2 bump with two veths, `near` (towards the branch)
//! and `far` (towards the hub). The emulator reads every frame arriving on one with an
//! AF_PACKET socket, lets the pure [`model`] decide its fate (outage, rate queue, loss, delay,
//! jitter), and writes it out of the other at the decided time. Settings change at run time
//! through a unix control socket ([`control`]); counters are the ground truth the lab judges
//! measurements against.
//!
//! ```text
//!            ┌ rx thread (near) ─ model[up] ─ delivery queue[up] ─ tx thread ┐
//!  near veth ┤                                                               ├ far veth
//!            └ tx thread ─ delivery queue[down] ─ model[down] ─ rx thread (far) ┘
//! ```

pub mod control;
pub mod io;
pub mod loss;
pub mod model;

pub use control::{LineStatus, Request, Response, Target};
pub use io::Emulator;
pub use model::{Counters, Direction, Impairment, ImpairmentChange};
