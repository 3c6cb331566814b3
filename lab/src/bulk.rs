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
