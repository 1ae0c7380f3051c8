use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use clap::Parser;
use pylon_proto::control::route_update::Body;
use pylon_proto::control::routes_server::{Routes, RoutesServer};
use pylon_proto::control::{AppliedReply, AppliedReport, RouteUpdate, SubscribeRequest};
use pylon_proto::routes::NO_OWNER;
use tokio_stream::{Stream, StreamExt};

use super::*;
use std::path::PathBuf;

use crate::cli::{Cli, Command};
use crate::client::tests::{refused_endpoint, sample_edges, serve};
use crate::commands::{run, OpsCommand};
use pylon_proto::api::control::ApiError;

fn parse(args: &[&str]) -> OpsCommand {
    let cli = Cli::try_parse_from(std::iter::once("pylonctl").chain(args.iter().copied()))
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    match cli.command {
        Command::Ops(cmd) => cmd,
        other => panic!("{args:?} parsed as {other:?}"),
    }
}

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k| map.get(k).cloned()
}

/// Runs `pylonctl <args>` against `endpoint` with no config file and no other env.
fn run_at(endpoint: &str, token: Option<&str>, args: &[&str]) -> Result<String, Failure> {
    let mut env = vec![(config::ENV_ENDPOINT, endpoint)];
    if let Some(token) = token {
        env.push((config::ENV_TOKEN, token));
    }
    let mut out = Vec::new();
    run(parse(args), &env_of(&env), &mut out)?;
    Ok(String::from_utf8(out).unwrap())
}

fn api_error(error: &str, message: &str) -> String {
    serde_json::to_string(&ApiError::new(error, message)).unwrap()
}

#[test]
fn every_command_parses() {
    assert!(matches!(parse(&["status"]), OpsCommand::Status(_)));

    let OpsCommand::Edges(a) = parse(&["edges", "list", "--endpoint", "h:1", "-o", "json"]) else {
        panic!()
    };
    assert_eq!(a.command, EdgesCommand::List);
    assert_eq!(a.connect.endpoint.as_deref(), Some("h:1"));
    assert_eq!(a.connect.output, OutputFormat::Json);
    // Connection options go before or after the subcommand.
    let OpsCommand::Edges(a) = parse(&["edges", "--token", "t", "drain", "edge-1"]) else {
        panic!()
    };
    assert_eq!(
        a.command,
        EdgesCommand::Drain {
            id: "edge-1".into()
        }
    );
    assert_eq!(a.connect.token.as_deref(), Some("t"));
    let OpsCommand::Edges(a) = parse(&["edges", "undrain", "edge-1", "--config", "/c.toml"]) else {
        panic!()
    };
    assert_eq!(
        a.command,
        EdgesCommand::Undrain {
            id: "edge-1".into()
        }
    );
    assert_eq!(a.connect.config, Some(PathBuf::from("/c.toml")));
    assert_eq!(a.connect.output, OutputFormat::Table);

    let OpsCommand::Apps(a) = parse(&["apps", "list"]) else {
        panic!()
    };
    assert_eq!(a.command, AppsCommand::List);

    let OpsCommand::Shards(a) = parse(&["shards", "show"]) else {
        panic!()
    };
    assert_eq!(a.command, ShardsCommand::Show { pile: None });
    let OpsCommand::Shards(a) = parse(&["shards", "show", "--pile", "32010200000001"]) else {
        panic!()
    };
    assert_eq!(
        a.command,
        ShardsCommand::Show {
            pile: Some("32010200000001".into())
        }
    );

    let OpsCommand::Entry(a) = parse(&["entry", "32010200000001", "--transport", "tls"]) else {
        panic!()
    };
    assert_eq!(a.pile, "32010200000001");
    assert_eq!(a.transport, Some(TransportArg::Tls));
    let OpsCommand::Entry(a) = parse(&["entry", "32010200000001"]) else {
        panic!()
    };
    assert_eq!(a.transport, None);

    let OpsCommand::Routes(a) = parse(&["routes", "show"]) else {
        panic!()
    };
    assert_eq!(a.command, RoutesCommand::Show);
    let OpsCommand::Routes(a) = parse(&[
        "routes",
        "watch",
        "--count",
        "3",
        "--grpc-endpoint",
        "http://x:7401",
    ]) else {
        panic!()
    };
    assert_eq!(
        a.command,
        RoutesCommand::Watch {
            count: Some(3),
            grpc_endpoint: Some("http://x:7401".into())
        }
    );

    for bad in [
        &["edges"][..],
        &["edges", "drain"],
        &["edges", "list", "extra"],
        &["apps", "list", "-o", "yaml"],
        &["entry"],
        &["entry", "32010200000001", "--transport", "udp"],
        &["routes", "watch", "--count", "many"],
        &["shards", "show", "--pile"],
    ] {
        let args = std::iter::once("pylonctl").chain(bad.iter().copied());
        assert!(Cli::try_parse_from(args).is_err(), "{bad:?} parsed");
    }
}

