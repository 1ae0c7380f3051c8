//! Settling a transaction record, exactly once: in the transaction that stores the record,
//! price its energy with the tariff in force at its start, release the hold, charge the
//! wallet, flag a difference with the pile's own amount, and close the order. A record
//! that repeats is recognised here: the same one is only confirmed again, another one
//! under a used trade number is kept in quarantine and settles nothing.

use super::{apply_postings, priced_by, EntryMeta, Repeat, SettleInput, Settled};
use crate::revenue::ledger;
use crate::revenue::tariff::{price, to_fen, Priced};
use crate::store::sql::{Db, Value};
use crate::store::{Result, TransactionRecord};

/// Whether the store has a record under this trade number already, and if so whether it
/// is this one.
pub(crate) async fn repeat_of<D: Db>(
    db: &mut D,
    record: &TransactionRecord,
) -> Result<Option<Repeat>> {
    let Some(row) = db
        .query_one(
            "SELECT pile_no, gun_no, fields FROM transaction_records WHERE trade_no = $1",
            &[record.trade_no.as_str().into()],
        )
        .await?
    else {
        return Ok(None);
    };
    // Every field the pile sent (as stored: card numbers masked alike) must be the same,
    // but for the time it sent the record (a pile may restamp a retransmission).
    let without_send_time = |mut v: serde_json::Value| {
        if let Some(map) = v.as_object_mut() {
            map.remove("trade_time");
        }
        v
    };
    let stored = without_send_time(serde_json::from_str(&row.text(2)?).unwrap_or_default());
    let same = row.text(0)? == record.pile_no
        && row.text(1)? == record.gun_no
        && stored == without_send_time(record.fields.clone());
    Ok(Some(if same {
        Repeat::Same
    } else {
        Repeat::Quarantined
    }))
}

pub(crate) async fn quarantine<D: Db>(
    db: &mut D,
    record: &TransactionRecord,
    at: i64,
) -> Result<()> {
    db.execute(
        "INSERT INTO quarantined_records (trade_no, pile_no, reason, fields, received_at) \
         VALUES ($1, $2, $3, $4, $5)",
        &[
            record.trade_no.as_str().into(),
            record.pile_no.as_str().into(),
            "another record was stored under this trade number".into(),
            record.fields.to_string().into(),
            at.into(),
        ],
    )
    .await?;
    Ok(())
}

async fn insert_record<D: Db>(db: &mut D, r: &TransactionRecord) -> Result<()> {
    let fields = db.json_param("$9");
    db.execute(
        &format!(
            "INSERT INTO transaction_records (trade_no, pile_no, gun_no, start_time, end_time, \
             total_energy, total_amount, stop_reason, fields, received_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, CAST(CAST($8 AS BIGINT) AS SMALLINT), {fields}, $10)"
        ),
        &[
            r.trade_no.as_str().into(),
            r.pile_no.as_str().into(),
            r.gun_no.as_str().into(),
            r.start_time.into(),
            r.end_time.into(),
            r.total_energy.into(),
            r.total_amount.into(),
            i64::from(r.stop_reason).into(),
            r.fields.to_string().into(),
            r.received_at.into(),
        ],
    )
    .await?;
    Ok(())
}

/// Stores and settles a record, or recognises a repeat (quarantining another record
/// under a used trade number).
pub(crate) async fn settle_record<D: Db>(
    db: &mut D,
    input: &SettleInput,
) -> Result<std::result::Result<Settled, Repeat>> {
    match repeat_of(db, &input.record).await? {
        Some(Repeat::Same) => Ok(Err(Repeat::Same)),
        Some(Repeat::Quarantined) => {
            quarantine(db, &input.record, input.at).await?;
            Ok(Err(Repeat::Quarantined))
        }
        None => store_and_settle(db, input).await.map(Ok),
    }
}

