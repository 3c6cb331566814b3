//! The tokio driver: the same sender loop over a synthetic line under tokio's paused
//! clock (deterministic timers), and over real UDP sockets on loopback.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use wansteer_probes::net::SocketOptions;
use wansteer_probes::packet::{ErrorEstimate, NtpTimestamp, ReflectorPacket};
use wansteer_probes::sim::{Impairment, LossModel};
use wansteer_probes::tasks::{SimTransport, bind_reflector, run_sender};
use wansteer_probes::{LineMonitor, MonitorConfig, SenderConfig, run_reflector, spawn_sender};
use wansteer_wire::report::{HealthReason, HealthState, LineReport};

const WALL_START: Duration = Duration::from_secs(1_790_000_000);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn monitor(line: &str) -> LineMonitor {
    LineMonitor::new(MonitorConfig::new(line), WALL_START).unwrap()
}

#[tokio::test(start_paused = true)]
async fn silence_is_declared_down_by_the_missed_probe_timer() {
    let line = SimTransport::new(Impairment::clean(ms(20)), 1, WALL_START);
    let (tx, mut rx) = mpsc::unbounded_channel();
    // 50 probes/s: the setting for the 200 ms blackout target.
    let mut config = MonitorConfig::new("mpls");
    config.interval = ms(20);
    let monitor = LineMonitor::new(config, WALL_START).unwrap();
    let sender = tokio::spawn(run_sender(monitor, line.clone(), None, tx));
    let start = tokio::time::Instant::now();

    // A clean line is usable after a few answers (first contact, no hold-down).
    let mut up_at = None;
    while let Some(report) = rx.recv().await {
        if let LineReport::Transition(t) = report
            && t.to == HealthState::Up
        {
            up_at = Some(start.elapsed());
            break;
        }
    }
    let up_at = up_at.expect("line comes up");
    assert!(up_at <= ms(1_000), "{up_at:?}");

    tokio::time::sleep_until(start + ms(30_013)).await;
    line.set_impairment(Impairment::clean(ms(20)).with_loss(LossModel::Blackhole));
    let silent_at = start.elapsed();
    let down = loop {
        match rx.recv().await.expect("sender alive") {
            LineReport::Transition(t) => break t,
            LineReport::Summary(_) => {}
        }
    };
    let detected = start.elapsed() - silent_at;
    assert_eq!(down.to, HealthState::Down, "{down}");
    assert!(
        matches!(down.reasons[0], HealthReason::Outage { .. }),
        "{down}"
    );
    assert!(detected <= ms(200), "down {detected:?} after silence");
    assert_eq!(down.elapsed_ms, start.elapsed().as_millis() as u64);
    sender.abort();
}

