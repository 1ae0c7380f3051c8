//! `pylonctl routes watch`: subscribes to the control plane's gRPC route stream and prints
//! one line per update as it arrives. With cluster TLS on, the stream is mutual TLS: the
//! channel is dialled through [`crate::tls::GrpcConnector`] with the cluster CA and the
//! operator's client certificate (`--cert`, `--key`).

use std::io::Write;
use std::time::Duration;

use pylon_proto::control::route_update::Body;
use pylon_proto::control::routes_client::RoutesClient;
use pylon_proto::control::{AppliedReport, RouteUpdate, SubscribeRequest};
use pylon_proto::routes::{RouteChange, RouteDelta, RouteView};
use serde_json::{json, Value};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Endpoint;
use tonic::Code;

use crate::cli::Failure;
use crate::client::io_reason;
use crate::config::{is_https, normalize_http_endpoint, url_host, ENV_GRPC_ENDPOINT};
use crate::render::control::{delta_line, empty_update_line, out_of_step_note, snapshot_line};
use crate::tls::{find_tls_error, GrpcConnector, Trust};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub struct WatchOptions {
    /// `http://host:port` of the control plane's gRPC server, or `https://host:port` (then
    /// with `tls`).
    pub grpc_url: String,
    /// For an https `grpc_url`: the cluster CA and the client certificate (mutual TLS).
    pub tls: Option<Trust>,
    pub token: Option<String>,
    /// Where to put a token, for the message when one is needed.
    pub token_hint: String,
    /// Stop after this many updates (the first snapshot counts).
    pub count: Option<u64>,
    pub json: bool,
    pub subscriber_id: String,
}

/// The gRPC URL from `StatusReply::grpc_address`: `http://` in front (`https://` when the
/// control plane was reached over https: with cluster TLS its gRPC port is TLS too), and
/// a wildcard bind address (`0.0.0.0`, `[::]`, none) replaced by the host pylonctl
/// reached over HTTP.
pub fn grpc_url_from_status(grpc_address: &str, http_endpoint: &str) -> String {
    let address = grpc_address.trim();
    if address.contains("://") {
        return address.to_owned();
    }
    let scheme = if is_https(http_endpoint) {
        "https"
    } else {
        "http"
    };
    let (host, port) = match address.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (address, None),
    };
    let host = match host {
        "" | "0.0.0.0" | "[::]" | "::" => url_host(http_endpoint).unwrap_or("127.0.0.1"),
        host => host,
    };
    match port {
        Some(port) => format!("{scheme}://{host}:{port}"),
        None => format!("{scheme}://{host}"),
    }
}

/// `--grpc-endpoint` as given, made a URL: without a scheme, `https://` when the control
/// plane (`control`, its HTTP URL) is https, else `http://`. With the control plane on
/// https, a plain http gRPC address is refused: with cluster TLS every gRPC port is
/// mutual TLS.
pub fn normalize_grpc_endpoint(given: &str, control: &str) -> Result<String, Failure> {
    let given = given.trim();
    let control_tls = is_https(control);
    let url = if control_tls && !given.contains("://") {
        normalize_http_endpoint(&format!("https://{given}"))?
    } else {
        normalize_http_endpoint(given)?
    };
    if control_tls && !is_https(&url) {
        return Err(Failure::BadInput(format!(
            "--grpc-endpoint / {ENV_GRPC_ENDPOINT}: {url} is plain http, but the control plane \
             at {control} runs with cluster TLS, so its gRPC port is mutual TLS: give an \
             https:// URL (or leave the scheme out)"
        )));
    }
    Ok(url)
}

/// Why `routes watch` stops on a control plane with cluster TLS when no client
/// certificate is given. `grpc_url`: the gRPC address, when known; `hint`: where to give
/// the certificate ([`crate::config::Settings::cert_hint`]).
pub fn client_cert_needed(grpc_url: Option<&str>, hint: &str) -> Failure {
    let at = grpc_url.map(|u| format!(" at {u}")).unwrap_or_default();
    Failure::BadInput(format!(
        "routes watch over TLS needs a client certificate: with cluster TLS on, the control \
         plane's route stream (gRPC{at}) is mutual TLS, and takes only clients that show a \
         certificate of the cluster CA: {hint}. (`pylonctl routes show` reads the route \
         table over HTTPS without one.)"
    ))
}

/// `pylonctl/<hostname>`, or `pylonctl/<pid>` when the host has no name to read.
pub fn subscriber_id(env: &dyn Fn(&str) -> Option<String>) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| env("HOSTNAME").filter(|h| !h.is_empty()));
    match host {
        Some(host) => format!("pylonctl/{host}"),
        None => format!("pylonctl/{}", std::process::id()),
    }
}

