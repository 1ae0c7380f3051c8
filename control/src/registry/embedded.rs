//! The embedded registry: the whole key space in this process, persisted to a JSON
//! snapshot and a journal of the changes since (see [`journal`]): each change is on disk
//! before it is acknowledged, and the files always hold a state that existed.
//! Keep-alives are not written: on open every persisted lease gets a fresh deadline of
//! now + TTL, so members keep their registration across a control-plane restart as long as
//! they keep their lease alive.
//!
//! Watch history lives only in memory (the last [`HISTORY`] events); watching from a
//! revision older than that, or from before the file was opened, is
//! [`RegistryError::Compacted`].

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc};
use tokio::task::AbortHandle;

use super::{
    KeyValue, LeaseId, Listing, Registry, RegistryError, Result, Revision, WatchEvent, WatchStream,
};

/// Events kept in memory for watches that start from an earlier revision.
const HISTORY: usize = if cfg!(test) { 16 } else { 10_000 };
/// How often the background task looks for ended leases.
const EXPIRY_INTERVAL: Duration = Duration::from_millis(100);
/// Change batches buffered per watcher before it counts as lagging (its channel then closes).
const BROADCAST_CAPACITY: usize = if cfg!(test) { 8 } else { 4096 };
/// Events buffered between a watcher's task and its receiver.
const WATCH_CHANNEL: usize = if cfg!(test) { 8 } else { 1024 };
/// The format of the file, checked on open: 2 has a journal beside it (1 did not).
const FORMAT_VERSION: u32 = 2;

mod journal;

pub struct EmbeddedRegistry {
    state: Mutex<State>,
    file: Arc<journal::Files>,
    changes: broadcast::Sender<Arc<Batch>>,
    expiry: Mutex<Option<AbortHandle>>,
}

/// The changes of one transaction, all at one revision.
struct Batch {
    revision: Revision,
    events: Vec<WatchEvent>,
}

struct Lease {
    ttl_secs: u64,
    deadline: Instant,
    keys: BTreeSet<String>,
}

struct State {
    revision: Revision,
    kvs: BTreeMap<String, KeyValue>,
    leases: HashMap<LeaseId, Lease>,
    next_lease: LeaseId,
    /// Recent events, oldest first; every event with a revision above `history_floor` is here.
    history: VecDeque<WatchEvent>,
    history_floor: Revision,
    /// Changes made: numbers the journal's entries.
    snapshot_seq: u64,
    /// Leases granted and ended by the change being made (for its journal entry).
    granted: Vec<SnapshotLease>,
    ended: Vec<LeaseId>,
}

/// The file's contents.
#[derive(Serialize, Deserialize)]
struct Snapshot {
    version: u32,
    /// The last journal entry this snapshot holds.
    #[serde(default)]
    journal_seq: u64,
    revision: Revision,
    next_lease: LeaseId,
    leases: Vec<SnapshotLease>,
    keys: Vec<SnapshotKey>,
}

