//! The composed agent with `--lan` and `--metrics`, against a real kernel: a LAN host opens
//! a TCP connection through the agent's namespace and sends a TLS ClientHello naming a
//! catalogue app (Teams); the agent's classifier sees it on `lan0`, the verdict goes into
//! the nft `dpi4` map, and the rest of the flow leaves by the class's line with its DSCP.
//! Then `/metrics` is scraped and checked with `promtool check metrics`.
//! Needs root, `ip`, `nft`, `promtool`; builds and removes its own namespaces.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use wansteer_agent::classifier::{FlowTuple, Verdict};
use wansteer_agent::daemon::dpi::Dpi;
use wansteer_agent::daemon::metrics::AgentMetrics;
use wansteer_agent::dataplane::standalone::compile_policy;
use wansteer_agent::dataplane::{Dataplane, FailoverState, Kernel};

mod support;

use support::{SiteLab, in_ns, nft_in, sh};

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// The shared two-line site with a LAN host, plus Teams' address 10.200.0.7 at the far end
/// and counters of the TLS flow per arrival line and with DSCP AF41.
fn lab(tag: &str) -> SiteLab {
    let lab = SiteLab::with_lan(tag);
    sh(&[
        "ip",
        "-n",
        &lab.far,
        "addr",
        "add",
        "10.200.0.7/32",
        "dev",
        "lo",
    ]);
    nft_in(
        &lab.far,
        r#"table inet wsttest {
            chain pre { type filter hook prerouting priority 0;
                iifname "w0" tcp dport 443 counter comment "w0"
                iifname "w1" tcp dport 443 counter comment "w1"
                ip dscp af41 tcp dport 443 counter comment "af41"
            }
        }"#,
    );
    lab
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
  - name: meetings
    priority: 3
    dscp: AF41
    match: [{ apps: [teams] }]
    steering: { prefer: [internet] }
  - name: default
    priority: 7
"#;

/// A TLS 1.2-style ClientHello record naming `sni`.
fn client_hello(sni: &str) -> Vec<u8> {
    let name = sni.as_bytes();
    let mut ext = vec![0, 0];
    ext.extend_from_slice(&((name.len() + 5) as u16).to_be_bytes());
    ext.extend_from_slice(&((name.len() + 3) as u16).to_be_bytes());
    ext.push(0);
    ext.extend_from_slice(&(name.len() as u16).to_be_bytes());
    ext.extend_from_slice(name);
    let mut body = vec![3, 3];
    body.extend_from_slice(&[0x42; 32]);
    body.push(0);
    body.extend_from_slice(&[0, 2, 0x13, 0x01, 1, 0]);
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(&ext);
    let mut handshake = vec![1];
    handshake.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    handshake.extend_from_slice(&body);
    let mut record = vec![22, 3, 1];
    record.extend_from_slice(&(handshake.len() as u16).to_be_bytes());
    record.extend_from_slice(&handshake);
    record
}

