//! The link against fake control-plane replicas served in memory, on paused tokio time:
//! every wait (keep-alive period, call deadline, backoff, HTTP/2 keep-alive) is checked
//! against the clock without a test taking that long.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use pylon_proto::control::membership_server::{Membership, MembershipServer};
use pylon_proto::control::route_update::Body;
use pylon_proto::control::routes_server::{Routes, RoutesServer};
use pylon_proto::control::{
    AppliedReply, AppliedReport, KeepAliveReply, KeepAliveRequest, LeaveReply, LeaveRequest, Load,
    Member, MemberKind, RegisterReply, RegisterRequest, RouteUpdate, SubscribeRequest,
};
use pylon_proto::routes::{EdgeRoute, RouteTable, RouteView};
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tonic::{Request, Response, Status};

use super::*;

const TOKEN: &str = "cluster-secret";

/// What every replica shares, as replicas share their registry.
#[derive(Default)]
struct Cluster {
    next_lease: i64,
    live_leases: Vec<i64>,
    table: RouteTable,
    /// Every call, in order: (replica, call, when).
    calls: Vec<Call>,
    subscribers: Vec<mpsc::Sender<Result<RouteUpdate, Status>>>,
}

#[derive(Debug, Clone)]
struct Call {
    replica: String,
    what: What,
    at: Instant,
    token_ok: bool,
}

#[derive(Debug, Clone, PartialEq)]
enum What {
    Connect,
    Register(Member),
    KeepAlive { lease: i64, load: Option<Load> },
    Leave(i64),
    Subscribe(String),
    Applied(u64),
}

/// One replica: it shares the cluster, and can be down (refuses connections) or frozen
/// (like a process stopped with SIGSTOP: its connections take bytes and never answer).
#[derive(Clone)]
struct Replica {
    name: String,
    cluster: Arc<Mutex<Cluster>>,
    down: Arc<AtomicBool>,
    frozen: Arc<AtomicBool>,
}

impl Replica {
    fn record(&self, what: What, token_ok: bool) {
        let mut cluster = self.cluster.lock().expect("cluster");
        cluster.calls.push(Call {
            replica: self.name.clone(),
            what,
            at: Instant::now(),
            token_ok,
        });
    }

    fn check<T>(&self, request: &Request<T>, what: What) {
        let token_ok = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            == Some(&format!("Bearer {TOKEN}"));
        self.record(what, token_ok);
    }
}

#[tonic::async_trait]
impl Membership for Replica {
    async fn register(
        &self,
        request: Request<RegisterRequest>,
    ) -> Result<Response<RegisterReply>, Status> {
        let member = request.get_ref().member.clone().unwrap_or_default();
        self.check(&request, What::Register(member));
        let mut cluster = self.cluster.lock().expect("cluster");
        cluster.next_lease += 1;
        let lease = cluster.next_lease;
        cluster.live_leases.push(lease);
        Ok(Response::new(RegisterReply {
            lease_id: lease,
            ttl_seconds: request.get_ref().ttl_seconds,
        }))
    }

    async fn keep_alive(
        &self,
        request: Request<KeepAliveRequest>,
    ) -> Result<Response<KeepAliveReply>, Status> {
        let r = request.get_ref();
        self.check(
            &request,
            What::KeepAlive {
                lease: r.lease_id,
                load: r.load,
            },
        );
        let cluster = self.cluster.lock().expect("cluster");
        if cluster.live_leases.contains(&r.lease_id) {
            Ok(Response::new(KeepAliveReply { ttl_seconds: 9 }))
        } else {
            Err(Status::not_found("no such lease"))
        }
    }

    async fn leave(&self, request: Request<LeaveRequest>) -> Result<Response<LeaveReply>, Status> {
        let lease = request.get_ref().lease_id;
        self.check(&request, What::Leave(lease));
        self.cluster
            .lock()
            .expect("cluster")
            .live_leases
            .retain(|&l| l != lease);
        Ok(Response::new(LeaveReply {}))
    }

    async fn platform(
        &self,
        _: Request<pylon_proto::control::PlatformRequest>,
    ) -> Result<Response<pylon_proto::control::PlatformReply>, Status> {
        Err(Status::unimplemented(
            "the link does not ask for the platform",
        ))
    }
}

