//! Alarms: raised (deduplicated on their key while not resolved), acknowledged, resolved.

use pylon_proto::api::monitor::{Alarm, AlarmCounts, AlarmState, RaiseAlarm, Severity};

use crate::store::sql::{Db, Row, Value};
use crate::store::{Result, StoreError};

const COLUMNS: &str = "id, kind, severity, pile_no, gun_no, subject, text, state, count, \
                       first_at, last_at, acked_by, acked_at, resolved_by, resolved_at";

fn alarm(row: &Row) -> Result<Alarm> {
    let severity = row.text(2)?;
    let state = row.text(7)?;
    Ok(Alarm {
        id: row.int(0)?,
        kind: row.text(1)?,
        severity: Severity::parse(&severity)
            .ok_or_else(|| StoreError::Corrupt(format!("alarm severity {severity:?}")))?,
        pile_no: row.opt_text(3)?,
        gun_no: row.opt_text(4)?,
        subject: row.text(5)?,
        text: row.text(6)?,
        state: AlarmState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("alarm state {state:?}")))?,
        count: row.int(8)?,
        first_at: row.int(9)?,
        last_at: row.int(10)?,
        acked_by: row.opt_text(11)?,
        acked_at: row.opt_int(12)?,
        resolved_by: row.opt_text(13)?,
        resolved_at: row.opt_int(14)?,
    })
}

/// What raising a condition did.
#[derive(Debug, Clone, PartialEq)]
pub enum Raised {
    /// A new alarm: notify.
    New(Alarm),
    /// The condition was already alarmed (not resolved): counted on that alarm.
    Again(Alarm),
}

pub(crate) async fn raise_alarm<D: Db>(db: &mut D, raise: &RaiseAlarm, at: i64) -> Result<Raised> {
    let lock = db.lock_rows();
    let open = db
        .query_one(
            &format!(
                "SELECT {COLUMNS} FROM alarms WHERE dedup_key = $1 AND state <> 'resolved'{lock}"
            ),
            &[raise.key.as_str().into()],
        )
        .await?;
    if let Some(row) = open {
        let mut existing = alarm(&row)?;
        db.execute(
            "UPDATE alarms SET count = count + 1, last_at = $2, text = $3 WHERE id = $1",
            &[existing.id.into(), at.into(), raise.text.as_str().into()],
        )
        .await?;
        existing.count += 1;
        existing.last_at = at;
        existing.text.clone_from(&raise.text);
        return Ok(Raised::Again(existing));
    }
    let row = db
        .query_one(
            &format!(
                "INSERT INTO alarms (dedup_key, kind, severity, pile_no, gun_no, subject, text, \
                 state, count, first_at, last_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 'open', 1, $8, $8) RETURNING {COLUMNS}"
            ),
            &[
                raise.key.as_str().into(),
                raise.kind.as_str().into(),
                raise.severity.as_str().into(),
                raise.pile_no.as_deref().into(),
                raise.gun_no.as_deref().into(),
                raise.subject.as_str().into(),
                raise.text.as_str().into(),
                at.into(),
            ],
        )
        .await?
        .ok_or_else(|| StoreError::Backend("inserting an alarm returned no row".into()))?;
    Ok(Raised::New(alarm(&row)?))
}

/// Resolves the unresolved alarm of `key`, by `by`; the alarm as resolved, if there was one.
pub(crate) async fn clear_alarm<D: Db>(
    db: &mut D,
    key: &str,
    by: &str,
    at: i64,
) -> Result<Option<Alarm>> {
    let row = db
        .query_one(
            &format!(
                "UPDATE alarms SET state = 'resolved', resolved_by = $2, resolved_at = $3 \
                 WHERE dedup_key = $1 AND state <> 'resolved' RETURNING {COLUMNS}"
            ),
            &[key.into(), by.into(), at.into()],
        )
        .await?;
    row.as_ref().map(alarm).transpose()
}

/// Which of `keys` have an unresolved alarm (what a restarted instance must be able to
/// clear), sorted.
pub(crate) async fn open_alarm_keys<D: Db>(db: &mut D, keys: &[String]) -> Result<Vec<String>> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let params: Vec<Value> = keys.iter().map(|k| k.as_str().into()).collect();
    let list: Vec<String> = (1..=keys.len()).map(|i| format!("${i}")).collect();
    let rows = db
        .query(
            &format!(
                "SELECT dedup_key FROM alarms WHERE state <> 'resolved' AND dedup_key IN ({}) \
                 ORDER BY dedup_key",
                list.join(", ")
            ),
            &params,
        )
        .await?;
    rows.iter().map(|r| r.text(0)).collect()
}

