//! The rule compiler without a kernel: a rule set in, the exact nft transaction, ip and
//! tc commands out (golden file; `WANSTEER_BLESS=1` rewrites it after a deliberate
//! change), plus validation, failover choice, moved flows and standalone compilation.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use wansteer_agent::dataplane::desired::{RouteChanges, effective_line, route_changes};
use wansteer_agent::dataplane::htb::{self, ListedShaper};
use wansteer_agent::dataplane::moved::{
    ConntrackDelete, MovedFlows, conntrack_deletes, moved_flows,
};
use wansteer_agent::dataplane::nexthop::{self, Nexthop};
use wansteer_agent::dataplane::nft::{self, FlowKey, NftListing};
use wansteer_agent::dataplane::routing;
use wansteer_agent::dataplane::standalone::{StandaloneError, compile_policy};
use wansteer_agent::dataplane::{RuleSetError, compile};
use wansteer_wire::ruleset::{
    ClassRoute, ClassShare, ClassSpec, LineSpec, PortSpan, RuleSet, StaticMatch,
};

fn bank_branch() -> RuleSet {
    RuleSet {
        site: "branch-1".into(),
        version: 7,
        hash: String::new(),
        classes: vec![
            ClassSpec {
                name: "voice".into(),
                mark: 1,
                priority: 1,
                dscp: 46,
                matches: vec![
                    StaticMatch {
                        protocols: vec![17],
                        ports: vec![PortSpan {
                            first: 16384,
                            last: 32767,
                        }],
                        ..StaticMatch::default()
                    },
                    StaticMatch {
                        dscp: vec![46],
                        ..StaticMatch::default()
                    },
                ],
                apps: vec!["teams".into()],
                domains: vec![],
            },
            ClassSpec {
                name: "trading".into(),
                mark: 2,
                priority: 2,
                dscp: 34,
                matches: vec![StaticMatch {
                    prefixes: vec![
                        "198.51.100.0/24".parse().unwrap(),
                        "2001:db8:77::/48".parse().unwrap(),
                    ],
                    ports: vec![
                        PortSpan {
                            first: 443,
                            last: 443,
                        },
                        PortSpan {
                            first: 8443,
                            last: 8450,
                        },
                    ],
                    protocols: vec![6],
                    ..StaticMatch::default()
                }],
                apps: vec![],
                domains: vec!["bloomberg.net".into()],
            },
            ClassSpec {
                name: "default".into(),
                mark: 7,
                priority: 7,
                dscp: 0,
                matches: vec![],
                apps: vec![],
                domains: vec![],
            },
        ],
        default_class: "default".into(),
        lines: vec![
            LineSpec {
                name: "mpls".into(),
                interface: "wan0".into(),
                gateway: Some("192.0.2.1".parse().unwrap()),
                gateway6: Some("2001:db8:ffff::1".parse().unwrap()),
                rate_bps: 50_000_000,
                shares: vec![
                    ClassShare {
                        class: "voice".into(),
                        rate_bps: 5_000_000,
                        ceil_bps: 15_000_000,
                    },
                    ClassShare {
                        class: "trading".into(),
                        rate_bps: 10_000_000,
                        ceil_bps: 50_000_000,
                    },
                ],
            },
            LineSpec {
                name: "lte".into(),
                interface: "wwan0".into(),
                gateway: None,
                gateway6: None,
                rate_bps: 20_000_000,
                shares: vec![ClassShare {
                    class: "voice".into(),
                    rate_bps: 0,
                    ceil_bps: 4_000_000,
                }],
            },
        ],
        routes: vec![
            ClassRoute {
                class: "voice".into(),
                destination: "10.20.0.0/16".parse().unwrap(),
                primary: "mpls".into(),
                backups: vec!["lte".into()],
                reason: "loss 0.1% ≤ 1%".into(),
            },
            ClassRoute {
                class: "trading".into(),
                destination: "2001:db8:20::/48".parse().unwrap(),
                primary: "mpls".into(),
                backups: vec![],
                reason: "only line allowed".into(),
            },
            ClassRoute {
                class: "default".into(),
                destination: "10.20.0.0/16".parse().unwrap(),
                primary: "lte".into(),
                backups: vec!["mpls".into()],
                reason: "cheapest".into(),
            },
        ],
    }
    .seal()
}

