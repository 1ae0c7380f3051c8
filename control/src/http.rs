//! The HTTP side: entry-address dispatch for chargers, the admin API for `pylonctl`,
//! and `/metrics`, `/healthz`, `/readyz`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json, Router};
use prometheus_client::registry::Registry as MetricsRegistry;
use pylon_proto::routes::shard_of;
use pylon_proto::ykc::PileNo;

use crate::api::{
    AppInfo, EdgeInfo, EntryReply, PileShardReply, ReplicaInfo, ShardMapReply, StatusReply,
    SubscriberInfo, Transport,
};
use crate::cluster::{edge_settings_key, EdgeSettings, MemberKind};
use crate::dispatch;
use crate::metrics::result;
use crate::node::ControlNode;
use pylon_service::audit::Action;
use pylon_service::routes::{Access, Caller, Routes};

/// The HTTP server's state.
#[derive(Clone)]
pub struct Http {
    node: Arc<ControlNode>,
    metrics: Arc<MetricsRegistry>,
    /// The fleet's numbers last asked of an app instance, shared by every console.
    fleet: Arc<crate::console::FleetCache>,
}

impl Http {
    pub(crate) fn node(&self) -> &ControlNode {
        &self.node
    }

    pub(crate) fn fleet_cache(&self) -> &crate::console::FleetCache {
        &self.fleet
    }
}

impl axum::extract::FromRef<Http> for Arc<ControlNode> {
    fn from_ref(http: &Http) -> Arc<ControlNode> {
        http.node.clone()
    }
}

/// Every route of the control plane's HTTP API, with who may call it.
pub fn routes() -> Routes<Http> {
    use pylon_proto::auth::Permission::{Admin, Drain, Read};
    let routes = Routes::new()
        .get("/v1/entry", Access::Public, entry)
        .get("/metrics", Access::Public, metrics_text)
        .get("/healthz", Access::Public, pylon_service::health::healthz)
        .get("/readyz", Access::Public, readyz)
        .get("/v1/admin/status", Access::Needs(Read), status)
        .get("/v1/admin/edges", Access::Needs(Read), edges)
        .post("/v1/admin/edges/{id}/drain", Access::Needs(Drain), drain)
        .post(
            "/v1/admin/edges/{id}/undrain",
            Access::Needs(Drain),
            undrain,
        )
        .get("/v1/admin/apps", Access::Needs(Read), apps)
        .get("/v1/admin/shards", Access::Needs(Read), shards)
        .get("/v1/admin/routes", Access::Needs(Read), routes_table)
        .get("/v1/admin/audit", Access::Needs(Admin), audit_list)
        .get("/v1/admin/audit/verify", Access::Needs(Admin), audit_verify);
    crate::dr::routes(crate::console::routes(crate::forward::routes(
        crate::identity::http::routes(routes),
    )))
}

pub fn router(node: Arc<ControlNode>, metrics: MetricsRegistry) -> Router {
    let auth = node.auth.clone();
    let state = Http {
        node,
        metrics: Arc::new(metrics),
        fleet: Arc::default(),
    };
    routes()
        .into_router(auth, None)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::dr::refuse_identity_changes_on_a_standby,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), count_admin))
        .with_state(state)
}

use pylon_service::http::error;

