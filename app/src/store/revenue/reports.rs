//! Reports: each station's days, and a reconciliation of records, settlements, orders and
//! the ledger that must balance to the fen.

use std::collections::BTreeMap;

use pylon_proto::api::revenue::{Discrepancy, QuarantinedRecord, Reconciliation, StationDay};

use crate::revenue::ledger::Book;
use crate::store::sql::Db;
use crate::store::Result;

pub(crate) async fn daily<D: Db>(db: &mut D, from: i64, to: i64) -> Result<Vec<StationDay>> {
    let rows = db
        .query(
            "SELECT s.station_id, COALESCE(st.name, ''), COALESCE(st.utc_offset_minutes, 480), \
             s.start_time, s.energy, s.electricity_fen, s.service_fen \
             FROM settlements s LEFT JOIN stations st ON st.id = s.station_id \
             WHERE s.start_time >= $1 AND s.start_time < $2",
            &[from.into(), to.into()],
        )
        .await?;
    let mut days: BTreeMap<(Option<i64>, String), StationDay> = BTreeMap::new();
    for r in &rows {
        let station_id = r.opt_int(0)?;
        let offset_ms = r.int(2)? * 60_000;
        let day = day_text(r.int(3)? + offset_ms);
        let entry = days
            .entry((station_id, day.clone()))
            .or_insert_with(|| StationDay {
                station_id,
                station: String::new(),
                day,
                sessions: 0,
                energy: 0,
                electricity_fen: 0,
                service_fen: 0,
                revenue_fen: 0,
            });
        entry.station = r.text(1)?;
        entry.sessions += 1;
        entry.energy += r.int(4)?;
        entry.electricity_fen += r.int(5)?;
        entry.service_fen += r.int(6)?;
        entry.revenue_fen = entry.electricity_fen + entry.service_fen;
    }
    Ok(days.into_values().collect())
}

/// `YYYY-MM-DD` of a local time in Unix milliseconds.
fn day_text(local_ms: i64) -> String {
    let date = time::OffsetDateTime::from_unix_timestamp(local_ms.div_euclid(1000))
        .map(|t| t.date())
        .unwrap_or(time::Date::MIN);
    format!(
        "{:04}-{:02}-{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    )
}

async fn count<D: Db>(db: &mut D, sql: &str) -> Result<u64> {
    Ok(db
        .query_one(sql, &[])
        .await?
        .map(|r| r.int(0))
        .transpose()?
        .map_or(0, |n| u64::try_from(n).unwrap_or(0)))
}

pub(crate) async fn reconciliation<D: Db>(db: &mut D) -> Result<Reconciliation> {
    let records = count(
        db,
        "SELECT CAST(COUNT(*) AS BIGINT) FROM transaction_records",
    )
    .await?;
    let settlements = count(db, "SELECT CAST(COUNT(*) AS BIGINT) FROM settlements").await?;
    let discrepancies = count(db, "SELECT CAST(COUNT(*) AS BIGINT) FROM discrepancies").await?;
    let quarantined = count(
        db,
        "SELECT CAST(COUNT(*) AS BIGINT) FROM quarantined_records",
    )
    .await?;
    let unsettled_records = db
        .query(
            "SELECT r.trade_no FROM transaction_records r \
             LEFT JOIN settlements s ON s.trade_no = r.trade_no \
             WHERE s.trade_no IS NULL ORDER BY r.trade_no LIMIT 1000",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.text(0))
        .collect::<Result<Vec<_>>>()?;
    let settled = db
        .query_one(
            "SELECT CAST(COALESCE(SUM(electricity_fen), 0) AS BIGINT), \
             CAST(COALESCE(SUM(service_fen), 0) AS BIGINT) FROM settlements WHERE account_id IS NOT NULL",
            &[],
        )
        .await?;
    let (settled_electricity_fen, settled_service_fen) = match settled {
        Some(r) => (r.int(0)?, r.int(1)?),
        None => (0, 0),
    };
    // Every book's sum, from the ledger alone.
    let mut books: BTreeMap<String, i64> = BTreeMap::new();
    for r in db
        .query(
            "SELECT debit, credit, CAST(SUM(amount) AS BIGINT) FROM ledger GROUP BY debit, credit",
            &[],
        )
        .await?
    {
        let amount = r.int(2)?;
        *books.entry(r.text(0)?).or_default() -= amount;
        *books.entry(r.text(1)?).or_default() += amount;
    }
    let book = |b: Book| books.get(&b.to_string()).copied().unwrap_or(0);
    let ledger_electricity_fen = book(Book::Electricity);
    let ledger_service_fen = book(Book::Service);
    let refunds_fen = -book(Book::Refunds);
    let top_ups_fen = db
        .query_one(
            "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM ledger WHERE kind = 'top_up'",
            &[],
        )
        .await?
        .map(|r| r.int(0))
        .transpose()?
        .unwrap_or(0);
    let books_sum = books.values().sum();
    let mut wallet_mismatches = Vec::new();
    for r in db
        .query("SELECT id, balance, held FROM accounts ORDER BY id", &[])
        .await?
    {
        let id = r.int(0)?;
        if r.int(1)? != book(Book::Wallet(id)) || r.int(2)? != book(Book::Hold(id)) {
            wallet_mismatches.push(id);
        }
    }
    let open_holds_fen = db
        .query_one(
            "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM holds WHERE state = 'open'",
            &[],
        )
        .await?
        .map(|r| r.int(0))
        .transpose()?
        .unwrap_or(0);
    let held_in_books_fen: i64 = books
        .iter()
        .filter(|(name, _)| name.starts_with("hold:"))
        .map(|(_, v)| *v)
        .sum();
    let balanced = unsettled_records.is_empty()
        && books_sum == 0
        && wallet_mismatches.is_empty()
        && settled_electricity_fen == ledger_electricity_fen
        && settled_service_fen == ledger_service_fen
        && open_holds_fen == held_in_books_fen;
    Ok(Reconciliation {
        records,
        settlements,
        unsettled_records,
        settled_electricity_fen,
        settled_service_fen,
        ledger_electricity_fen,
        ledger_service_fen,
        refunds_fen,
        top_ups_fen,
        books_sum,
        wallet_mismatches,
        open_holds_fen,
        held_in_books_fen,
        discrepancies,
        quarantined,
        balanced,
    })
}

pub(crate) async fn discrepancies<D: Db>(db: &mut D, limit: u32) -> Result<Vec<Discrepancy>> {
    db.query(
        "SELECT trade_no, pile_no, platform_amount, pile_amount, at FROM discrepancies \
         ORDER BY at DESC LIMIT $1",
        &[i64::from(limit).into()],
    )
    .await?
    .iter()
    .map(|r| {
        Ok(Discrepancy {
            trade_no: r.text(0)?,
            pile_no: r.text(1)?,
            platform_amount: r.int(2)?,
            pile_amount: r.int(3)?,
            at: r.int(4)?,
        })
    })
    .collect()
}

pub(crate) async fn quarantined<D: Db>(db: &mut D, limit: u32) -> Result<Vec<QuarantinedRecord>> {
    db.query(
        "SELECT id, trade_no, pile_no, reason, received_at FROM quarantined_records \
         ORDER BY id DESC LIMIT $1",
        &[i64::from(limit).into()],
    )
    .await?
    .iter()
    .map(|r| {
        Ok(QuarantinedRecord {
            id: r.int(0)?,
            trade_no: r.text(1)?,
            pile_no: r.text(2)?,
            reason: r.text(3)?,
            received_at: r.int(4)?,
        })
    })
    .collect()
}
