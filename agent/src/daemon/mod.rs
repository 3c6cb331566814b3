//! The composed agent: probes, health, steering and the data plane in one daemon.
//!
//! ```text
//!  per WAN line: STAMP sender (bound to the line's interface) ──► far agent's reflector
//!        │ LineReport (summaries, health transitions per SLA class)
//!        ▼
//!  HealthBoard ──► Down/up of a line ──► Dataplane::on_line_event (local fast failover)
//!        └──────► Steering::decide ──► moved class routes ──► Dataplane::apply
//!  STAMP reflector on UDP 862 answers the far agents' probes
//! ```
//!
//! Standalone (`wansteer agent --policy FILE --site NAME [--netns NS]`): the policy is
//! compiled into the site's rule set ([`crate::dataplane::standalone`]), every line is
//! probed, a dead line is routed around at once and a class whose SLA breaks on its line
//! moves to the next line in its order that meets it ([`steering`]). Every move is one
//! structured line on stdout with its reason (JSON with `--json`). The installed rules stay
//! when the daemon exits, so a restart does not disturb traffic.
//!
//! With a controller (`wansteer agent --controller URL --site NAME --token-file FILE
//! --policy FILE`): the policy only gives the site's lines and probe settings; the
//! controller's pushed rule sets decide routes and QoS, the agent reports its lines every
//! second and still fails over locally on a dead line ([`controller_mode`]).

pub mod dpi;
pub mod events;
pub mod metrics;
pub mod plan;
pub mod probe_thread;
pub mod steering;

pub mod controller_mode;
pub mod demand;
mod netns;
pub mod reflector;
mod run;

pub use run::{DaemonArgs, run};
