//! A standby site's copy of what its operators need from the primary site's registry:
//! users and their tokens. The primary's listing is the truth: a key it lacks is removed
//! here. Everything else in a registry (members, loads, shards, leaders) belongs to the
//! site that holds it and is never copied.

use std::collections::BTreeMap;

use pylon_proto::api::dr::{ExportedKey, MirrorStatus};

use crate::node::ControlNode;
use crate::registry::KeyValue;

/// The prefix a standby mirrors: operators and their tokens.
pub(crate) const MIRRORED: &str = "/pylon-identity/";

/// One write that brings the standby's keys to the primary's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    Put { key: String, value: Vec<u8> },
    Delete { key: String },
}

/// The writes that make `local` equal `remote`, for keys under the mirrored prefixes
/// only (anything else the primary sends is ignored). Login sessions made here are kept:
/// they are this site's own.
pub(crate) fn plan(local: &[KeyValue], remote: &[ExportedKey]) -> Vec<Change> {
    let mirrored = |key: &str| key.starts_with(MIRRORED);
    let wanted: BTreeMap<&str, &[u8]> = remote
        .iter()
        .filter(|k| mirrored(&k.key))
        .map(|k| (k.key.as_str(), k.value.as_slice()))
        .collect();
    let held: BTreeMap<&str, &[u8]> = local
        .iter()
        .filter(|kv| mirrored(&kv.key))
        .map(|kv| (kv.key.as_str(), kv.value.as_slice()))
        .collect();
    let mut changes = Vec::new();
    for (key, value) in &wanted {
        if held.get(key) != Some(value) {
            changes.push(Change::Put {
                key: (*key).to_owned(),
                value: value.to_vec(),
            });
        }
    }
    for (key, value) in &held {
        if !wanted.contains_key(key) && !is_session(value) {
            changes.push(Change::Delete {
                key: (*key).to_owned(),
            });
        }
    }
    changes
}

/// A login session's token record (`{"info": {"kind": "session", ...}, ...}`).
fn is_session(value: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(value).is_ok_and(|v| v["info"]["kind"] == "session")
}

/// Why a copy is not applied: a primary whose operators mostly vanished is more likely
/// reset, rebuilt or misnamed than purged, and applying it would lock operators out of
/// the site they need in a disaster.
pub(crate) fn too_destructive(local_keys: usize, changes: &[Change]) -> Option<String> {
    let deletes = changes
        .iter()
        .filter(|c| matches!(c, Change::Delete { .. }))
        .count();
    (local_keys >= 4 && deletes * 2 > local_keys).then(|| {
        format!(
            "the copy would delete {deletes} of the {local_keys} operator keys held here; not \
             applied. If that is meant, delete them here too (or at both sites)"
        )
    })
}

/// The mirrored keys of this site's registry, for the other site.
pub(crate) async fn export(
    node: &ControlNode,
) -> anyhow::Result<pylon_proto::api::dr::RegistryExport> {
    let role = match node.dr.role() {
        super::KnownRole::Known(role) => role,
        super::KnownRole::Unknown => anyhow::bail!("this site's role is not known yet"),
    };
    let items = mirrored_keys(node)
        .await?
        .into_iter()
        .map(|kv| ExportedKey {
            key: kv.key,
            value: kv.value,
        })
        .collect();
    Ok(pylon_proto::api::dr::RegistryExport { role, items })
}

/// This site's keys under the mirrored prefix.
async fn mirrored_keys(node: &ControlNode) -> anyhow::Result<Vec<KeyValue>> {
    let listing = node
        .registry
        .list(MIRRORED)
        .await
        .map_err(|e| anyhow::anyhow!("listing {MIRRORED}: {e}"))?;
    Ok(listing.items)
}

