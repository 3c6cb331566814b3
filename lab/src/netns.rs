//! Thin I/O over network namespaces: run code or commands inside one, batch `ip` commands,
//! write sysctls, turn offloads off, and delete namespaces without leaving processes behind.
//!
//! Code runs inside a namespace on a short-lived thread that `setns`es into it: sockets
//! created there stay in that namespace, and child processes spawned there start in it, so
//! no `ip netns exec` (and its mount-namespace setup) is needed per command.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};

const NETNS_DIR: &str = "/run/netns";

/// Runs `f` on a thread inside namespace `name` and returns its result.
pub fn run_in<T: Send>(name: &str, f: impl FnOnce() -> T + Send) -> anyhow::Result<T> {
    let path = Path::new(NETNS_DIR).join(name);
    let file = File::open(&path).with_context(|| format!("namespace {name} does not exist"))?;
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                enter(&file).with_context(|| format!("cannot enter namespace {name}"))?;
                Ok(f())
            })
            .join()
            .map_err(|_| anyhow::anyhow!("thread inside namespace {name} panicked"))?
    })
}

/// Moves the calling thread into the namespace `file` refers to.
fn enter(file: &File) -> std::io::Result<()> {
    // SAFETY: setns only reads the fd, which `file` keeps open for the call; it affects the
    // calling thread alone (a thread we own and end after the closure).
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Moves the calling thread into namespace `name` for good (threads that live there).
pub fn enter_for_good(name: &str) -> anyhow::Result<()> {
    let file = File::open(Path::new(NETNS_DIR).join(name))
        .with_context(|| format!("namespace {name} does not exist"))?;
    enter(&file).with_context(|| format!("cannot enter namespace {name}"))
}

/// Runs a command and fails with its stderr if it fails.
pub fn run(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {program}"))?;
    if !out.status.success() {
        bail!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `ip -batch -` with `lines` (in the caller's namespace). `force` keeps going on errors.
pub fn ip_batch(lines: &[String], force: bool) -> anyhow::Result<()> {
    if lines.is_empty() {
        return Ok(());
    }
    let mut args = vec!["-batch", "-"];
    if force {
        args.insert(0, "-force");
    }
    let mut child = Command::new("ip")
        .args(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run ip")?;
    {
        let mut stdin = child.stdin.take().expect("piped");
        stdin.write_all(lines.join("\n").as_bytes())?;
        stdin.write_all(b"\n")?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() && !force {
        bail!(
            "ip batch failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Writes a sysctl of the calling thread's namespace (`net.ipv4.ip_forward` style name).
pub fn sysctl(name: &str, value: &str) -> anyhow::Result<()> {
    let path = format!("/proc/sys/{}", name.replace('.', "/"));
    std::fs::write(&path, value).with_context(|| format!("cannot set {name}={value}"))
}

/// Turns offloads off on a device of the calling thread's namespace.
pub fn ethtool_off(dev: &str, features: &[&str]) -> anyhow::Result<()> {
    let mut args = vec!["-K", dev];
    for f in features {
        args.push(f);
        args.push("off");
    }
    run("ethtool", &args).map(|_| ())
}

/// Names of all namespaces under /run/netns.
pub fn list() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(NETNS_DIR)
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

pub fn exists(name: &str) -> bool {
    Path::new(NETNS_DIR).join(name).exists()
}

/// Processes running inside namespace `name`.
pub fn pids(name: &str) -> Vec<i32> {
    run("ip", &["netns", "pids", name])
        .map(|out| {
            out.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Deletes namespaces, first ending the processes inside them (TERM, then KILL).
/// Namespaces already gone are fine.
pub fn delete(names: &[String]) -> anyhow::Result<()> {
    let mut victims: Vec<i32> = names.iter().flat_map(|n| pids(n)).collect();
    victims.sort_unstable();
    victims.dedup();
    victims.retain(|&p| p != std::process::id() as i32);
    if !victims.is_empty() {
        for &pid in &victims {
            // SAFETY: kill has no memory effects; the pids were just read from the namespace.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        for _ in 0..50 {
            if victims
                .iter()
                .all(|&p| !Path::new(&format!("/proc/{p}")).exists())
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        for &pid in &victims {
            if Path::new(&format!("/proc/{pid}")).exists() {
                // SAFETY: as above.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
    let lines: Vec<String> = names
        .iter()
        .filter(|n| exists(n))
        .map(|n| format!("netns del {n}"))
        .collect();
    ip_batch(&lines, true)?;
    let left: Vec<&String> = names.iter().filter(|n| exists(n)).collect();
    if !left.is_empty() {
        bail!("namespaces still present after delete: {left:?}");
    }
    Ok(())
}
