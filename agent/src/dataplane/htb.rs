//! HTB shaping on each WAN egress: a root qdisc `5753:` whose default is the default
//! class, one class `5753:100` with the line rate, and under it one class per traffic
//! class (`5753:<mark>`), which nft's `meta priority set 5753:<mark>` selects.
//!
//! Programmed through `tc` (iproute2): netlink-packet-route has no HTB types and the
//! `tc -batch` path was the shorter road; the listing is `tc class show` text, compared in
//! tc's own rate notation so that re-applying the same rates changes nothing.

use std::collections::BTreeMap;

use serde_json::Value;

use super::HTB_MAJOR;

/// One interface's HTB tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shaper {
    /// The class unclassified packets go to.
    pub default_minor: u16,
    /// Classes by minor id.
    pub classes: BTreeMap<u16, HtbClass>,
}

/// One HTB class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HtbClass {
    /// Parent minor; `None` for the class directly under the root qdisc.
    pub parent: Option<u16>,
    pub rate_bps: u64,
    pub ceil_bps: u64,
    /// 0 is served first.
    pub prio: u8,
}

/// A class as `tc class show` lists it: rates in tc's notation (`5Mbit`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedClass {
    pub parent: Option<u16>,
    pub rate: String,
    pub ceil: String,
    pub prio: u8,
}

/// What the kernel has on one interface.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListedShaper {
    /// `Some(default minor)` when the root qdisc is wansteer's HTB.
    pub root_default: Option<u16>,
    pub classes: BTreeMap<u16, ListedClass>,
}

/// The way iproute2 prints a rate given in bytes per second (tc_util.c `print_rate`), so
/// desired rates compare equal to what `tc class show` lists for them.
pub fn tc_rate_text(bytes_per_sec: u64) -> String {
    const UNITS: [&str; 5] = ["", "K", "M", "G", "T"];
    let kilo = 1000u64;
    let mut rate = bytes_per_sec.saturating_mul(8);
    let mut unit = 0;
    while unit < UNITS.len() - 1 {
        if rate < kilo || (!rate.is_multiple_of(kilo) && rate < 1000 * kilo) {
            break;
        }
        rate /= kilo;
        unit += 1;
    }
    format!("{rate}{}bit", UNITS[unit])
}

fn handle(minor: u16) -> String {
    format!("{HTB_MAJOR:x}:{minor:x}")
}

fn parse_handle(text: &str) -> Option<(u16, u16)> {
    let (major, minor) = text.split_once(':')?;
    let major = u16::from_str_radix(major, 16).ok()?;
    let minor = if minor.is_empty() {
        0
    } else {
        u16::from_str_radix(minor, 16).ok()?
    };
    Some((major, minor))
}

/// Interfaces whose root qdisc is wansteer's HTB, from `tc -j qdisc show`.
pub fn owned_roots(qdiscs: &Value) -> BTreeMap<String, u16> {
    let mut roots = BTreeMap::new();
    for qdisc in qdiscs.as_array().into_iter().flatten() {
        let is_root = qdisc.get("root").and_then(Value::as_bool) == Some(true);
        let is_htb = qdisc.get("kind").and_then(Value::as_str) == Some("htb");
        let ours = qdisc
            .get("handle")
            .and_then(Value::as_str)
            .and_then(parse_handle)
            .is_some_and(|(major, _)| major == HTB_MAJOR);
        let (Some(device), true) = (
            qdisc.get("dev").and_then(Value::as_str),
            is_root && is_htb && ours,
        ) else {
            continue;
        };
        let default = qdisc
            .pointer("/options/default")
            .and_then(Value::as_str)
            .and_then(|d| u16::from_str_radix(d.trim_start_matches("0x"), 16).ok())
            .unwrap_or(0);
        roots.insert(device.to_string(), default);
    }
    roots
}

/// wansteer's classes from `tc class show dev X` text.
pub fn parse_classes(text: &str) -> BTreeMap<u16, ListedClass> {
    let mut classes = BTreeMap::new();
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.len() < 3 || words[0] != "class" || words[1] != "htb" {
            continue;
        }
        let Some((major, minor)) = parse_handle(words[2]) else {
            continue;
        };
        if major != HTB_MAJOR {
            continue;
        }
        let after = |key: &str| {
            words
                .iter()
                .position(|w| *w == key)
                .and_then(|i| words.get(i + 1))
                .copied()
        };
        let parent = after("parent")
            .and_then(parse_handle)
            .map(|(_, minor)| minor);
        classes.insert(
            minor,
            ListedClass {
                parent,
                rate: after("rate").unwrap_or_default().to_string(),
                ceil: after("ceil").unwrap_or_default().to_string(),
                prio: after("prio").and_then(|p| p.parse().ok()).unwrap_or(0),
            },
        );
    }
    classes
}

