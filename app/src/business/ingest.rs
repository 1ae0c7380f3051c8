//! Real-time status (0x13) and charging-process frames (0x23, 0x25, ...) written behind,
//! in batches: a million piles send tens of thousands of these a second, too many for a
//! store write each.
//!
//! Each gun's latest status is kept here until it is written (only the latest is: a gun
//! reporting every few seconds costs one row per batch, not one per frame), its changes
//! of status are kept as history rows, and events are appended in order. A flusher task
//! writes everything pending in one transaction every `flush_every`, or sooner once
//! `batch_events` events wait. Reads of gun statuses and events ([`Ingest::overlay_guns`],
//! [`Ingest::overlay_events`]) see what is pending, so nothing waits for a flush to show.
//!
//! Transaction records are not written here: they are committed before 0x40 is sent.
//! What is pending is lost if the process dies before the next flush (at most
//! `flush_every` of status and events; a pile's next 0x13 restores its status).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::metrics::ResultLabel;
use crate::store::{GunStatus, IngestBatch, SessionEvent, StatusChange, Store};

/// How the batches are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IngestSettings {
    /// Longest a status or event waits before it is written.
    pub flush_every: Duration,
    /// Write as soon as this many events wait.
    pub batch_events: usize,
    /// Events kept while the store cannot be written; beyond this the oldest are dropped
    /// (and counted).
    pub max_pending_events: usize,
}

impl Default for IngestSettings {
    fn default() -> Self {
        IngestSettings {
            flush_every: Duration::from_millis(200),
            batch_events: 5_000,
            max_pending_events: 200_000,
        }
    }
}

type GunKey = (String, String);

/// What waits to be written, and each gun's last status (sans-io: the flusher and the
/// business logic drive it).
#[derive(Debug, Default)]
pub struct Pending {
    statuses: HashMap<GunKey, GunStatus>,
    history: Vec<StatusChange>,
    first_seen: Vec<StatusChange>,
    events: Vec<SessionEvent>,
    /// Each gun's last status as this process saw it, by pile and gun (by pile so that
    /// forgetting a pile at its login costs one removal, not a scan).
    known: HashMap<String, HashMap<String, u8>>,
    /// The batch being written: reads see it until it is in the store.
    in_flight: Option<Arc<IngestBatch>>,
    /// Events and history rows dropped because the store stayed unwritable.
    pub dropped: u64,
}

impl Pending {
    /// A 0x13 arrived: keep it as the gun's latest, and its change of status as history.
    pub fn status(&mut self, status: GunStatus) {
        let key = (status.pile_no.clone(), status.gun_no.clone());
        // Most frames come from piles already known: no new key then.
        let guns = match self.known.get_mut(&status.pile_no) {
            Some(guns) => guns,
            None => self.known.entry(status.pile_no.clone()).or_default(),
        };
        let known = match guns.get_mut(&status.gun_no) {
            Some(code) => Some(std::mem::replace(code, status.status)),
            None => guns.insert(status.gun_no.clone(), status.status),
        };
        // A gun forgotten at a login earlier in this batch: its pending status is the
        // one before (the store's is older still).
        let previous = known.or_else(|| self.statuses.get(&key).map(|s| s.status));
        let change = || StatusChange {
            pile_no: status.pile_no.clone(),
            gun_no: status.gun_no.clone(),
            status: status.status,
            at: status.updated_at,
        };
        match previous {
            None => self.first_seen.push(change()),
            Some(previous) if previous != status.status => self.history.push(change()),
            Some(_) => {}
        }
        self.statuses.insert(key, status);
    }

    /// Forgets a pile's guns' last statuses (it logged in again, perhaps after reporting
    /// to another instance): their next status is compared with the store's.
    pub fn forget_pile(&mut self, pile_no: &str) {
        self.known.remove(pile_no);
    }

    pub fn event(&mut self, event: SessionEvent) {
        self.events.push(event);
    }

    pub fn pending_events(&self) -> usize {
        self.events.len()
    }

