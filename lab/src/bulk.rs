//! Bulk TCP between two lab namespaces, measured at the receiver.
//!
//! The sender uses cubic per socket (namespaces inherit the host's bbr and cannot change the
//! default, DESIGN §6). Throughput is counted over a window after a warm-up, so slow start
//! does not flatter or spoil the figure.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;

use crate::netns;

/// What a bulk transfer achieved.
#[derive(Debug, Clone, Serialize)]
pub struct BulkResult {
    /// Goodput over the measured window, bits per second.
    pub bits_per_second: f64,
    pub bytes: u64,
    pub window: Duration,
}

/// Sends as fast as TCP allows from namespace `from` to a receiver bound at `to` inside
/// namespace `to_ns`, for `warmup + window`; returns the goodput seen during `window`.
pub fn run(
    from: &str,
    to_ns: &str,
    to: SocketAddr,
    warmup: Duration,
    window: Duration,
) -> anyhow::Result<BulkResult> {
    let listener = netns::run_in(to_ns, || TcpListener::bind(to))??;
    let target = listener.local_addr()?;
    let stream = netns::run_in(from, || -> anyhow::Result<TcpStream> {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(target),
            socket2::Type::STREAM,
            None,
        )?;
        socket.set_tcp_congestion(b"cubic").context("cubic")?;
        socket.connect_timeout(&target.into(), Duration::from_secs(5))?;
        Ok(socket.into())
    })??;
    let (mut server, _) = listener.accept()?;
    server.set_read_timeout(Some(Duration::from_secs(2)))?;
    let total = warmup + window;
    std::thread::scope(|s| {
        let writer = s.spawn(move || {
            let mut stream = stream;
            let _ = stream.set_write_timeout(Some(Duration::from_millis(500)));
            let chunk = vec![0x5au8; 64 * 1024];
            let start = Instant::now();
            while start.elapsed() < total {
                if stream.write_all(&chunk).is_err() {
                    break;
                }
            }
        });
        let mut buf = vec![0u8; 256 * 1024];
        let start = Instant::now();
        let mut counted = 0u64;
        let mut window_start = None;
        loop {
            let n = match server.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let t = start.elapsed();
            if t >= total {
                break;
            }
            if t >= warmup {
                window_start.get_or_insert(t);
                counted += n as u64;
            }
        }
        drop(server);
        let _ = writer.join();
        let measured = window_start
            .map(|w| (start.elapsed().min(total)).saturating_sub(w))
            .unwrap_or_default();
        if measured.is_zero() {
            anyhow::bail!("no data arrived after the warm-up");
        }
        Ok(BulkResult {
            bits_per_second: counted as f64 * 8.0 / measured.as_secs_f64(),
            bytes: counted,
            window: measured,
        })
    })
}

/// The same measurement with iperf3 (Debian's `iperf3`): a one-off server in `to_ns`, a
/// client in `from` with `-C cubic`, `-O` omitting the warm-up; goodput as the receiver saw it.
pub fn run_iperf3(
    from: &str,
    to_ns: &str,
    to: std::net::IpAddr,
    warmup: Duration,
    window: Duration,
) -> anyhow::Result<BulkResult> {
    let port = (5201 + rand::random::<u16>() % 2000).to_string();
    let addr = to.to_string();
    let mut server = netns::run_in(to_ns, || {
        std::process::Command::new("iperf3")
            .args(["-s", "-1", "-B", &addr, "-p", &port])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
    })?
    .context("cannot start iperf3 (Debian package iperf3)")?;
    // iperf3 runs -O (omitted warm-up) seconds in addition to -t.
    let secs = window.as_secs().max(1).to_string();
    let omit = warmup.as_secs().to_string();
    let mut output = None;
    // The server needs a moment to listen; the client fails fast until it does.
    for _ in 0..50 {
        let out = netns::run_in(from, || {
            std::process::Command::new("iperf3")
                .args([
                    "-c", &addr, "-p", &port, "-t", &secs, "-O", &omit, "-C", "cubic", "-J",
                ])
                .output()
        })??;
        if out.status.success() {
            output = Some(out.stdout);
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = server.kill();
    let _ = server.wait();
    let stdout = output.context("iperf3 client could not connect")?;
    let json: serde_json::Value = serde_json::from_slice(&stdout).context("iperf3 -J output")?;
    let received = &json["end"]["sum_received"];
    Ok(BulkResult {
        bits_per_second: received["bits_per_second"]
            .as_f64()
            .context("no end.sum_received.bits_per_second in iperf3 output")?,
        bytes: received["bytes"].as_u64().unwrap_or(0),
        window: Duration::from_secs_f64(received["seconds"].as_f64().unwrap_or(0.0)),
    })
}
