//! Disaster recovery between two sites: the control plane's `/v1/admin/dr/*` replies
//! (`pylonctl dr status|promote|demote`) and the registry export a standby site mirrors.

use serde::{Deserialize, Serialize};

/// What a site is doing: taking chargers (`primary`), or following the primary site and
/// turning chargers away until it is promoted (`standby`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SiteRole {
    #[default]
    Primary,
    Standby,
}

impl SiteRole {
    pub fn as_str(self) -> &'static str {
        match self {
            SiteRole::Primary => "primary",
            SiteRole::Standby => "standby",
        }
    }
}

/// `GET /v1/admin/dr/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrStatus {
    /// This site's name (`[dr] site`).
    pub site: String,
    pub role: SiteRole,
    /// When this site was last promoted or demoted (Unix ms; 0: never, the role is the
    /// configured one).
    pub role_since_ms: i64,
    /// The other site's control plane, as this one sees it.
    pub peer: Option<PeerStatus>,
    /// This site's PostgreSQL store, as a primary or a standby (None: no `[dr] store_url`).
    pub store: Option<StoreReplication>,
    /// The registry mirror of a standby site (None on a primary).
    pub mirror: Option<MirrorStatus>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerStatus {
    pub url: String,
    /// It answered `/v1/admin/dr/status` just now.
    pub reachable: bool,
    /// Its role, when it answered.
    pub role: Option<SiteRole>,
    /// Why it did not answer.
    pub error: Option<String>,
}

/// A PostgreSQL server's place in streaming replication.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoreReplication {
    /// It is a standby replaying WAL (`pg_is_in_recovery()`).
    pub in_recovery: bool,
    /// On a primary: the standbys streaming from it.
    pub standbys: Vec<StandbyLag>,
    /// On a standby: what it has received and replayed.
    pub receiver: Option<ReceiverLag>,
    /// Why the store could not be asked.
    pub error: Option<String>,
}

/// One standby as its primary sees it (`pg_stat_replication`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StandbyLag {
    pub name: String,
    pub client: String,
    pub state: String,
    /// `async`, `sync`, `quorum` or `potential`.
    pub sync_state: String,
    /// WAL the primary wrote that the standby has not replayed yet, in bytes.
    pub replay_behind_bytes: i64,
    /// WAL the primary wrote that the standby has not flushed to disk (what a site loss
    /// would cost), in bytes.
    pub flush_behind_bytes: i64,
    /// How long the standby's replay trails the primary's commits, in seconds.
    pub replay_lag_secs: Option<f64>,
}

/// A standby's own view (`pg_stat_wal_receiver` and the recovery functions).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReceiverLag {
    /// `streaming` while connected to the primary; `None` when no receiver runs (the
    /// primary is unreachable).
    pub status: Option<String>,
    /// The primary it streams from (`host=... port=...`).
    pub sender: Option<String>,
    /// WAL received and flushed here (an LSN, e.g. `0/3000148`).
    pub received_lsn: Option<String>,
    /// WAL replayed here.
    pub replayed_lsn: Option<String>,
    /// The primary's WAL end at its last report to this standby.
    pub primary_end_lsn: Option<String>,
    /// WAL the primary reported that has not reached this standby's disk, in bytes: the
    /// recovery point, as of the primary's last report.
    pub behind_bytes: i64,
    /// Seconds since the last message from the primary: how stale that report is.
    pub last_message_secs: Option<f64>,
    /// When the last replayed transaction committed on the primary (Unix ms).
    pub last_replayed_commit_ms: Option<i64>,
}

/// The registry mirror of a standby site.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct MirrorStatus {
    /// The last time the primary site's registry was copied whole (Unix ms; 0: never).
    pub last_ok_ms: i64,
    /// Seconds since then (the registry's recovery point).
    pub age_secs: Option<f64>,
    /// Keys held as of that copy.
    pub keys: u64,
    /// Keys written or deleted by the last copy.
    pub last_changes: u64,
    /// Why the last try failed, if it did.
    pub last_error: Option<String>,
}

/// `POST /v1/admin/dr/promote`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromoteRequest {
    /// Promote even though the primary site's control plane answers and says it is
    /// primary (two primaries: only when it is known to be cut off from chargers).
    #[serde(default)]
    pub force: bool,
}

/// `POST /v1/admin/dr/demote`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DemoteRequest {
    /// Demote even though the other site is not known to be primary, or this site's store
    /// still takes writes.
    #[serde(default)]
    pub force: bool,
}

/// What a promotion did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromoteReply {
    pub site: String,
    pub role: SiteRole,
    /// The store was a standby and is now the primary (false: it already was, or there is
    /// no `[dr] store_url`).
    pub store_promoted: bool,
    /// The store's replay position when it was promoted.
    pub store_lsn: Option<String>,
    /// How old the registry mirror was (seconds).
    pub mirror_age_secs: Option<f64>,
    /// How long the promotion took (seconds).
    pub took_secs: f64,
}

/// `GET /v1/admin/dr/export`: the registry keys a standby site mirrors (operators and
/// their tokens), values hex-encoded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryExport {
    /// The exporting site's role: a standby copies only from a primary.
    pub role: SiteRole,
    pub items: Vec<ExportedKey>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportedKey {
    pub key: String,
    #[serde(with = "hex::serde")]
    pub value: Vec<u8>,
}
