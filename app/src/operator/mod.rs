//! The operator API (HTTP/JSON; operators' tokens, each route with the permission it
//! needs: [`routes`]), plus
//! `/metrics`, `/healthz` and `/readyz`.
//!
//! - `GET  /v1/piles?after=&limit=`                  piles, by number
//! - `POST /v1/piles`                                 add or change piles (a JSON list)
//! - `GET  /v1/piles/{pile}`                          pile, connection, guns, open orders
//! - `PUT  /v1/piles/{pile}`                          add or change one pile
//! - `GET  /v1/piles/{pile}/records?from=&to=&limit=` transaction records, newest first
//! - `GET  /v1/piles/{pile}/history?gun=&from=&to=`   status changes of a gun
//! - `POST /v1/piles/{pile}/commands`                 any command `{type, fields}`; waits for the reply
//! - `GET  /v1/orders?pile=&from=&to=`                open orders (all, or one pile's history)
//! - `GET  /v1/orders?recent|open&before=&limit=`    every pile's newest (or open) orders
//! - `GET  /v1/orders/{trade_no}`                     an order and its events
//! - `POST /v1/orders/{trade_no}/stop`                remote stop
//! - `GET  /v1/records/{trade_no}`                    one transaction record
//! - `GET|PUT /v1/billing-models/{n}`                 billing models
//! - `GET  /v1/stats`                                 records stored, piles and edges connected
//!
//! - the revenue side (stations, tariffs, accounts, wallets, reports): [`revenue`]
//!
//! Times are Unix milliseconds; amounts and energies the protocol's integers. The request
//! and reply types are `pylon_proto::api::app`'s and `::revenue`'s, shared with `pylonctl`.

// Handlers answer errors as ready-made responses; their size does not matter here.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use prometheus_client::registry::Registry as MetricsRegistry;
use pylon_proto::api::app::{
    CommandReply, CommandRequest, OrderDetail, PileDetail, PileInput, PileLocation, StatsReply,
    UpsertedReply,
};
use pylon_proto::ykc::{Frame, FrameType, PileNo};
use pylon_service::audit::Auditor;
use pylon_service::auth::Authenticator;
use pylon_service::routes::{Access, Routes};
use serde_json::{json, Value};

use crate::business::{Business, CommandError};
use crate::directory::SendError;
use crate::store::{BillingModel, Pile, StoreError};

mod ciphers;
mod monitor;
mod privacy;
mod revenue;

#[derive(Clone)]
pub struct Api {
    business: Arc<Business>,
    metrics: Arc<MetricsRegistry>,
}

/// Every route of the operator API, with who may call it.
pub fn routes() -> Routes<Api> {
    use pylon_proto::auth::Permission::{Command, Finance, Read};
    let routes = Routes::new()
        .get("/metrics", Access::Public, metrics_text)
        .get("/healthz", Access::Public, pylon_service::health::healthz)
        .get("/readyz", Access::Public, readyz)
        .get("/v1/piles", Access::Needs(Read), list_piles)
        .post("/v1/piles", Access::Needs(Command), upsert_piles)
        .get("/v1/piles/{pile}", Access::Needs(Read), pile_detail)
        .put("/v1/piles/{pile}", Access::Needs(Command), upsert_pile)
        .get(
            "/v1/piles/{pile}/records",
            Access::Needs(Read),
            pile_records,
        )
        .get(
            "/v1/piles/{pile}/history",
            Access::Needs(Read),
            pile_history,
        )
        .post(
            "/v1/piles/{pile}/commands",
            Access::Needs(Command),
            send_command,
        )
        .get("/v1/orders", Access::Needs(Read), list_orders)
        .get("/v1/orders/{trade_no}", Access::Needs(Read), order_detail)
        .post(
            "/v1/orders/{trade_no}/stop",
            Access::Needs(Command),
            stop_charge,
        )
        .get("/v1/records/{trade_no}", Access::Needs(Read), record_detail)
        .get("/v1/billing-models/{n}", Access::Needs(Read), get_model)
        .put("/v1/billing-models/{n}", Access::Needs(Finance), put_model)
        .get("/v1/stats", Access::Needs(Read), stats);
    monitor::routes(privacy::routes(ciphers::routes(revenue::routes(routes))))
}

/// The operator API's router: tokens checked by `auth`, every change recorded by
/// `auditor`.
pub fn router(
    business: Arc<Business>,
    auth: Arc<Authenticator>,
    auditor: Arc<Auditor>,
    metrics: MetricsRegistry,
) -> Router {
    let api = Api {
        business,
        metrics: Arc::new(metrics),
    };
    routes().into_router(auth, Some(auditor)).with_state(api)
}

