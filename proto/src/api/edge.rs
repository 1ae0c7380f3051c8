//! The edge's admin API (HTTP/JSON, no token: it listens on 127.0.0.1 unless set
//! otherwise), as types shared by `pylon-edge` and `pylonctl`.
//!
//! - `GET    /v1/status`                            -> [`EdgeStatusReply`]
//! - `POST   /v1/downlink` [`DownlinkRequest`]      -> [`DownlinkReply`] (200 queued,
//!   404 not connected, 503 failed)
//! - `GET    /v1/guard`                             -> [`GuardStatus`]
//! - `POST   /v1/guard/blocklist` [`BlockRequest`]  -> [`BlockedReply`]
//! - `DELETE /v1/guard/blocklist/{source}`          -> [`UnblockedReply`]
//!
//! Also `/metrics`, `/healthz` and `/readyz`. Every error is an
//! [`ApiError`](super::ApiError) body with a 4xx/5xx status.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Default port of the edge's admin server (`--admin-listen 127.0.0.1:9100`).
pub const DEFAULT_ADMIN_PORT: u16 = 9100;

/// Whether the edge takes new connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EdgeState {
    Running,
    /// Shutting down gracefully, or drained by an operator.
    Draining,
    Stopping,
}

/// A count per listener.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PerTransport {
    pub tcp: i64,
    pub tls: i64,
}

/// `GET /v1/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EdgeStatusReply {
    /// Open charger connections, logged in or not.
    pub connections: PerTransport,
    /// The link to the control plane is up.
    pub control_connected: bool,
    pub edge_id: String,
    pub executors: u32,
    /// Heartbeats answered since the edge started.
    pub heartbeats: u64,
    /// The route-table version applied.
    pub route_version: u64,
    /// Logged-in charger sessions.
    pub sessions: PerTransport,
    pub state: EdgeState,
}

/// `POST /v1/downlink`: a frame to send to a pile connected to this edge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DownlinkRequest {
    pub pile: String,
    /// Frame type code (`"0x36"`) or name (`"RemoteStop"`).
    #[serde(rename = "type")]
    pub frame_type: String,
    /// The frame's fields, as decoded by [`crate::ykc`].
    pub fields: Value,
}

/// What became of a downlink request on one executor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum DownlinkReply {
    /// Queued on the pile's session; it is written as soon as the socket takes it.
    Queued {
        executor: usize,
        session: u64,
    },
    NotConnected,
    Failed {
        reason: String,
    },
}

/// `GET /v1/guard`: what the SYN-flood guard did since the edge started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuardStatus {
    /// Blocked IPv4 sources.
    pub blocklist: Vec<String>,
    /// SYNs dropped because their source is on the blocklist.
    pub dropped_blocked: u64,
    /// SYNs dropped because their source sent them faster than the per-source rate.
    pub dropped_rate: u64,
    pub passed: u64,
}

/// `POST /v1/guard/blocklist`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockRequest {
    /// One IPv4 address.
    pub source: String,
}

/// `POST /v1/guard/blocklist`: the address now blocked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockedReply {
    pub blocked: String,
}

/// `DELETE /v1/guard/blocklist/{source}`: the address no longer blocked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnblockedReply {
    pub unblocked: String,
}

#[cfg(test)]
mod tests;
