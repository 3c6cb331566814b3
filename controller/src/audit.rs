//! The audit log: append-only JSON lines, fsync'd, rotated by size with a retention count.
//!
//! One writer thread owns the file. Entries queue on a channel; the writer drains whatever
//! is waiting, writes it, and fsyncs once per batch, so a burst of decisions costs one fsync
//! while a policy change can still wait until its line is on disk. When the file passes
//! `max_bytes` it becomes `audit.jsonl.1` (older ones shift up) and files past `keep` go.
//!
//! Audit files are owner-only (0600): an audit trail is readable only by those who need it
//! (PCI DSS 10.3). [`read`] gives the live file's entries back to the API.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
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
    path: PathBuf,
}

/// Creates `path` owner-only if missing, and narrows it to 0600 if it exists wider.
pub fn create_owner_only(path: &Path) -> io::Result<()> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
}

fn open_append(path: &Path) -> io::Result<File> {
    create_owner_only(path)?;
    OpenOptions::new().append(true).open(path)
}

/// Which entries [`read`] returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Only entries at or after this time (ms since the epoch).
    pub since_ms: Option<u64>,
    /// Only entries of this kind (`policy_change`, `decision`, `auth_refused`).
    pub kind: Option<String>,
    /// At most this many, the newest.
    pub limit: usize,
}

/// How much of the audit file [`read`] takes in at a time, from the end backwards.
const READ_CHUNK: usize = 1 << 20;

/// The live audit file's entries that pass `filter`, oldest first. Rotated files are not
/// read: they are for archiving. A line that is not JSON (a torn write) is skipped.
///
/// The file is read from its end backwards and reading stops once `limit` entries passed:
/// the newest are what a caller asks for, and a live file may hold tens of MiB of
/// decisions behind them.
pub fn read(path: &Path, filter: &AuditFilter) -> io::Result<Vec<serde_json::Value>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    // Entries are written with their tag first; a cheap text test skips most lines of
    // other kinds without parsing them (decisions outnumber everything else).
    let tag = filter
        .kind
        .as_ref()
        .map(|kind| format!("\"kind\":\"{kind}\""));
    let mut kept = Vec::new();
    if filter.limit == 0 {
        return Ok(kept);
    }
    let mut take = |line: &[u8]| -> bool {
        let Ok(line) = std::str::from_utf8(line) else {
            return false;
        };
        if line.trim().is_empty() || tag.as_ref().is_some_and(|tag| !line.contains(tag.as_str())) {
            return false;
        }
        let Ok(entry) = serde_json::from_str::<serde_json::Value>(line) else {
            return false;
        };
        if let Some(kind) = &filter.kind
            && entry["kind"].as_str() != Some(kind)
        {
            return false;
        }
        if let Some(since) = filter.since_ms
            && entry["at_ms"].as_u64().is_none_or(|at| at < since)
        {
            return false;
        }
        kept.push(entry);
        kept.len() == filter.limit
    };
    let mut end = file.seek(SeekFrom::End(0))?;
    // The start of the chunk read last, which may begin in the middle of a line.
    let mut tail: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; READ_CHUNK];
    while end > 0 {
        let start = end.saturating_sub(READ_CHUNK as u64);
        let len = (end - start) as usize;
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut chunk[..len])?;
        end = start;
        let mut buf = chunk[..len].to_vec();
        buf.extend_from_slice(&tail);
        // Every line after the first newline is whole; what precedes it continues in the
        // previous chunk (unless this is the start of the file).
        let mut lines = buf.rsplit(|&b| b == b'\n');
        let mut first = lines.next_back();
        if start == 0 {
            for line in lines.chain(first.take()) {
                if take(line) {
                    kept.reverse();
                    return Ok(kept);
                }
            }
            break;
        }
        for line in lines {
            if take(line) {
                kept.reverse();
                return Ok(kept);
            }
        }
        tail = first.unwrap_or_default().to_vec();
    }
    kept.reverse();
    Ok(kept)
}

impl std::fmt::Debug for Queued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queued").finish_non_exhaustive()
    }
}

impl AuditLog {
    /// Opens (or creates) `dir/audit.jsonl` and starts the writer thread.
    pub fn open(dir: &Path, retention: Retention) -> io::Result<AuditLog> {
        let path = dir.join(AUDIT_FILE);
        let mut writer = Writer::open(path.clone(), retention)?;
        let (tx, rx) = mpsc::channel::<Queued>();
        thread::Builder::new()
            .name("audit-log".into())
            .spawn(move || writer.run(rx))?;
        Ok(AuditLog { tx, path })
    }