pub(crate) type ApiResult = Result<Response, Response>;

use pylon_service::http::error;

pub(crate) fn store_error(e: StoreError) -> Response {
    match e {
        StoreError::Conflict(m) => error(StatusCode::CONFLICT, "conflict", m),
        StoreError::Unavailable(m) => {
            error(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", m)
        }
        other => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "store_error",
            other.to_string(),
        ),
    }
}

pub(crate) fn command_error(e: CommandError) -> Response {
    let message = e.to_string();
    match e {
        CommandError::UnknownPile(_) => error(StatusCode::NOT_FOUND, "no_such_pile", message),
        CommandError::UnknownOrder(_) => error(StatusCode::NOT_FOUND, "no_such_order", message),
        CommandError::UnknownAccount(_) => error(StatusCode::NOT_FOUND, "no_such_account", message),
        // The spec's refusal reason, e.g. `insufficient_balance`, `frozen`.
        CommandError::Refused(reason) => error(StatusCode::CONFLICT, reason.as_str(), message),
        CommandError::DisabledPile(_) => error(StatusCode::CONFLICT, "pile_disabled", message),
        CommandError::Conflict(_) => error(StatusCode::CONFLICT, "conflict", message),
        CommandError::Send(SendError::Encode(_)) | CommandError::Invalid(_) => {
            error(StatusCode::BAD_REQUEST, "bad_request", message)
        }
        CommandError::Send(_) => error(StatusCode::CONFLICT, "not_connected", message),
        CommandError::Timeout(_) => error(StatusCode::GATEWAY_TIMEOUT, "no_reply", message),
        CommandError::Store(e) => store_error(e),
    }
}

pub(crate) fn pile_no(text: &str) -> Result<PileNo, Response> {
    if text.len() != 14 {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "bad_pile",
            format!(
                "a pile number has 14 digits; {text:?} has {}",
                text.chars().count()
            ),
        ));
    }
    PileNo::parse(text).map_err(|e| error(StatusCode::BAD_REQUEST, "bad_pile", e))
}

pub(crate) fn number<T: std::str::FromStr>(
    q: &HashMap<String, String>,
    key: &str,
    default: T,
) -> Result<T, Response> {
    match q.get(key) {
        None => Ok(default),
        Some(v) => v.parse().map_err(|_| {
            error(
                StatusCode::BAD_REQUEST,
                "bad_query",
                format!("{key}={v:?} is not a number"),
            )
        }),
    }
}

async fn metrics_text(State(api): State<Api>) -> Response {
    pylon_service::health::metrics(&api.metrics)
}

async fn readyz(State(api): State<Api>) -> Response {
    match api.business.store.record_count().await {
        Ok(_) => pylon_service::health::readiness(Ok(())),
        Err(e) => pylon_service::health::readiness(Err(&format!("store: {e}"))),
    }
}

async fn save_pile(api: &Api, pile_no_text: &str, input: PileInput) -> Result<Pile, Response> {
    pile_no(pile_no_text)?;
    let existing = api
        .business
        .store
        .pile(pile_no_text)
        .await
        .map_err(store_error)?;
    let pile = Pile {
        pile_no: pile_no_text.to_owned(),
        enabled: input.enabled,
        billing_model: input.billing_model,
        name: input.name,
        last_login_at: existing.and_then(|p| p.last_login_at),
    };
    api.business
        .store
        .upsert_pile(&pile)
        .await
        .map_err(store_error)?;
    Ok(pile)
}

async fn list_piles(State(api): State<Api>, Query(q): Query<HashMap<String, String>>) -> ApiResult {
    let limit = number(&q, "limit", 100u32)?.min(10_000);
    let piles = api
        .business
        .store
        .piles(q.get("after").map(String::as_str), limit)
        .await
        .map_err(store_error)?;
    Ok(Json(piles).into_response())
}

async fn upsert_piles(State(api): State<Api>, Json(inputs): Json<Vec<PileInput>>) -> ApiResult {
    let mut upserted: u64 = 0;
    for mut input in inputs {
        let Some(no) = input.pile_no.take() else {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "bad_pile",
                "every pile needs a pile_no",
            ));
        };
        save_pile(&api, &no, input).await?;
        upserted += 1;
    }
    Ok(Json(UpsertedReply { upserted }).into_response())
}

