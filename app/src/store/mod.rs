//! The business store: piles, billing models, gun status (current and history), orders,
//! charging-session events and transaction records, behind one trait with two backends.
//!
//! - [`sqlite::SqliteStore`]: embedded, one file (WAL, synchronous commits). The default.
//! - [`postgres::PostgresStore`]: a PostgreSQL server, for when one machine is outgrown.
//!
//! Times are milliseconds since the Unix epoch (UTC). Amounts and energies are the
//! protocol's raw integers (0.0001 yuan, 0.0001 kWh), never floats. Frame details that
//! no query needs are kept as JSON (`fields`), as decoded by `pylon_proto::ykc`.

pub mod postgres;
pub mod schema;
pub mod sqlite;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// A pile (charger) known to the platform. Unknown or disabled piles may not log in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pile {
    /// 14 decimal digits.
    pub pile_no: String,
    pub enabled: bool,
    /// The billing model the pile must use (its number, 1..=9999).
    pub billing_model: u16,
    /// For operators; free text.
    pub name: String,
    /// Last successful login, if any.
    pub last_login_at: Option<i64>,
}

/// A billing model: `fields` are those of frame 0x0A after `pile_no` and `model_no`
/// (the four rates and the 48 half-hour period slots).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BillingModel {
    pub model_no: u16,
    pub fields: serde_json::Value,
    pub updated_at: i64,
}

/// The latest known state of one gun.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GunStatus {
    pub pile_no: String,
    /// Two decimal digits, as on the wire ("01").
    pub gun_no: String,
    /// 0 offline, 1 fault, 2 idle, 3 charging (frame 0x13 `status`).
    pub status: u8,
    /// The last real-time data (0x13) fields.
    pub data: serde_json::Value,
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

/// A charging order, keyed by the transaction serial number (32 digits).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    pub trade_no: String,
    pub pile_no: String,
    pub gun_no: String,
    pub state: OrderState,
    pub origin: OrderOrigin,
    /// Balance granted for the charge, in 0.01 yuan (what 0x34 carries).
    pub balance: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub failure: Option<String>,
}

/// A charging-process frame (0x15, 0x17, 0x19, 0x1B, 0x1D, 0x21, 0x23, 0x25, replies to
/// commands, ...) kept with the session it belongs to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionEvent {
    pub pile_no: String,
    pub gun_no: String,
    /// Empty when the frame names no transaction.
    pub trade_no: String,
    pub frame_type: u8,
    pub fields: serde_json::Value,
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
    pub fields: serde_json::Value,
    pub received_at: i64,
}

/// What storing a transaction record did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// First time: the record was committed.
    New,
    /// Already stored earlier (a retransmission): nothing written.
    Duplicate,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("already exists: {0}")]
    Conflict(String),
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    #[error("store error: {0}")]
    Backend(String),
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// `"sqlite"` or `"postgres"`.
    fn backend(&self) -> &'static str;

    async fn upsert_pile(&self, pile: &Pile) -> Result<()>;
    async fn pile(&self, pile_no: &str) -> Result<Option<Pile>>;
    /// Piles sorted by number, starting after `after`.
    async fn piles(&self, after: Option<&str>, limit: u32) -> Result<Vec<Pile>>;
    async fn record_login(&self, pile_no: &str, at: i64) -> Result<()>;

    async fn upsert_billing_model(&self, model: &BillingModel) -> Result<()>;
    async fn billing_model(&self, model_no: u16) -> Result<Option<BillingModel>>;

    /// Sets the gun's current status; appends a [`StatusChange`] when `status` differs
    /// from the stored one (or none was stored).
    async fn set_gun_status(&self, status: &GunStatus) -> Result<()>;
    async fn gun_statuses(&self, pile_no: &str) -> Result<Vec<GunStatus>>;
    /// History of one gun in `[from, to)`, oldest first.
    async fn status_history(
        &self,
        pile_no: &str,
        gun_no: &str,
        from: i64,
        to: i64,
        limit: u32,
    ) -> Result<Vec<StatusChange>>;

    async fn append_event(&self, event: &SessionEvent) -> Result<()>;
    /// Events of one transaction, oldest first.
    async fn events(&self, trade_no: &str) -> Result<Vec<SessionEvent>>;

    /// [`StoreError::Conflict`] if the trade number exists.
    async fn insert_order(&self, order: &Order) -> Result<()>;
    /// Moves an order to `state`; false if there is no such order.
    async fn update_order(
        &self,
        trade_no: &str,
        state: OrderState,
        failure: Option<&str>,
        at: i64,
    ) -> Result<bool>;
    /// Moves an order to `state` only if it is in one of `from` (a compare-and-set, so
    /// concurrent replies, timeouts and stops cannot undo each other); false otherwise.
    async fn move_order(
        &self,
        trade_no: &str,
        from: &[OrderState],
        state: OrderState,
        failure: Option<&str>,
        at: i64,
    ) -> Result<bool>;
    async fn order(&self, trade_no: &str) -> Result<Option<Order>>;
    /// Open orders (starting, charging, stopping), of one pile or all, oldest first.
    async fn open_orders(&self, pile_no: Option<&str>) -> Result<Vec<Order>>;
    /// Orders of one pile created in `[from, to)`, newest first.
    async fn orders(&self, pile_no: &str, from: i64, to: i64, limit: u32) -> Result<Vec<Order>>;

    /// Commits the record unless its trade number is stored already, and in the same
    /// transaction marks the order (if any) finished. Returns only once durable.
    async fn store_record(&self, record: &TransactionRecord) -> Result<Stored>;
    async fn record(&self, trade_no: &str) -> Result<Option<TransactionRecord>>;
    /// Records of one pile with `end_time` in `[from, to)`, newest first.
    async fn records(
        &self,
        pile_no: &str,
        from: i64,
        to: i64,
        limit: u32,
    ) -> Result<Vec<TransactionRecord>>;
    async fn record_count(&self) -> Result<u64>;
}