/// Runs the watch on a small current-thread runtime until Ctrl-C or `count` updates.
pub fn watch(opts: WatchOptions, out: &mut dyn Write) -> Result<(), Failure> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Other(anyhow::anyhow!("cannot start the async runtime: {e}")))?;
    runtime.block_on(watch_async(opts, out))
}

async fn watch_async(opts: WatchOptions, out: &mut dyn Write) -> Result<(), Failure> {
    let url = opts.grpc_url.clone();
    let endpoint = Endpoint::from_shared(url.clone())
        .map_err(|e| Failure::BadInput(format!("{url} is not a valid gRPC endpoint: {e}")))?
        .connect_timeout(CONNECT_TIMEOUT);
    let connector = opts
        .tls
        .as_ref()
        .map(|tls| GrpcConnector::new(tls.grpc_config()));
    let connected = match (&connector, is_https(&url)) {
        (Some(connector), true) => endpoint.connect_with_connector(connector.clone()).await,
        (None, true) => {
            return Err(Failure::BadInput(format!(
                "{url} is https: pylonctl needs the cluster CA and a client certificate for \
                 it (--ca, --cert, --key)"
            )))
        }
        (_, false) => endpoint.connect().await,
    };
    let channel = connected.map_err(|e| match tls_failure(&e, connector.as_ref(), &opts) {
        Some(failure) => failure,
        None => Failure::Unreachable(format!(
            "cannot reach the control plane's route stream at {url}: {} (is pylon-control \
             running? set --grpc-endpoint or PYLON_GRPC_ENDPOINT)",
            error_reason(&e)
        )),
    })?;
    let mut client = RoutesClient::new(channel);
    let authorization = match &opts.token {
        Some(token) => Some(
            MetadataValue::try_from(format!("Bearer {token}")).map_err(|_| {
                Failure::BadInput(
                    "the token holds characters that cannot be sent in a header".into(),
                )
            })?,
        ),
        None => None,
    };
    let subscribed = client
        .subscribe(with_auth(
            SubscribeRequest {
                subscriber_id: opts.subscriber_id.clone(),
            },
            &authorization,
        ))
        .await;
    let mut stream = match subscribed {
        Ok(response) => response.into_inner(),
        Err(status) => return Err(status_failure(&status, connector.as_ref(), &opts).await),
    };

    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut view: Option<RouteView> = None;
    let mut seen = 0u64;
    while !matches!(opts.count, Some(n) if seen >= n) {
        tokio::select! {
            _ = &mut ctrl_c => break,
            message = stream.message() => match message {
                Ok(Some(update)) => {
                    let line = describe(update, &mut view, opts.json)?;
                    writeln!(out, "{line}")?;
                    out.flush()?;
                    seen += 1;
                    // Like every subscriber, say what we applied, so that this watch does
                    // not show up as a lagging subscriber. Best effort: printing matters more.
                    if let Some(v) = &view {
                        let report = AppliedReport {
                            subscriber_id: opts.subscriber_id.clone(),
                            version: v.version(),
                        };
                        let _ = client.report_applied(with_auth(report, &authorization)).await;
                    }
                }
                Ok(None) => {
                    return Err(Failure::Other(anyhow::anyhow!(
                        "the control plane at {url} closed the route stream"
                    )))
                }
                Err(status) => {
                    return Err(status_failure(&status, connector.as_ref(), &opts).await)
                }
            }
        }
    }
    Ok(())
}

fn with_auth<T>(message: T, authorization: &Option<MetadataValue<Ascii>>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(value) = authorization {
        request
            .metadata_mut()
            .insert("authorization", value.clone());
    }
    request
}

/// Applies one update to `view` and says what it was, as text or as one line of JSON.
fn describe(
    update: RouteUpdate,
    view: &mut Option<RouteView>,
    json: bool,
) -> Result<String, Failure> {
    let unreadable = |e: pylon_proto::routes::RouteError| {
        Failure::Other(anyhow::anyhow!(
            "the control plane sent route update v{} that pylonctl cannot read: {e} (is \
             pylonctl the same version as the control plane?)",
            update.version
        ))
    };
    match &update.body {
        Some(Body::Snapshot(bytes)) => {
            let new_view = RouteView::from_snapshot(bytes).map_err(unreadable)?;
            let table = new_view.to_table();
            *view = Some(new_view);
            Ok(if json {
                json!({"version": table.version, "kind": "snapshot", "table": table}).to_string()
            } else {
                snapshot_line(&table)
            })
        }
        Some(Body::Delta(bytes)) => {
            let delta = RouteDelta::decode(bytes).map_err(unreadable)?;
            let mut line = if json {
                delta_json(&delta).to_string()
            } else {
                delta_line(&delta, view.as_ref())
            };
            if let Some(v) = view.as_mut() {
                if let Err(e) = v.apply(delta) {
                    // Deltas are still printed; additions and updates just cannot be told apart.
                    *view = None;
                    if !json {
                        line.push_str(&out_of_step_note(&e));
                    }
                }
            }
            Ok(line)
        }
        None if json => Ok(json!({"version": update.version, "kind": "empty"}).to_string()),
        None => Ok(empty_update_line(update.version)),
    }
}