async fn upsert_pile(
    State(api): State<Api>,
    Path(pile): Path<String>,
    Json(input): Json<PileInput>,
) -> ApiResult {
    Ok(Json(save_pile(&api, &pile, input).await?).into_response())
}

async fn pile_detail(State(api): State<Api>, Path(pile): Path<String>) -> ApiResult {
    pile_no(&pile)?;
    let store = &api.business.store;
    let Some(record) = store.pile(&pile).await.map_err(store_error)? else {
        return Err(error(
            StatusCode::NOT_FOUND,
            "no_such_pile",
            format!("no pile {pile} is registered"),
        ));
    };
    let guns = api
        .business
        .gun_statuses(&pile)
        .await
        .map_err(store_error)?;
    let open_orders = store.open_orders(Some(&pile)).await.map_err(store_error)?;
    let online = api
        .business
        .directory
        .location(&pile)
        .map(|l| PileLocation {
            edge: l.edge.to_string(),
            executor: l.executor,
            session_id: l.session_id,
        });
    let summary = store.pile_summary(&pile).await.map_err(store_error)?;
    Ok(Json(PileDetail {
        guns,
        online,
        open_orders,
        pile: record,
        summary,
    })
    .into_response())
}

fn range(q: &HashMap<String, String>) -> Result<(i64, i64, u32), Response> {
    Ok((
        number(q, "from", 0i64)?,
        number(q, "to", i64::MAX)?,
        number(q, "limit", 100u32)?.min(10_000),
    ))
}

