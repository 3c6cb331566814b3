//! The desired state the controller pushes to one agent: which class is which, how it is
//! matched and marked, where each class goes per destination (with a precomputed backup
//! for local failover), and how each WAN line's egress is shared between classes.
//!
//! A `RuleSet` is complete, not a delta: the agent reconciles the kernel against it. It is
//! versioned and content-hashed so agents ack exactly what they applied and a reconnecting
//! agent that already runs the current hash needs no re-push.

use std::net::{IpAddr, Ipv6Addr};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Everything one agent should have installed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleSet {
    /// The site this rule set is for.
    pub site: String,
    /// Monotonic per site; a higher version supersedes a lower one.
    pub version: u64,
    /// Hex SHA-256 of the content (everything but `version` and `hash`), set by [`RuleSet::seal`].
    pub hash: String,
    /// Traffic classes in match order.
    pub classes: Vec<ClassSpec>,
    /// The class unmatched traffic gets.
    pub default_class: String,
    /// The site's WAN lines with their egress shaping.
    pub lines: Vec<LineSpec>,
    /// Per class and destination: the line to use now, and the backups in order.
    pub routes: Vec<ClassRoute>,
}

/// One traffic class as the data plane needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassSpec {
    pub name: String,
    /// Packet/conntrack mark value for the class (1..=255), also the HTB minor id.
    pub mark: u32,
    /// Strict priority, 1 is served first.
    pub priority: u8,
    /// DSCP set on the class's packets at the edge.
    pub dscp: u8,
    /// Static matches the data plane compiles into nft rules (any one matches).
    pub matches: Vec<StaticMatch>,
    /// Application names the classifier maps onto this class.
    pub apps: Vec<String>,
    /// Domain suffixes the classifier maps onto this class.
    pub domains: Vec<String>,
}

/// A match the kernel can do alone: every non-empty field must match.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StaticMatch {
    /// Either end of the flow inside one of these prefixes.
    pub prefixes: Vec<IpNet>,
    /// Destination port ranges, inclusive.
    pub ports: Vec<PortSpan>,
    /// IP protocol numbers.
    pub protocols: Vec<u8>,
    /// DSCP values already on the packet.
    pub dscp: Vec<u8>,
}

/// An inclusive port range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PortSpan {
    pub first: u16,
    pub last: u16,
}

/// One WAN line of the site and how its egress is shared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineSpec {
    pub name: String,
    pub interface: String,
    pub gateway: Option<IpAddr>,
    pub gateway6: Option<Ipv6Addr>,
    /// Egress capacity the HTB root is set to, bits per second.
    pub rate_bps: u64,
    /// Per-class HTB rates on this line.
    pub shares: Vec<ClassShare>,
}

/// A class's HTB class on one line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassShare {
    pub class: String,
    /// Guaranteed rate, bits per second.
    pub rate_bps: u64,
    /// Ceiling, bits per second.
    pub ceil_bps: u64,
}

/// Where one class goes for one destination prefix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassRoute {
    pub class: String,
    pub destination: IpNet,
    /// The line carrying the class now.
    pub primary: String,
    /// Lines to fail over to locally, in order, when the primary goes down.
    pub backups: Vec<String>,
    /// Why this line was chosen, in words ("loss 0.1% ≤ 1%, latency 12 ms ≤ 150 ms").
    pub reason: String,
}

impl RuleSet {
    /// Hex SHA-256 over what the agent installs, independent of `version`, `hash` and the
    /// routes' `reason` texts: reasons quote live measurements, and a new wording of why a
    /// class stays where it is must not become a new rule set pushed to every agent.
    pub fn content_hash(&self) -> String {
        let routes: Vec<_> = self
            .routes
            .iter()
            .map(|route| {
                (
                    &route.class,
                    &route.destination,
                    &route.primary,
                    &route.backups,
                )
            })
            .collect();
        let content = (
            &self.site,
            &self.classes,
            &self.default_class,
            &self.lines,
            &routes,
        );
        let bytes = serde_json::to_vec(&content).expect("rule set content always serialises");
        hex::encode(Sha256::digest(&bytes))
    }

    /// Sets `hash` from the content; call after building or changing a rule set.
    pub fn seal(mut self) -> Self {
        self.hash = self.content_hash();
        self
    }

    /// True when `hash` matches the content (a push was not corrupted or tampered with).
    pub fn is_sealed(&self) -> bool {
        self.hash == self.content_hash()
    }

    pub fn class(&self, name: &str) -> Option<&ClassSpec> {
        self.classes.iter().find(|class| class.name == name)
    }

    pub fn line(&self, name: &str) -> Option<&LineSpec> {
        self.lines.iter().find(|line| line.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> RuleSet {
        RuleSet {
            site: "branch-1".into(),
            version: 1,
            hash: String::new(),
            classes: vec![ClassSpec {
                name: "voice".into(),
                mark: 1,
                priority: 1,
                dscp: 46,
                matches: vec![StaticMatch {
                    protocols: vec![17],
                    ports: vec![PortSpan {
                        first: 16384,
                        last: 32767,
                    }],
                    ..StaticMatch::default()
                }],
                apps: vec!["teams".into()],
                domains: vec![],
            }],
            default_class: "voice".into(),
            lines: vec![LineSpec {
                name: "mpls".into(),
                interface: "wan0".into(),
                gateway: Some("192.0.2.1".parse().unwrap()),
                gateway6: None,
                rate_bps: 50_000_000,
                shares: vec![ClassShare {
                    class: "voice".into(),
                    rate_bps: 5_000_000,
                    ceil_bps: 15_000_000,
                }],
            }],
            routes: vec![ClassRoute {
                class: "voice".into(),
                destination: "10.0.0.0/16".parse().unwrap(),
                primary: "mpls".into(),
                backups: vec![],
                reason: "only line".into(),
            }],
        }
    }

    #[test]
    fn hash_covers_content_not_version() {
        let sealed = sample().seal();
        assert!(sealed.is_sealed());
        let mut bumped = sealed.clone();
        bumped.version = 2;
        assert!(
            bumped.is_sealed(),
            "a new version of the same content keeps its hash"
        );
        let mut moved = sealed.clone();
        moved.routes[0].primary = "lte".into();
        assert!(!moved.is_sealed(), "changing a route must change the hash");
        let mut reworded = sealed.clone();
        reworded.routes[0].reason = "loss 0.1% ≤ 1%".into();
        assert!(
            reworded.is_sealed(),
            "a reason's wording is not a change to install"
        );
    }

    #[test]
    fn round_trips_through_json() {
        let sealed = sample().seal();
        let text = serde_json::to_string(&sealed).unwrap();
        let back: RuleSet = serde_json::from_str(&text).unwrap();
        assert_eq!(back, sealed);
        assert!(back.is_sealed());
    }
}
