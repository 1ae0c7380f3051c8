//! From PostgreSQL to the store's types: error mapping (unreachable is `Unavailable`,
//! undecodable is `Corrupt`) and row decoding.

use deadpool_postgres::{GenericClient, PoolError};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{FromSql, ToSql};
use tokio_postgres::Row;

use crate::store::{
    GunStatus, Order, OrderOrigin, OrderState, Pile, Result, SessionEvent, StatusChange,
    StoreError, TransactionRecord,
};

pub(super) fn pool_error(e: PoolError) -> StoreError {
    match e {
        PoolError::Backend(e) => StoreError::Unavailable(format!("PostgreSQL: {}", describe(&e))),
        PoolError::NoRuntimeSpecified => StoreError::Backend(format!("PostgreSQL pool: {e}")),
        other => StoreError::Unavailable(format!("PostgreSQL pool: {other}")),
    }
}

/// The server's own message when there is one, else the error with its causes
/// (tokio-postgres' own Display says only "db error", "error connecting to server", ...).
pub(super) fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => db.to_string(),
        None => with_causes(e),
    }
}

pub(super) use pylon_service::errors::with_causes;

pub(super) fn pg(e: tokio_postgres::Error) -> StoreError {
    let message = format!("PostgreSQL: {}", describe(&e));
    if let Some(db) = e.as_db_error() {
        let code = db.code();
        let class = &code.code()[..2.min(code.code().len())];
        return match class {
            // connection exception, insufficient resources, operator intervention
            // (admin/crash shutdown, cannot connect now)
            "08" | "53" | "57" if *code != SqlState::QUERY_CANCELED => {
                StoreError::Unavailable(message)
            }
            "XX" if *code == SqlState::DATA_CORRUPTED || *code == SqlState::INDEX_CORRUPTED => {
                StoreError::Corrupt(message)
            }
            _ if *code == SqlState::UNIQUE_VIOLATION => StoreError::Conflict(message),
            // A standby (or a primary being demoted): the writable server is elsewhere.
            _ if *code == SqlState::READ_ONLY_SQL_TRANSACTION => StoreError::Unavailable(message),
            _ => StoreError::Backend(message),
        };
    }
    let io = std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>());
    if e.is_closed() || io {
        StoreError::Unavailable(message)
    } else {
        StoreError::Backend(message)
    }
}

pub(super) fn corrupt(what: &str, detail: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {detail}"))
}

/// A column as `T`; a value that does not fit is corrupt data, not a panic.
pub(super) fn get<'a, T: FromSql<'a>>(row: &'a Row, column: usize, what: &str) -> Result<T> {
    row.try_get(column)
        .map_err(|e| corrupt(what, with_causes(&e)))
}

pub(super) fn narrow<T: TryFrom<i64>>(value: impl Into<i64>, what: &str) -> Result<T> {
    let value = value.into();
    T::try_from(value).map_err(|_| corrupt(what, format!("{value} is out of range")))
}

pub(super) fn limit(limit: u32) -> i64 {
    i64::from(limit)
}

pub(super) fn pile(row: &Row) -> Result<Pile> {
    Ok(Pile {
        pile_no: get(row, 0, "piles.pile_no")?,
        enabled: get(row, 1, "piles.enabled")?,
        billing_model: narrow(
            get::<i32>(row, 2, "piles.billing_model")?,
            "piles.billing_model",
        )?,
        name: get(row, 3, "piles.name")?,
        last_login_at: get(row, 4, "piles.last_login_at")?,
    })
}

pub(super) fn gun(row: &Row) -> Result<GunStatus> {
    Ok(GunStatus {
        pile_no: get(row, 0, "gun_status.pile_no")?,
        gun_no: get(row, 1, "gun_status.gun_no")?,
        status: narrow(
            get::<i16>(row, 2, "gun_status.status")?,
            "gun_status.status",
        )?,
        data: get(row, 3, "gun_status.data")?,
        updated_at: get(row, 4, "gun_status.updated_at")?,
    })
}

