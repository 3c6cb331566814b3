//! Classification in nftables: the table `inet wansteer` as a plan, read back from
//! `nft -j list table`, and the minimal atomic batch between the two.
//!
//! Packet path: `prerouting` and `output` (skipping packets that already carry a mark,
//! such as probes with SO_MARK) jump to `classify`, which takes a DPI verdict from the
//! `dpi4`/`dpi6` maps first, else restores the class from the conntrack mark, else tries
//! the static matches in class order, else gives the default class, and saves the class
//! in the conntrack mark so replies follow. `postrouting` sets DSCP and `meta priority`
//! (the HTB class) on WAN egress; priority set in prerouting would be reset by the kernel.
//!
//! Return direction: a connection that arrives over a WAN line (its packets in the
//! original direction come in on the line's interface) has the line's number recorded in
//! bits 8–15 of the conntrack mark, updated when they start arriving by another line;
//! its replies get those bits in the packet mark and an ip rule ahead of the class rules
//! sends them out by the line they came in on (as mwan3 does). Connections this side
//! started carry no line: their replies (inbound) and their packets follow the class. Connections with a DPI verdict are the exception: the verdict rule sets the
//! mark from the map on every packet, so their replies follow the class.
//!
//! Class marks use bits 0–7 of the packet mark (`fwmark <class>/0xff`), arrival lines
//! bits 8–15 (`fwmark <line << 8>/0xff00`); sockets that set their own mark (probes with
//! SO_MARK) must leave bits 0–15 zero or their packets hit a class or line table.
//!
//! Every rule carries a comment ending in a fingerprint of its content. A chain whose
//! fingerprints already match is left alone, so re-applying the same rule set changes
//! nothing and a restart keeps the DPI map's elements and every counter.

use std::collections::{BTreeMap, BTreeSet};

use ipnet::IpNet;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use wansteer_wire::ruleset::{ClassSpec, RuleSet, StaticMatch};

use super::{CLASS_MARK_MASK, HTB_MAJOR, LINE_MARK_MASK, LINE_MARK_SHIFT, NFT_TABLE};

/// Chain priority `mangle`.
const PRIORITY_MANGLE: i64 = -150;
/// Names of the DPI verdict maps.
pub const DPI_MAP_V4: &str = "dpi4";
pub const DPI_MAP_V6: &str = "dpi6";

/// The whole table as wansteer wants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NftPlan {
    pub maps: Vec<MapPlan>,
    /// In creation order: regular chains before the base chains that jump to them.
    pub chains: Vec<ChainPlan>,
}

/// A verdict map (5-tuple → mark) with timeouts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapPlan {
    pub name: String,
    pub key_types: Vec<String>,
}

/// A chain and its rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainPlan {
    pub name: String,
    pub hook: Option<BaseHook>,
    pub rules: Vec<RulePlan>,
}

/// What makes a chain a base chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseHook {
    pub kind: String,
    pub hook: String,
    pub priority: i64,
}

/// One rule: its expression (nft JSON) and the comment that identifies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RulePlan {
    pub comment: String,
    pub expr: Vec<Value>,
}

impl RulePlan {
    fn new(label: &str, expr: Vec<Value>) -> Self {
        let digest = Sha256::digest(serde_json::to_vec(&(label, &expr)).expect("json"));
        RulePlan {
            comment: format!("wansteer {label} #{}", &hex::encode(digest)[..12]),
            expr,
        }
    }
}

fn meta(key: &str) -> Value {
    json!({"meta": {"key": key}})
}

fn payload(protocol: &str, field: &str) -> Value {
    json!({"payload": {"protocol": protocol, "field": field}})
}

fn eq(left: Value, right: Value) -> Value {
    json!({"match": {"op": "==", "left": left, "right": right}})
}

fn ne(left: Value, right: Value) -> Value {
    json!({"match": {"op": "!=", "left": left, "right": right}})
}

fn class_bits(key: Value) -> Value {
    json!({"&": [key, CLASS_MARK_MASK]})
}

fn set_mark_bits(mark: u32) -> Value {
    json!({"mangle": {"key": meta("mark"), "value": {"|": [meta("mark"), mark]}}})
}

