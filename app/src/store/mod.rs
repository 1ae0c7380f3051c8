//! The business store: piles, billing models, gun status (current and history), orders,
//! charging-session events and transaction records, behind one trait with two backends.
//!
//! - [`sqlite::SqliteStore`]: embedded, one file (WAL, synchronous commits). The default.
//! - [`postgres::PostgresStore`]: a PostgreSQL server, for when one machine is outgrown.
//!
//! Times are milliseconds since the Unix epoch (UTC). Amounts and energies are the
//! protocol's raw integers (0.0001 yuan, 0.0001 kWh), never floats. Frame details that
//! no query needs are kept as JSON (`fields`), as decoded by `pylon_proto::ykc`.

pub mod monitor;
pub mod postgres;
pub mod revenue;
pub mod schema;
pub mod sql;
pub mod sqlite;

use async_trait::async_trait;

// What the store keeps is what the operator API answers with (`pylon_proto::api::app`).
pub use pylon_proto::api::app::{
    BillingModel, GunStatus, Order, OrderOrigin, OrderState, Pile, SessionEvent, StatusChange,
    TransactionRecord,
};

/// Real-time status and charging events written together, in one transaction (see
/// `business::ingest`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IngestBatch {
    /// The latest status of each gun that reported since the last batch.
    pub statuses: Vec<GunStatus>,
    /// Status changes, written as they are.
    pub history: Vec<StatusChange>,
    /// Statuses of guns the writer had not seen before: each is history only where the
    /// stored status differs (compared before `statuses` are written).
    pub first_seen: Vec<StatusChange>,
    pub events: Vec<SessionEvent>,
}

impl IngestBatch {
    pub fn is_empty(&self) -> bool {
        self.statuses.is_empty()
            && self.history.is_empty()
            && self.first_seen.is_empty()
            && self.events.is_empty()
    }

    /// Rows the batch writes at most.
    pub fn rows(&self) -> usize {
        self.statuses.len() + self.history.len() + self.first_seen.len() + self.events.len()
    }
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
pub trait Store: revenue::RevenueStore + monitor::MonitorStore + Send + Sync + 'static {
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
    /// Writes a batch of statuses, history and events in one transaction.
    /// (Shared: a backend may hand it to a writer thread without copying it.)
    async fn write_ingest(&self, batch: std::sync::Arc<IngestBatch>) -> Result<()>;
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