/// Deletes alarms resolved before `before`; how many.
pub(crate) async fn purge_alarms<D: Db>(db: &mut D, before: i64) -> Result<u64> {
    db.execute(
        "DELETE FROM alarms WHERE state = 'resolved' AND resolved_at < $1",
        &[before.into()],
    )
    .await
}

/// What an operator can do to an alarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handling {
    Acknowledge,
    Resolve,
}

/// Why an operator's handling was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandlingRefusal {
    NotFound,
    /// Already resolved (nothing to acknowledge or resolve).
    Resolved,
}

pub(crate) async fn handle_alarm<D: Db>(
    db: &mut D,
    id: i64,
    handling: Handling,
    by: &str,
    at: i64,
) -> Result<Result<Alarm, HandlingRefusal>> {
    let lock = db.lock_rows();
    let Some(row) = db
        .query_one(
            &format!("SELECT {COLUMNS} FROM alarms WHERE id = $1{lock}"),
            &[id.into()],
        )
        .await?
    else {
        return Ok(Err(HandlingRefusal::NotFound));
    };
    let current = alarm(&row)?;
    if current.state == AlarmState::Resolved {
        return Ok(Err(HandlingRefusal::Resolved));
    }
    let sql = match handling {
        // Acknowledging twice keeps the first acknowledgement.
        Handling::Acknowledge if current.state == AlarmState::Acknowledged => {
            return Ok(Ok(current))
        }
        Handling::Acknowledge => {
            "UPDATE alarms SET state = 'acknowledged', acked_by = $2, acked_at = $3 WHERE id = $1"
        }
        Handling::Resolve => {
            "UPDATE alarms SET state = 'resolved', resolved_by = $2, resolved_at = $3 WHERE id = $1"
        }
    };
    db.execute(sql, &[id.into(), by.into(), at.into()]).await?;
    let row = db
        .query_one(
            &format!("SELECT {COLUMNS} FROM alarms WHERE id = $1"),
            &[id.into()],
        )
        .await?
        .ok_or(StoreError::Backend(
            "an alarm vanished while handled".into(),
        ))?;
    Ok(Ok(alarm(&row)?))
}

pub(crate) async fn alarm_by_id<D: Db>(db: &mut D, id: i64) -> Result<Option<Alarm>> {
    let row = db
        .query_one(
            &format!("SELECT {COLUMNS} FROM alarms WHERE id = $1"),
            &[id.into()],
        )
        .await?;
    row.as_ref().map(alarm).transpose()
}

/// Which alarms a list shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlarmFilter {
    /// `None`: every state; `Some(vec![Open, Acknowledged])`: the active ones.
    pub states: Option<Vec<AlarmState>>,
    pub pile_no: Option<String>,
    pub kind: Option<String>,
    /// Only alarms with a smaller id (the page after the one that ended at `before`).
    pub before: Option<i64>,
}

/// Newest first.
pub(crate) async fn alarms<D: Db>(
    db: &mut D,
    filter: &AlarmFilter,
    limit: u32,
) -> Result<Vec<Alarm>> {
    let mut clauses = Vec::new();
    let mut params: Vec<Value> = Vec::new();
    if let Some(states) = &filter.states {
        let mut names = Vec::new();
        for state in states {
            params.push(state.as_str().into());
            names.push(format!("${}", params.len()));
        }
        if names.is_empty() {
            return Ok(Vec::new());
        }
        clauses.push(format!("state IN ({})", names.join(", ")));
    }
    if let Some(pile) = &filter.pile_no {
        params.push(pile.as_str().into());
        clauses.push(format!("pile_no = ${}", params.len()));
    }
    if let Some(kind) = &filter.kind {
        params.push(kind.as_str().into());
        clauses.push(format!("kind = ${}", params.len()));
    }
    if let Some(before) = filter.before {
        params.push(before.into());
        clauses.push(format!("id < ${}", params.len()));
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
                "SELECT {COLUMNS} FROM alarms{filter_sql} ORDER BY id DESC LIMIT ${}",
                params.len()
            ),
            &params,
        )
        .await?;
    rows.iter().map(alarm).collect()
}

pub(crate) async fn alarm_counts<D: Db>(db: &mut D) -> Result<AlarmCounts> {
    let row = db
        .query_one(
            "SELECT CAST(COUNT(*) AS BIGINT), \
             CAST(COALESCE(SUM(CASE WHEN severity = 'critical' THEN 1 ELSE 0 END), 0) AS BIGINT) \
             FROM alarms WHERE state <> 'resolved'",
            &[],
        )
        .await?;
    let (open, critical) = match row {
        Some(r) => (r.int(0)?, r.int(1)?),
        None => (0, 0),
    };
    Ok(AlarmCounts {
        open: open.max(0) as u64,
        critical: critical.max(0) as u64,
    })
}