/// One value, or an anonymous set of several.
fn one_or_set(mut values: Vec<Value>) -> Value {
    if values.len() == 1 {
        values.remove(0)
    } else {
        json!({ "set": values })
    }
}

fn prefix(net: &IpNet) -> Value {
    let net = net.trunc();
    if net.prefix_len() == net.max_prefix_len() {
        json!(net.addr().to_string())
    } else {
        json!({"prefix": {"addr": net.addr().to_string(), "len": net.prefix_len()}})
    }
}

/// The nft `classid` text of HTB class `minor` under wansteer's root.
pub fn classid(minor: u32) -> String {
    format!("{HTB_MAJOR:x}:{minor:x}")
}

impl NftPlan {
    pub fn from_ruleset(ruleset: &RuleSet) -> Self {
        let maps = vec![
            MapPlan {
                name: DPI_MAP_V4.into(),
                key_types: dpi_key_types("ipv4_addr"),
            },
            MapPlan {
                name: DPI_MAP_V6.into(),
                key_types: dpi_key_types("ipv6_addr"),
            },
        ];

        let mut classify = Vec::new();
        for (map, ip) in [(DPI_MAP_V4, "ip"), (DPI_MAP_V6, "ip6")] {
            let key = json!({"concat": [
                payload(ip, "saddr"),
                payload(ip, "daddr"),
                meta("l4proto"),
                payload("th", "sport"),
                payload("th", "dport"),
            ]});
            classify.push(RulePlan::new(
                &format!("dpi verdict {map}"),
                vec![
                    json!({"mangle": {"key": meta("mark"), "value": {"map": {"key": key, "data": format!("@{map}")}}}}),
                    json!({"mangle": {"key": {"ct": {"key": "mark"}}, "value": meta("mark")}}),
                    json!({"counter": null}),
                    json!({"return": null}),
                ],
            ));
        }
        // Replies carry the arrival line too (it routes them back by that line); packets
        // in the original direction carry only the class.
        classify.push(RulePlan::new(
            "restore class and arrival line on replies",
            vec![
                eq(json!({"ct": {"key": "direction"}}), json!("reply")),
                ne(class_bits(json!({"ct": {"key": "mark"}})), json!(0)),
                json!({"mangle": {"key": meta("mark"), "value": {"ct": {"key": "mark"}}}}),
                json!({"return": null}),
            ],
        ));
        classify.push(RulePlan::new(
            "restore class from conntrack",
            vec![
                ne(class_bits(json!({"ct": {"key": "mark"}})), json!(0)),
                json!({"mangle": {"key": meta("mark"), "value": class_bits(json!({"ct": {"key": "mark"}}))}}),
                json!({"return": null}),
            ],
        ));
        for class in &ruleset.classes {
            for (index, rule) in static_rules(class).into_iter().enumerate() {
                classify.push(RulePlan::new(
                    &format!("class {} match {index}", class.name),
                    rule,
                ));
            }
        }
        if let Some(default) = ruleset.class(&ruleset.default_class) {
            classify.push(RulePlan::new(
                &format!("default class {}", default.name),
                vec![
                    eq(class_bits(meta("mark")), json!(0)),
                    set_mark_bits(default.mark),
                    json!({"counter": null}),
                ],
            ));
        }
        classify.push(RulePlan::new(
            "save class to conntrack",
            vec![json!({"mangle": {"key": {"ct": {"key": "mark"}}, "value": meta("mark")}})],
        ));

        let interfaces: BTreeSet<&str> = ruleset
            .lines
            .iter()
            .map(|line| line.interface.as_str())
            .collect();
        let mut postrouting = Vec::new();
        if !interfaces.is_empty() {
            let wan = one_or_set(interfaces.iter().map(|name| json!(name)).collect());
            for class in &ruleset.classes {
                let on_wan_of_class = || {
                    vec![
                        eq(meta("oifname"), wan.clone()),
                        eq(class_bits(meta("mark")), json!(class.mark)),
                    ]
                };
                let mut priority = on_wan_of_class();
                priority.push(
                    json!({"mangle": {"key": meta("priority"), "value": classid(class.mark)}}),
                );
                priority.push(json!({"counter": null}));
                postrouting.push(RulePlan::new(
                    &format!("class {} htb", class.name),
                    priority,
                ));
                for ip in ["ip", "ip6"] {
                    let mut dscp = on_wan_of_class();
                    dscp.push(json!({"mangle": {"key": payload(ip, "dscp"), "value": class.dscp}}));
                    postrouting.push(RulePlan::new(
                        &format!("class {} {ip} dscp", class.name),
                        dscp,
                    ));
                }
            }
        }

        let jump =
            |label: &str| RulePlan::new(label, vec![json!({"jump": {"target": "classify"}})]);
        let mut prerouting = vec![jump("classify forwarded")];
        // After classify (which saves the class into the conntrack mark): a connection
        // whose packets come in over line `n` records `n` beside its class. Every packet
        // in the original direction rewrites it, so when the far end fails over to another
        // line the replies follow at once (the kernel writes the mark only if it changes).
        for (number, line) in (1u32..=255).zip(&ruleset.lines) {
            prerouting.push(RulePlan::new(
                &format!("line {} arrival", line.name),
                vec![
                    eq(meta("iifname"), json!(line.interface)),
                    eq(json!({"ct": {"key": "direction"}}), json!("original")),
                    json!({"mangle": {"key": {"ct": {"key": "mark"}}, "value": {"|": [{"&": [{"ct": {"key": "mark"}}, !LINE_MARK_MASK]}, number << LINE_MARK_SHIFT]}}}),
                ],
            ));
        }
        let chains = vec![
            ChainPlan {
                name: "classify".into(),
                hook: None,
                rules: classify,
            },
            ChainPlan {
                name: "prerouting".into(),
                hook: Some(BaseHook {
                    kind: "filter".into(),
                    hook: "prerouting".into(),
                    priority: PRIORITY_MANGLE,
                }),
                rules: prerouting,
            },
            ChainPlan {
                name: "output".into(),
                hook: Some(BaseHook {
                    kind: "route".into(),
                    hook: "output".into(),
                    priority: PRIORITY_MANGLE,
                }),
                rules: vec![
                    RulePlan::new(
                        "keep marks set by sockets (probes)",
                        vec![ne(meta("mark"), json!(0)), json!({"return": null})],
                    ),
                    jump("classify local"),
                ],
            },
            ChainPlan {
                name: "postrouting".into(),
                hook: Some(BaseHook {
                    kind: "filter".into(),
                    hook: "postrouting".into(),
                    priority: PRIORITY_MANGLE,
                }),
                rules: postrouting,
            },
        ];
        NftPlan { maps, chains }
    }
}