#[tonic::async_trait]
impl Routes for Replica {
    type SubscribeStream = tokio_stream::wrappers::ReceiverStream<Result<RouteUpdate, Status>>;

    async fn subscribe(
        &self,
        request: Request<SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        self.check(
            &request,
            What::Subscribe(request.get_ref().subscriber_id.clone()),
        );
        let (tx, rx) = mpsc::channel(16);
        let mut cluster = self.cluster.lock().expect("cluster");
        let snapshot = snapshot(&cluster.table);
        let _ = tx.try_send(Ok(snapshot));
        cluster.subscribers.push(tx);
        Ok(Response::new(tokio_stream::wrappers::ReceiverStream::new(
            rx,
        )))
    }

    async fn report_applied(
        &self,
        request: Request<AppliedReport>,
    ) -> Result<Response<AppliedReply>, Status> {
        self.check(&request, What::Applied(request.get_ref().version));
        Ok(Response::new(AppliedReply {}))
    }
}

fn snapshot(table: &RouteTable) -> RouteUpdate {
    RouteUpdate {
        version: table.version,
        base_version: 0,
        body: Some(Body::Snapshot(table.encode().to_vec())),
    }
}

/// The server side of an in-memory connection, which stops moving bytes when frozen.
struct Freezable {
    io: DuplexStream,
    frozen: Arc<AtomicBool>,
}

