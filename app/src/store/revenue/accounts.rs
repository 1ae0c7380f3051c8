//! Accounts, their cards and VINs, and the money in their wallets: every change to a
//! balance goes through [`apply_postings`], which writes the ledger entries and moves the
//! wallet's two sums in the same transaction.

use pylon_proto::api::revenue::{Account, AccountInput, AccountState, CardView, LedgerEntry};

use super::{EntryMeta, SealedCard, SealedVin};
use crate::revenue::ledger::{Book, Posting, WalletSums};
use crate::store::sql::{Db, Row};
use crate::store::{Result, StoreError};

pub(crate) async fn create_account<D: Db>(
    db: &mut D,
    input: &AccountInput,
    at: i64,
) -> Result<Account> {
    let id = db
        .query_one(
            "INSERT INTO accounts (name, state, balance, held, created_at, updated_at) \
             VALUES ($1, 'active', 0, 0, $2, $2) RETURNING id",
            &[input.name.as_str().into(), at.into()],
        )
        .await?
        .map(|r| r.int(0))
        .transpose()?
        .ok_or_else(|| StoreError::Backend("no account id".into()))?;
    set_stations(db, id, &input.stations).await?;
    account(db, id)
        .await?
        .ok_or_else(|| StoreError::Backend("account vanished".into()))
}

async fn set_stations<D: Db>(db: &mut D, id: i64, stations: &[i64]) -> Result<()> {
    db.execute(
        "DELETE FROM account_stations WHERE account_id = $1",
        &[id.into()],
    )
    .await?;
    for station in stations {
        db.execute(
            "INSERT INTO account_stations (account_id, station_id) VALUES ($1, $2)",
            &[id.into(), (*station).into()],
        )
        .await?;
    }
    Ok(())
}

/// An account as operators see it (card numbers and VINs masked).
pub(crate) async fn account<D: Db>(db: &mut D, id: i64) -> Result<Option<Account>> {
    let Some(row) = db
        .query_one(
            "SELECT id, name, state, balance, held, created_at, updated_at FROM accounts WHERE id = $1",
            &[id.into()],
        )
        .await?
    else {
        return Ok(None);
    };
    let stations = db
        .query(
            "SELECT station_id FROM account_stations WHERE account_id = $1 ORDER BY station_id",
            &[id.into()],
        )
        .await?
        .iter()
        .map(|r| r.int(0))
        .collect::<Result<_>>()?;
    let cards = db
        .query(
            "SELECT card_masked, logical_masked, password_index FROM cards \
             WHERE account_id = $1 ORDER BY created_at, card_masked",
            &[id.into()],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(CardView {
                card: r.text(0)?,
                logical: r.text(1)?,
                has_password: r.opt_text(2)?.is_some(),
            })
        })
        .collect::<Result<_>>()?;
    let vins = db
        .query(
            "SELECT vin_masked FROM vins WHERE account_id = $1 ORDER BY created_at, vin_masked",
            &[id.into()],
        )
        .await?
        .iter()
        .map(|r| r.text(0))
        .collect::<Result<_>>()?;
    Ok(Some(Account {
        id: row.int(0)?,
        name: row.text(1)?,
        state: state(&row)?,
        balance: row.int(3)?,
        held: row.int(4)?,
        stations,
        cards,
        vins,
        created_at: row.int(5)?,
        updated_at: row.int(6)?,
    }))
}

fn state(row: &Row) -> Result<AccountState> {
    let text = row.text(2)?;
    AccountState::parse(&text).ok_or_else(|| StoreError::Corrupt(format!("account state {text:?}")))
}

pub(crate) async fn accounts<D: Db>(db: &mut D, after: i64, limit: u32) -> Result<Vec<Account>> {
    let ids: Vec<i64> = db
        .query(
            "SELECT id FROM accounts WHERE id > $1 ORDER BY id LIMIT $2",
            &[after.into(), i64::from(limit).into()],
        )
        .await?
        .iter()
        .map(|r| r.int(0))
        .collect::<Result<_>>()?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        out.extend(account(db, id).await?);
    }
    Ok(out)
}

/// Freezes or unfreezes; `None` if there is no such account.
pub(crate) async fn set_account_state<D: Db>(
    db: &mut D,
    id: i64,
    to: AccountState,
    at: i64,
) -> Result<Option<Account>> {
    let changed = db
        .execute(
            "UPDATE accounts SET state = $1, updated_at = $2 WHERE id = $3",
            &[to.as_str().into(), at.into(), id.into()],
        )
        .await?;
    if changed == 0 {
        return Ok(None);
    }
    account(db, id).await
}

async fn exists<D: Db>(db: &mut D, id: i64) -> Result<bool> {
    Ok(db
        .query_one("SELECT id FROM accounts WHERE id = $1", &[id.into()])
        .await?
        .is_some())
}

