//! The demo's traffic: a voice stream (br1 pc → dc host) whose every gap is recorded, and
//! a bulk TCP transfer (cubic) that runs until told to stop.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::netns;
use crate::voice::{IntervalReport, PAYLOAD, RATE, VoicePacket, VoiceReceiver, monotonic_ns};

/// Gaps longer than this are reported one by one (the stream's spacing is 20 ms).
pub const GAP_REPORT_MS: f64 = 100.0;

/// What the voice receiver tells the demo.
#[derive(Debug, Clone)]
pub enum VoiceEvent {
    /// One second of the stream.
    Interval(IntervalReport),
    /// No packet for `ms`, starting `start_s` after the demo's zero.
    Gap { start_s: f64, ms: f64 },
}

/// A UDP socket created inside namespace `ns`.
pub fn udp_in(ns: &str, bind: SocketAddr, dscp: Option<u8>) -> anyhow::Result<UdpSocket> {
    let socket = netns::run_in(ns, || -> std::io::Result<std::net::UdpSocket> {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(bind),
            socket2::Type::DGRAM,
            None,
        )?;
        if let Some(dscp) = dscp {
            socket.set_tos_v4(u32::from(dscp) << 2)?;
        }
        socket.bind(&bind.into())?;
        socket.set_nonblocking(true)?;
        Ok(socket.into())
    })?
    .with_context(|| format!("UDP socket on {bind} in {ns}"))?;
    Ok(UdpSocket::from_std(socket)?)
}

/// Sends the voice stream (50 packets/s, 160 bytes) until `stop` is set.
pub async fn send_voice(socket: UdpSocket, to: SocketAddr, stop: Arc<AtomicBool>) -> u32 {
    let mut tick = tokio::time::interval(Duration::from_secs(1) / RATE);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut seq = 0u32;
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let packet = VoicePacket {
            stream: 1,
            seq,
            sent_ns: monotonic_ns(),
        };
        // An unreachable path is what the receiver should see as loss.
        let _ = socket.send_to(&packet.encode(PAYLOAD), to).await;
        seq = seq.wrapping_add(1);
    }
    seq
}

/// Receives the stream until `stop`; reports each second and each long gap.
/// `zero_ns` is the demo's zero on the monotonic clock.
pub async fn receive_voice(
    socket: UdpSocket,
    zero_ns: u64,
    stop: Arc<AtomicBool>,
    events: mpsc::UnboundedSender<VoiceEvent>,
) -> crate::voice::StreamSummary {
    let mut rx = VoiceReceiver::new(monotonic_ns(), 1_000_000_000);
    let mut last: Option<u64> = None;
    let mut buf = vec![0u8; 2048];
    let rel = |ns: u64| ns.saturating_sub(zero_ns) as f64 / 1e9;
    while !stop.load(Ordering::Relaxed) {
        let now = monotonic_ns();
        while now >= rx.interval_end_ns() {
            let _ = events.send(VoiceEvent::Interval(rx.close_interval()));
        }
        let wait = Duration::from_nanos(rx.interval_end_ns().saturating_sub(now))
            .min(Duration::from_millis(200));
        if let Ok(Ok((n, _))) = tokio::time::timeout(wait, socket.recv_from(&mut buf)).await
            && let Some(packet) = VoicePacket::decode(&buf[..n])
        {
            let arrival = monotonic_ns();
            if let Some(previous) = last {
                let gap_ms = arrival.saturating_sub(previous) as f64 / 1e6;
                if gap_ms > GAP_REPORT_MS {
                    let _ = events.send(VoiceEvent::Gap {
                        start_s: rel(previous),
                        ms: gap_ms,
                    });
                }
            }
            last = Some(arrival);
            rx.on_packet(arrival, packet);
        }
    }
    rx.summary()
}

/// A bulk TCP transfer between two namespaces; stops when dropped.
#[derive(Debug)]
pub struct Bulk {
    stop: Arc<AtomicBool>,
    bytes: Arc<AtomicU64>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Bulk {
    /// Listens on `to` inside `to_ns`, connects from `from_ns` (cubic) and sends as fast as
    /// the path allows.
    pub fn start(from_ns: &str, to_ns: &str, to: SocketAddr) -> anyhow::Result<Bulk> {
        let listener = netns::run_in(to_ns, || TcpListener::bind(to))?
            .with_context(|| format!("bulk listener on {to}"))?;
        let client = netns::run_in(from_ns, || -> anyhow::Result<TcpStream> {
            let socket = socket2::Socket::new(
                socket2::Domain::for_address(to),
                socket2::Type::STREAM,
                None,
            )?;
            socket.set_tcp_congestion(b"cubic").context("cubic")?;
            socket.connect_timeout(&to.into(), Duration::from_secs(5))?;
            Ok(socket.into())
        })??;
        let (mut server, _) = listener.accept()?;
        server.set_read_timeout(Some(Duration::from_millis(500)))?;
        let stop = Arc::new(AtomicBool::new(false));
        let bytes = Arc::new(AtomicU64::new(0));
        let mut threads = Vec::new();
        {
            let stop = stop.clone();
            let mut client = client;
            client.set_write_timeout(Some(Duration::from_millis(500)))?;
            threads.push(std::thread::spawn(move || {
                let chunk = vec![0x5au8; 64 * 1024];
                while !stop.load(Ordering::Relaxed) {
                    match client.write(&chunk) {
                        Ok(_) => {}
                        Err(e)
                            if matches!(
                                e.kind(),
                                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                            ) => {}
                        Err(_) => break,
                    }
                }
            }));
        }
        {
            let stop = stop.clone();
            let bytes = bytes.clone();
            threads.push(std::thread::spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                while !stop.load(Ordering::Relaxed) {
                    match server.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => {
                            bytes.fetch_add(n as u64, Ordering::Relaxed);
                        }
                        Err(e)
                            if matches!(
                                e.kind(),
                                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                            ) => {}
                        Err(_) => break,
                    }
                }
            }));
        }
        Ok(Bulk {
            stop,
            bytes,
            threads,
        })
    }

    /// Bytes received so far.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

