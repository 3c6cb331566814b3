//! Thin tokio tasks around the sans-IO core.
//!
//! ```text
//!   spawn_sender(SenderConfig) ──► sender task ──(LineReport: summaries, transitions)──► SenderHandle.reports
//!        │                          │  ▲
//!        │ socket bound to the line │  │ replies
//!        ▼ (SO_BINDTODEVICE/SO_MARK)▼  │
//!                  UDP ── WAN line ── reflector task (run_reflector) in the far agent
//! ```
//!
//! The sender task owns a [`LineMonitor`] and a [`ProbeTransport`]: it sends a probe every
//! interval, feeds every datagram to the monitor, and polls it at every send, every reply
//! and at the outage deadline the monitor asks for. Dropping the [`SenderHandle`] stops it.
//! The transport is a trait so tests can run the same loop over a synthetic line under
//! tokio's paused clock.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until};
use wansteer_wire::report::{LineReport, ProbeCounters};

use crate::monitor::{LineMonitor, MonitorConfig};
use crate::net::{SocketOptions, udp_socket};
use crate::packet::{ErrorEstimate, NtpTimestamp};
use crate::reflector::{ReflectorCounters, reflect};
use crate::sim::{Impairment, SimLine};

/// Where probes go and come from.
pub trait ProbeTransport: Send + 'static {
    /// Sends one probe to the reflector.
    fn send(&self, bytes: &[u8]) -> impl Future<Output = io::Result<()>> + Send;
    /// Receives one datagram; cancel-safe.
    fn recv(&self, buf: &mut [u8]) -> impl Future<Output = io::Result<(usize, SocketAddr)>> + Send;
    /// The reflector's address (datagrams from elsewhere are foreign).
    fn reflector(&self) -> SocketAddr;
}

/// A UDP socket towards a reflector.
#[derive(Debug)]
pub struct UdpTransport {
    socket: UdpSocket,
    reflector: SocketAddr,
}

impl UdpTransport {
    /// Wraps a bound socket.
    pub fn new(socket: UdpSocket, reflector: SocketAddr) -> Self {
        Self { socket, reflector }
    }

    /// The local address probes leave from.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }
}

impl ProbeTransport for UdpTransport {
    async fn send(&self, bytes: &[u8]) -> io::Result<()> {
        self.socket.send_to(bytes, self.reflector).await.map(drop)
    }

    async fn recv(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.socket.recv_from(buf).await
    }

    fn reflector(&self) -> SocketAddr {
        self.reflector
    }
}

/// Configuration of one line's sender.
#[derive(Debug, Clone)]
pub struct SenderConfig {
    /// The prober core's configuration (line name, interval, windows, SLAs).
    pub monitor: MonitorConfig,
    /// The reflector to probe.
    pub reflector: SocketAddr,
    /// Socket options that pin probes to the line.
    pub socket: SocketOptions,
    /// Stop after this many probes (and one last loss timeout); `None` runs until dropped.
    pub count: Option<u64>,
}

/// A running sender. Drop it to stop the prober.
#[derive(Debug)]
pub struct SenderHandle {
    /// Summaries at the configured cadence and every health transition.
    pub reports: mpsc::UnboundedReceiver<LineReport>,
    local_addr: SocketAddr,
    task: Option<JoinHandle<io::Result<ProbeCounters>>>,
}

impl SenderHandle {
    /// The address probes leave from.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Waits for a counted run to finish; returns the final counters.
    pub async fn finish(mut self) -> io::Result<ProbeCounters> {
        match self.task.take() {
            Some(task) => task.await.map_err(io::Error::other)?,
            None => Err(io::Error::other("sender already finished")),
        }
    }
}

