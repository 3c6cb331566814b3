//! The thin I/O layer for nftables: runs `nft` in the agent's network
//! namespace (or a named one, for tests and the lab) and reports their errors verbatim.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::Value;

/// A kernel call that failed, with the tool's own words.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("cannot run `{program}`: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("`{command}` failed: {stderr}")]
    Failed { command: String, stderr: String },
    #[error(transparent)]
    Netlink(#[from] super::netlink::NetlinkError),
    #[error("`{command}` printed JSON that does not parse: {source}")]
    Json {
        command: String,
        source: serde_json::Error,
    },
}

/// Where kernel calls go: this process's namespace, or a named one (`ip netns`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Kernel {
    netns: Option<String>,
}

impl Kernel {
    /// The namespace the agent runs in.
    pub fn here() -> Self {
        Kernel { netns: None }
    }

    /// A named network namespace (as `ip netns` knows it).
    pub fn in_netns(name: impl Into<String>) -> Self {
        Kernel {
            netns: Some(name.into()),
        }
    }

    pub fn netns(&self) -> Option<&str> {
        self.netns.as_deref()
    }

    /// `ip` and `tc` take the namespace as `-n`; other tools are started from a thread
    /// that entered the namespace (cheaper than `ip netns exec`, which also remounts
    /// /sys: a test and lab cost the agent in its own namespace never pays).
    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        if let (Some(ns), "ip" | "tc") = (&self.netns, program) {
            command.args(["-n", ns]);
        }
        command
    }

    /// Runs a tool with optional stdin; returns stdout.
    fn run(
        &self,
        program: &str,
        args: &[&str],
        stdin: Option<&str>,
    ) -> Result<String, KernelError> {
        let output = self.run_raw(program, args, stdin)?;
        if !output.status.success() {
            return Err(KernelError::Failed {
                command: format!("{program} {}", args.join(" ")),
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
            });
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    fn run_raw(
        &self,
        program: &str,
        args: &[&str],
        stdin: Option<&str>,
    ) -> Result<std::process::Output, KernelError> {
        let mut command = self.command(program);
        command.args(args);
        command
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let spawn_error = |source| KernelError::Spawn {
            program: program.to_string(),
            source,
        };
        let mut child = match (&self.netns, program) {
            (Some(ns), program) if program != "ip" && program != "tc" => {
                spawn_in_netns(ns, command).map_err(spawn_error)?
            }
            _ => command.spawn().map_err(spawn_error)?,
        };
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().expect("stdin was piped");
            pipe.write_all(input.as_bytes())
                .map_err(|source| KernelError::Spawn {
                    program: program.to_string(),
                    source,
                })?;
        }
        child
            .wait_with_output()
            .map_err(|source| KernelError::Spawn {
                program: program.to_string(),
                source,
            })
    }

    fn json(&self, program: &str, args: &[&str]) -> Result<Value, KernelError> {
        let text = self.run(program, args, None)?;
        if text.trim().is_empty() {
            return Ok(Value::Array(vec![]));
        }
        serde_json::from_str(&text).map_err(|source| KernelError::Json {
            command: format!("{program} {}", args.join(" ")),
            source,
        })
    }

    /// `nft -j list table inet <table>`; `None` when the table does not exist.
    pub fn nft_list_table(&self, table: &str) -> Result<Option<Value>, KernelError> {
        match self.json("nft", &["-j", "list", "table", "inet", table]) {
            Ok(listing) => Ok(Some(listing)),
            Err(KernelError::Failed { stderr, .. })
                if stderr.contains("No such file or directory") =>
            {
                Ok(None)
            }
            Err(error) => Err(error),
        }
    }

    /// One atomic `nft -j -f -` transaction.
    pub fn nft_apply(&self, document: &Value) -> Result<(), KernelError> {
        self.run("nft", &["-j", "-f", "-"], Some(&document.to_string()))
            .map(drop)
    }

    /// One atomic `nft -f -` transaction in nft's text syntax.
    pub fn nft_text(&self, script: &str) -> Result<(), KernelError> {
        self.run("nft", &["-f", "-"], Some(script)).map(drop)
    }
}

/// Starts `command` from a helper thread that entered network namespace `ns`; the child
/// inherits the thread's namespace.
fn spawn_in_netns(ns: &str, mut command: Command) -> std::io::Result<std::process::Child> {
    use std::os::fd::AsRawFd;
    let path = format!("/var/run/netns/{ns}");
    std::thread::scope(|scope| {
        scope
            .spawn(move || {
                let file = std::fs::File::open(path)?;
                // SAFETY: setns with a valid namespace fd changes only this helper thread,
                // which ends once the child is started.
                if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                command.spawn()
            })
            .join()
            .expect("spawn helper thread does not panic")
    })
}
