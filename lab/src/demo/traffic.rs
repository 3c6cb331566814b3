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