fn delta_json(delta: &RouteDelta) -> Value {
    let changes: Vec<Value> = delta
        .changes
        .iter()
        .map(|c| match c {
            RouteChange::EdgeUpsert(e) => json!({"edge_upsert": e}),
            RouteChange::EdgeRemove(id) => json!({"edge_remove": id}),
            RouteChange::AppUpsert(a) => json!({"app_upsert": a}),
            RouteChange::AppRemove(id) => json!({"app_remove": id}),
            RouteChange::ShardMoves(moves) => json!({
                "shard_moves": moves
                    .iter()
                    .map(|m| json!({"shard": m.shard, "app": (!m.app.is_empty()).then_some(&m.app)}))
                    .collect::<Vec<_>>()
            }),
        })
        .collect();
    json!({
        "version": delta.version,
        "base_version": delta.base_version,
        "kind": "delta",
        "changes": changes,
    })
}

/// A short reason from an error's chain of causes, preferring the socket error.
fn error_reason(e: &(dyn std::error::Error + 'static)) -> String {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut last = e.to_string();
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return io_reason(io);
        }
        last = err.to_string();
        source = err.source();
    }
    last
}

/// The failure for a TLS error met by `connector` or held in `e`'s causes: what the
/// handshake (or the server's alert about the client certificate) means. `None`: no TLS
/// error.
fn tls_failure(
    e: &(dyn std::error::Error + 'static),
    connector: Option<&GrpcConnector>,
    opts: &WatchOptions,
) -> Option<Failure> {
    let error = connector
        .and_then(GrpcConnector::tls_error)
        .or_else(|| find_tls_error(e).cloned())?;
    Some(explained(&error, opts))
}

fn explained(error: &rustls::Error, opts: &WatchOptions) -> Failure {
    let reason = match &opts.tls {
        Some(tls) => crate::tls::explain_grpc(error, &opts.grpc_url, tls),
        None => error.to_string(),
    };
    Failure::Other(anyhow::anyhow!(
        "cannot talk to the control plane's route stream at {} over mutual TLS: {reason}",
        opts.grpc_url
    ))
}

/// How long a connection made to learn why the server dropped ours waits for its
/// first words ([`GrpcConnector::probe`]).
const PROBE_WAIT: Duration = Duration::from_secs(3);

async fn status_failure(
    status: &tonic::Status,
    connector: Option<&GrpcConnector>,
    opts: &WatchOptions,
) -> Failure {
    if let Some(failure) = tls_failure(status, connector, opts) {
        return failure;
    }
    // No reply at all, over TLS: with TLS 1.3 a server that refuses the client
    // certificate says so after the handshake and closes; ask it again to hear why.
    if let Some(connector) = connector {
        let dropped = matches!(
            status.code(),
            Code::Unknown | Code::Unavailable | Code::Cancelled
        );
        if let (true, Ok(uri)) = (dropped, opts.grpc_url.parse()) {
            if let Some(error) = connector.probe(uri, PROBE_WAIT).await {
                return explained(&error, opts);
            }
        }
    }
    let url = &opts.grpc_url;
    let message = status.message();
    match status.code() {
        Code::Unauthenticated if opts.token.is_none() => Failure::Other(anyhow::anyhow!(
            "{message} (unauthenticated)\nThe route stream needs the control plane's admin \
             token: {}.",
            opts.token_hint
        )),
        Code::Unauthenticated => Failure::Other(anyhow::anyhow!(
            "{message} (unauthenticated)\nThe control plane refused the token; check the token \
             given by --token, PYLON_TOKEN or the config file."
        )),
        Code::PermissionDenied => Failure::Other(anyhow::anyhow!(
            "{message} (permission denied)\nThe token given is not allowed to watch routes; \
             use the admin token ({}).",
            opts.token_hint
        )),
        Code::Unavailable => Failure::Unreachable(format!(
            "cannot reach the control plane's route stream at {url}: {message} (is \
             pylon-control running? set --grpc-endpoint or PYLON_GRPC_ENDPOINT)"
        )),
        code => Failure::Other(anyhow::anyhow!(
            "the route stream at {url} failed: {message} ({code:?}; is --grpc-endpoint the \
             control plane's gRPC port, 7401 by default?)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use pylon_proto::routes::{EdgeRoute, RouteTable};

    use super::*;

    #[test]
    fn grpc_urls_from_status() {
        assert_eq!(
            grpc_url_from_status("10.0.0.5:7401", "http://ctl:7400"),
            "http://10.0.0.5:7401"
        );
        assert_eq!(
            grpc_url_from_status("0.0.0.0:7401", "http://ctl.example:7400"),
            "http://ctl.example:7401"
        );
        assert_eq!(
            grpc_url_from_status("[::]:7401", "http://[::1]:7400"),
            "http://[::1]:7401"
        );
        assert_eq!(
            grpc_url_from_status("http://x:1", "http://ctl:7400"),
            "http://x:1"
        );
        // A control plane reached over https has its gRPC port on TLS too.
        assert_eq!(
            grpc_url_from_status("0.0.0.0:7401", "https://ctl.example:7400"),
            "https://ctl.example:7401"
        );
        assert_eq!(
            grpc_url_from_status("10.0.0.5:7401", "HTTPS://10.0.0.5:7400"),
            "https://10.0.0.5:7401"
        );
    }

    #[test]
    fn grpc_endpoints_follow_the_control_planes_scheme() {
        let plain = "http://ctl:7400";
        let tls = "https://ctl:7400";
        assert_eq!(
            normalize_grpc_endpoint("10.0.0.5:7401", plain).unwrap(),
            "http://10.0.0.5:7401"
        );
        assert_eq!(
            normalize_grpc_endpoint(" 10.0.0.5:7401/ ", tls).unwrap(),
            "https://10.0.0.5:7401"
        );
        assert_eq!(
            normalize_grpc_endpoint("https://10.0.0.5:7401", plain).unwrap(),
            "https://10.0.0.5:7401"
        );
        let err = normalize_grpc_endpoint("http://10.0.0.5:7401", tls).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(
            err.to_string().contains("give an https:// URL") && err.to_string().contains(tls),
            "{err}"
        );
        assert!(normalize_grpc_endpoint("ftp://x", tls).is_err());
    }

    #[test]
    fn subscriber_ids_name_pylonctl() {
        assert!(subscriber_id(&|_| None).starts_with("pylonctl/"));
    }

    #[test]
    fn updates_are_described_and_applied() {
        let mut t = RouteTable::empty(2);
        t.version = 5;
        let snapshot = RouteUpdate {
            version: 5,
            base_version: 0,
            body: Some(Body::Snapshot(t.encode().to_vec())),
        };
        let mut view = None;
        assert_eq!(
            describe(snapshot, &mut view, false).unwrap(),
            "v5 snapshot: 0 edges (0 draining), 0 apps, 2 shards (2 unowned)"
        );
        let mut next = t.clone();
        next.version = 6;
        next.edges.push(EdgeRoute {
            id: "edge-1".into(),
            tcp_address: "a:1".into(),
            tls_address: String::new(),
            capacity: 1,
            draining: false,
        });
        let delta = t.diff(&next);
        let update = |d: &RouteDelta| RouteUpdate {
            version: d.version,
            base_version: d.base_version,
            body: Some(Body::Delta(d.encode().to_vec())),
        };
        assert_eq!(
            describe(update(&delta), &mut view, false).unwrap(),
            "v6 delta from v5: edge edge-1 added"
        );
        assert_eq!(view.as_ref().map(RouteView::version), Some(6));

        // A delta for another version: printed, flagged, and the view dropped.
        let line = describe(update(&delta), &mut view, false).unwrap();
        assert!(line.contains("waiting for the next snapshot"), "{line}");
        assert!(view.is_none());

        let line = describe(update(&delta), &mut view, true).unwrap();
        let value: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["kind"], "delta");
        assert_eq!(value["changes"][0]["edge_upsert"]["id"], "edge-1");

        let garbage = RouteUpdate {
            version: 7,
            base_version: 0,
            body: Some(Body::Snapshot(vec![1, 2, 3])),
        };
        assert_eq!(
            describe(garbage, &mut view, false).unwrap_err().exit_code(),
            1
        );
    }

    #[test]
    fn an_unreachable_route_stream_is_exit_status_3() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let opts = WatchOptions {
            grpc_url: format!("http://{addr}"),
            tls: None,
            token: None,
            token_hint: "hint".into(),
            count: Some(1),
            json: false,
            subscriber_id: "pylonctl/test".into(),
        };
        let err = watch(opts, &mut Vec::new()).unwrap_err();
        assert_eq!(err.exit_code(), 3);
        assert!(err.to_string().contains("connection refused"), "{err}");
    }
}