#[derive(Debug, Serialize, Deserialize)]
struct SnapshotLease {
    id: LeaseId,
    ttl_secs: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct SnapshotKey {
    key: String,
    /// Hex, to keep the file compact and readable.
    value: String,
    mod_revision: Revision,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lease: Option<LeaseId>,
}

impl EmbeddedRegistry {
    /// Opens (or starts) the registry stored at `path`. Must be called inside a tokio
    /// runtime: it spawns the task that ends expired leases, which stops when the registry is
    /// dropped.
    pub fn open(path: &Path) -> Result<Arc<Self>> {
        let unusable = |e: String| {
            RegistryError::Storage(format!(
                "{} is not a usable registry file: {e}",
                path.display()
            ))
        };
        let mut journal_path = path.as_os_str().to_owned();
        journal_path.push(".journal");
        let journal_path = PathBuf::from(journal_path);
        let mut state = match std::fs::read(path) {
            Ok(bytes) => State::load(&bytes).map_err(unusable)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::empty(),
            Err(e) => {
                return Err(RegistryError::Storage(format!(
                    "reading {}: {e}",
                    path.display()
                )))
            }
        };
        for entry in journal::read(&journal_path, state.snapshot_seq).map_err(unusable)? {
            state.apply(entry).map_err(unusable)?;
        }
        // A fresh snapshot holding the journal, so the journal starts empty; this also
        // fails now rather than on the first change if the files cannot be written.
        let file = Arc::new(journal::Files::create(
            path,
            state.snapshot_seq,
            &state.snapshot_bytes()?,
        )?);
        let (changes, _) = broadcast::channel(BROADCAST_CAPACITY);
        let registry = Arc::new(EmbeddedRegistry {
            state: Mutex::new(state),
            file,
            changes,
            expiry: Mutex::new(None),
        });
        let weak = Arc::downgrade(&registry);
        let task = tokio::spawn(expire_leases(weak));
        *lock(&registry.expiry) = Some(task.abort_handle());
        Ok(registry)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Applies a change under the state lock, publishes its events, then writes the new state
    /// to the file before returning. `change` returns its result and whether it changed
    /// anything (nothing is written otherwise).
    ///
    /// Watchers see the change as soon as it is made, a moment before it is durable. The
    /// write runs on the blocking pool and finishes even if the caller stops waiting; if it
    /// fails the change stays in memory (and reaches the file with the next write) and the
    /// caller gets [`RegistryError::Storage`].
    async fn change<T>(
        &self,
        change: impl FnOnce(&mut State, &mut Vec<WatchEvent>) -> Result<(T, bool)>,
    ) -> Result<T> {
        let (out, seq, snapshot) = {
            let mut state = self.state();
            let mut events = Vec::new();
            state.granted.clear();
            state.ended.clear();
            let (out, changed) = change(&mut state, &mut events)?;
            if !changed {
                return Ok(out);
            }
            let seq = state.snapshot_seq + 1;
            let line = state.journal_line(seq, &events);
            let snapshot = match line {
                Ok(line) => {
                    state.snapshot_seq = seq;
                    self.file.queue(seq, line);
                    if self.file.wants_snapshot() {
                        match state.snapshot_bytes() {
                            Ok(bytes) => Some((seq, bytes)),
                            Err(e) => {
                                self.file.snapshot_abandoned();
                                tracing::warn!("cannot encode a registry snapshot: {e}");
                                None
                            }
                        }
                    } else {
                        None
                    }
                }
                Err(e) => {
                    // The change is made (and watchers see it) but cannot be journaled:
                    // only a snapshot can carry it, and the caller is told.
                    self.file.snapshot_abandoned();
                    self.publish(&mut state, events);
                    return Err(e);
                }
            };
            self.publish(&mut state, events);
            (out, seq, snapshot)
        };
        let file = self.file.clone();
        tokio::task::spawn_blocking(move || file.flush(seq, snapshot))
            .await
            .map_err(|e| {
                RegistryError::Storage(format!("the registry file writer failed: {e}"))
            })??;
        Ok(out)
    }

    /// Appends one transaction's events to the history and sends them to the watchers.
    /// Called with the state lock held, so a new watcher sees each batch exactly once:
    /// either in the history it replays or on its broadcast receiver.
    fn publish(&self, state: &mut State, events: Vec<WatchEvent>) {
        let Some(revision) = events.first().map(WatchEvent::revision) else {
            return;
        };
        state.history.extend(events.iter().cloned());
        while state.history.len() > HISTORY {
            if let Some(old) = state.history.pop_front() {
                state.history_floor = old.revision();
            }
        }
        // Drop the rest of a partly dropped revision too: a revision is replayed whole or not.
        while state
            .history
            .front()
            .is_some_and(|e| e.revision() <= state.history_floor)
        {
            state.history.pop_front();
        }
        // No receivers is fine.
        let _ = self.changes.send(Arc::new(Batch { revision, events }));
    }

    /// Ends every lease whose deadline passed, deleting its keys (one revision per lease).
    async fn expire(&self) -> Result<()> {
        let now = Instant::now();
        let ended: Vec<LeaseId> = self
            .state()
            .leases
            .iter()
            .filter(|(_, l)| l.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        // One change per lease, so each lease's deletions form one revision.
        for id in ended {
            tracing::debug!(lease = format!("{id:#x}"), "lease expired");
            self.change(|state, events| {
                // A keep-alive may have come in between.
                let still_ended = state.leases.get(&id).is_some_and(|l| l.deadline <= now);
                if still_ended {
                    state.end_lease(id, events);
                }
                Ok(((), still_ended))
            })
            .await?;
        }
        Ok(())
    }
}

impl Drop for EmbeddedRegistry {
    fn drop(&mut self) {
        if let Some(task) = lock(&self.expiry).take() {
            task.abort();
        }
    }
}

/// Runs until the registry is dropped.
async fn expire_leases(registry: Weak<EmbeddedRegistry>) {
    let mut tick = tokio::time::interval(EXPIRY_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(registry) = registry.upgrade() else {
            return;
        };
        if let Err(e) = registry.expire().await {
            tracing::warn!("ending expired leases: {e}");
        }
    }
}

/// A poisoned lock only means another thread panicked mid-change; the maps stay usable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl State {
    fn empty() -> State {
        State {
            revision: 0,
            kvs: BTreeMap::new(),
            leases: HashMap::new(),
            next_lease: first_lease_id(0),
            history: VecDeque::new(),
            history_floor: 0,
            snapshot_seq: 0,
            granted: Vec::new(),
            ended: Vec::new(),
        }
    }

    fn load(bytes: &[u8]) -> std::result::Result<State, String> {
        let snapshot: Snapshot = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if !(1..=FORMAT_VERSION).contains(&snapshot.version) {
            return Err(format!(
                "format version {} (this build reads {FORMAT_VERSION})",
                snapshot.version
            ));
        }
        let now = Instant::now();
        let mut leases = HashMap::new();
        for l in snapshot.leases {
            if l.id == 0 || l.ttl_secs == 0 {
                return Err(format!("lease {:#x} with ttl {}s", l.id, l.ttl_secs));
            }
            // Members that keep alive keep their keys across the restart.
            let deadline = now + Duration::from_secs(l.ttl_secs);
            let lease = Lease {
                ttl_secs: l.ttl_secs,
                deadline,
                keys: BTreeSet::new(),
            };
            leases.insert(l.id, lease);
        }
        let mut kvs = BTreeMap::new();
        for k in snapshot.keys {
            let value = hex::decode(&k.value).map_err(|e| format!("key {}: {e}", k.key))?;
            if k.mod_revision > snapshot.revision || k.mod_revision <= 0 {
                return Err(format!(
                    "key {} at revision {} (the file is at {})",
                    k.key, k.mod_revision, snapshot.revision
                ));
            }
            if let Some(id) = k.lease {
                let lease = leases
                    .get_mut(&id)
                    .ok_or_else(|| format!("key {} is attached to unknown lease {id:#x}", k.key))?;
                lease.keys.insert(k.key.clone());
            }
            let kv = KeyValue {
                key: k.key.clone(),
                value,
                mod_revision: k.mod_revision,
                lease: k.lease,
            };
            if kvs.insert(k.key.clone(), kv).is_some() {
                return Err(format!("key {} appears twice", k.key));
            }
        }
        Ok(State {
            revision: snapshot.revision,
            kvs,
            leases,
            next_lease: first_lease_id(snapshot.next_lease),
            history: VecDeque::new(),
            // The history is not persisted: nothing before now can be replayed.
            history_floor: snapshot.revision,
            snapshot_seq: snapshot.journal_seq,
            granted: Vec::new(),
            ended: Vec::new(),
        })
    }

    /// The change just made (its events, and the leases it granted and ended) as
    /// journal entry `seq`.
    fn journal_line(&mut self, seq: u64, events: &[WatchEvent]) -> Result<Vec<u8>> {
        let entry = journal::Entry {
            seq,
            revision: self.revision,
            next_lease: self.next_lease,
            granted: std::mem::take(&mut self.granted),
            ops: events
                .iter()
                .map(|e| match e {
                    WatchEvent::Put(kv) => journal::Op::Put(SnapshotKey {
                        key: kv.key.clone(),
                        value: hex::encode(&kv.value),
                        mod_revision: kv.mod_revision,
                        lease: kv.lease,
                    }),
                    WatchEvent::Delete { key, .. } => journal::Op::Delete(key.clone()),
                })
                .collect(),
            ended: std::mem::take(&mut self.ended),
        };
        serde_json::to_vec(&entry)
            .map_err(|e| RegistryError::Storage(format!("encoding a registry change: {e}")))
    }

    /// Replays a journal entry read back on open.
    fn apply(&mut self, entry: journal::Entry) -> std::result::Result<(), String> {
        let now = Instant::now();
        for l in entry.granted {
            if l.id == 0 || l.ttl_secs == 0 {
                return Err(format!("lease {:#x} with ttl {}s", l.id, l.ttl_secs));
            }
            self.leases.insert(
                l.id,
                Lease {
                    ttl_secs: l.ttl_secs,
                    deadline: now + Duration::from_secs(l.ttl_secs),
                    keys: BTreeSet::new(),
                },
            );
        }
        for op in entry.ops {
            match op {
                journal::Op::Put(k) => {
                    let value = hex::decode(&k.value).map_err(|e| format!("key {}: {e}", k.key))?;
                    let kv = KeyValue {
                        key: k.key.clone(),
                        value,
                        mod_revision: k.mod_revision,
                        lease: k.lease,
                    };
                    // As `State::put`: the old value leaves its lease, the new joins its own.
                    if let Some(old) = self.kvs.insert(k.key.clone(), kv) {
                        self.detach(&old);
                    }
                    if let Some(id) = k.lease {
                        let lease = self.leases.get_mut(&id).ok_or_else(|| {
                            format!("key {} is attached to unknown lease {id:#x}", k.key)
                        })?;
                        lease.keys.insert(k.key);
                    }
                }
                journal::Op::Delete(key) => {
                    if let Some(old) = self.kvs.remove(&key) {
                        self.detach(&old);
                    }
                }
            }
        }
        for id in entry.ended {
            self.leases.remove(&id);
        }
        self.revision = self.revision.max(entry.revision);
        self.next_lease = self.next_lease.max(entry.next_lease);
        self.history_floor = self.revision;
        self.snapshot_seq = entry.seq;
        Ok(())
    }

    fn snapshot_bytes(&self) -> Result<Vec<u8>> {
        let mut leases: Vec<SnapshotLease> = self
            .leases
            .iter()
            .map(|(id, l)| SnapshotLease {
                id: *id,
                ttl_secs: l.ttl_secs,
            })
            .collect();
        leases.sort_by_key(|l| l.id);
        let snapshot = Snapshot {
            version: FORMAT_VERSION,
            journal_seq: self.snapshot_seq,
            revision: self.revision,
            next_lease: self.next_lease,
            leases,
            keys: self
                .kvs
                .values()
                .map(|kv| SnapshotKey {
                    key: kv.key.clone(),
                    value: hex::encode(&kv.value),
                    mod_revision: kv.mod_revision,
                    lease: kv.lease,
                })
                .collect(),
        };
        serde_json::to_vec(&snapshot)
            .map_err(|e| RegistryError::Storage(format!("encoding the registry: {e}")))
    }

    fn check_lease(&self, lease: Option<LeaseId>) -> Result<()> {
        match lease {
            Some(id) if !self.leases.contains_key(&id) => Err(RegistryError::LeaseNotFound(id)),
            _ => Ok(()),
        }
    }

    /// Writes `key` at a new revision; the lease must exist (see [`State::check_lease`]).
    fn put(
        &mut self,
        key: &str,
        value: Vec<u8>,
        lease: Option<LeaseId>,
        events: &mut Vec<WatchEvent>,
    ) -> Revision {
        self.revision += 1;
        let kv = KeyValue {
            key: key.to_owned(),
            value,
            mod_revision: self.revision,
            lease,
        };
        if let Some(old) = self.kvs.insert(key.to_owned(), kv.clone()) {
            self.detach(&old);
        }
        if let Some(lease) = lease.and_then(|id| self.leases.get_mut(&id)) {
            lease.keys.insert(key.to_owned());
        }
        events.push(WatchEvent::Put(kv));
        self.revision
    }

    /// Deletes `key` at `revision` (the caller bumps the revision once per transaction).
    fn delete_at(&mut self, key: &str, revision: Revision, events: &mut Vec<WatchEvent>) {
        if let Some(old) = self.kvs.remove(key) {
            self.detach(&old);
            events.push(WatchEvent::Delete {
                key: key.to_owned(),
                revision,
            });
        }
    }

    fn detach(&mut self, kv: &KeyValue) {
        if let Some(lease) = kv.lease.and_then(|id| self.leases.get_mut(&id)) {
            lease.keys.remove(&kv.key);
        }
    }

    /// Removes a lease and deletes its keys, all at one new revision.
    fn end_lease(&mut self, id: LeaseId, events: &mut Vec<WatchEvent>) {
        let Some(lease) = self.leases.remove(&id) else {
            return;
        };
        self.ended.push(id);
        if lease.keys.is_empty() {
            return;
        }
        self.revision += 1;
        let revision = self.revision;
        for key in lease.keys {
            if let Some(old) = self.kvs.remove(&key) {
                events.push(WatchEvent::Delete {
                    key: old.key,
                    revision,
                });
            }
        }
    }
}

/// Lease ids start at the current time in microseconds (and never go back, thanks to the
/// persisted counter), so an id handed out before the file was deleted is not handed out
/// again to someone else.
fn first_lease_id(persisted: LeaseId) -> LeaseId {
    let micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros().min(i64::MAX as u128 / 2) as i64)
        .unwrap_or(1);
    persisted.max(micros).max(1)
}

#[async_trait]
impl Registry for EmbeddedRegistry {
    fn backend(&self) -> &'static str {
        "embedded"
    }

    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId> {
        // Whole seconds like etcd, at least one.
        let ttl_secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
        let ttl_secs = ttl_secs.max(1);
        self.change(|state, _| {
            let id = state.next_lease;
            state.next_lease += 1;
            let lease = Lease {
                ttl_secs,
                deadline: Instant::now() + Duration::from_secs(ttl_secs),
                keys: BTreeSet::new(),
            };
            state.leases.insert(id, lease);
            state.granted.push(SnapshotLease { id, ttl_secs });
            Ok((id, true))
        })
        .await
    }

