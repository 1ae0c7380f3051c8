//! Route push: the current table, its history of deltas, and the subscribers.
//!
//! Every change to the table becomes one delta, broadcast to every subscriber stream. A
//! stream that missed a delta (it fell behind the broadcast buffer) or is new gets a
//! snapshot instead. Subscribers report the version they applied, which gives the lag.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use pylon_proto::control::{route_update, RouteUpdate};
use pylon_proto::routes::RouteTable;
use tokio::sync::broadcast;

use crate::cluster::same_routes;

/// Deltas buffered per subscriber stream before it must resynchronise from a snapshot.
const BROADCAST_BUFFER: usize = 1024;
/// Publish times kept to compute lag.
const HISTORY: usize = 4096;

/// One published change.
#[derive(Debug)]
pub struct Published {
    pub base_version: u64,
    pub version: u64,
    pub delta: Vec<u8>,
}

struct SubscriberEntry {
    name: String,
    applied: u64,
}

struct State {
    table: Arc<RouteTable>,
    snapshot: Arc<Vec<u8>>,
    /// (version, when published), oldest first.
    history: VecDeque<(u64, Instant)>,
    subscribers: HashMap<u64, SubscriberEntry>,
    next_stream: u64,
}

pub struct Publisher {
    state: Mutex<State>,
    tx: broadcast::Sender<Arc<Published>>,
}

/// A subscriber's lag, see [`Publisher::lags`].
#[derive(Debug, Clone, PartialEq)]
pub struct Lag {
    pub name: String,
    pub applied: u64,
    /// Published versions it has not applied.
    pub behind: u32,
    pub seconds: f64,
}

/// A subscriber stream's handle; dropping it removes the subscriber.
pub struct Subscription {
    pub stream_id: u64,
    pub first: RouteUpdate,
    pub updates: broadcast::Receiver<Arc<Published>>,
    publisher: Arc<Publisher>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.publisher.lock().subscribers.remove(&self.stream_id);
    }
}

impl Publisher {
    pub fn new(table: RouteTable) -> Arc<Self> {
        let snapshot = Arc::new(table.encode().to_vec());
        let (tx, _) = broadcast::channel(BROADCAST_BUFFER);
        Arc::new(Publisher {
            state: Mutex::new(State {
                history: VecDeque::from([(table.version, Instant::now())]),
                table: Arc::new(table),
                snapshot,
                subscribers: HashMap::new(),
                next_stream: 1,
            }),
            tx,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock leaves consistent data behind (every write is a
        // single assignment), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn table(&self) -> Arc<RouteTable> {
        self.lock().table.clone()
    }

    pub fn snapshot_len(&self) -> usize {
        self.lock().snapshot.len()
    }

    /// Publishes `next` if its routes differ from the current table's; returns whether it did.
    pub fn publish(&self, next: RouteTable) -> bool {
        let mut state = self.lock();
        if same_routes(&state.table, &next) || next.version <= state.table.version {
            return false;
        }
        let delta = state.table.diff(&next);
        let published = Arc::new(Published {
            base_version: delta.base_version,
            version: delta.version,
            delta: delta.encode().to_vec(),
        });
        state.snapshot = Arc::new(next.encode().to_vec());
        state.table = Arc::new(next);
        state.history.push_back((published.version, Instant::now()));
        if state.history.len() > HISTORY {
            state.history.pop_front();
        }
        // Sent under the lock so a new subscriber never sees a delta older than its snapshot.
        let _ = self.tx.send(published);
        true
    }

    /// A new subscriber stream: its snapshot and the deltas that follow it.
    pub fn subscribe(self: &Arc<Self>, name: &str) -> Subscription {
        let mut state = self.lock();
        let stream_id = state.next_stream;
        state.next_stream += 1;
        state.subscribers.insert(
            stream_id,
            SubscriberEntry {
                name: name.to_owned(),
                applied: 0,
            },
        );
        Subscription {
            stream_id,
            first: snapshot_update(&state),
            updates: self.tx.subscribe(),
            publisher: self.clone(),
        }
    }

    /// A snapshot of the current table (for a stream that fell behind).
    pub fn snapshot(&self) -> RouteUpdate {
        snapshot_update(&self.lock())
    }

    /// Records the version a subscriber applied (every stream of that name).
    pub fn applied(&self, name: &str, version: u64) -> bool {
        let mut state = self.lock();
        let mut found = false;
        for s in state.subscribers.values_mut().filter(|s| s.name == name) {
            s.applied = s.applied.max(version);
            found = true;
        }
        found
    }

    /// How far behind each subscriber is, slowest first.
    pub fn lags(&self) -> Vec<Lag> {
        let state = self.lock();
        let now = Instant::now();
        let mut lags: Vec<Lag> = state
            .subscribers
            .values()
            .map(|s| {
                let mut unapplied = state.history.iter().filter(|(v, _)| *v > s.applied);
                let oldest = unapplied.next();
                let behind = oldest.map_or(0, |_| 1 + unapplied.count() as u32);
                Lag {
                    name: s.name.clone(),
                    applied: s.applied,
                    behind,
                    seconds: oldest.map_or(0.0, |(_, at)| now.duration_since(*at).as_secs_f64()),
                }
            })
            .collect();
        lags.sort_by(|a, b| b.seconds.total_cmp(&a.seconds).then(a.name.cmp(&b.name)));
        lags
    }
}

fn snapshot_update(state: &State) -> RouteUpdate {
    RouteUpdate {
        version: state.table.version,
        base_version: 0,
        body: Some(route_update::Body::Snapshot(
            state.snapshot.as_ref().clone(),
        )),
    }
}

/// The update to send for a published delta, given the version the stream is at.
pub fn delta_update(published: &Published) -> RouteUpdate {
    RouteUpdate {
        version: published.version,
        base_version: published.base_version,
        body: Some(route_update::Body::Delta(published.delta.clone())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pylon_proto::routes::EdgeRoute;

    fn table(version: u64, edges: &[&str]) -> RouteTable {
        let mut t = RouteTable::empty(4);
        t.version = version;
        t.edges = edges
            .iter()
            .map(|id| EdgeRoute {
                id: id.to_string(),
                tcp_address: "a:1".into(),
                tls_address: String::new(),
                capacity: 1,
                draining: false,
            })
            .collect();
        t
    }

    #[tokio::test]
    async fn subscribers_get_a_snapshot_then_deltas_and_report_lag() {
        let publisher = Publisher::new(table(1, &["e1"]));
        let mut sub = publisher.subscribe("edge/e1");
        assert_eq!(sub.first.version, 1);
        assert!(
            !publisher.publish(table(2, &["e1"])),
            "same routes: nothing to publish"
        );
        assert!(publisher.publish(table(3, &["e1", "e2"])));
        let delta = sub.updates.recv().await.unwrap();
        assert_eq!((delta.base_version, delta.version), (1, 3));
        let lags = publisher.lags();
        assert_eq!(lags[0].behind, 2);
        publisher.applied("edge/e1", 3);
        assert_eq!(publisher.lags()[0].behind, 0);
        drop(sub);
        assert!(publisher.lags().is_empty());
    }
}