/// Copies the primary's mirrored keys once, and records how it went.
pub(crate) async fn copy_once(node: &ControlNode) {
    let outcome = copy(node).await;
    let mut status = match node.dr.mirror.lock() {
        Ok(status) => status,
        Err(poisoned) => poisoned.into_inner(),
    };
    match outcome {
        Ok((keys, changes)) => {
            if changes > 0 {
                tracing::info!(keys, changes, "copied the primary site's operators");
            }
            *status = MirrorStatus {
                last_ok_ms: super::now_ms(),
                age_secs: Some(0.0),
                keys,
                last_changes: changes,
                last_error: None,
            };
            node.metrics.dr_mirror_ok_ms.set(status.last_ok_ms);
        }
        Err(e) => {
            tracing::warn!("cannot copy the primary site's registry: {e:#}");
            node.metrics.dr_mirror_failures.inc();
            status.last_error = Some(format!("{e:#}"));
        }
    }
}

async fn copy(node: &ControlNode) -> anyhow::Result<(u64, u64)> {
    let peer = node
        .dr
        .peer
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("no [dr] peer"))?;
    let remote = peer.export().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    anyhow::ensure!(
        remote.role == pylon_proto::api::dr::SiteRole::Primary,
        "the other site is not primary: nothing to follow"
    );
    let local = mirrored_keys(node).await?;
    let changes = plan(&local, &remote.items);
    if let Some(why) = too_destructive(local.len(), &changes) {
        anyhow::bail!(why);
    }
    for change in &changes {
        match change {
            Change::Put { key, value } => {
                node.registry.put(key, value.clone(), None).await.map(drop)
            }
            Change::Delete { key } => {
                tracing::info!(key, "removed at the primary site: removing it here");
                node.registry.delete(key).await
            }
        }
        .map_err(|e| anyhow::anyhow!("writing the copy: {e}"))?;
    }
    Ok((remote.items.len() as u64, changes.len() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(key: &str, value: &str) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: value.as_bytes().to_vec(),
            mod_revision: 1,
            lease: None,
        }
    }

    fn remote(key: &str, value: &str) -> ExportedKey {
        ExportedKey {
            key: key.into(),
            value: value.as_bytes().to_vec(),
        }
    }

    #[test]
    fn the_primary_is_the_truth_for_mirrored_keys_only() {
        let here = [
            local("/pylon-identity/users/ana", "old"),
            local("/pylon-identity/users/gone", "x"),
            local("/pylon-identity/tokens/t1", "same"),
            local("/pylon/members/edge/e1", "this site's own"),
        ];
        let there = [
            remote("/pylon-identity/users/ana", "new"),
            remote("/pylon-identity/tokens/t1", "same"),
            remote("/pylon-identity/users/bo", "b"),
            remote("/pylon/shards", "never copied"),
        ];
        let changes = plan(&here, &there);
        assert_eq!(
            changes,
            vec![
                Change::Put {
                    key: "/pylon-identity/users/ana".into(),
                    value: b"new".to_vec()
                },
                Change::Put {
                    key: "/pylon-identity/users/bo".into(),
                    value: b"b".to_vec()
                },
                Change::Delete {
                    key: "/pylon-identity/users/gone".into()
                },
            ]
        );
        assert!(plan(&here[2..3], &there[1..2]).is_empty(), "nothing to do");
    }

    #[test]
    fn sessions_made_here_stay_and_a_primary_emptied_is_not_copied() {
        let session = r#"{"info":{"kind":"session","id":"s1"},"digest":"d"}"#;
        let api = r#"{"info":{"kind":"api","id":"t1"},"digest":"d"}"#;
        let here = [
            local("/pylon-identity/tokens/s1", session),
            local("/pylon-identity/tokens/t1", api),
            local("/pylon-identity/users/ana", "a"),
            local("/pylon-identity/users/bo", "b"),
        ];
        let changes = plan(&here, &[]);
        assert_eq!(changes.len(), 3, "the session stays: {changes:?}");
        assert!(too_destructive(here.len(), &changes).is_some());
        let one_gone = plan(
            &here,
            &[
                remote("/pylon-identity/tokens/t1", api),
                remote("/pylon-identity/users/ana", "a"),
            ],
        );
        assert_eq!(
            one_gone,
            vec![Change::Delete {
                key: "/pylon-identity/users/bo".into()
            }]
        );
        assert!(too_destructive(here.len(), &one_gone).is_none());
    }
}