impl Drop for Bulk {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// One application transaction: a TLS handshake (`saas`) or a DNS lookup (`dns`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct AppSample {
    /// Seconds since the demo's zero, when the transaction started.
    pub t: f64,
    /// The class the policy gives it (`saas`, `dns`).
    pub class: String,
    pub ok: bool,
    /// Handshake or lookup time, when it succeeded.
    pub ms: Option<f64>,
}

/// Repeated SaaS-over-TLS handshakes and DNS lookups from the branch, each on its own
/// thread, until dropped. Real client bytes (OpenSSL's ClientHello with its SNI, a DNS
/// query) so the branch agent's classifier sees what it would see from a user.
#[derive(Debug)]
pub struct Apps {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// Where the application traffic goes and how often.
#[derive(Debug, Clone)]
pub struct AppsPlan {
    /// Namespace the TLS client runs in, and the server's address (port 443).
    pub tls_from: String,
    pub tls_to: SocketAddr,
    pub sni: String,
    pub tls_every: Duration,
    /// Namespace the DNS client runs in, and the server's address (port 53).
    pub dns_from: String,
    pub dns_to: SocketAddr,
    pub dns_name: String,
    pub dns_every: Duration,
}

impl Apps {
    /// Starts both clients; samples go to `tx` with times relative to `zero_ns`.
    pub fn start(
        plan: AppsPlan,
        zero_ns: u64,
        tx: mpsc::UnboundedSender<AppSample>,
    ) -> anyhow::Result<Apps> {
        let stop = Arc::new(AtomicBool::new(false));
        let rel = move || monotonic_ns().saturating_sub(zero_ns) as f64 / 1e9;
        let mut threads = Vec::new();
        let spawn = |name: &str,
                     every: Duration,
                     class: &'static str,
                     run: Box<dyn Fn() -> anyhow::Result<Duration> + Send>|
         -> anyhow::Result<std::thread::JoinHandle<()>> {
            let stop = stop.clone();
            let tx = tx.clone();
            Ok(std::thread::Builder::new()
                .name(name.into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let t = rel();
                        let started = std::time::Instant::now();
                        let result = run();
                        let sample = AppSample {
                            t,
                            class: class.to_string(),
                            ok: result.is_ok(),
                            ms: result.ok().map(|d| d.as_secs_f64() * 1e3),
                        };
                        if tx.send(sample).is_err() {
                            return;
                        }
                        std::thread::sleep(every.saturating_sub(started.elapsed()));
                    }
                })?)
        };
        let tls = plan.clone();
        threads.push(spawn(
            "demo-tls",
            plan.tls_every,
            "saas",
            Box::new(move || crate::apps::tls_connect(&tls.tls_from, tls.tls_to, &tls.sni)),
        )?);
        let dns = plan;
        threads.push(spawn(
            "demo-dns",
            dns.dns_every,
            "dns",
            Box::new(move || {
                let started = std::time::Instant::now();
                crate::apps::dns_query(
                    &dns.dns_from,
                    dns.dns_to,
                    &dns.dns_name,
                    Duration::from_secs(1),
                )?;
                Ok(started.elapsed())
            }),
        )?);
        Ok(Apps { stop, threads })
    }
}

impl Drop for Apps {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// Reads one counter's value per `class` label from a Prometheus text page.
pub fn per_class(metrics: &str, name: &str) -> std::collections::BTreeMap<String, f64> {
    let mut out = std::collections::BTreeMap::new();
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix(name).and_then(|r| r.strip_prefix('{')) else {
            continue;
        };
        let Some((labels, value)) = rest.split_once("} ") else {
            continue;
        };
        let class = labels
            .split(',')
            .find_map(|l| l.strip_prefix("class=\""))
            .map(|c| c.trim_end_matches('"'));
        if let (Some(class), Ok(value)) = (class, value.trim().parse::<f64>()) {
            out.insert(class.to_string(), value);
        }
    }
    out
}

/// `GET /metrics` from `addr` inside namespace `ns` (the agents serve it there).
pub fn scrape(ns: &str, addr: SocketAddr) -> anyhow::Result<String> {
    let mut stream = netns::run_in(ns, || {
        TcpStream::connect_timeout(&addr, Duration::from_secs(2))
    })?
    .with_context(|| format!("connecting to {addr} in {ns}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(
        stream,
        "GET /metrics HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .context("no HTTP body")?;
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_class_counters_are_read_from_the_prometheus_text() {
        let page = "# HELP x\n\
wansteer_agent_dpi_verdicts_installed_total{class=\"saas\",site=\"br1\"} 12\n\
wansteer_agent_dpi_verdicts_installed_total{class=\"voice\",site=\"br1\"} 0\n\
wansteer_agent_dpi_verdicts_installed_totalx{class=\"no\"} 3\n";
        let counts = per_class(page, "wansteer_agent_dpi_verdicts_installed_total");
        assert_eq!(counts.get("saas"), Some(&12.0));
        assert_eq!(counts.get("voice"), Some(&0.0));
        assert_eq!(counts.len(), 2);
    }
}
