//! Building a [`Plan`] into the kernel and taking it down again, plus the state file that lets
//! `lab down`, `lab impair` and `lab stats` find a running lab.
//!
//! State lives in `/run/wansteer-lab/<prefix>/`: `state.json` (the plan, who owns the run)
//! and one control socket per line (`<line>.sock`). A build that fails half-way removes what
//! it created before returning the error.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::netns;
use crate::topology::{Plan, Role};

/// Where lab runs keep their state.
pub const RUN_DIR: &str = "/run/wansteer-lab";

/// A fresh run prefix: `wl` + 4 hex digits, unused by any namespace.
pub fn new_prefix() -> String {
    let existing = netns::list();
    loop {
        let tag: u16 = rand::random();
        let prefix = format!("wl{tag:04x}");
        if !existing
            .iter()
            .any(|n| n.starts_with(&format!("{prefix}-")))
        {
            return prefix;
        }
    }
}

/// What `lab up` records about a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabState {
    pub prefix: String,
    pub topology_file: String,
    /// Process that owns the run (the foreground `lab up`), if any.
    pub owner_pid: Option<u32>,
    pub detached: bool,
    pub plan: Plan,
}

impl LabState {
    pub fn dir(prefix: &str) -> PathBuf {
        Path::new(RUN_DIR).join(prefix)
    }

    pub fn socket(&self, line: &str) -> PathBuf {
        Self::dir(&self.prefix).join(format!("{line}.sock"))
    }

