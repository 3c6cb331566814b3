//! Standalone mode: no controller, so the agent compiles the policy into a rule set for
//! its own site — static per-class line preference (steering `prefer`, then each line's
//! own preference, never the `never` lines), HTB shares from the policy's percentages,
//! and routes to every other site's LAN with the rest of the allowed lines as backups.

use ipnet::IpNet;
use wansteer_policies::model::{Line, Policy};
use wansteer_wire::ruleset::{ClassRoute, ClassShare, LineSpec, RuleSet};

/// Why a policy cannot be run standalone at a site.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StandaloneError {
    #[error("the policy has no site `{site}` (it has: {known})")]
    UnknownSite { site: String, known: String },
    #[error("the policy has more than 255 classes")]
    TooManyClasses,
    #[error("the policy names no default class")]
    NoDefaultClass,
    #[error("class `{class}` may use none of site `{site}`'s lines")]
    NoLine { class: String, site: String },
    #[error("no other site has a LAN prefix, so site `{0}` has nowhere to steer to")]
    NoDestination(String),
}

/// Compiles `policy` into the sealed rule set site `site` runs.
pub fn compile_policy(
    policy: &Policy,
    site: &str,
    version: u64,
) -> Result<RuleSet, StandaloneError> {
    let here = policy
        .site(site)
        .ok_or_else(|| StandaloneError::UnknownSite {
            site: site.to_string(),
            known: policy
                .sites
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })?;
    if policy.classes.len() > 255 {
        return Err(StandaloneError::TooManyClasses);
    }
    let default_class = policy
        .default_class()
        .ok_or(StandaloneError::NoDefaultClass)?
        .name
        .clone();

    let classes = wansteer_policies::classes::class_specs(policy);

    let lines: Vec<LineSpec> = here
        .lines
        .iter()
        .map(|line| {
            let rate = line.up.bps();
            LineSpec {
                name: line.name.clone(),
                interface: line.interface.clone(),
                gateway: line.gateway,
                gateway6: line.gateway6,
                rate_bps: rate,
                shares: policy
                    .classes
                    .iter()
                    .filter(|class| !class.steering.never.iter().any(|e| line.is_named_by(e)))
                    .map(|class| ClassShare {
                        class: class.name.clone(),
                        rate_bps: (rate as f64 * class.bandwidth.guaranteed.fraction()) as u64,
                        ceil_bps: (rate as f64 * class.bandwidth.ceiling.fraction()) as u64,
                    })
                    .collect(),
            }
        })
        .collect();

    let destinations: Vec<IpNet> = policy
        .sites
        .iter()
        .filter(|other| other.name != here.name)
        .flat_map(|other| other.lan.iter().copied())
        .collect();
    if destinations.is_empty() {
        return Err(StandaloneError::NoDestination(site.to_string()));
    }

    let mut routes = Vec::new();
    for class in &policy.classes {
        let order = line_order(&here.lines, &class.steering.prefer, &class.steering.never);
        if order.is_empty() {
            return Err(StandaloneError::NoLine {
                class: class.name.clone(),
                site: site.to_string(),
            });
        }
        for destination in &destinations {
            // Only lines that can route the destination's family: a gateway of that
            // family, or no gateway at all (point-to-point). A destination no line can
            // reach is left out.
            let usable: Vec<&Line> = order
                .iter()
                .copied()
                .filter(|line| carries(line, destination))
                .collect();
            let Some((primary, backups)) = usable.split_first() else {
                continue;
            };
            routes.push(ClassRoute {
                class: class.name.clone(),
                destination: *destination,
                primary: primary.name.clone(),
                backups: backups.iter().map(|line| line.name.clone()).collect(),
                reason: format!(
                    "standalone: static preference {}",
                    usable
                        .iter()
                        .map(|line| line.name.as_str())
                        .collect::<Vec<_>>()
                        .join(" > ")
                ),
            });
        }
    }

    Ok(RuleSet {
        site: site.to_string(),
        version,
        hash: String::new(),
        classes,
        default_class,
        lines,
        routes,
    }
    .seal())
}

/// Can `line` route `destination`'s address family?
fn carries(line: &Line, destination: &IpNet) -> bool {
    let (same, other) = match destination {
        IpNet::V4(_) => (line.gateway.is_some(), line.gateway6.is_some()),
        IpNet::V6(_) => (line.gateway6.is_some(), line.gateway.is_some()),
    };
    same || !other
}

/// The site's lines a class may use, best first: the class's `prefer` entries in order,
/// then the rest by the lines' own preference (then cost, then name); `never` lines out.
fn line_order<'a>(lines: &'a [Line], prefer: &[String], never: &[String]) -> Vec<&'a Line> {
    let mut allowed: Vec<&Line> = lines
        .iter()
        .filter(|line| !never.iter().any(|entry| line.is_named_by(entry)))
        .collect();
    allowed.sort_by(|a, b| {
        let rank = |line: &Line| {
            prefer
                .iter()
                .position(|entry| line.is_named_by(entry))
                .unwrap_or(usize::MAX)
        };
        rank(a)
            .cmp(&rank(b))
            .then(a.preference.cmp(&b.preference))
            .then(a.cost.total_cmp(&b.cost))
            .then(a.name.cmp(&b.name))
    });
    allowed
}