    async fn keep_alive(&self, lease: LeaseId) -> Result<Duration> {
        let mut state = self.state();
        let now = Instant::now();
        match state.leases.get_mut(&lease) {
            // An ended lease stays ended even if the expiry task has not removed it yet.
            Some(l) if l.deadline > now => {
                l.deadline = now + Duration::from_secs(l.ttl_secs);
                Ok(Duration::from_secs(l.ttl_secs))
            }
            _ => Err(RegistryError::LeaseNotFound(lease)),
        }
    }

    async fn revoke(&self, lease: LeaseId) -> Result<()> {
        self.change(|state, events| {
            let known = state.leases.contains_key(&lease);
            state.end_lease(lease, events);
            Ok(((), known))
        })
        .await
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        Ok(self.state().kvs.get(key).cloned())
    }

    async fn list(&self, prefix: &str) -> Result<Listing> {
        let state = self.state();
        let items = state
            .kvs
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, kv)| kv.clone())
            .collect();
        Ok(Listing {
            revision: state.revision,
            items,
        })
    }

    async fn put(&self, key: &str, value: Vec<u8>, lease: Option<LeaseId>) -> Result<Revision> {
        self.change(|state, events| {
            state.check_lease(lease)?;
            Ok((state.put(key, value, lease, events), true))
        })
        .await
    }

    async fn create(&self, key: &str, value: Vec<u8>, lease: Option<LeaseId>) -> Result<bool> {
        self.change(|state, events| {
            if state.kvs.contains_key(key) {
                return Ok((false, false));
            }
            state.check_lease(lease)?;
            state.put(key, value, lease, events);
            Ok((true, true))
        })
        .await
    }

    async fn put_guarded(
        &self,
        guard: &str,
        guard_value: &[u8],
        key: &str,
        value: Vec<u8>,
    ) -> Result<bool> {
        self.change(|state, events| {
            let holds = state
                .kvs
                .get(guard)
                .is_some_and(|kv| kv.value == guard_value);
            if holds {
                state.put(key, value, None, events);
            }
            Ok((holds, holds))
        })
        .await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.change(|state, events| {
            if !state.kvs.contains_key(key) {
                return Ok(((), false));
            }
            state.revision += 1;
            let revision = state.revision;
            state.delete_at(key, revision, events);
            Ok(((), true))
        })
        .await
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        let (replay, changes) = {
            let state = self.state();
            if after < state.history_floor {
                return Err(RegistryError::Compacted(state.history_floor + 1));
            }
            let replay: Vec<WatchEvent> = state
                .history
                .iter()
                .filter(|e| e.revision() > after && e.key().starts_with(prefix))
                .cloned()
                .collect();
            // Subscribed under the lock: every later batch arrives here.
            (replay, self.changes.subscribe())
        };
        let (tx, rx) = mpsc::channel(WATCH_CHANNEL);
        tokio::spawn(forward(prefix.to_owned(), after, replay, changes, tx));
        Ok(rx)
    }
}