    pub fn save(&self) -> anyhow::Result<()> {
        let dir = Self::dir(&self.prefix);
        std::fs::create_dir_all(&dir)?;
        let tmp = dir.join("state.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?)?;
        std::fs::rename(&tmp, dir.join("state.json"))?;
        Ok(())
    }

    pub fn load(prefix: &str) -> anyhow::Result<LabState> {
        let path = Self::dir(prefix).join("state.json");
        let text = std::fs::read(&path)
            .with_context(|| format!("no lab run `{prefix}` ({} missing)", path.display()))?;
        serde_json::from_slice(&text).with_context(|| format!("corrupt {}", path.display()))
    }

    /// All recorded runs.
    pub fn all() -> Vec<LabState> {
        let Ok(dir) = std::fs::read_dir(RUN_DIR) else {
            return Vec::new();
        };
        let mut runs: Vec<LabState> = dir
            .filter_map(|e| e.ok())
            .filter_map(|e| LabState::load(&e.file_name().to_string_lossy()).ok())
            .collect();
        runs.sort_by(|a, b| a.prefix.cmp(&b.prefix));
        runs
    }

    /// The run a command means: the named one, or the only one.
    pub fn find(prefix: Option<&str>) -> anyhow::Result<LabState> {
        if let Some(p) = prefix {
            return LabState::load(p);
        }
        let mut runs = LabState::all();
        match runs.len() {
            0 => bail!("no lab is running (start one with `wansteer lab up FILE`)"),
            1 => Ok(runs.remove(0)),
            _ => bail!(
                "several labs are running ({}); pick one with --prefix",
                runs.iter()
                    .map(|r| r.prefix.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

/// Creates every namespace, link, address, route and setting of `plan`.
/// On failure removes whatever it created.
pub fn build(plan: &Plan) -> anyhow::Result<std::time::Duration> {
    let started = Instant::now();
    let clash: Vec<&str> = plan
        .namespaces
        .iter()
        .map(|n| n.name.as_str())
        .filter(|n| netns::exists(n))
        .collect();
    if !clash.is_empty() {
        bail!("namespaces already exist: {clash:?}");
    }
    let result = build_inner(plan);
    if let Err(e) = result {
        let _ = teardown(plan);
        return Err(e);
    }
    Ok(started.elapsed())
}

fn build_inner(plan: &Plan) -> anyhow::Result<()> {
    let adds: Vec<String> = plan
        .namespaces
        .iter()
        .map(|n| format!("netns add {}", n.name))
        .collect();
    netns::ip_batch(&adds, false)?;
    // Sysctls before any device exists, so new devices inherit the `default` values.
    parallel(plan, |ns| {
        netns::sysctl("net.ipv4.conf.all.rp_filter", "2")?;
        netns::sysctl("net.ipv4.conf.default.rp_filter", "2")?;
        netns::sysctl("net.ipv6.conf.all.accept_dad", "0")?;
        netns::sysctl("net.ipv6.conf.default.accept_dad", "0")?;
        match ns.role {
            Role::Router | Role::Cloud => {
                netns::sysctl("net.ipv4.ip_forward", "1")?;
                netns::sysctl("net.ipv6.conf.all.forwarding", "1")?;
            }
            Role::Wan => {
                // A layer-2 bump: no addresses, no router solicitations, no MLD.
                netns::sysctl("net.ipv6.conf.all.disable_ipv6", "1")?;
                netns::sysctl("net.ipv6.conf.default.disable_ipv6", "1")?;
            }
            Role::Host | Role::Controller => {}
        }
        Ok(())
    })?;
    let veths: Vec<String> = plan
        .veths
        .iter()
        .map(|v| {
            format!(
                "link add {} netns {} type veth peer name {} netns {}",
                v.a_name, v.a_ns, v.b_name, v.b_ns
            )
        })
        .collect();
    netns::ip_batch(&veths, false)?;
    parallel(plan, |ns| {
        let mut commands = vec!["link set lo up".to_string()];
        commands.extend(ns.commands.iter().cloned());
        netns::ip_batch(&commands, false).with_context(|| format!("in {}", ns.name))?;
        for dev in &ns.tx_offload_off {
            netns::ethtool_off(dev, &["tx", "tso", "gso"])?;
        }
        for dev in &ns.gro_off {
            netns::ethtool_off(dev, &["gro"])?;
        }
        Ok(())
    })
}

/// Runs `f` inside every namespace of the plan, two at a time (this machine has 2 cores).
fn parallel(
    plan: &Plan,
    f: impl Fn(&crate::topology::Namespace) -> anyhow::Result<()> + Sync,
) -> anyhow::Result<()> {
    let chunks: Vec<Vec<&crate::topology::Namespace>> = {
        let mut halves = vec![Vec::new(), Vec::new()];
        for (i, ns) in plan.namespaces.iter().enumerate() {
            halves[i % 2].push(ns);
        }
        halves
    };
    std::thread::scope(|scope| {
        let handles: Vec<_> = chunks
            .iter()
            .map(|chunk| {
                let f = &f;
                scope.spawn(move || -> anyhow::Result<()> {
                    for ns in chunk {
                        netns::run_in(&ns.name, || f(ns))??;
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join()
                .map_err(|_| anyhow::anyhow!("build thread panicked"))??;
        }
        Ok(())
    })
}

/// Removes every namespace of `plan` (and the processes inside) and its state directory.
pub fn teardown(plan: &Plan) -> anyhow::Result<()> {
    let names: Vec<String> = plan.namespaces.iter().map(|n| n.name.clone()).collect();
    let result = netns::delete(&names);
    let dir = LabState::dir(&plan.prefix);
    if dir.exists() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

/// Whether a namespace name looks like a lab run's (`wl` + 4 hex digits + `-`).
pub fn is_lab_namespace(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() > 7
        && name.starts_with("wl")
        && b[2..6].iter().all(u8::is_ascii_hexdigit)
        && b[6] == b'-'
}

/// Namespaces that look like lab runs, recorded or not.
pub fn stray_namespaces() -> Vec<String> {
    netns::list()
        .into_iter()
        .filter(|n| is_lab_namespace(n))
        .collect()
}

/// Removes run directories under [`RUN_DIR`] whose namespaces are all gone (a killed run).
pub fn remove_orphan_run_dirs() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(RUN_DIR) else {
        return Vec::new();
    };
    let names = netns::list();
    let mut removed = Vec::new();
    for entry in dir.flatten() {
        let prefix = entry.file_name().to_string_lossy().into_owned();
        if !names.iter().any(|n| n.starts_with(&format!("{prefix}-")))
            && std::fs::remove_dir_all(entry.path()).is_ok()
        {
            removed.push(prefix);
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lab_namespace_names() {
        assert!(is_lab_namespace("wl3fa2-br1"));
        assert!(is_lab_namespace("wl00ff-wan-br1-mpls"));
        assert!(!is_lab_namespace("wl3fa2"));
        assert!(!is_lab_namespace("wlxyz1-br1"));
        assert!(!is_lab_namespace("wstB1103-br1"));
        assert!(!is_lab_namespace("my-namespace"));
    }
}
