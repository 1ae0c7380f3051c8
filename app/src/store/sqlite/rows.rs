//! From SQLite to the store's types: error mapping, rows read as plain values and then
//! decoded (a value that does not fit is corrupt data, never a panic), query helpers.

use rusqlite::{Connection, ErrorCode, OptionalExtension, Row};

use crate::store::{
    GunStatus, Order, OrderOrigin, OrderState, Pile, Result, StoreError, TransactionRecord,
};

pub(super) fn sql(e: rusqlite::Error) -> StoreError {
    use rusqlite::Error as E;
    match &e {
        E::SqliteFailure(failure, _) => match failure.code {
            ErrorCode::DatabaseBusy
            | ErrorCode::DatabaseLocked
            | ErrorCode::CannotOpen
            | ErrorCode::SystemIoFailure
            | ErrorCode::DiskFull
            | ErrorCode::ReadOnly
            | ErrorCode::PermissionDenied
            | ErrorCode::FileLockingProtocolFailed => {
                StoreError::Unavailable(format!("SQLite: {e}"))
            }
            ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase => {
                StoreError::Corrupt(format!("SQLite: {e}"))
            }
            ErrorCode::ConstraintViolation => StoreError::Conflict(format!("SQLite: {e}")),
            _ => StoreError::Backend(format!("SQLite: {e}")),
        },
        E::FromSqlConversionFailure(..)
        | E::InvalidColumnType(..)
        | E::IntegralValueOutOfRange(..)
        | E::Utf8Error(..) => StoreError::Corrupt(format!("SQLite: {e}")),
        _ => StoreError::Backend(format!("SQLite: {e}")),
    }
}

pub(super) fn corrupt(what: &str, detail: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {detail}"))
}

pub(super) fn json_text(value: &serde_json::Value) -> Result<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Backend(format!("encoding JSON: {e}")))
}

pub(super) fn json_value(text: &str, what: &str) -> Result<serde_json::Value> {
    serde_json::from_str(text).map_err(|e| corrupt(what, e))
}

pub(super) fn narrow<T: TryFrom<i64>>(value: i64, what: &str) -> Result<T> {
    T::try_from(value).map_err(|_| corrupt(what, format!("{value} is out of range")))
}

pub(super) fn bool_value(value: i64, what: &str) -> Result<bool> {
    match value {
        0 => Ok(false),
        1 => Ok(true),
        other => Err(corrupt(what, format!("{other} is not a boolean"))),
    }
}

/// Rows are first read as plain column values (rusqlite errors), then decoded (our checks).
pub(super) type PileRow = (String, i64, i64, String, Option<i64>);

pub(super) fn pile_row(row: &Row<'_>) -> rusqlite::Result<PileRow> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
    ))
}

pub(super) fn pile(raw: PileRow) -> Result<Pile> {
    Ok(Pile {
        enabled: bool_value(raw.1, "piles.enabled")?,
        billing_model: narrow(raw.2, "piles.billing_model")?,
        pile_no: raw.0,
        name: raw.3,
        last_login_at: raw.4,
    })
}

pub(super) type GunRow = (String, String, i64, String, i64);

pub(super) fn gun_row(row: &Row<'_>) -> rusqlite::Result<GunRow> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
    ))
}

pub(super) fn gun(raw: GunRow) -> Result<GunStatus> {
    Ok(GunStatus {
        status: narrow(raw.2, "gun_status.status")?,
        data: json_value(&raw.3, "gun_status.data")?,
        pile_no: raw.0,
        gun_no: raw.1,
        updated_at: raw.4,
    })
}

pub(super) type OrderRow = (
    String,
    String,
    String,
    String,
    String,
    i64,
    i64,
    i64,
    Option<String>,
);

pub(super) fn order_row(row: &Row<'_>) -> rusqlite::Result<OrderRow> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
        row.get(6)?,
        row.get(7)?,
        row.get(8)?,
    ))
}

pub(super) fn order(raw: OrderRow) -> Result<Order> {
    let state = OrderState::parse(&raw.3)
        .ok_or_else(|| corrupt("orders.state", format!("unknown state {:?}", raw.3)))?;
    let origin = OrderOrigin::parse(&raw.4)
        .ok_or_else(|| corrupt("orders.origin", format!("unknown origin {:?}", raw.4)))?;
    Ok(Order {
        trade_no: raw.0,
        pile_no: raw.1,
        gun_no: raw.2,
        state,
        origin,
        balance: raw.5,
        created_at: raw.6,
        updated_at: raw.7,
        failure: raw.8,
    })
}

pub(super) type RecordRow = (String, String, String, i64, i64, i64, i64, i64, String, i64);

pub(super) fn record_row(row: &Row<'_>) -> rusqlite::Result<RecordRow> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
        row.get(6)?,
        row.get(7)?,
        row.get(8)?,
        row.get(9)?,
    ))
}

pub(super) fn record(raw: RecordRow) -> Result<TransactionRecord> {
    Ok(TransactionRecord {
        stop_reason: narrow(raw.7, "transaction_records.stop_reason")?,
        fields: json_value(&raw.8, "transaction_records.fields")?,
        trade_no: raw.0,
        pile_no: raw.1,
        gun_no: raw.2,
        start_time: raw.3,
        end_time: raw.4,
        total_energy: raw.5,
        total_amount: raw.6,
        received_at: raw.9,
    })
}

/// Runs a cached query and decodes every row.
pub(super) fn query_all<P, R, T>(
    conn: &Connection,
    query: &str,
    params: P,
    read: fn(&Row<'_>) -> rusqlite::Result<R>,
    decode: fn(R) -> Result<T>,
) -> Result<Vec<T>>
where
    P: rusqlite::Params,
{
    let mut stmt = conn.prepare_cached(query).map_err(sql)?;
    let rows = stmt.query_map(params, read).map_err(sql)?;
    rows.map(|row| row.map_err(sql).and_then(decode)).collect()
}

/// Runs a cached query expected to return at most one row, and decodes it.
pub(super) fn query_opt<P, R, T>(
    conn: &Connection,
    query: &str,
    params: P,
    read: fn(&Row<'_>) -> rusqlite::Result<R>,
    decode: fn(R) -> Result<T>,
) -> Result<Option<T>>
where
    P: rusqlite::Params,
{
    let mut stmt = conn.prepare_cached(query).map_err(sql)?;
    stmt.query_row(params, read)
        .optional()
        .map_err(sql)?
        .map(decode)
        .transpose()
}

/// Runs a cached statement; the number of rows it changed.
pub(super) fn execute<P: rusqlite::Params>(
    conn: &Connection,
    query: &str,
    params: P,
) -> Result<usize> {
    let mut stmt = conn.prepare_cached(query).map_err(sql)?;
    stmt.execute(params).map_err(sql)
}

pub(super) fn limit(limit: u32) -> i64 {
    i64::from(limit)
}
