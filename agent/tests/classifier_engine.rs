//! The classifier end to end on hand-built packets: each DPI path, the first-packet
//! verdict from the DNS cache, policy classes, per-class statistics, and hostile input.

use std::time::Duration;

use etherparse::PacketBuilder;
use proptest::prelude::*;
use wansteer_agent::classifier::packet::LinkType;
use wansteer_agent::classifier::policy::PolicyClasses;
use wansteer_agent::classifier::{Catalogue, Classifier, Config, Verdict};

const CLIENT: [u8; 4] = [10, 1, 0, 20];

fn classifier() -> Classifier {
    Classifier::new(Catalogue::builtin().clone(), None, Config::default())
}

fn udp(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2([1; 6], [2; 6])
        .ipv4(src, dst, 64)
        .udp(sport, dport)
        .write(&mut out, payload)
        .unwrap();
    out
}

fn tcp(
    src: [u8; 4],
    sport: u16,
    dst: [u8; 4],
    dport: u16,
    seq: u32,
    syn: bool,
    payload: &[u8],
) -> Vec<u8> {
    let mut out = Vec::new();
    let builder = PacketBuilder::ethernet2([1; 6], [2; 6])
        .ipv4(src, dst, 64)
        .tcp(sport, dport, seq, 64240);
    let builder = if syn {
        builder.syn()
    } else {
        builder.ack(1).psh()
    };
    builder.write(&mut out, payload).unwrap();
    out
}

fn feed(classifier: &mut Classifier, frames: &[Vec<u8>]) -> Vec<Verdict> {
    for (i, frame) in frames.iter().enumerate() {
        classifier.process_frame(
            Duration::from_millis(1000 + i as u64),
            LinkType::Ethernet,
            frame,
        );
    }
    classifier.take_verdicts()
}

/// The last verdict issued for flows to `port`.
fn last_for(verdicts: &[Verdict], port: u16) -> &Verdict {
    verdicts
        .iter()
        .rev()
        .find(|v| v.tuple.dport == port)
        .unwrap_or_else(|| panic!("no verdict for port {port}: {verdicts:#?}"))
}