/// A watcher's task: the replayed history, then live batches, until either side goes away.
/// A watcher that falls behind is closed (the caller lists again).
async fn forward(
    prefix: String,
    after: Revision,
    replay: Vec<WatchEvent>,
    mut changes: broadcast::Receiver<Arc<Batch>>,
    tx: mpsc::Sender<WatchEvent>,
) {
    let mut last = after;
    for event in replay {
        last = last.max(event.revision());
        if tx.send(event).await.is_err() {
            return;
        }
    }
    loop {
        let batch = tokio::select! {
            _ = tx.closed() => return,
            batch = changes.recv() => batch,
        };
        match batch {
            Ok(batch) => {
                if batch.revision <= last {
                    continue;
                }
                last = batch.revision;
                for event in batch.events.iter().filter(|e| e.key().starts_with(&prefix)) {
                    if tx.send(event.clone()).await.is_err() {
                        return;
                    }
                }
            }
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!(prefix, missed, "a registry watcher fell behind; closing it");
                return;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    //! What the conformance suite (`tests/tests/registry.rs`) cannot reach: the bounded
    //! history and slow watchers, with the small test-build limits above.
    use super::*;

    fn open() -> (tempfile::TempDir, Arc<EmbeddedRegistry>) {
        let dir = tempfile::tempdir().expect("temporary directory");
        let registry = EmbeddedRegistry::open(&dir.path().join("r.json")).expect("open");
        (dir, registry)
    }

    #[tokio::test]
    async fn old_history_is_compacted() {
        let (_dir, r) = open();
        for i in 0..40 {
            r.put(&format!("k/{i:02}"), vec![i], None).await.unwrap();
        }
        let floor = 40 - HISTORY as Revision;
        assert!(matches!(
            r.watch("k/", floor - 1).await,
            Err(RegistryError::Compacted(rev)) if rev == floor + 1
        ));
        let mut watch = r.watch("k/", floor).await.unwrap();
        for rev in floor + 1..=40 {
            assert_eq!(watch.recv().await.unwrap().revision(), rev);
        }
        // From the current revision: nothing to replay, and not compacted.
        let mut watch = r.watch("k/", 40).await.unwrap();
        let rev = r.put("k/new", vec![], None).await.unwrap();
        assert_eq!(watch.recv().await.unwrap().revision(), rev);
    }

    #[tokio::test]
    async fn a_watcher_that_falls_behind_is_closed() {
        let (_dir, r) = open();
        let mut slow = r.watch("", 0).await.unwrap();
        let n = 3 * (WATCH_CHANNEL + BROADCAST_CAPACITY);
        for i in 0..n {
            r.put(&format!("k/{i}"), vec![], None).await.unwrap();
        }
        let mut received = 0;
        while let Some(event) = slow.recv().await {
            received += 1;
            assert_eq!(event.revision(), received);
        }
        assert!(received < n as Revision, "received all {received}");
    }

    #[tokio::test]
    async fn leases_need_to_exist() {
        let (_dir, r) = open();
        assert!(matches!(
            r.put("k", vec![], Some(42)).await,
            Err(RegistryError::LeaseNotFound(42))
        ));
        assert!(matches!(
            r.keep_alive(42).await,
            Err(RegistryError::LeaseNotFound(42))
        ));
        let a = r.grant_lease(Duration::from_secs(3)).await.unwrap();
        let b = r.grant_lease(Duration::ZERO).await.unwrap();
        assert!(a > 0 && b > a);
        assert_eq!(r.keep_alive(b).await.unwrap(), Duration::from_secs(1));
        assert_eq!(r.keep_alive(a).await.unwrap(), Duration::from_secs(3));
        // Moving a key to another lease detaches it from the first.
        r.put("k", vec![1], Some(a)).await.unwrap();
        r.put("k", vec![2], Some(b)).await.unwrap();
        r.revoke(a).await.unwrap();
        assert_eq!(r.get("k").await.unwrap().unwrap().lease, Some(b));
        r.revoke(b).await.unwrap();
        assert!(r.get("k").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn the_expiry_task_stops_with_the_registry() {
        let (_dir, r) = open();
        let weak = Arc::downgrade(&r);
        drop(r);
        assert!(weak.upgrade().is_none());
    }

    fn journal_of(path: &Path) -> PathBuf {
        let mut p = path.as_os_str().to_owned();
        p.push(".journal");
        PathBuf::from(p)
    }

    /// What a reopened registry holds: every key with its value and lease.
    async fn contents(r: &EmbeddedRegistry) -> Vec<(String, Vec<u8>, Option<LeaseId>)> {
        r.list("")
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|kv| (kv.key, kv.value, kv.lease))
            .collect()
    }

    #[tokio::test]
    async fn changes_reach_the_journal_and_come_back_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.json");
        let r = EmbeddedRegistry::open(&path).unwrap();
        let lease = r.grant_lease(Duration::from_secs(60)).await.unwrap();
        r.put("a", b"1".to_vec(), None).await.unwrap();
        r.put("b", b"2".to_vec(), Some(lease)).await.unwrap();
        r.put("a", b"3".to_vec(), Some(lease)).await.unwrap();
        r.delete("b").await.unwrap();
        let gone = r.grant_lease(Duration::from_secs(60)).await.unwrap();
        r.put("c", b"4".to_vec(), Some(gone)).await.unwrap();
        r.revoke(gone).await.unwrap();
        let before = contents(&r).await;
        let revision = r.list("").await.unwrap().revision;
        drop(r);
        assert!(
            std::fs::metadata(journal_of(&path)).unwrap().len() > 0,
            "the changes are in the journal"
        );

        let r = EmbeddedRegistry::open(&path).unwrap();
        // Opening folds the journal into the snapshot.
        assert_eq!(std::fs::metadata(journal_of(&path)).unwrap().len(), 0);
        assert_eq!(contents(&r).await, before);
        assert_eq!(before, vec![("a".into(), b"3".to_vec(), Some(lease))]);
        assert_eq!(r.list("").await.unwrap().revision, revision);
        // The lease came back (and still holds its key); the revoked one did not.
        assert!(r.keep_alive(lease).await.is_ok());
        assert!(r.keep_alive(gone).await.is_err());
        r.revoke(lease).await.unwrap();
        assert!(contents(&r).await.is_empty());
    }

    #[tokio::test]
    async fn a_long_journal_is_folded_into_a_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.json");
        let r = EmbeddedRegistry::open(&path).unwrap();
        for i in 0..400u32 {
            r.put(&format!("k/{}", i % 50), i.to_be_bytes().to_vec(), None)
                .await
                .unwrap();
        }
        let journal = std::fs::metadata(journal_of(&path)).unwrap().len();
        assert!(
            journal <= 2 * journal::MIN_COMPACT_BYTES,
            "the journal is compacted ({journal} bytes)"
        );
        let before = contents(&r).await;
        drop(r);
        let r = EmbeddedRegistry::open(&path).unwrap();
        assert_eq!(contents(&r).await, before);
        assert_eq!(before.len(), 50);
    }

    #[tokio::test]
    async fn a_torn_last_line_is_ignored_and_a_broken_one_refused() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.json");
        let r = EmbeddedRegistry::open(&path).unwrap();
        r.put("a", b"1".to_vec(), None).await.unwrap();
        r.put("b", b"2".to_vec(), None).await.unwrap();
        drop(r);
        let journal = journal_of(&path);
        let whole = std::fs::read(&journal).unwrap();
        // The process died while appending a third change.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&journal)
            .unwrap();
        f.write_all(b"{\"seq\":3,\"revis").unwrap();
        drop(f);
        let r = EmbeddedRegistry::open(&path).unwrap();
        assert_eq!(contents(&r).await.len(), 2);
        drop(r);

        // A damaged line with changes after it is not a torn write: refuse to guess.
        let r = EmbeddedRegistry::open(&path).unwrap();
        r.put("c", b"3".to_vec(), None).await.unwrap();
        r.put("d", b"4".to_vec(), None).await.unwrap();
        drop(r);
        let text = String::from_utf8(std::fs::read(&journal).unwrap()).unwrap();
        assert!(!whole.is_empty() && text.lines().count() == 2);
        let damaged = text.replacen("\"seq\"", "\"sq\"", 1);
        std::fs::write(&journal, damaged).unwrap();
        let refused = EmbeddedRegistry::open(&path).err().map(|e| e.to_string());
        assert!(
            refused
                .as_deref()
                .is_some_and(|e| e.contains("not a usable registry file")),
            "{refused:?}"
        );
    }
}
