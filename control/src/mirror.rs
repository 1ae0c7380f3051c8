//! Keeps this replica's view of the registry current: list everything under the root,
//! then follow the watch; when the watch breaks (registry failover, compaction), list again.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::cluster::{ClusterState, ROOT};
use crate::node::ControlNode;

pub async fn run(node: Arc<ControlNode>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let listing = match node.registry.list(ROOT).await {
            Ok(listing) => listing,
            Err(e) => {
                let e = node.registry_error("list", e);
                tracing::warn!("cannot read the registry (retrying in {backoff:?}): {e}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        node.registry_ok();
        let mut state = ClusterState::from_listing(listing.revision, listing.items);
        node.set_state(state.clone());
        node.ready.store(true, Ordering::Relaxed);
        let mut events = match node.registry.watch(ROOT, state.revision).await {
            Ok(events) => events,
            Err(e) => {
                let e = node.registry_error("watch", e);
                tracing::warn!("cannot watch the registry (retrying in {backoff:?}): {e}");
                tokio::time::sleep(backoff).await;
                continue;
            }
        };
        backoff = Duration::from_millis(100);
        while let Some(event) = events.recv().await {
            state.apply(event);
            // Fold whatever else already arrived into one update.
            while let Ok(event) = events.try_recv() {
                state.apply(event);
            }
            node.registry_ok();
            node.set_state(state.clone());
        }
        tracing::warn!("the registry watch ended; reading the registry again");
    }
}