    /// The live file's entries that pass `filter` (see [`read`]).
    pub fn read(&self, filter: &AuditFilter) -> io::Result<Vec<serde_json::Value>> {
        read(&self.path, filter)
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
        let file = open_append(&path)?;
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
        self.file = open_append(&self.path)?;
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

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[tokio::test]
    async fn audit_files_are_owner_only_even_when_left_wider() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join(AUDIT_FILE);
        let log = AuditLog::open(
            dir.path(),
            Retention {
                max_bytes: 200,
                keep: 2,
            },
        )
        .unwrap();
        for version in 1..=5 {
            log.record_durably(&change(version)).await.unwrap();
        }
        assert_eq!(mode(&live), 0o600);
        assert_eq!(mode(&dir.path().join("audit.jsonl.1")), 0o600);
        drop(log);
        // A file an older controller left world-readable is narrowed on open.
        fs::set_permissions(&live, fs::Permissions::from_mode(0o644)).unwrap();
        let _log = AuditLog::open(dir.path(), Retention::default()).unwrap();
        assert_eq!(mode(&live), 0o600);
    }

    #[tokio::test]
    async fn read_filters_by_kind_and_time_and_keeps_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path(), Retention::default()).unwrap();
        for version in 1..=4 {
            let mut entry = change(version);
            if let AuditEntry::PolicyChange { at_ms, .. } = &mut entry {
                *at_ms = version * 1000;
            }
            log.record_durably(&entry).await.unwrap();
        }
        log.record_durably(&AuditEntry::AuthRefused {
            at_ms: 2500,
            peer: "127.0.0.1:1".into(),
            reason: "unknown token on /api/v1/sites".into(),
        })
        .await
        .unwrap();
        let all = |filter: AuditFilter| log.read(&filter).unwrap();
        let everything = all(AuditFilter {
            limit: 100,
            ..AuditFilter::default()
        });
        assert_eq!(everything.len(), 5);
        let refused = all(AuditFilter {
            kind: Some("auth_refused".into()),
            limit: 100,
            ..AuditFilter::default()
        });
        assert_eq!(refused.len(), 1);
        assert_eq!(refused[0]["peer"], "127.0.0.1:1");
        let recent = all(AuditFilter {
            since_ms: Some(2000),
            kind: Some("policy_change".into()),
            limit: 2,
        });
        let versions: Vec<u64> = recent
            .iter()
            .map(|e| e["to_version"].as_u64().unwrap())
            .collect();
        assert_eq!(versions, [3, 4]);
        // A torn last line does not hide the rest.
        let mut file = OpenOptions::new()
            .append(true)
            .open(dir.path().join(AUDIT_FILE))
            .unwrap();
        file.write_all(b"{\"kind\":\"pol").unwrap();
        assert_eq!(
            all(AuditFilter {
                limit: 100,
                ..AuditFilter::default()
            })
            .len(),
            5
        );
    }

    #[test]
    fn reading_backwards_across_chunks_keeps_every_line_whole_and_in_order() {
        // Lines of varying length over several read chunks, so lines straddle chunk
        // boundaries; every seventh a policy change, the rest decisions.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(AUDIT_FILE);
        let mut text = String::new();
        let mut n = 0u64;
        while text.len() < 3 * READ_CHUNK + 12_345 {
            let kind = if n.is_multiple_of(7) {
                "policy_change"
            } else {
                "decision"
            };
            let pad = "x".repeat((n * 37 % 300) as usize);
            text.push_str(&format!(
                "{{\"kind\":\"{kind}\",\"at_ms\":{n},\"pad\":\"{pad}\"}}\n"
            ));
            n += 1;
        }
        std::fs::write(&path, &text).unwrap();
        let at = |entries: Vec<serde_json::Value>| -> Vec<u64> {
            entries
                .iter()
                .map(|e| e["at_ms"].as_u64().unwrap())
                .collect()
        };
        let filter = |kind: Option<&str>, limit: usize| AuditFilter {
            since_ms: None,
            kind: kind.map(String::from),
            limit,
        };
        assert_eq!(
            at(read(&path, &filter(None, usize::MAX)).unwrap()),
            (0..n).collect::<Vec<_>>()
        );
        assert_eq!(
            at(read(&path, &filter(None, 5)).unwrap()),
            (n - 5..n).collect::<Vec<_>>()
        );
        let changes: Vec<u64> = (0..n).filter(|i| i.is_multiple_of(7)).collect();
        assert_eq!(
            at(read(&path, &filter(Some("policy_change"), usize::MAX)).unwrap()),
            changes
        );
        assert_eq!(
            at(read(&path, &filter(Some("policy_change"), 3)).unwrap()),
            changes[changes.len() - 3..]
        );
        // Without a newline at the end, the last line still counts.
        std::fs::write(&path, text.trim_end()).unwrap();
        assert_eq!(at(read(&path, &filter(None, 1)).unwrap()), [n - 1]);
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
