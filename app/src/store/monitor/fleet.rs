//! The fleet as operators look at it: which piles are connected (and with which firmware),
//! lists filtered in the store, counts, today's energy and revenue, and guns' traces.

use pylon_proto::api::monitor::{
    FleetSample, GunSample, PerMinute, PileCounts, PileState, PileSummary, Today,
};

use crate::store::sql::{Db, Row, Value};
use crate::store::Result;

/// Gun statuses of the 0x13 frame.
const GUN_FAULT: i64 = 1;
const GUN_CHARGING: i64 = 3;

/// The state of a pile, worked out in SQL from `piles` (as `p`) and its guns (the
/// literals are [`GUN_FAULT`] and [`GUN_CHARGING`]).
const STATE_SQL: &str = "CASE WHEN p.online = 0 THEN 'offline' \
     WHEN EXISTS (SELECT 1 FROM gun_status g WHERE g.pile_no = p.pile_no AND g.status = 1) \
         THEN 'faulted' \
     WHEN EXISTS (SELECT 1 FROM gun_status g WHERE g.pile_no = p.pile_no AND g.status = 3) \
         THEN 'charging' \
     ELSE 'idle' END";

const COLUMNS: &str = "p.pile_no, p.name, p.enabled, p.online, p.firmware, p.station_id, \
                       p.last_login_at, p.seen_at";

fn summary(row: &Row) -> Result<PileSummary> {
    let state = row.text(8)?;
    Ok(PileSummary {
        pile_no: row.text(0)?,
        name: row.text(1)?,
        enabled: row.int(2)? != 0,
        online: row.int(3)? != 0,
        firmware: row.text(4)?,
        station: row.opt_int(5)?,
        last_login_at: row.opt_int(6)?,
        seen_at: row.opt_int(7)?,
        state: PileState::parse(&state).unwrap_or(PileState::Offline),
    })
}

/// Marks a pile connected (with the firmware its login gave) or not.
pub(crate) async fn set_presence<D: Db>(
    db: &mut D,
    pile_no: &str,
    online: bool,
    firmware: Option<&str>,
    at: i64,
) -> Result<()> {
    match firmware {
        Some(firmware) => {
            db.execute(
                "UPDATE piles SET online = $2, firmware = $3, seen_at = $4 WHERE pile_no = $1",
                &[
                    pile_no.into(),
                    i64::from(online).into(),
                    firmware.into(),
                    at.into(),
                ],
            )
            .await?
        }
        None => {
            db.execute(
                "UPDATE piles SET online = $2, seen_at = $3 WHERE pile_no = $1",
                &[pile_no.into(), i64::from(online).into(), at.into()],
            )
            .await?
        }
    };
    Ok(())
}

/// Which piles a list shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PileFilter {
    /// A prefix of the pile number, or a part of its name.
    pub text: Option<String>,
    /// `None`: every state; `Some(None)` is not used. `online` is asked as idle, charging
    /// or faulted.
    pub states: Option<Vec<PileState>>,
    pub station: Option<i64>,
    pub firmware: Option<String>,
    pub after: Option<String>,
}

/// Sorted by pile number.
pub(crate) async fn pile_summaries<D: Db>(
    db: &mut D,
    filter: &PileFilter,
    limit: u32,
) -> Result<Vec<PileSummary>> {
    let mut clauses = Vec::new();
    let mut params: Vec<Value> = Vec::new();
    if let Some(text) = filter.text.as_deref().filter(|t| !t.is_empty()) {
        // LIKE's wildcards are dropped from what was typed; LOWER on both sides makes
        // the match case-blind on both backends.
        let pattern: String = text
            .chars()
            .filter(|c| !matches!(c, '%' | '_' | '\\'))
            .collect::<String>()
            .to_lowercase();
        params.push(format!("{pattern}%").into());
        let prefix = params.len();
        params.push(format!("%{pattern}%").into());
        clauses.push(format!(
            "(p.pile_no LIKE ${prefix} OR LOWER(p.name) LIKE ${})",
            params.len()
        ));
    }
    if let Some(station) = filter.station {
        params.push(station.into());
        clauses.push(format!("p.station_id = ${}", params.len()));
    }
    if let Some(firmware) = &filter.firmware {
        params.push(firmware.as_str().into());
        clauses.push(format!("p.firmware = ${}", params.len()));
    }
    if let Some(after) = &filter.after {
        params.push(after.as_str().into());
        clauses.push(format!("p.pile_no > ${}", params.len()));
    }
    let state_clause = |state: PileState| match state {
        PileState::Offline => "p.online = 0".to_owned(),
        PileState::Faulted => format!(
            "(p.online = 1 AND EXISTS (SELECT 1 FROM gun_status g WHERE g.pile_no = p.pile_no \
             AND g.status = {GUN_FAULT}))"
        ),
        PileState::Charging => format!(
            "(p.online = 1 AND NOT EXISTS (SELECT 1 FROM gun_status g WHERE g.pile_no = \
             p.pile_no AND g.status = {GUN_FAULT}) AND EXISTS (SELECT 1 FROM gun_status g \
             WHERE g.pile_no = p.pile_no AND g.status = {GUN_CHARGING}))"
        ),
        PileState::Idle => format!(
            "(p.online = 1 AND NOT EXISTS (SELECT 1 FROM gun_status g WHERE g.pile_no = \
             p.pile_no AND g.status IN ({GUN_FAULT}, {GUN_CHARGING})))"
        ),
    };
    if let Some(states) = &filter.states {
        if states.is_empty() {
            return Ok(Vec::new());
        }
        let any: Vec<String> = states.iter().map(|s| state_clause(*s)).collect();
        clauses.push(format!("({})", any.join(" OR ")));
    }
    params.push(i64::from(limit).into());
    let filter_sql = if clauses.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", clauses.join(" AND "))
    };
    let rows = db
        .query(
            &format!(
                "SELECT {COLUMNS}, {STATE_SQL} FROM piles p{filter_sql} ORDER BY p.pile_no LIMIT ${}",
                params.len()
            ),
            &params,
        )
        .await?;
    rows.iter().map(summary).collect()
}