#[test]
fn piles_are_checked_locally() {
    assert_eq!(parse_pile("32010200000001").unwrap(), "32010200000001");
    for bad in ["", "123", "3201020000000x", "320102000000011"] {
        assert_eq!(parse_pile(bad).unwrap_err().exit_code(), 2, "{bad:?}");
    }
    // Refused before any request: the endpoint would be exit status 3.
    let err = run_at(&refused_endpoint(), None, &["entry", "3201"]).unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert!(err.to_string().contains("14 digits"), "{err}");
    let err = run_at(
        &refused_endpoint(),
        None,
        &["shards", "show", "--pile", "x"],
    )
    .unwrap_err();
    assert_eq!(err.exit_code(), 2);
}

#[test]
fn edges_list_prints_a_table_and_sends_the_token() {
    let edges = sample_edges();
    let body = serde_json::to_string(&edges).unwrap();
    let (endpoint, requests, server) = serve(vec![(200, body.clone()), (200, body)]);
    let text = run_at(&endpoint, Some("s3cret"), &["edges", "list"]).unwrap();
    assert_eq!(text, output::edges(&edges));
    assert!(requests
        .recv()
        .unwrap()
        .to_ascii_lowercase()
        .contains("authorization: bearer s3cret"));
    let json = run_at(&endpoint, Some("s3cret"), &["edges", "list", "-o", "json"]).unwrap();
    assert_eq!(serde_json::from_str::<Vec<EdgeInfo>>(&json).unwrap(), edges);
    server.join().unwrap();
}

#[test]
fn drain_confirms_and_names_unknown_edges() {
    let drained = EdgeInfo {
        draining: true,
        ..sample_edges().remove(0)
    };
    let (endpoint, requests, server) = serve(vec![
        (200, serde_json::to_string(&drained).unwrap()),
        (404, api_error("no_such_edge", "no edge edge-9")),
    ]);
    let text = run_at(&endpoint, Some("t"), &["edges", "drain", "edge-1"]).unwrap();
    assert_eq!(text, output::drained(&drained, true));
    assert!(requests
        .recv()
        .unwrap()
        .starts_with("POST /v1/admin/edges/edge-1/drain HTTP/1.1"));
    let err = run_at(&endpoint, Some("t"), &["edges", "undrain", "edge-9"]).unwrap_err();
    assert_eq!(err.exit_code(), 1);
    assert_eq!(
        err.to_string(),
        "no edge named edge-9 is registered (see `pylonctl edges list`)"
    );
    assert!(requests
        .recv()
        .unwrap()
        .starts_with("POST /v1/admin/edges/edge-9/undrain HTTP/1.1"));
    server.join().unwrap();
}

