//! The data plane against a real kernel: each test builds its own pair of network
//! namespaces — a site running the data plane with two WAN lines (`wan0` "mpls",
//! `wan1` "inet", veth pairs) and a far end holding the remote LAN 10.200.0.0/24 — and
//! removes them on drop, also on panic. Needs root, `ip`, `tc`, `nft`, `conntrack`.

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::process::Command;

use serde_json::Value;
use wansteer_agent::dataplane::kernel::KernelError;
use wansteer_agent::dataplane::nft::FlowKey;
use wansteer_agent::dataplane::reconcile::cleanup;
use wansteer_agent::dataplane::{
    Dataplane, DataplaneError, FailoverState, Kernel, LineEvent, RuleSetError,
};
use wansteer_wire::ruleset::{
    ClassRoute, ClassShare, ClassSpec, LineSpec, PortSpan, RuleSet, StaticMatch,
};

mod support;

use support::{SiteLab, in_ns, nft_in, sh};

/// The shared two-line site with a LAN host, and far-end counters per arrival line.
struct Lab(SiteLab);

impl std::ops::Deref for Lab {
    type Target = SiteLab;
    fn deref(&self) -> &SiteLab {
        &self.0
    }
}

impl Lab {
    fn new() -> Lab {
        let lab = Lab(SiteLab::with_lan("N"));
        // The far end counts what arrives per line and with DSCP EF.
        let counters = r#"table inet wsttest {
            chain pre { type filter hook prerouting priority 0;
                iifname "w0" udp dport 5000-5999 counter comment "w0"
                iifname "w1" udp dport 5000-5999 counter comment "w1"
                ip dscp ef udp dport 5000-5999 counter comment "ef"
                iifname "w1" ip saddr 10.100.2.2 udp dport 5000-5999 counter comment "w1 from inet address"
            }
        }"#;
        nft_in(&lab.far, counters);
        lab
    }

    fn kernel(&self) -> Kernel {
        Kernel::in_netns(&self.site)
    }

    /// Sends `count` datagrams on `socket` to the far LAN and returns what arrived where.
    fn send(&self, socket: &UdpSocket, port: u16, count: usize) -> BTreeMap<String, u64> {
        let before = self.far_counts();
        let target: SocketAddr = format!("10.200.0.1:{port}").parse().unwrap();
        for _ in 0..count {
            socket.send_to(b"wansteer test payload", target).unwrap();
        }
        // HTB may hold a burst back for a few ms: wait until every datagram is counted.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
        loop {
            let after = self.far_counts();
            let delta: BTreeMap<String, u64> = after
                .into_iter()
                .map(|(name, n)| {
                    let delta = n - before.get(&name).copied().unwrap_or(0);
                    (name, delta)
                })
                .collect();
            let arrived = delta["w0"] + delta["w1"];
            if arrived >= count as u64 || std::time::Instant::now() > deadline {
                return delta;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// Everything a user would compare to see whether the kernel state changed.
    fn snapshot(&self) -> String {
        let site = self.site.as_str();
        let mut out = String::new();
        // Element countdowns (`expires`) tick; everything else must not move.
        let mut nft: Value = serde_json::from_str(&sh(&[
            "ip", "netns", "exec", site, "nft", "-j", "list", "ruleset",
        ]))
        .unwrap();
        strip_expires(&mut nft);
        out += &nft.to_string();
        out += &sh(&["ip", "-n", site, "-j", "nexthop", "show"]);
        for family in ["-4", "-6"] {
            out += &sh(&["ip", "-n", site, family, "-j", "rule", "show"]);
            out += &sh(&[
                "ip", "-n", site, family, "-j", "route", "show", "table", "all",
            ]);
        }
        for dev in ["wan0", "wan1"] {
            out += &sh(&["tc", "-n", site, "-j", "qdisc", "show", "dev", dev]);
            out += &sh(&["tc", "-n", site, "class", "show", "dev", dev]);
        }
        out
    }

    /// Packets HTB class `5753:<minor>` on `dev` has sent.
    fn htb_packets(&self, dev: &str, minor: u32) -> u64 {
        let text = sh(&["tc", "-n", &self.site, "-s", "class", "show", "dev", dev]);
        let wanted = format!("class htb 5753:{minor:x} ");
        let mut lines = text.lines();
        while let Some(line) = lines.next() {
            if line.starts_with(&wanted) {
                let sent = lines.next().unwrap();
                let words: Vec<&str> = sent.split_whitespace().collect();
                return words[3].parse().unwrap();
            }
        }
        panic!("no HTB class {wanted} on {dev}:\n{text}");
    }
}

fn strip_expires(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.remove("expires");
            map.values_mut().for_each(strip_expires);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_expires),
        _ => {}
    }
}

/// A UDP socket living in namespace `ns`.
fn socket_in(ns: &str) -> UdpSocket {
    in_ns(ns, || UdpSocket::bind("0.0.0.0:0").unwrap())
}