    /// Everything pending, to be written; reads see it until [`Pending::written`] or
    /// [`Pending::restore`].
    pub fn take(&mut self) -> Arc<IngestBatch> {
        let mut statuses: Vec<GunStatus> = self.statuses.drain().map(|(_, s)| s).collect();
        statuses.sort_by(|a, b| (&a.pile_no, &a.gun_no).cmp(&(&b.pile_no, &b.gun_no)));
        let batch = Arc::new(IngestBatch {
            statuses,
            history: std::mem::take(&mut self.history),
            first_seen: std::mem::take(&mut self.first_seen),
            events: std::mem::take(&mut self.events),
        });
        self.in_flight = Some(batch.clone());
        batch
    }

    /// The batch taken last is in the store (or given up).
    pub fn written(&mut self) {
        self.in_flight = None;
    }

    /// A batch could not be written: put it back before what arrived since (newer
    /// statuses win), dropping the oldest events and history rows beyond `max_rows`.
    pub fn restore(&mut self, batch: Arc<IngestBatch>, max_rows: usize) {
        self.in_flight = None;
        let batch = Arc::try_unwrap(batch).unwrap_or_else(|shared| (*shared).clone());
        for status in batch.statuses {
            let key = (status.pile_no.clone(), status.gun_no.clone());
            self.statuses.entry(key).or_insert(status);
        }
        let later = std::mem::replace(&mut self.history, batch.history);
        self.history.extend(later);
        let later = std::mem::replace(&mut self.first_seen, batch.first_seen);
        self.first_seen.extend(later);
        let later = std::mem::replace(&mut self.events, batch.events);
        self.events.extend(later);
        self.dropped += cap(&mut self.events, max_rows)
            + cap(&mut self.history, max_rows)
            + cap(&mut self.first_seen, max_rows);
    }

    /// `stored` (a pile's guns as the store has them) with the pending statuses over it.
    pub fn overlay_guns(&self, pile_no: &str, mut stored: Vec<GunStatus>) -> Vec<GunStatus> {
        let writing = self.in_flight.iter().flat_map(|b| b.statuses.iter());
        // The batch being written first, then what arrived since (newer).
        for status in writing.chain(self.statuses.values()) {
            if status.pile_no != pile_no {
                continue;
            }
            match stored.iter_mut().find(|s| s.gun_no == status.gun_no) {
                Some(s) => *s = status.clone(),
                None => stored.push(status.clone()),
            }
        }
        stored.sort_by(|a, b| a.gun_no.cmp(&b.gun_no));
        stored
    }

    /// `stored` (a transaction's events) with the pending ones of it after them.
    pub fn overlay_events(
        &self,
        trade_no: &str,
        mut stored: Vec<SessionEvent>,
    ) -> Vec<SessionEvent> {
        let writing = self.in_flight.iter().flat_map(|b| b.events.iter());
        stored.extend(
            writing
                .chain(self.events.iter())
                .filter(|e| e.trade_no == trade_no)
                .cloned(),
        );
        stored
    }
}

/// Drops the oldest of `rows` beyond `max`; how many.
fn cap<T>(rows: &mut Vec<T>, max: usize) -> u64 {
    let excess = rows.len().saturating_sub(max);
    rows.drain(..excess);
    excess as u64
}

/// Failed writes of one batch (other than the store being unreachable) before it is
/// given up: an error that repeats would otherwise stop every status write for good.
const ATTEMPTS: u32 = 3;

#[derive(Default)]
struct IngestMetrics {
    /// Flushes by result (ok, error).
    flushes: Family<ResultLabel, Counter>,
    rows: Counter,
    pending_events: Gauge,
    dropped_events: Counter,
}

/// The write-behind of one app instance: [`Pending`] behind a lock, and its flusher.
pub struct Ingest {
    store: Arc<dyn Store>,
    settings: IngestSettings,
    pending: Mutex<Pending>,
    full: tokio::sync::Notify,
    /// One flush at a time (the flusher's, or a final one at shutdown); the failed
    /// writes in a row of the batch pending, the store being unreachable aside.
    flushing: tokio::sync::Mutex<u32>,
    metrics: IngestMetrics,
}

impl Ingest {
    pub fn new(store: Arc<dyn Store>, settings: IngestSettings) -> Arc<Ingest> {
        Arc::new(Ingest {
            store,
            settings,
            pending: Mutex::new(Pending::default()),
            full: tokio::sync::Notify::new(),
            flushing: tokio::sync::Mutex::new(0),
            metrics: IngestMetrics::default(),
        })
    }

