//! `wansteer lab voice send|recv`: the voice stream on real UDP sockets.
//! Run them inside lab nodes with `wansteer lab exec NODE -- wansteer lab voice …`.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Subcommand;
use tokio::net::UdpSocket;

use super::{PAYLOAD, RATE, VoicePacket, VoiceReceiver, monotonic_ns};
use crate::units;

#[derive(Debug, Subcommand)]
pub enum VoiceCommand {
    /// Send a voice-like stream: 50 packets/s, 160-byte payload.
    Send {
        /// Receiver address, e.g. 10.0.0.10:4000 or [fd57::10]:4000.
        #[arg(long)]
        to: SocketAddr,
        /// How long to send, e.g. 30s (default: until Ctrl-C).
        #[arg(long, value_parser = parse_duration)]
        duration: Option<Duration>,
        /// DSCP to mark packets with (46 = EF, voice).
        #[arg(long, default_value_t = 46)]
        dscp: u8,
        /// Stream id carried in each packet.
        #[arg(long, default_value_t = 1)]
        stream: u32,
    },
    /// Receive a voice stream and report loss, gap, latency, jitter and MOS every second.
    Recv {
        /// Address to listen on.
        #[arg(long, default_value = "[::]:4000")]
        listen: SocketAddr,
        /// Stop after this long (default: until Ctrl-C); prints a summary at the end.
        #[arg(long, value_parser = parse_duration)]
        duration: Option<Duration>,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    units::parse_duration(s).map_err(|e| e.to_string())
}

pub async fn run(cmd: VoiceCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        VoiceCommand::Send {
            to,
            duration,
            dscp,
            stream,
        } => {
            let bind: SocketAddr = if to.is_ipv4() {
                "0.0.0.0:0".parse()?
            } else {
                "[::]:0".parse()?
            };
            let socket =
                socket2::Socket::new(socket2::Domain::for_address(to), socket2::Type::DGRAM, None)?;
            if to.is_ipv4() {
                socket.set_tos_v4(u32::from(dscp) << 2)?;
            } else {
                socket.set_tclass_v6(u32::from(dscp) << 2)?;
            }
            socket.bind(&bind.into())?;
            socket.set_nonblocking(true)?;
            let socket = UdpSocket::from_std(socket.into())?;
            let sent = send(&socket, to, stream, duration).await?;
            eprintln!("sent {sent} packets to {to}");
            Ok(ExitCode::SUCCESS)
        }
        VoiceCommand::Recv {
            listen,
            duration,
            json,
        } => {
            let socket = UdpSocket::bind(listen)
                .await
                .with_context(|| format!("cannot listen on {listen}"))?;
            let summary = receive(&socket, duration, |r| {
                if json {
                    println!("{}", serde_json::to_string(r).expect("serializable"));
                } else {
                    println!(
                        "t={:>5.0}s rx {:>3}/{:<3} loss {:>5.1}% gap {:>6.1}ms latency {:>7} jitter {:>5.2}ms MOS {:.2}",
                        r.t,
                        r.received,
                        r.expected,
                        r.loss * 100.0,
                        r.longest_gap_ms,
                        r.latency_ms.map_or("-".into(), |l| format!("{l:.2}ms")),
                        r.jitter_ms,
                        r.mos
                    );
                }
            })
            .await?;
            if json {
                println!("{}", serde_json::to_string(&summary)?);
            } else {
                println!(
                    "total: {} of {} received, loss {:.2}%, longest gap {:.1} ms, latency {}, jitter {:.2} ms, MOS {:.2}",
                    summary.received,
                    summary.expected,
                    summary.loss * 100.0,
                    summary.longest_gap_ms,
                    summary
                        .latency_ms
                        .map_or("-".into(), |l| format!("{l:.2} ms")),
                    summary.jitter_ms,
                    summary.mos
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Sends 50 packets/s on an absolute schedule until `duration` or Ctrl-C; returns the count.
pub async fn send(
    socket: &UdpSocket,
    to: SocketAddr,
    stream: u32,
    duration: Option<Duration>,
) -> anyhow::Result<u32> {
    let mut tick = tokio::time::interval(Duration::from_secs(1) / RATE);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let stop = async {
        match duration {
            Some(d) => tokio::time::sleep(d).await,
            None => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    };
    tokio::pin!(stop);
    let mut seq = 0u32;
    loop {
        tokio::select! {
            _ = &mut stop => return Ok(seq),
            _ = tick.tick() => {
                let packet = VoicePacket { stream, seq, sent_ns: monotonic_ns() };
                // A full or unreachable path is what the receiver should see as loss.
                let _ = socket.send_to(&packet.encode(PAYLOAD), to).await;
                seq = seq.wrapping_add(1);
            }
        }
    }
}

/// Receives until `duration` or Ctrl-C, calling `report` once per second.
pub async fn receive(
    socket: &UdpSocket,
    duration: Option<Duration>,
    mut report: impl FnMut(&super::IntervalReport),
) -> anyhow::Result<super::StreamSummary> {
    let start = monotonic_ns();
    let mut rx = VoiceReceiver::new(start, 1_000_000_000).with_nominal_rate(RATE);
    let end = duration.map(|d| start + d.as_nanos() as u64);
    let mut buf = vec![0u8; 2048];
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let now = monotonic_ns();
        if let Some(end) = end
            && now >= end
        {
            break;
        }
        while now >= rx.interval_end_ns() {
            report(&rx.close_interval());
        }
        let wake = rx.interval_end_ns().min(end.unwrap_or(u64::MAX));
        let timeout = Duration::from_nanos(wake.saturating_sub(now));
        tokio::select! {
            _ = &mut ctrl_c => break,
            r = tokio::time::timeout(timeout, socket.recv_from(&mut buf)) => {
                if let Ok(Ok((n, _))) = r
                    && let Some(p) = VoicePacket::decode(&buf[..n])
                {
                    rx.on_packet(monotonic_ns(), p);
                }
            }
        }
    }
    Ok(rx.summary())
}