/// Everything the compiler asks of a kernel that has none of it yet, as text.
fn fresh_install(ruleset: &RuleSet, avoided: &BTreeSet<String>) -> String {
    let desired = compile(ruleset, avoided).unwrap();
    let nft = nft::batch(nft::diff(&desired.nft, None));
    let ip = routing::diff(
        &desired.rules,
        &desired.routes,
        &BTreeSet::new(),
        &BTreeMap::new(),
    );
    let mut out = serde_json::to_string_pretty(&nft).unwrap();
    out += "\n--- nexthops (id, family, where)\n";
    for (id, nexthop) in &desired.nexthops {
        out += &format!(
            "{id:#x} {:?} {}\n",
            nexthop.family,
            routing::RouteTarget {
                via: nexthop.via,
                device: nexthop.device.clone(),
                nexthop: None,
            }
        );
    }
    out += "--- ip -batch\n";
    for line in ip.in_order() {
        out += &line;
        out.push('\n');
    }
    out += "--- tc -batch\n";
    for (device, shaper) in &desired.shapers {
        for line in htb::diff(device, shaper, &ListedShaper::default()) {
            out += &line.to_string();
            out.push('\n');
        }
    }
    out
}

fn golden(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/dataplane_golden")
        .join(name);
    if std::env::var_os("WANSTEER_BLESS").is_some() {
        std::fs::write(&path, actual).unwrap();
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with WANSTEER_BLESS=1)", path.display()));
    assert!(
        expected == actual,
        "{} differs; rerun with WANSTEER_BLESS=1 if the change is intended",
        path.display()
    );
}

#[test]
fn bank_branch_compiles_to_the_golden_kernel_state() {
    golden(
        "bank_branch.txt",
        &fresh_install(&bank_branch(), &BTreeSet::new()),
    );
}

#[test]
fn a_dead_mpls_moves_every_route_on_it_and_only_those() {
    let avoided = BTreeSet::from(["mpls".to_string()]);
    let healthy = compile(&bank_branch(), &BTreeSet::new()).unwrap();
    let failed = compile(&bank_branch(), &avoided).unwrap();
    let (upserts, deletes) = routing::diff_routes(&failed.routes, &healthy.routes);
    assert!(
        upserts.is_empty() && deletes.is_empty(),
        "routes name their chain's nexthop, which does not change: {upserts:?} {deletes:?}"
    );
    let (nexthops, gone) = nexthop::diff(&failed.nexthops, &healthy.nexthops);
    let voice_chain = (
        routing::Family::V4,
        vec!["mpls".to_string(), "lte".to_string()],
    );
    assert_eq!(
        nexthops,
        vec![(
            healthy.nexthop_ids[&voice_chain],
            &Nexthop {
                family: routing::Family::V4,
                via: None,
                device: "wwan0".into()
            }
        )],
        "one nexthop replaced: voice's chain moves to lte; trading has no backup and \
         stays; default already on lte"
    );
    assert!(gone.is_empty());
    let moved = moved_flows(&failed.placements, &failed.routes, &healthy.routes);
    assert_eq!(
        moved,
        vec![MovedFlows {
            mark: 1,
            destination: "10.20.0.0/16".parse().unwrap()
        }]
    );
    let deletes = conntrack_deletes(&moved, &failed.placements);
    assert_eq!(
        deletes,
        vec![ConntrackDelete {
            mark: 1,
            v6: false,
            // voice has no other destination: all of its entries go
            destinations: None,
        }]
    );
    // nft and HTB do not depend on line health.
    assert_eq!(failed.nft, healthy.nft);
    assert_eq!(failed.shapers, healthy.shapers);
}

