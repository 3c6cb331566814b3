//! The part of every site's `RuleSet` that comes straight from the policy: the traffic
//! classes with their marks, DSCP and the matches the kernel can do alone. The controller's
//! rule compiler and the agent's standalone mode both use it, so a class has the same mark
//! whichever of them programmed the site.

use wansteer_wire::ruleset::{ClassSpec, PortSpan, StaticMatch};

use crate::model::{MatchRule, Policy};

/// The class specs every site shares, in policy (match) order; mark = position + 1.
pub fn class_specs(policy: &Policy) -> Vec<ClassSpec> {
    policy
        .classes
        .iter()
        .enumerate()
        .map(|(position, class)| ClassSpec {
            name: class.name.clone(),
            mark: position as u32 + 1,
            priority: class.priority,
            dscp: class.dscp.0,
            matches: class.matches.iter().filter_map(static_match).collect(),
            apps: dedup(class.matches.iter().flat_map(|m| m.apps.iter().cloned())),
            domains: dedup(class.matches.iter().flat_map(|m| m.domains.iter().cloned())),
        })
        .collect()
}

fn dedup(items: impl Iterator<Item = String>) -> Vec<String> {
    let mut items: Vec<String> = items.collect();
    items.sort();
    items.dedup();
    items
}

/// The part of a match rule the kernel can do alone. A rule that also names apps or
/// domains needs the classifier, so it yields no static match (it would over-match).
fn static_match(rule: &MatchRule) -> Option<StaticMatch> {
    if !rule.apps.is_empty() || !rule.domains.is_empty() || rule.is_catch_all() {
        return None;
    }
    Some(StaticMatch {
        prefixes: rule.prefixes.clone(),
        ports: rule
            .ports
            .iter()
            .map(|p| PortSpan {
                first: p.first,
                last: p.last,
            })
            .collect(),
        protocols: rule.protocols.iter().map(|p| p.number()).collect(),
        dscp: rule.dscp.iter().map(|d| d.0).collect(),
    })
}