async fn entry(State(s): State<Http>, Query(query): Query<HashMap<String, String>>) -> Response {
    let started = Instant::now();
    let node = &s.node;
    let count = |r: &str| {
        node.metrics
            .dispatch_requests
            .get_or_create(&result(r))
            .inc()
    };
    let Some(pile_text) = query.get("pile") else {
        count("bad_request");
        return error(
            StatusCode::BAD_REQUEST,
            "bad_pile",
            "missing ?pile=<14-digit pile number>",
        );
    };
    let pile = match parse_pile(pile_text) {
        Ok(p) => p,
        Err(message) => {
            count("bad_request");
            return error(StatusCode::BAD_REQUEST, "bad_pile", message);
        }
    };
    let asked = match query.get("transport").map(String::as_str) {
        None => None,
        Some("tcp") => Some(Transport::Tcp),
        Some("tls") => Some(Transport::Tls),
        Some(other) => {
            count("bad_request");
            return error(
                StatusCode::BAD_REQUEST,
                "bad_transport",
                format!("transport must be tcp or tls, not {other:?}"),
            );
        }
    };
    // A disaster-recovery standby sends chargers nowhere: they go on to the next
    // dispatch address they know, the primary site's.
    if !node.dr.takes_chargers() {
        count("standby_site");
        let mut r = error(
            StatusCode::SERVICE_UNAVAILABLE,
            "standby_site",
            "this site is a disaster-recovery standby and takes no chargers; ask the primary site",
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        return r;
    }
    let view = node.view.load();
    let backups = node.config.dispatch_backups;
    let number = pile.to_u64();
    // Without a preference, TLS where any edge offers it.
    let choice = match asked {
        Some(t) => dispatch::choose(number, &view.candidates, t, backups).map(|c| (t, c)),
        None => dispatch::choose(number, &view.candidates, Transport::Tls, backups)
            .map(|c| (Transport::Tls, c))
            .or_else(|| {
                dispatch::choose(number, &view.candidates, Transport::Tcp, backups)
                    .map(|c| (Transport::Tcp, c))
            }),
    };
    let response = match choice {
        Some((transport, choice)) => {
            count("ok");
            Json(EntryReply {
                pile: pile_text.clone(),
                transport,
                primary: choice.primary,
                backups: choice.backups,
                ttl_seconds: node.config.dispatch_ttl_secs,
            })
            .into_response()
        }
        None => {
            count("no_edge");
            let mut r = error(
                StatusCode::SERVICE_UNAVAILABLE,
                "no_edge",
                "no live edge can take this pile now; retry later",
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            r
        }
    };
    node.metrics
        .dispatch_seconds
        .observe(started.elapsed().as_secs_f64());
    response
}

fn parse_pile(text: &str) -> Result<PileNo, String> {
    if text.len() != 14 {
        return Err(format!(
            "a pile number has 14 digits; {text:?} has {}",
            text.chars().count()
        ));
    }
    PileNo::parse(text).map_err(|e| format!("pile {text:?}: {e}"))
}

async fn metrics_text(State(s): State<Http>) -> Response {
    s.node.update_lag_metrics();
    pylon_service::health::metrics(&s.metrics)
}

async fn readyz(State(s): State<Http>) -> Response {
    pylon_service::health::readiness(if s.node.is_ready() {
        Ok(())
    } else {
        Err("registry not reachable")
    })
}

/// Counts the answers of the admin API by result.
async fn count_admin(State(s): State<Http>, request: Request, next: Next) -> Response {
    let admin = request.uri().path().starts_with("/v1/admin/");
    let response = next.run(request).await;
    if admin {
        let outcome = match response.status() {
            s if s.is_success() => "ok",
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => "unauthorized",
            StatusCode::NOT_FOUND => "not_found",
            s if s.is_client_error() => "bad_request",
            _ => "error",
        };
        s.node
            .metrics
            .admin_requests
            .get_or_create(&result(outcome))
            .inc();
    }
    response
}

async fn audit_list(State(s): State<Http>, Query(q): Query<HashMap<String, String>>) -> Response {
    let after = q.get("after").and_then(|v| v.parse().ok()).unwrap_or(0u64);
    let limit = q
        .get("limit")
        .and_then(|v| v.parse().ok())
        .unwrap_or(100usize)
        .min(10_000);
    match s.node.audit.list(after, limit).await {
        Ok(entries) => Json(entries).into_response(),
        Err(e) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "audit_unavailable",
            e.to_string(),
        ),
    }
}

async fn audit_verify(State(s): State<Http>) -> Response {
    match s.node.audit.check().await {
        Ok(check) => Json(check).into_response(),
        Err(e) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "audit_unavailable",
            e.to_string(),
        ),
    }
}

async fn status(State(s): State<Http>) -> Json<StatusReply> {
    let node = &s.node;
    let view = node.view.load();
    let table = node.publisher.table();
    Json(StatusReply {
        replica: node.config.replica_id.clone(),
        leader: view.state.leader(),
        leader_term: view.state.leader_term(),
        backend: node.registry.backend().into(),
        registry_ok: node.is_ready(),
        grpc_address: node.config.grpc_address(),
        route_version: table.version,
        edges_live: table.edges.len() as u32,
        edges_draining: table.edges.iter().filter(|e| e.draining).count() as u32,
        apps_live: table.apps.len() as u32,
        shard_count: table.shard_count,
        shards_unowned: table
            .shards
            .iter()
            .filter(|&&o| o == pylon_proto::routes::NO_OWNER)
            .count() as u32,
        subscribers: node
            .publisher
            .lags()
            .into_iter()
            .map(|l| SubscriberInfo {
                id: l.name,
                applied_version: l.applied,
                lag_seconds: l.seconds,
            })
            .collect(),
        replicas: replica_infos(&view.state),
    })
}

pub(crate) fn edge_infos(node: &ControlNode) -> Vec<EdgeInfo> {
    let view = node.view.load();
    let state = &view.state;
    let mut edges: BTreeMap<String, EdgeInfo> = state
        .members(MemberKind::Edge)
        .into_iter()
        .map(|m| {
            let info = EdgeInfo {
                draining: state.edge_settings(&m.record.id).draining,
                id: m.record.id.clone(),
                tcp_address: m.record.tcp_address,
                tls_address: m.record.tls_address,
                capacity: m.record.capacity,
                sessions: m.load.sessions,
                leaving: m.load.leaving,
                live: true,
                version: m.record.version,
                registration: m.record.lease,
            };
            (m.record.id, info)
        })
        .collect();
    // Drained edges that are down still show, so an operator can undrain them.
    for id in state.drained_edges() {
        edges.entry(id.clone()).or_insert(EdgeInfo {
            id,
            tcp_address: String::new(),
            tls_address: String::new(),
            capacity: 0,
            sessions: 0,
            draining: true,
            leaving: false,
            live: false,
            version: String::new(),
            registration: 0,
        });
    }
    edges.into_values().collect()
}

