//! What operators watch: the fleet at a glance, filtered pile lists, guns' traces, and
//! alarms (`pylon_proto::api::monitor`).

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use pylon_proto::api::monitor::{
    AlarmNote, AlarmPage, AlarmState, ClearAlarm, Fleet, PilePage, PileState, RaiseAlarm,
};
use pylon_service::http::error;
use pylon_service::routes::{Access, Caller, Routes};

use super::{number, pile_no, store_error, Api, ApiResult};
use crate::store::monitor::{AlarmFilter, Handling, HandlingRefusal, PileFilter};

/// Rows in one page, at most.
const PAGE_MAX: u32 = 500;

pub(super) fn routes(routes: Routes<Api>) -> Routes<Api> {
    use pylon_proto::auth::Permission::{Admin, Command, Read};
    routes
        .get("/v1/fleet", Access::Needs(Read), fleet)
        .get("/v1/fleet/piles", Access::Needs(Read), pile_page)
        .get("/v1/fleet/history", Access::Needs(Read), history)
        .get("/v1/piles/{pile}/samples", Access::Needs(Read), samples)
        .get("/v1/alarms", Access::Needs(Read), alarm_page)
        .post("/v1/alarms", Access::Needs(Admin), raise)
        .post("/v1/alarms/clear", Access::Needs(Admin), clear)
        .get("/v1/alarms/{id}", Access::Needs(Read), alarm)
        .post("/v1/alarms/{id}/ack", Access::Needs(Command), acknowledge)
        .post("/v1/alarms/{id}/resolve", Access::Needs(Command), resolve)
}

fn bad_query(message: String) -> Response {
    error(StatusCode::BAD_REQUEST, "bad_query", message)
}

/// Midnight of today in the piles' time zone, as Unix ms.
fn start_of_today(now_ms: i64, offset: time::UtcOffset) -> i64 {
    let day_ms = 86_400_000;
    let shift = i64::from(offset.whole_seconds()) * 1000;
    (now_ms + shift).div_euclid(day_ms) * day_ms - shift
}

async fn fleet(State(api): State<Api>) -> ApiResult {
    let store = &api.business.store;
    let now = api.business.now_ms();
    let fleet = Fleet {
        piles: store.pile_counts().await.map_err(store_error)?,
        alarms: store.alarm_counts().await.map_err(store_error)?,
        today: store
            .records_since(start_of_today(now, api.business.offset))
            .await
            .map_err(store_error)?,
        per_minute: store.per_minute(now).await.map_err(store_error)?,
    };
    Ok(Json(fleet).into_response())
}

/// `GET /v1/fleet/history?since=<unix ms>&limit=`: the fleet's size over time, oldest
/// first (default: the last 400 days).
async fn history(State(api): State<Api>, Query(q): Query<HashMap<String, String>>) -> ApiResult {
    let now = api.business.now_ms();
    let since = number(&q, "since", now - 400 * 86_400_000)?;
    let limit = number(&q, "limit", HISTORY_MAX)?.clamp(1, HISTORY_MAX);
    let samples = api
        .business
        .store
        .history(since, limit)
        .await
        .map_err(store_error)?;
    Ok(Json(samples).into_response())
}

/// At most this many samples per call: 400 days of hourly ones.
const HISTORY_MAX: u32 = 10_000;

async fn pile_page(State(api): State<Api>, Query(q): Query<HashMap<String, String>>) -> ApiResult {
    let limit = number(&q, "limit", 50u32)?.clamp(1, PAGE_MAX);
    let states = match q.get("state").map(String::as_str) {
        None | Some("") | Some("all") => None,
        Some("online") => Some(vec![
            PileState::Idle,
            PileState::Charging,
            PileState::Faulted,
        ]),
        Some(text) => Some(vec![PileState::parse(text).ok_or_else(|| {
            bad_query(format!(
                "state={text:?}: offline, online, idle, charging or faulted"
            ))
        })?]),
    };
    let station = match q.get("station").filter(|s| !s.is_empty()) {
        Some(s) => Some(
            s.parse::<i64>()
                .map_err(|_| bad_query(format!("station={s:?} is not a station id")))?,
        ),
        None => None,
    };
    let filter = PileFilter {
        text: q.get("q").cloned().filter(|t| !t.is_empty()),
        states,
        station,
        firmware: q.get("firmware").cloned().filter(|f| !f.is_empty()),
        after: q.get("after").cloned().filter(|a| !a.is_empty()),
    };
    // One more than asked tells whether there is a next page.
    let mut piles = api
        .business
        .store
        .pile_summaries(&filter, limit + 1)
        .await
        .map_err(store_error)?;
    let next = if piles.len() > limit as usize {
        piles.truncate(limit as usize);
        piles.last().map(|p| p.pile_no.clone())
    } else {
        None
    };
    Ok(Json(PilePage { piles, next }).into_response())
}