fn dpi_key_types(addr: &str) -> Vec<String> {
    [addr, addr, "inet_proto", "inet_service", "inet_service"]
        .map(String::from)
        .to_vec()
}

/// The nft rules (expressions) one class's static matches compile to. A match with
/// prefixes becomes one rule per address family and direction (either end matches).
fn static_rules(class: &ClassSpec) -> Vec<Vec<Value>> {
    let mut rules = Vec::new();
    for matcher in &class.matches {
        for (ip, addresses) in address_alternatives(matcher) {
            let mut expr = vec![eq(class_bits(meta("mark")), json!(0))];
            if let Some((field, nets)) = addresses {
                expr.push(eq(
                    payload(ip.unwrap_or("ip"), field),
                    one_or_set(nets.iter().map(|net| prefix(net)).collect()),
                ));
            }
            let protocols: Vec<Value> = if matcher.protocols.is_empty() && !matcher.ports.is_empty()
            {
                // A port only means something for protocols that have ports.
                vec![json!(6), json!(17), json!(132)]
            } else {
                matcher.protocols.iter().map(|p| json!(p)).collect()
            };
            if !protocols.is_empty() {
                expr.push(eq(meta("l4proto"), one_or_set(protocols)));
            }
            if !matcher.ports.is_empty() {
                let ports = matcher
                    .ports
                    .iter()
                    .map(|span| {
                        if span.first == span.last {
                            json!(span.first)
                        } else {
                            json!({"range": [span.first, span.last]})
                        }
                    })
                    .collect();
                expr.push(eq(payload("th", "dport"), one_or_set(ports)));
            }
            if !matcher.dscp.is_empty() {
                let dscp = one_or_set(matcher.dscp.iter().map(|d| json!(d)).collect());
                expr.push(eq(payload(ip.unwrap_or("ip"), "dscp"), dscp));
            }
            expr.push(set_mark_bits(class.mark));
            expr.push(json!({"counter": null}));
            rules.push(expr);
        }
    }
    rules
}

