//! The control plane with real parts: `pylon-control` replicas on the embedded registry and
//! on real etcd (one member and a 3-member cluster), real `pylon-edge` processes that
//! register and follow routes, and real chargers that ask dispatch where to connect.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use pylon_bench::charger::{ChargerConn, Target};
use pylon_proto::control::membership_client::MembershipClient;
use pylon_proto::control::route_update::Body;
use pylon_proto::control::routes_client::RoutesClient;
use pylon_proto::control::{
    AppliedReport, Member, MemberKind, RegisterRequest, RouteUpdate, SubscribeRequest,
};
use pylon_proto::routes::RouteView;
use pylon_proto::ykc::PileNo;
use pylon_tests::certs::TestCerts;
use pylon_tests::control::{
    edge_flags, AppMember, Backend, ControlOptions, ControlProcess, ADMIN_TOKEN, CLUSTER_TOKEN,
};
use pylon_tests::edge::{EdgeOptions, EdgeProcess};
use pylon_tests::etcd::{EtcdCluster, PYLON_PASSWORD, PYLON_USER};
use pylon_tests::{binary, wait_for};
use tempfile::TempDir;

#[derive(Clone, Copy, Debug)]
enum Kind {
    Embedded,
    Etcd,
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A control plane (on `kind`) and edges registered with it.
struct World {
    edges: BTreeMap<String, EdgeProcess>,
    control: ControlProcess,
    certs: TestCerts,
    // Dropped last: the processes above stop before their registry and files go.
    _etcd: Option<EtcdCluster>,
    dir: TempDir,
}

impl World {
    fn new(kind: Kind) -> World {
        let dir = tempfile::tempdir().expect("temp dir");
        let certs = TestCerts::generate(dir.path()).expect("test certificates");
        let (backend, etcd) = match kind {
            Kind::Embedded => (Backend::Embedded(dir.path().join("registry.json")), None),
            Kind::Etcd => {
                let etcd = runtime()
                    .block_on(EtcdCluster::start(1))
                    .expect("starting etcd");
                (Backend::Etcd(etcd.endpoints()), Some(etcd))
            }
        };
        let control = ControlProcess::start(ControlOptions {
            dir: dir.path(),
            replica: "c1",
            backend,
            extra: vec![],
        });
        World {
            edges: BTreeMap::new(),
            control,
            certs,
            _etcd: etcd,
            dir,
        }
    }

    fn add_edge(&mut self, id: &str, extra: &[&str]) {
        let mut flags = edge_flags(id, &[self.control.grpc_url()]);
        flags.extend(extra.iter().map(|s| s.to_string()));
        let edge = EdgeProcess::start(EdgeOptions {
            certs: &self.certs,
            dir: self.dir.path(),
            executors: 1,
            extra: flags,
            with_rsa: false,
            tls_only: false,
            log_filter_from_file: false,
        });
        self.edges.insert(id.to_owned(), edge);
    }

    fn edge(&self, id: &str) -> &EdgeProcess {
        &self.edges[id]
    }