fn class(name: &str, mark: u32, priority: u8, dscp: u8, ports: Option<(u16, u16)>) -> ClassSpec {
    ClassSpec {
        name: name.into(),
        mark,
        priority,
        dscp,
        matches: ports
            .map(|(first, last)| {
                vec![StaticMatch {
                    protocols: vec![17],
                    ports: vec![PortSpan { first, last }],
                    ..StaticMatch::default()
                }]
            })
            .unwrap_or_default(),
        apps: vec![],
        domains: vec![],
    }
}

fn share(class: &str, rate: u64, ceil: u64) -> ClassShare {
    ClassShare {
        class: class.into(),
        rate_bps: rate,
        ceil_bps: ceil,
    }
}

fn route(class: &str, primary: &str, backup: &str) -> ClassRoute {
    ClassRoute {
        class: class.into(),
        destination: "10.200.0.0/24".parse().unwrap(),
        primary: primary.into(),
        backups: vec![backup.into()],
        reason: "test".into(),
    }
}

/// voice (udp 5000-5099, EF) on mpls, bulk (udp 5100-5199) on inet, the rest on mpls.
fn ruleset(version: u64) -> RuleSet {
    RuleSet {
        site: "branch-1".into(),
        version,
        hash: String::new(),
        classes: vec![
            class("voice", 1, 1, 46, Some((5000, 5099))),
            class("bulk", 2, 5, 10, Some((5100, 5199))),
            class("default", 3, 7, 0, None),
        ],
        default_class: "default".into(),
        lines: vec![
            LineSpec {
                name: "mpls".into(),
                interface: "wan0".into(),
                gateway: Some("10.100.1.1".parse().unwrap()),
                gateway6: None,
                rate_bps: 50_000_000,
                shares: vec![
                    share("voice", 5_000_000, 15_000_000),
                    share("bulk", 10_000_000, 50_000_000),
                    share("default", 5_000_000, 50_000_000),
                ],
            },
            LineSpec {
                name: "inet".into(),
                interface: "wan1".into(),
                gateway: Some("10.100.2.1".parse().unwrap()),
                gateway6: None,
                rate_bps: 20_000_000,
                shares: vec![
                    share("voice", 2_000_000, 6_000_000),
                    share("bulk", 10_000_000, 20_000_000),
                ],
            },
        ],
        routes: vec![
            route("voice", "mpls", "inet"),
            route("bulk", "inet", "mpls"),
            route("default", "mpls", "inet"),
        ],
    }
    .seal()
}

fn dataplane(lab: &Lab) -> Dataplane {
    Dataplane::new(lab.kernel(), FailoverState::with_controller())
}

#[test]
fn a_rule_set_installs_tagged_state_and_reapplying_changes_nothing() {
    let lab = Lab::new();
    let mut dp = dataplane(&lab);
    let first = dp.apply(ruleset(1)).unwrap();
    // 3 class routes and 2 arrival-line defaults; 3 class and 2 line rules per family.
    assert!(
        first.nft_commands > 0 && first.route_commands == 5 && first.rule_commands == 10,
        "{first:?}"
    );

    let site = lab.site.as_str();
    let nft = sh(&[
        "ip", "netns", "exec", site, "nft", "list", "table", "inet", "wansteer",
    ]);
    for needle in [
        "map dpi4",
        "flags timeout",
        "meta priority set 5753:1",
        "ip dscp set ef",
        "ct mark set meta mark",
        "udp dport 5000-5099",
    ] {
        assert!(nft.contains(needle), "nft table lacks `{needle}`:\n{nft}");
    }
    let rules = sh(&["ip", "-n", site, "rule", "show"]);
    assert!(
        rules.contains("21001:\tfrom all fwmark 0x1/0xff lookup 21001 proto 201"),
        "{rules}"
    );
    let routes = sh(&["ip", "-n", site, "route", "show", "table", "21002"]);
    assert_eq!(
        without_nhid(&routes),
        "10.200.0.0/24 via 10.100.2.1 dev wan1 proto 201"
    );
    // Class routes point at a tagged nexthop per line chain (mpls-then-inet for voice
    // and default, inet-then-mpls for bulk; IPv4 only).
    let nexthops = sh(&["ip", "-n", site, "nexthop", "show"]);
    assert_eq!(
        nexthops.lines().filter(|l| l.contains("proto 201")).count(),
        2,
        "{nexthops}"
    );
    let nhid = routes
        .split_whitespace()
        .skip_while(|w| *w != "nhid")
        .nth(1);
    assert!(
        nhid.is_some_and(|id| nexthops.contains(&format!("id {id} via 10.100.2.1 dev wan1"))),
        "{routes} / {nexthops}"
    );
    let classes = sh(&["tc", "-n", site, "class", "show", "dev", "wan0"]);
    assert!(
        classes.contains("class htb 5753:1 parent 5753:100 prio 0 rate 5Mbit ceil 15Mbit"),
        "{classes}"
    );

    // A DPI verdict in the map must survive the restart below.
    let flow = FlowKey {
        source: "10.1.0.2".parse().unwrap(),
        destination: "10.200.0.1".parse().unwrap(),
        protocol: 6,
        source_port: 40000,
        destination_port: 443,
    };
    dp.add_dpi_verdict(&flow, "bulk", std::time::Duration::from_secs(600))
        .unwrap();
    let verdict = "10.1.0.2 . 10.200.0.1 . tcp . 40000 . 443";

    let before = lab.snapshot();
    let again = dp.apply(ruleset(2)).unwrap();
    assert_eq!(again.changes(), 0, "same content, new version: {again:?}");

    // A restarted agent (fresh process state) adopts what is there without a change.
    let mut restarted = dataplane(&lab);
    let adopted = restarted.apply(ruleset(2)).unwrap();
    assert_eq!(adopted.changes(), 0, "{adopted:?}");
    assert_eq!(
        lab.snapshot(),
        before,
        "kernel state must be byte-identical"
    );
    let map = sh(&[
        "ip", "netns", "exec", site, "nft", "list", "map", "inet", "wansteer", "dpi4",
    ]);
    assert!(
        map.contains(verdict),
        "DPI verdicts survive a restart:\n{map}"
    );
}