async fn samples(
    State(api): State<Api>,
    Path(pile): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult {
    pile_no(&pile)?;
    let now = api.business.now_ms();
    let to = number(&q, "to", now + 1)?;
    let from = number(&q, "from", to.saturating_sub(6 * 3_600_000))?;
    let limit = number(&q, "limit", 5_000u32)?.min(20_000);
    let samples = api
        .business
        .store
        .samples(&pile, from, to, limit)
        .await
        .map_err(store_error)?;
    Ok(Json(samples).into_response())
}

async fn alarm_page(State(api): State<Api>, Query(q): Query<HashMap<String, String>>) -> ApiResult {
    let limit = number(&q, "limit", 50u32)?.clamp(1, PAGE_MAX);
    let states = match q.get("state").map(String::as_str) {
        None | Some("") | Some("active") => Some(vec![AlarmState::Open, AlarmState::Acknowledged]),
        Some("all") => None,
        Some(text) => Some(vec![AlarmState::parse(text).ok_or_else(|| {
            bad_query(format!(
                "state={text:?}: active, open, acknowledged, resolved or all"
            ))
        })?]),
    };
    let filter = AlarmFilter {
        states,
        pile_no: q.get("pile").cloned().filter(|p| !p.is_empty()),
        kind: q.get("kind").cloned().filter(|k| !k.is_empty()),
        before: match q.get("after").filter(|a| !a.is_empty()) {
            Some(a) => Some(
                a.parse()
                    .map_err(|_| bad_query(format!("after={a:?} is not an alarm id")))?,
            ),
            None => None,
        },
    };
    let mut alarms = api
        .business
        .store
        .alarms(&filter, limit + 1)
        .await
        .map_err(store_error)?;
    let next = if alarms.len() > limit as usize {
        alarms.truncate(limit as usize);
        alarms.last().map(|a| a.id)
    } else {
        None
    };
    Ok(Json(AlarmPage { alarms, next }).into_response())
}

fn alarm_id(text: &str) -> Result<i64, Response> {
    text.parse().map_err(|_| {
        error(
            StatusCode::BAD_REQUEST,
            "bad_alarm",
            format!("{text:?} is not an alarm id"),
        )
    })
}

fn no_alarm(id: i64) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "no_such_alarm",
        format!("no alarm {id}"),
    )
}

async fn alarm(State(api): State<Api>, Path(id): Path<String>) -> ApiResult {
    let id = alarm_id(&id)?;
    match api.business.store.alarm(id).await.map_err(store_error)? {
        Some(alarm) => Ok(Json(alarm).into_response()),
        None => Err(no_alarm(id)),
    }
}

async fn handle(api: &Api, caller: &Caller, id: &str, handling: Handling) -> ApiResult {
    let id = alarm_id(id)?;
    let handled = api
        .business
        .alarms
        .handle(id, handling, &caller.principal.user, api.business.now_ms())
        .await
        .map_err(store_error)?;
    match handled {
        Ok(alarm) => Ok(Json(alarm).into_response()),
        Err(HandlingRefusal::NotFound) => Err(no_alarm(id)),
        Err(HandlingRefusal::Resolved) => Err(error(
            StatusCode::CONFLICT,
            "alarm_resolved",
            format!("alarm {id} is resolved already"),
        )),
    }
}

async fn acknowledge(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    note: Option<Json<AlarmNote>>,
) -> ApiResult {
    log_note(&caller, &id, "acknowledged", note);
    handle(&api, &caller, &id, Handling::Acknowledge).await
}

async fn resolve(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    note: Option<Json<AlarmNote>>,
) -> ApiResult {
    log_note(&caller, &id, "resolved", note);
    handle(&api, &caller, &id, Handling::Resolve).await
}

fn log_note(caller: &Caller, id: &str, what: &str, note: Option<Json<AlarmNote>>) {
    if let Some(note) = note.and_then(|Json(n)| n.note) {
        let note: String = note.chars().take(500).collect();
        tracing::info!(alarm = id, user = %caller.principal.user, "alarm {what}: {note}");
    }
}

/// A platform alarm from the control plane (or an operator's tooling).
async fn raise(State(api): State<Api>, Json(raise): Json<RaiseAlarm>) -> ApiResult {
    let sized = |text: &str, most: usize| !text.is_empty() && text.len() <= most;
    if !sized(&raise.key, 200)
        || !sized(&raise.kind, 64)
        || !sized(&raise.subject, 200)
        || !sized(&raise.text, 2_000)
    {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "bad_alarm",
            "an alarm needs a key (at most 200 bytes), a kind (64), a subject (200) and a \
             text (2000)",
        ));
    }
    let at = api.business.now_ms();
    let raised = api
        .business
        .alarms
        .raise(raise, at)
        .await
        .map_err(store_error)?;
    let status = if raised.is_some() {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(raised)).into_response())
}

async fn clear(State(api): State<Api>, Json(clear): Json<ClearAlarm>) -> ApiResult {
    let at = api.business.now_ms();
    let cleared = api
        .business
        .alarms
        .clear(&clear.key, at)
        .await
        .map_err(store_error)?;
    Ok(Json(cleared).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn today_starts_at_the_piles_midnight() {
        let china = time::UtcOffset::from_hms(8, 0, 0).unwrap_or(time::UtcOffset::UTC);
        // 2023-11-14T22:13:20Z is 06:13:20 on the 15th in China: midnight there is
        // 2023-11-14T16:00:00Z.
        assert_eq!(start_of_today(1_700_000_000_000, china), 1_699_977_600_000);
        assert_eq!(
            start_of_today(1_700_000_000_000, time::UtcOffset::UTC),
            1_699_920_000_000
        );
    }
}