    /// Waits until the edge applied a route table in which it is (not) draining.
    fn wait_edge_state(&self, id: &str, state: &str) {
        wait_for(
            &format!("edge {id} to be {state}"),
            Duration::from_secs(15),
            || (self.edge(id).status()["state"] == state).then_some(()),
        );
    }
}

fn piles(n: u64) -> Vec<String> {
    (0..n)
        .map(|i| format!("{:014}", 32_010_200_000_000 + i))
        .collect()
}

fn primaries(control: &ControlProcess, piles: &[String]) -> Vec<String> {
    piles
        .iter()
        .map(|p| control.primary(p).unwrap_or_default())
        .collect()
}

fn dispatch_follows_drain_death_and_undrain(kind: Kind) {
    let mut w = World::new(kind);
    for id in ["e1", "e2", "e3", "e4"] {
        w.add_edge(id, &[]);
    }
    w.control.wait_live_edges(&["e1", "e2", "e3", "e4"]);
    let piles = piles(400);
    let before = primaries(&w.control, &piles);
    for id in ["e1", "e2", "e3", "e4"] {
        let n = before.iter().filter(|p| *p == id).count();
        assert!(n > 50, "{id} got only {n} of 400 piles: {before:?}");
    }
    assert_eq!(
        primaries(&w.control, &piles),
        before,
        "dispatch is not stable"
    );

    // The answer names the transport, a TTL and distinct backups.
    let (code, entry) = w.control.entry(&piles[0], None);
    assert_eq!(code, 200, "{entry}");
    assert_eq!(entry["transport"], "tls");
    assert_eq!(entry["backups"].as_array().map(Vec::len), Some(2));
    assert!(entry["ttl_seconds"].as_u64() > Some(0));
    let primary = &entry["primary"]["edge"];
    assert!(entry["backups"]
        .as_array()
        .into_iter()
        .flatten()
        .all(|b| &b["edge"] != primary));
    let primary_edge = w.edge(primary.as_str().unwrap_or_default());
    assert_eq!(entry["primary"]["address"], primary_edge.tls.to_string());

    // Drained: e2 gets no pile, and no other pile moves.
    let drained = w.control.post("/v1/admin/edges/e2/drain");
    assert_eq!(drained["draining"], true);
    w.wait_edge_state("e2", "draining");
    let after_drain = primaries(&w.control, &piles);
    for (b, a) in before.iter().zip(&after_drain) {
        assert_ne!(a, "e2");
        if b != "e2" {
            assert_eq!(a, b, "a pile of a surviving edge moved");
        }
    }

    // Killed: e3 drops out once its lease expires; the others keep their piles.
    w.edges.get_mut("e3").map(EdgeProcess::kill);
    w.control.wait_live_edges(&["e1", "e2", "e4"]);
    let after_kill = primaries(&w.control, &piles);
    for (b, a) in before.iter().zip(&after_kill) {
        assert!(a == "e1" || a == "e4", "pile sent to {a}");
        if b == "e1" || b == "e4" {
            assert_eq!(a, b, "a pile of a surviving edge moved");
        }
    }

    // Undrained: e2 takes back exactly its own piles.
    w.control.post("/v1/admin/edges/e2/undrain");
    w.wait_edge_state("e2", "running");
    let after_undrain = primaries(&w.control, &piles);
    for (b, a) in before.iter().zip(&after_undrain) {
        if b != "e3" {
            assert_eq!(a, b);
        }
    }
    let listed = w.control.get("/v1/admin/edges");
    assert_eq!(listed.as_array().map(Vec::len), Some(3), "{listed}");
}

#[test]
fn dispatch_follows_drain_death_and_undrain_embedded() {
    dispatch_follows_drain_death_and_undrain(Kind::Embedded);
}

#[test]
fn dispatch_follows_drain_death_and_undrain_etcd() {
    dispatch_follows_drain_death_and_undrain(Kind::Etcd);
}

/// A `pylon-fleet` process, stopped on drop.
struct Fleet(Child);

impl Fleet {
    fn start(dir: &std::path::Path, dispatch: &str, sessions: u64) -> Fleet {
        let log = std::fs::File::create(dir.join("fleet.log")).expect("fleet log");
        let child = Command::new(binary("pylon-fleet"))
            .args(["--dispatch", dispatch, "--sessions", &sessions.to_string()])
            .args([
                "--ramp",
                "200",
                "--progress-secs",
                "0",
                "--pile-base",
                "32010300000000",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting pylon-fleet");
        Fleet(child)
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn drained_edge_moves_its_chargers_elsewhere(kind: Kind) {
    let mut w = World::new(kind);
    w.add_edge("e1", &[]);
    w.add_edge("e2", &[]);
    w.control.wait_live_edges(&["e1", "e2"]);
    let url = format!("http://{}", w.control.http);
    let _fleet = Fleet::start(w.dir.path(), &url, 40);
    wait_for(
        "40 chargers on the two edges",
        Duration::from_secs(20),
        || (w.edge("e1").sessions() + w.edge("e2").sessions() == 40).then_some(()),
    );
    let (busier, other) = if w.edge("e1").sessions() >= w.edge("e2").sessions() {
        ("e1", "e2")
    } else {
        ("e2", "e1")
    };
    assert!(w.edge(busier).sessions() > 0);

    w.control.post(&format!("/v1/admin/edges/{busier}/drain"));
    wait_for(
        "every charger to move to the other edge",
        Duration::from_secs(30),
        || (w.edge(busier).sessions() == 0 && w.edge(other).sessions() == 40).then_some(()),
    );
    assert!(
        w.edge(busier)
            .metric("pylon_edge_closes_total", &["reason=\"moved\""])
            > 0.0
    );
    // A drained edge refuses new connections and says so on /readyz.
    assert_eq!(
        pylon_tests::http::get(w.edge(busier).admin, "/readyz").0,
        503
    );

    w.control.post(&format!("/v1/admin/edges/{busier}/undrain"));
    wait_for("the edge to accept again", Duration::from_secs(15), || {
        (pylon_tests::http::get(w.edge(busier).admin, "/readyz").0 == 200
            && std::net::TcpStream::connect(w.edge(busier).tcp).is_ok())
        .then_some(())
    });
}

#[test]
fn drained_edge_moves_its_chargers_elsewhere_embedded() {
    drained_edge_moves_its_chargers_elsewhere(Kind::Embedded);
}

#[test]
fn drained_edge_moves_its_chargers_elsewhere_etcd() {
    drained_edge_moves_its_chargers_elsewhere(Kind::Etcd);
}

#[test]
fn dispatch_respects_capacity_and_answers_503_without_edges() {
    let mut w = World::new(Kind::Embedded);
    let no_edge = pylon_tests::http::agent()
        .get(&format!(
            "http://{}/v1/entry?pile=32010200000001",
            w.control.http
        ))
        .call();
    match no_edge {
        Err(ureq::Error::Status(503, r)) => {
            assert_eq!(r.header("retry-after"), Some("5"));
            let body: serde_json::Value = r.into_json().unwrap_or_default();
            assert_eq!(body["error"]["code"], "no_edge");
        }
        other => panic!("expected 503, got {other:?}"),
    }

    w.add_edge("small", &["--capacity", "3"]);
    w.control.wait_live_edges(&["small"]);
    assert_eq!(
        w.control.primary("32010200000001").as_deref(),
        Some("small")
    );
    let rt = runtime();
    let target = Target {
        addr: w.edge("small").tcp,
        tls: None,
    };
    let mut chargers: Vec<ChargerConn> = (0..3u64)
        .map(|i| {
            rt.block_on(async {
                let mut c = ChargerConn::connect(&target, None).await.expect("connect");
                c.login(PileNo::from_u64(32_010_200_000_100 + i))
                    .await
                    .expect("login");
                c
            })
        })
        .collect();
    wait_for(
        "a full edge to leave dispatch",
        Duration::from_secs(15),
        || (w.control.entry("32010200000001", None).0 == 503).then_some(()),
    );
    drop(chargers.pop());
    wait_for(
        "the edge to come back below capacity",
        Duration::from_secs(15),
        || (w.control.primary("32010200000001").as_deref() == Some("small")).then_some(()),
    );
    assert!(
        w.control.metric(
            "pylon_control_dispatch_requests_total",
            &["result=\"no_edge\""]
        ) >= 2.0
    );
}

#[test]
fn bad_input_gets_typed_errors_and_counted() {
    let w = World::new(Kind::Embedded);
    let c = &w.control;
    for (query, code) in [
        ("", "bad_pile"),
        ("?pile=12ab", "bad_pile"),
        ("?pile=1234567890123456789", "bad_pile"),
        ("?pile=32010200000001&transport=udp", "bad_transport"),
    ] {
        let (status, body) = pylon_tests::http::get(c.http, &format!("/v1/entry{query}"));
        assert_eq!(status, 400, "{query}: {body}");
        let body: serde_json::Value = serde_json::from_str(&body).expect("a JSON error");
        assert_eq!(body["error"]["code"], code, "{query}");
        assert!(body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    }
    assert!(
        c.metric(
            "pylon_control_dispatch_requests_total",
            &["result=\"bad_request\""]
        ) >= 4.0
    );

    assert_eq!(c.admin("GET", "/v1/admin/edges", None).0, 401);
    assert_eq!(c.admin("GET", "/v1/admin/edges", Some("wrong")).0, 401);
    let (code, body) = c.admin("POST", "/v1/admin/edges/nope/drain", Some(ADMIN_TOKEN));
    assert_eq!(code, 404);
    assert_eq!(body["error"]["code"], "no_such_edge");
    let (code, body) = c.admin("GET", "/v1/admin/shards?pile=x", Some(ADMIN_TOKEN));
    assert_eq!(
        (code, body["error"]["code"].as_str()),
        (400, Some("bad_pile"))
    );

    let rt = runtime();
    let grpc = c.grpc_url();
    rt.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(grpc)
            .expect("endpoint")
            .connect()
            .await
            .expect("connect to control gRPC");
        // No token.
        let mut anonymous = MembershipClient::new(channel.clone());
        let refused = anonymous.register(RegisterRequest::default()).await;
        assert_eq!(
            refused.map(drop).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
        // Right token, invalid members.
        let token: tonic::metadata::MetadataValue<_> =
            format!("Bearer {CLUSTER_TOKEN}").parse().expect("ascii");
        let mut client =
            MembershipClient::with_interceptor(channel, move |mut r: tonic::Request<()>| {
                r.metadata_mut().insert("authorization", token.clone());
                Ok(r)
            });
        for member in [
            Member {
                id: "bad/id".into(),
                kind: MemberKind::Edge.into(),
                tcp_address: "127.0.0.1:1".into(),
                capacity: 1,
                ..Default::default()
            },
            Member {
                id: "e".into(),
                kind: MemberKind::Edge.into(),
                tcp_address: "nowhere".into(),
                capacity: 1,
                ..Default::default()
            },
            Member {
                id: "e".into(),
                kind: MemberKind::Edge.into(),
                capacity: 1,
                ..Default::default()
            },
            Member {
                id: "e".into(),
                kind: MemberKind::Unspecified.into(),
                tcp_address: "127.0.0.1:1".into(),
                capacity: 1,
                ..Default::default()
            },
            Member {
                id: "a".into(),
                kind: MemberKind::App.into(),
                grpc_address: "127.0.0.1:1".into(),
                capacity: 0,
                ..Default::default()
            },
        ] {
            let status = client
                .register(RegisterRequest {
                    member: Some(member.clone()),
                    ttl_seconds: 5,
                })
                .await
                .map(drop)
                .unwrap_err();
            assert_eq!(status.code(), tonic::Code::InvalidArgument, "{member:?}");
        }
        // A second process claiming a registered id (other addresses) is refused; the
        // same process registering again (same addresses) replaces its registration.
        let edge = |port: u16| Member {
            id: "dup".into(),
            kind: MemberKind::Edge.into(),
            tcp_address: format!("127.0.0.1:{port}"),
            capacity: 10,
            ..Default::default()
        };
        let register = |m: Member| RegisterRequest {
            member: Some(m),
            ttl_seconds: 30,
        };
        let first = client
            .register(register(edge(1000)))
            .await
            .expect("first registration");
        let second = client
            .register(register(edge(2000)))
            .await
            .map(drop)
            .unwrap_err();
        assert_eq!(second.code(), tonic::Code::AlreadyExists, "{second:?}");
        let again = client
            .register(register(edge(1000)))
            .await
            .expect("re-registration");
        assert_ne!(again.into_inner().lease_id, first.into_inner().lease_id);
    });
    assert!(c.metric("pylon_control_bad_member_requests_total", &[]) >= 7.0);
    assert_eq!(pylon_tests::http::get(c.http, "/healthz").0, 200);
    assert_eq!(c.live_edges(), vec!["dup"]);
}

/// Subscribes like an edge does; returns the stream.
async fn subscribe(
    grpc: String,
    name: &str,
) -> (
    RoutesClient<tonic::transport::Channel>,
    tonic::Streaming<RouteUpdate>,
) {
    let channel = tonic::transport::Endpoint::from_shared(grpc)
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let mut client = RoutesClient::new(channel);
    let mut request = tonic::Request::new(SubscribeRequest {
        subscriber_id: name.into(),
    });
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {ADMIN_TOKEN}").parse().expect("ascii"),
    );
    let stream = client
        .subscribe(request)
        .await
        .expect("subscribe")
        .into_inner();
    (client, stream)
}

#[test]
fn routes_arrive_as_a_snapshot_then_deltas_and_lag_is_measured() {
    let w = World::new(Kind::Embedded);
    let rt = runtime();
    let grpc = w.control.grpc_url();
    let (mut client, mut stream, mut view) = rt.block_on(async {
        let (client, mut stream) = subscribe(grpc.clone(), "test/fast").await;
        let first = stream
            .message()
            .await
            .expect("stream")
            .expect("first update");
        let Some(Body::Snapshot(bytes)) = first.body else {
            panic!("the first update is not a snapshot: {first:?}");
        };
        let view = RouteView::from_snapshot(&bytes).expect("valid snapshot");
        assert_eq!(view.version(), first.version);
        assert_eq!(view.shard_count(), 1024);
        (client, stream, view)
    });
    // A second subscriber that never reports what it applied.
    let (_slow_client, _slow_stream) = rt.block_on(subscribe(grpc.clone(), "test/slow"));

    let app = AppMember::start("app-1", vec![grpc.clone()]);
    rt.block_on(async {
        // Deltas until app-1 owns every shard.
        while (0..1024).any(|s| view.shard_owner_id(s).as_deref() != Some("app-1")) {
            let update = tokio::time::timeout(Duration::from_secs(15), stream.message())
                .await
                .expect("a route update in time")
                .expect("stream")
                .expect("an update");
            assert_eq!(
                update.base_version,
                view.version(),
                "deltas chain without gaps"
            );
            let Some(Body::Delta(bytes)) = update.body else {
                panic!("expected a delta: {update:?}");
            };
            view.apply_delta(&bytes).expect("delta applies");
            assert_eq!(view.version(), update.version);
        }
        assert_eq!(view.app("app-1").map(|a| a.capacity), Some(100_000));
        let mut report = tonic::Request::new(AppliedReport {
            subscriber_id: "test/fast".into(),
            version: view.version(),
        });
        report.metadata_mut().insert(
            "authorization",
            format!("Bearer {ADMIN_TOKEN}").parse().expect("ascii"),
        );
        client.report_applied(report).await.expect("report applied");
    });
    let shards = w.control.get("/v1/admin/shards");
    assert_eq!(shards["per_app"]["app-1"], 1024);
    let pile = w.control.get("/v1/admin/shards?pile=32010200000001");
    assert_eq!(pile["owner"], "app-1");
    let status = w.control.status();
    let subscribers = status["subscribers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let fast = subscribers
        .iter()
        .find(|s| s["id"] == "test/fast")
        .expect("fast subscriber");
    assert_eq!(fast["lag_seconds"], 0.0);
    let slow = subscribers
        .iter()
        .find(|s| s["id"] == "test/slow")
        .expect("slow subscriber");
    assert!(slow["lag_seconds"].as_f64() > Some(0.0), "{status}");
    assert!(
        w.control
            .metric("pylon_control_route_slowest_lag_seconds", &[])
            > 0.0
    );
    app.stop();
}

#[test]
fn etcd_leader_loss_keeps_registration_dispatch_and_push_working() {
    let rt = runtime();
    let mut etcd = rt.block_on(EtcdCluster::start(3)).expect("3-member etcd");
    let dir = tempfile::tempdir().expect("temp dir");
    let certs = TestCerts::generate(dir.path()).expect("certs");
    let control = ControlProcess::start(ControlOptions {
        dir: dir.path(),
        replica: "c1",
        backend: Backend::Etcd(etcd.endpoints()),
        extra: vec![],
    });
    let start_edge = |id: &str| {
        EdgeProcess::start(EdgeOptions {
            certs: &certs,
            dir: dir.path(),
            executors: 1,
            extra: edge_flags(id, &[control.grpc_url()]),
            with_rsa: false,
            tls_only: false,
            log_filter_from_file: false,
        })
    };
    let _e1 = start_edge("e1");
    let _e2 = start_edge("e2");
    control.wait_live_edges(&["e1", "e2"]);

    let leader = rt
        .block_on(etcd.leader_index())
        .expect("the etcd cluster has a leader");
    etcd.kill(leader);

    // Registration: a new edge joins through the surviving members.
    let e3 = start_edge("e3");
    control.wait_live_edges(&["e1", "e2", "e3"]);
    // Keep-alives: nobody expired (not even briefly, to register again) over two TTLs.
    std::thread::sleep(Duration::from_secs(8));
    assert_eq!(
        control.live_edges(),
        vec!["e1", "e2", "e3"],
        "{}",
        etcd.log_tails(20)
    );
    assert_eq!(
        control.metric("pylon_control_keepalives_total", &["result=\"expired\""]),
        0.0,
        "an edge lost its lease while the etcd leader changed"
    );
    assert_eq!(
        control.metric("pylon_control_registrations_total", &[]),
        3.0,
        "an edge had to register again"
    );
    // Dispatch sends piles to the new edge.
    let to_e3 = piles(200)
        .iter()
        .filter(|p| control.primary(p).as_deref() == Some("e3"))
        .count();
    assert!(to_e3 > 20, "e3 got {to_e3} of 200 piles");
    // Push: a drain reaches the edge.
    control.post("/v1/admin/edges/e3/drain");
    wait_for("e3 to learn it is drained", Duration::from_secs(15), || {
        (e3.status()["state"] == "draining").then_some(())
    });
    assert!(control.status()["registry_ok"] == true);
}

/// Two control replicas on one etcd member, and an edge `e1` that lists both (it tries
/// them in order, so it starts on `ca`). Everything stops when this is dropped.
struct TwoReplicas {
    replicas: [ControlProcess; 2],
    endpoints: Vec<String>,
    edge: EdgeProcess,
    _certs: TestCerts,
    _dir: TempDir,
    _etcd: EtcdCluster,
    _rt: tokio::runtime::Runtime,
}

impl TwoReplicas {
    fn start() -> TwoReplicas {
        let rt = runtime();
        // etcd as in production: TLS, client certificates, etcd's own users.
        let etcd = rt.block_on(EtcdCluster::start_secure(1)).expect("etcd");
        let dir = tempfile::tempdir().expect("temp dir");
        let certs = TestCerts::generate(dir.path()).expect("certs");
        let etcd_certs = etcd.certs().expect("a secure etcd");
        let password_file = dir.path().join("etcd.password");
        std::fs::write(&password_file, format!("{PYLON_PASSWORD}\n")).expect("password file");
        let tls: Vec<String> = [
            "--etcd-ca",
            &etcd_certs.ca.display().to_string(),
            "--etcd-cert",
            &etcd_certs.pylon.cert.display().to_string(),
            "--etcd-key",
            &etcd_certs.pylon.key.display().to_string(),
        ]
        .map(str::to_owned)
        .into();
        let start = |replica: &str, extra: Vec<String>| {
            ControlProcess::start(ControlOptions {
                dir: dir.path(),
                replica,
                backend: Backend::Etcd(etcd.endpoints()),
                extra,
            })
        };
        // One replica logs in to etcd with a password, the other by its certificate's name.
        let mut with_password = tls.clone();
        with_password.extend([
            "--etcd-user".to_owned(),
            PYLON_USER.to_owned(),
            "--etcd-password-file".to_owned(),
            password_file.display().to_string(),
        ]);
        let replicas = [start("ca", with_password), start("cb", tls)];
        let endpoints: Vec<String> = replicas.iter().map(ControlProcess::grpc_url).collect();
        let edge = EdgeProcess::start(EdgeOptions {
            certs: &certs,
            dir: dir.path(),
            executors: 1,
            extra: edge_flags("e1", &endpoints),
            with_rsa: false,
            tls_only: false,
            log_filter_from_file: false,
        });
        TwoReplicas {
            replicas,
            endpoints,
            edge,
            _certs: certs,
            _dir: dir,
            _etcd: etcd,
            _rt: rt,
        }
    }
}

#[test]
fn control_replicas_hand_over_leadership_and_keep_pushing() {
    // Bound whole: the etcd member and the files must live as long as the test.
    let mut world = TwoReplicas::start();
    let (replicas, endpoints, edge) = (&mut world.replicas, &world.endpoints, &world.edge);
    let app1 = AppMember::start("app-1", endpoints.clone());
    let leader = wait_for("a leader", Duration::from_secs(15), || {
        replicas[0].status()["leader"].as_str().map(str::to_owned)
    });
    let shards_of = |c: &ControlProcess| c.get("/v1/admin/shards")["per_app"].clone();
    wait_for("app-1 to own every shard", Duration::from_secs(15), || {
        (shards_of(&replicas[1])["app-1"] == 1024).then_some(())
    });
    assert_eq!(replicas[1].status()["leader"], leader.as_str());

    // Kill the leader outright: the other replica takes over within the leader TTL.
    let dead = replicas
        .iter()
        .position(|r| r.replica == leader)
        .expect("leader is ours");
    replicas[dead].kill();
    let survivor = &replicas[1 - dead];
    wait_for("the survivor to lead", Duration::from_secs(15), || {
        (survivor.status()["leader"] == survivor.replica.as_str()
            && survivor.metric("pylon_control_is_leader", &[]) == 1.0)
            .then_some(())
    });

    // The new leader assigns shards: a second app instance gets half.
    let app2 = AppMember::start("app-2", endpoints.clone());
    wait_for(
        "shards split between two instances",
        Duration::from_secs(20),
        || {
            let per_app = shards_of(survivor);
            (per_app["app-1"] == 512 && per_app["app-2"] == 512).then_some(())
        },
    );
    // Pushes continue: the edge (on whichever replica survives) sees a drain.
    survivor.wait_live_edges(&["e1"]);
    survivor.post("/v1/admin/edges/e1/drain");
    wait_for("e1 to learn it is drained", Duration::from_secs(20), || {
        (edge.status()["state"] == "draining").then_some(())
    });
    app1.stop();
    app2.stop();
}

/// A replica that freezes (SIGSTOP: its sockets stay open, nothing answers, no error ever
/// comes) is noticed by its deadlines and keep-alive pings and left: the edge moves to the
/// other replica, stays registered and still gets pushes.
#[test]
fn a_frozen_control_replica_is_left_for_a_live_one() {
    let world = TwoReplicas::start();
    let (replicas, edge) = (&world.replicas, &world.edge);
    replicas[1].wait_live_edges(&["e1"]);
    wait_for("the edge to follow routes", Duration::from_secs(15), || {
        (edge.metric("pylon_edge_control_connected", &[]) == 1.0).then_some(())
    });
    let errors_before = edge.metric("pylon_edge_control_errors_total", &[]);

    replicas[0].signal(libc::SIGSTOP);
    // Through the live replica, an operator drains the edge: it must hear it, which it
    // can only through `cb`.
    replicas[1].post("/v1/admin/edges/e1/drain");
    wait_for("e1 to learn it is drained", Duration::from_secs(40), || {
        (edge.status()["state"] == "draining").then_some(())
    });
    assert!(edge.metric("pylon_edge_control_errors_total", &[]) > errors_before);
    wait_for("e1 to stay registered", Duration::from_secs(15), || {
        replicas[1]
            .get("/v1/admin/edges")
            .as_array()
            .into_iter()
            .flatten()
            .any(|e| e["id"] == "e1" && e["live"] == true)
            .then_some(())
    });
    replicas[0].signal(libc::SIGCONT);
}

/// A registry on another machine is never reached in the clear: the replica refuses to
/// start, and says what to do.
#[test]
fn control_refuses_a_remote_etcd_over_plain_http() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = std::process::Command::new(pylon_tests::binary("pylon-control"))
        .args(["--registry", "etcd", "--etcd", "http://192.0.2.1:2379"])
        .args(["--cluster-token", "t", "--admin-token", "a"])
        .current_dir(dir.path())
        .output()
        .expect("running pylon-control");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "it started: {stderr}");
    assert!(
        stderr.contains("192.0.2.1:2379") && stderr.contains("in the clear"),
        "{stderr}"
    );
}