#[test]
fn each_class_leaves_by_its_line_with_its_dscp_and_htb_class() {
    let lab = Lab::new();
    let mut dp = dataplane(&lab);
    dp.apply(ruleset(1)).unwrap();
    let socket = socket_in(&lab.site);

    let htb_voice = lab.htb_packets("wan0", 1);
    let voice = lab.send(&socket, 5004, 40);
    assert_eq!(
        (voice["w0"], voice["w1"], voice["ef"]),
        (40, 0, 40),
        "{voice:?}"
    );
    assert!(
        lab.htb_packets("wan0", 1) >= htb_voice + 40,
        "voice lands in HTB 5753:1"
    );

    let bulk = lab.send(&socket, 5150, 40);
    assert_eq!((bulk["w0"], bulk["w1"], bulk["ef"]), (0, 40, 0), "{bulk:?}");
    assert!(
        lab.htb_packets("wan1", 2) >= 40,
        "bulk lands in HTB 5753:2 on inet"
    );

    let other = lab.send(&socket, 5900, 40);
    assert_eq!(
        (other["w0"], other["w1"], other["ef"]),
        (40, 0, 0),
        "{other:?}"
    );
    assert!(lab.htb_packets("wan0", 3) >= 40);
}

#[test]
fn a_route_move_is_one_replace_and_moves_the_existing_flow() {
    let lab = Lab::new();
    let mut dp = dataplane(&lab);
    dp.apply(ruleset(1)).unwrap();
    let socket = socket_in(&lab.site);
    let before = lab.send(&socket, 5010, 20);
    assert_eq!(before["w0"], 20);

    let mut moved = ruleset(2);
    moved.routes[0] = route("voice", "inet", "mpls");
    let report = dp.apply(moved.seal()).unwrap();
    assert_eq!(report.route_commands, 1, "{report:?}");
    assert_eq!(
        report.changes() - report.flows_moved.len(),
        1,
        "only the route: {report:?}"
    );
    assert_eq!(report.flows_moved.len(), 1);
    assert!(report.conntrack_entries_deleted >= 1, "{report:?}");
    let table = sh(&["ip", "-n", &lab.site, "route", "show", "table", "21001"]);
    assert_eq!(
        without_nhid(&table),
        "10.200.0.0/24 via 10.100.2.1 dev wan1 proto 201",
        "still tagged"
    );

    // Same socket, same 5-tuple: the existing flow now leaves by inet, still EF.
    let after = lab.send(&socket, 5010, 20);
    assert_eq!(
        (after["w0"], after["w1"], after["ef"]),
        (0, 20, 20),
        "{after:?}"
    );
}

/// A route listing without the nexthop ids (hashes of the line chain).
fn without_nhid(listing: &str) -> String {
    let mut words = Vec::new();
    let mut skip = false;
    for word in listing.split_whitespace() {
        if std::mem::take(&mut skip) {
            continue;
        }
        if word == "nhid" {
            skip = true;
            continue;
        }
        words.push(word);
    }
    words.join(" ")
}

/// Conntrack entries in the site towards `destination` (the `conntrack` CLI as an
/// independent check of what the data plane deleted over ctnetlink).
fn conntrack_entries(lab: &Lab, destination: &str) -> usize {
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.site,
            "conntrack",
            "-L",
            "-d",
            destination,
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|line| line.contains(&format!("dst={destination} ")))
        .count()
}