    pub fn register(&self, registry: &mut Registry) {
        let m = &self.metrics;
        registry.register(
            "pylon_app_ingest_flushes",
            "Batched writes of real-time status and charging events, by result",
            m.flushes.clone(),
        );
        registry.register(
            "pylon_app_ingest_rows",
            "Rows written by batched ingestion",
            m.rows.clone(),
        );
        registry.register(
            "pylon_app_ingest_pending_events",
            "Charging events waiting to be written",
            m.pending_events.clone(),
        );
        registry.register(
            "pylon_app_ingest_dropped",
            "Charging events and status rows dropped: the store stayed unwritable, or refused a batch three times",
            m.dropped_events.clone(),
        );
    }

    fn with<T>(&self, f: impl FnOnce(&mut Pending) -> T) -> T {
        // A panic while holding the lock leaves consistent data (every change is one
        // push or insert), so a poisoned lock is used as is.
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut pending)
    }

    pub fn status(&self, status: GunStatus) {
        self.with(|p| p.status(status));
    }

    pub fn event(&self, event: SessionEvent) {
        let waiting = self.with(|p| {
            p.event(event);
            p.pending_events()
        });
        if waiting >= self.settings.batch_events {
            self.full.notify_one();
        }
    }

    pub fn forget_pile(&self, pile_no: &str) {
        self.with(|p| p.forget_pile(pile_no));
    }

    pub fn overlay_guns(&self, pile_no: &str, stored: Vec<GunStatus>) -> Vec<GunStatus> {
        self.with(|p| p.overlay_guns(pile_no, stored))
    }

    pub fn overlay_events(&self, trade_no: &str, stored: Vec<SessionEvent>) -> Vec<SessionEvent> {
        self.with(|p| p.overlay_events(trade_no, stored))
    }

    /// Writes everything pending now. On failure it stays pending for the next flush,
    /// unless the store refused it [`ATTEMPTS`] times for another reason than being
    /// unreachable: then it is dropped, counted and logged.
    pub async fn flush(&self) -> Result<usize, crate::store::StoreError> {
        let mut failures = self.flushing.lock().await;
        let batch = self.with(Pending::take);
        if batch.is_empty() {
            self.with(Pending::written);
            return Ok(0);
        }
        let rows = batch.rows();
        let result = self.store.write_ingest(batch.clone()).await;
        let label = |r: &str| ResultLabel { result: r.into() };
        match &result {
            Ok(()) => {
                *failures = 0;
                self.with(Pending::written);
                self.metrics.flushes.get_or_create(&label("ok")).inc();
                self.metrics.rows.inc_by(rows as u64);
            }
            Err(e) => {
                self.metrics.flushes.get_or_create(&label("error")).inc();
                let unreachable = matches!(e, crate::store::StoreError::Unavailable(_));
                *failures = if unreachable { 0 } else { *failures + 1 };
                if *failures >= ATTEMPTS {
                    *failures = 0;
                    self.with(Pending::written);
                    self.metrics.dropped_events.inc_by(rows as u64);
                    tracing::error!(error = %e, rows, "the store refused a batch of real-time status and charging events {ATTEMPTS} times; dropped it");
                } else {
                    let max = self.settings.max_pending_events;
                    let dropped = self.with(|p| {
                        let before = p.dropped;
                        p.restore(batch, max);
                        p.dropped - before
                    });
                    self.metrics.dropped_events.inc_by(dropped);
                }
            }
        }
        let waiting = self.with(|p| p.pending_events());
        self.metrics.pending_events.set(waiting as i64);
        result.map(|()| rows)
    }

    /// Flushes every `flush_every` (or when a batch is full) until `stop` turns true,
    /// then once more.
    pub async fn run(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.settings.flush_every) => {}
                _ = self.full.notified() => {}
                _ = stop.changed() => break,
            }
            if let Err(e) = self.flush().await {
                tracing::warn!(error = %e, "cannot write real-time status and charging events; kept for the next try");
            }
        }
        if let Err(e) = self.flush().await {
            tracing::warn!(error = %e, "the last real-time status and charging events were not written");
        }
    }
}

#[cfg(test)]
mod tests;
