//! HTB shaping on each WAN egress: a root qdisc `5753:` whose default is the default
//! class, one class `5753:100` with the line rate, and under it one class per traffic
//! class (`5753:<mark>`), which nft's `meta priority set 5753:<mark>` selects.
//!
//! Programmed over rtnetlink. netlink-packet-route has no HTB types, so the options are
//! built here as raw attributes: `TCA_HTB_INIT` (`tc_htb_glob`) for the qdisc,
//! `TCA_HTB_PARMS` (`tc_htb_opt`, rates with link layer "ethernet" so the kernel needs no
//! rate table) plus `TCA_HTB_RATE64`/`CEIL64` above 4 Gbit/s for a class, with the burst
//! iproute2 would pick. Listings are read back from the kernel's dump and compared in
//! tc's own rate notation, so re-applying the same rates changes nothing. Each change
//! also prints as the `tc` command it stands for (logs, golden files).

use std::collections::BTreeMap;

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

/// One change to an interface's HTB tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TcCommand {
    /// Install (or replace whatever is there with) wansteer's root HTB.
    ReplaceRoot {
        device: String,
        default_minor: u16,
    },
    ReplaceClass {
        device: String,
        minor: u16,
        class: HtbClass,
    },
    DeleteClass {
        device: String,
        minor: u16,
    },
    /// Remove wansteer's root qdisc (and with it every class).
    DeleteRoot {
        device: String,
    },
}

impl TcCommand {
    pub fn device(&self) -> &str {
        match self {
            TcCommand::ReplaceRoot { device, .. }
            | TcCommand::ReplaceClass { device, .. }
            | TcCommand::DeleteClass { device, .. }
            | TcCommand::DeleteRoot { device } => device,
        }
    }

    pub fn is_delete(&self) -> bool {
        matches!(
            self,
            TcCommand::DeleteClass { .. } | TcCommand::DeleteRoot { .. }
        )
    }
}

impl std::fmt::Display for TcCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TcCommand::ReplaceRoot {
                device,
                default_minor,
            } => write!(
                f,
                "qdisc replace dev {device} root handle {HTB_MAJOR:x}: htb default {default_minor:x}"
            ),
            TcCommand::ReplaceClass {
                device,
                minor,
                class,
            } => f.write_str(&class_spec(device, *minor, class)),
            TcCommand::DeleteClass { device, minor } => {
                write!(f, "class del dev {device} classid {}", handle(*minor))
            }
            TcCommand::DeleteRoot { device } => {
                write!(f, "qdisc del dev {device} root handle {HTB_MAJOR:x}:")
            }
        }
    }
}

pub const TCA_HTB_PARMS: u16 = 1;
pub const TCA_HTB_INIT: u16 = 2;
pub const TCA_HTB_RATE64: u16 = 6;
pub const TCA_HTB_CEIL64: u16 = 7;
const TC_HTB_PROTOVER: u32 = 3;
const TC_LINKLAYER_ETHERNET: u8 = 1;
/// Bytes iproute2 allows as burst when none is given (its default MTU).
const DEFAULT_BURST: u64 = 1600;
/// Scheduler ticks per microsecond (`/proc/net/psched` on every kernel since 2.6.x:
/// 1000 ns per µs over 64 ns per tick).
const TICKS_PER_USEC: f64 = 1000.0 / 64.0;

/// `TCA_HTB_INIT` for the root qdisc.
pub fn qdisc_options(default_minor: u16) -> Vec<(u16, Vec<u8>)> {
    let mut glob = Vec::with_capacity(20);
    for word in [TC_HTB_PROTOVER, 10, u32::from(default_minor), 0, 0] {
        glob.extend_from_slice(&word.to_ne_bytes());
    }
    vec![(TCA_HTB_INIT, glob)]
}

/// Scheduler ticks to send `bytes` at `rate` bytes/s, as iproute2 computes them.
fn transmit_ticks(rate: u64, bytes: u64) -> u32 {
    let usec = (1e6 * bytes as f64 / rate.max(1) as f64) as u32;
    (f64::from(usec) * TICKS_PER_USEC) as u32
}

fn ratespec(rate: u64) -> [u8; 12] {
    let mut spec = [0u8; 12];
    spec[1] = TC_LINKLAYER_ETHERNET;
    spec[8..].copy_from_slice(&u32::try_from(rate).unwrap_or(u32::MAX).to_ne_bytes());
    spec
}

/// `TCA_HTB_PARMS` (and the 64-bit rates when they do not fit) for one class.
pub fn class_options(class: &HtbClass) -> Vec<(u16, Vec<u8>)> {
    let (rate, ceil) = (class.rate_bps / 8, class.ceil_bps / 8);
    let mut opt = Vec::with_capacity(44);
    opt.extend_from_slice(&ratespec(rate));
    opt.extend_from_slice(&ratespec(ceil));
    for word in [
        transmit_ticks(rate, DEFAULT_BURST),
        transmit_ticks(ceil, DEFAULT_BURST),
        quantum(class.rate_bps) as u32,
        0,
        u32::from(class.prio),
    ] {
        opt.extend_from_slice(&word.to_ne_bytes());
    }
    let mut options = vec![(TCA_HTB_PARMS, opt)];
    if rate > u64::from(u32::MAX) {
        options.push((TCA_HTB_RATE64, rate.to_ne_bytes().to_vec()));
    }
    if ceil > u64::from(u32::MAX) {
        options.push((TCA_HTB_CEIL64, ceil.to_ne_bytes().to_vec()));
    }
    options
}

