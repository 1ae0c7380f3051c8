//! The app service's operator API through the control plane, so that an operator (and the
//! console) needs one address. Each route of [`OPERATOR_ROUTES`] is declared here with the
//! permission the app declares for it, checked here first; the call then goes to the app
//! instance that can answer it ([`Owner`]): the owner of the pile's shard for commands and
//! live status, any live instance for what the shared store holds. The app checks the
//! caller's token again and records the action in the audit log.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderName, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use pylon_proto::api::app_routes::{AppRoute, Owner, OPERATOR_ROUTES};
use pylon_proto::routes::shard_of;
use pylon_proto::ykc::PileNo;
use pylon_service::http::error;
use pylon_service::routes::{Access, Routes};

use crate::cluster::MemberKind;
use crate::http::Http;
use crate::metrics::result;
use crate::node::ControlNode;

/// A forwarded call must be answered within this.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(30);
/// Connecting to the app instance.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest request body read here (to find a pile in it); the app has its own limits.
const BODY_LIMIT: usize = 1 << 20;
/// Request headers passed on: the caller's token and what the body is. Of the cookies,
/// only Pylon's session cookie goes on (with its CSRF header).
const PASSED_ON: &[HeaderName] = &[header::AUTHORIZATION, header::CONTENT_TYPE, header::ACCEPT];
const CSRF_HEADER: &str = "x-pylon-csrf";
const SESSION_COOKIE: &str = "pylon_session";

/// `routes` with every operator route of the app service, forwarded.
pub fn routes(routes: Routes<Http>) -> Routes<Http> {
    OPERATOR_ROUTES.iter().fold(routes, |routes, route| {
        let access = Access::Needs(route.permission);
        let handler = move |State(s): State<Http>, request: Request| forward(s, route, request);
        match route.method {
            "GET" => routes.get(route.path, access, handler),
            "POST" => routes.post(route.path, access, handler),
            "PUT" => routes.put(route.path, access, handler),
            "DELETE" => routes.delete(route.path, access, handler),
            _ => routes,
        }
    })
}

async fn forward(s: Http, route: &'static AppRoute, request: Request) -> Response {
    let node = s.node();
    let count = |r: &str| node.metrics.forwards.get_or_create(&result(r)).inc();
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, BODY_LIMIT).await {
        Ok(b) => b,
        Err(_) => {
            count("bad_request");
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("the request body is over {BODY_LIMIT} bytes"),
            );
        }
    };
    if route.owner == Owner::Every {
        return stats_of_every_instance(node, &parts).await;
    }
    let base = match instance_for(node, route, parts.uri.path(), &body) {
        Ok(base) => base,
        Err((code, message)) => {
            count(code);
            return error(StatusCode::SERVICE_UNAVAILABLE, code, message);
        }
    };
    match tokio::time::timeout(FORWARD_TIMEOUT, send(&base, &parts, body)).await {
        Ok(Ok(response)) => {
            count("ok");
            response
        }
        Ok(Err(e)) => {
            count("unreachable");
            tracing::warn!(app = %base, "forwarding an operator call: {e}");
            error(
                StatusCode::BAD_GATEWAY,
                "app_unreachable",
                format!("the app instance at {base} did not answer: {e}"),
            )
        }
        Err(_) => {
            count("timeout");
            error(
                StatusCode::GATEWAY_TIMEOUT,
                "app_timeout",
                format!("the app instance at {base} did not answer within {FORWARD_TIMEOUT:?}"),
            )
        }
    }
}

/// The `{name}` segments of `template` as they are in `path`.
fn path_param<'a>(template: &str, path: &'a str, name: &str) -> Option<&'a str> {
    let wanted = format!("{{{name}}}");
    template
        .split('/')
        .zip(path.split('/'))
        .find(|(t, _)| *t == wanted)
        .map(|(_, value)| value)
}

/// The base URL of the app instance that answers `route` for this call, or why none.
fn instance_for(
    node: &ControlNode,
    route: &AppRoute,
    path: &str,
    body: &[u8],
) -> Result<String, (&'static str, String)> {
    let pile_text = match route.owner {
        Owner::Any | Owner::Every => return any_instance(node),
        Owner::PathPile => path_param(route.path, path, "pile").map(str::to_owned),
        Owner::PathTrade => path_param(route.path, path, "trade_no")
            .and_then(|t| t.get(..14))
            .map(str::to_owned),
        Owner::BodyPile => serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v.get("pile").and_then(|p| p.as_str()).map(str::to_owned)),
    };
    // A call the app will refuse anyway (a bad pile number) may go to any instance, which
    // says what is wrong.
    let Some(pile) = pile_text.and_then(|t| PileNo::parse(&t).ok()) else {
        return any_instance(node);
    };
    let table = node.publisher.table();
    let shard = shard_of(&pile, table.shard_count);
    let Some(owner) = table.shard_owner(shard) else {
        return Err((
            "shard_unowned",
            format!("no app instance owns shard {shard} of pile {pile} yet"),
        ));
    };
    http_address_of(node, &owner.id).ok_or_else(|| {
        (
            "no_operator_address",
            format!(
                "app instance {} owns pile {pile} but gave no operator API address (start it \
                 with --http-advertise)",
                owner.id
            ),
        )
    })
}

