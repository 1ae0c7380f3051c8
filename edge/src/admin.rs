//! The admin HTTP server: `/metrics`, `/healthz`, `/readyz` for anyone; `/v1/status`,
//! `/v1/downlink` and `/v1/guard` for operators whose token holds the route's permission
//! ([`routes`]), every change recorded in the cluster's audit log. It runs on a small tokio runtime on its own thread.
//! The request and reply types are `pylon_proto::api::edge`'s, shared with `pylonctl`.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use prometheus_client::registry::Registry;
use pylon_proto::api::edge::{
    BlockRequest, BlockedReply, DownlinkRequest, EdgeState, EdgeStatusReply, GuardStatus,
    PerTransport, UnblockedReply,
};
use pylon_proto::ykc::{Frame, FrameType, PileNo};
use pylon_service::audit::Auditor;
use pylon_service::auth::Authenticator;
use pylon_service::http::error;
use pylon_service::routes::{Access, Routes};

use crate::executor::{DownlinkOutcome, EdgeShared, ExecutorHandle, RUNNING};

#[derive(Clone)]
pub struct AdminState {
    shared: Arc<EdgeShared>,
    registry: Arc<Registry>,
    downlink: ExecutorHandle,
}

/// A task for the control thread's runtime (the control-plane link, the business router).
pub type Background = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// Starts the admin server on its own thread, with `background` tasks beside it; returns
/// once it is listening.
pub fn start(
    addr: SocketAddr,
    shared: Arc<EdgeShared>,
    mut registry: Registry,
    downlink: ExecutorHandle,
    background: Vec<Background>,
) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(addr))
        .map_err(|e| anyhow::anyhow!("admin server cannot listen on {addr}: {e}"))?;
    // The token checks and the audit writer talk to the control plane from this runtime.
    let (auth, auditor) = {
        let _entered = runtime.enter();
        let config = &shared.config;
        if let Some(tls) = pylon_service::tls::ClusterTls::install(&config.cluster_tls)? {
            tls.register(&mut registry);
        }
        let auth = Authenticator::for_member(
            config.admin_token.clone(),
            &config.control.endpoints,
            config.control.token.clone(),
            config.insecure_dev,
        )?;
        let auditor = Auditor::for_member(
            format!("edge:{}", config.edge_id),
            &config.control.endpoints,
            config.control.token.clone(),
        )?;
        (Arc::new(auth), Arc::new(auditor))
    };
    auth.register(&mut registry);
    auditor.register(&mut registry);
    let state = AdminState {
        shared,
        registry: Arc::new(registry),
        downlink,
    };
    let app = routes().into_router(auth, Some(auditor)).with_state(state);
    tracing::info!(%addr, "admin server listening");
    Ok(std::thread::Builder::new()
        .name("edge-admin".into())
        .spawn(move || {
            let served = runtime.block_on(async {
                for task in background {
                    tokio::spawn(task);
                }
                pylon_service::tls::serve_http(listener, app, std::future::pending()).await
            });
            if let Err(e) = served {
                tracing::error!("admin server stopped: {e}");
            }
        })?)
}

/// Every route of the admin API, with who may call it.
pub fn routes() -> Routes<AdminState> {
    use pylon_proto::auth::Permission::{Command, Drain, Read};
    Routes::new()
        .get("/metrics", Access::Public, metrics)
        .get("/healthz", Access::Public, pylon_service::health::healthz)
        .get("/readyz", Access::Public, readyz)
        .get("/v1/status", Access::Needs(Read), status)
        .post("/v1/downlink", Access::Needs(Command), send_downlink)
        .get("/v1/guard", Access::Needs(Read), guard_status)
        .post("/v1/guard/blocklist", Access::Needs(Drain), guard_block)
        .delete(
            "/v1/guard/blocklist/{source}",
            Access::Needs(Drain),
            guard_unblock,
        )
}

async fn metrics(State(s): State<AdminState>) -> Response {
    if let Some(selectors) = &s.shared.selectors {
        for (transport, selections) in ["tcp", "tls"].into_iter().zip(selectors.selections()) {
            let Some(sel) = selections else { continue };
            for (outcome, n) in [("by_cpu", sel.by_cpu), ("fallback", sel.fallback)] {
                s.shared
                    .metrics
                    .ebpf_selections
                    .get_or_create(&crate::metrics::EbpfLabel {
                        transport: transport.into(),
                        outcome: outcome.into(),
                    })
                    .set(n as i64);
            }
        }
    }
    if let Some(spreader) = &s.shared.cpu_spreader {
        for (cpu, n) in spreader.sent().into_iter().enumerate() {
            s.shared
                .metrics
                .xdp_spread_syns
                .get_or_create(&crate::metrics::CpuLabel {
                    cpu: cpu.to_string(),
                })
                .set(n as i64);
        }
    }
    if let Some(tcp) = &s.shared.tcp_metrics {
        let counts = tcp.counts();
        s.shared
            .metrics
            .tcp_retransmits
            .set(counts.retransmits as i64);
        for (state, n) in counts.entered {
            s.shared
                .metrics
                .tcp_state_entries
                .get_or_create(&crate::metrics::StateLabel {
                    state: state.into(),
                })
                .set(n as i64);
        }
    }
    if let Some(guard) = &s.shared.syn_guard {
        let counts = guard.lock().unwrap_or_else(|p| p.into_inner()).counts();
        for (verdict, n) in [
            ("passed", counts.passed),
            ("dropped_rate", counts.dropped_rate),
            ("dropped_blocked", counts.dropped_blocked),
        ] {
            s.shared
                .metrics
                .syn_guard
                .get_or_create(&crate::metrics::VerdictLabel {
                    verdict: verdict.into(),
                })
                .set(n as i64);
        }
    }
    pylon_service::health::metrics(&s.registry)
}

