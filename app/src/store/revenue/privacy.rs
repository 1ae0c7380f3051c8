//! Personal data: a driver's erasure (anonymisation that keeps the books balanced), what
//! an export needs, and the retention purge of raw events and status history. Financial
//! records (transaction records, settlements, the ledger, orders) are never touched here:
//! the law keeps them.

use crate::store::sql::Db;
use crate::store::{Result, StoreError};

/// Why an account cannot be erased now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EraseRefusal {
    NoSuchAccount,
    /// Money is still in the wallet or held for a charge: refund or settle it first,
    /// or the books would not balance.
    MoneyLeft {
        balance: i64,
        held: i64,
    },
}

/// A driver's personal data as stored (sealed where it is sealed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PersonalData {
    /// (physical sealed, logical sealed, added at)
    pub cards: Vec<(String, String, i64)>,
    /// (VIN sealed, added at)
    pub vins: Vec<(String, i64)>,
}

pub(crate) async fn personal_data<D: Db>(db: &mut D, account: i64) -> Result<PersonalData> {
    let cards = db
        .query(
            "SELECT card_sealed, logical_sealed, created_at FROM cards \
             WHERE account_id = $1 ORDER BY created_at, card_index",
            &[account.into()],
        )
        .await?
        .iter()
        .map(|r| Ok((r.text(0)?, r.text(1)?, r.int(2)?)))
        .collect::<Result<_>>()?;
    let vins = db
        .query(
            "SELECT vin_sealed, created_at FROM vins WHERE account_id = $1 \
             ORDER BY created_at, vin_index",
            &[account.into()],
        )
        .await?
        .iter()
        .map(|r| Ok((r.text(0)?, r.int(1)?)))
        .collect::<Result<_>>()?;
    Ok(PersonalData { cards, vins })
}

/// Anonymises an account whose wallet is empty: its name, cards, VINs and station list
/// go; its ledger rows (amounts only) stay, so the books still balance.
pub(crate) async fn erase_account<D: Db>(
    db: &mut D,
    account: i64,
    at: i64,
) -> Result<std::result::Result<(), EraseRefusal>> {
    let Some(row) = db
        .query_one(
            "SELECT balance, held FROM accounts WHERE id = $1",
            &[account.into()],
        )
        .await?
    else {
        return Ok(Err(EraseRefusal::NoSuchAccount));
    };
    let (balance, held) = (row.int(0)?, row.int(1)?);
    if balance != 0 || held != 0 {
        return Ok(Err(EraseRefusal::MoneyLeft { balance, held }));
    }
    for table in ["cards", "vins", "account_stations"] {
        db.execute(
            &format!("DELETE FROM {table} WHERE account_id = $1"),
            &[account.into()],
        )
        .await?;
    }
    // Only while the wallet is still empty: money that arrived since the read (another
    // connection, PostgreSQL's READ COMMITTED) stops the erasure and rolls it back.
    let changed = db
        .execute(
            "UPDATE accounts SET name = $1, state = 'erased', updated_at = $2 \
             WHERE id = $3 AND balance = 0 AND held = 0",
            &[
                format!("erased #{account}").into(),
                at.into(),
                account.into(),
            ],
        )
        .await?;
    if changed != 1 {
        return Err(StoreError::Conflict(format!(
            "account {account} received money while being erased; nothing was erased"
        )));
    }
    Ok(Ok(()))
}

/// Accounts untouched since `before`, with an empty wallet and not erased yet: the
/// retention of drivers' personal data.
pub(crate) async fn dormant_accounts<D: Db>(db: &mut D, before: i64) -> Result<Vec<i64>> {
    db.query(
        "SELECT id FROM accounts WHERE updated_at < $1 AND state <> 'erased' \
         AND balance = 0 AND held = 0 ORDER BY id",
        &[before.into()],
    )
    .await?
    .iter()
    .map(|r| r.int(0))
    .collect()
}

/// Removes raw session events before `events_before` and status history before
/// `status_before` (Unix ms; 0 keeps them); returns how many of each went.
pub(crate) async fn purge_history<D: Db>(
    db: &mut D,
    events_before: i64,
    status_before: i64,
) -> Result<(u64, u64)> {
    let events = if events_before > 0 {
        db.execute(
            "DELETE FROM session_events WHERE at < $1",
            &[events_before.into()],
        )
        .await?
    } else {
        0
    };
    let status = if status_before > 0 {
        db.execute(
            "DELETE FROM status_history WHERE at < $1",
            &[status_before.into()],
        )
        .await?
    } else {
        0
    };
    Ok((events, status))
}