pub(crate) async fn pile_summary<D: Db>(db: &mut D, pile_no: &str) -> Result<Option<PileSummary>> {
    let row = db
        .query_one(
            &format!("SELECT {COLUMNS}, {STATE_SQL} FROM piles p WHERE p.pile_no = $1"),
            &[pile_no.into()],
        )
        .await?;
    row.as_ref().map(summary).transpose()
}

fn count(row: &Option<Row>, i: usize) -> Result<u64> {
    Ok(match row {
        Some(r) => r.opt_int(i)?.unwrap_or(0).max(0) as u64,
        None => 0,
    })
}

pub(crate) async fn pile_counts<D: Db>(db: &mut D) -> Result<PileCounts> {
    let row = db
        .query_one(
            "SELECT CAST(COUNT(*) AS BIGINT), \
             CAST(COALESCE(SUM(online), 0) AS BIGINT) FROM piles",
            &[],
        )
        .await?;
    let (total, online) = (count(&row, 0)?, count(&row, 1)?);
    let busy = db
        .query_one(
            &format!(
                "SELECT CAST(COUNT(DISTINCT CASE WHEN g.status = {GUN_FAULT} THEN p.pile_no END) \
                 AS BIGINT), \
                 CAST(COUNT(DISTINCT CASE WHEN g.status = {GUN_CHARGING} AND NOT EXISTS \
                 (SELECT 1 FROM gun_status f WHERE f.pile_no = p.pile_no AND f.status = \
                 {GUN_FAULT}) THEN p.pile_no END) AS BIGINT) \
                 FROM piles p JOIN gun_status g ON g.pile_no = p.pile_no \
                 WHERE p.online = 1 AND g.status IN ({GUN_FAULT}, {GUN_CHARGING})"
            ),
            &[],
        )
        .await?;
    Ok(PileCounts {
        total,
        online,
        offline: total.saturating_sub(online),
        faulted: count(&busy, 0)?,
        charging: count(&busy, 1)?,
    })
}

/// Records received from `since` on (today's, or the last minute's).
pub(crate) async fn records_since<D: Db>(db: &mut D, since: i64) -> Result<Today> {
    let row = db
        .query_one(
            "SELECT CAST(COUNT(*) AS BIGINT), CAST(COALESCE(SUM(total_energy), 0) AS BIGINT), \
             CAST(COALESCE(SUM(total_amount), 0) AS BIGINT) \
             FROM transaction_records WHERE received_at >= $1",
            &[since.into()],
        )
        .await?;
    Ok(Today {
        records: count(&row, 0)?,
        energy_kwh: count(&row, 1)? as f64 / 10_000.0,
        revenue_yuan: count(&row, 2)? as f64 / 10_000.0,
    })
}

pub(crate) async fn per_minute<D: Db>(db: &mut D, now: i64) -> Result<PerMinute> {
    Ok(PerMinute {
        records: records_since(db, now - 60_000).await?.records,
        heartbeats: 0,
    })
}

pub(crate) async fn append_sample<D: Db>(
    db: &mut D,
    pile_no: &str,
    sample: &GunSample,
) -> Result<()> {
    db.execute(
        "INSERT INTO gun_samples (pile_no, gun_no, at, voltage, current, soc) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
        &[
            pile_no.into(),
            sample.gun_no.as_str().into(),
            sample.at.into(),
            Value::Real(sample.voltage),
            Value::Real(sample.current),
            sample.soc.into(),
        ],
    )
    .await?;
    Ok(())
}