/// A DNS response: `name` has address `address` (TTL 1 h).
fn dns_answer(id: [u8; 2], name: &str, address: [u8; 4]) -> Vec<u8> {
    let mut out = vec![id[0], id[1], 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
    for label in name.split('.') {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.extend_from_slice(&[0, 0, 1, 0, 1, 0xc0, 12, 0, 1, 0, 1, 0, 0, 0x0e, 0x10, 0, 4]);
    out.extend_from_slice(&address);
    out
}

/// GET /metrics from inside the site namespace.
fn scrape(site: &str) -> String {
    in_ns(site, || {
        let mut stream = TcpStream::connect("127.0.0.1:19464").expect("metrics listener");
        stream
            .write_all(b"GET /metrics HTTP/1.0\r\nHost: agent\r\n\r\n")
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
        assert!(
            head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
            "{head}"
        );
        body.to_string()
    })
}

#[test]
fn a_teams_tls_flow_is_marked_with_its_class_and_metrics_scrape_clean() {
    if !is_root() {
        eprintln!("skipped: needs root for network namespaces");
        return;
    }
    let lab = lab("d");
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, POLICY).unwrap();

    // STAMP reflectors at the far end of both lines keep the lines up.
    let reflector = in_ns(&lab.far, || UdpSocket::bind("0.0.0.0:862").unwrap());
    reflector.set_nonblocking(true).unwrap();
    let server = in_ns(&lab.far, || TcpListener::bind("0.0.0.0:443").unwrap());
    // The far end's DNS server says teams.microsoft.com is 10.200.0.7.
    let dns = in_ns(&lab.far, || UdpSocket::bind("10.200.0.1:53").unwrap());
    std::thread::spawn(move || {
        let mut query = [0u8; 512];
        while let Ok((n, from)) = dns.recv_from(&mut query) {
            if n >= 2 {
                let answer =
                    dns_answer([query[0], query[1]], "teams.microsoft.com", [10, 200, 0, 7]);
                let _ = dns.send_to(&answer, from);
            }
        }
    });
    std::thread::spawn(move || {
        for stream in server.incoming() {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                let mut buffer = [0u8; 4096];
                while matches!(stream.read(&mut buffer), Ok(n) if n > 0) {}
            });
        }
    });
    let args = wansteer_agent::daemon::DaemonArgs {
        policy: Some(policy),
        site: Some("branch-1".into()),
        netns: Some(lab.site.clone()),
        once: false,
        reflect: "0.0.0.0:862".parse().unwrap(),
        probe: wansteer_agent::daemon::probe_thread::ProbePriorityArg {
            probe_priority: wansteer_agent::daemon::probe_thread::ProbePriority::Realtime,
        },
        long_window: None,
        json: true,
        summaries: false,
        lan: vec!["lan0".into()],
        metrics: Some("127.0.0.1:19464".parse().unwrap()),
        controller: None,
        token_file: None,
    };
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let reflector = tokio::net::UdpSocket::from_std(reflector).unwrap();
            tokio::spawn(wansteer_probes::tasks::run_reflector(
                reflector,
                std::future::pending::<()>(),
            ));
            wansteer_agent::daemon::run(args).await
        })
    });
    // Ready once the policy's nft table is in place and /metrics answers.
    let deadline = Instant::now() + Duration::from_secs(20);
    while in_ns(&lab.site, || TcpStream::connect("127.0.0.1:19464").is_err()) {
        assert!(Instant::now() < deadline, "the agent never served /metrics");
        std::thread::sleep(Duration::from_millis(50));
    }

    let mut client = in_ns(lab.lan(), || TcpStream::connect("10.200.0.1:443").unwrap());
    let before = lab.far_counts();
    assert!(
        before["w0"] >= 1,
        "the handshake took the default line: {before:?}"
    );
    assert_eq!(before["af41"], 0, "{before:?}");
    client
        .write_all(&client_hello("teams.microsoft.com"))
        .unwrap();

    // The rest of the flow, once the verdict is in, leaves by inet with AF41.
    let deadline = Instant::now() + Duration::from_secs(10);
    let after = loop {
        client.write_all(b"application data").unwrap();
        let counts = lab.far_counts();
        if counts["af41"] >= 3 || Instant::now() > deadline {
            break counts;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        after["af41"] >= 3,
        "the flow never got its class: {after:?}"
    );
    assert!(
        after["w1"] >= 3,
        "meetings prefers the internet line: {after:?}"
    );
    let map = sh(&[
        "ip", "netns", "exec", &lab.site, "nft", "list", "map", "inet", "wansteer", "dpi4",
    ]);
    let port = client.local_addr().unwrap().port();
    assert!(
        map.contains(&format!("10.1.0.2 . 10.200.0.1 . tcp . {port} . 443")),
        "{map}"
    );

    // A second connection to the same server without a ClientHello stays default.
    let mut plain = in_ns(lab.lan(), || TcpStream::connect("10.200.0.1:443").unwrap());
    let before = lab.far_counts();
    for _ in 0..5 {
        plain.write_all(b"not tls at all").unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    let plain_after = loop {
        let counts = lab.far_counts();
        if counts["w0"] > before["w0"] || Instant::now() > deadline {
            break counts;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(plain_after["w0"] > before["w0"], "{plain_after:?}");
    assert_eq!(
        (plain_after["af41"], plain_after["w1"]),
        (before["af41"], before["w1"]),
        "an unclassified flow keeps the default class and line: {plain_after:?}"
    );

    // An address learned from a DNS answer seen on the LAN: the flow is the app's from its
    // first packet on, without any TLS.
    let resolver = in_ns(lab.lan(), || UdpSocket::bind("10.1.0.2:0").unwrap());
    resolver
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    resolver
        .send_to(b"\x12\x34 query for teams.microsoft.com", "10.200.0.1:53")
        .unwrap();
    let mut answer = [0u8; 512];
    resolver.recv_from(&mut answer).expect("the DNS answer");
    let before = lab.far_counts();
    let mut learned = in_ns(lab.lan(), || TcpStream::connect("10.200.0.7:443").unwrap());
    let deadline = Instant::now() + Duration::from_secs(10);
    let after = loop {
        learned.write_all(b"no tls here").unwrap();
        let counts = lab.far_counts();
        if counts["af41"] >= before["af41"] + 3 || Instant::now() > deadline {
            break counts;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        after["af41"] >= before["af41"] + 3 && after["w1"] >= before["w1"] + 3,
        "the DNS-learned flow never got its class: {before:?} → {after:?}"
    );

    // /metrics: the verdict counted, the lines measured, and a clean exposition.
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text = scrape(&lab.site);
        let ready = text.contains("wansteer_agent_line_rtt_seconds")
            && text.contains("wansteer_agent_class_bytes_total{class=\"meetings\"");
        if ready || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    for expected in [
        "wansteer_agent_dpi_verdicts_installed_total{class=\"meetings\",site=\"branch-1\"} 2",
        "wansteer_agent_class_bytes_total{class=\"meetings\",direction=\"up\"",
        "wansteer_agent_line_rtt_seconds{line=\"mpls\"",
        "wansteer_agent_line_health{line=\"inet\"",
        "wansteer_agent_class_line{class=\"meetings\",line=\"inet\",site=\"branch-1\"} 1",
        "wansteer_agent_ruleset_version{site=\"branch-1\"} 1",
        "wansteer_agent_classifier_verdicts_total",
        "wansteer_agent_failovers_total{line=\"inet\",site=\"branch-1\"} 0",
        "wansteer_agent_dpi_install_seconds_count{site=\"branch-1\"} 2",
    ] {
        assert!(text.contains(expected), "missing {expected}:\n{text}");
    }
    // For the benchmark notes: what installing the verdicts cost the event loop.
    for line in text
        .lines()
        .filter(|l| l.starts_with("wansteer_agent_dpi_install_seconds_"))
    {
        eprintln!("{line}");
    }
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let checked = promtool.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "promtool: {}{}\n{text}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
}

fn verdict(sport: u16, class: &str) -> Verdict {
    Verdict {
        tuple: FlowTuple {
            proto: 6,
            vlan: None,
            src: "10.1.0.2".parse().unwrap(),
            sport,
            dst: "10.200.0.1".parse().unwrap(),
            dport: 443,
        },
        app: "teams".into(),
        class: class.into(),
        reason: "test".into(),
    }
}

/// The dpi4 elements as `sport → mark`.
fn dpi_marks(site: &str) -> std::collections::BTreeMap<u64, u64> {
    let listing: Value = serde_json::from_str(&sh(&[
        "ip", "netns", "exec", site, "nft", "-j", "list", "map", "inet", "wansteer", "dpi4",
    ]))
    .unwrap();
    let map = listing["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|o| o.get("map"))
        .unwrap();
    map.get("elem")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|element| {
            let key = element
                .pointer("/0/elem/val/concat")
                .unwrap_or_else(|| panic!("unexpected element {element}"));
            (key[3].as_u64().unwrap(), element[1].as_u64().unwrap())
        })
        .collect()
}

#[test]
fn verdict_batches_go_in_whole_a_bad_one_alone_is_refused_and_a_class_change_replaces() {
    if !is_root() {
        eprintln!("skipped: needs root for network namespaces");
        return;
    }
    let lab = lab("b");
    let policy: wansteer_policies::model::Policy = yaml_serde::from_str(POLICY).unwrap();
    let ruleset = compile_policy(&policy, "branch-1", 1).unwrap();
    let mark = |class: &str| u64::from(ruleset.class(class).unwrap().mark);
    let (meetings, default) = (mark("meetings"), mark("default"));
    let mut dataplane = Dataplane::new(
        Kernel::in_netns(&lab.site),
        FailoverState::standalone(Duration::from_secs(30)),
    );
    dataplane.apply(ruleset.clone()).unwrap();
    let metrics = AgentMetrics::new("branch-1");
    let mut dpi = Dpi::installer("default", Some(metrics.clone()));

    let errors = dpi.install(
        &dataplane,
        vec![
            verdict(1001, "meetings"),
            verdict(1002, "meetings"),
            verdict(1003, "default"),
            verdict(1004, "no-such-class"),
        ],
    );
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("no-such-class"), "{errors:?}");
    assert_eq!(
        dpi_marks(&lab.site),
        [(1001, meetings), (1002, meetings)].into(),
        "the good verdicts went in, the default class is left to nft"
    );

    // The first flow turns out to be something else; a new flow comes in the same batch.
    let errors = dpi.install(
        &dataplane,
        vec![verdict(1001, "default"), verdict(1005, "meetings")],
    );
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(
        dpi_marks(&lab.site),
        [(1001, default), (1002, meetings), (1005, meetings)].into()
    );
    let text = metrics.render();
    assert!(
        text.contains("wansteer_agent_dpi_install_errors_total{site=\"branch-1\"} 1"),
        "{text}"
    );
}