#[tokio::test(start_paused = true)]
async fn a_counted_run_sends_exactly_count_probes_at_the_interval_and_ends_with_a_summary() {
    let mut impairment = Impairment::clean(ms(30));
    impairment.forward_loss = LossModel::EveryNth(10);
    // Whole milliseconds: tokio timers (which deliver the synthetic replies) tick in ms.
    impairment.turnaround = Duration::ZERO;
    let line = SimTransport::new(impairment, 2, WALL_START);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let start = tokio::time::Instant::now();
    let counters = run_sender(monitor("inet"), line, Some(100), tx)
        .await
        .unwrap();
    // 100 probes at 50 ms: the last leaves at 4.95 s, then one loss timeout (250 ms).
    assert_eq!(start.elapsed(), ms(4950 + 250));
    assert_eq!((counters.sent, counters.answered), (100, 90));
    let mut last = None;
    while let Ok(report) = rx.try_recv() {
        last = Some(report);
    }
    match last {
        Some(LineReport::Summary(s)) => {
            // The 2 s short window at 5.2 s holds the probes sent after 3.2 s.
            assert_eq!((s.short.probes, s.long.probes, s.long.lost), (35, 100, 10));
            let rtt = s.long.rtt_ms.unwrap();
            assert!((rtt.p50 - 30.0).abs() < 0.01, "{rtt:?}");
        }
        other => panic!("expected a final summary, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn hostile_datagrams_are_counted_and_dropped_and_nothing_panics() {
    let line = SimTransport::new(Impairment::clean(ms(10)), 3, WALL_START);
    let (tx, _rx) = mpsc::unbounded_channel();
    let sender = tokio::spawn(run_sender(monitor("x"), line.clone(), Some(40), tx));
    tokio::time::sleep(ms(500)).await;
    line.inject(vec![0xFF; 7]); // truncated
    line.inject(vec![]); // empty
    let forged = ReflectorPacket {
        sequence: 3,
        timestamp: NtpTimestamp::default(),
        error_estimate: ErrorEstimate::from_bits(0),
        receive_timestamp: NtpTimestamp::default(),
        sender_sequence: 3,                        // a real sequence number…
        sender_timestamp: NtpTimestamp::default(), // …with the wrong timestamp
        sender_error_estimate: ErrorEstimate::from_bits(0),
        sender_ttl: 0,
    };
    line.inject(forged.encode().to_vec());
    let counters = sender.await.unwrap().unwrap();
    assert_eq!((counters.malformed, counters.foreign), (2, 1));
    assert_eq!((counters.sent, counters.answered), (40, 40));
}

#[tokio::test(start_paused = true)]
async fn dropping_the_report_receiver_stops_the_sender() {
    let line = SimTransport::new(Impairment::clean(ms(10)), 4, WALL_START);
    let (tx, rx) = mpsc::unbounded_channel();
    let sender = tokio::spawn(run_sender(monitor("x"), line, None, tx));
    tokio::time::sleep(ms(2_500)).await;
    drop(rx);
    let counters = tokio::time::timeout(ms(1_500), sender)
        .await
        .expect("sender stops within a summary period")
        .unwrap()
        .unwrap();
    assert!(counters.sent >= 50, "{counters:?}");
}

async fn loopback_round(bind: &str) {
    let reflector_socket = bind_reflector(bind.parse().unwrap()).await.unwrap();
    let reflector_addr = reflector_socket.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let reflector = tokio::spawn(run_reflector(reflector_socket, async {
        let _ = stopped.await;
    }));

    let mut config = MonitorConfig::new("lo");
    config.interval = ms(10);
    config.summary_every = ms(200);
    let mut handle = spawn_sender(SenderConfig {
        monitor: config,
        reflector: reflector_addr,
        socket: SocketOptions {
            dscp: Some(46), // EF, as a voice class would
            ..SocketOptions::default()
        },
        count: Some(50),
    })
    .unwrap();

    // A stranger writes to the prober's port: counted as foreign, not as an answer.
    let stranger = tokio::net::UdpSocket::bind(SocketAddr::new(reflector_addr.ip(), 0))
        .await
        .unwrap();
    stranger
        .send_to(&[0u8; 44], handle.local_addr())
        .await
        .unwrap();
    // And sends the reflector garbage: dropped, counted.
    stranger.send_to(b"hello", reflector_addr).await.unwrap();

    let mut summaries = Vec::new();
    while let Some(report) = handle.reports.recv().await {
        if let LineReport::Summary(s) = report {
            summaries.push(s);
        }
    }
    let counters = handle.finish().await.unwrap();
    assert_eq!((counters.sent, counters.answered), (50, 50), "{counters:?}");
    assert_eq!(counters.foreign, 1, "{counters:?}");
    let last = summaries.last().expect("summaries");
    assert_eq!((last.long.probes, last.long.lost), (50, 0));
    let rtt = last.long.rtt_ms.unwrap();
    assert!(rtt.min > 0.0 && rtt.p50 < 20.0, "loopback rtt {rtt:?}");
    // The answer carried our timestamps back: one-way figures exist and are sane.
    assert!(last.long.fwd_pdv_p99_ms.unwrap() >= 0.0);

    stop.send(()).unwrap();
    let reflected = reflector.await.unwrap().unwrap();
    assert_eq!((reflected.reflected, reflected.malformed), (50, 1));
}

#[tokio::test]
async fn sender_and_reflector_talk_over_real_udp_on_ipv4_loopback() {
    loopback_round("127.0.0.1:0").await;
}

#[tokio::test]
async fn sender_and_reflector_talk_over_real_udp_on_ipv6_loopback() {
    if std::net::UdpSocket::bind("[::1]:0").is_err() {
        eprintln!("no IPv6 loopback here; skipped");
        return;
    }
    loopback_round("[::1]:0").await;
}

#[tokio::test]
async fn a_missing_device_is_a_clear_error_before_anything_runs() {
    let err = spawn_sender(SenderConfig {
        monitor: MonitorConfig::new("x"),
        reflector: "127.0.0.1:862".parse().unwrap(),
        socket: SocketOptions {
            device: Some("wstnodev0".into()),
            ..SocketOptions::default()
        },
        count: Some(1),
    })
    .unwrap_err();
    assert!(err.to_string().contains("wstnodev0"), "{err}");
    let mut bad = MonitorConfig::new("x");
    bad.interval = Duration::ZERO;
    let err = spawn_sender(SenderConfig {
        monitor: bad,
        reflector: "127.0.0.1:862".parse().unwrap(),
        socket: SocketOptions::default(),
        count: Some(1),
    })
    .unwrap_err();
    assert!(err.to_string().contains("interval"), "{err}");
}