impl Drop for SenderHandle {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Binds a socket for the line and starts probing. Errors (bad device, no permission
/// for SO_MARK, bad configuration) come back here, before any task runs.
pub fn spawn_sender(config: SenderConfig) -> io::Result<SenderHandle> {
    let monitor = LineMonitor::new(config.monitor.clone(), wall_clock())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let bind = config
        .socket
        .bind
        .unwrap_or_else(|| unspecified_for(config.reflector));
    let socket = UdpSocket::from_std(udp_socket(bind, &config.socket)?.into())?;
    let transport = UdpTransport::new(socket, config.reflector);
    let local_addr = transport.local_addr()?;
    let (tx, reports) = mpsc::unbounded_channel();
    let task = tokio::spawn(run_sender(monitor, transport, config.count, tx));
    Ok(SenderHandle {
        reports,
        local_addr,
        task: Some(task),
    })
}

/// The sender loop: probe every interval, digest replies, report. Returns the counters
/// when `count` probes are done or when the report receiver is gone.
pub async fn run_sender<T: ProbeTransport>(
    mut monitor: LineMonitor,
    transport: T,
    count: Option<u64>,
    reports: mpsc::UnboundedSender<LineReport>,
) -> io::Result<ProbeCounters> {
    let start = Instant::now();
    let interval = monitor.config().interval;
    let reflector = transport.reflector();
    let mut next_send = start;
    let mut sent = 0u64;
    let mut finish_at: Option<Instant> = None;
    let mut buf = vec![0u8; 2048];
    loop {
        let wake = start + monitor.next_wakeup();
        let send_due = count.is_none_or(|c| sent < c);
        let mut reports_out = Vec::new();
        tokio::select! {
            received = transport.recv(&mut buf) => {
                let now = start.elapsed();
                match received {
                    Ok((len, from)) => {
                        monitor.on_datagram(now, &buf[..len], from == reflector);
                    }
                    Err(error) => tracing::debug!(%error, "probe receive failed"),
                }
                reports_out = monitor.poll(now);
            }
            _ = sleep_until(next_send), if send_due => {
                let now = start.elapsed();
                if monitor.on_timer(next_send - start, now) {
                    tracing::debug!(late_ms = (now - (next_send - start)).as_millis() as u64, "prober was not scheduled: host stall discounted");
                }
                let packet = monitor.on_send(now);
                if let Err(error) = transport.send(&packet.encode()).await {
                    tracing::debug!(%error, "probe send failed");
                    monitor.on_send_failed(packet.sequence);
                }
                sent += 1;
                // Keep the cadence; after a stall, skip the missed slots instead of bursting.
                next_send += interval;
                if next_send + interval < Instant::now() {
                    next_send = Instant::now();
                }
                if count.is_some_and(|c| sent >= c) {
                    finish_at = Some(Instant::now() + monitor.loss_timeout());
                }
                reports_out.extend(monitor.poll(now));
            }
            _ = sleep_until(wake) => {
                let now = start.elapsed();
                monitor.on_timer(wake - start, now);
                reports_out = monitor.poll(now);
            }
            _ = sleep_until(finish_at.unwrap_or(start)), if finish_at.is_some() => {
                let summary = monitor.summary_now(start.elapsed());
                let _ = reports.send(LineReport::Summary(Box::new(summary)));
                return Ok(monitor.counters());
            }
        }
        for report in reports_out {
            if reports.send(report).is_err() {
                return Ok(monitor.counters());
            }
        }
    }
}

/// Binds a reflector socket (ordinary UDP; port 862 is STAMP's well-known port).
pub async fn bind_reflector(listen: SocketAddr) -> io::Result<UdpSocket> {
    UdpSocket::bind(listen).await
}

/// Answers every test packet on `socket` until `shutdown` resolves; returns counters.
pub async fn run_reflector(
    socket: UdpSocket,
    shutdown: impl Future<Output = ()>,
) -> io::Result<ReflectorCounters> {
    let clock = TaskClock::new();
    let error_estimate = ErrorEstimate::unsynchronized(Duration::from_millis(10));
    let mut counters = ReflectorCounters::default();
    let mut buf = vec![0u8; 2048];
    tokio::pin!(shutdown);
    loop {
        let (len, from) = tokio::select! {
            received = socket.recv_from(&mut buf) => match received {
                Ok(got) => got,
                Err(error) => {
                    tracing::debug!(%error, "reflector receive failed");
                    continue;
                }
            },
            () = &mut shutdown => return Ok(counters),
        };
        let received = clock.now();
        // TTL is not read (it needs IP_RECVTTL ancillary data); 0 says "unknown".
        match reflect(&buf[..len], received, clock.now(), error_estimate, 0) {
            Ok(answer) => match socket.send_to(&answer, from).await {
                Ok(_) => counters.reflected += 1,
                Err(error) => {
                    tracing::debug!(%error, %from, "reflector send failed");
                    counters.send_errors += 1;
                }
            },
            Err(_) => counters.malformed += 1,
        }
    }
}

/// Wall clock as NTP, advanced by tokio's clock (so it follows paused test time).
#[derive(Debug, Clone, Copy)]
struct TaskClock {
    wall_start: Duration,
    start: Instant,
}

impl TaskClock {
    fn new() -> Self {
        Self {
            wall_start: wall_clock(),
            start: Instant::now(),
        }
    }

    fn now(&self) -> NtpTimestamp {
        NtpTimestamp::from_unix_duration(self.wall_start + self.start.elapsed())
    }
}

fn wall_clock() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

fn unspecified_for(peer: SocketAddr) -> SocketAddr {
    match peer {
        SocketAddr::V4(_) => SocketAddr::from(([0, 0, 0, 0], 0)),
        SocketAddr::V6(_) => SocketAddr::from(([0u16; 8], 0)),
    }
}

/// A synthetic line behind the [`ProbeTransport`] trait, for tests under tokio's paused
/// clock: each probe is delayed, maybe lost, reflected with the far end's clock offset,
/// and delivered back after the reverse delay. The impairment can change mid-run.
#[derive(Debug, Clone)]
pub struct SimTransport {
    line: Arc<Mutex<SimLine>>,
    start: Instant,
    wall_start: Duration,
    replies_tx: mpsc::UnboundedSender<Vec<u8>>,
    replies_rx: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Vec<u8>>>>,
}

/// Fake reflector address the synthetic line answers from.
pub const SIM_REFLECTOR: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::new(192, 0, 2, 1),
    862,
));