#[test]
fn the_first_healthy_line_in_order_carries_the_class() {
    let route = ClassRoute {
        class: "voice".into(),
        destination: "10.0.0.0/8".parse().unwrap(),
        primary: "mpls".into(),
        backups: vec!["inet".into(), "lte".into()],
        reason: String::new(),
    };
    let down = |lines: &[&str]| lines.iter().map(|l| l.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(effective_line(&route, &down(&[])), "mpls");
    assert_eq!(effective_line(&route, &down(&["mpls"])), "inet");
    assert_eq!(effective_line(&route, &down(&["mpls", "inet"])), "lte");
    assert_eq!(
        effective_line(&route, &down(&["mpls", "inet", "lte"])),
        "mpls",
        "nothing better: stay"
    );
}

#[test]
fn reapplying_against_the_kernels_own_listing_is_a_no_op() {
    let desired = compile(&bank_branch(), &BTreeSet::new()).unwrap();
    // What `nft -j list table` prints after the fresh install: comments come back verbatim.
    let mut objects = vec![serde_json::json!({"table": {"family": "inet", "name": "wansteer"}})];
    for map in &desired.nft.maps {
        objects.push(
            serde_json::json!({"map": {"name": map.name, "type": map.key_types, "map": "mark"}}),
        );
    }
    for chain in &desired.nft.chains {
        let mut def = serde_json::json!({"name": chain.name});
        if let Some(hook) = &chain.hook {
            def["type"] = hook.kind.clone().into();
            def["hook"] = hook.hook.clone().into();
            def["prio"] = hook.priority.into();
        }
        objects.push(serde_json::json!({ "chain": def }));
        for rule in &chain.rules {
            objects.push(serde_json::json!({"rule": {"chain": chain.name, "comment": rule.comment, "handle": 9}}));
        }
    }
    let listing = NftListing::parse(&serde_json::json!({ "nftables": objects }));
    assert!(nft::diff(&desired.nft, Some(&listing)).is_empty());

    // One class changed: only `classify` is rewritten, the maps (DPI verdicts) stay.
    let mut changed = bank_branch();
    changed.classes[1].matches[0].ports.pop();
    let plan = compile(&changed.seal(), &BTreeSet::new()).unwrap().nft;
    let commands = nft::diff(&plan, Some(&listing));
    assert_eq!(
        commands[0],
        serde_json::json!({"flush": {"chain": {"family": "inet", "table": "wansteer", "name": "classify"}}})
    );
    assert!(
        commands[1..]
            .iter()
            .all(|c| c.pointer("/add/rule/chain") == Some(&"classify".into())),
        "{commands:#?}"
    );
}

fn listed_class(parent: Option<u16>, rate: &str, ceil: &str, prio: u8) -> htb::ListedClass {
    htb::ListedClass {
        parent,
        rate: rate.into(),
        ceil: ceil.into(),
        prio,
    }
}

#[test]
fn htb_reapplied_in_tcs_own_words_changes_nothing() {
    let desired = compile(&bank_branch(), &BTreeSet::new()).unwrap();
    let shaper = &desired.shapers["wan0"];
    let listed = ListedShaper {
        root_default: Some(7),
        // As the kernel's dump reads back (rates in tc's notation, as `tc class show`
        // prints them).
        classes: BTreeMap::from([
            (1, listed_class(Some(0x100), "5Mbit", "15Mbit", 0)),
            (2, listed_class(Some(0x100), "10Mbit", "50Mbit", 1)),
            (7, listed_class(Some(0x100), "8Kbit", "50Mbit", 6)),
            (0x100, listed_class(None, "50Mbit", "50Mbit", 0)),
            (9, listed_class(Some(0x100), "1Mbit", "2Mbit", 3)),
        ]),
    };
    assert_eq!(
        htb::diff("wan0", shaper, &listed)
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        vec!["class del dev wan0 classid 5753:9"],
        "only the class no longer wanted goes"
    );
}

#[test]
fn bad_rule_sets_are_refused_with_the_reason() {
    let unsealed = RuleSet {
        version: 8,
        ..bank_branch()
    };
    let mut tampered = unsealed.clone();
    tampered.routes[0].primary = "lte".into();
    assert!(matches!(
        compile(&tampered, &BTreeSet::new()),
        Err(RuleSetError::NotSealed { .. })
    ));

    let refuse = |change: &dyn Fn(&mut RuleSet)| {
        let mut ruleset = bank_branch();
        change(&mut ruleset);
        compile(&ruleset.seal(), &BTreeSet::new()).unwrap_err()
    };
    assert!(matches!(
        refuse(&|r| r.routes[0].backups.push("satellite".into())),
        RuleSetError::UnknownLine { line, .. } if line == "satellite"
    ));
    assert!(matches!(
        refuse(&|r| r.routes[0].class = "video".into()),
        RuleSetError::UnknownClass { class, .. } if class == "video"
    ));
    assert!(matches!(
        refuse(&|r| r.classes[1].mark = 1),
        RuleSetError::DuplicateMark { mark: 1, .. }
    ));
    assert!(matches!(
        refuse(&|r| r.classes[0].mark = 256),
        RuleSetError::MarkOutOfRange { mark: 256, .. }
    ));
    assert!(matches!(
        refuse(&|r| r.default_class = "nope".into()),
        RuleSetError::UnknownClass { .. }
    ));
    assert!(matches!(
        refuse(&|r| r.lines[0].gateway = Some("2001:db8::1".parse().unwrap())),
        RuleSetError::GatewayFamily { .. }
    ));
    assert!(matches!(
        refuse(&|r| r.lines[1].interface = "wan0".into()),
        RuleSetError::SharedInterface { .. }
    ));
    assert!(matches!(
        refuse(&|r| r.lines[0].gateway6 = None),
        RuleSetError::NoGatewayForFamily { family: 6, .. }
    ));
    let message = refuse(&|r| r.routes[0].backups.push("satellite".into())).to_string();
    assert_eq!(
        message,
        "the route of `voice` to 10.20.0.0/16 names line `satellite`, which the rule set does not define"
    );
}

#[test]
fn dpi_verdicts_become_map_elements_that_expire() {
    let flow = FlowKey {
        source: "10.1.0.5".parse().unwrap(),
        destination: "52.112.0.9".parse().unwrap(),
        protocol: 17,
        source_port: 50000,
        destination_port: 3478,
    };
    assert_eq!(
        nft::dpi_element(&flow, 1, 300).unwrap(),
        "add element inet wansteer dpi4 { 10.1.0.5 . 52.112.0.9 . 17 . 50000 . 3478 timeout 300s : 0x1 }"
    );
    let mixed = FlowKey {
        destination: "2001:db8::1".parse().unwrap(),
        ..flow
    };
    assert_eq!(nft::dpi_element(&mixed, 1, 300), None);
}

const POLICY: &str = r#"
sites:
  - name: branch-1
    kind: branch
    lan: [10.1.0.0/24]
    lines:
      - { name: mpls, transport: mpls, interface: wan0, gateway: 10.100.1.1, up: 50mbit, down: 50mbit, preference: 1 }
      - { name: inet, transport: internet, interface: wan1, gateway: 10.100.2.1, up: 100mbit, down: 100mbit, preference: 2 }
      - { name: lte, transport: lte, interface: wan2, gateway: 10.100.3.1, up: 20mbit, down: 20mbit, cost: 5, preference: 3 }
  - name: dc
    kind: dc
    lan: [10.200.0.0/24, "2001:db8:200::/48"]
    lines:
      - { name: mpls, transport: mpls, interface: eth0, up: 1gbit, down: 1gbit }
classes:
  - name: voice
    priority: 1
    dscp: EF
    match: [{ protocols: [udp], ports: ["16384-32767"] }, { apps: [teams] }]
    steering: { prefer: [mpls], never: [lte] }
    bandwidth: { guaranteed: 10%, ceiling: 30% }
  - name: bulk
    priority: 6
    dscp: AF11
    match: [{ protocols: [tcp], ports: [873] }]
    steering: { prefer: [internet] }
  - name: default
    priority: 7
"#;

#[test]
fn a_policy_compiles_to_static_steering_for_its_site() {
    let policy: wansteer_policies::Policy = yaml_serde::from_str(POLICY).unwrap();
    let ruleset = compile_policy(&policy, "branch-1", 1).unwrap();
    assert!(ruleset.is_sealed());
    assert_eq!(ruleset.default_class, "default");
    let voice = ruleset.class("voice").unwrap();
    assert_eq!(
        (voice.mark, voice.dscp, voice.apps.clone()),
        (1, 46, vec!["teams".to_string()])
    );
    assert_eq!(
        voice.matches.len(),
        1,
        "the app rule is the classifier's, not nft's"
    );

    let route = |class: &str| {
        ruleset
            .routes
            .iter()
            .find(|r| r.class == class && r.destination.to_string() == "10.200.0.0/24")
            .unwrap()
    };
    assert_eq!(
        (
            route("voice").primary.as_str(),
            route("voice").backups.clone()
        ),
        ("mpls", vec!["inet".to_string()])
    );
    assert_eq!(route("bulk").primary, "inet");
    assert_eq!(route("bulk").backups, vec!["mpls", "lte"]);
    assert_eq!(route("default").primary, "mpls");
    assert_eq!(
        ruleset.routes.len(),
        3,
        "every class to the DC IPv4 LAN; no line has an IPv6 gateway for its IPv6 LAN"
    );

    let mpls = ruleset.line("mpls").unwrap();
    let voice_share = mpls.shares.iter().find(|s| s.class == "voice").unwrap();
    assert_eq!(
        (voice_share.rate_bps, voice_share.ceil_bps),
        (5_000_000, 15_000_000)
    );
    let lte = ruleset.line("lte").unwrap();
    assert!(
        lte.shares.iter().all(|s| s.class != "voice"),
        "voice never uses lte"
    );

    // It is a valid rule set for the data plane.
    compile(&ruleset, &BTreeSet::new()).unwrap();
}

#[test]
fn a_policy_without_the_site_is_refused_by_name() {
    let policy: wansteer_policies::Policy = yaml_serde::from_str(POLICY).unwrap();
    let error = compile_policy(&policy, "branch-9", 1).unwrap_err();
    assert_eq!(
        error,
        StandaloneError::UnknownSite {
            site: "branch-9".into(),
            known: "branch-1, dc".into()
        }
    );
}

mod listings_never_panic {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn nft_json_listings(text in "\\PC*", number in any::<i64>(), word in "[a-z0-9:./]{0,20}") {
            for document in [
                serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
                serde_json::json!({"nftables": [{"rule": {"chain": number, "comment": word}}, {"chain": {"name": word, "hook": number}}]}),
            ] {
                let _ = NftListing::parse(&document);
            }
        }
    }
}