fn client_hello(sni: &str) -> Vec<u8> {
    let name = sni.as_bytes();
    let mut ext = Vec::new();
    ext.extend_from_slice(&[0, 0]);
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

fn dns_answer(name: &str, address: [u8; 4]) -> Vec<u8> {
    let mut out = vec![0xbe, 0xef, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
    for label in name.split('.') {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.extend_from_slice(&[0, 0, 1, 0, 1, 0xc0, 12, 0, 1, 0, 1, 0, 0, 0x0e, 0x10, 0, 4]);
    out.extend_from_slice(&address);
    out
}

#[test]
fn a_flow_to_an_address_from_a_dns_answer_is_classified_on_its_first_packet() {
    let mut classifier = classifier();
    let server = [198, 51, 100, 7]; // in no catalogue range: only the DNS answer names it
    feed(
        &mut classifier,
        &[udp(
            [10, 1, 0, 1],
            53,
            CLIENT,
            40000,
            &dns_answer("eu01web.zoom.us", server),
        )],
    );
    let verdicts = feed(
        &mut classifier,
        &[tcp(CLIENT, 50000, server, 443, 1, true, &[])],
    );
    assert_eq!(verdicts.len(), 1, "one verdict on the SYN: {verdicts:#?}");
    assert_eq!(verdicts[0].app, "zoom");
    assert_eq!(verdicts[0].class, "conferencing");
    assert!(
        verdicts[0].reason.contains("dns answer eu01web.zoom.us"),
        "{}",
        verdicts[0].reason
    );
}

#[test]
fn tls_sni_split_over_segments_out_of_order_names_the_app() {
    let mut classifier = classifier();
    let hello = client_hello("na44.salesforce.com");
    let (a, b) = hello.split_at(40);
    let server = [203, 0, 113, 10];
    let verdicts = feed(
        &mut classifier,
        &[
            tcp(CLIENT, 50001, server, 443, 1000, true, &[]),
            tcp(CLIENT, 50001, server, 443, 1001 + 40, false, b),
            tcp(CLIENT, 50001, server, 443, 1001, false, a),
        ],
    );
    let verdict = last_for(&verdicts, 443);
    assert_eq!(
        (verdict.app.as_str(), verdict.class.as_str()),
        ("salesforce", "business-saas")
    );
    assert!(
        verdict.reason.contains("tls sni na44.salesforce.com"),
        "{}",
        verdict.reason
    );
    // The SYN already had a verdict (port 443 guess) that DPI then refined.
    assert!(verdicts.len() >= 2);
}

#[test]
fn quic_initial_from_rfc9001_gives_its_sni() {
    let hex: String = include_str!("../src/classifier/dpi/testdata/rfc9001_client_initial.hex")
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let datagram: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    let mut classifier = classifier();
    let verdicts = feed(
        &mut classifier,
        &[udp(CLIENT, 50002, [203, 0, 113, 11], 443, &datagram)],
    );
    let verdict = last_for(&verdicts, 443);
    assert_eq!(verdict.app, "quic");
    assert_eq!(verdict.class, "web");
    assert!(
        verdict.reason.contains("quic sni example.com"),
        "{}",
        verdict.reason
    );
}

#[test]
fn http_host_names_market_data() {
    let mut classifier = classifier();
    let request = b"GET /markets HTTP/1.1\r\nHost: www.bloomberg.com\r\nAccept: */*\r\n\r\n";
    let verdicts = feed(
        &mut classifier,
        &[tcp(CLIENT, 50003, [203, 0, 113, 12], 80, 7, false, request)],
    );
    let verdict = last_for(&verdicts, 80);
    assert_eq!(
        (verdict.app.as_str(), verdict.class.as_str()),
        ("bloomberg", "business-saas")
    );
}

#[test]
fn rtp_is_recognised_from_a_steady_stream_and_stun_from_one_packet() {
    let mut classifier = classifier();
    let frames: Vec<Vec<u8>> = (0u16..4)
        .map(|i| {
            let mut rtp = vec![0x80, 0x08];
            rtp.extend_from_slice(&(100 + i).to_be_bytes());
            rtp.extend_from_slice(&(u32::from(i) * 160).to_be_bytes());
            rtp.extend_from_slice(&0xdead_beefu32.to_be_bytes());
            rtp.extend_from_slice(&[0x55; 160]);
            udp(CLIENT, 16400, [10, 2, 0, 5], 16500, &rtp)
        })
        .collect();
    let verdicts = feed(&mut classifier, &frames);
    let verdict = last_for(&verdicts, 16500);
    assert_eq!(
        (verdict.app.as_str(), verdict.class.as_str()),
        ("rtp", "realtime-voice")
    );

    let mut binding = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
    binding.extend_from_slice(&[9; 12]);
    let verdicts = feed(
        &mut classifier,
        &[udp(CLIENT, 40001, [198, 51, 100, 9], 19302, &binding)],
    );
    assert_eq!(last_for(&verdicts, 19302).app, "stun");
}

#[test]
fn ssh_and_rdp_are_interactive() {
    let mut classifier = classifier();
    let mut rdp = b"\x03\x00\x00\x00\x1e\xe0\x00\x00\x00\x00\x00Cookie: mstshash=ops\r\n".to_vec();
    rdp[3] = rdp.len() as u8;
    let verdicts = feed(
        &mut classifier,
        &[
            tcp(
                CLIENT,
                50004,
                [10, 9, 0, 1],
                2222,
                1,
                false,
                b"SSH-2.0-OpenSSH_9.6p1\r\n",
            ),
            tcp(CLIENT, 50005, [10, 9, 0, 2], 13389, 1, false, &rdp),
        ],
    );
    assert_eq!(last_for(&verdicts, 2222).app, "ssh");
    assert_eq!(last_for(&verdicts, 2222).class, "interactive");
    assert_eq!(last_for(&verdicts, 13389).app, "rdp");
}

#[test]
fn with_a_policy_the_policy_classes_are_reported_and_stats_follow_them() {
    let policy: wansteer_policies::model::Policy = yaml_serde::from_str(
        r#"
sites:
  - name: branch
    kind: branch
    lines: [{ name: mpls, transport: mpls, interface: wan0, up: 10mbit, down: 10mbit }]
classes:
  - name: trading
    priority: 1
    match: [{ apps: [bloomberg, reuters] }]
  - name: best-effort
    priority: 7
default_class: best-effort
"#,
    )
    .unwrap();
    let mut classifier = Classifier::new(
        Catalogue::builtin().clone(),
        Some(PolicyClasses::new(&policy).unwrap()),
        Config::default(),
    );
    let hello = client_hello("terminal.bloomberg.net");
    let verdicts = feed(
        &mut classifier,
        &[
            tcp(CLIENT, 50006, [203, 0, 113, 13], 443, 1, false, &hello),
            tcp(
                CLIENT,
                50007,
                [203, 0, 113, 14],
                443,
                1,
                false,
                &client_hello("example.org"),
            ),
        ],
    );
    assert_eq!(
        verdicts
            .iter()
            .rev()
            .find(|v| v.tuple.sport == 50006)
            .unwrap()
            .class,
        "trading"
    );
    assert_eq!(
        verdicts
            .iter()
            .rev()
            .find(|v| v.tuple.sport == 50007)
            .unwrap()
            .class,
        "best-effort"
    );
    let stats = classifier.class_stats();
    assert_eq!(stats.get("trading").unwrap().flows, 1);
    assert_eq!(stats.get("best-effort").unwrap().flows, 1);
    assert!(stats.get("trading").unwrap().bytes_up > hello.len() as u64);
}

#[test]
fn ended_flows_leave_the_live_counts_and_nothing_piles_up() {
    let mut classifier = classifier();
    for i in 0..50u16 {
        let frame = tcp(
            CLIENT,
            41000 + i,
            [203, 0, 113, 20],
            22,
            1,
            false,
            b"SSH-2.0-x\r\n",
        );
        classifier.process_frame(Duration::from_secs(1), LinkType::Ethernet, &frame);
    }
    assert_eq!(
        classifier.class_stats().get("interactive").unwrap().flows,
        50
    );
    // An hour later one DNS packet arrives; the idle SSH flows are swept out.
    let query = udp(
        CLIENT,
        5555,
        [10, 1, 0, 1],
        53,
        &dns_answer("example.com", [192, 0, 2, 1]),
    );
    classifier.process_frame(Duration::from_secs(3600), LinkType::Ethernet, &query);
    assert_eq!(classifier.live_flows(), 1);
    assert_eq!(
        classifier.class_stats().get("interactive").unwrap().flows,
        0
    );
    assert_eq!(
        classifier.class_stats().get("interactive").unwrap().packets,
        50
    );
    assert_eq!(classifier.table_counters().expired, 50);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, .. ProptestConfig::default() })]

    /// Arbitrary bytes on every link type never panic and never grow the table past its bound.
    #[test]
    fn hostile_frames_never_panic(frames in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..400), 1..20)) {
        let mut classifier = Classifier::new(
            Catalogue::builtin().clone(),
            None,
            Config { max_flows: 16, ..Config::default() },
        );
        for (i, frame) in frames.iter().enumerate() {
            for link in [LinkType::Ethernet, LinkType::RawIp, LinkType::LinuxSll, LinkType::LinuxSll2, LinkType::Null] {
                classifier.process_frame(Duration::from_millis(i as u64), link, frame);
            }
            prop_assert!(classifier.live_flows() <= 16);
        }
        classifier.finish();
    }

    /// Valid headers with arbitrary payloads reach every DPI parser.
    #[test]
    fn arbitrary_payloads_on_dpi_ports_never_panic(
        payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..1400), 1..12),
        port in prop::sample::select(vec![53u16, 80, 443, 3478, 5060, 3389, 22, 514, 123, 1194, 2152, 4789, 8801, 5353, 88, 389, 2000, 4569, 500, 111]),
        udp_not_tcp in any::<bool>(),
    ) {
        let mut classifier = classifier();
        for (i, payload) in payloads.iter().enumerate() {
            let frame = if udp_not_tcp {
                udp(CLIENT, 40000, [203, 0, 113, 1], port, payload)
            } else {
                tcp(CLIENT, 40000, [203, 0, 113, 1], port, 1 + 1400 * i as u32, false, payload)
            };
            classifier.process_frame(Duration::from_millis(i as u64), LinkType::Ethernet, &frame);
        }
        classifier.finish();
    }
}
