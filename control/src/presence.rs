//! Each replica registers itself under `/pylon/replicas/<id>` on a lease of its own, so
//! operators (and `pylonctl rollout control`) can list every replica and its address.
//! The lease is revoked on the way out: a stopped replica disappears at once, a crashed
//! one when its lease runs out.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::cluster::{replica_key, ReplicaRecord};
use crate::node::ControlNode;
use crate::registry::{LeaseId, RegistryError};

pub async fn run(node: Arc<ControlNode>, mut shutdown: watch::Receiver<bool>) {
    let ttl = node.config.leader_ttl();
    loop {
        if *shutdown.borrow() {
            return;
        }
        match register(&node, ttl).await {
            Ok(lease) => {
                let stopping = hold(&node, lease, ttl, &mut shutdown).await;
                if stopping {
                    let _ = node.registry.revoke(lease).await;
                    return;
                }
                tracing::warn!("this replica's registration lapsed; registering again");
            }
            Err(e) => {
                let e = node.registry_error("replica_register", e);
                tracing::warn!("cannot register this replica: {e}");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
    }
}

fn record(node: &ControlNode, lease: LeaseId) -> ReplicaRecord {
    ReplicaRecord {
        id: node.config.replica_id.clone(),
        http_address: node.config.http_address(),
        grpc_address: node.config.grpc_address(),
        version: env!("CARGO_PKG_VERSION").into(),
        lease,
    }
}

async fn register(node: &ControlNode, ttl: Duration) -> Result<LeaseId, RegistryError> {
    let lease = node.registry.grant_lease(ttl).await?;
    let value = serde_json::to_vec(&record(node, lease))
        .map_err(|e| RegistryError::Storage(format!("cannot encode this replica's record: {e}")))?;
    if let Err(e) = node
        .registry
        .put(&replica_key(&node.config.replica_id), value, Some(lease))
        .await
    {
        let _ = node.registry.revoke(lease).await;
        return Err(e);
    }
    Ok(lease)
}

/// Keeps the lease alive until it is lost (`false`) or the replica stops (`true`).
async fn hold(
    node: &ControlNode,
    lease: LeaseId,
    ttl: Duration,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    let mut keepalive = tokio::time::interval(ttl / 3);
    keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_refresh = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = keepalive.tick() => {
                if !node.refresh_lease(lease, ttl, &mut last_refresh, "replica").await {
                    return false;
                }
            }
            _ = shutdown.changed() => return true,
        }
    }
}