#[test]
fn a_401_without_a_token_names_the_users_config_file() {
    let (endpoint, _requests, server) = serve(vec![(
        401,
        api_error("unauthorized", "missing or wrong admin token"),
    )]);
    let dir = tempfile::tempdir().unwrap();
    let env = env_of(&[
        (config::ENV_ENDPOINT, &endpoint),
        ("XDG_CONFIG_HOME", dir.path().to_str().unwrap()),
    ]);
    let err = run(parse(&["status"]), &env, &mut Vec::new()).unwrap_err();
    assert_eq!(err.exit_code(), 1);
    let expected = format!(
        "pass --token, set PYLON_TOKEN, or put token = \"...\" in {}",
        dir.path().join("pylon/pylonctl.toml").display()
    );
    assert!(err.to_string().contains(&expected), "{err}");
    server.join().unwrap();
}

#[test]
fn a_400_is_bad_input_and_unreachable_is_3() {
    let (endpoint, _requests, server) =
        serve(vec![(400, api_error("bad_pile", "not a pile number"))]);
    let err = run_at(&endpoint, None, &["entry", "32010200000001"]).unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert_eq!(err.to_string(), "not a pile number (bad_pile, HTTP 400)");
    server.join().unwrap();

    let err = run_at(&refused_endpoint(), Some("t"), &["apps", "list"]).unwrap_err();
    assert_eq!(err.exit_code(), 3);
    assert!(err.to_string().contains("connection refused"), "{err}");
}

#[test]
fn shards_show_prints_the_owner_list_only_in_json() {
    let map = ShardMapReply {
        shard_count: 2,
        per_app: [("app-1".to_string(), 1)].into(),
        unowned: 1,
        owners: vec![Some("app-1".into()), None],
    };
    let body = serde_json::to_string(&map).unwrap();
    let (endpoint, _requests, server) = serve(vec![(200, body.clone()), (200, body)]);
    let text = run_at(&endpoint, Some("t"), &["shards", "show"]).unwrap();
    assert_eq!(text, output::shard_map(&map));
    let json = run_at(&endpoint, Some("t"), &["shards", "show", "-o", "json"]).unwrap();
    assert_eq!(serde_json::from_str::<ShardMapReply>(&json).unwrap(), map);
    server.join().unwrap();
}

#[test]
fn routes_show_reads_the_route_table_json() {
    let mut table = RouteTable::empty(3);
    table.version = 12;
    table.edges = vec![EdgeRoute {
        id: "edge-1".into(),
        tcp_address: "10.0.0.1:7000".into(),
        tls_address: String::new(),
        capacity: 100,
        draining: false,
    }];
    table.apps = vec![AppRoute {
        id: "app-1".into(),
        grpc_address: "10.0.0.9:9000".into(),
        capacity: 0,
    }];
    table.shards = vec![0, NO_OWNER, 0];
    let (endpoint, requests, server) = serve(vec![(200, serde_json::to_string(&table).unwrap())]);
    let text = run_at(&endpoint, Some("t"), &["routes", "show"]).unwrap();
    assert_eq!(text, output::route_table(&table));
    assert!(requests
        .recv()
        .unwrap()
        .starts_with("GET /v1/admin/routes HTTP/1.1"));
    server.join().unwrap();
}

/// A route stream that checks the token, then sends `updates` and stays open.
struct FakeRoutes {
    updates: Vec<RouteUpdate>,
    subscribers: Arc<Mutex<Vec<String>>>,
    applied: Arc<Mutex<Vec<(String, u64)>>>,
}

#[tonic::async_trait]
impl Routes for FakeRoutes {
    type SubscribeStream = Pin<Box<dyn Stream<Item = Result<RouteUpdate, tonic::Status>> + Send>>;

    async fn subscribe(
        &self,
        request: tonic::Request<SubscribeRequest>,
    ) -> Result<tonic::Response<Self::SubscribeStream>, tonic::Status> {
        let auth = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        if auth != Some("Bearer s3cret") {
            return Err(tonic::Status::unauthenticated("missing or wrong token"));
        }
        self.subscribers
            .lock()
            .unwrap()
            .push(request.into_inner().subscriber_id);
        let updates: Vec<_> = self.updates.iter().cloned().map(Ok).collect();
        Ok(tonic::Response::new(Box::pin(
            tokio_stream::iter(updates).chain(tokio_stream::pending()),
        )))
    }

