//! The data plane: a `RuleSet` becomes nftables classification, per-class policy routing
//! and HTB shaping in the kernel, by reconciliation.
//!
//! The flow is pure until the last step: [`validate`] refuses a bad rule set, [`desired`]
//! compiles it (plus the set of lines seen down) into the kernel state wansteer wants,
//! [`nft`], [`routing`] and [`htb`] each diff one subsystem's listing against that and
//! produce the minimal changes, and [`reconcile::Dataplane`] applies them: nft through
//! the thin [`kernel`] layer (the `nft` tool, JSON), routes, ip rules and HTB over
//! rtnetlink ([`netlink`]), moved flows over ctnetlink ([`conntrack`]). [`failover`]
//! decides local fast failover and fail-back, [`moved`] which conntrack entries must go
//! when a class leaves a line, [`standalone`] turns a policy file into a rule set when no
//! controller is there.
//!
//! A connection that arrives over a WAN line has that line recorded in its conntrack
//! mark ([`LINE_MARK_MASK`]); its replies leave by the same line (a per-line table with
//! its default route), whatever the class's line is now — as mwan3 does.
//!
//! Everything installed is tagged so it can be adopted after a restart and purged by
//! `wansteer agent cleanup`: the nft table `inet wansteer`, ip rules, routes and
//! nexthop objects ([`nexthop`]: class routes point at one per line chain, so a
//! failover rewrites a nexthop, not every route) with protocol [`ROUTE_PROTOCOL`] in the priority range from [`RULE_PRIORITY_BASE`], and root
//! HTB qdiscs with handle [`HTB_MAJOR`]`:`.

pub mod cli;
pub mod conntrack;
pub mod desired;
pub mod failover;
pub mod htb;
pub mod kernel;
pub mod moved;
pub mod netlink;
pub mod nexthop;
pub mod nft;
pub mod reconcile;
pub mod routing;
pub mod standalone;
pub mod validate;

pub use desired::{DesiredState, compile};
pub use failover::{FailoverState, LineEvent};
pub use kernel::Kernel;
pub use reconcile::{ApplyReport, Dataplane, DataplaneError};
pub use validate::RuleSetError;

/// The nft table (family `inet`) that holds every wansteer rule.
pub const NFT_TABLE: &str = "wansteer";
/// The bits of the packet and conntrack mark that carry the class (marks 1..=255).
pub const CLASS_MARK_MASK: u32 = 0xff;
/// ip rules of class `mark` sit at `RULE_PRIORITY_BASE + mark` (range 21001..=21255).
pub const RULE_PRIORITY_BASE: u32 = 21000;
/// Class `mark` routes in table `ROUTE_TABLE_BASE + mark`.
pub const ROUTE_TABLE_BASE: u32 = 21000;
/// The bits of the conntrack (and, on replies, packet) mark that carry the line a
/// connection arrived by: line `n` (its position in the rule set, from 1) is `n << 8`.
pub const LINE_MARK_MASK: u32 = 0xff00;
pub const LINE_MARK_SHIFT: u32 = 8;
/// Replies pinned to arrival line `n` look up table `LINE_TABLE_BASE + n` (its default
/// route) by an ip rule at `LINE_RULE_PRIORITY_BASE + n`, ahead of the class rules.
pub const LINE_TABLE_BASE: u32 = 21256;
pub const LINE_RULE_PRIORITY_BASE: u32 = 20744;
/// Route and rule protocol number that marks an entry as wansteer's.
pub const ROUTE_PROTOCOL: u8 = 201;
/// Major handle of the root HTB qdisc wansteer puts on each WAN egress ("WS").
pub const HTB_MAJOR: u16 = 0x5753;
/// Minor of the HTB class under the root that holds the whole line rate; class marks
/// (≤ 0xff) never collide with it.
pub const HTB_LINE_MINOR: u16 = 0x100;
