//! The edge's part in the control-plane link (`pylon_service::control_link`): what it
//! registers as and reports (its addresses, capacity and sessions), and what it does with
//! the route table: hand the shard owners to the business-stream router, and drain or
//! resume when an operator asks.
//!
//! Runs on the admin thread's tokio runtime, beside the glommio executors; it reaches them
//! only through [`ExecutorHandle`] commands.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use pylon_proto::control::{Load, Member, MemberKind, Telemetry};
use pylon_proto::routes::RouteView;
use pylon_service::control_link::{ControlLink, LinkEvent, LinkSettings, Participant};

use crate::appstream::ShardTable;
use crate::executor::{EdgeShared, ExecutorCommand, ExecutorHandle, RUNNING};
use crate::metrics::KindLabel;

/// Registers this edge and follows routes until the process exits.
pub async fn run(
    shared: Arc<EdgeShared>,
    executors: ExecutorHandle,
    shards: tokio::sync::watch::Sender<Arc<ShardTable>>,
) {
    let control = &shared.config.control;
    let settings = LinkSettings {
        endpoints: control.endpoints.clone(),
        token: control.token.clone(),
        member: Some(member(&shared)),
        lease_ttl_secs: control.lease_ttl_secs,
        subscriber: Some(format!("edge/{}", shared.edge_id)),
    };
    let edge = EdgeParticipant {
        shared: shared.clone(),
        executors,
        shards,
    };
    // The edge never leaves explicitly: while it drains it reports itself leaving, and
    // its lease lapses when the process is gone.
    let (_never, stop) = tokio::sync::watch::channel(false);
    ControlLink::new(settings, edge).run(stop).await;
}

fn member(shared: &EdgeShared) -> Member {
    let config = &shared.config;
    Member {
        id: shared.edge_id.to_string(),
        kind: MemberKind::Edge.into(),
        tcp_address: config.advertise_tcp().unwrap_or_default(),
        tls_address: config.advertise_tls().unwrap_or_default(),
        grpc_address: String::new(),
        http_address: String::new(),
        capacity: config.capacity(),
        version: env!("CARGO_PKG_VERSION").into(),
    }
}

struct EdgeParticipant {
    shared: Arc<EdgeShared>,
    /// When the first of the chargers' certificates expires (Unix seconds; 0: none).
    executors: ExecutorHandle,
    /// Where the shard owners go for the business-stream router.
    shards: tokio::sync::watch::Sender<Arc<ShardTable>>,
}

impl Participant for EdgeParticipant {
    fn telemetry(&self) -> Option<Telemetry> {
        let family = &self.shared.metrics.sessions;
        let executor_sessions = (0..self.shared.config.executor_count())
            .map(|i| {
                ["tcp", "tls"]
                    .map(|transport| crate::metrics::ExecTransport {
                        executor: i.to_string(),
                        transport: transport.into(),
                    })
                    .iter()
                    .map(|labels| family.get_or_create(labels).get())
                    .sum::<i64>()
            })
            .map(|n| u32::try_from(n.max(0)).unwrap_or(u32::MAX))
            .collect();
        Some(Telemetry {
            executor_sessions,
            heartbeats: self.shared.metrics.heartbeats.get(),
            cert_not_after: self.shared.live.load().cert_not_after,
        })
    }

    fn load(&self) -> Load {
        Load {
            sessions: u32::try_from(self.shared.session_count().max(0)).unwrap_or(u32::MAX),
            leaving: self.shared.state.load(Ordering::Relaxed) != RUNNING,
        }
    }

    fn routes_applied(&mut self, view: &RouteView) {
        self.shared.metrics.route_version.set(view.version() as i64);
        self.shards
            .send_replace(Arc::new(ShardTable::from_view(view)));
        // Absent (e.g. between a lease lapse and registering again): no change, so a
        // drained edge does not briefly take chargers again.
        if let Some(me) = view.edge(&self.shared.edge_id) {
            self.set_operator_drain(me.draining);
        }
    }

    fn event(&mut self, event: LinkEvent<'_>) {
        let metrics = &self.shared.metrics;
        match event {
            LinkEvent::Connected { .. } => {
                metrics.control_connected.set(1);
            }
            LinkEvent::Lost { .. } => {
                metrics.control_connected.set(0);
                metrics.control_errors.inc();
            }
            LinkEvent::Registered { .. } => {
                metrics.registrations.inc();
            }
            LinkEvent::RouteUpdate(kind) => {
                metrics
                    .route_updates
                    .get_or_create(&KindLabel {
                        kind: kind.as_str().into(),
                    })
                    .inc();
            }
        }
    }
}

impl EdgeParticipant {
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