#[test]
fn a_pushed_move_touches_only_the_changed_route_and_its_flows() {
    let lab = Lab::new();
    let mut dp = dataplane(&lab);
    let mut two_destinations = ruleset(1);
    let mut other = route("voice", "mpls", "inet");
    other.destination = "10.201.0.0/24".parse().unwrap();
    two_destinations.routes.push(other.clone());
    dp.apply(two_destinations.clone().seal()).unwrap();
    let socket = socket_in(&lab.site);
    // Two voice flows: one to each destination (the second needs no listener: the
    // conntrack entry is made on the way out; the main route only lets the socket send).
    sh(&[
        "ip",
        "-n",
        &lab.site,
        "route",
        "add",
        "10.201.0.0/24",
        "via",
        "10.100.1.1",
    ]);
    lab.send(&socket, 5010, 3);
    socket.send_to(b"voice", "10.201.0.5:5010").unwrap();
    assert_eq!(conntrack_entries(&lab, "10.200.0.1"), 1);
    assert_eq!(conntrack_entries(&lab, "10.201.0.5"), 1);
    // Both are known from conntrack events: the move below needs no table walk. (The
    // event is read by a thread, or at the latest when a move asks.)
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while dp.indexed_flows() < Some(2) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(dp.indexed_flows(), Some(2));

    // A push that names a line the rule set does not have is refused; nothing moves.
    let mut bad = two_destinations.clone();
    bad.version = 2;
    bad.routes[0] = route("voice", "satellite", "mpls");
    let refused = dp.apply(bad.seal()).unwrap_err();
    assert!(
        matches!(
            refused,
            DataplaneError::RuleSet(RuleSetError::UnknownLine { .. })
        ),
        "{refused}"
    );
    // So is one whose hash does not match its content.
    let mut unsealed = two_destinations.clone().seal();
    unsealed.routes[0] = route("voice", "inet", "mpls");
    assert!(matches!(
        dp.apply(unsealed).unwrap_err(),
        DataplaneError::RuleSet(RuleSetError::NotSealed { .. })
    ));
    let table = sh(&["ip", "-n", &lab.site, "route", "show", "table", "21001"]);
    assert!(
        without_nhid(&table).contains("10.200.0.0/24 via 10.100.1.1 dev wan0"),
        "{table}"
    );

    // Voice to 10.200.0.0/24 moves to inet; voice to 10.201.0.0/24 stays on mpls.
    let mut moved = two_destinations.clone();
    moved.version = 3;
    moved.routes[0] = route("voice", "inet", "mpls");
    let report = dp.apply_from_controller(moved.seal()).unwrap();
    assert_eq!(report.route_commands, 1, "{report:?}");
    assert_eq!(report.conntrack_entries_deleted, 1, "{report:?}");
    assert_eq!(
        conntrack_entries(&lab, "10.200.0.1"),
        0,
        "the moved flow is cleared"
    );
    assert_eq!(
        conntrack_entries(&lab, "10.201.0.5"),
        1,
        "the flow whose route did not move keeps its entry"
    );
    let table = sh(&["ip", "-n", &lab.site, "route", "show", "table", "21001"]);
    assert!(
        without_nhid(&table).contains("10.200.0.0/24 via 10.100.2.1 dev wan1 proto 201"),
        "{table}"
    );
    assert!(
        without_nhid(&table).contains("10.201.0.0/24 via 10.100.1.1 dev wan0 proto 201"),
        "{table}"
    );
    let after = lab.send(&socket, 5010, 10);
    assert_eq!((after["w0"], after["w1"]), (0, 10), "{after:?}");

    // Dropping a destination removes its route only.
    let mut fewer = two_destinations;
    fewer.version = 4;
    fewer.routes[0] = route("voice", "inet", "mpls");
    fewer.routes.pop();
    let report = dp.apply(fewer.seal()).unwrap();
    assert_eq!(report.route_commands, 1, "{report:?}");
    let table = sh(&["ip", "-n", &lab.site, "route", "show", "table", "21001"]);
    assert_eq!(
        without_nhid(&table),
        "10.200.0.0/24 via 10.100.2.1 dev wan1 proto 201"
    );
}

/// A UDP socket bound to `address` in namespace `ns`.
fn socket_bound_in(ns: &str, address: &str) -> UdpSocket {
    let address = address.to_string();
    in_ns(ns, move || UdpSocket::bind(address).unwrap())
}

