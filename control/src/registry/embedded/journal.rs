//! How the embedded registry reaches its file: a snapshot of everything, plus a journal
//! of the changes made since (`<path>.journal`, one JSON line per change, fsynced).
//!
//! Writing the whole snapshot on every change cost O(registry) per change: with the audit
//! log in the registry, a bulk provisioning of a few thousand accounts wrote tens of
//! megabytes per call. Now a change appends its own line, and changes that arrive
//! together share one fsync. When the journal has grown past the snapshot's size (or
//! [`MIN_COMPACT_BYTES`]), the next change writes a new snapshot (to `<path>.tmp`, fsynced,
//! renamed) that records the last change it holds, and the journal starts again.
//!
//! On open the journal's changes after the snapshot are replayed; a torn last line (a
//! crash mid-append) is ignored, since that change was never acknowledged.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::{lock, SnapshotKey, SnapshotLease};
use crate::registry::{LeaseId, RegistryError, Result, Revision};

/// The journal is folded into a new snapshot once it is larger than the snapshot, and at
/// least this large.
pub(super) const MIN_COMPACT_BYTES: u64 = if cfg!(test) {
    4 * 1024
} else {
    4 * 1024 * 1024
};

/// One change, as a journal line.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Entry {
    pub seq: u64,
    pub revision: Revision,
    pub next_lease: LeaseId,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub granted: Vec<SnapshotLease>,
    /// Key changes, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ops: Vec<Op>,
    /// Leases ended (their keys' deletions are in `ops`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ended: Vec<LeaseId>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) enum Op {
    Put(SnapshotKey),
    Delete(String),
}

/// What the journal file held after the snapshot: the entries to replay, in order.
pub(super) fn read(path: &Path, after_seq: u64) -> std::result::Result<Vec<Entry>, String> {
    let text = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("reading {}: {e}", path.display())),
    };
    let lines: Vec<&[u8]> = text.split(|b| *b == b'\n').collect();
    let mut entries = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.is_empty() {
            continue;
        }
        match serde_json::from_slice::<Entry>(line) {
            Ok(entry) if entry.seq <= after_seq => {}
            Ok(entry) => {
                let last = entries.last().map_or(after_seq, |e: &Entry| e.seq);
                if entry.seq != last + 1 {
                    return Err(format!(
                        "{}: change {} follows change {last}",
                        path.display(),
                        entry.seq
                    ));
                }
                entries.push(entry);
            }
            // Only the last line may be torn: it was being written when the process died.
            Err(_) if lines[i + 1..].iter().all(|l| l.is_empty()) => break,
            Err(e) => return Err(format!("{} line {}: {e}", path.display(), i + 1)),
        }
    }
    Ok(entries)
}

/// The snapshot and journal files, and the changes waiting to be written.
pub(super) struct Files {
    path: PathBuf,
    tmp: PathBuf,
    journal_path: PathBuf,
    /// Encoded entries not yet written, in change order.
    queue: Mutex<Vec<(u64, Vec<u8>)>>,
    writer: Mutex<Writer>,
    /// Bytes in the journal, and in the last snapshot: when to compact.
    journal_bytes: AtomicU64,
    snapshot_bytes: AtomicU64,
    /// A snapshot is on its way (or a write failed and only a snapshot can repair it).
    snapshot_due: AtomicBool,
    snapshot_pending: AtomicBool,
}

struct Writer {
    journal: File,
    /// Every change up to this one is on disk.
    durable: u64,
    /// A failed append may have left a torn tail that could not be cut off: nothing is
    /// appended until a snapshot replaces the journal.
    torn: bool,
}

fn storage(what: &str, path: &Path, e: std::io::Error) -> RegistryError {
    RegistryError::Storage(format!("{what} {}: {e}", path.display()))
}

