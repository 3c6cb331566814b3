//! A real-socket test through a veth pair into a network namespace the test creates:
//! the sender is pinned to the veth with SO_BINDTODEVICE (and SO_MARK), the reflector
//! lives in the namespace. A sender pinned to the wrong device gets no answers.
//! Needs root and `ip`; skipped (with a message) otherwise.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::Duration;

use tokio::sync::oneshot;
use wansteer_probes::net::SocketOptions;
use wansteer_probes::{MonitorConfig, SenderConfig, run_reflector, spawn_sender};
use wansteer_wire::report::LineReport;

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Removes what the test created, also when it panics.
struct Lab {
    netns: String,
    veth: String,
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Ok(out) = Command::new("ip")
            .args(["netns", "pids", &self.netns])
            .output()
        {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-9", pid]).status();
            }
        }
        let _ = ip(&["link", "del", &self.veth]);
        let _ = ip(&["netns", "del", &self.netns]);
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// Binds a UDP socket inside `netns` (from a helper thread that enters it; the socket
/// stays in that namespace wherever it is used).
fn socket_in(netns: &str, addr: &str) -> std::net::UdpSocket {
    let path = format!("/var/run/netns/{netns}");
    let addr = addr.to_owned();
    std::thread::spawn(move || {
        let ns = File::open(&path).expect("netns file");
        // SAFETY: setns on this helper thread only, with a valid namespace fd; the thread
        // ends right after binding.
        let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
        let socket = std::net::UdpSocket::bind(&addr).expect("bind in netns");
        socket.set_nonblocking(true).unwrap();
        socket
    })
    .join()
    .unwrap()
}

#[tokio::test]
async fn probes_pinned_to_a_veth_reach_a_reflector_in_a_namespace() {
    if !is_root() || Command::new("ip").arg("-V").output().is_err() {
        eprintln!("needs root and iproute2; skipped");
        return;
    }
    let pid = std::process::id();
    let lab = Lab {
        netns: format!("wstpr{pid}"),
        veth: format!("wpa{pid}"),
    };
    let peer = format!("wpb{pid}");
    let octet = pid % 250 + 1;
    let (local, remote) = (format!("10.231.{octet}.1"), format!("10.231.{octet}.2"));
    ip(&["netns", "add", &lab.netns]).unwrap();
    ip(&[
        "link", "add", &lab.veth, "type", "veth", "peer", "name", &peer,
    ])
    .unwrap();
    ip(&["link", "set", &peer, "netns", &lab.netns]).unwrap();
    ip(&["addr", "add", &format!("{local}/30"), "dev", &lab.veth]).unwrap();
    ip(&["link", "set", &lab.veth, "up"]).unwrap();
    let remote_cidr = format!("{remote}/30");
    let n = lab.netns.as_str();
    ip(&["-n", n, "addr", "add", &remote_cidr, "dev", &peer]).unwrap();
    ip(&["-n", n, "link", "set", &peer, "up"]).unwrap();
    ip(&["-n", n, "link", "set", "lo", "up"]).unwrap();

    let reflector_addr = format!("{remote}:862");
    let socket = tokio::net::UdpSocket::from_std(socket_in(&lab.netns, &reflector_addr)).unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let reflector = tokio::spawn(run_reflector(socket, async {
        let _ = stopped.await;
    }));

    let send = |device: &str, count| {
        let mut monitor = MonitorConfig::new(device);
        monitor.interval = Duration::from_millis(10);
        spawn_sender(SenderConfig {
            monitor,
            reflector: reflector_addr.parse().unwrap(),
            socket: SocketOptions {
                device: Some(device.to_owned()),
                mark: Some(0x2a),
                dscp: Some(34),
                ..SocketOptions::default()
            },
            count: Some(count),
        })
        .unwrap()
    };

    let mut pinned = send(&lab.veth, 60);
    let mut summaries = Vec::new();
    while let Some(report) = pinned.reports.recv().await {
        if let LineReport::Summary(s) = report {
            summaries.push(s);
        }
    }
    let counters = pinned.finish().await.unwrap();
    assert_eq!((counters.sent, counters.answered), (60, 60), "{counters:?}");
    let rtt = summaries.last().unwrap().long.rtt_ms.unwrap();
    assert!(rtt.p50 < 20.0, "{rtt:?}");

    // Pinned to loopback, the same destination is unreachable: no answers at all.
    let wrong = send("lo", 10);
    let counters = wrong.finish().await.unwrap();
    assert_eq!(counters.answered, 0, "{counters:?}");

    stop.send(()).unwrap();
    let reflected = reflector.await.unwrap().unwrap();
    assert_eq!(reflected.reflected, 60);
    drop(lab);
}
