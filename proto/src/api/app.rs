//! The app service's operator API (HTTP/JSON), as types shared by `pylon-app` and
//! `pylonctl`.
//!
//! Every route below takes the control plane's admin token (header
//! `Authorization: Bearer <admin token>`):
//! - `GET  /v1/piles?after=&limit=`                  -> `Vec<Pile>`, by number
//! - `POST /v1/piles` `Vec<`[`PileInput`]`>`          -> [`UpsertedReply`]
//! - `GET  /v1/piles/{pile}`                          -> [`PileDetail`]
//! - `PUT  /v1/piles/{pile}` [`PileInput`]            -> [`Pile`]
//! - `GET  /v1/piles/{pile}/records?from=&to=&limit=` -> `Vec<TransactionRecord>`, newest first
//! - `GET  /v1/piles/{pile}/history?gun=&from=&to=&limit=` -> `Vec<StatusChange>`, oldest first
//! - `POST /v1/piles/{pile}/commands` [`CommandRequest`] -> [`CommandReply`]
//! - `GET  /v1/orders?pile=&from=&to=&limit=`         -> `Vec<Order>` (open ones, or one pile's history)
//! - `GET  /v1/orders/{trade_no}`                     -> [`OrderDetail`]
//! - `POST /v1/orders/{trade_no}/stop`                -> [`Order`]
//! - `GET  /v1/records/{trade_no}`                    -> [`TransactionRecord`]
//! - `GET  /v1/billing-models/{n}`                    -> [`BillingModel`]
//! - `PUT  /v1/billing-models/{n}` (the model's `fields`) -> [`BillingModel`]
//! - `GET  /v1/stats`                                 -> [`StatsReply`]
//!
//! Without a token: `/metrics`, `/healthz`, `/readyz`. Every error is an
//! [`ApiError`](super::ApiError) body with a 4xx/5xx status.
//!
//! Times are milliseconds since the Unix epoch (UTC). Amounts and energies are the
//! protocol's raw integers (0.0001 yuan, 0.0001 kWh), never floats. Frame details that
//! no query needs are kept as JSON (`fields`), as decoded by [`crate::ykc`].

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Default port of the app service's operator API and /metrics.
pub const DEFAULT_HTTP_PORT: u16 = 7510;

/// A pile (charger) known to the platform. Unknown or disabled piles may not log in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pile {
    /// 14 decimal digits.
    pub pile_no: String,
    pub enabled: bool,
    /// The billing model the pile must use (its number, 1..=9999).
    pub billing_model: u16,
    /// For operators; free text.
    #[serde(default)]
    pub name: String,
    /// Last successful login, if any.
    pub last_login_at: Option<i64>,
}

/// A billing model: `fields` are those of frame 0x0A after `pile_no` and `model_no`
/// (the four rates and the 48 half-hour period slots).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BillingModel {
    pub model_no: u16,
    pub fields: Value,
    pub updated_at: i64,
}

/// The latest known state of one gun.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GunStatus {
    #[serde(default)]
    pub pile_no: String,
    /// Two decimal digits, as on the wire ("01").
    pub gun_no: String,
    /// 0 offline, 1 fault, 2 idle, 3 charging (frame 0x13 `status`).
    pub status: u8,
    /// The last real-time data (0x13) fields.
    #[serde(default)]
    pub data: Value,
    pub updated_at: i64,
}

/// A change of a gun's status, kept as history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusChange {
    pub pile_no: String,
    pub gun_no: String,
    pub status: u8,
    pub at: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderState {
    /// Start sent to the pile (0x34/0x32/0xA2), waiting for it to begin.
    Starting,
    Charging,
    /// Stop sent (0x36), waiting for the pile.
    Stopping,
    /// The transaction record arrived and is stored.
    Finished,
    /// The pile refused or did not confirm in time; `failure` says why.
    Failed,
}

impl OrderState {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderState::Starting => "starting",
            OrderState::Charging => "charging",
            OrderState::Stopping => "stopping",
            OrderState::Finished => "finished",
            OrderState::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "starting" => OrderState::Starting,
            "charging" => OrderState::Charging,
            "stopping" => OrderState::Stopping,
            "finished" => OrderState::Finished,
            "failed" => OrderState::Failed,
            _ => return None,
        })
    }

    /// Orders in these states still need the pile's attention.
    pub fn is_open(self) -> bool {
        matches!(
            self,
            OrderState::Starting | OrderState::Charging | OrderState::Stopping
        )
    }
}

impl std::fmt::Display for OrderState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderOrigin {
    /// Remote start by an operator or app (0x34).
    Operator,
    /// Started at the pile with a card or VIN (0x31).
    Pile,
    /// Parallel charging (0xA1/0xA4).
    Parallel,
}

impl OrderOrigin {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderOrigin::Operator => "operator",
            OrderOrigin::Pile => "pile",
            OrderOrigin::Parallel => "parallel",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "operator" => OrderOrigin::Operator,
            "pile" => OrderOrigin::Pile,
            "parallel" => OrderOrigin::Parallel,
            _ => return None,
        })
    }
}

