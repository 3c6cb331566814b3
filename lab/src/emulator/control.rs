//! The emulator's control socket: a unix stream socket speaking one JSON object per line.
//!
//! ```text
//! → {"op":"status"}
//! → {"op":"change","target":"both","change":{"delay_us":80000,"loss":{"kind":"random","p":0.05}}}
//! → {"op":"clear","target":"both"}            (back to the topology's line figures)
//! ← {"ok":true,"status":{"line":"br1-mpls","up":{…},"down":{…}}}
//! ← {"ok":false,"error":"…"}
//! ```
//!
//! A request that fails validation changes nothing.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::model::{Counters, Direction, Impairment, ImpairmentChange};

/// Which directions of a line a request applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    #[default]
    Both,
    Up,
    Down,
}

impl Target {
    pub(crate) fn indices(self) -> impl Iterator<Item = usize> {
        let (a, b) = match self {
            Target::Both => (0, 2),
            Target::Up => (0, 1),
            Target::Down => (1, 2),
        };
        a..b
    }

    pub fn includes(self, direction: Direction) -> bool {
        matches!(
            (self, direction),
            (Target::Both, _) | (Target::Up, Direction::Up) | (Target::Down, Direction::Down)
        )
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    Status,
    Change {
        #[serde(default)]
        target: Target,
        change: ImpairmentChange,
    },
    Clear {
        #[serde(default)]
        target: Target,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DirectionStatus {
    pub impairment: Impairment,
    pub counters: Counters,
    /// Queueing delay a frame arriving now would see, microseconds.
    pub backlog_us: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LineStatus {
    pub line: String,
    /// Branch → hub.
    pub up: DirectionStatus,
    /// Hub → branch.
    pub down: DirectionStatus,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<LineStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Response {
    pub fn ok(status: LineStatus) -> Response {
        Response {
            ok: true,
            status: Some(status),
            error: None,
        }
    }

    pub fn error(message: impl Into<String>) -> Response {
        Response {
            ok: false,
            status: None,
            error: Some(message.into()),
        }
    }

    pub fn into_result(self) -> anyhow::Result<LineStatus> {
        match (self.ok, self.status, self.error) {
            (true, Some(status), _) => Ok(status),
            (_, _, Some(e)) => Err(anyhow::anyhow!(e)),
            _ => Err(anyhow::anyhow!("malformed response")),
        }
    }
}

/// Binds the control socket, replacing a stale file left by a dead emulator.
pub fn bind(path: &Path) -> anyhow::Result<UnixListener> {
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            anyhow::bail!("{} is in use by a running emulator", path.display());
        }
        std::fs::remove_file(path)?;
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    UnixListener::bind(path).with_context(|| format!("cannot bind {}", path.display()))
}

/// Serves requests until `stop` is set (then [`wake`] unblocks the accept).
pub fn serve(listener: UnixListener, stop: &AtomicBool, handle: impl Fn(&Request) -> Response) {
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else { continue };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let Ok(mut writer) = stream.try_clone() else {
            continue;
        };
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if line.trim().is_empty() {
                continue;
            }
            let response = match serde_json::from_str::<Request>(&line) {
                Ok(request) => handle(&request),
                Err(e) => Response::error(format!("bad request: {e}")),
            };
            let mut text = serde_json::to_string(&response).expect("serializable");
            text.push('\n');
            if writer.write_all(text.as_bytes()).is_err() {
                break;
            }
        }
    }
}

/// Unblocks a serving thread so it sees its stop flag.
pub fn wake(path: &Path) {
    let _ = UnixStream::connect(path);
}

/// Sends one request to the emulator at `path` and returns its response.
pub fn request(path: &Path, request: &Request) -> anyhow::Result<Response> {
    let mut stream = UnixStream::connect(path)
        .with_context(|| format!("no emulator listening on {}", path.display()))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut text = serde_json::to_string(request)?;
    text.push('\n');
    stream.write_all(text.as_bytes())?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line)?;
    serde_json::from_str(&line).context("malformed response from emulator")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_read_as_documented() {
        let r: Request = serde_json::from_str(
            r#"{"op":"change","target":"up","change":{"delay_us":80000,"loss":{"kind":"random","p":0.05}}}"#,
        )
        .unwrap();
        let Request::Change { target, change } = r else {
            panic!("not a change")
        };
        assert_eq!(target, Target::Up);
        assert_eq!(change.delay_us, Some(80_000));
        assert!(
            serde_json::from_str::<Request>(r#"{"op":"change","change":{"dealy_us":1}}"#).is_err()
        );
        assert_eq!(
            serde_json::from_str::<Request>(r#"{"op":"status"}"#).unwrap(),
            Request::Status
        );
    }

    #[test]
    fn socket_round_trip_and_bad_requests() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("line.sock");
        let listener = bind(&path).unwrap();
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                serve(listener, &stop, |r| match r {
                    Request::Status => Response::error("status seen"),
                    _ => Response::error("other"),
                })
            });
            let resp = request(&path, &Request::Status).unwrap();
            assert_eq!(resp.error.as_deref(), Some("status seen"));
            let mut raw = UnixStream::connect(&path).unwrap();
            raw.write_all(b"{\"op\":\"explode\"}\n").unwrap();
            let mut line = String::new();
            BufReader::new(raw).read_line(&mut line).unwrap();
            assert!(line.contains("bad request"), "{line}");
            stop.store(true, Ordering::SeqCst);
            wake(&path);
        });
        // A second bind on a live socket is refused; on a stale one it succeeds.
        assert!(bind(&path).is_ok());
    }
}