    async fn report_applied(
        &self,
        request: tonic::Request<AppliedReport>,
    ) -> Result<tonic::Response<AppliedReply>, tonic::Status> {
        let report = request.into_inner();
        self.applied
            .lock()
            .unwrap()
            .push((report.subscriber_id, report.version));
        Ok(tonic::Response::new(AppliedReply {}))
    }
}

/// Serves `routes` on 127.0.0.1 from a thread of its own; returns the port.
fn serve_routes(routes: FakeRoutes) -> u16 {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap().port()).unwrap();
            tonic::transport::Server::builder()
                .add_service(RoutesServer::new(routes))
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
                .await
                .unwrap();
        });
    });
    rx.recv().unwrap()
}

#[test]
fn routes_watch_follows_the_stream_found_through_status() {
    let mut v1 = RouteTable::empty(2);
    v1.version = 1;
    let mut v2 = v1.clone();
    v2.version = 2;
    v2.edges.push(EdgeRoute {
        id: "edge-1".into(),
        tcp_address: "10.0.0.1:7000".into(),
        tls_address: String::new(),
        capacity: 100,
        draining: true,
    });
    let subscribers = Arc::new(Mutex::new(Vec::new()));
    let applied = Arc::new(Mutex::new(Vec::new()));
    let grpc_port = serve_routes(FakeRoutes {
        updates: vec![
            RouteUpdate {
                version: 1,
                base_version: 0,
                body: Some(Body::Snapshot(v1.encode().to_vec())),
            },
            RouteUpdate {
                version: 2,
                base_version: 1,
                body: Some(Body::Delta(v1.diff(&v2).encode().to_vec())),
            },
        ],
        subscribers: subscribers.clone(),
        applied: applied.clone(),
    });
    // The status reply names the wildcard bind address; pylonctl uses the host it
    // reached over HTTP instead.
    let status = StatusReply {
        replica: "ctl-1".into(),
        leader: None,
        leader_term: 0,
        backend: "embedded".into(),
        registry_ok: true,
        grpc_address: format!("0.0.0.0:{grpc_port}"),
        route_version: 2,
        edges_live: 1,
        edges_draining: 1,
        apps_live: 0,
        shard_count: 2,
        shards_unowned: 2,
        subscribers: vec![],
        replicas: vec![],
    };
    let (endpoint, _requests, server) = serve(vec![(200, serde_json::to_string(&status).unwrap())]);
    let text = run_at(
        &endpoint,
        Some("s3cret"),
        &["routes", "watch", "--count", "2"],
    )
    .unwrap();
    assert_eq!(
        text,
        "v1 snapshot: 0 edges (0 draining), 0 apps, 2 shards (2 unowned)\n\
             v2 delta from v1: edge edge-1 added\n"
    );
    server.join().unwrap();
    let subscribers = subscribers.lock().unwrap().clone();
    assert_eq!(subscribers.len(), 1);
    assert!(subscribers[0].starts_with("pylonctl/"), "{subscribers:?}");
    let versions: Vec<u64> = applied.lock().unwrap().iter().map(|(_, v)| *v).collect();
    assert_eq!(versions, [1, 2]);

    // --grpc-endpoint needs no status call; a missing token gets the hint.
    let grpc = format!("http://127.0.0.1:{grpc_port}");
    let err = run_at(
        &refused_endpoint(),
        None,
        &["routes", "watch", "--count", "1", "--grpc-endpoint", &grpc],
    )
    .unwrap_err();
    assert_eq!(err.exit_code(), 1);
    assert!(
        err.to_string().contains("pass --token, set PYLON_TOKEN"),
        "{err}"
    );

    let json = run_at(
        &refused_endpoint(),
        Some("s3cret"),
        &[
            "routes",
            "watch",
            "--count",
            "1",
            "--grpc-endpoint",
            &grpc,
            "-o",
            "json",
        ],
    )
    .unwrap();
    let first: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(first["kind"], "snapshot");
    assert_eq!(first["table"]["shard_count"], 2);
}