type AddressMatch<'a> = Option<(&'static str, Vec<&'a IpNet>)>;

/// The (family, address match) combinations one static match expands to.
fn address_alternatives(matcher: &StaticMatch) -> Vec<(Option<&'static str>, AddressMatch<'_>)> {
    let v4: Vec<&IpNet> = matcher
        .prefixes
        .iter()
        .filter(|net| matches!(net, IpNet::V4(_)))
        .collect();
    let v6: Vec<&IpNet> = matcher
        .prefixes
        .iter()
        .filter(|net| matches!(net, IpNet::V6(_)))
        .collect();
    if matcher.prefixes.is_empty() {
        if matcher.dscp.is_empty() {
            return vec![(None, None)];
        }
        return vec![(Some("ip"), None), (Some("ip6"), None)];
    }
    let mut out = Vec::new();
    for (ip, nets) in [("ip", v4), ("ip6", v6)] {
        if nets.is_empty() {
            continue;
        }
        for field in ["daddr", "saddr"] {
            out.push((Some(ip), Some((field, nets.clone()))));
        }
    }
    out
}

/// What the kernel has of the table, from `nft -j list table inet wansteer`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NftListing {
    pub maps: BTreeMap<String, Vec<String>>,
    pub chains: BTreeMap<String, Option<BaseHook>>,
    /// Rule comments per chain, in order (a rule without comment lists as "").
    pub rules: BTreeMap<String, Vec<String>>,
}

impl NftListing {
    /// Reads the JSON listing; unknown objects are ignored.
    pub fn parse(listing: &Value) -> NftListing {
        let mut out = NftListing::default();
        let Some(objects) = listing.get("nftables").and_then(Value::as_array) else {
            return out;
        };
        for object in objects {
            if let Some(map) = object.get("map") {
                let name = map["name"].as_str().unwrap_or_default().to_string();
                let types = match &map["type"] {
                    Value::Array(types) => types
                        .iter()
                        .filter_map(|t| t.as_str().map(String::from))
                        .collect(),
                    Value::String(one) => vec![one.clone()],
                    _ => vec![],
                };
                out.maps.insert(name, types);
            } else if let Some(chain) = object.get("chain") {
                let name = chain["name"].as_str().unwrap_or_default().to_string();
                let hook = chain
                    .get("hook")
                    .and_then(Value::as_str)
                    .map(|hook| BaseHook {
                        kind: chain["type"].as_str().unwrap_or_default().to_string(),
                        hook: hook.to_string(),
                        priority: chain["prio"].as_i64().unwrap_or_default(),
                    });
                out.rules.entry(name.clone()).or_default();
                out.chains.insert(name, hook);
            } else if let Some(rule) = object.get("rule") {
                let chain = rule["chain"].as_str().unwrap_or_default().to_string();
                let comment = rule["comment"].as_str().unwrap_or_default().to_string();
                out.rules.entry(chain).or_default().push(comment);
            }
        }
        out
    }
}

fn table_ref() -> Value {
    json!({"family": "inet", "name": NFT_TABLE})
}

fn chain_ref(name: &str) -> Value {
    json!({"family": "inet", "table": NFT_TABLE, "name": name})
}

fn chain_def(chain: &ChainPlan) -> Value {
    let mut def = chain_ref(&chain.name);
    if let Some(hook) = &chain.hook {
        def["type"] = json!(hook.kind);
        def["hook"] = json!(hook.hook);
        def["prio"] = json!(hook.priority);
        def["policy"] = json!("accept");
    }
    def
}

fn map_def(map: &MapPlan) -> Value {
    json!({
        "family": "inet", "table": NFT_TABLE, "name": map.name,
        "type": map.key_types, "map": "mark", "flags": ["timeout"],
    })
}

fn rule_def(chain: &str, rule: &RulePlan) -> Value {
    json!({"family": "inet", "table": NFT_TABLE, "chain": chain,
           "expr": rule.expr, "comment": rule.comment})
}