fn matches(want: &HtbClass, have: &ListedClass) -> bool {
    want.parent == have.parent
        && tc_rate_text(want.rate_bps / 8) == have.rate
        && tc_rate_text(want.ceil_bps / 8) == have.ceil
        // A class with children lists no prio.
        && (want.parent.is_none() || want.prio == have.prio)
}

/// DRR quantum from the rate, kept in the range HTB accepts without complaint.
fn quantum(rate_bps: u64) -> u64 {
    (rate_bps / 8 / 10).clamp(1514, 200_000)
}

fn class_spec(device: &str, minor: u16, class: &HtbClass) -> String {
    let parent = match class.parent {
        Some(parent) => handle(parent),
        None => format!("{HTB_MAJOR:x}:"),
    };
    let mut spec = format!(
        "class replace dev {device} parent {parent} classid {} htb rate {}bit ceil {}bit quantum {}",
        handle(minor),
        class.rate_bps,
        class.ceil_bps,
        quantum(class.rate_bps)
    );
    if class.parent.is_some() {
        spec.push_str(&format!(" prio {}", class.prio));
    }
    spec
}

/// `tc -batch` lines that make one interface's tree match. Parents come before children
/// on the way in and after them on the way out.
pub fn diff(device: &str, want: &Shaper, have: &ListedShaper) -> Vec<String> {
    let mut commands = Vec::new();
    let mut have_classes = &have.classes;
    let none = BTreeMap::new();
    match have.root_default {
        Some(default) if default == want.default_minor => {}
        Some(_) => commands.push(format!(
            "qdisc change dev {device} root handle {HTB_MAJOR:x}: htb default {:x}",
            want.default_minor
        )),
        None => {
            commands.push(format!(
                "qdisc replace dev {device} root handle {HTB_MAJOR:x}: htb default {:x}",
                want.default_minor
            ));
            have_classes = &none;
        }
    }
    let mut order: Vec<(&u16, &HtbClass)> = want.classes.iter().collect();
    order.sort_by_key(|(minor, class)| (class.parent.is_some(), **minor));
    for (minor, class) in order {
        if have_classes
            .get(minor)
            .is_none_or(|listed| !matches(class, listed))
        {
            commands.push(class_spec(device, *minor, class));
        }
    }
    let mut stale: Vec<(&u16, &ListedClass)> = have_classes
        .iter()
        .filter(|(minor, _)| !want.classes.contains_key(minor))
        .collect();
    stale.sort_by_key(|(minor, class)| (class.parent.is_none(), **minor));
    for (minor, _) in stale {
        commands.push(format!("class del dev {device} classid {}", handle(*minor)));
    }
    commands
}

/// The `tc` line that removes wansteer's root qdisc (and with it every class).
pub fn delete_root(device: &str) -> String {
    format!("qdisc del dev {device} root handle {HTB_MAJOR:x}:")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_text_follows_iproute2() {
        assert_eq!(tc_rate_text(625_000), "5Mbit");
        assert_eq!(tc_rate_text(6_250_000), "50Mbit");
        assert_eq!(tc_rate_text(1_000), "8Kbit");
        assert_eq!(tc_rate_text(416_666), "3333Kbit");
        assert_eq!(tc_rate_text(100), "800bit");
        assert_eq!(tc_rate_text(125_000_000), "1Gbit");
    }

    #[test]
    fn reads_tc_class_listing() {
        let text = "class htb 5753:1 parent 5753:100 prio 1 rate 5Mbit ceil 15Mbit burst 1600b cburst 1597b \n\
                    class htb 5753:100 root rate 50Mbit ceil 50Mbit burst 1600b cburst 1600b \n\
                    class htb 1:1 root rate 1Mbit ceil 1Mbit burst 1600b cburst 1600b \n";
        let classes = parse_classes(text);
        assert_eq!(classes.len(), 2, "foreign 1:1 is not ours");
        assert_eq!(classes[&1].parent, Some(0x100));
        assert_eq!(classes[&1].ceil, "15Mbit");
        assert_eq!(classes[&0x100].parent, None);
    }
}
