//! The control plane's HTTP/JSON API, as types shared by the server and `pylonctl`.
//!
//! Public (chargers, no token):
//! - `GET /v1/entry?pile=<14 digits>[&transport=tcp|tls]` -> [`EntryReply`]
//!
//! Admin (header `Authorization: Bearer <admin token>`):
//! - `GET  /v1/admin/status`              -> [`StatusReply`]
//! - `GET  /v1/admin/edges`               -> `Vec<EdgeInfo>`
//! - `POST /v1/admin/edges/{id}/drain`    -> [`EdgeInfo`]
//! - `POST /v1/admin/edges/{id}/undrain`  -> [`EdgeInfo`]
//! - `GET  /v1/admin/apps`                -> `Vec<AppInfo>`
//! - `GET  /v1/admin/shards`              -> [`ShardMapReply`]
//! - `GET  /v1/admin/shards?pile=<id>`    -> [`PileShardReply`]
//! - `GET  /v1/admin/routes`              -> `pylon_proto::routes::RouteTable` (as JSON)
//!
//! Every error is an [`ApiError`] body with a 4xx/5xx status.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Default HTTP port of the control plane (dispatch, admin, metrics).
pub const DEFAULT_HTTP_PORT: u16 = 7400;
/// Default gRPC port of the control plane (membership, route push).
pub const DEFAULT_GRPC_PORT: u16 = 7401;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Tcp,
    Tls,
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryAddress {
    pub edge: String,
    /// `host:port` to connect to.
    pub address: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryReply {
    pub pile: String,
    pub transport: Transport,
    pub primary: EntryAddress,
    /// Where to go, in order, when the primary does not answer.
    pub backups: Vec<EntryAddress>,
    /// How long the charger may reuse this answer before asking again.
    pub ttl_seconds: u32,
}

pub use super::error::ApiError;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EdgeInfo {
    pub id: String,
    pub tcp_address: String,
    pub tls_address: String,
    pub capacity: u32,
    /// Sessions at the last load report.
    pub sessions: u32,
    /// An operator asked the edge to drain (`pylonctl edges drain`).
    pub draining: bool,
    /// The edge itself is shutting down.
    pub leaving: bool,
    /// Registered with a live lease.
    pub live: bool,
    pub version: String,
    /// Changes whenever the edge registers anew, i.e. after a restart (0: not registered).
    #[serde(default)]
    pub registration: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppInfo {
    pub id: String,
    pub grpc_address: String,
    /// The operator API the control plane forwards to ("" when the instance gave none).
    #[serde(default)]
    pub http_address: String,
    pub capacity: u32,
    pub sessions: u32,
    pub leaving: bool,
    /// Shards assigned to this instance.
    pub shards: u32,
    pub version: String,
    /// Changes whenever the instance registers anew, i.e. after a restart.
    #[serde(default)]
    pub registration: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardMapReply {
    pub shard_count: u32,
    /// Shards owned per app instance.
    pub per_app: BTreeMap<String, u32>,
    /// Shards no live instance owns.
    pub unowned: u32,
    /// `owners[s]`: the app instance owning shard `s`.
    pub owners: Vec<Option<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PileShardReply {
    pub pile: String,
    pub shard: u32,
    pub owner: Option<String>,
    pub owner_address: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubscriberInfo {
    pub id: String,
    /// The route-table version the subscriber last reported applied.
    pub applied_version: u64,
    /// Seconds since the oldest version it has not applied was published (0: up to date).
    pub lag_seconds: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReply {
    /// This control-plane replica.
    pub replica: String,
    /// The replica that writes shard assignments, if one is elected.
    pub leader: Option<String>,
    /// The lease the leader holds its key on: a new one with every election (0: none).
    #[serde(default)]
    pub leader_term: i64,
    /// `embedded` or `etcd`.
    pub backend: String,
    /// The registry answered the last request.
    pub registry_ok: bool,
    /// This replica's gRPC address (membership, route push).
    pub grpc_address: String,
    pub route_version: u64,
    pub edges_live: u32,
    pub edges_draining: u32,
    pub apps_live: u32,
    pub shard_count: u32,
    pub shards_unowned: u32,
    /// Route subscribers connected to this replica.
    pub subscribers: Vec<SubscriberInfo>,
    /// Every control-plane replica registered, this one included.
    #[serde(default)]
    pub replicas: Vec<ReplicaInfo>,
}

/// One control-plane replica, as it registered itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaInfo {
    pub id: String,
    /// Its HTTP API's base URL (dispatch, admin API, console).
    pub http_address: String,
    pub grpc_address: String,
    pub version: String,
    pub leader: bool,
    /// Changes whenever the replica registers anew, i.e. after a restart.
    pub registration: i64,
}