/// The commands (one atomic `nft -j -f` batch) that turn `current` into `plan`;
/// empty when nothing differs. `current` is `None` when the table does not exist.
pub fn diff(plan: &NftPlan, current: Option<&NftListing>) -> Vec<Value> {
    let empty = NftListing::default();
    let mut commands = Vec::new();
    if current.is_none() {
        commands.push(json!({"add": {"table": table_ref()}}));
    }
    let current = current.unwrap_or(&empty);

    for map in &plan.maps {
        match current.maps.get(&map.name) {
            Some(types) if *types == map.key_types => {}
            Some(_) => {
                commands.push(json!({"delete": {"map": chain_ref(&map.name)}}));
                commands.push(json!({"add": {"map": map_def(map)}}));
            }
            None => commands.push(json!({"add": {"map": map_def(map)}})),
        }
    }

    // Chains whose hook changed are flushed and deleted first, then recreated.
    let mut rebuilt = Vec::new();
    for chain in &plan.chains {
        match current.chains.get(&chain.name) {
            Some(hook) if *hook == chain.hook => {}
            Some(_) => {
                commands.push(json!({"flush": {"chain": chain_ref(&chain.name)}}));
                commands.push(json!({"delete": {"chain": chain_ref(&chain.name)}}));
                rebuilt.push(chain.name.as_str());
            }
            None => rebuilt.push(chain.name.as_str()),
        }
    }
    for chain in &plan.chains {
        if rebuilt.contains(&chain.name.as_str()) {
            commands.push(json!({"add": {"chain": chain_def(chain)}}));
        }
    }
    for chain in &plan.chains {
        let wanted: Vec<&str> = chain.rules.iter().map(|r| r.comment.as_str()).collect();
        let have: Vec<&str> = current
            .rules
            .get(&chain.name)
            .map(|rules| rules.iter().map(String::as_str).collect())
            .unwrap_or_default();
        let fresh = rebuilt.contains(&chain.name.as_str());
        if !fresh && wanted == have {
            continue;
        }
        if !fresh {
            commands.push(json!({"flush": {"chain": chain_ref(&chain.name)}}));
        }
        for rule in &chain.rules {
            commands.push(json!({"add": {"rule": rule_def(&chain.name, rule)}}));
        }
    }
    // Chains and maps wansteer no longer wants (flush all first: they may jump to each other).
    let stale: Vec<&String> = current
        .chains
        .keys()
        .filter(|name| !plan.chains.iter().any(|chain| chain.name == **name))
        .collect();
    for name in &stale {
        commands.push(json!({"flush": {"chain": chain_ref(name)}}));
    }
    for name in &stale {
        commands.push(json!({"delete": {"chain": chain_ref(name)}}));
    }
    for name in current.maps.keys() {
        if !plan.maps.iter().any(|map| map.name == *name) {
            commands.push(json!({"delete": {"map": chain_ref(name)}}));
        }
    }
    commands
}

/// Wraps commands into the document `nft -j -f` reads.
pub fn batch(commands: Vec<Value>) -> Value {
    json!({ "nftables": commands })
}

/// The `nft -j` command that removes the whole table.
pub fn delete_table() -> Value {
    batch(vec![json!({"delete": {"table": table_ref()}})])
}

/// One flow's 5-tuple as the classifier saw it (original direction).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub source: std::net::IpAddr,
    pub destination: std::net::IpAddr,
    pub protocol: u8,
    pub source_port: u16,
    pub destination_port: u16,
}

/// The nft command (text syntax) that adds a DPI verdict: the flow gets class `mark` for
/// `timeout_secs` (the element expires on its own). `None` when the addresses mix families.
pub fn dpi_element(flow: &FlowKey, mark: u32, timeout_secs: u64) -> Option<String> {
    let map = match (flow.source, flow.destination) {
        (std::net::IpAddr::V4(_), std::net::IpAddr::V4(_)) => DPI_MAP_V4,
        (std::net::IpAddr::V6(_), std::net::IpAddr::V6(_)) => DPI_MAP_V6,
        _ => return None,
    };
    Some(format!(
        "add element inet {NFT_TABLE} {map} {{ {} . {} . {} . {} . {} timeout {}s : {:#x} }}",
        flow.source,
        flow.destination,
        flow.protocol,
        flow.source_port,
        flow.destination_port,
        timeout_secs.max(1),
        mark
    ))
}
