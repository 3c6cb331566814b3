//! Data-plane timings on a real kernel (root; builds and removes its own namespaces):
//!
//! 1. full apply of 8 classes × 1,000 destination prefixes into an empty namespace,
//! 2. one class moving line for one destination (the controller's usual push),
//! 3. one class moving line for all its 1,000 destinations,
//! 4. local failover: a 50 pps UDP stream on a line that dies; the gap at the receiver
//!    between the last packet before the cut and the first one over the backup, with the
//!    failover decision taken the moment the line is cut (probe detection time excluded).
//!
//! `cargo run --release -p wansteer-agent --example dataplane_bench [runs]`

use std::net::UdpSocket;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use wansteer_agent::dataplane::reconcile::cleanup;
use wansteer_agent::dataplane::{Dataplane, FailoverState, Kernel, LineEvent};
use wansteer_wire::ruleset::{
    ClassRoute, ClassShare, ClassSpec, LineSpec, PortSpan, RuleSet, StaticMatch,
};

#[path = "../tests/support/mod.rs"]
mod support;

use support::{SiteLab, in_ns, nft_in};

fn socket_in(ns: &str, bind: &str) -> UdpSocket {
    let bind = bind.to_string();
    in_ns(ns, move || UdpSocket::bind(bind).unwrap())
}

