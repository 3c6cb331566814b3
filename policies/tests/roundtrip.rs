//! Property tests: any policy the model can hold, written out as YAML, reads back equal —
//! through serde directly and through the located-tree validator (so the validator's
//! idea of the language never drifts from the model's). And no text at all, however
//! mangled, makes `check_source` panic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use proptest::prelude::*;
use wansteer_policies::model::{
    Bandwidth, Class, Dampening, Line, MatchRule, PortRange, Protocol, SiteKind, Sla, Steering,
    Timers, Transport,
};
use wansteer_policies::model::{Policy, Site};
use wansteer_policies::units::{Dscp, Percent, Rate, Reflector, Span};
use wansteer_policies::{check_source, schema, source};

fn name() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9-]{0,10}"
}

fn span() -> impl Strategy<Value = Span> {
    prop_oneof![
        (0u64..100_000_000).prop_map(|micros| Span(Duration::from_micros(micros))),
        (0u64..1_000).prop_map(|ms| Span(Duration::from_millis(ms))),
        (0u64..100).prop_map(|minutes| Span(Duration::from_secs(minutes * 60))),
    ]
}

fn percent() -> impl Strategy<Value = Percent> {
    prop_oneof![
        (0u32..=100).prop_map(|p| Percent(f64::from(p))),
        (0u32..=1000).prop_map(|p| Percent(f64::from(p) / 10.0)),
        (0.0f64..=100.0).prop_map(Percent),
    ]
}

fn rate() -> impl Strategy<Value = Rate> {
    prop_oneof![
        (1u64..10_000).prop_map(|m| Rate(m * 1_000_000)),
        (1u64..100_000).prop_map(|k| Rate(k * 1_000)),
        (1u64..10_000_000_000).prop_map(Rate),
    ]
}

fn prefix() -> impl Strategy<Value = IpNet> {
    prop_oneof![
        (any::<u32>(), 0u8..=32)
            .prop_map(|(a, len)| IpNet::V4(Ipv4Net::new(Ipv4Addr::from(a), len).unwrap())),
        (any::<u128>(), 0u8..=128)
            .prop_map(|(a, len)| IpNet::V6(Ipv6Net::new(Ipv6Addr::from(a), len).unwrap())),
    ]
}

fn port_range() -> impl Strategy<Value = PortRange> {
    (any::<u16>(), any::<u16>()).prop_map(|(a, b)| PortRange {
        first: a.min(b),
        last: a.max(b),
    })
}

fn protocol() -> impl Strategy<Value = Protocol> {
    prop::sample::select(vec![
        Protocol::Tcp,
        Protocol::Udp,
        Protocol::Icmp,
        Protocol::Icmpv6,
        Protocol::Sctp,
        Protocol::Gre,
        Protocol::Esp,
    ])
}

fn line() -> impl Strategy<Value = Line> {
    (
        name(),
        prop::sample::select(Transport::ALL.to_vec()),
        "[a-z][a-z0-9]{0,14}",
        prop::option::of(any::<u32>().prop_map(|a| IpAddr::V4(Ipv4Addr::from(a)))),
        prop::option::of(any::<u128>().prop_map(Ipv6Addr::from)),
        rate(),
        rate(),
        prop_oneof![(0u32..1000).prop_map(f64::from), 0.0f64..1e6],
        any::<u32>(),
        prop::option::of((any::<u32>(), 1u16..).prop_map(|(a, port)| Reflector {
            address: IpAddr::V4(Ipv4Addr::from(a)),
            port,
        })),
    )
        .prop_map(
            |(
                name,
                transport,
                interface,
                gateway,
                gateway6,
                up,
                down,
                cost,
                preference,
                reflector,
            )| {
                Line {
                    name,
                    transport,
                    interface,
                    gateway,
                    gateway6,
                    up,
                    down,
                    cost,
                    preference,
                    reflector,
                    probe_interval: None,
                    site: None,
                }
            },
        )
}

fn site() -> impl Strategy<Value = Site> {
    (
        name(),
        prop::sample::select(vec![SiteKind::Branch, SiteKind::Hub, SiteKind::Dc]),
        prop::collection::vec(prefix(), 0..3),
        prop::collection::vec(line(), 0..4),
    )
        .prop_map(|(name, kind, lan, lines)| Site {
            name,
            kind,
            lan,
            lines,
        })
}

fn match_rule() -> impl Strategy<Value = MatchRule> {
    (
        prop::collection::vec(prefix(), 0..2),
        prop::collection::vec(port_range(), 0..3),
        prop::collection::vec(protocol(), 0..2),
        prop::collection::vec((0u8..64).prop_map(Dscp), 0..2),
        prop::collection::vec(name(), 0..2),
        prop::collection::vec("[a-z]{1,8}\\.(com|net)", 0..2),
    )
        .prop_map(
            |(prefixes, ports, protocols, dscp, apps, domains)| MatchRule {
                prefixes,
                ports,
                protocols,
                dscp,
                apps,
                domains,
            },
        )
}