async fn readyz(State(s): State<AdminState>) -> Response {
    let taking_work = s.shared.state.load(Ordering::Relaxed) == RUNNING
        && !s.shared.operator_drain.load(Ordering::Relaxed);
    pylon_service::health::readiness(if taking_work { Ok(()) } else { Err("draining") })
}

async fn status(State(s): State<AdminState>) -> Json<EdgeStatusReply> {
    let m = &s.shared.metrics;
    let executors = s.shared.config.executor_count();
    let sum = |family: &prometheus_client::metrics::family::Family<
        crate::metrics::ExecTransport,
        prometheus_client::metrics::gauge::Gauge,
    >,
               transport: &str| {
        (0..executors)
            .map(|i| {
                family
                    .get_or_create(&crate::metrics::ExecTransport {
                        executor: i.to_string(),
                        transport: transport.into(),
                    })
                    .get()
            })
            .sum::<i64>()
    };
    let per_transport = |family| PerTransport {
        tcp: sum(family, "tcp"),
        tls: sum(family, "tls"),
    };
    let state = match s.shared.state.load(Ordering::Relaxed) {
        RUNNING if s.shared.operator_drain.load(Ordering::Relaxed) => EdgeState::Draining,
        RUNNING => EdgeState::Running,
        crate::executor::DRAINING => EdgeState::Draining,
        _ => EdgeState::Stopping,
    };
    Json(EdgeStatusReply {
        connections: per_transport(&m.connections),
        control_connected: m.control_connected.get() == 1,
        edge_id: s.shared.edge_id.to_string(),
        executors: u32::try_from(executors).unwrap_or(u32::MAX),
        heartbeats: m.heartbeats.get(),
        // A version is never negative; the gauge is signed.
        route_version: u64::try_from(m.route_version.get()).unwrap_or(0),
        sessions: per_transport(&m.sessions),
        state,
    })
}

async fn send_downlink(State(s): State<AdminState>, body: axum::body::Bytes) -> Response {
    let bad = |msg: String| error(StatusCode::BAD_REQUEST, "bad_request", msg);
    let req: DownlinkRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return bad(format!("request body: {e}")),
    };
    let pile = match PileNo::parse(&req.pile) {
        Ok(p) => p,
        Err(e) => return bad(format!("pile: {e}")),
    };
    let Some(ft) = FrameType::lookup(&req.frame_type) else {
        return bad(format!("unknown frame type {:?}", req.frame_type));
    };
    let frame = match Frame::from_fields_json(ft.code, req.fields) {
        Ok(f) => f,
        Err(e) => return bad(format!("fields of {}: {e}", ft.name)),
    };
    let outcome = s.downlink.send(pile, frame).await;
    let status = match outcome {
        DownlinkOutcome::Queued { .. } => StatusCode::OK,
        DownlinkOutcome::NotConnected => StatusCode::NOT_FOUND,
        DownlinkOutcome::Failed { .. } => StatusCode::SERVICE_UNAVAILABLE,
    };
    if outcome == DownlinkOutcome::NotConnected {
        s.shared
            .metrics
            .downlinks
            .get_or_create(&crate::metrics::ResultLabel {
                result: "not_connected".into(),
            })
            .inc();
    }
    (status, Json(outcome)).into_response()
}

fn no_guard() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "no_guard",
        "this edge runs without the SYN-flood guard (start it with --syn-guard <interface>)",
    )
}

async fn guard_status(State(s): State<AdminState>) -> Response {
    let Some(guard) = &s.shared.syn_guard else {
        return no_guard();
    };
    let guard = guard.lock().unwrap_or_else(|p| p.into_inner());
    let counts = guard.counts();
    Json(GuardStatus {
        blocklist: guard.blocked().iter().map(|a| a.to_string()).collect(),
        dropped_blocked: counts.dropped_blocked,
        dropped_rate: counts.dropped_rate,
        passed: counts.passed,
    })
    .into_response()
}

// The error is the ready-made answer; its size does not matter here.
#[allow(clippy::result_large_err)]
fn parse_source(text: &str) -> Result<std::net::Ipv4Addr, Response> {
    text.parse().map_err(|_| {
        error(
            StatusCode::BAD_REQUEST,
            "bad_source",
            format!("{text:?} is not an IPv4 address"),
        )
    })
}

async fn guard_block(State(s): State<AdminState>, body: axum::body::Bytes) -> Response {
    let Some(guard) = &s.shared.syn_guard else {
        return no_guard();
    };
    let request: BlockRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad_request", e.to_string()),
    };
    let source = match parse_source(&request.source) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let result = guard
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .block(source);
    match result {
        Ok(()) => {
            tracing::info!(%source, "source blocklisted");
            Json(BlockedReply {
                blocked: source.to_string(),
            })
            .into_response()
        }
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "guard_failed",
            e.to_string(),
        ),
    }
}

async fn guard_unblock(
    State(s): State<AdminState>,
    axum::extract::Path(source): axum::extract::Path<String>,
) -> Response {
    let Some(guard) = &s.shared.syn_guard else {
        return no_guard();
    };
    let source = match parse_source(&source) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let result = guard
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .unblock(source);
    match result {
        Ok(()) => {
            tracing::info!(%source, "source taken off the blocklist");
            Json(UnblockedReply {
                unblocked: source.to_string(),
            })
            .into_response()
        }
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "guard_failed",
            e.to_string(),
        ),
    }
}
