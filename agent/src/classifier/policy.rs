//! The policy stage: a flow's facts against the policy's match rules, first class in
//! policy order wins, the policy's default class otherwise.

use std::net::IpAddr;

use wansteer_policies::model::{MatchRule, Policy};

/// What the policy's match rules can look at for one flow.
#[derive(Debug, Clone, Copy)]
pub struct FlowFacts<'a> {
    pub proto: u8,
    pub client: IpAddr,
    pub server: IpAddr,
    pub server_port: u16,
    pub dscp: u8,
    /// The application name (catalogue) and the DPI protocol name, when known.
    pub app: &'a str,
    pub protocol: Option<&'a str>,
    /// Host name from SNI/Host/DNS, when known.
    pub host: Option<&'a str>,
}

/// A policy ready for matching.
#[derive(Debug, Clone)]
pub struct PolicyClasses {
    names: Vec<String>,
    rules: Vec<Vec<MatchRule>>,
    default: usize,
}

/// Why a policy cannot classify.
#[derive(Debug, thiserror::Error)]
#[error(
    "the policy has no class for unmatched traffic: add a class named `default` or set `default_class`"
)]
pub struct NoDefaultClass;

impl PolicyClasses {
    pub fn new(policy: &Policy) -> Result<PolicyClasses, NoDefaultClass> {
        let default_name = &policy.default_class().ok_or(NoDefaultClass)?.name;
        let default = policy
            .classes
            .iter()
            .position(|c| &c.name == default_name)
            .ok_or(NoDefaultClass)?;
        Ok(PolicyClasses {
            names: policy.classes.iter().map(|c| c.name.clone()).collect(),
            rules: policy.classes.iter().map(|c| c.matches.clone()).collect(),
            default,
        })
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The index of the class the flow belongs to, and whether a rule (not the default) said so.
    pub fn classify(&self, facts: &FlowFacts<'_>) -> (usize, bool) {
        for (index, rules) in self.rules.iter().enumerate() {
            if rules.iter().any(|rule| rule_matches(rule, facts)) {
                return (index, true);
            }
        }
        (self.default, false)
    }
}

fn domain_matches(host: &str, suffix: &str) -> bool {
    let suffix = suffix.trim_start_matches("*.").trim_matches('.');
    host.eq_ignore_ascii_case(suffix)
        || host.len() > suffix.len()
            && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
            && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
}

/// Every condition given in the rule must hold; empty conditions hold.
pub fn rule_matches(rule: &MatchRule, facts: &FlowFacts<'_>) -> bool {
    (rule.prefixes.is_empty()
        || rule
            .prefixes
            .iter()
            .any(|net| net.contains(&facts.client) || net.contains(&facts.server)))
        && (rule.ports.is_empty() || rule.ports.iter().any(|r| r.contains(facts.server_port)))
        && (rule.protocols.is_empty() || rule.protocols.iter().any(|p| p.number() == facts.proto))
        && (rule.dscp.is_empty() || rule.dscp.iter().any(|d| d.0 == facts.dscp))
        && (rule.apps.is_empty()
            || rule.apps.iter().any(|a| {
                a.eq_ignore_ascii_case(facts.app)
                    || facts.protocol.is_some_and(|p| a.eq_ignore_ascii_case(p))
            }))
        && (rule.domains.is_empty()
            || facts
                .host
                .is_some_and(|host| rule.domains.iter().any(|d| domain_matches(host, d))))
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = r#"
sites:
  - name: branch
    kind: branch
    lines: [{ name: mpls, transport: mpls, interface: wan0, up: 10mbit, down: 10mbit }]
classes:
  - name: voice
    priority: 1
    match: [{ protocols: [udp], ports: ["16384-32767"] }, { apps: [sip] }]
  - name: market-data
    priority: 2
    match: [{ domains: [bloomberg.net] }, { prefixes: [160.43.0.0/16] }]
  - name: meetings
    priority: 3
    match: [{ apps: [teams, zoom] }]
  - name: default
    priority: 7
"#;

    fn facts<'a>(app: &'a str, host: Option<&'a str>, port: u16) -> FlowFacts<'a> {
        FlowFacts {
            proto: 6,
            client: "10.0.0.5".parse().unwrap(),
            server: "203.0.113.9".parse().unwrap(),
            server_port: port,
            dscp: 0,
            app,
            protocol: Some("tls"),
            host,
        }
    }

    #[test]
    fn first_matching_class_in_policy_order_wins() {
        let policy: Policy = yaml_serde::from_str(POLICY).unwrap();
        let classes = PolicyClasses::new(&policy).unwrap();
        let name = |f: &FlowFacts<'_>| classes.names()[classes.classify(f).0].clone();
        assert_eq!(
            name(&facts("bloomberg", Some("bbg.bloomberg.net"), 443)),
            "market-data"
        );
        assert_eq!(
            name(&facts("teams", Some("teams.microsoft.com"), 443)),
            "meetings"
        );
        assert_eq!(
            name(&facts("web", Some("notbloomberg.net"), 443)),
            "default"
        );
        let mut rtp = facts("rtp", None, 20000);
        rtp.proto = 17;
        assert_eq!(name(&rtp), "voice");
        assert_eq!(classes.classify(&facts("x", None, 80)), (3, false));
    }
}
