use std::sync::Arc;

use pylon_proto::api::audit::AuditRecord;
use pylon_proto::auth::Role;

use super::*;
use crate::registry::embedded::EmbeddedRegistry;

fn record(n: u64) -> AuditRecord {
    AuditRecord {
        at_ms: n,
        service: "control".into(),
        actor: "ana".into(),
        role: Role::Admin,
        token_id: None,
        action: "edges.drain".into(),
        target: format!("edge-{n}"),
        before: None,
        after: Some(serde_json::json!({"draining": true})),
        source: None,
    }
}

fn open(dir: &tempfile::TempDir) -> (Arc<dyn Registry>, RegistryAudit) {
    let registry: Arc<dyn Registry> =
        EmbeddedRegistry::open(&dir.path().join("r.json")).expect("registry");
    (registry.clone(), RegistryAudit::new(registry))
}

#[tokio::test]
async fn concurrent_appends_make_one_unbroken_chain() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, audit) = open(&dir);
    let audit = Arc::new(audit);
    let tasks: Vec<_> = (0..20)
        .map(|n| {
            let audit = audit.clone();
            tokio::spawn(async move { audit.append(record(n)).await })
        })
        .collect();
    let mut seqs = Vec::new();
    for t in tasks {
        seqs.push(t.await.expect("task").expect("append"));
    }
    seqs.sort();
    assert_eq!(seqs, (1..=20).collect::<Vec<_>>());
    let check = audit.check().await.expect("check");
    assert!(check.intact && check.entries == 20, "{check:?}");
    assert_eq!(audit.list(15, 100).await.expect("list").len(), 5);
    assert_eq!(audit.list(0, 3).await.expect("list")[2].seq, 3);
}

#[tokio::test]
async fn tampering_in_the_registry_is_detected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (registry, audit) = open(&dir);
    for n in 1..=5 {
        audit.append(record(n)).await.expect("append");
    }
    // Edit entry 3 in place.
    let key = entry_key(3);
    let kv = registry.get(&key).await.expect("get").expect("entry 3");
    let mut entry: AuditEntry = serde_json::from_slice(&kv.value).expect("json");
    entry.record.actor = "mallory".into();
    registry
        .put(&key, serde_json::to_vec(&entry).expect("json"), None)
        .await
        .expect("put");
    let check = audit.check().await.expect("check");
    assert_eq!((check.intact, check.broken_at), (false, Some(3)));

    // Removing the last entry is seen through the head.
    let dir = tempfile::tempdir().expect("tempdir");
    let (registry, audit) = open(&dir);
    for n in 1..=3 {
        audit.append(record(n)).await.expect("append");
    }
    registry.delete(&entry_key(3)).await.expect("delete");
    let check = audit.check().await.expect("check");
    assert_eq!(
        (check.intact, check.broken_at),
        (false, Some(3)),
        "{check:?}"
    );
}

#[tokio::test]
async fn a_lagging_head_is_repaired_by_the_next_append() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (registry, audit) = open(&dir);
    audit.append(record(1)).await.expect("append");
    audit.append(record(2)).await.expect("append");
    // A replica died after writing entry 2 but before moving the head.
    let first = audit.entry(1).await.expect("read").expect("entry 1");
    audit.set_head(1, &first.hash).await.expect("head");
    assert_eq!(audit.append(record(3)).await.expect("append"), 3);
    assert!(audit.check().await.expect("check").intact);
    drop(registry);
}