fn class() -> impl Strategy<Value = Class> {
    (
        name(),
        any::<u8>(),
        (0u8..64).prop_map(Dscp),
        prop::collection::vec(match_rule(), 0..3),
        prop::option::of(
            (
                prop::option::of(span()),
                prop::option::of(percent()),
                prop::option::of(span()),
            )
                .prop_map(|(latency, loss, jitter)| Sla {
                    latency,
                    loss,
                    jitter,
                }),
        ),
        (
            prop::collection::vec(name(), 0..3),
            prop::collection::vec(name(), 0..3),
            any::<bool>(),
        )
            .prop_map(|(prefer, never, load_sharing)| Steering {
                prefer,
                never,
                load_sharing,
            }),
        (percent(), percent()).prop_map(|(guaranteed, ceiling)| Bandwidth {
            guaranteed,
            ceiling,
        }),
    )
        .prop_map(
            |(name, priority, dscp, matches, sla, steering, bandwidth)| Class {
                name,
                priority,
                dscp,
                matches,
                sla,
                steering,
                bandwidth,
            },
        )
}

fn timers() -> impl Strategy<Value = Timers> {
    (
        span(),
        any::<u32>(),
        span(),
        percent(),
        (any::<u32>(), span(), any::<u32>(), any::<u32>(), span()),
    )
        .prop_map(
            |(probe_interval, down_after_missed, hold_down, min_improvement, d)| Timers {
                probe_interval,
                down_after_missed,
                hold_down,
                min_improvement,
                dampening: Dampening {
                    penalty: d.0,
                    half_life: d.1,
                    suppress: d.2,
                    reuse: d.3,
                    max_suppress: d.4,
                },
            },
        )
}

fn policy() -> impl Strategy<Value = Policy> {
    (
        prop::option::of("[A-Za-z0-9 -]{0,20}"),
        prop::collection::vec(site(), 0..4),
        prop::collection::vec(class(), 0..5),
        prop::option::of(name()),
        timers(),
    )
        .prop_map(|(name, sites, classes, default_class, timers)| Policy {
            name,
            sites,
            classes,
            default_class,
            timers,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn written_policies_read_back_equal(policy in policy()) {
        let text = yaml_serde::to_string(&policy).unwrap();
        let read: Policy = yaml_serde::from_str(&text).unwrap();
        prop_assert_eq!(&read, &policy, "{}", text);
    }

    #[test]
    fn the_validator_accepts_the_shape_of_every_written_policy(policy in policy()) {
        let text = yaml_serde::to_string(&policy).unwrap();
        let tree = source::parse(&text).unwrap().unwrap();
        let walked = schema::walk_with_value(&tree);
        prop_assert!(schema::walk(&tree).problems.is_empty());
        prop_assert!(walked.problems.is_empty(), "{:?}\n{}", walked.problems, text);
        let value = walked.value.unwrap();
        let read: Policy = yaml_serde::from_value(value).unwrap();
        prop_assert_eq!(&read, &policy, "{}", text);
        // Whatever the semantic verdict, an accepted policy is the one that was written.
        if let Ok(checked) = check_source("generated.yaml", &text) {
            prop_assert_eq!(&checked.policy, &policy);
        }
    }

    #[test]
    fn no_text_makes_check_panic(text in "(?s).{0,400}") {
        let _ = check_source("noise.yaml", &text);
    }

    #[test]
    fn mangled_bank_policies_never_panic_and_are_located(
        cut in 0usize..6000,
        len in 0usize..40,
        insert in "[ \\-:\\[\\]{}a-z0-9%,\n]{0,12}",
    ) {
        let bank = include_str!("../examples/bank.yaml");
        let mut cut = cut.min(bank.len());
        while !bank.is_char_boundary(cut) {
            cut -= 1;
        }
        let mut end = (cut + len).min(bank.len());
        while !bank.is_char_boundary(end) {
            end -= 1;
        }
        let text = format!("{}{insert}{}", &bank[..cut], &bank[end..]);
        if let Err(diagnostics) = check_source("bank.yaml", &text) {
            let lines = text.lines().count().max(1);
            prop_assert!(!diagnostics.is_empty());
            for diagnostic in diagnostics {
                prop_assert!(diagnostic.line >= 1 && diagnostic.line <= lines + 1, "{diagnostic}");
                prop_assert!(diagnostic.column >= 1, "{diagnostic}");
            }
        }
    }
}