impl SimTransport {
    /// A synthetic line starting at tokio's `now`; `wall_start` must be the monitor's.
    pub fn new(impairment: Impairment, seed: u64, wall_start: Duration) -> Self {
        let (replies_tx, replies_rx) = mpsc::unbounded_channel();
        Self {
            line: Arc::new(Mutex::new(SimLine::new(impairment, seed))),
            start: Instant::now(),
            wall_start,
            replies_tx,
            replies_rx: Arc::new(tokio::sync::Mutex::new(replies_rx)),
        }
    }

    /// Changes the line's behaviour from now on.
    pub fn set_impairment(&self, impairment: Impairment) {
        if let Ok(mut line) = self.line.lock() {
            line.set_impairment(impairment);
        }
    }

    /// Delivers a raw datagram to the sender as if the reflector had sent it.
    pub fn inject(&self, bytes: Vec<u8>) {
        let _ = self.replies_tx.send(bytes);
    }
}

impl ProbeTransport for SimTransport {
    async fn send(&self, bytes: &[u8]) -> io::Result<()> {
        let sent = self.start.elapsed();
        let (trip, answer) = {
            let mut line = self
                .line
                .lock()
                .map_err(|_| io::Error::other("sim line poisoned"))?;
            let trip = line.trip(sent, true);
            let answer = trip
                .back_at
                .map(|_| line.answer(bytes, &trip, self.wall_start));
            (trip, answer)
        };
        if let (Some(back), Some(answer)) = (trip.back_at, answer) {
            let tx = self.replies_tx.clone();
            let at = self.start + back;
            tokio::spawn(async move {
                sleep_until(at).await;
                let _ = tx.send(answer);
            });
        }
        Ok(())
    }

    async fn recv(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        let bytes = self
            .replies_rx
            .lock()
            .await
            .recv()
            .await
            .ok_or_else(|| io::Error::other("sim line closed"))?;
        let len = bytes.len().min(buf.len());
        buf[..len].copy_from_slice(&bytes[..len]);
        Ok((len, SIM_REFLECTOR))
    }

    fn reflector(&self) -> SocketAddr {
        SIM_REFLECTOR
    }
}
