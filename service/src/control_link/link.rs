//! One process's session with the control plane, kept until the process stops: connect to
//! a replica, register (or keep the lease from before a failover), keep the lease alive
//! with load reports, follow the route table, and on any failure go on to the next
//! replica after a backoff. What the process does with the routes and the events is its
//! own business: the [`Participant`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use pylon_proto::auth::with_bearer;
use pylon_proto::control::membership_client::MembershipClient;
use pylon_proto::control::route_update::Body;
use pylon_proto::control::routes_client::RoutesClient;
use pylon_proto::control::{
    AppliedReport, KeepAliveRequest, LeaveRequest, Load, Member, RegisterRequest, RouteUpdate,
    SubscribeRequest, Telemetry,
};
use pylon_proto::routes::{RouteError, RouteView};
use tokio::sync::watch;
use tokio::time::Instant;
use tonic::transport::Channel;
use tonic::Streaming;
use tonic::{Code, Request, Status};

use super::Backoff;

/// What a process asks of the control plane.
#[derive(Debug, Clone, Default)]
pub struct LinkSettings {
    /// Control-plane gRPC endpoints (`http://host:7401`), tried in turn.
    pub endpoints: Vec<String>,
    /// The cluster token, presented as `authorization: Bearer <token>`.
    pub token: Option<String>,
    /// Register as this member and keep its lease alive (`None`: only follow routes).
    pub member: Option<Member>,
    /// The lease asked for; keep-alives go out every third of it, and every call has a
    /// third of it as its deadline, so a hung replica is left before the lease runs out.
    pub lease_ttl_secs: u32,
    /// Follow the route table under this subscriber name (`None`: do not follow).
    pub subscriber: Option<String>,
}

impl LinkSettings {
    fn third_of_lease(&self) -> Duration {
        Duration::from_secs(self.lease_ttl_secs.max(2).into()) / 3
    }
}

/// The process around the link: what it reports, and what it does with what it hears.
pub trait Participant: Send {
    /// The load reported with each keep-alive.
    fn load(&self) -> Load {
        Load::default()
    }
    /// What operators watch, reported with each keep-alive (none by default).
    fn telemetry(&self) -> Option<Telemetry> {
        None
    }
    /// A route update was applied; `view` is the whole table now.
    fn routes_applied(&mut self, view: &RouteView) {
        let _ = view;
    }
    /// Something happened on the link (for the process's metrics).
    fn event(&mut self, event: LinkEvent<'_>) {
        let _ = event;
    }
}

/// What the link tells its [`Participant`] besides routes.
#[derive(Debug)]
pub enum LinkEvent<'a> {
    /// Registered (or following routes) through `endpoint`.
    Connected { endpoint: &'a str },
    /// The session with `endpoint` ended; the next replica is tried after `retry_in`.
    Lost {
        endpoint: &'a str,
        error: &'a LinkError,
        retry_in: Duration,
    },
    /// Registered under a new lease.
    Registered { lease: i64 },
    /// A route update arrived.
    RouteUpdate(UpdateKind),
}

/// The kind of a route update, as counted in metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateKind {
    Snapshot,
    Delta,
    /// Could not be applied: the next session starts from a fresh snapshot.
    Invalid,
}

impl UpdateKind {
    pub fn as_str(self) -> &'static str {
        match self {
            UpdateKind::Snapshot => "snapshot",
            UpdateKind::Delta => "delta",
            UpdateKind::Invalid => "invalid",
        }
    }
}

