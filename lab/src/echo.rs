//! Round-trip time through the lab: a UDP echo reflector and a prober (this host has no
//! `ping`), plus the pure statistics used to compare measured RTT with configured delay.
//!
//! Probes carry a sequence number; the prober keeps each send time and matches replies, so
//! lost and late replies are counted per probe, not guessed.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::netns;

/// A UDP echo server running on its own thread (created inside a namespace).
#[derive(Debug)]
pub struct Reflector {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Reflector {
    /// Starts echoing on `bind` inside namespace `namespace`.
    pub fn start(namespace: &str, bind: SocketAddr) -> anyhow::Result<Reflector> {
        let socket = netns::run_in(namespace, || UdpSocket::bind(bind))??;
        socket.set_read_timeout(Some(Duration::from_millis(100)))?;
        let addr = socket.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            crate::sched::realtime_priority();
            let mut buf = [0u8; 2048];
            while !flag.load(Ordering::Relaxed) {
                if let Ok((n, from)) = socket.recv_from(&mut buf) {
                    let _ = socket.send_to(&buf[..n], from);
                }
            }
        });
        Ok(Reflector {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

impl Drop for Reflector {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Sends `count` probes of `size` bytes every `interval` from namespace `namespace` to
/// `target`; returns each probe's RTT (`None` if no reply within `timeout` after the last).
pub fn probe(
    namespace: &str,
    target: SocketAddr,
    count: u32,
    interval: Duration,
    size: usize,
    timeout: Duration,
) -> anyhow::Result<Vec<Option<Duration>>> {
    let bind: SocketAddr = if target.is_ipv4() {
        "0.0.0.0:0".parse()?
    } else {
        "[::]:0".parse()?
    };
    let socket = netns::run_in(namespace, || UdpSocket::bind(bind))??;
    socket.set_read_timeout(Some(Duration::from_millis(20)))?;
    let receiver = socket.try_clone()?;
    let start = Instant::now();
    let sent_at: Vec<Duration> = Vec::with_capacity(count as usize);
    let sent_at = std::sync::Mutex::new(sent_at);
    let done = AtomicBool::new(false);
    let mut rtts = vec![None; count as usize];
    std::thread::scope(|s| {
        s.spawn(|| {
            crate::sched::realtime_priority();
            let mut buf = [0u8; 2048];
            let mut quiet_since: Option<Instant> = None;
            loop {
                if done.load(Ordering::SeqCst) {
                    let since = *quiet_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > timeout {
                        return;
                    }
                }
                if let Ok((n, _)) = receiver.recv_from(&mut buf) {
                    let now = start.elapsed();
                    if n >= 4 {
                        let seq = u32::from_be_bytes(buf[..4].try_into().expect("4 bytes"));
                        let sent = sent_at.lock().expect("lock").get(seq as usize).copied();
                        if let Some(sent) = sent
                            && let Some(slot) = rtts.get_mut(seq as usize)
                            && slot.is_none()
                        {
                            *slot = Some(now - sent);
                        }
                    }
                }
            }
        });
        // The sender gets its own thread so the caller's priority is left alone.
        s.spawn(|| {
            crate::sched::realtime_priority();
            let mut payload = vec![0u8; size.max(4)];
            for seq in 0..count {
                let due = interval * seq;
                let now = start.elapsed();
                if due > now {
                    std::thread::sleep(due - now);
                }
                payload[..4].copy_from_slice(&seq.to_be_bytes());
                sent_at.lock().expect("lock").push(start.elapsed());
                let _ = socket.send_to(&payload, target);
            }
            done.store(true, Ordering::SeqCst);
        });
    });
    Ok(rtts)
}

/// Summary of RTT samples, milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RttStats {
    pub sent: usize,
    pub received: usize,
    pub loss: f64,
    pub min_ms: f64,
    pub mean_ms: f64,
    pub median_ms: f64,
    pub p95_ms: f64,
    pub max_ms: f64,
    pub stddev_ms: f64,
}

impl RttStats {
    /// Summarises probe results; `None` if no probe came back.
    pub fn from_samples(samples: &[Option<Duration>]) -> Option<RttStats> {
        let mut ms: Vec<f64> = samples
            .iter()
            .flatten()
            .map(|d| d.as_secs_f64() * 1e3)
            .collect();
        if ms.is_empty() {
            return None;
        }
        ms.sort_by(f64::total_cmp);
        let n = ms.len() as f64;
        let mean = ms.iter().sum::<f64>() / n;
        let var = ms.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
        let pct = |p: f64| ms[((p * (n - 1.0)).round() as usize).min(ms.len() - 1)];
        Some(RttStats {
            sent: samples.len(),
            received: ms.len(),
            loss: 1.0 - n / samples.len() as f64,
            min_ms: ms[0],
            mean_ms: mean,
            median_ms: pct(0.5),
            p95_ms: pct(0.95),
            max_ms: ms[ms.len() - 1],
            stddev_ms: var.sqrt(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_of_known_samples() {
        let ms = |x: u64| Some(Duration::from_millis(x));
        let s = RttStats::from_samples(&[ms(10), ms(20), None, ms(30), ms(40)]).unwrap();
        assert_eq!((s.sent, s.received), (5, 4));
        assert!((s.loss - 0.2).abs() < 1e-12);
        assert_eq!((s.min_ms, s.max_ms, s.mean_ms), (10.0, 40.0, 25.0));
        assert!((s.stddev_ms - 125f64.sqrt()).abs() < 1e-9);
        assert!(RttStats::from_samples(&[None, None]).is_none());
    }
}