async fn pile_records(
    State(api): State<Api>,
    Path(pile): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult {
    pile_no(&pile)?;
    let (from, to, limit) = range(&q)?;
    let records = api
        .business
        .store
        .records(&pile, from, to, limit)
        .await
        .map_err(store_error)?;
    Ok(Json(records).into_response())
}

async fn pile_history(
    State(api): State<Api>,
    Path(pile): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult {
    pile_no(&pile)?;
    let (from, to, limit) = range(&q)?;
    let gun = q.get("gun").cloned().unwrap_or_else(|| "01".into());
    let history = api
        .business
        .store
        .status_history(&pile, &gun, from, to, limit)
        .await
        .map_err(store_error)?;
    Ok(Json(history).into_response())
}

async fn stop_charge(State(api): State<Api>, Path(trade_no): Path<String>) -> ApiResult {
    let order = api
        .business
        .stop_charge(&trade_no)
        .await
        .map_err(command_error)?;
    Ok(Json(order).into_response())
}

async fn list_orders(
    State(api): State<Api>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult {
    let store = &api.business.store;
    let (recent, open) = (q.contains_key("recent"), q.contains_key("open"));
    if recent || open {
        // Every pile's newest orders (or open ones), page by page (`before` = the last
        // one's created_at).
        let limit = number(&q, "limit", 50u32)?.clamp(1, 500);
        let before = number(&q, "before", i64::MAX)?;
        let orders = store
            .recent_orders(before, limit, open)
            .await
            .map_err(store_error)?;
        return Ok(Json(orders).into_response());
    }
    let orders = match q.get("pile") {
        Some(pile) if q.contains_key("from") || q.contains_key("to") => {
            pile_no(pile)?;
            let (from, to, limit) = range(&q)?;
            store.orders(pile, from, to, limit).await
        }
        Some(pile) => {
            pile_no(pile)?;
            store.open_orders(Some(pile)).await
        }
        None => store.open_orders(None).await,
    }
    .map_err(store_error)?;
    Ok(Json(orders).into_response())
}

async fn order_detail(State(api): State<Api>, Path(trade_no): Path<String>) -> ApiResult {
    let store = &api.business.store;
    let Some(order) = store.order(&trade_no).await.map_err(store_error)? else {
        return Err(error(
            StatusCode::NOT_FOUND,
            "no_such_order",
            format!("no order {trade_no}"),
        ));
    };
    let events = api.business.events(&trade_no).await.map_err(store_error)?;
    let record = store.record(&trade_no).await.map_err(store_error)?;
    Ok(Json(OrderDetail {
        events,
        order,
        record,
    })
    .into_response())
}

async fn record_detail(State(api): State<Api>, Path(trade_no): Path<String>) -> ApiResult {
    match api
        .business
        .store
        .record(&trade_no)
        .await
        .map_err(store_error)?
    {
        Some(record) => Ok(Json(record).into_response()),
        None => Err(error(
            StatusCode::NOT_FOUND,
            "no_such_record",
            format!("no record {trade_no}"),
        )),
    }
}

async fn stats(State(api): State<Api>) -> ApiResult {
    let records = api
        .business
        .store
        .record_count()
        .await
        .map_err(store_error)?;
    let directory = &api.business.directory;
    Ok(Json(StatsReply {
        edges: directory.edge_count() as u64,
        piles_online: directory.online_count() as u64,
        records,
        store: api.business.store.backend().to_owned(),
    })
    .into_response())
}

async fn get_model(State(api): State<Api>, Path(n): Path<u16>) -> ApiResult {
    match api
        .business
        .store
        .billing_model(n)
        .await
        .map_err(store_error)?
    {
        Some(model) => Ok(Json(model).into_response()),
        None => Err(error(
            StatusCode::NOT_FOUND,
            "no_such_model",
            format!("no billing model {n}"),
        )),
    }
}

async fn put_model(
    State(api): State<Api>,
    Path(n): Path<u16>,
    Json(fields): Json<Value>,
) -> ApiResult {
    // Checked by building the frame it will become.
    let mut probe = fields.clone();
    if let Value::Object(map) = &mut probe {
        map.insert("pile_no".into(), json!("00000000000000"));
        map.insert("billing_model_no".into(), json!(format!("{n:04}")));
    }
    if let Err(e) = Frame::from_fields_json(0x0A, probe) {
        return Err(error(StatusCode::BAD_REQUEST, "bad_model", e));
    }
    let model = BillingModel {
        model_no: n,
        fields,
        updated_at: api.business.now_ms(),
    };
    api.business
        .store
        .upsert_billing_model(&model)
        .await
        .map_err(store_error)?;
    Ok(Json(model).into_response())
}

/// The frame a pile answers a command with.
fn reply_type(command: u8) -> Option<u8> {
    Some(match command {
        0x12 => 0x13,
        0x42 => 0x41,
        0x44 => 0x43,
        0x46 => 0x45,
        0x48 => 0x47,
        0x52 => 0x51,
        0x56 => 0x55,
        0x58 => 0x57,
        0x62 => 0x63,
        0x92 => 0x91,
        0x94 => 0x93,
        0xA4 => 0xA3,
        _ => return None,
    })
}

async fn send_command(
    State(api): State<Api>,
    Path(pile): Path<String>,
    Json(request): Json<CommandRequest>,
) -> ApiResult {
    pile_no(&pile)?;
    let Some(frame_type) = FrameType::lookup(&request.frame_type) else {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "bad_type",
            format!("no frame type {:?}", request.frame_type),
        ));
    };
    let code = frame_type.code;
    let Some(reply) = reply_type(code) else {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "not_a_command",
            format!("{} ({code:#04x}) is not a command an operator sends; use /charge or /orders/{{trade_no}}/stop for charging", frame_type.name),
        ));
    };
    let mut fields = match request.fields {
        Value::Null => json!({}),
        v => v,
    };
    if let Value::Object(map) = &mut fields {
        map.insert("pile_no".into(), json!(pile));
        if code == 0x56 && !map.contains_key("current_time") {
            let now = crate::clock::to_cp56(api.business.now_ms(), api.business.offset);
            map.insert(
                "current_time".into(),
                serde_json::to_value(now).unwrap_or(Value::Null),
            );
        }
    }
    let frame = Frame::from_fields_json(code, fields)
        .map_err(|e| error(StatusCode::BAD_REQUEST, "bad_fields", e))?;
    let limit = Duration::from_secs(request.timeout_secs.clamp(1, 120));
    let answer = api
        .business
        .command(&pile, frame, reply, limit)
        .await
        .map_err(command_error)?;
    Ok(Json(CommandReply {
        fields: answer.fields_json(),
        reply: answer.name().to_owned(),
    })
    .into_response())
}

#[cfg(test)]
mod route_table {
    use pylon_proto::api::app_routes::OPERATOR_ROUTES;
    use pylon_service::routes::Access;

    /// The control plane forwards operators' calls by `OPERATOR_ROUTES`: the app must
    /// declare exactly those, with the same permissions.
    #[test]
    fn the_declared_routes_are_the_shared_table() {
        let mut declared: Vec<(String, &str, Access)> = super::routes()
            .declared()
            .into_iter()
            .filter(|d| d.access != Access::Public)
            .map(|d| (d.method.to_string(), d.path, d.access))
            .collect();
        let mut table: Vec<(String, &str, Access)> = OPERATOR_ROUTES
            .iter()
            .map(|r| (r.method.to_owned(), r.path, Access::Needs(r.permission)))
            .collect();
        declared.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        table.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        assert_eq!(declared, table);
    }
}
