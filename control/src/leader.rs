//! Leader election and shard assignment.
//!
//! Replicas campaign by creating the leader key on a lease of their own. The one that
//! succeeds keeps the lease alive and writes the shard map, each write fenced on still
//! holding the leader key; the others wait for the key to go away. With the embedded
//! registry there is one replica, which always wins.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::cluster::{ShardMapRecord, LEADER_KEY, LEADER_SEPARATOR, SHARDS_KEY};
use crate::node::ControlNode;
use crate::registry::{LeaseId, RegistryError};
use crate::shards;

pub async fn run(node: Arc<ControlNode>, mut shutdown: watch::Receiver<bool>) {
    let ttl = node.config.leader_ttl();
    loop {
        if *shutdown.borrow() {
            return;
        }
        match campaign(&node, ttl).await {
            Ok(Some(lease)) => {
                node.registry_ok();
                set_leader(&node, true);
                tracing::info!(replica = %node.config.replica_id, "this replica is the leader");
                let resigned = lead(&node, lease, ttl, &mut shutdown).await;
                set_leader(&node, false);
                if resigned {
                    let _ = node.registry.revoke(lease).await;
                    tracing::info!("resigned leadership");
                    return;
                }
                tracing::warn!("lost leadership");
            }
            Ok(None) => wait_for_vacancy(&node, ttl, &mut shutdown).await,
            Err(e) => {
                let e = node.registry_error("campaign", e);
                tracing::warn!("cannot campaign for leadership: {e}");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
    }
}

fn set_leader(node: &ControlNode, leading: bool) {
    if node.is_leader.swap(leading, Ordering::Relaxed) != leading {
        node.metrics.leader_changes.inc();
    }
    node.metrics.is_leader.set(i64::from(leading));
}

/// Tries to take the leader key; `Some(lease)` on success.
async fn campaign(node: &ControlNode, ttl: Duration) -> Result<Option<LeaseId>, RegistryError> {
    let registry = &node.registry;
    let lease = registry.grant_lease(ttl).await?;
    let me = leader_value(node, lease);
    let created = match registry.create(LEADER_KEY, me.clone(), Some(lease)).await {
        Ok(created) => created,
        Err(e) => {
            let _ = registry.revoke(lease).await;
            return Err(e);
        }
    };
    if created {
        return Ok(Some(lease));
    }
    // A retried create may have succeeded the first time: then the key is ours already.
    let ours = registry
        .get(LEADER_KEY)
        .await?
        .is_some_and(|kv| kv.value == me && kv.lease == Some(lease));
    if ours {
        return Ok(Some(lease));
    }
    let _ = registry.revoke(lease).await;
    Ok(None)
}

/// The leader key's value: this replica and its lease. Writes are fenced on the whole
/// value, so a deposed leader (or a replica given the same id by mistake) cannot write.
fn leader_value(node: &ControlNode, lease: LeaseId) -> Vec<u8> {
    format!("{}{LEADER_SEPARATOR}{lease:x}", node.config.replica_id).into_bytes()
}

/// Waits until the leader key is gone (or a TTL passes: campaigning again is cheap).
async fn wait_for_vacancy(node: &ControlNode, ttl: Duration, shutdown: &mut watch::Receiver<bool>) {
    // The mirror may not show the key that just beat us yet: never campaign in a loop.
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        _ = shutdown.changed() => return,
    }
    let mut changes = node.changes.subscribe();
    let deadline = tokio::time::sleep(ttl);
    tokio::pin!(deadline);
    loop {
        if node.view.load().state.leader().is_none() {
            return;
        }
        tokio::select! {
            _ = &mut deadline => return,
            r = changes.changed() => if r.is_err() { return },
            _ = shutdown.changed() => return,
        }
    }
}

/// Leads until leadership is lost (`false`) or the replica shuts down (`true`).
async fn lead(
    node: &ControlNode,
    lease: LeaseId,
    ttl: Duration,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    let mut keepalive = tokio::time::interval(ttl / 3);
    keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut changes = node.changes.subscribe();
    let mut last_refresh = tokio::time::Instant::now();
    loop {
        match reconcile_shards(node, lease).await {
            Ok(true) => {}
            Ok(false) => return false,
            Err(e) => {
                let e = node.registry_error("assign_shards", e);
                tracing::warn!("cannot write the shard map: {e}");
            }
        }
        tokio::select! {
            _ = keepalive.tick() => {
                if !node.refresh_lease(lease, ttl, &mut last_refresh, "leader").await {
                    return false;
                }
            }
            r = changes.changed() => if r.is_err() { return false },
            _ = shutdown.changed() => return true,
        }
    }
}

/// Writes a new shard map if the live app instances changed. `Ok(false)`: not the leader.
async fn reconcile_shards(node: &ControlNode, lease: LeaseId) -> Result<bool, RegistryError> {
    let view = node.view.load();
    let shard_count = node.config.shard_count;
    let current = view.state.shard_owners(shard_count);
    let next = shards::assign(&current, &view.state.shard_candidates());
    if next == current {
        return Ok(true);
    }
    let moved = shards::moved(&current, &next);
    let record = ShardMapRecord {
        shard_count,
        owners: next.into_iter().map(Option::unwrap_or_default).collect(),
    };
    let value = serde_json::to_vec(&record).unwrap_or_default();
    let written = node
        .registry
        .put_guarded(LEADER_KEY, &leader_value(node, lease), SHARDS_KEY, value)
        .await?;
    if written {
        node.metrics.shard_moves.inc_by(moved as u64);
        tracing::info!(moved, "shard map updated");
    }
    Ok(written)
}