fn http_address_of(node: &ControlNode, id: &str) -> Option<String> {
    node.view
        .load()
        .state
        .member(MemberKind::App, id)
        .map(|m| m.record.http_address)
        .filter(|a| !a.is_empty())
}

/// The operator addresses of the live instances that are not leaving.
fn live_instances(node: &ControlNode) -> Vec<String> {
    node.view
        .load()
        .state
        .members(MemberKind::App)
        .into_iter()
        .filter(|m| !m.load.leaving)
        .map(|m| m.record.http_address)
        .filter(|a| !a.is_empty())
        .collect()
}

/// `/v1/stats` of the whole cluster: piles online summed over the instances (each pile has
/// one owner); edges and records as the instance that sees most (every edge streams to
/// every instance, the records are in the shared store). Instances that do not answer
/// are left out, and the `x-pylon-instances` header says how many answered.
async fn stats_of_every_instance(
    node: &ControlNode,
    parts: &axum::http::request::Parts,
) -> Response {
    use pylon_proto::api::app::StatsReply;
    let count = |r: &str| node.metrics.forwards.get_or_create(&result(r)).inc();
    let instances = live_instances(node);
    if instances.is_empty() {
        count("no_app_instance");
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_app_instance",
            "no live app instance with an operator API address is registered",
        );
    }
    let mut merged: Option<StatsReply> = None;
    let mut answered = 0;
    // One after the other: a cluster has a handful of instances.
    for base in &instances {
        match stats_of(base, parts).await {
            Answer::Stats(stats) => {
                answered += 1;
                merged = Some(match merged {
                    None => stats,
                    Some(m) => StatsReply {
                        edges: m.edges.max(stats.edges),
                        piles_online: m.piles_online + stats.piles_online,
                        records: m.records.max(stats.records),
                        store: m.store,
                    },
                });
            }
            // The instance's own refusal (a bad token, say) is the answer.
            Answer::Refused(response) => {
                count("ok");
                return response;
            }
            Answer::Failed(e) => tracing::warn!(app = %base, "an app instance's stats: {e}"),
        }
    }
    let Some(merged) = merged else {
        count("unreachable");
        return error(
            StatusCode::BAD_GATEWAY,
            "app_unreachable",
            "no app instance answered",
        );
    };
    count("ok");
    let mut response = axum::Json(merged).into_response();
    if let Ok(value) = HeaderValue::from_str(&format!("{answered}/{}", instances.len())) {
        response
            .headers_mut()
            .insert(HeaderName::from_static("x-pylon-instances"), value);
    }
    response
}

enum Answer {
    Stats(pylon_proto::api::app::StatsReply),
    Refused(Response),
    Failed(String),
}

/// How long one instance gets to answer for the cluster's stats.
const STATS_TIMEOUT: Duration = Duration::from_secs(5);

/// One instance's stats, answer and body within [`STATS_TIMEOUT`].
async fn stats_of(base: &str, parts: &axum::http::request::Parts) -> Answer {
    let ask = async {
        let answer = match send(base, parts, Bytes::new()).await {
            Ok(answer) => answer,
            Err(e) => return Answer::Failed(e),
        };
        // The caller's refusal (bad token, too weak a role) is the answer; anything else
        // that is not a success leaves this instance out.
        match answer.status() {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => return Answer::Refused(answer),
            status if !status.is_success() => return Answer::Failed(format!("answered {status}")),
            _ => {}
        }
        match axum::body::to_bytes(answer.into_body(), BODY_LIMIT).await {
            Ok(body) => match serde_json::from_slice(&body) {
                Ok(stats) => Answer::Stats(stats),
                Err(e) => Answer::Failed(e.to_string()),
            },
            Err(e) => Answer::Failed(e.to_string()),
        }
    };
    tokio::time::timeout(STATS_TIMEOUT, ask)
        .await
        .unwrap_or_else(|_| Answer::Failed(format!("no answer within {STATS_TIMEOUT:?}")))
}

