//! The audit log: append-only JSON lines, fsync'd, rotated by size with a retention count.
//!
//! One writer thread owns the file. Entries queue on a channel; the writer drains whatever
//! is waiting, writes it, and fsyncs once per batch, so a burst of decisions costs one fsync
//! while a policy change can still wait until its line is on disk. When the file passes
//! `max_bytes` it becomes `audit.jsonl.1` (older ones shift up) and files past `keep` go.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;

use serde::Serialize;
use tokio::sync::oneshot;

/// File name of the live audit log inside the state directory.
pub const AUDIT_FILE: &str = "audit.jsonl";

/// Rotation settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Rotate when the live file reaches this size.
    pub max_bytes: u64,
    /// Rotated files kept (`audit.jsonl.1` … `audit.jsonl.N`).
    pub keep: u32,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            max_bytes: 64 << 20,
            keep: 30,
        }
    }
}

/// What happened, as one JSON line.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AuditEntry {
    /// The policy changed: who, from which version to which, and what changed.
    PolicyChange {
        at_ms: u64,
        by: String,
        from_version: Option<u64>,
        to_version: u64,
        changes: Vec<String>,
    },
    /// The planner moved a class (see [`crate::planning::DecisionRecord`]).
    Decision(crate::planning::DecisionRecord),
    /// A token was refused.
    AuthRefused {
        at_ms: u64,
        peer: String,
        reason: String,
    },
}

struct Queued {
    line: Vec<u8>,
    done: Option<oneshot::Sender<io::Result<()>>>,
}

/// Handle to the writer thread; cheap to clone.
#[derive(Debug, Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<Queued>,
}

impl std::fmt::Debug for Queued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queued").finish_non_exhaustive()
    }
}

impl AuditLog {
    /// Opens (or creates) `dir/audit.jsonl` and starts the writer thread.
    pub fn open(dir: &Path, retention: Retention) -> io::Result<AuditLog> {
        let mut writer = Writer::open(dir.join(AUDIT_FILE), retention)?;
        let (tx, rx) = mpsc::channel::<Queued>();
        thread::Builder::new()
            .name("audit-log".into())
            .spawn(move || writer.run(rx))?;
        Ok(AuditLog { tx })
    }

    /// Queues an entry; it reaches disk with the next batch.
    pub fn record(&self, entry: &AuditEntry) {
        self.queue(entry, None);
    }

    /// Queues an entry and waits until it is written and fsync'd.
    pub async fn record_durably(&self, entry: &AuditEntry) -> io::Result<()> {
        let (done, wait) = oneshot::channel();
        self.queue(entry, Some(done));
        wait.await
            .unwrap_or_else(|_| Err(io::Error::other("audit writer stopped")))
    }

    fn queue(&self, entry: &AuditEntry, done: Option<oneshot::Sender<io::Result<()>>>) {
        let mut line = serde_json::to_vec(entry).expect("audit entries always serialise");
        line.push(b'\n');
        if let Err(mpsc::SendError(queued)) = self.tx.send(Queued { line, done }) {
            tracing::error!("audit writer stopped; entry lost");
            if let Some(done) = queued.done {
                let _ = done.send(Err(io::Error::other("audit writer stopped")));
            }
        }
    }
}

struct Writer {
    path: PathBuf,
    file: File,
    size: u64,
    retention: Retention,
}

impl Writer {
    fn open(path: PathBuf, retention: Retention) -> io::Result<Writer> {
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let size = file.metadata()?.len();
        Ok(Writer {
            path,
            file,
            size,
            retention,
        })
    }

    fn run(&mut self, rx: mpsc::Receiver<Queued>) {
        while let Ok(first) = rx.recv() {
            let mut batch = vec![first];
            batch.extend(rx.try_iter());
            let result = self.write_batch(&batch);
            if let Err(error) = &result {
                tracing::error!(%error, "audit log write failed");
            }
            for queued in batch {
                if let Some(done) = queued.done {
                    let _ = done.send(
                        result
                            .as_ref()
                            .map(|_| ())
                            .map_err(|e| io::Error::new(e.kind(), e.to_string())),
                    );
                }
            }
        }
    }

    fn write_batch(&mut self, batch: &[Queued]) -> io::Result<()> {
        for queued in batch {
            self.file.write_all(&queued.line)?;
            self.size += queued.line.len() as u64;
        }
        self.file.sync_data()?;
        if self.size >= self.retention.max_bytes {
            self.rotate()?;
        }
        Ok(())
    }

    fn rotated(&self, n: u32) -> PathBuf {
        let mut name = self.path.as_os_str().to_owned();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    fn rotate(&mut self) -> io::Result<()> {
        let keep = self.retention.keep;
        if keep == 0 {
            fs::remove_file(&self.path)?;
        } else {
            let _ = fs::remove_file(self.rotated(keep));
            for n in (1..keep).rev() {
                let from = self.rotated(n);
                if from.exists() {
                    fs::rename(&from, self.rotated(n + 1))?;
                }
            }
            fs::rename(&self.path, self.rotated(1))?;
        }
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.size = 0;
        if let Some(dir) = self.path.parent() {
            // Make the renames durable too.
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(version: u64) -> AuditEntry {
        AuditEntry::PolicyChange {
            at_ms: 1,
            by: "alice".into(),
            from_version: Some(version - 1),
            to_version: version,
            changes: vec!["class voice: sla.loss 1% -> 2%".into()],
        }
    }

    #[tokio::test]
    async fn entries_are_json_lines_and_rotate_with_retention() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(
            dir.path(),
            Retention {
                max_bytes: 300,
                keep: 2,
            },
        )
        .unwrap();
        for version in 1..=20 {
            log.record_durably(&change(version)).await.unwrap();
        }
        let live = dir.path().join(AUDIT_FILE);
        let mut files: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        files.sort();
        assert_eq!(files, ["audit.jsonl", "audit.jsonl.1", "audit.jsonl.2"]);
        // The newest entry is last in the live file or, right after a rotation, in `.1`.
        let newest = [live.clone(), dir.path().join("audit.jsonl.1")]
            .iter()
            .map(|p| fs::read_to_string(p).unwrap())
            .find(|text| !text.is_empty())
            .unwrap();
        let last: serde_json::Value = serde_json::from_str(newest.lines().last().unwrap()).unwrap();
        assert_eq!(last["kind"], "policy_change");
        assert_eq!(last["to_version"], 20);
        assert_eq!(last["by"], "alice");
        for text in files
            .iter()
            .map(|f| fs::read_to_string(dir.path().join(f)).unwrap())
        {
            for line in text.lines() {
                serde_json::from_str::<serde_json::Value>(line).unwrap();
            }
        }
    }

    #[tokio::test]
    async fn reopening_appends() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path(), Retention::default()).unwrap();
        log.record_durably(&change(1)).await.unwrap();
        drop(log);
        let log = AuditLog::open(dir.path(), Retention::default()).unwrap();
        log.record_durably(&change(2)).await.unwrap();
        let text = fs::read_to_string(dir.path().join(AUDIT_FILE)).unwrap();
        assert_eq!(text.lines().count(), 2);
    }
}