/// Why a session with one replica ended.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("cannot connect: {0}")]
    Connect(BoxError),
    #[error("{0}")]
    Rpc(#[from] Status),
    #[error("the route stream ended")]
    StreamEnded,
    #[error(transparent)]
    Routes(#[from] RouteError),
    #[error("a route update without a body")]
    EmptyUpdate,
}

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Opens a channel to an endpoint: [`super::connect`] in service, an in-memory server in
/// tests.
pub type Connector = Arc<
    dyn Fn(String) -> Pin<Box<dyn Future<Output = Result<Channel, BoxError>> + Send>> + Send + Sync,
>;

fn network_connector() -> Connector {
    Arc::new(|url: String| {
        Box::pin(async move { super::connect(&url).await.map_err(BoxError::from) })
    })
}

pub struct ControlLink<P> {
    settings: LinkSettings,
    participant: P,
    connector: Connector,
    /// The lease from the last registration, kept across failovers.
    lease: Option<i64>,
    /// The route table as last applied.
    routes: Option<RouteView>,
}

impl<P: Participant> ControlLink<P> {
    pub fn new(settings: LinkSettings, participant: P) -> Self {
        ControlLink {
            settings,
            participant,
            connector: network_connector(),
            lease: None,
            routes: None,
        }
    }

    /// Opens channels with `connector` instead of the network.
    pub fn with_connector(mut self, connector: Connector) -> Self {
        self.connector = connector;
        self
    }

    /// Talks to the control plane, failing over between replicas, until `stop` turns
    /// true (or forever, if its sender is dropped without). On stop, a registered member
    /// leaves at once, so its work goes elsewhere without waiting for the lease to lapse.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let endpoints = self.settings.endpoints.clone();
        let mut backoff = Backoff::default();
        for endpoint in endpoints.iter().cycle() {
            let started = Instant::now();
            let error = match self.session(endpoint, &mut stop).await {
                // Without an error, a session ends only when stopped.
                Ok(()) => return,
                Err(e) => e,
            };
            backoff.session_ended(started.elapsed());
            let retry_in = backoff.next_wait();
            self.participant.event(LinkEvent::Lost {
                endpoint,
                error: &error,
                retry_in,
            });
            tracing::warn!(%endpoint, "control plane link lost ({error}); retrying in {retry_in:?}");
            tokio::select! {
                () = tokio::time::sleep(retry_in) => {}
                () = stopped(&mut stop) => return,
            }
        }
    }

    /// A call with the cluster token and a deadline of a third of the lease.
    fn unary<T>(&self, message: T) -> Request<T> {
        let mut request = with_bearer(message, self.settings.token.as_deref());
        request.set_timeout(self.settings.third_of_lease());
        request
    }

    async fn session(
        &mut self,
        endpoint: &str,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<(), LinkError> {
        let channel = (self.connector)(endpoint.to_owned())
            .await
            .map_err(LinkError::Connect)?;
        let mut membership = MembershipClient::new(channel.clone());
        let mut routes = RoutesClient::new(channel);
        let registering = self.settings.member.is_some();
        if registering {
            // Reuses the lease from before a failover when it is still alive.
            self.keep_alive(&mut membership).await?;
        }
        let mut stream = match self.settings.subscriber.clone() {
            Some(subscriber_id) => {
                let request = with_bearer(
                    SubscribeRequest { subscriber_id },
                    self.settings.token.as_deref(),
                );
                Some(routes.subscribe(request).await?.into_inner())
            }
            None => None,
        };
        self.participant.event(LinkEvent::Connected { endpoint });
        tracing::info!(%endpoint, "connected to the control plane");
        let period = self.settings.third_of_lease();
        let mut ticker = tokio::time::interval_at(Instant::now() + period, period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick(), if registering => self.keep_alive(&mut membership).await?,
                message = next_update(&mut stream) => {
                    let version = self.apply(message?.ok_or(LinkError::StreamEnded)?)?;
                    if let Some(subscriber_id) = self.settings.subscriber.clone() {
                        routes.report_applied(self.unary(AppliedReport { subscriber_id, version })).await?;
                    }
                }
                () = stopped(stop) => {
                    self.leave(&mut membership).await;
                    return Ok(());
                }
            }
        }
    }

    async fn register(
        &mut self,
        membership: &mut MembershipClient<Channel>,
    ) -> Result<(), LinkError> {
        let Some(member) = self.settings.member.clone() else {
            return Ok(());
        };
        let reply = membership
            .register(self.unary(RegisterRequest {
                member: Some(member),
                ttl_seconds: self.settings.lease_ttl_secs,
            }))
            .await?
            .into_inner();
        self.lease = Some(reply.lease_id);
        self.participant.event(LinkEvent::Registered {
            lease: reply.lease_id,
        });
        tracing::info!(
            lease = reply.lease_id,
            ttl = reply.ttl_seconds,
            "registered with the control plane"
        );
        Ok(())
    }

    /// Keeps the lease alive with the current load; registers again if the control
    /// plane forgot it.
    async fn keep_alive(
        &mut self,
        membership: &mut MembershipClient<Channel>,
    ) -> Result<(), LinkError> {
        let (Some(lease), Some(member)) = (self.lease, self.settings.member.as_ref()) else {
            return self.register(membership).await;
        };
        let request = KeepAliveRequest {
            member_id: member.id.clone(),
            lease_id: lease,
            load: Some(self.participant.load()),
            telemetry: self.participant.telemetry(),
        };
        match membership.keep_alive(self.unary(request)).await {
            Ok(_) => Ok(()),
            Err(status) if status.code() == Code::NotFound => {
                tracing::warn!(
                    lease,
                    "the control plane no longer knows this member's lease; registering again"
                );
                self.lease = None;
                self.register(membership).await
            }
            Err(status) => Err(status.into()),
        }
    }

    /// Gives the lease back (best effort: it lapses by itself otherwise).
    async fn leave(&mut self, membership: &mut MembershipClient<Channel>) {
        let (Some(lease), Some(member)) = (self.lease.take(), self.settings.member.as_ref()) else {
            return;
        };
        let request = self.unary(LeaveRequest {
            member_id: member.id.clone(),
            lease_id: lease,
        });
        match membership.leave(request).await {
            Ok(_) => tracing::info!(lease, "left the control plane"),
            Err(status) => tracing::warn!(lease, "could not leave the control plane: {status}"),
        }
    }

    /// Applies one update; returns the version reached.
    fn apply(&mut self, update: RouteUpdate) -> Result<u64, LinkError> {
        let applied = match update.body.ok_or(LinkError::EmptyUpdate)? {
            Body::Snapshot(bytes) => RouteView::from_snapshot(&bytes).map(|view| {
                self.routes = Some(view);
                UpdateKind::Snapshot
            }),
            Body::Delta(bytes) => match self.routes.as_mut() {
                Some(view) => view.apply_delta(&bytes).map(|()| UpdateKind::Delta),
                None => Err(RouteError::VersionGap {
                    have: 0,
                    base: update.base_version,
                }),
            },
        };
        let kind = match applied {
            Ok(kind) => kind,
            Err(e) => {
                self.participant
                    .event(LinkEvent::RouteUpdate(UpdateKind::Invalid));
                // The next session starts from a fresh snapshot.
                self.routes = None;
                return Err(e.into());
            }
        };
        self.participant.event(LinkEvent::RouteUpdate(kind));
        let Some(view) = self.routes.as_ref() else {
            return Err(LinkError::EmptyUpdate);
        };
        self.participant.routes_applied(view);
        Ok(view.version())
    }
}

/// The next route update, or never when not following routes.
async fn next_update(
    stream: &mut Option<Streaming<RouteUpdate>>,
) -> Result<Option<RouteUpdate>, Status> {
    match stream {
        Some(stream) => stream.message().await,
        None => std::future::pending().await,
    }
}

/// Resolves once `stop` is true; never if its sender is gone without saying so.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    if stop.wait_for(|stop| *stop).await.is_err() {
        std::future::pending::<()>().await;
    }
}