/// Adds a card; false if there is no such account, a conflict if the card is another's
/// (or this one's) already.
pub(crate) async fn add_card<D: Db>(
    db: &mut D,
    id: i64,
    card: &SealedCard,
    at: i64,
) -> Result<bool> {
    if !exists(db, id).await? {
        return Ok(false);
    }
    let taken = db
        .query_one(
            "SELECT account_id FROM cards WHERE card_index = $1",
            &[card.index.as_str().into()],
        )
        .await?;
    if let Some(row) = taken {
        return Err(StoreError::Conflict(format!(
            "card {} belongs to account {} already",
            card.masked,
            row.int(0)?
        )));
    }
    db.execute(
        "INSERT INTO cards (card_index, account_id, card_sealed, card_masked, logical_sealed, \
         logical_masked, password_index, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        &[
            card.index.as_str().into(),
            id.into(),
            card.sealed.as_str().into(),
            card.masked.as_str().into(),
            card.logical_sealed.as_str().into(),
            card.logical_masked.as_str().into(),
            card.password_index.clone().into(),
            at.into(),
        ],
    )
    .await?;
    Ok(true)
}

/// Removes a card from an account; false if the account has no such card.
pub(crate) async fn remove_card<D: Db>(db: &mut D, id: i64, card_index: &str) -> Result<bool> {
    let removed = db
        .execute(
            "DELETE FROM cards WHERE card_index = $1 AND account_id = $2",
            &[card_index.into(), id.into()],
        )
        .await?;
    Ok(removed > 0)
}

pub(crate) async fn add_vin<D: Db>(db: &mut D, id: i64, vin: &SealedVin, at: i64) -> Result<bool> {
    if !exists(db, id).await? {
        return Ok(false);
    }
    let taken = db
        .query_one(
            "SELECT account_id FROM vins WHERE vin_index = $1",
            &[vin.index.as_str().into()],
        )
        .await?;
    if let Some(row) = taken {
        return Err(StoreError::Conflict(format!(
            "VIN {} belongs to account {} already",
            vin.masked,
            row.int(0)?
        )));
    }
    db.execute(
        "INSERT INTO vins (vin_index, account_id, vin_sealed, vin_masked, created_at) \
         VALUES ($1, $2, $3, $4, $5)",
        &[
            vin.index.as_str().into(),
            id.into(),
            vin.sealed.as_str().into(),
            vin.masked.as_str().into(),
            at.into(),
        ],
    )
    .await?;
    Ok(true)
}

/// The wallet's sums, locked for this transaction where the backend can.
pub(crate) async fn wallet<D: Db>(
    db: &mut D,
    id: i64,
) -> Result<Option<(WalletSums, AccountState)>> {
    let lock = db.lock_rows();
    let Some(row) = db
        .query_one(
            &format!("SELECT balance, held, state FROM accounts WHERE id = $1{lock}"),
            &[id.into()],
        )
        .await?
    else {
        return Ok(None);
    };
    Ok(Some((
        WalletSums {
            balance: row.int(0)?,
            held: row.int(1)?,
        },
        state(&row)?,
    )))
}

/// Writes `postings` to the ledger and moves the wallets they touch.
pub(crate) async fn apply_postings<D: Db>(
    db: &mut D,
    postings: &[Posting],
    meta: &EntryMeta,
) -> Result<()> {
    for p in postings {
        let account = match (p.from, p.to) {
            (Book::Wallet(a) | Book::Hold(a), _) | (_, Book::Wallet(a) | Book::Hold(a)) => Some(a),
            _ => None,
        };
        db.execute(
            "INSERT INTO ledger (at, kind, debit, credit, amount, account_id, trade_no, actor, reason) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            &[
                meta.at.into(),
                p.kind.as_str().into(),
                p.from.to_string().into(),
                p.to.to_string().into(),
                p.amount.into(),
                account.into(),
                meta.trade_no.clone().into(),
                meta.actor.as_str().into(),
                meta.reason.as_str().into(),
            ],
        )
        .await?;
        for (book, sign) in [(p.from, -1), (p.to, 1)] {
            let (column, id) = match book {
                Book::Wallet(a) => ("balance", a),
                Book::Hold(a) => ("held", a),
                _ => continue,
            };
            let changed = db
                .execute(
                    &format!(
                        "UPDATE accounts SET {column} = {column} + $1, updated_at = $2 WHERE id = $3"
                    ),
                    &[(sign * p.amount).into(), meta.at.into(), id.into()],
                )
                .await?;
            if changed == 0 {
                return Err(StoreError::Conflict(format!("no account {id}")));
            }
        }
    }
    Ok(())
}

/// Posts an operator's money movement; `None` if there is no such account.
pub(crate) async fn post<D: Db>(
    db: &mut D,
    id: i64,
    postings: &[Posting],
    meta: &EntryMeta,
) -> Result<Option<Account>> {
    if wallet(db, id).await?.is_none() {
        return Ok(None);
    }
    apply_postings(db, postings, meta).await?;
    account(db, id).await
}