/// Oldest first.
pub(crate) async fn samples<D: Db>(
    db: &mut D,
    pile_no: &str,
    from: i64,
    to: i64,
    limit: u32,
) -> Result<Vec<GunSample>> {
    let rows = db
        .query(
            "SELECT gun_no, at, voltage, current, soc FROM gun_samples \
             WHERE pile_no = $1 AND at >= $2 AND at < $3 ORDER BY at, gun_no LIMIT $4",
            &[
                pile_no.into(),
                from.into(),
                to.into(),
                i64::from(limit).into(),
            ],
        )
        .await?;
    rows.iter()
        .map(|r| {
            let voltage = r.opt_real(2)?.unwrap_or(0.0);
            let current = r.opt_real(3)?.unwrap_or(0.0);
            Ok(GunSample {
                gun_no: r.text(0)?,
                at: r.int(1)?,
                voltage,
                current,
                power_kw: (voltage * current / 1000.0 * 100.0).round() / 100.0,
                soc: r.int(4)?,
            })
        })
        .collect()
}

/// Drops samples older than `before`; how many.
pub(crate) async fn purge_samples<D: Db>(db: &mut D, before: i64) -> Result<u64> {
    db.execute("DELETE FROM gun_samples WHERE at < $1", &[before.into()])
        .await
}

/// Orders stopping since before `before` (their record is overdue): (trade, pile, gun).
pub(crate) async fn overdue_stops<D: Db>(
    db: &mut D,
    before: i64,
    limit: u32,
) -> Result<Vec<(String, String, String)>> {
    let rows = db
        .query(
            "SELECT o.trade_no, o.pile_no, o.gun_no FROM orders o WHERE o.state = 'stopping' \
             AND o.updated_at < $1 AND NOT EXISTS (SELECT 1 FROM alarms a WHERE \
             a.dedup_key = 'record_missing:' || o.trade_no AND a.state <> 'resolved') \
             ORDER BY o.updated_at LIMIT $2",
            &[before.into(), i64::from(limit).into()],
        )
        .await?;
    rows.iter()
        .map(|r| Ok((r.text(0)?, r.text(1)?, r.text(2)?)))
        .collect()
}

/// The newest orders of every pile (only the open ones: starting, charging, stopping,
/// with `open`), created before `before` (newest first).
pub(crate) async fn recent_orders<D: Db>(
    db: &mut D,
    before: i64,
    limit: u32,
    open: bool,
) -> Result<Vec<crate::store::Order>> {
    use crate::store::{Order, OrderOrigin, OrderState, StoreError};
    let only_open = if open {
        " AND state IN ('starting', 'charging', 'stopping')"
    } else {
        ""
    };
    let rows = db
        .query(
            &format!(
                "SELECT trade_no, pile_no, gun_no, state, origin, balance, created_at, \
                 updated_at, failure FROM orders WHERE created_at < $1{only_open} \
                 ORDER BY created_at DESC LIMIT $2"
            ),
            &[before.into(), i64::from(limit).into()],
        )
        .await?;
    rows.iter()
        .map(|r| {
            let state = r.text(3)?;
            let origin = r.text(4)?;
            Ok(Order {
                trade_no: r.text(0)?,
                pile_no: r.text(1)?,
                gun_no: r.text(2)?,
                state: OrderState::parse(&state)
                    .ok_or_else(|| StoreError::Corrupt(format!("order state {state:?}")))?,
                origin: OrderOrigin::parse(&origin)
                    .ok_or_else(|| StoreError::Corrupt(format!("order origin {origin:?}")))?,
                balance: r.int(5)?,
                created_at: r.int(6)?,
                updated_at: r.int(7)?,
                failure: r.opt_text(8)?,
            })
        })
        .collect()
}

/// Writes the fleet's counts for the period starting at `at` unless an instance sharing
/// the store wrote that period already.
pub(crate) async fn record_history<D: Db>(db: &mut D, at: i64) -> Result<()> {
    let counts = pile_counts(db).await?;
    let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    db.execute(
        "INSERT INTO fleet_history (at, piles, online, charging) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (at) DO NOTHING",
        &[
            at.into(),
            n(counts.total).into(),
            n(counts.online).into(),
            n(counts.charging).into(),
        ],
    )
    .await?;
    Ok(())
}

/// Samples from `since` on, oldest first.
pub(crate) async fn history<D: Db>(db: &mut D, since: i64, limit: u32) -> Result<Vec<FleetSample>> {
    let rows = db
        .query(
            "SELECT at, piles, online, charging FROM fleet_history WHERE at >= $1 \
             ORDER BY at LIMIT $2",
            &[since.into(), i64::from(limit).into()],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(FleetSample {
                at: r.int(0)?,
                piles: r.int(1)?.max(0) as u64,
                online: r.int(2)?.max(0) as u64,
                charging: r.int(3)?.max(0) as u64,
            })
        })
        .collect()
}