#[test]
fn replies_leave_by_the_line_their_connection_arrived_on() {
    let lab = Lab::new();
    let mut dp = dataplane(&lab);
    dp.apply(ruleset(1)).unwrap();
    // The far side (a branch) reaches the LAN host behind this site (the hub) over inet,
    // although the class of this traffic (default) is routed over mpls here.
    sh(&[
        "ip",
        "-n",
        &lab.far,
        "route",
        "add",
        "10.1.0.2/32",
        "via",
        "10.100.2.2",
    ]);
    let branch = socket_bound_in(&lab.far, "10.200.0.1:5950");
    let server = socket_bound_in(lab.lan(), "10.1.0.2:7000");
    server
        .set_read_timeout(Some(std::time::Duration::from_secs(3)))
        .unwrap();
    let mut buffer = [0u8; 64];
    let before = lab.far_counts();
    for _ in 0..5 {
        branch.send_to(b"request", "10.1.0.2:7000").unwrap();
        let (_, from) = server.recv_from(&mut buffer).unwrap();
        assert_eq!(from.to_string(), "10.200.0.1:5950");
        server.send_to(b"reply", from).unwrap();
    }
    branch
        .set_read_timeout(Some(std::time::Duration::from_secs(3)))
        .unwrap();
    for _ in 0..5 {
        branch.recv_from(&mut buffer).expect("the reply arrives");
    }
    let after = lab.far_counts();
    let by_line = |name: &str| after[name] - before.get(name).copied().unwrap_or(0);
    assert_eq!(
        (by_line("w0"), by_line("w1")),
        (0, 5),
        "replies leave by inet, the line the connection came in on"
    );
    // The conntrack mark holds the class (3) and the arrival line (inet is line 2).
    let entries = sh(&[
        "ip",
        "netns",
        "exec",
        &lab.site,
        "conntrack",
        "-L",
        "-d",
        "10.1.0.2",
    ]);
    assert!(entries.contains("mark=515"), "{entries}");

    // The branch fails over to mpls: the same connection now comes in over mpls, and its
    // replies follow at once.
    sh(&[
        "ip",
        "-n",
        &lab.far,
        "route",
        "replace",
        "10.1.0.2/32",
        "via",
        "10.100.1.2",
    ]);
    let before = lab.far_counts();
    for _ in 0..5 {
        branch.send_to(b"request", "10.1.0.2:7000").unwrap();
        let (_, from) = server.recv_from(&mut buffer).unwrap();
        server.send_to(b"reply", from).unwrap();
        branch.recv_from(&mut buffer).expect("the reply arrives");
    }
    let after = lab.far_counts();
    let by_line = |name: &str| after[name] - before.get(name).copied().unwrap_or(0);
    assert_eq!(
        (by_line("w0"), by_line("w1")),
        (5, 0),
        "replies follow to mpls"
    );

    // A connection this side starts, same class, still follows the class: mpls.
    let host = socket_in(lab.lan());
    let own = lab.send(&host, 5950, 5);
    assert_eq!((own["w0"], own["w1"]), (5, 0), "{own:?}");
}