impl AsyncRead for Freezable {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.frozen.load(Ordering::SeqCst) {
            return Poll::Pending;
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Freezable {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.frozen.load(Ordering::SeqCst) {
            return Poll::Pending;
        }
        Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.frozen.load(Ordering::SeqCst) {
            return Poll::Pending;
        }
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

impl tonic::transport::server::Connected for Freezable {
    type ConnectInfo = ();
    fn connect_info(&self) {}
}

/// Replicas `a`, `b`, ... reached at `http://a:7401`, ...
struct World {
    cluster: Arc<Mutex<Cluster>>,
    replicas: HashMap<String, Replica>,
}

impl World {
    fn new(names: &[&str]) -> Self {
        let cluster = Arc::new(Mutex::new(Cluster::default()));
        let replicas = names
            .iter()
            .map(|name| {
                let replica = Replica {
                    name: (*name).into(),
                    cluster: cluster.clone(),
                    down: Default::default(),
                    frozen: Default::default(),
                };
                ((*name).to_owned(), replica)
            })
            .collect();
        World { cluster, replicas }
    }

    fn endpoints(&self, names: &[&str]) -> Vec<String> {
        names.iter().map(|n| format!("http://{n}:7401")).collect()
    }

    fn replica(&self, name: &str) -> &Replica {
        &self.replicas[name]
    }

    /// Opens in-memory connections to the replicas, with the shared channel settings.
    fn connector(&self) -> Connector {
        let replicas = Arc::new(self.replicas.clone());
        Arc::new(move |url: String| {
            let replicas = replicas.clone();
            Box::pin(async move {
                let endpoint = super::endpoint(&url)?;
                let name = endpoint.uri().host().unwrap_or_default().to_owned();
                let replica = replicas.get(&name).cloned().ok_or("no such replica")?;
                replica.record(What::Connect, true);
                let channel = endpoint
                    .connect_with_connector(tower::service_fn(move |_| {
                        let replica = replica.clone();
                        async move {
                            if replica.down.load(Ordering::SeqCst) {
                                return Err(std::io::Error::from(
                                    std::io::ErrorKind::ConnectionRefused,
                                ));
                            }
                            let (client, server) = tokio::io::duplex(64 * 1024);
                            let server = Freezable {
                                io: server,
                                frozen: replica.frozen.clone(),
                            };
                            tokio::spawn(
                                tonic::transport::Server::builder()
                                    .add_service(MembershipServer::new(replica.clone()))
                                    .add_service(RoutesServer::new(replica))
                                    .serve_with_incoming(tokio_stream::once(
                                        Ok::<_, std::io::Error>(server),
                                    )),
                            );
                            Ok(TokioIo::new(client))
                        }
                    }))
                    .await?;
                Ok(channel)
            })
        })
    }

    fn calls(&self) -> Vec<Call> {
        self.cluster.lock().expect("cluster").calls.clone()
    }

    /// Changes the table and pushes the change to every subscriber as a delta.
    fn publish(&self, change: impl FnOnce(&mut RouteTable)) {
        let mut cluster = self.cluster.lock().expect("cluster");
        let before = cluster.table.clone();
        change(&mut cluster.table);
        cluster.table.version = before.version + 1;
        let delta = before.diff(&cluster.table);
        let update = RouteUpdate {
            version: delta.version,
            base_version: delta.base_version,
            body: Some(Body::Delta(delta.encode().to_vec())),
        };
        cluster
            .subscribers
            .retain(|tx| tx.try_send(Ok(update.clone())).is_ok());
    }

    /// Sends every subscriber a raw update (for updates that cannot be applied).
    fn push_raw(&self, update: RouteUpdate) {
        let mut cluster = self.cluster.lock().expect("cluster");
        cluster
            .subscribers
            .retain(|tx| tx.try_send(Ok(update.clone())).is_ok());
    }
}

/// Records what the link told it, and reports a fixed load.
#[derive(Clone, Default)]
struct Recorder {
    seen: Arc<Mutex<Seen>>,
}

#[derive(Default)]
struct Seen {
    versions: Vec<u64>,
    draining: Vec<bool>,
    events: Vec<String>,
}

impl Participant for Recorder {
    fn load(&self) -> Load {
        Load {
            sessions: 42,
            leaving: false,
        }
    }
    fn routes_applied(&mut self, view: &RouteView) {
        let mut seen = self.seen.lock().expect("seen");
        seen.versions.push(view.version());
        seen.draining
            .push(view.edge("e1").is_some_and(|e| e.draining));
    }
    fn event(&mut self, event: LinkEvent<'_>) {
        let text = match event {
            LinkEvent::Connected { endpoint } => format!("connected {endpoint}"),
            LinkEvent::Lost { endpoint, .. } => format!("lost {endpoint}"),
            LinkEvent::Registered { lease } => format!("registered {lease}"),
            LinkEvent::RouteUpdate(kind) => kind.as_str().to_owned(),
        };
        self.seen.lock().expect("seen").events.push(text);
    }
}

fn edge(id: &str) -> EdgeRoute {
    EdgeRoute {
        id: id.into(),
        tcp_address: "10.0.0.1:8767".into(),
        tls_address: String::new(),
        capacity: 10,
        draining: false,
    }
}

fn member() -> Member {
    Member {
        id: "app-1".into(),
        kind: MemberKind::App.into(),
        grpc_address: "10.0.0.1:7500".into(),
        capacity: 100,
        ..Default::default()
    }
}

/// Starts a link; returns its stop switch and task.
fn start(
    world: &World,
    settings: LinkSettings,
    recorder: &Recorder,
) -> (watch::Sender<bool>, tokio::task::JoinHandle<()>) {
    let (stop_tx, stop_rx) = watch::channel(false);
    let link = ControlLink::new(settings, recorder.clone()).with_connector(world.connector());
    (stop_tx, tokio::spawn(link.run(stop_rx)))
}

fn registering(endpoints: Vec<String>) -> LinkSettings {
    LinkSettings {
        endpoints,
        token: Some(TOKEN.into()),
        member: Some(member()),
        lease_ttl_secs: 9,
        subscriber: None,
    }
}

fn following(endpoints: Vec<String>) -> LinkSettings {
    LinkSettings {
        endpoints,
        token: Some(TOKEN.into()),
        member: None,
        lease_ttl_secs: 9,
        subscriber: Some("balancer/1".into()),
    }
}

async fn wait(secs: f64) {
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
}

fn keep_alives(calls: &[Call]) -> Vec<&Call> {
    calls
        .iter()
        .filter(|c| matches!(c.what, What::KeepAlive { .. }))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn registers_keeps_the_lease_alive_every_third_of_it_and_leaves_on_stop() {
    let world = World::new(&["a"]);
    let recorder = Recorder::default();
    let started = Instant::now();
    let (stop, task) = start(&world, registering(world.endpoints(&["a"])), &recorder);
    wait(10.0).await;
    let calls = world.calls();
    assert!(
        matches!(&calls[1].what, What::Register(m) if *m == member()),
        "{calls:?}"
    );
    let beats = keep_alives(&calls);
    assert_eq!(beats.len(), 3, "{calls:?}");
    for (n, beat) in beats.iter().enumerate() {
        let expected = Duration::from_secs(3 * (n as u64 + 1));
        let at = beat.at - started;
        assert!(
            at >= expected && at < expected + Duration::from_millis(100),
            "keep-alive {n} at {at:?}"
        );
        assert_eq!(
            beat.what,
            What::KeepAlive {
                lease: 1,
                load: Some(Load {
                    sessions: 42,
                    leaving: false
                })
            }
        );
    }
    assert!(calls.iter().all(|c| c.token_ok), "{calls:?}");

    stop.send_replace(true);
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the link stops")
        .expect("no panic");
    assert_eq!(
        world.calls().last().map(|c| c.what.clone()),
        Some(What::Leave(1))
    );
    assert!(world
        .cluster
        .lock()
        .expect("cluster")
        .live_leases
        .is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_forgotten_lease_is_registered_again() {
    let world = World::new(&["a"]);
    let recorder = Recorder::default();
    let _link = start(&world, registering(world.endpoints(&["a"])), &recorder);
    wait(1.0).await;
    // The registry lost the lease (say, the member was partitioned past its TTL).
    world.cluster.lock().expect("cluster").live_leases.clear();
    wait(6.5).await;
    let calls = world.calls();
    let registers: Vec<&Call> = calls
        .iter()
        .filter(|c| matches!(c.what, What::Register(_)))
        .collect();
    assert_eq!(registers.len(), 2, "{calls:?}");
    // The next keep-alive carries the new lease, on the same connection.
    assert!(keep_alives(&calls)
        .iter()
        .any(|c| matches!(c.what, What::KeepAlive { lease: 2, .. })));
    assert_eq!(calls.iter().filter(|c| c.what == What::Connect).count(), 1);
}

#[tokio::test(start_paused = true)]
async fn unreachable_replicas_are_tried_in_turn_with_growing_jittered_waits() {
    let world = World::new(&["a", "b"]);
    for r in ["a", "b"] {
        world.replica(r).down.store(true, Ordering::SeqCst);
    }
    let recorder = Recorder::default();
    let started = Instant::now();
    let _link = start(&world, registering(world.endpoints(&["a", "b"])), &recorder);
    wait(60.0).await;
    let connects: Vec<Call> = world
        .calls()
        .into_iter()
        .filter(|c| c.what == What::Connect)
        .collect();
    let order: Vec<&str> = connects
        .iter()
        .take(4)
        .map(|c| c.replica.as_str())
        .collect();
    assert_eq!(order, ["a", "b", "a", "b"]);
    // Each wait is between half and all of its step; steps double from 200 ms to 5 s.
    let mut step = BACKOFF_MIN;
    let mut previous = started;
    for c in connects.iter().skip(1) {
        let waited = c.at - previous;
        assert!(
            waited >= step / 2 && waited <= step + Duration::from_millis(50),
            "waited {waited:?} for a step of {step:?}"
        );
        previous = c.at;
        step = (step * 2).min(BACKOFF_MAX);
    }
    assert!(connects.len() >= 12, "{}", connects.len());

    // A replica comes back: the link registers through it.
    world.replica("b").down.store(false, Ordering::SeqCst);
    wait(12.0).await;
    assert!(world
        .calls()
        .iter()
        .any(|c| c.replica == "b" && matches!(c.what, What::Register(_))));
}

#[tokio::test(start_paused = true)]
async fn a_frozen_replica_is_left_and_the_lease_kept_through_another() {
    let world = World::new(&["a", "b"]);
    let recorder = Recorder::default();
    let _link = start(&world, registering(world.endpoints(&["a", "b"])), &recorder);
    wait(4.0).await;
    world.replica("a").frozen.store(true, Ordering::SeqCst);
    let frozen_at = Instant::now();
    wait(10.0).await;
    let calls = world.calls();
    let on_b: Vec<&Call> = calls.iter().filter(|c| c.replica == "b").collect();
    let first_beat = on_b
        .iter()
        .find(|c| matches!(c.what, What::KeepAlive { .. }))
        .unwrap_or_else(|| panic!("no keep-alive through b: {calls:?}"));
    // The same lease, renewed before it could lapse (9 s after the last renewal at 3 s).
    assert!(matches!(first_beat.what, What::KeepAlive { lease: 1, .. }));
    assert!(
        first_beat.at - frozen_at < Duration::from_secs(8),
        "{:?}",
        first_beat.at - frozen_at
    );
    assert!(!calls
        .iter()
        .any(|c| matches!(c.what, What::Register(_)) && c.replica == "b"));
    let seen = recorder.seen.lock().expect("seen");
    assert!(
        seen.events.contains(&"lost http://a:7401".to_owned()),
        "{:?}",
        seen.events
    );
}

#[tokio::test(start_paused = true)]
async fn routes_are_followed_snapshot_then_deltas_and_each_version_reported() {
    let world = World::new(&["a"]);
    world.cluster.lock().expect("cluster").table = RouteTable {
        version: 7,
        ..RouteTable::empty(16)
    };
    let recorder = Recorder::default();
    let _link = start(&world, following(world.endpoints(&["a"])), &recorder);
    wait(1.0).await;
    world.publish(|t| {
        t.edges.push(edge("e1"));
    });
    wait(1.0).await;
    world.publish(|t| t.edges[0].draining = true);
    wait(1.0).await;
    {
        let seen = recorder.seen.lock().expect("seen");
        assert_eq!(seen.versions, [7, 8, 9]);
        assert_eq!(seen.draining, [false, false, true]);
        assert_eq!(
            seen.events,
            ["connected http://a:7401", "snapshot", "delta", "delta"]
        );
    }
    let calls = world.calls();
    let applied: Vec<u64> = calls
        .iter()
        .filter_map(|c| match c.what {
            What::Applied(v) => Some(v),
            _ => None,
        })
        .collect();
    assert_eq!(applied, [7, 8, 9]);
    assert!(calls.contains_subscribe("balancer/1"));
    // A following-only link never registers.
    assert!(!calls
        .iter()
        .any(|c| matches!(c.what, What::Register(_) | What::KeepAlive { .. })));
}

trait CallsExt {
    fn contains_subscribe(&self, name: &str) -> bool;
}

impl CallsExt for Vec<Call> {
    fn contains_subscribe(&self, name: &str) -> bool {
        self.iter()
            .any(|c| c.what == What::Subscribe(name.into()) && c.token_ok)
    }
}

#[tokio::test(start_paused = true)]
async fn an_update_that_cannot_be_applied_starts_over_from_a_snapshot() {
    let world = World::new(&["a"]);
    let recorder = Recorder::default();
    let _link = start(&world, following(world.endpoints(&["a"])), &recorder);
    wait(1.0).await;
    world.push_raw(RouteUpdate {
        version: 99,
        base_version: 98,
        body: Some(Body::Delta(b"not a delta".to_vec())),
    });
    wait(2.0).await;
    let calls = world.calls();
    let subscribes = calls
        .iter()
        .filter(|c| matches!(c.what, What::Subscribe(_)))
        .count();
    assert_eq!(subscribes, 2, "{calls:?}");
    let seen = recorder.seen.lock().expect("seen");
    assert_eq!(
        seen.events.iter().filter(|e| *e == "snapshot").count(),
        2,
        "{:?}",
        seen.events
    );
    assert!(seen.events.contains(&"invalid".to_owned()));
}

#[tokio::test(start_paused = true)]
async fn a_route_stream_from_a_frozen_replica_is_left_by_http2_keep_alive() {
    let world = World::new(&["a", "b"]);
    let recorder = Recorder::default();
    let _link = start(&world, following(world.endpoints(&["a", "b"])), &recorder);
    wait(1.0).await;
    // Nothing but the stream is open, so only HTTP/2 pings can notice the freeze.
    world.replica("a").frozen.store(true, Ordering::SeqCst);
    let frozen_at = Instant::now();
    wait(30.0).await;
    let calls = world.calls();
    let resubscribed = calls
        .iter()
        .find(|c| c.replica == "b" && matches!(c.what, What::Subscribe(_)))
        .unwrap_or_else(|| panic!("never subscribed through b: {calls:?}"));
    let took = resubscribed.at - frozen_at;
    assert!(
        took <= KEEP_ALIVE_INTERVAL + KEEP_ALIVE_TIMEOUT + BACKOFF_MIN + Duration::from_secs(1),
        "{took:?}"
    );
    // And the change made meanwhile arrives through b.
    world.publish(|t| t.edges.push(edge("e2")));
    wait(1.0).await;
    assert_eq!(
        recorder.seen.lock().expect("seen").versions.last(),
        Some(&1)
    );
}