pub(super) fn status_change(row: &Row) -> Result<StatusChange> {
    Ok(StatusChange {
        pile_no: get(row, 0, "status_history.pile_no")?,
        gun_no: get(row, 1, "status_history.gun_no")?,
        status: narrow(
            get::<i16>(row, 2, "status_history.status")?,
            "status_history.status",
        )?,
        at: get(row, 3, "status_history.at")?,
    })
}

pub(super) fn event(row: &Row) -> Result<SessionEvent> {
    Ok(SessionEvent {
        pile_no: get(row, 0, "session_events.pile_no")?,
        gun_no: get(row, 1, "session_events.gun_no")?,
        trade_no: get(row, 2, "session_events.trade_no")?,
        frame_type: narrow(
            get::<i16>(row, 3, "session_events.frame_type")?,
            "session_events.frame_type",
        )?,
        fields: get(row, 4, "session_events.fields")?,
        at: get(row, 5, "session_events.at")?,
    })
}

pub(super) fn order(row: &Row) -> Result<Order> {
    let state: &str = get(row, 3, "orders.state")?;
    let origin: &str = get(row, 4, "orders.origin")?;
    Ok(Order {
        trade_no: get(row, 0, "orders.trade_no")?,
        pile_no: get(row, 1, "orders.pile_no")?,
        gun_no: get(row, 2, "orders.gun_no")?,
        state: OrderState::parse(state)
            .ok_or_else(|| corrupt("orders.state", format!("unknown state {state:?}")))?,
        origin: OrderOrigin::parse(origin)
            .ok_or_else(|| corrupt("orders.origin", format!("unknown origin {origin:?}")))?,
        balance: get(row, 5, "orders.balance")?,
        created_at: get(row, 6, "orders.created_at")?,
        updated_at: get(row, 7, "orders.updated_at")?,
        failure: get(row, 8, "orders.failure")?,
    })
}

pub(super) fn record(row: &Row) -> Result<TransactionRecord> {
    Ok(TransactionRecord {
        trade_no: get(row, 0, "transaction_records.trade_no")?,
        pile_no: get(row, 1, "transaction_records.pile_no")?,
        gun_no: get(row, 2, "transaction_records.gun_no")?,
        start_time: get(row, 3, "transaction_records.start_time")?,
        end_time: get(row, 4, "transaction_records.end_time")?,
        total_energy: get(row, 5, "transaction_records.total_energy")?,
        total_amount: get(row, 6, "transaction_records.total_amount")?,
        stop_reason: narrow(
            get::<i16>(row, 7, "transaction_records.stop_reason")?,
            "transaction_records.stop_reason",
        )?,
        fields: get(row, 8, "transaction_records.fields")?,
        received_at: get(row, 9, "transaction_records.received_at")?,
    })
}

/// Runs a statement (prepared once per connection) and decodes every row.
pub(super) async fn query_all<C, T>(
    client: &C,
    query: &str,
    params: &[&(dyn ToSql + Sync)],
    decode: fn(&Row) -> Result<T>,
) -> Result<Vec<T>>
where
    C: GenericClient,
{
    let statement = client.prepare_cached(query).await.map_err(pg)?;
    let rows = client.query(&statement, params).await.map_err(pg)?;
    rows.iter().map(decode).collect()
}

/// Runs a statement expected to return at most one row, and decodes it.
pub(super) async fn query_opt<C, T>(
    client: &C,
    query: &str,
    params: &[&(dyn ToSql + Sync)],
    decode: fn(&Row) -> Result<T>,
) -> Result<Option<T>>
where
    C: GenericClient,
{
    let statement = client.prepare_cached(query).await.map_err(pg)?;
    let row = client.query_opt(&statement, params).await.map_err(pg)?;
    row.as_ref().map(decode).transpose()
}

/// Runs a statement and returns the number of rows it changed.
pub(super) async fn execute<C>(
    client: &C,
    query: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<u64>
where
    C: GenericClient,
{
    let statement = client.prepare_cached(query).await.map_err(pg)?;
    client.execute(&statement, params).await.map_err(pg)
}