#[test]
fn an_https_control_plane_needs_and_uses_the_cluster_ca() {
    use crate::client::tests::{serve_tls, tls_files};
    let dir = tls_files();
    let d = dir.path();
    let ca = d.join("ca.pem");
    let ca = ca.to_str().unwrap();
    let edges = sample_edges();
    let (endpoint, requests, server) = serve_tls(
        &d.join("server.pem"),
        &d.join("server.key"),
        vec![(200, serde_json::to_string(&edges).unwrap())],
    );

    // No CA: refused before connecting, saying how to give one.
    let err = run_at(&endpoint, Some("t"), &["edges", "list"]).unwrap_err();
    assert_eq!(err.exit_code(), 2);
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!(
            "--endpoint / PYLON_ENDPOINT: the endpoint {endpoint} is https"
        )) && msg.contains("--ca FILE")
            && msg.contains("certs init"),
        "{msg}"
    );

    let text = run_at(&endpoint, Some("t"), &["edges", "list", "--ca", ca]).unwrap();
    assert_eq!(text, output::edges(&edges));
    let head = requests.recv().unwrap().unwrap();
    assert!(head.starts_with("GET /v1/admin/edges HTTP/1.1"), "{head}");
    server.join().unwrap();

    // A CA file that is not there.
    let err = run_at(&endpoint, None, &["status", "--ca", "/nonexistent/ca.pem"]).unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");

    // The route stream over TLS without a client certificate: refused, saying how to
    // give one; nothing is dialled.
    for args in [
        &["routes", "watch", "--ca", ca][..],
        &[
            "routes",
            "watch",
            "--ca",
            ca,
            "--grpc-endpoint",
            "https://10.0.0.5:7401",
        ][..],
    ] {
        let err = run_at(&endpoint, Some("t"), args).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let msg = err.to_string();
        assert!(
            msg.starts_with("routes watch over TLS needs a client certificate")
                && msg.contains("mutual TLS")
                && msg.contains("--cert FILE and --key FILE")
                && msg.contains("PYLON_CERT")
                && msg.contains("pylonctl certs issue")
                && msg.contains("pylonctl routes show"),
            "{msg}"
        );
    }
    let err = run_at(
        "http://127.0.0.1:1",
        Some("t"),
        &[
            "routes",
            "watch",
            "--grpc-endpoint",
            "https://10.0.0.5:7401",
        ],
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("gRPC at https://10.0.0.5:7401"),
        "{err}"
    );
}

/// A TLS connection accepted by [`serve_routes_tls`], as tonic's server takes it.
struct TlsConn(tokio_rustls::server::TlsStream<tokio::net::TcpStream>);

impl tonic::transport::server::Connected for TlsConn {
    type ConnectInfo = ();
    fn connect_info(&self) -> Self::ConnectInfo {}
}

impl tokio::io::AsyncRead for TlsConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for TlsConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// A server configuration as the services' gRPC listeners have with cluster TLS
/// (`service/src/tls.rs`): the certificate `chain` and `key`, a client certificate of
/// `client_ca` required, ALPN h2.
fn mutual_tls_config(
    chain: &std::path::Path,
    key: &std::path::Path,
    client_ca: &std::path::Path,
) -> Arc<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = crate::tls::read_pem_certs(chain).unwrap();
    let key = rustls_pemfile::private_key(&mut std::fs::read(key).unwrap().as_slice())
        .unwrap()
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for c in crate::tls::read_pem_certs(client_ca).unwrap() {
        roots.add(c).unwrap();
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(config)
}

