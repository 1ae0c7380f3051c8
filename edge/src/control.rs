//! The edge's link to the control plane: register, keep the lease alive with load
//! reports, follow the route table, and drain when an operator asks.
//!
//! Runs on the admin thread's tokio runtime, beside the glommio executors; it reaches them
//! only through [`ExecutorHandle`] commands.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use pylon_proto::control::membership_client::MembershipClient;
use pylon_proto::control::route_update::Body;
use pylon_proto::control::routes_client::RoutesClient;
use pylon_proto::control::{
    AppliedReport, KeepAliveRequest, Load, Member, MemberKind, RegisterRequest, RouteUpdate,
    SubscribeRequest,
};
use pylon_proto::routes::RouteView;
use pylon_service::control_link::Backoff;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

use crate::appstream::ShardTable;
use crate::executor::{EdgeShared, ExecutorCommand, ExecutorHandle, RUNNING};
use crate::metrics::KindLabel;

type Auth = Box<dyn FnMut(Request<()>) -> Result<Request<()>, Status> + Send + Sync>;
type Membership = MembershipClient<InterceptedService<Channel, Auth>>;

/// Why a session with one control-plane endpoint ended.
#[derive(Debug, thiserror::Error)]
enum LinkError {
    #[error("cannot connect: {0}")]
    Connect(#[from] tonic::transport::Error),
    #[error("{0}")]
    Rpc(#[from] Status),
    #[error("the route stream ended")]
    StreamEnded,
    #[error(transparent)]
    Routes(#[from] pylon_proto::routes::RouteError),
    #[error("a route update without a body")]
    EmptyUpdate,
}

pub struct ControlLink {
    shared: Arc<EdgeShared>,
    executors: ExecutorHandle,
    /// Where the shard owners go for the business-stream router.
    shards: Option<tokio::sync::watch::Sender<Arc<ShardTable>>>,
    /// The lease from the last registration, kept across endpoint failovers.
    lease: Option<i64>,
    /// The route table as last applied.
    routes: Option<RouteView>,
}

impl ControlLink {
    pub fn new(
        shared: Arc<EdgeShared>,
        executors: ExecutorHandle,
        shards: Option<tokio::sync::watch::Sender<Arc<ShardTable>>>,
    ) -> Self {
        ControlLink {
            shared,
            executors,
            shards,
            lease: None,
            routes: None,
        }
    }

    /// Talks to the control plane until the process exits, failing over between endpoints.
    pub async fn run(mut self) {
        let endpoints = self.shared.config.control.endpoints.clone();
        let mut backoff = Backoff::default();
        for endpoint in endpoints.iter().cycle() {
            let started = tokio::time::Instant::now();
            match self.session(endpoint).await {
                Ok(()) => return,
                Err(e) => {
                    backoff.session_ended(started.elapsed());
                    self.shared.metrics.control_connected.set(0);
                    self.shared.metrics.control_errors.inc();
                    let wait = backoff.next_wait();
                    tracing::warn!(%endpoint, "control plane link lost ({e}); retrying in {wait:?}");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// A unary call with a deadline of a third of the lease: a replica that hangs (say,
    /// cut off from its registry) is left for another before the lease runs out.
    fn unary<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        let ttl = self.shared.config.control.lease_ttl_secs.max(2);
        request.set_timeout(Duration::from_secs(ttl.into()) / 3);
        request
    }

    fn member(&self) -> Member {
        let config = &self.shared.config;
        Member {
            id: self.shared.edge_id.to_string(),
            kind: MemberKind::Edge.into(),
            tcp_address: config.advertise_tcp().unwrap_or_default(),
            tls_address: config.advertise_tls().unwrap_or_default(),
            grpc_address: String::new(),
            capacity: config.capacity(),
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }

    fn load(&self) -> Load {
        Load {
            sessions: u32::try_from(self.shared.session_count().max(0)).unwrap_or(u32::MAX),
            leaving: self.shared.state.load(Ordering::Relaxed) != RUNNING,
        }
    }

    async fn register(&mut self, membership: &mut Membership) -> Result<Duration, LinkError> {
        let ttl = self.shared.config.control.lease_ttl_secs;
        let reply = membership
            .register(self.unary(RegisterRequest {
                member: Some(self.member()),
                ttl_seconds: ttl,
            }))
            .await?
            .into_inner();
        self.lease = Some(reply.lease_id);
        self.shared.metrics.registrations.inc();
        tracing::info!(
            lease = reply.lease_id,
            ttl = reply.ttl_seconds,
            "registered with the control plane"
        );
        Ok(Duration::from_secs(reply.ttl_seconds.max(2).into()))
    }

    /// Keeps the lease alive; registers again if the control plane forgot it.
    async fn keep_alive(&mut self, membership: &mut Membership) -> Result<(), LinkError> {
        let Some(lease) = self.lease else {
            self.register(membership).await?;
            return Ok(());
        };
        let request = KeepAliveRequest {
            member_id: self.shared.edge_id.to_string(),
            lease_id: lease,
            load: Some(self.load()),
        };
        match membership.keep_alive(self.unary(request)).await {
            Ok(_) => Ok(()),
            Err(status) if status.code() == Code::NotFound => {
                tracing::warn!(
                    lease,
                    "the control plane no longer knows this edge's lease; registering again"
                );
                self.lease = None;
                self.register(membership).await.map(drop)
            }
            Err(status) => Err(status.into()),
        }
    }

    async fn session(&mut self, endpoint: &str) -> Result<(), LinkError> {
        let channel = pylon_service::control_link::connect(endpoint).await?;
        let mut membership: Membership =
            MembershipClient::with_interceptor(channel.clone(), bearer(&self.shared));
        let mut routes = RoutesClient::with_interceptor(channel, bearer(&self.shared));
        let ttl_secs = self.shared.config.control.lease_ttl_secs.max(2);
        // Reuse the lease across a failover when it is still alive.
        self.keep_alive(&mut membership).await?;
        let subscriber = format!("edge/{}", self.shared.edge_id);
        let mut stream = routes
            .subscribe(SubscribeRequest {
                subscriber_id: subscriber.clone(),
            })
            .await?
            .into_inner();
        self.shared.metrics.control_connected.set(1);
        tracing::info!(%endpoint, "connected to the control plane");
        let mut ticker = tokio::time::interval(Duration::from_secs(ttl_secs.into()) / 3);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => self.keep_alive(&mut membership).await?,
                message = stream.message() => {
                    let update = message?.ok_or(LinkError::StreamEnded)?;
                    let version = self.apply(update)?;
                    routes
                        .report_applied(self.unary(AppliedReport { subscriber_id: subscriber.clone(), version }))
                        .await?;
                }
            }
        }
    }

    /// Applies one update and acts on this edge's own entry; returns the version reached.
    fn apply(&mut self, update: RouteUpdate) -> Result<u64, LinkError> {
        let metrics = &self.shared.metrics;
        let count = |kind: &str| {
            metrics
                .route_updates
                .get_or_create(&KindLabel { kind: kind.into() })
                .inc();
        };
        let applied = match update.body.ok_or(LinkError::EmptyUpdate)? {
            Body::Snapshot(bytes) => RouteView::from_snapshot(&bytes).map(|view| {
                self.routes = Some(view);
                count("snapshot");
            }),
            Body::Delta(bytes) => match self.routes.as_mut() {
                Some(view) => view.apply_delta(&bytes).map(|()| count("delta")),
                None => Err(pylon_proto::routes::RouteError::VersionGap {
                    have: 0,
                    base: update.base_version,
                }),
            },
        };
        if let Err(e) = applied {
            count("invalid");
            // The next connection starts from a fresh snapshot.
            self.routes = None;
            return Err(e.into());
        }
        let Some(view) = self.routes.as_ref() else {
            return Err(LinkError::EmptyUpdate);
        };
        let version = view.version();
        metrics.route_version.set(version as i64);
        if let Some(shards) = &self.shards {
            shards.send_replace(Arc::new(ShardTable::from_view(view)));
        }
        // Absent (e.g. between a lease lapse and re-registering): no change, so a drained
        // edge does not briefly take chargers again.
        if let Some(me) = view.edge(&self.shared.edge_id) {
            self.set_operator_drain(me.draining);
        }
        Ok(version)
    }

    fn set_operator_drain(&self, drain: bool) {
        if self.shared.operator_drain.swap(drain, Ordering::Relaxed) == drain {
            return;
        }
        if drain {
            let period = Duration::from_secs(self.shared.config.control.drain_period_secs);
            tracing::info!(
                ?period,
                "an operator drained this edge: no new sessions; moving chargers off"
            );
            self.executors
                .broadcast(|| ExecutorCommand::MoveOff { period });
        } else {
            tracing::info!("the operator drain was lifted: accepting chargers again");
            self.executors.broadcast(|| ExecutorCommand::Resume);
        }
    }
}

fn bearer(shared: &EdgeShared) -> Auth {
    let header: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>> = shared
        .config
        .control
        .token
        .as_ref()
        .and_then(|t| format!("Bearer {t}").parse().ok());
    Box::new(move |mut request: Request<()>| {
        if let Some(h) = &header {
            request.metadata_mut().insert("authorization", h.clone());
        }
        Ok(request)
    })
}