async fn edges(State(s): State<Http>) -> Json<Vec<EdgeInfo>> {
    Json(edge_infos(&s.node))
}

async fn drain(
    State(s): State<Http>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    set_draining(&s.node, &caller, id, true).await
}

async fn undrain(
    State(s): State<Http>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    set_draining(&s.node, &caller, id, false).await
}

async fn set_draining(node: &ControlNode, caller: &Caller, id: String, draining: bool) -> Response {
    let was_draining = node.view.load().state.edge_settings(&id).draining;
    let known = node
        .view
        .load()
        .state
        .member(MemberKind::Edge, &id)
        .is_some()
        || node.view.load().state.edge_settings(&id).draining;
    if !known {
        return error(
            StatusCode::NOT_FOUND,
            "no_such_edge",
            format!("no edge named {id:?} is registered"),
        );
    }
    let key = edge_settings_key(&id);
    let result = if draining {
        let value = serde_json::to_vec(&EdgeSettings { draining }).unwrap_or_default();
        node.registry.put(&key, value, None).await.map(drop)
    } else {
        node.registry.delete(&key).await
    };
    if let Err(e) = result {
        let e = node.registry_error("edge_settings", e);
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "registry_unavailable",
            e.to_string(),
        );
    }
    tracing::info!(edge = %id, draining, "edge drain flag set by an operator");
    let action = Action {
        action: if draining {
            "edges.drain"
        } else {
            "edges.undrain"
        },
        target: &id,
        before: Some(serde_json::json!({ "draining": was_draining })),
        after: Some(serde_json::json!({ "draining": draining })),
    };
    node.auditor.record(caller, action).await;
    // Answer with what was written, which the mirror may not have seen yet.
    let mut info = edge_infos(node)
        .into_iter()
        .find(|e| e.id == id)
        .unwrap_or(EdgeInfo {
            id: id.clone(),
            tcp_address: String::new(),
            tls_address: String::new(),
            capacity: 0,
            sessions: 0,
            draining,
            leaving: false,
            live: false,
            version: String::new(),
            registration: 0,
        });
    info.draining = draining;
    Json(info).into_response()
}

fn replica_infos(state: &crate::cluster::ClusterState) -> Vec<ReplicaInfo> {
    let leader = state.leader();
    state
        .replicas()
        .into_iter()
        .map(|r| ReplicaInfo {
            leader: leader.as_deref() == Some(r.id.as_str()),
            id: r.id,
            http_address: r.http_address,
            grpc_address: r.grpc_address,
            version: r.version,
            registration: r.lease,
        })
        .collect()
}

async fn apps(State(s): State<Http>) -> Json<Vec<AppInfo>> {
    Json(app_infos(&s.node))
}

pub(crate) fn app_infos(node: &ControlNode) -> Vec<AppInfo> {
    let view = node.view.load();
    let owners = view.state.shard_owners(node.config.shard_count);
    view.state
        .members(MemberKind::App)
        .into_iter()
        .map(|m| AppInfo {
            shards: owners
                .iter()
                .filter(|o| o.as_deref() == Some(m.record.id.as_str()))
                .count() as u32,
            id: m.record.id,
            grpc_address: m.record.grpc_address,
            http_address: m.record.http_address,
            capacity: m.record.capacity,
            sessions: m.load.sessions,
            leaving: m.load.leaving,
            version: m.record.version,
            registration: m.record.lease,
        })
        .collect()
}

async fn shards(State(s): State<Http>, Query(query): Query<HashMap<String, String>>) -> Response {
    let table = s.node.publisher.table();
    if let Some(text) = query.get("pile") {
        let pile = match parse_pile(text) {
            Ok(p) => p,
            Err(message) => return error(StatusCode::BAD_REQUEST, "bad_pile", message),
        };
        let shard = shard_of(&pile, table.shard_count);
        let owner = table.shard_owner(shard);
        return Json(PileShardReply {
            pile: text.clone(),
            shard,
            owner: owner.map(|a| a.id.clone()),
            owner_address: owner.map(|a| a.grpc_address.clone()),
        })
        .into_response();
    }
    let owners: Vec<Option<String>> = table
        .shard_owner_ids()
        .into_iter()
        .map(|o| o.map(str::to_owned))
        .collect();
    let mut per_app = BTreeMap::new();
    for owner in owners.iter().flatten() {
        *per_app.entry(owner.clone()).or_insert(0u32) += 1;
    }
    Json(ShardMapReply {
        shard_count: table.shard_count,
        unowned: owners.iter().filter(|o| o.is_none()).count() as u32,
        per_app,
        owners,
    })
    .into_response()
}

async fn routes_table(State(s): State<Http>) -> Response {
    Json(s.node.publisher.table().as_ref().clone()).into_response()
}