impl Files {
    /// Writes `snapshot` (holding every change up to `seq`) and starts an empty journal.
    pub(super) fn create(path: &Path, seq: u64, snapshot: &[u8]) -> Result<Files> {
        let suffixed = |s: &str| {
            let mut p = path.as_os_str().to_owned();
            p.push(s);
            PathBuf::from(p)
        };
        let journal_path = suffixed(".journal");
        let tmp = suffixed(".tmp");
        write_snapshot(path, &tmp, snapshot)?;
        // Appending: every write lands at the end, also after the journal is emptied.
        let journal = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&journal_path)
            .map_err(|e| storage("creating", &journal_path, e))?;
        journal
            .set_len(0)
            .and_then(|()| journal.sync_all())
            .map_err(|e| storage("emptying", &journal_path, e))?;
        Ok(Files {
            path: path.to_owned(),
            tmp,
            journal_path,
            queue: Mutex::new(Vec::new()),
            writer: Mutex::new(Writer {
                journal,
                durable: seq,
                torn: false,
            }),
            journal_bytes: AtomicU64::new(0),
            snapshot_bytes: AtomicU64::new(snapshot.len() as u64),
            snapshot_due: AtomicBool::new(false),
            snapshot_pending: AtomicBool::new(false),
        })
    }

    /// Whether the change being made should bring a full snapshot (asked under the
    /// registry's state lock, so one change at a time gets a yes).
    pub(super) fn wants_snapshot(&self) -> bool {
        if self.snapshot_pending.load(Ordering::SeqCst) {
            return false;
        }
        let journal = self.journal_bytes.load(Ordering::SeqCst);
        let snapshot = self.snapshot_bytes.load(Ordering::SeqCst);
        let due =
            self.snapshot_due.load(Ordering::SeqCst) || journal > snapshot.max(MIN_COMPACT_BYTES);
        if due {
            self.snapshot_pending.store(true, Ordering::SeqCst);
        }
        due
    }

    /// A snapshot this change was to bring could not be made: let a later change try.
    pub(super) fn snapshot_abandoned(&self) {
        self.snapshot_due.store(true, Ordering::SeqCst);
        self.snapshot_pending.store(false, Ordering::SeqCst);
    }

    /// Queues change `seq` (under the state lock, so in order).
    pub(super) fn queue(&self, seq: u64, line: Vec<u8>) {
        lock(&self.queue).push((seq, line));
    }

    /// Makes change `seq` durable, with whatever else is queued (blocking). `snapshot`
    /// holds every change up to its own sequence number.
    pub(super) fn flush(&self, seq: u64, snapshot: Option<(u64, Vec<u8>)>) -> Result<()> {
        let mut writer = lock(&self.writer);
        if let Some((snapshot_seq, bytes)) = snapshot {
            let result = self.compact(&mut writer, snapshot_seq, &bytes);
            self.snapshot_pending.store(false, Ordering::SeqCst);
            result?;
        }
        if writer.durable >= seq {
            return Ok(());
        }
        if writer.torn {
            self.snapshot_due.store(true, Ordering::SeqCst);
            return Err(RegistryError::Storage(format!(
                "{} could not be repaired after a failed write; the next change writes a \
                 full snapshot",
                self.journal_path.display()
            )));
        }
        // Taken under the writer lock, so no other flush writes them meanwhile; a failed
        // write puts them back, and the next flush tries again.
        let batch: Vec<(u64, Vec<u8>)> = {
            let mut queue = lock(&self.queue);
            queue.retain(|(s, _)| *s > writer.durable);
            std::mem::take(&mut *queue)
        };
        let Some(last) = batch.last().map(|(s, _)| *s) else {
            return Err(RegistryError::Storage(format!(
                "change {seq} of the registry was not queued for {}",
                self.journal_path.display()
            )));
        };
        let mut bytes = Vec::with_capacity(batch.iter().map(|(_, l)| l.len() + 1).sum());
        for (_, line) in &batch {
            bytes.extend_from_slice(line);
            bytes.push(b'\n');
        }
        let written = writer
            .journal
            .write_all(&bytes)
            .and_then(|()| writer.journal.sync_data());
        if let Err(e) = written {
            // Cut off what part of the batch was written, so that a later append does
            // not follow a torn line; if even that fails, only a snapshot repairs it.
            let length = self.journal_bytes.load(Ordering::SeqCst);
            if writer.journal.set_len(length).is_err() {
                writer.torn = true;
                self.snapshot_due.store(true, Ordering::SeqCst);
            }
            // Back in front of what was queued since (and in order).
            let mut queue = lock(&self.queue);
            let later = std::mem::replace(&mut *queue, batch);
            queue.extend(later);
            return Err(storage("appending to", &self.journal_path, e));
        }
        writer.durable = last;
        self.journal_bytes
            .fetch_add(bytes.len() as u64, Ordering::SeqCst);
        Ok(())
    }

    /// Replaces snapshot and journal with `bytes`, unless changes after it are already in
    /// the journal (then the next change brings a newer snapshot).
    fn compact(&self, writer: &mut Writer, snapshot_seq: u64, bytes: &[u8]) -> Result<()> {
        if writer.durable > snapshot_seq {
            return Ok(());
        }
        write_snapshot(&self.path, &self.tmp, bytes)?;
        // Everything in the journal is in the snapshot now.
        writer
            .journal
            .set_len(0)
            .and_then(|()| writer.journal.sync_all())
            .map_err(|e| storage("emptying", &self.journal_path, e))?;
        writer.durable = snapshot_seq;
        writer.torn = false;
        lock(&self.queue).retain(|(s, _)| *s > snapshot_seq);
        self.journal_bytes.store(0, Ordering::SeqCst);
        self.snapshot_bytes
            .store(bytes.len() as u64, Ordering::SeqCst);
        self.snapshot_due.store(false, Ordering::SeqCst);
        Ok(())
    }
}

/// Writes `bytes` to `tmp`, fsyncs it and renames it over `path`, durably.
fn write_snapshot(path: &Path, tmp: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = File::create(tmp).map_err(|e| storage("creating", tmp, e))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| storage("writing", tmp, e))?;
    drop(file);
    std::fs::rename(tmp, path).map_err(|e| storage("renaming over", path, e))?;
    // Make the rename itself durable.
    if let Some(dir) = path.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}