/// 8 classes; class `k` routes 1,000 prefixes 10.{k}.{i/4}.{(i%4)*64}/26 plus the far LAN.
fn big_ruleset(version: u64, moved_class: Option<(usize, usize)>) -> RuleSet {
    let names = [
        "voice", "video", "trading", "erp", "web", "mail", "bulk", "default",
    ];
    let classes = names
        .iter()
        .enumerate()
        .map(|(k, name)| ClassSpec {
            name: name.to_string(),
            mark: k as u32 + 1,
            priority: k as u8 + 1,
            dscp: [46, 34, 26, 18, 10, 10, 8, 0][k],
            matches: if *name == "default" {
                vec![]
            } else {
                vec![StaticMatch {
                    protocols: vec![17],
                    ports: vec![PortSpan {
                        first: 5000 + 100 * k as u16,
                        last: 5099 + 100 * k as u16,
                    }],
                    ..StaticMatch::default()
                }]
            },
            apps: vec![],
            domains: vec![],
        })
        .collect();
    let line = |name: &str, dev: &str, gw: &str, rate: u64| LineSpec {
        name: name.into(),
        interface: dev.into(),
        gateway: Some(gw.parse().unwrap()),
        gateway6: None,
        rate_bps: rate,
        shares: names
            .iter()
            .map(|class| ClassShare {
                class: class.to_string(),
                rate_bps: rate / 10,
                ceil_bps: rate,
            })
            .collect(),
    };
    let mut routes = Vec::new();
    for (k, name) in names.iter().enumerate() {
        for i in 0..1000usize {
            let destination = if i == 0 {
                "10.200.0.0/24".to_string()
            } else {
                format!("10.{}.{}.{}/26", 10 + k, i / 4, (i % 4) * 64)
            };
            let on_inet = moved_class.is_some_and(|(class, count)| class == k && i < count);
            let (primary, backup) = if on_inet {
                ("inet", "mpls")
            } else {
                ("mpls", "inet")
            };
            routes.push(ClassRoute {
                class: name.to_string(),
                destination: destination.parse().unwrap(),
                primary: primary.into(),
                backups: vec![backup.into()],
                reason: "bench".into(),
            });
        }
    }
    RuleSet {
        site: "bench".into(),
        version,
        hash: String::new(),
        classes,
        default_class: "default".into(),
        lines: vec![
            line("mpls", "wan0", "10.100.1.1", 50_000_000),
            line("inet", "wan1", "10.100.2.1", 100_000_000),
        ],
        routes,
    }
    .seal()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn percentile(mut values: Vec<f64>, p: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    values[((values.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(9);
    let lab = SiteLab::new("B");
    let kernel = Kernel::in_netns(&lab.site);

    let (mut full, mut one, mut class_all, mut full_noop) = (vec![], vec![], vec![], vec![]);
    let mut index_ready = vec![];
    for run in 0..runs {
        cleanup(&kernel).unwrap();
        let (first, one_moved, class_moved, same) = (
            big_ruleset(1, None),
            big_ruleset(2, Some((0, 1))),
            big_ruleset(3, Some((0, 1000))),
            big_ruleset(3, Some((0, 1000))),
        );
        let mut dp = Dataplane::new(kernel.clone(), FailoverState::with_controller());
        let start = Instant::now();
        let report = dp.apply(first).unwrap();
        full.push(ms(start.elapsed()));
        assert_eq!(
            report.route_commands, 8002,
            "8,000 class routes, 2 arrival-line defaults"
        );
        // The conntrack index fills itself in the background after the first apply; a
        // controller push comes seconds later, so the move is timed once it is ready.
        while dp.indexed_flows().is_none() {
            std::thread::sleep(Duration::from_millis(1));
        }
        index_ready.push(ms(start.elapsed()));

        let start = Instant::now();
        let report = dp.apply(one_moved).unwrap();
        one.push(ms(start.elapsed()));
        assert_eq!(report.route_commands, 1);

        let start = Instant::now();
        let report = dp.apply(class_moved).unwrap();
        class_all.push(ms(start.elapsed()));
        assert_eq!(report.route_commands, 999);

        // A restarted agent adopting the same rule set: reads everything, changes nothing.
        let mut restarted = Dataplane::new(kernel.clone(), FailoverState::with_controller());
        let start = Instant::now();
        let report = restarted.apply(same).unwrap();
        full_noop.push(ms(start.elapsed()));
        assert_eq!(report.changes(), 0);
        eprintln!("run {run}: full {:.1} ms", full[run]);
    }
    // Where the time of a small change goes: the pure compile, and the process floors.
    let ruleset = big_ruleset(4, None);
    let (mut compile_ms, mut ip_ms, mut ct_ms, mut hash_ms) = (vec![], vec![], vec![], vec![]);
    let mut netlink_ms = vec![];
    let mut socket =
        wansteer_agent::dataplane::netlink::RouteSocket::open(Some(&lab.site)).unwrap();
    let mut conntrack =
        wansteer_agent::dataplane::conntrack::ConntrackSocket::open(Some(&lab.site)).unwrap();
    let indexes = socket.links().unwrap();
    for run in 0..runs {
        let key = wansteer_agent::dataplane::routing::RouteKey {
            table: 99,
            destination: "10.251.0.0/24".parse().unwrap(),
        };
        let target = wansteer_agent::dataplane::routing::RouteTarget {
            via: Some(
                if run % 2 == 0 {
                    "10.100.1.1"
                } else {
                    "10.100.2.1"
                }
                .parse()
                .unwrap(),
            ),
            device: if run % 2 == 0 { "wan0" } else { "wan1" }.into(),
            nexthop: None,
        };
        let start = Instant::now();
        socket.replace_routes(&[(&key, &target)], &indexes).unwrap();
        netlink_ms.push(ms(start.elapsed()));
        let start = Instant::now();
        assert!(ruleset.is_sealed());
        hash_ms.push(ms(start.elapsed()));
        let start = Instant::now();
        let desired = wansteer_agent::dataplane::compile(&ruleset, &Default::default()).unwrap();
        compile_ms.push(ms(start.elapsed()));
        assert_eq!(desired.routes.len(), 8002);
        let start = Instant::now();
        let status = Command::new("ip")
            .args(["-n", &lab.site, "-4", "route", "replace", "10.250.0.0/24"])
            .args(["via", "10.100.1.1", "dev", "wan0", "table", "99"])
            .status()
            .unwrap();
        assert!(status.success());
        ip_ms.push(ms(start.elapsed()));
        let start = Instant::now();
        conntrack.delete_flows(false, 0x99, 0xff, None).unwrap();
        ct_ms.push(ms(start.elapsed()));
    }
    println!("runs: {runs}");
    println!(
        "floors: verify hash {:.2} ms; compile 8000 routes {:.2} ms (hash included); one `ip route replace` process (for scale) {:.2} ms; one ctnetlink dump+delete by mark (walks the whole conntrack table) {:.3} ms; one route replace over rtnetlink {:.3} ms",
        median(hash_ms),
        median(compile_ms),
        median(ip_ms),
        median(ct_ms),
        median(netlink_ms)
    );
    println!(
        "full apply, 8 classes x 1000 prefixes (8000 routes): median {:.1} ms",
        median(full)
    );
    println!(
        "conntrack index ready after the start of the full apply: median {:.1} ms",
        median(index_ready)
    );
    println!(
        "one class, one destination moved: median {:.2} ms",
        median(one)
    );
    println!(
        "one class, all 1000 destinations moved: median {:.1} ms",
        median(class_all)
    );
    println!(
        "restart adoption of 8000 routes (0 changes): median {:.1} ms",
        median(full_noop)
    );

    // Failover gap in a 50 pps stream.
    cleanup(&kernel).unwrap();
    let mut gaps = vec![];
    let mut switch = vec![];
    let mut failover_changes = (0, 0);
    let mut losses = vec![];
    for _ in 0..runs.max(5) {
        cleanup(&kernel).unwrap();
        nft_in(&lab.far, "flush ruleset\n");
        let mut dp = Dataplane::new(kernel.clone(), FailoverState::with_controller());
        dp.apply(big_ruleset(1, None)).unwrap();
        let receiver = socket_in(&lab.far, "10.200.0.1:5010");
        receiver
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let sender = socket_in(&lab.site, "0.0.0.0:0");
        let stop = Arc::new(AtomicBool::new(false));
        let stop_sender = stop.clone();
        let stream = std::thread::spawn(move || {
            let mut next = Instant::now();
            let mut seq = 0u32;
            while !stop_sender.load(Ordering::Relaxed) {
                sender
                    .send_to(&seq.to_be_bytes(), "10.200.0.1:5010")
                    .unwrap();
                seq += 1;
                next += Duration::from_millis(20);
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
        });
        // The receiver notes every arrival; the cut comes after ~0.5 s of clean stream.
        let arrivals = std::thread::spawn(move || {
            let mut buf = [0u8; 64];
            let mut seen = vec![];
            let until = Instant::now() + Duration::from_millis(1500);
            while Instant::now() < until {
                if let Ok(n) = receiver.recv(&mut buf)
                    && n >= 4
                {
                    let seq = u32::from_be_bytes(buf[..4].try_into().unwrap());
                    seen.push((seq, Instant::now()));
                }
            }
            seen
        });
        std::thread::sleep(Duration::from_millis(500));
        // Cut mpls (everything arriving on w0 dies), then fail over at once.
        nft_in(
            &lab.far,
            "table inet cut {\n chain c {\n type filter hook prerouting priority -300;\n iifname \"w0\" drop\n }\n}\n",
        );
        let before = Instant::now();
        let report = dp
            .on_line_event(
                &LineEvent {
                    line: "mpls".into(),
                    up: false,
                },
                tokio::time::Instant::now(),
            )
            .unwrap();
        switch.push(ms(before.elapsed()));
        failover_changes = (report.nexthop_commands, report.route_commands);
        let seen = arrivals.join().unwrap();
        stop.store(true, Ordering::Relaxed);
        stream.join().unwrap();
        let gap = seen
            .windows(2)
            .map(|pair| ms(pair[1].1 - pair[0].1))
            .fold(0.0, f64::max);
        let lost = seen.last().unwrap().0 + 1 - seen.first().unwrap().0 - seen.len() as u32;
        gaps.push(gap);
        losses.push(lost as f64);
    }
    println!(
        "failover: on_line_event ({} nexthops and {} routes replaced, then conntrack cleared per class): median {:.2} ms, p90 {:.2} ms",
        failover_changes.0,
        failover_changes.1,
        median(switch.clone()),
        percentile(switch, 0.9)
    );
    println!(
        "failover: largest gap in the 50 pps stream around the cut: median {:.1} ms, p90 {:.1} ms (20 ms is no gap); packets lost: median {}",
        median(gaps.clone()),
        percentile(gaps, 0.9),
        median(losses)
    );
    cleanup(&kernel).unwrap();
}