#[test]
fn an_ipv6_destination_leaves_by_its_line_with_its_traffic_class() {
    let lab = Lab::new();
    let (site, far) = (lab.site.as_str(), lab.far.as_str());
    for (ns, devices) in [(site, ["wan0", "wan1"]), (far, ["w0", "w1"])] {
        for dev in ["all", "default", devices[0], devices[1], "lo"] {
            sh(&[
                "ip",
                "netns",
                "exec",
                ns,
                "sysctl",
                "-qw",
                &format!("net.ipv6.conf.{dev}.disable_ipv6=0"),
            ]);
        }
    }
    for (ns, dev, addr) in [
        (site, "wan0", "fd00:1::2/64"),
        (site, "wan1", "fd00:2::2/64"),
        (far, "w0", "fd00:1::1/64"),
        (far, "w1", "fd00:2::1/64"),
        (far, "lo", "fd00:200::1/128"),
    ] {
        sh(&[
            "ip", "-n", ns, "-6", "addr", "add", addr, "dev", dev, "nodad",
        ]);
    }
    // The socket's own route lookup needs a path; the class table decides the line.
    sh(&[
        "ip",
        "-n",
        site,
        "-6",
        "route",
        "add",
        "fd00:200::/64",
        "via",
        "fd00:1::1",
    ]);
    nft_in(
        far,
        "add rule inet wsttest pre ip6 dscp ef udp dport 5000-5999 counter comment \"ef6\"\n",
    );

    let mut rules = ruleset(1);
    rules.lines[0].gateway6 = Some("fd00:1::1".parse().unwrap());
    rules.lines[1].gateway6 = Some("fd00:2::1".parse().unwrap());
    let mut voice6 = route("voice", "inet", "mpls");
    voice6.destination = "fd00:200::/64".parse().unwrap();
    rules.routes.push(voice6);
    let mut dp = dataplane(&lab);
    dp.apply(rules.seal()).unwrap();
    let table = sh(&["ip", "-n", site, "-6", "route", "show", "table", "21001"]);
    assert!(
        without_nhid(&table).contains("fd00:200::/64 via fd00:2::1 dev wan1 proto 201"),
        "{table}"
    );

    let socket = socket_bound_in(site, "[::]:0");
    let htb_before = lab.htb_packets("wan1", 1);
    let before = lab.far_counts();
    for _ in 0..20 {
        socket
            .send_to(b"voice over v6", "[fd00:200::1]:5010")
            .unwrap();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    let delta = loop {
        let after = lab.far_counts();
        let delta: BTreeMap<String, u64> = after
            .into_iter()
            .map(|(name, n)| {
                let d = n - before.get(&name).copied().unwrap_or(0);
                (name, d)
            })
            .collect();
        if delta["w0"] + delta["w1"] >= 20 || std::time::Instant::now() > deadline {
            break delta;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    assert_eq!(
        (delta["w0"], delta["w1"], delta["ef6"]),
        (0, 20, 20),
        "voice to fd00:200::/64 leaves by inet with traffic class EF: {delta:?}"
    );
    assert!(
        lab.htb_packets("wan1", 1) >= htb_before + 20,
        "and lands in HTB 5753:1"
    );
}

#[test]
fn htb_rates_above_4_gbit_go_in_and_read_back_unchanged() {
    let lab = Lab::new();
    let mut fast = ruleset(1);
    // 40 Gbit/s is 5e9 bytes/s: beyond the 32-bit rate field, so TCA_HTB_RATE64/CEIL64.
    fast.lines[0].rate_bps = 40_000_000_000;
    fast.lines[0].shares[1] = share("bulk", 36_000_000_000, 40_000_000_000);
    let fast = fast.seal();
    let mut dp = dataplane(&lab);
    dp.apply(fast.clone()).unwrap();
    let classes = sh(&["tc", "-n", &lab.site, "class", "show", "dev", "wan0"]);
    assert!(
        classes.contains("class htb 5753:100 root rate 40Gbit ceil 40Gbit"),
        "{classes}"
    );
    assert!(
        classes.contains("class htb 5753:2 parent 5753:100 prio 4 rate 36Gbit ceil 40Gbit"),
        "{classes}"
    );
    let mut restarted = dataplane(&lab);
    let again = restarted.apply(fast).unwrap();
    assert_eq!(again.qdisc_commands, 0, "{again:?}");
}

#[test]
fn a_new_default_class_rebuilds_the_htb_tree() {
    let lab = Lab::new();
    let mut dp = dataplane(&lab);
    dp.apply(ruleset(1)).unwrap();
    let mut bulk_default = ruleset(2);
    bulk_default.default_class = "bulk".into();
    let bulk_default = bulk_default.seal();
    // HTB cannot change its default in place; the tree is rebuilt instead of failing.
    dp.apply(bulk_default.clone()).unwrap();
    for dev in ["wan0", "wan1"] {
        let qdisc = sh(&["tc", "-n", &lab.site, "qdisc", "show", "dev", dev]);
        assert!(
            qdisc.contains("qdisc htb 5753: root") && qdisc.contains("default 0x2"),
            "{qdisc}"
        );
        let classes = sh(&["tc", "-n", &lab.site, "class", "show", "dev", dev]);
        assert!(
            classes.contains("class htb 5753:1 parent 5753:100"),
            "{classes}"
        );
    }
    let again = dataplane(&lab).apply(bulk_default).unwrap();
    assert_eq!(again.changes(), 0, "{again:?}");
}

#[test]
fn cleanup_removes_what_wansteer_owns_and_nothing_else() {
    let lab = Lab::new();
    let site = lab.site.as_str();
    // Someone else's rule, route and table must survive.
    sh(&[
        "ip", "-n", site, "rule", "add", "priority", "21005", "fwmark", "0x5", "table", "100",
    ]);
    sh(&[
        "ip",
        "-n",
        site,
        "route",
        "add",
        "10.201.0.0/24",
        "via",
        "10.100.1.1",
        "table",
        "21001",
    ]);
    sh(&["ip", "-n", site, "nexthop", "add", "id", "7", "dev", "wan0"]);
    nft_in(
        site,
        "table inet other {\n chain c {\n type filter hook input priority 0;\n }\n}\n",
    );
    let pristine = lab.snapshot();

    let mut dp = dataplane(&lab);
    dp.apply(ruleset(1)).unwrap();
    assert_ne!(lab.snapshot(), pristine);
    let report = cleanup(&lab.kernel()).unwrap();
    assert!(
        report.nft_table
            && report.rules == 10
            && report.routes == 5
            && report.nexthops == 2
            && report.qdiscs == 2,
        "{report:?}"
    );
    assert_eq!(lab.snapshot(), pristine);
    let twice = cleanup(&lab.kernel()).unwrap();
    assert_eq!(
        (twice.nft_table, twice.rules, twice.routes, twice.qdiscs),
        (false, 0, 0, 0)
    );
    assert_eq!(lab.snapshot(), pristine);
}

#[test]
fn a_bad_rule_set_is_refused_whole_and_the_working_state_stays() {
    let lab = Lab::new();
    let mut dp = dataplane(&lab);
    dp.apply(ruleset(1)).unwrap();
    let working = lab.snapshot();

    let mut unsealed = ruleset(2);
    unsealed.routes[0].primary = "inet".into();
    let error = dp.apply(unsealed).unwrap_err();
    assert!(
        matches!(
            error,
            DataplaneError::RuleSet(RuleSetError::NotSealed { .. })
        ),
        "{error}"
    );

    let mut unknown = ruleset(2);
    unknown.routes[1].backups = vec!["satellite".into()];
    let error = dp.apply(unknown.seal()).unwrap_err();
    assert!(
        matches!(
            error,
            DataplaneError::RuleSet(RuleSetError::UnknownLine { .. })
        ),
        "{error}"
    );

    let mut missing = ruleset(2);
    missing.lines[1].interface = "wan9".into();
    missing.routes[0].primary = "inet".into();
    let error = dp.apply(missing.seal()).unwrap_err();
    assert!(
        matches!(error, DataplaneError::RuleSet(RuleSetError::MissingInterface { ref interface, .. }) if interface == "wan9"),
        "{error}"
    );
    assert_eq!(lab.snapshot(), working, "nothing changed");
    assert_eq!(dp.ruleset().unwrap().version, 1);
}

#[test]
fn a_failing_nft_transaction_changes_nothing() {
    let lab = Lab::new();
    let mut dp = dataplane(&lab);
    dp.apply(ruleset(1)).unwrap();
    let working = lab.snapshot();
    let mut moved = ruleset(2);
    moved.routes[0] = route("voice", "inet", "mpls");
    moved.classes[0].matches[0].ports[0].last = 5199;
    // Someone replaced the DPI map with a set of the same name: the agent's transaction
    // (re-add the map, refill `classify`) must fail in nft, as a whole.
    nft_in(
        &lab.site,
        "flush chain inet wansteer classify\ndelete map inet wansteer dpi4\n",
    );
    nft_in(
        &lab.site,
        "add set inet wansteer dpi4 { type ipv4_addr; }\n",
    );
    let broken = lab.snapshot();
    assert_ne!(broken, working);
    let error = dp.apply(moved.seal()).unwrap_err();
    assert!(
        matches!(error, DataplaneError::Kernel(KernelError::Failed { ref command, .. }) if command.starts_with("nft")),
        "{error}"
    );
    assert_eq!(
        lab.snapshot(),
        broken,
        "a failed nft batch must not leave partial changes"
    );
    assert_eq!(
        dp.ruleset().unwrap().version,
        1,
        "the old rule set stays in force"
    );
}

#[test]
fn a_dead_line_moves_its_classes_to_the_backup_at_once() {
    let lab = Lab::new();
    let mut dp = dataplane(&lab);
    dp.apply(ruleset(1)).unwrap();
    let socket = socket_in(&lab.site);
    assert_eq!(lab.send(&socket, 5020, 10)["w0"], 10);

    let now = tokio::time::Instant::now();
    let report = dp
        .on_line_event(
            &LineEvent {
                line: "mpls".into(),
                up: false,
            },
            now,
        )
        .unwrap();
    // voice and default were on mpls (one chain, mpls then inet): its nexthop is the
    // one change; bulk already on inet. No route is touched.
    assert_eq!(
        (report.nexthop_commands, report.route_commands),
        (1, 0),
        "{report:?}"
    );
    let told: Vec<(&str, &str)> = report
        .on_backup
        .iter()
        .map(|b| (b.class.as_str(), b.line.as_str()))
        .collect();
    assert_eq!(
        told,
        vec![("default", "inet"), ("voice", "inet")],
        "what the controller hears"
    );
    let voice = lab.send(&socket, 5020, 10);
    assert_eq!((voice["w0"], voice["w1"]), (0, 10), "{voice:?}");
    let other = lab.send(&socket, 5900, 10);
    assert_eq!((other["w0"], other["w1"]), (0, 10), "{other:?}");

    // The line coming back does not move anything until the controller says so.
    let back = dp
        .on_line_event(
            &LineEvent {
                line: "mpls".into(),
                up: true,
            },
            now,
        )
        .unwrap();
    assert_eq!(back.changes(), 0);
    assert_eq!(lab.send(&socket, 5020, 10)["w1"], 10);
    let restored = dp.apply_from_controller(ruleset(3)).unwrap();
    assert_eq!(
        (restored.nexthop_commands, restored.route_commands),
        (1, 0),
        "{restored:?}"
    );
    assert!(restored.on_backup.is_empty());
    assert_eq!(lab.send(&socket, 5020, 10)["w0"], 10);
}

#[test]
fn forwarded_lan_traffic_is_steered_marked_and_shaped() {
    let lab = Lab::new();
    let mut dp = dataplane(&lab);
    dp.apply(ruleset(1)).unwrap();
    let host = socket_in(lab.lan());

    let htb_voice = lab.htb_packets("wan0", 1);
    let voice = lab.send(&host, 5030, 30);
    assert_eq!(
        (voice["w0"], voice["w1"], voice["ef"]),
        (30, 0, 30),
        "{voice:?}"
    );
    assert!(
        lab.htb_packets("wan0", 1) >= htb_voice + 30,
        "priority set in postrouting sticks for forwarded packets"
    );
    let bulk = lab.send(&host, 5130, 30);
    assert_eq!((bulk["w0"], bulk["w1"], bulk["ef"]), (0, 30, 0), "{bulk:?}");

    dp.on_line_event(
        &LineEvent {
            line: "mpls".into(),
            up: false,
        },
        tokio::time::Instant::now(),
    )
    .unwrap();
    let voice = lab.send(&host, 5030, 30);
    assert_eq!(
        (voice["w0"], voice["w1"], voice["ef"]),
        (0, 30, 30),
        "{voice:?}"
    );
}

#[test]
fn a_dpi_verdict_reclassifies_a_running_flow() {
    let lab = Lab::new();
    let mut dp = dataplane(&lab);
    dp.apply(ruleset(1)).unwrap();
    let host = socket_in(lab.lan());
    // Port 5900 matches no static rule: default class, on mpls.
    assert_eq!(lab.send(&host, 5900, 10)["w0"], 10);

    let flow = FlowKey {
        source: "10.1.0.2".parse().unwrap(),
        destination: "10.200.0.1".parse().unwrap(),
        protocol: 17,
        source_port: host.local_addr().unwrap().port(),
        destination_port: 5900,
    };
    dp.add_dpi_verdict(&flow, "bulk", std::time::Duration::from_secs(60))
        .unwrap();
    let after = lab.send(&host, 5900, 10);
    assert_eq!(
        (after["w0"], after["w1"]),
        (0, 10),
        "the classifier's verdict wins: {after:?}"
    );
    // A flow the verdict does not name stays where it was.
    let other = socket_in(lab.lan());
    assert_eq!(lab.send(&other, 5900, 10)["w0"], 10);
    assert!(matches!(
        dp.add_dpi_verdict(&flow, "video", std::time::Duration::from_secs(60)),
        Err(DataplaneError::UnknownClass(_))
    ));
}

const POLICY: &str = r#"
sites:
  - name: branch-1
    kind: branch
    lan: [10.1.0.0/24]
    lines:
      - { name: mpls, transport: mpls, interface: wan0, gateway: 10.100.1.1, up: 50mbit, down: 50mbit, preference: 1 }
      - { name: inet, transport: internet, interface: wan1, gateway: 10.100.2.1, up: 20mbit, down: 20mbit, preference: 2 }
  - name: dc
    kind: dc
    lan: [10.200.0.0/24]
    lines:
      - { name: mpls, transport: mpls, interface: eth0, up: 1gbit, down: 1gbit }
classes:
  - name: voice
    priority: 1
    dscp: EF
    match: [{ protocols: [udp], ports: ["5000-5099"] }]
    steering: { prefer: [VOICE_LINE] }
    bandwidth: { guaranteed: 10%, ceiling: 30% }
  - name: bulk
    priority: 6
    dscp: CS1
    match: [{ protocols: [udp], ports: ["5100-5199"] }]
    steering: { prefer: [internet] }
  - name: default
    priority: 7
"#;

#[test]
fn standalone_applies_a_policy_and_a_bad_reload_keeps_the_rules() {
    use wansteer_agent::dataplane::cli::{DaemonArgs, reload_policy, run_daemon};
    let lab = Lab::new();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.yaml");
    std::fs::write(&path, POLICY.replace("VOICE_LINE", "mpls")).unwrap();
    let args = DaemonArgs {
        policy: Some(path.clone()),
        site: Some("branch-1".into()),
        netns: Some(lab.site.clone()),
        once: true,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run_daemon(args)).unwrap();
    let socket = socket_in(&lab.site);
    let voice = lab.send(&socket, 5040, 20);
    assert_eq!((voice["w0"], voice["ef"]), (20, 20), "{voice:?}");
    assert_eq!(lab.send(&socket, 5140, 20)["w1"], 20);

    // The daemon restarted: it adopts the same state without a change.
    let mut dp = Dataplane::new(
        lab.kernel(),
        FailoverState::standalone(std::time::Duration::from_secs(30)),
    );
    let adopted = reload_policy(&mut dp, &path, "branch-1", 1).unwrap();
    assert_eq!(adopted.changes(), 0, "{adopted:?}");
    let working = lab.snapshot();

    std::fs::write(&path, POLICY.replace("priority: 6", "prioity: 6")).unwrap();
    let error = reload_policy(&mut dp, &path, "branch-1", 2).unwrap_err();
    assert!(format!("{error:#}").contains("prioity"), "{error:#}");
    assert_eq!(lab.snapshot(), working, "a refused policy changes nothing");

    std::fs::write(&path, POLICY.replace("VOICE_LINE", "internet")).unwrap();
    let report = reload_policy(&mut dp, &path, "branch-1", 2).unwrap();
    assert_eq!(report.route_commands, 1, "{report:?}");
    let voice = lab.send(&socket, 5040, 20);
    assert_eq!((voice["w0"], voice["w1"]), (0, 20), "{voice:?}");
}

#[test]
fn a_moved_natted_flow_is_renated_on_its_new_line() {
    let lab = Lab::new();
    nft_in(
        &lab.site,
        "table ip wsttestnat {\n chain post {\n type nat hook postrouting priority 100;\n oifname \"wan0\" snat to 10.100.1.2\n oifname \"wan1\" snat to 10.100.2.2\n }\n}\n",
    );
    let mut dp = dataplane(&lab);
    dp.apply(ruleset(1)).unwrap();
    let host = socket_in(lab.lan());
    assert_eq!(lab.send(&host, 5060, 20)["w0"], 20);

    let mut moved = ruleset(2);
    moved.routes[0] = route("voice", "inet", "mpls");
    let report = dp.apply(moved.seal()).unwrap();
    assert!(report.conntrack_entries_deleted >= 1, "{report:?}");
    // Without the conntrack delete the flow would keep mpls's source address on inet
    // (the kernel only re-NATs on its own for masquerade, and then drops a packet).
    let after = lab.send(&host, 5060, 20);
    assert_eq!(
        (after["w0"], after["w1"], after["w1 from inet address"]),
        (0, 20, 20),
        "{after:?}"
    );
}
