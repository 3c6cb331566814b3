//! Refusing a rule set before anything is touched: a rule set that fails here changes
//! nothing in the kernel, so the state that was working stays.

use std::collections::BTreeSet;
use std::net::IpAddr;

use wansteer_wire::ruleset::{ClassRoute, RuleSet};

use super::CLASS_MARK_MASK;

/// Why a rule set was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleSetError {
    #[error("rule set v{version} for {site} is not sealed: its hash does not match its content")]
    NotSealed { site: String, version: u64 },
    #[error("class `{0}` is defined twice")]
    DuplicateClass(String),
    #[error("class `{class}` has mark {mark}; marks must be 1..={max}", max = CLASS_MARK_MASK)]
    MarkOutOfRange { class: String, mark: u32 },
    #[error("classes `{first}` and `{second}` share mark {mark}")]
    DuplicateMark {
        first: String,
        second: String,
        mark: u32,
    },
    #[error("class `{class}` has DSCP {dscp}; DSCP is 0..=63")]
    DscpOutOfRange { class: String, dscp: u8 },
    #[error("line `{0}` is defined twice")]
    DuplicateLine(String),
    #[error("{what} names class `{class}`, which the rule set does not define")]
    UnknownClass { what: String, class: String },
    #[error("{what} names line `{line}`, which the rule set does not define")]
    UnknownLine { what: String, line: String },
    #[error("line `{line}` has a zero rate{detail}")]
    ZeroRate { line: String, detail: String },
    #[error("line `{line}`: gateway {gateway} is not an IPv4 address")]
    GatewayFamily { line: String, gateway: IpAddr },
    #[error("lines `{first}` and `{second}` both leave by interface `{interface}`")]
    SharedInterface {
        first: String,
        second: String,
        interface: String,
    },
    #[error("{what} is IPv{family} but line `{line}` has only a gateway of the other family")]
    NoGatewayForFamily {
        what: String,
        line: String,
        family: u8,
    },
    #[error("port range {first}-{last} of class `{class}` runs backwards")]
    PortRange {
        class: String,
        first: u16,
        last: u16,
    },
    #[error("line `{line}` leaves by interface `{interface}`, which does not exist here")]
    MissingInterface { line: String, interface: String },
}

/// Checks everything that can be checked without the kernel.
pub fn validate(ruleset: &RuleSet) -> Result<(), RuleSetError> {
    if !ruleset.is_sealed() {
        return Err(RuleSetError::NotSealed {
            site: ruleset.site.clone(),
            version: ruleset.version,
        });
    }
    let mut names = BTreeSet::new();
    for class in &ruleset.classes {
        if !names.insert(class.name.as_str()) {
            return Err(RuleSetError::DuplicateClass(class.name.clone()));
        }
        if class.mark == 0 || class.mark > CLASS_MARK_MASK {
            return Err(RuleSetError::MarkOutOfRange {
                class: class.name.clone(),
                mark: class.mark,
            });
        }
        if let Some(other) = ruleset
            .classes
            .iter()
            .take_while(|other| !std::ptr::eq(*other, class))
            .find(|other| other.mark == class.mark)
        {
            return Err(RuleSetError::DuplicateMark {
                first: other.name.clone(),
                second: class.name.clone(),
                mark: class.mark,
            });
        }
        if class.dscp > 63 {
            return Err(RuleSetError::DscpOutOfRange {
                class: class.name.clone(),
                dscp: class.dscp,
            });
        }
        for span in class.matches.iter().flat_map(|m| &m.ports) {
            if span.first > span.last {
                return Err(RuleSetError::PortRange {
                    class: class.name.clone(),
                    first: span.first,
                    last: span.last,
                });
            }
        }
    }
    if ruleset.class(&ruleset.default_class).is_none() {
        return Err(RuleSetError::UnknownClass {
            what: "default_class".into(),
            class: ruleset.default_class.clone(),
        });
    }
    let mut lines = BTreeSet::new();
    for line in &ruleset.lines {
        if !lines.insert(line.name.as_str()) {
            return Err(RuleSetError::DuplicateLine(line.name.clone()));
        }
        if let Some(other) = ruleset
            .lines
            .iter()
            .take_while(|other| !std::ptr::eq(*other, line))
            .find(|other| other.interface == line.interface)
        {
            return Err(RuleSetError::SharedInterface {
                first: other.name.clone(),
                second: line.name.clone(),
                interface: line.interface.clone(),
            });
        }
        if line.rate_bps == 0 {
            return Err(RuleSetError::ZeroRate {
                line: line.name.clone(),
                detail: String::new(),
            });
        }
        if let Some(gateway @ IpAddr::V6(_)) = line.gateway {
            return Err(RuleSetError::GatewayFamily {
                line: line.name.clone(),
                gateway,
            });
        }
        for share in &line.shares {
            if ruleset.class(&share.class).is_none() {
                return Err(RuleSetError::UnknownClass {
                    what: format!("the share on line `{}`", line.name),
                    class: share.class.clone(),
                });
            }
            if share.ceil_bps == 0 {
                return Err(RuleSetError::ZeroRate {
                    line: line.name.clone(),
                    detail: format!(" ceiling for class `{}`", share.class),
                });
            }
        }
    }
    for route in &ruleset.routes {
        validate_route(ruleset, route)?;
    }
    Ok(())
}

/// Checks one route against the rule set's classes and lines (the incremental path checks
/// only the routes that changed).
pub fn validate_route(ruleset: &RuleSet, route: &ClassRoute) -> Result<(), RuleSetError> {
    let what = format!("the route of `{}` to {}", route.class, route.destination);
    if ruleset.class(&route.class).is_none() {
        return Err(RuleSetError::UnknownClass {
            what,
            class: route.class.clone(),
        });
    }
    for name in std::iter::once(&route.primary).chain(&route.backups) {
        let Some(line) = ruleset.line(name) else {
            return Err(RuleSetError::UnknownLine {
                what,
                line: name.clone(),
            });
        };
        // A line with no gateway at all is point-to-point and carries both families;
        // a line with a gateway of one family only cannot route the other.
        let v6 = matches!(route.destination, ipnet::IpNet::V6(_));
        let (same, other) = if v6 {
            (line.gateway6.is_some(), line.gateway.is_some())
        } else {
            (line.gateway.is_some(), line.gateway6.is_some())
        };
        if !same && other {
            return Err(RuleSetError::NoGatewayForFamily {
                what,
                line: name.clone(),
                family: if v6 { 6 } else { 4 },
            });
        }
    }
    Ok(())
}