pub(crate) async fn ledger<D: Db>(db: &mut D, id: i64, limit: u32) -> Result<Vec<LedgerEntry>> {
    db.query(
        "SELECT id, at, kind, debit, credit, amount, trade_no, actor, reason FROM ledger \
         WHERE account_id = $1 ORDER BY id DESC LIMIT $2",
        &[id.into(), i64::from(limit).into()],
    )
    .await?
    .iter()
    .map(|r| {
        Ok(LedgerEntry {
            id: r.int(0)?,
            at: r.int(1)?,
            kind: r.text(2)?,
            from: r.text(3)?,
            to: r.text(4)?,
            amount: r.int(5)?,
            trade_no: r.opt_text(6)?,
            actor: r.text(7)?,
            reason: r.text(8)?,
        })
    })
    .collect()
}

/// Seals every card number, logical number and VIN again under the vault's current key
/// (after a rotation); returns how many values changed.
pub(crate) async fn reseal_all<D: Db>(
    db: &mut D,
    vault: &crate::revenue::vault::Vault,
) -> Result<u64> {
    use crate::revenue::vault::Vault;
    let current = vault.current_key();
    let reseal = |sealed: &str| -> Result<Option<String>> {
        if Vault::key_of(sealed) == current {
            return Ok(None);
        }
        let plain = vault
            .open(sealed)
            .map_err(|e| StoreError::Corrupt(format!("a sealed value does not open: {e}")))?;
        Ok(Some(vault.seal(&plain)))
    };
    let mut changed = 0;
    for r in db
        .query(
            "SELECT card_index, card_sealed, logical_sealed FROM cards",
            &[],
        )
        .await?
    {
        let (card, logical) = (reseal(&r.text(1)?)?, reseal(&r.text(2)?)?);
        if card.is_none() && logical.is_none() {
            continue;
        }
        db.execute(
            "UPDATE cards SET card_sealed = $1, logical_sealed = $2 WHERE card_index = $3",
            &[
                card.unwrap_or(r.text(1)?).into(),
                logical.unwrap_or(r.text(2)?).into(),
                r.text(0)?.into(),
            ],
        )
        .await?;
        changed += 1;
    }
    for r in db
        .query("SELECT vin_index, vin_sealed FROM vins", &[])
        .await?
    {
        if let Some(vin) = reseal(&r.text(1)?)? {
            db.execute(
                "UPDATE vins SET vin_sealed = $1 WHERE vin_index = $2",
                &[vin.into(), r.text(0)?.into()],
            )
            .await?;
            changed += 1;
        }
    }
    for (pile, sealed) in super::ciphers::all_pile_ciphers(db).await? {
        if let Some(resealed) = reseal(&sealed)? {
            db.execute(
                "UPDATE pile_ciphers SET sealed = $1 WHERE pile_no = $2",
                &[resealed.into(), pile.into()],
            )
            .await?;
            changed += 1;
        }
    }
    Ok(changed)
}

/// The cards (logical and physical, sealed) of the accounts explicitly allowed at a
/// station: the offline cards its piles keep.
pub(crate) async fn station_cards<D: Db>(
    db: &mut D,
    station: i64,
) -> Result<Vec<(String, String)>> {
    db.query(
        "SELECT c.logical_sealed, c.card_sealed FROM cards c \
         JOIN account_stations s ON s.account_id = c.account_id \
         JOIN accounts a ON a.id = c.account_id \
         WHERE s.station_id = $1 AND a.state = 'active' ORDER BY c.card_index",
        &[station.into()],
    )
    .await?
    .iter()
    .map(|r| Ok((r.text(0)?, r.text(1)?)))
    .collect()
}

/// The sealed physical numbers of an account's cards.
pub(crate) async fn account_card_seals<D: Db>(db: &mut D, account: i64) -> Result<Vec<String>> {
    db.query(
        "SELECT card_sealed FROM cards WHERE account_id = $1 ORDER BY card_index",
        &[account.into()],
    )
    .await?
    .iter()
    .map(|r| r.text(0))
    .collect()
}

/// Renames an account and sets the stations it may charge at; `None` if there is none.
pub(crate) async fn update_account<D: Db>(
    db: &mut D,
    id: i64,
    input: &AccountInput,
    at: i64,
) -> Result<Option<Account>> {
    let changed = db
        .execute(
            "UPDATE accounts SET name = $1, updated_at = $2 WHERE id = $3",
            &[input.name.as_str().into(), at.into(), id.into()],
        )
        .await?;
    if changed == 0 {
        return Ok(None);
    }
    set_stations(db, id, &input.stations).await?;
    account(db, id).await
}

/// Removes a VIN from an account; false if the account has no such VIN.
pub(crate) async fn remove_vin<D: Db>(db: &mut D, id: i64, vin_index: &str) -> Result<bool> {
    let removed = db
        .execute(
            "DELETE FROM vins WHERE vin_index = $1 AND account_id = $2",
            &[vin_index.into(), id.into()],
        )
        .await?;
    Ok(removed > 0)
}
