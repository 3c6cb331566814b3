//! Measured demand per class: the bytes each class's HTB class sent on each line, turned
//! into bits per second between two reports, and attributed to the site the class's
//! traffic on that line goes to (the controller places demand between site pairs).
//!
//! The counters come from `tc -s class show dev IFACE`; parsing and arithmetic are pure.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use ipnet::IpNet;
use wansteer_wire::ruleset::RuleSet;
use wansteer_wire::session::ClassDemand;

/// Bytes sent per HTB minor id, from `tc -s class show` text (the JSON form is not
/// available for classes on every iproute2). Unparsable parts are skipped.
pub fn parse_htb_sent(text: &str) -> BTreeMap<u32, u64> {
    let mut sent = BTreeMap::new();
    let mut minor = None;
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("class") => {
                minor = match (words.next(), words.next()) {
                    (Some("htb"), Some(id)) => id
                        .split_once(':')
                        .and_then(|(_, m)| u32::from_str_radix(m, 16).ok()),
                    _ => None,
                };
            }
            Some("Sent") => {
                if let (Some(m), Some(bytes)) = (minor.take(), words.next())
                    && let Ok(bytes) = bytes.parse()
                {
                    sent.insert(m, bytes);
                }
            }
            _ => {}
        }
    }
    sent
}

/// A value per (line name, HTB minor id): bytes sent, or bits per second.
pub type PerLineClass = BTreeMap<(String, u32), u64>;

/// Turns byte counters into rates between two readings.
#[derive(Debug, Default)]
pub struct DemandMeter {
    last: Option<(Duration, PerLineClass)>,
}

impl DemandMeter {
    /// Takes counters (by line and HTB minor) read at `at` (monotonic); gives bits per
    /// second since the previous reading. A counter that went backwards (qdisc replaced)
    /// restarts from its new value.
    pub fn update(&mut self, at: Duration, counters: PerLineClass) -> PerLineClass {
        let mut rates = BTreeMap::new();
        if let Some((before, last)) = &self.last {
            let seconds = at.saturating_sub(*before).as_secs_f64();
            if seconds > 0.0 {
                for (key, bytes) in &counters {
                    if let Some(previous) = last.get(key).filter(|p| *p <= bytes) {
                        rates.insert(
                            key.clone(),
                            ((bytes - previous) as f64 * 8.0 / seconds).round() as u64,
                        );
                    }
                }
            }
        }
        self.last = Some((at, counters));
        rates
    }
}

/// Names the demand: the class of each HTB minor (its mark), and the destination site when
/// every route of that class on that line leads to one site.
pub fn attribute(
    rates: &PerLineClass,
    rule_set: &RuleSet,
    sites: &[(String, Vec<IpNet>)],
) -> Vec<ClassDemand> {
    let site_of = |destination: &IpNet| {
        sites
            .iter()
            .find(|(_, lans)| lans.iter().any(|lan| lan.contains(destination)))
            .map(|(site, _)| site.clone())
    };
    rates
        .iter()
        .filter_map(|((line, minor), bps)| {
            let class = rule_set.classes.iter().find(|c| c.mark == *minor)?;
            let destinations: BTreeSet<Option<String>> = rule_set
                .routes
                .iter()
                .filter(|r| r.class == class.name && r.primary == *line)
                .map(|r| site_of(&r.destination))
                .collect();
            let destination = match destinations.len() {
                1 => destinations.into_iter().next().flatten(),
                _ => None,
            };
            Some(ClassDemand {
                class: class.name.clone(),
                line: Some(line.clone()),
                destination,
                bps: *bps,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use wansteer_wire::ruleset::{ClassRoute, ClassSpec};

    use super::*;

    const TC: &str = "\
class htb 1:5 parent 1:1 prio 0 rate 1Mbit ceil 10Mbit burst 1600b cburst 1600b
 Sent 1500 bytes 3 pkt (dropped 0, overlimits 0 requeues 0)
 backlog 0b 0p requeues 0
class htb 1:1 root rate 10Mbit ceil 10Mbit burst 1600b cburst 1600b
 Sent 9000 bytes 12 pkt (dropped 0, overlimits 0 requeues 0)
class htb 1:1a parent 1:1 prio 0 rate 1Mbit
 Sent 77 bytes 1 pkt
class htb garbage
 Sent lots bytes
";

    #[test]
    fn tc_text_gives_bytes_per_minor_in_hex() {
        let sent = parse_htb_sent(TC);
        assert_eq!(sent.get(&5), Some(&1500));
        assert_eq!(sent.get(&1), Some(&9000));
        assert_eq!(sent.get(&0x1a), Some(&77));
        assert_eq!(sent.len(), 3);
        assert!(parse_htb_sent("\u{0}\n Sent\nclass").is_empty());
    }

    #[test]
    fn rates_come_from_two_readings_and_skip_resets() {
        let mut meter = DemandMeter::default();
        let key = |m| ("mpls".to_string(), m);
        let first = BTreeMap::from([(key(5), 1_000), (key(6), 5_000)]);
        assert!(meter.update(Duration::from_secs(10), first).is_empty());
        let second = BTreeMap::from([(key(5), 126_000), (key(6), 10)]);
        let rates = meter.update(Duration::from_millis(10_500), second);
        assert_eq!(rates.get(&key(5)), Some(&2_000_000));
        assert_eq!(rates.get(&key(6)), None, "a reset counter gives no rate");
    }

    #[test]
    fn demand_is_named_by_class_and_destination_site() {
        let route = |class: &str, destination: &str, primary: &str| ClassRoute {
            class: class.into(),
            destination: destination.parse().unwrap(),
            primary: primary.into(),
            backups: vec![],
            reason: String::new(),
        };
        let class = |name: &str, mark| ClassSpec {
            name: name.into(),
            mark,
            priority: 1,
            dscp: 46,
            matches: vec![],
            apps: vec![],
            domains: vec![],
        };
        let rule_set = RuleSet {
            site: "br1".into(),
            version: 1,
            hash: String::new(),
            classes: vec![class("voice", 1), class("bulk", 2)],
            default_class: "bulk".into(),
            lines: vec![],
            routes: vec![
                route("voice", "10.0.0.0/24", "mpls"),
                route("bulk", "10.0.0.0/24", "inet"),
                route("bulk", "10.2.0.0/24", "inet"),
            ],
        };
        let sites = vec![
            ("dc".to_string(), vec!["10.0.0.0/24".parse().unwrap()]),
            ("br2".to_string(), vec!["10.2.0.0/24".parse().unwrap()]),
        ];
        let rates = BTreeMap::from([
            (("mpls".to_string(), 1), 64_000),
            (("inet".to_string(), 2), 9_000_000),
            (("inet".to_string(), 9), 1),
        ]);
        let demand = attribute(&rates, &rule_set, &sites);
        assert_eq!(demand.len(), 2, "{demand:?}");
        let voice = demand.iter().find(|d| d.class == "voice").unwrap();
        assert_eq!(voice.destination.as_deref(), Some("dc"));
        assert_eq!(voice.bps, 64_000);
        let bulk = demand.iter().find(|d| d.class == "bulk").unwrap();
        assert_eq!(bulk.destination, None, "two destination sites on one line");
    }
}