/// Stores a new record and settles it (the caller checked [`repeat_of`] in the same
/// transaction).
async fn store_and_settle<D: Db>(db: &mut D, input: &SettleInput) -> Result<Settled> {
    let record = &input.record;
    insert_record(db, record).await?;
    let trade: Value = record.trade_no.as_str().into();
    let lock = db.lock_rows();
    let hold = db
        .query_one(
            &format!(
                "SELECT account_id, amount FROM holds WHERE trade_no = $1 AND state = 'open'{lock}"
            ),
            std::slice::from_ref(&trade),
        )
        .await?
        .map(|r| Ok::<_, crate::store::StoreError>((r.int(0)?, r.int(1)?)))
        .transpose()?;
    let ordered = db
        .query_one(
            "SELECT account_id FROM orders WHERE trade_no = $1",
            std::slice::from_ref(&trade),
        )
        .await?
        .map(|r| r.opt_int(0))
        .transpose()?
        .flatten();
    let by_card = match (&input.card_index, hold, ordered) {
        (Some(index), None, None) => db
            .query_one(
                "SELECT account_id FROM cards WHERE card_index = $1",
                &[index.as_str().into()],
            )
            .await?
            .map(|r| r.int(0))
            .transpose()?,
        _ => None,
    };
    let account = hold.map(|(a, _)| a).or(ordered).or(by_card);
    let held = hold.map_or(0, |(_, amount)| amount);

    let pile_amount = i64::try_from(input.metered.pile_amount).unwrap_or(i64::MAX);
    // The tariff in force at the record's start, at its pile's station, read in this
    // transaction. None (no station, or no tariff): the pile's own amount is charged and
    // the record flagged.
    let pricing = priced_by(db, &record.pile_no, record.start_time).await?;
    let priced = match &pricing {
        Some(by) => price(&by.tariff, &input.metered),
        // No tariff to price with: the pile's amount, all of it as electricity.
        None => Priced {
            electricity: input.metered.pile_amount,
            service: 0,
            electricity_fen: to_fen(input.metered.pile_amount),
            service_fen: 0,
        },
    };
    let platform_amount = i64::try_from(priced.total()).unwrap_or(i64::MAX);
    let discrepancy = pricing.is_none() || (platform_amount - pile_amount).abs() > input.tolerance;

    if let Some(account) = account {
        let meta = EntryMeta {
            actor: "settlement".into(),
            reason: format!("record of pile {}", record.pile_no),
            trade_no: Some(record.trade_no.clone()),
            at: input.at,
        };
        apply_postings(db, &ledger::settle(account, held, &priced), &meta).await?;
        db.execute(
            "UPDATE holds SET state = 'settled', closed_at = $1 WHERE trade_no = $2 AND state = 'open'",
            &[input.at.into(), trade.clone()],
        )
        .await?;
    }
    let billed: u64 = input.metered.billed.iter().sum();
    db.execute(
        "INSERT INTO settlements (trade_no, pile_no, station_id, account_id, tariff_id, tariff_revision, \
         energy, electricity_fen, service_fen, platform_amount, pile_amount, start_time, at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        &[
            trade.clone(),
            record.pile_no.as_str().into(),
            pricing.as_ref().map(|p| p.station_id).into(),
            account.into(),
            pricing.as_ref().map(|p| p.tariff_id).into(),
            pricing.as_ref().map(|p| i64::from(p.revision)).into(),
            i64::try_from(billed).unwrap_or(i64::MAX).into(),
            priced.electricity_fen.into(),
            priced.service_fen.into(),
            platform_amount.into(),
            pile_amount.into(),
            record.start_time.into(),
            input.at.into(),
        ],
    )
    .await?;
    if discrepancy {
        db.execute(
            "INSERT INTO discrepancies (trade_no, pile_no, platform_amount, pile_amount, at) \
             VALUES ($1, $2, $3, $4, $5)",
            &[
                trade.clone(),
                record.pile_no.as_str().into(),
                platform_amount.into(),
                pile_amount.into(),
                input.at.into(),
            ],
        )
        .await?;
    }
    db.execute(
        "UPDATE orders SET state = 'finished', updated_at = $1 \
         WHERE trade_no = $2 AND state IN ('starting', 'charging', 'stopping')",
        &[input.at.into(), trade],
    )
    .await?;
    Ok(Settled {
        account,
        charged: if account.is_some() {
            priced.total_fen()
        } else {
            0
        },
        discrepancy,
    })
}