fn word(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn long(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_ne_bytes(bytes.get(..8)?.try_into().ok()?))
}

/// The default class from a root HTB's TCA_OPTIONS content.
pub fn parse_qdisc_options(options: &[u8]) -> Option<u16> {
    let (_, glob, _) = super::conntrack::attributes(options)
        .into_iter()
        .find(|(kind, ..)| *kind == TCA_HTB_INIT)?;
    u16::try_from(word(glob, 8)?).ok()
}

/// A class from its TCA_OPTIONS content and parent handle, rates in tc's notation.
pub fn parse_class_options(options: &[u8], parent: u32) -> Option<ListedClass> {
    let attributes = super::conntrack::attributes(options);
    let find = |wanted: u16| {
        attributes
            .iter()
            .find(|(kind, ..)| *kind == wanted)
            .map(|(_, value, _)| *value)
    };
    let opt = find(TCA_HTB_PARMS)?;
    let rate = find(TCA_HTB_RATE64)
        .and_then(long)
        .unwrap_or(u64::from(word(opt, 8)?));
    let ceil = find(TCA_HTB_CEIL64)
        .and_then(long)
        .unwrap_or(u64::from(word(opt, 20)?));
    let prio = u8::try_from(word(opt, 40)?).unwrap_or(u8::MAX);
    let (major, minor) = ((parent >> 16) as u16, parent as u16);
    Some(ListedClass {
        parent: (major == HTB_MAJOR && minor != 0).then_some(minor),
        rate: tc_rate_text(rate),
        ceil: tc_rate_text(ceil),
        prio,
    })
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

/// The changes that make one interface's tree match. Parents come before children on
/// the way in and after them on the way out.
pub fn diff(device: &str, want: &Shaper, have: &ListedShaper) -> Vec<TcCommand> {
    let mut commands = Vec::new();
    let mut have_classes = &have.classes;
    let none = BTreeMap::new();
    let device = device.to_string();
    match have.root_default {
        Some(default) if default == want.default_minor => {}
        // HTB cannot change its default class in place ("Change operation not supported"):
        // the tree is rebuilt. Rare (the rule set's default class changed); queued packets
        // on this line are dropped once.
        Some(_) => {
            commands.push(TcCommand::DeleteRoot {
                device: device.clone(),
            });
            commands.push(TcCommand::ReplaceRoot {
                device: device.clone(),
                default_minor: want.default_minor,
            });
            have_classes = &none;
        }
        None => {
            commands.push(TcCommand::ReplaceRoot {
                device: device.clone(),
                default_minor: want.default_minor,
            });
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
            commands.push(TcCommand::ReplaceClass {
                device: device.clone(),
                minor: *minor,
                class: class.clone(),
            });
        }
    }
    let mut stale: Vec<(&u16, &ListedClass)> = have_classes
        .iter()
        .filter(|(minor, _)| !want.classes.contains_key(minor))
        .collect();
    stale.sort_by_key(|(minor, class)| (class.parent.is_none(), **minor));
    for (minor, _) in stale {
        commands.push(TcCommand::DeleteClass {
            device: device.clone(),
            minor: *minor,
        });
    }
    commands
}

/// Removes wansteer's root qdisc (and with it every class).
pub fn delete_root(device: &str) -> TcCommand {
    TcCommand::DeleteRoot {
        device: device.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_options_read_back_as_written() {
        let class = HtbClass {
            parent: Some(0x100),
            rate_bps: 5_000_000,
            ceil_bps: 40_000_000_000,
            prio: 3,
        };
        let mut bytes = Vec::new();
        for (kind, value) in class_options(&class) {
            bytes.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
            bytes.extend_from_slice(&kind.to_ne_bytes());
            bytes.extend_from_slice(&value);
        }
        let listed = parse_class_options(&bytes, u32::from(HTB_MAJOR) << 16 | 0x100).unwrap();
        assert_eq!(listed.rate, "5Mbit");
        assert_eq!(listed.ceil, "40Gbit", "above 4 Gbit/s through CEIL64");
        assert_eq!((listed.parent, listed.prio), (Some(0x100), 3));
        assert!(matches(&class, &listed));
        // iproute2's burst for 5 Mbit/s: 1600 bytes = 2560 µs = 40000 ticks.
        assert_eq!(transmit_ticks(625_000, 1600), 40_000);
    }

    #[test]
    fn options_parsers_take_any_bytes() {
        for length in 0..64u8 {
            let bytes: Vec<u8> = (0..length).map(|i| i.wrapping_mul(37)).collect();
            let _ = parse_class_options(&bytes, 0);
            let _ = parse_qdisc_options(&bytes);
        }
    }

    #[test]
    fn rate_text_follows_iproute2() {
        assert_eq!(tc_rate_text(625_000), "5Mbit");
        assert_eq!(tc_rate_text(6_250_000), "50Mbit");
        assert_eq!(tc_rate_text(1_000), "8Kbit");
        assert_eq!(tc_rate_text(416_666), "3333Kbit");
        assert_eq!(tc_rate_text(100), "800bit");
        assert_eq!(tc_rate_text(125_000_000), "1Gbit");
    }
}