/// `GET /v1/fleet` of any live instance, asked with the caller's credentials (`parts`
/// of the caller's request); a refusal or failure as the response to give.
pub(crate) async fn fleet(
    node: &ControlNode,
    parts: &axum::http::request::Parts,
) -> Result<pylon_proto::api::monitor::Fleet, Response> {
    let base = any_instance(node)
        .map_err(|(code, message)| error(StatusCode::SERVICE_UNAVAILABLE, code, message))?;
    let mut ask = parts.clone();
    ask.method = axum::http::Method::GET;
    ask.uri = Uri::from_static("/v1/fleet");
    let answer = match tokio::time::timeout(STATS_TIMEOUT, send(&base, &ask, Bytes::new())).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(e)) => {
            return Err(error(
                StatusCode::BAD_GATEWAY,
                "app_unreachable",
                format!("the app instance at {base} did not answer: {e}"),
            ))
        }
        Err(_) => {
            return Err(error(
                StatusCode::GATEWAY_TIMEOUT,
                "app_timeout",
                format!("the app instance at {base} did not answer in time"),
            ))
        }
    };
    if !answer.status().is_success() {
        return Err(answer);
    }
    let body = axum::body::to_bytes(answer.into_body(), BODY_LIMIT)
        .await
        .map_err(|e| error(StatusCode::BAD_GATEWAY, "app_unreachable", e.to_string()))?;
    serde_json::from_slice(&body)
        .map_err(|e| error(StatusCode::BAD_GATEWAY, "app_answer", e.to_string()))
}

/// A live instance with an operator address, taken in turn.
fn any_instance(node: &ControlNode) -> Result<String, (&'static str, String)> {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let addresses = live_instances(node);
    if addresses.is_empty() {
        return Err((
            "no_app_instance",
            "no live app instance with an operator API address is registered".into(),
        ));
    }
    let i = NEXT.fetch_add(1, Ordering::Relaxed) % addresses.len();
    Ok(addresses[i].clone())
}

/// Sends the call to `base` (`http(s)://host:port`) on a connection of its own and
/// streams the answer back.
async fn send(
    base: &str,
    parts: &axum::http::request::Parts,
    body: Bytes,
) -> Result<Response, String> {
    let base_uri: Uri = base.parse().map_err(|e| format!("{base}: {e}"))?;
    let host = base_uri
        .host()
        .ok_or_else(|| format!("no host in {base}"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let tls = base_uri.scheme_str() == Some("https");
    if !tls && pylon_service::tls::cluster().is_some() {
        return Err(format!(
            "{base} is plain http and this control plane runs with cluster TLS: operators' \
             tokens are not forwarded in the clear"
        ));
    }
    let port = base_uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let authority = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let mut request = axum::http::Request::builder()
        .method(parts.method.clone())
        .uri(path)
        .header(header::HOST, authority);
    for name in PASSED_ON {
        for value in parts.headers.get_all(name) {
            request = request.header(name, value);
        }
    }
    let session: Vec<&str> = parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|c| c.starts_with(&format!("{SESSION_COOKIE}=")))
        .collect();
    if !session.is_empty() {
        request = request.header(header::COOKIE, session.join("; "));
        if let Some(csrf) = parts.headers.get(CSRF_HEADER) {
            request = request.header(CSRF_HEADER, csrf);
        }
    }
    let request = request
        .body(Body::from(body))
        .map_err(|e| format!("building the request: {e}"))?;

    let within = |what: &'static str| move |_| format!("no {what} within {CONNECT_TIMEOUT:?}");
    if tls {
        let cluster = pylon_service::tls::cluster()
            .ok_or_else(|| format!("{base} is https but this control plane has no cluster TLS"))?;
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, cluster.connect_http1(&host, port))
            .await
            .map_err(within("TLS connection"))?
            .map_err(|e| e.to_string())?;
        exchange(TokioIo::new(stream), request).await
    } else {
        let stream = tokio::time::timeout(
            CONNECT_TIMEOUT,
            tokio::net::TcpStream::connect((host.as_str(), port)),
        )
        .await
        .map_err(within("connection"))?
        .map_err(|e| e.to_string())?;
        let _ = stream.set_nodelay(true);
        exchange(TokioIo::new(stream), request).await
    }
}

async fn exchange<IO>(io: IO, request: axum::http::Request<Body>) -> Result<Response, String>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    // The connection serves this one exchange; it ends when the answer's body is read.
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!("forwarded connection: {e}");
        }
    });
    let answer = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let (mut head, body) = answer.into_parts();
    for hop in [header::CONNECTION, header::TRANSFER_ENCODING] {
        head.headers.remove(hop);
    }
    head.headers.remove(HeaderName::from_static("keep-alive"));
    head.headers.insert(
        HeaderName::from_static("x-pylon-forwarded"),
        HeaderValue::from_static("app"),
    );
    Ok(Response::from_parts(head, Body::new(body)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_parameters_are_read_by_the_template() {
        assert_eq!(
            path_param(
                "/v1/piles/{pile}/commands",
                "/v1/piles/32010200000001/commands",
                "pile"
            ),
            Some("32010200000001")
        );
        assert_eq!(
            path_param(
                "/v1/orders/{trade_no}/stop",
                "/v1/orders/3201020000000101231207000001/stop",
                "trade_no"
            ),
            Some("3201020000000101231207000001")
        );
        assert_eq!(path_param("/v1/piles", "/v1/piles", "pile"), None);
    }

    #[test]
    fn every_shared_route_has_a_method_the_router_knows() {
        for route in OPERATOR_ROUTES {
            assert!(
                ["GET", "POST", "PUT", "DELETE"].contains(&route.method),
                "{route:?}"
            );
        }
    }
}