impl std::fmt::Display for OrderOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A charging order, keyed by the transaction serial number (32 digits).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    pub trade_no: String,
    pub pile_no: String,
    pub gun_no: String,
    pub state: OrderState,
    pub origin: OrderOrigin,
    /// What the charge may spend, in 0.01 yuan: the amount held on the account's wallet
    /// (what 0x32 or 0x34 told the pile).
    pub balance: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub failure: Option<String>,
}

/// A charging-process frame (0x15, 0x17, 0x19, 0x1B, 0x1D, 0x21, 0x23, 0x25, replies to
/// commands, ...) kept with the session it belongs to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionEvent {
    #[serde(default)]
    pub pile_no: String,
    #[serde(default)]
    pub gun_no: String,
    /// Empty when the frame names no transaction.
    #[serde(default)]
    pub trade_no: String,
    pub frame_type: u8,
    #[serde(default)]
    pub fields: Value,
    pub at: i64,
}

/// A transaction record (0x3B). Stored once per `trade_no`, whatever the retransmissions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransactionRecord {
    pub trade_no: String,
    pub pile_no: String,
    pub gun_no: String,
    pub start_time: i64,
    pub end_time: i64,
    /// 0.0001 kWh.
    pub total_energy: i64,
    /// 0.0001 yuan.
    pub total_amount: i64,
    pub stop_reason: u8,
    /// Every field of the frame (card numbers included: the store is trusted, logs are not).
    #[serde(default)]
    pub fields: Value,
    pub received_at: i64,
}

/// Where a pile is connected: its edge, the executor and the session there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PileLocation {
    pub edge: String,
    pub executor: u32,
    pub session_id: u64,
}

/// `GET /v1/piles/{pile}`: the pile, its connection, its guns and its open orders.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PileDetail {
    pub guns: Vec<GunStatus>,
    /// `None`: not connected to any edge (as far as this app instance knows).
    pub online: Option<PileLocation>,
    pub open_orders: Vec<Order>,
    pub pile: Pile,
    /// The pile as lists show it (state, firmware, station), from the store.
    #[serde(default)]
    pub summary: Option<crate::api::monitor::PileSummary>,
}

/// `GET /v1/orders/{trade_no}`: an order, its events and, once it ended, its record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderDetail {
    /// Oldest first.
    pub events: Vec<SessionEvent>,
    pub order: Order,
    pub record: Option<TransactionRecord>,
}

/// `POST /v1/piles`: how many piles were added or changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpsertedReply {
    pub upserted: u64,
}

/// `GET /v1/stats`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsReply {
    /// Edges with a business stream to this instance.
    pub edges: u64,
    /// Piles connected through those edges.
    pub piles_online: u64,
    /// Transaction records stored.
    pub records: u64,
    /// `sqlite` or `postgres`.
    pub store: String,
}

/// `POST /v1/piles/{pile}/commands`: the frame the pile answered with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandReply {
    /// The reply frame's fields.
    pub fields: Value,
    /// The reply frame's type name.
    pub reply: String,
}

/// A pile as `POST /v1/piles` (in a list, each with its `pile_no`) and
/// `PUT /v1/piles/{pile}` (the path names the pile) take it. The last login is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PileInput {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pile_no: Option<String>,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default = "model_one")]
    pub billing_model: u16,
    #[serde(default)]
    pub name: String,
}

fn yes() -> bool {
    true
}

fn model_one() -> u16 {
    1
}

/// `POST /v1/piles/{pile}/commands`: any command an operator sends; the reply waits for
/// the pile's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandRequest {
    /// Frame type code (`"0x56"`) or name (`"TimeSync"`).
    #[serde(rename = "type")]
    pub frame_type: String,
    /// The frame's fields; `pile_no` is filled in. TimeSync defaults to the current time.
    #[serde(default)]
    pub fields: Value,
    /// How long to wait for the answer (clamped to 1..=120).
    #[serde(default = "ten")]
    pub timeout_secs: u64,
}

fn ten() -> u64 {
    10
}

#[cfg(test)]
mod tests;

/// `GET /v1/piles/{pile}/cipher`: whether a pile encrypts its frames (YKC flag 0x01),
/// and how; never the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PileCipherState {
    pub pile_no: String,
    pub configured: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<crate::ykc::cipher::Mode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub padding: Option<crate::ykc::cipher::Padding>,
    /// CBC's IV, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iv: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<i64>,
}

/// `POST /v1/piles/{pile}/cipher/rotate`: a new random key (answered once, as a
/// `pylon_proto::ykc::PileCipher`, to load into the charger), with these settings
/// (default: the pile's current ones, else ECB with PKCS#7).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CipherRotate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<crate::ykc::cipher::Mode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub padding: Option<crate::ykc::cipher::Padding>,
    /// 16 hex digits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iv: Option<String>,
}