#[test]
fn route_changes_name_only_the_routes_whose_lines_changed() {
    let old = bank_branch().routes;
    assert_eq!(route_changes(&old, &old), RouteChanges::default());

    // A new reason text is no change; a new primary is.
    let mut new = old.clone();
    new[0].reason = "reworded".into();
    new[2].primary = new[2].backups[0].clone();
    assert_eq!(
        route_changes(&old, &new),
        RouteChanges {
            changed: vec![2],
            removed: vec![],
        }
    );

    // Reordered, one gone and one added: matched by (class, destination).
    let mut shuffled: Vec<ClassRoute> = old.iter().rev().cloned().collect();
    let gone = shuffled.pop().unwrap();
    let mut added = gone.clone();
    added.destination = "192.0.2.0/24".parse().unwrap();
    shuffled.push(added);
    let changes = route_changes(&old, &shuffled);
    assert_eq!(changes.changed, vec![shuffled.len() - 1]);
    assert_eq!(changes.removed, vec![(gone.class, gone.destination)]);
}

#[test]
fn conntrack_deletes_are_narrowed_to_the_moved_destinations() {
    let mut ruleset = bank_branch();
    let mut second = ruleset.routes[0].clone();
    second.destination = "10.30.0.0/16".parse().unwrap();
    ruleset.routes.push(second);
    let desired = compile(&ruleset.seal(), &BTreeSet::new()).unwrap();
    // One of voice's two destinations moved: only that one's entries go.
    let (class, destination) = ("voice".to_string(), "10.20.0.0/16".parse().unwrap());
    let mark = desired.placements[&(class, destination)].mark;
    let destination: ipnet::IpNet = destination;
    let moved = vec![MovedFlows { mark, destination }];
    assert_eq!(
        conntrack_deletes(&moved, &desired.placements),
        vec![ConntrackDelete {
            mark,
            v6: destination.addr().is_ipv6(),
            destinations: Some(vec![destination]),
        }]
    );
}