/// [`serve_routes`] over TLS with `config`; a connection whose handshake fails is
/// dropped. Returns the port.
fn serve_routes_tls(routes: FakeRoutes, config: Arc<rustls::ServerConfig>) -> u16 {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap().port()).unwrap();
            let acceptor = tokio_rustls::TlsAcceptor::from(config);
            let (conns, incoming) = tokio::sync::mpsc::channel::<std::io::Result<TlsConn>>(16);
            tokio::spawn(async move {
                while let Ok((tcp, _)) = listener.accept().await {
                    let (acceptor, conns) = (acceptor.clone(), conns.clone());
                    tokio::spawn(async move {
                        if let Ok(tls) = acceptor.accept(tcp).await {
                            let _ = conns.send(Ok(TlsConn(tls))).await;
                        }
                    });
                }
            });
            tonic::transport::Server::builder()
                .add_service(RoutesServer::new(routes))
                .serve_with_incoming(tokio_stream::wrappers::ReceiverStream::new(incoming))
                .await
                .unwrap();
        });
    });
    rx.recv().unwrap()
}

fn one_snapshot() -> FakeRoutes {
    let mut table = RouteTable::empty(2);
    table.version = 3;
    FakeRoutes {
        updates: vec![RouteUpdate {
            version: 3,
            base_version: 0,
            body: Some(Body::Snapshot(table.encode().to_vec())),
        }],
        subscribers: Arc::default(),
        applied: Arc::default(),
    }
}

