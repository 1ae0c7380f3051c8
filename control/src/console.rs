//! The operator console: a static single-page app (`control/console/`, compiled in, no
//! toolchain needed) and what it reads live: `GET /v1/overview` and the server-sent
//! events of `GET /v1/events` (an `overview` event every two seconds). Everything else
//! the console shows comes from the operator API (this control plane's, and the app's
//! through forwarding), with the operator's session cookie.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Json;
use pylon_proto::api::monitor::{AppLoad, EdgeLoad, Fleet, Overview, RouteState};
use pylon_service::routes::{Access, Routes};

use crate::cluster::MemberKind;
use crate::http::Http;
use crate::node::ControlNode;

const INDEX: &str = include_str!("../console/index.html");
const SCRIPT: &str = include_str!("../console/app.js");
const STYLE: &str = include_str!("../console/style.css");

/// How often the console's live view is pushed.
pub const OVERVIEW_EVERY: Duration = Duration::from_secs(2);

/// The page may load only its own script and style, and talk only to this origin.
const POLICY: &str = "default-src 'self'; style-src 'self'; script-src 'self'; \
                      img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; \
                      base-uri 'none'; form-action 'self'";

pub fn routes(routes: Routes<Http>) -> Routes<Http> {
    use pylon_proto::auth::Permission::Read;
    routes
        .get("/", Access::Public, to_console)
        .get("/console", Access::Public, to_console)
        .get("/console/", Access::Public, index)
        .get("/console/app.js", Access::Public, script)
        .get("/console/style.css", Access::Public, style)
        .get("/v1/overview", Access::Needs(Read), overview)
        .get("/v1/events", Access::Needs(Read), events)
}

async fn to_console() -> Redirect {
    Redirect::to("/console/")
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX)
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

/// How long the fleet's numbers are shared between consoles before they are asked again.
const FLEET_FRESH: Duration = Duration::from_millis(1_500);

/// The fleet's numbers last asked of an app instance (one question per
/// [`FLEET_FRESH`], however many consoles are open).
#[derive(Default)]
pub struct FleetCache(std::sync::Mutex<Option<(std::time::Instant, Fleet)>>);

impl FleetCache {
    fn fresh(&self) -> Option<Fleet> {
        let kept = self.0.lock().ok()?;
        kept.as_ref()
            .filter(|(at, _)| at.elapsed() < FLEET_FRESH)
            .map(|(_, fleet)| fleet.clone())
    }

    fn keep(&self, fleet: &Fleet) {
        if let Ok(mut kept) = self.0.lock() {
            *kept = Some((std::time::Instant::now(), fleet.clone()));
        }
    }
}

/// The overview from what this replica knows (edges, apps, routes) and the fleet's
/// numbers from an app instance, asked with the caller's credentials (or shared, when
/// fresh: the caller was authenticated by this replica already).
async fn overview_for(s: &Http, parts: &axum::http::request::Parts) -> Result<Overview, Response> {
    let fleet = match s.fleet_cache().fresh() {
        Some(fleet) => fleet,
        None => {
            let fleet = crate::forward::fleet(s.node(), parts).await?;
            s.fleet_cache().keep(&fleet);
            fleet
        }
    };
    Ok(compose(s.node(), fleet))
}

fn compose(node: &ControlNode, mut fleet: Fleet) -> Overview {
    let view = node.view.load();
    let mut heartbeats = 0;
    let edges = crate::http::edge_infos(node)
        .into_iter()
        .map(|e| {
            // The telemetry (every 30 s, exact) when there is some; else the load record
            // (written only on changes of 1 % of capacity).
            let telemetry = view.state.telemetry(MemberKind::Edge, &e.id);
            heartbeats += telemetry.as_ref().map_or(0, |t| t.heartbeats_per_min);
            let executors: Vec<u64> = telemetry
                .map(|t| t.executors.into_iter().map(u64::from).collect())
                .unwrap_or_default();
            EdgeLoad {
                id: e.id,
                sessions: if executors.is_empty() {
                    u64::from(e.sessions)
                } else {
                    executors.iter().sum()
                },
                executors,
                draining: e.draining,
                live: e.live,
            }
        })
        .collect();
    fleet.per_minute.heartbeats = heartbeats;
    let apps = crate::http::app_infos(node)
        .into_iter()
        .map(|a| AppLoad {
            id: a.id,
            shards: u64::from(a.shards),
            sessions: u64::from(a.sessions),
        })
        .collect();
    Overview {
        at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64),
        piles: fleet.piles,
        alarms: fleet.alarms,
        today: fleet.today,
        per_minute: fleet.per_minute,
        edges,
        apps,
        routes: RouteState {
            version: node.publisher.table().version,
        },
    }
}

async fn overview(State(s): State<Http>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    match overview_for(&s, &parts).await {
        Ok(overview) => Json(overview).into_response(),
        Err(refusal) => refusal,
    }
}

/// `overview` events every [`OVERVIEW_EVERY`]; the stream ends when the caller's
/// credentials are refused (a session that expired, a revoked token).
async fn events(State(s): State<Http>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    // Refused at once: the browser's EventSource then stops, and the console asks the
    // operator to log in again.
    let first = match overview_for(&s, &parts).await {
        Ok(overview) => overview,
        Err(refusal) => return refusal,
    };
    let stream = overview_stream(s, parts, first);
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

fn overview_event(overview: &Overview) -> Option<Event> {
    match Event::default().event("overview").json_data(overview) {
        Ok(event) => Some(event),
        Err(e) => {
            tracing::warn!("cannot encode the overview: {e}");
            None
        }
    }
}

fn overview_stream(
    s: Http,
    parts: axum::http::request::Parts,
    first: Overview,
) -> impl tokio_stream::Stream<Item = Result<Event, Infallible>> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Event, Infallible>>(2);
    tokio::spawn(async move {
        if let Some(event) = overview_event(&first) {
            if tx.send(Ok(event)).await.is_err() {
                return;
            }
        }
        let mut tick = tokio::time::interval(OVERVIEW_EVERY);
        tick.tick().await;
        loop {
            tick.tick().await;
            // The caller still is who they were (a session can expire or be revoked).
            if s.node()
                .auth
                .authenticate(&parts.method, &parts.headers)
                .await
                .is_err()
            {
                return;
            }
            let event = match overview_for(&s, &parts).await {
                Ok(overview) => match overview_event(&overview) {
                    Some(event) => event,
                    None => continue,
                },
                Err(refusal) => {
                    let status = refusal.status();
                    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                        return;
                    }
                    // The fleet is unreachable for now: say so, keep the stream.
                    Event::default()
                        .event("unavailable")
                        .data(status.as_u16().to_string())
                }
            };
            // The browser went away.
            if tx.send(Ok(event)).await.is_err() {
                return;
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}
