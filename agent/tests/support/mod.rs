//! Shared by the agent's kernel tests and the data-plane benchmark: a site namespace with
//! two WAN lines (`wan0` "mpls" 10.100.1.0/24, `wan1` "inet" 10.100.2.0/24, veth pairs) to a
//! far namespace holding the remote LAN 10.200.0.0/24, and optionally a LAN host 10.1.0.2
//! behind the site. Everything is removed on drop, also on panic. Needs root and `ip`.
#![allow(dead_code)] // each test file uses its own part of this module

use std::collections::BTreeMap;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// Runs a command, panics with its stderr if it fails, returns its stdout.
pub fn sh(args: &[&str]) -> String {
    let output = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("spawn");
    assert!(
        output.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Loads an nft script inside namespace `ns`.
pub fn nft_in(ns: &str, script: &str) {
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success(), "nft -f in {ns}");
}

/// Runs `f` on a thread inside namespace `ns` (sockets stay in the namespace they are made in).
pub fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(path).unwrap();
        // SAFETY: setns on a valid namespace fd only changes this short-lived thread.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .unwrap()
}

/// Sets sysctl `key=value` inside namespace `ns`.
pub fn sysctl(ns: &str, setting: &str) {
    sh(&["ip", "netns", "exec", ns, "sysctl", "-qw", setting]);
}

/// The site, its far end and (with [`SiteLab::with_lan`]) a LAN host.
pub struct SiteLab {
    pub site: String,
    pub far: String,
    /// A LAN host behind the site (10.1.0.2 on `l0`, the site's side is `lan0` 10.1.0.1),
    /// whose traffic the site forwards; `None` without a LAN.
    pub lan: Option<String>,
}

impl SiteLab {
    /// Site and far end only. `tag` (a letter or two) tells the namespaces of different
    /// test files apart; a counter tells apart the tests of one file.
    pub fn new(tag: &str) -> SiteLab {
        SiteLab::build(tag, false)
    }

    /// Site, far end and a LAN host, the site forwarding between them.
    pub fn with_lan(tag: &str) -> SiteLab {
        SiteLab::build(tag, true)
    }

    /// The LAN host's namespace; panics when the lab was built without one.
    pub fn lan(&self) -> &str {
        self.lan.as_deref().expect("lab built without a LAN host")
    }

    fn build(tag: &str, with_lan: bool) -> SiteLab {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let id = format!("{}{n}", std::process::id() % 100_000);
        let lab = SiteLab {
            site: format!("wst{tag}S{id}"),
            far: format!("wst{tag}F{id}"),
            lan: with_lan.then(|| format!("wst{tag}L{id}")),
        };
        let (site, far) = (lab.site.as_str(), lab.far.as_str());
        for ns in [Some(site), Some(far), lab.lan.as_deref()]
            .into_iter()
            .flatten()
        {
            sh(&["ip", "netns", "add", ns]);
            sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
            for setting in [
                "net.ipv4.conf.all.rp_filter=0",
                "net.ipv4.conf.default.rp_filter=0",
                "net.ipv6.conf.all.disable_ipv6=1",
            ] {
                sysctl(ns, setting);
            }
        }
        for (wan, peer) in [("wan0", "w0"), ("wan1", "w1")] {
            sh(&[
                "ip", "-n", site, "link", "add", wan, "type", "veth", "peer", "name", peer,
                "netns", far,
            ]);
        }
        for (ns, dev) in [(site, "wan0"), (site, "wan1"), (far, "w0"), (far, "w1")] {
            sysctl(ns, &format!("net.ipv4.conf.{dev}.rp_filter=0"));
        }
        for (ns, dev, addr) in [
            (site, "wan0", "10.100.1.2/24"),
            (site, "wan1", "10.100.2.2/24"),
            (far, "w0", "10.100.1.1/24"),
            (far, "w1", "10.100.2.1/24"),
            (far, "lo", "10.200.0.1/32"),
        ] {
            sh(&["ip", "-n", ns, "addr", "add", addr, "dev", dev]);
            sh(&["ip", "-n", ns, "link", "set", dev, "up"]);
        }
        // Without a route in main a local socket fails before nft can mark the packet.
        sh(&[
            "ip",
            "-n",
            site,
            "route",
            "add",
            "10.200.0.0/24",
            "via",
            "10.100.1.1",
        ]);
        if let Some(lan) = lab.lan.as_deref() {
            sh(&[
                "ip", "-n", site, "link", "add", "lan0", "type", "veth", "peer", "name", "l0",
                "netns", lan,
            ]);
            for (ns, dev, addr) in [(site, "lan0", "10.1.0.1/24"), (lan, "l0", "10.1.0.2/24")] {
                sh(&["ip", "-n", ns, "addr", "add", addr, "dev", dev]);
                sh(&["ip", "-n", ns, "link", "set", dev, "up"]);
            }
            sh(&[
                "ip", "-n", lan, "route", "add", "default", "via", "10.1.0.1",
            ]);
            sysctl(site, "net.ipv4.ip_forward=1");
            sysctl(site, "net.ipv4.conf.lan0.rp_filter=0");
            sh(&[
                "ip",
                "-n",
                far,
                "route",
                "add",
                "10.1.0.0/24",
                "via",
                "10.100.1.2",
            ]);
        }
        lab
    }

    /// Packets counted per rule comment in the far end's `inet wsttest` table.
    pub fn far_counts(&self) -> BTreeMap<String, u64> {
        let listing: Value = serde_json::from_str(&sh(&[
            "ip", "netns", "exec", &self.far, "nft", "-j", "list", "table", "inet", "wsttest",
        ]))
        .unwrap();
        listing["nftables"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|object| object.get("rule"))
            .map(|rule| {
                let packets = rule["expr"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find_map(|e| e.pointer("/counter/packets").and_then(Value::as_u64))
                    .unwrap_or(0);
                (
                    rule["comment"].as_str().unwrap_or_default().to_string(),
                    packets,
                )
            })
            .collect()
    }
}

impl Drop for SiteLab {
    fn drop(&mut self) {
        let me = std::process::id().to_string();
        for ns in [Some(&self.site), Some(&self.far), self.lan.as_ref()]
            .into_iter()
            .flatten()
        {
            if let Ok(pids) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&pids.stdout).split_whitespace() {
                    if pid != me {
                        let _ = Command::new("kill").args(["-9", pid]).status();
                    }
                }
            }
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}