#[test]
fn routes_watch_speaks_mutual_tls_with_a_client_certificate() {
    use crate::client::tests::{serve_tls, tls_files};
    use crate::commands::certs;
    let dir = tls_files();
    let d = dir.path();
    let now = time::OffsetDateTime::now_utc();
    let names = certs::Names::new(&["operator-ana".into()], &[]).unwrap();
    certs::issue(d, "operator-ana", &names, 30, false, now).unwrap();
    let path = |name: &str| d.join(name).to_str().unwrap().to_owned();
    let (ca, cert, key) = (
        path("ca.pem"),
        path("operator-ana.pem"),
        path("operator-ana.key"),
    );
    let config = mutual_tls_config(
        &d.join("server.pem"),
        &d.join("server.key"),
        &d.join("ca.pem"),
    );
    let routes = one_snapshot();
    let (subscribers, applied) = (routes.subscribers.clone(), routes.applied.clone());
    let grpc_port = serve_routes_tls(routes, config);
    let status = StatusReply {
        replica: "ctl-1".into(),
        leader: None,
        leader_term: 0,
        backend: "embedded".into(),
        registry_ok: true,
        grpc_address: format!("0.0.0.0:{grpc_port}"),
        route_version: 3,
        edges_live: 0,
        edges_draining: 0,
        apps_live: 0,
        shard_count: 2,
        shards_unowned: 2,
        subscribers: vec![],
        replicas: vec![],
    };
    let (endpoint, requests, server) = serve_tls(
        &d.join("server.pem"),
        &d.join("server.key"),
        vec![(200, serde_json::to_string(&status).unwrap())],
    );
    let tls_args = |extra: &[&str]| -> Vec<String> {
        let mut args: Vec<String> = ["routes", "watch", "--count", "1", "--ca", &ca]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let run_tls = |endpoint: &str, extra: &[&str]| {
        let args = tls_args(extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_at(endpoint, Some("s3cret"), &args)
    };

    // Without --cert: refused before anything is asked of the control plane.
    let err = run_tls(&endpoint, &[]).unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert!(
        err.to_string().contains("pass --cert FILE and --key FILE"),
        "{err}"
    );
    // Half a pair: refused, naming what is missing.
    let err = run_tls(&endpoint, &["--cert", &cert]).unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert!(
        err.to_string().contains("without its key") && err.to_string().contains(&cert),
        "{err}"
    );

    // The gRPC address asked of the control plane over HTTPS is dialled over mutual TLS.
    let text = run_tls(&endpoint, &["--cert", &cert, "--key", &key]).unwrap();
    assert_eq!(
        text,
        "v3 snapshot: 0 edges (0 draining), 0 apps, 2 shards (2 unowned)\n"
    );
    let head = requests.recv().unwrap().unwrap();
    assert!(head.starts_with("GET /v1/admin/status HTTP/1.1"), "{head}");
    server.join().unwrap();
    assert_eq!(subscribers.lock().unwrap().len(), 1);
    assert_eq!(applied.lock().unwrap().first().map(|(_, v)| *v), Some(3));

    // --grpc-endpoint without a scheme, beside an https control plane: https too, and no
    // status call (nothing listens at the control plane's address any more).
    let grpc = format!("127.0.0.1:{grpc_port}");
    let text = run_tls(
        &endpoint,
        &["--cert", &cert, "--key", &key, "--grpc-endpoint", &grpc],
    )
    .unwrap();
    assert!(text.starts_with("v3 snapshot"), "{text}");
    // Plain http to the gRPC port of a control plane with cluster TLS: refused.
    let err = run_tls(
        &endpoint,
        &[
            "--cert",
            &cert,
            "--key",
            &key,
            "--grpc-endpoint",
            &format!("http://{grpc}"),
        ],
    )
    .unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert!(err.to_string().contains("give an https:// URL"), "{err}");

    // A client certificate of another CA: found out before dialling.
    let other = tls_files();
    certs::issue(other.path(), "operator-ana", &names, 30, false, now).unwrap();
    let other_cert = other.path().join("operator-ana.pem");
    let other_key = other.path().join("operator-ana.key");
    let err = run_tls(
        &endpoint,
        &[
            "--cert",
            other_cert.to_str().unwrap(),
            "--key",
            other_key.to_str().unwrap(),
            "--grpc-endpoint",
            &grpc,
        ],
    )
    .unwrap_err();
    assert_eq!(err.exit_code(), 2);
    let msg = err.to_string();
    assert!(
        msg.contains(other_cert.to_str().unwrap())
            && msg.contains("was not issued by the cluster CA"),
        "{msg}"
    );
    // A key that is not there: named.
    let err = run_tls(
        &endpoint,
        &[
            "--cert",
            &cert,
            "--key",
            "/nonexistent/operator.key",
            "--grpc-endpoint",
            &grpc,
        ],
    )
    .unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert!(
        err.to_string()
            .contains("the client key file /nonexistent/operator.key (--key / PYLON_KEY"),
        "{err}"
    );

    // A server that trusts another CA for its clients refuses pylonctl's certificate.
    let picky = serve_routes_tls(
        one_snapshot(),
        mutual_tls_config(
            &d.join("server.pem"),
            &d.join("server.key"),
            &other.path().join("ca.pem"),
        ),
    );
    let err = run_tls(
        &endpoint,
        &[
            "--cert",
            &cert,
            "--key",
            &key,
            "--grpc-endpoint",
            &format!("127.0.0.1:{picky}"),
        ],
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("over mutual TLS: it refused pylonctl's client certificate")
            && msg.contains("operator-ana.pem")
            && msg.contains("--cluster-ca"),
        "{msg}"
    );

    // A server whose certificate does not name the address dialled.
    let names_other = certs::Names::new(&["ctl.example".into()], &[]).unwrap();
    certs::issue(d, "named", &names_other, 30, false, now).unwrap();
    let misnamed = serve_routes_tls(
        one_snapshot(),
        mutual_tls_config(
            &d.join("named.pem"),
            &d.join("named.key"),
            &d.join("ca.pem"),
        ),
    );
    let err = run_tls(
        &endpoint,
        &[
            "--cert",
            &cert,
            "--key",
            &key,
            "--grpc-endpoint",
            &format!("127.0.0.1:{misnamed}"),
        ],
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("its certificate does not name 127.0.0.1") && msg.contains("ctl.example"),
        "{msg}"
    );
}
