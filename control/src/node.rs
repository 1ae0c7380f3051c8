//! One control-plane replica's shared state: its registry, its mirror of the cluster, the
//! route publisher and the metrics. Every server task holds an `Arc<ControlNode>`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use tokio::sync::watch;

use pylon_service::audit::Auditor;
use pylon_service::auth::Authenticator;

use crate::audit::RegistryAudit;
use crate::cluster::{ClusterState, LoadRecord, MemberKind};
use crate::config::Config;
use crate::dispatch::Candidate;
use crate::identity::Identity;
use crate::metrics::{ControlMetrics, OpLabel};
use crate::publisher::Publisher;
use crate::registry::{LeaseId, Registry, RegistryError, Revision};

/// The cluster as this replica last saw it, with what dispatch needs precomputed.
#[derive(Debug, Default)]
pub struct ClusterView {
    pub state: ClusterState,
    pub candidates: Vec<Candidate>,
}

pub struct ControlNode {
    pub config: Config,
    pub registry: Arc<dyn Registry>,
    pub metrics: ControlMetrics,
    pub view: ArcSwap<ClusterView>,
    pub publisher: Arc<Publisher>,
    /// The registry revision of the latest view; the leader reconciles on each change.
    pub changes: watch::Sender<Revision>,
    /// The mirror has read the registry at least once.
    pub ready: AtomicBool,
    pub is_leader: AtomicBool,
    /// The load each member last had written, so keep-alives write only real changes.
    written_loads: Mutex<HashMap<(MemberKind, String), LoadRecord>>,
    /// Each member's heartbeat count, time and sessions per executor at its last
    /// telemetry write.
    written_telemetry: Mutex<HashMap<(MemberKind, String), TelemetryMark>>,
    /// Operators and their tokens.
    pub identity: Arc<Identity>,
    /// Checks operators' tokens on the HTTP API.
    pub auth: Arc<Authenticator>,
    /// The cluster's audit log, and this replica's writer to it.
    pub audit: Arc<RegistryAudit>,
    pub auditor: Auditor,
    /// This site's part in disaster recovery: its role, the other site, the mirror.
    pub dr: crate::dr::DrState,
}

impl ControlNode {
    pub fn new(config: Config, registry: Arc<dyn Registry>) -> Arc<Self> {
        let publisher = Publisher::new(pylon_proto::routes::RouteTable::empty(config.shard_count));
        let (changes, _) = watch::channel(0);
        let identity = Arc::new(Identity::new(
            registry.clone(),
            config.admin_token.as_deref(),
        ));
        let auth = Arc::new(Authenticator::new(
            None,
            Some(identity.clone() as Arc<dyn pylon_service::auth::TokenVerifier>),
            config.insecure_dev && config.admin_token.is_none(),
        ));
        let audit = Arc::new(RegistryAudit::new(registry.clone()));
        let auditor = Auditor::new(
            "control",
            Some(audit.clone() as Arc<dyn pylon_service::audit::AuditSink>),
        );
        let dr = crate::dr::DrState::new(&config.dr, config.cluster_tls.ca.as_deref());
        let metrics = ControlMetrics::default();
        metrics.dr_store_streaming.set(-1);
        Arc::new(ControlNode {
            config,
            registry,
            metrics,
            view: ArcSwap::from_pointee(ClusterView::default()),
            publisher,
            changes,
            ready: AtomicBool::new(false),
            is_leader: AtomicBool::new(false),
            written_loads: Mutex::new(HashMap::new()),
            written_telemetry: Mutex::new(HashMap::new()),
            identity,
            auth,
            audit,
            auditor,
            dr,
        })
    }

    /// Installs a new view of the cluster and publishes its route table if it changed.
    pub fn set_state(&self, state: ClusterState) {
        let table = state.route_table(self.config.shard_count);
        let m = &self.metrics;
        m.edges_live.set(table.edges.len() as i64);
        m.edges_draining
            .set(table.edges.iter().filter(|e| e.draining).count() as i64);
        m.apps_live.set(table.apps.len() as i64);
        m.shards_unowned.set(
            table
                .shards
                .iter()
                .filter(|&&s| s == pylon_proto::routes::NO_OWNER)
                .count() as i64,
        );
        if self.publisher.publish(table) {
            m.route_updates.inc();
            m.route_version.set(self.publisher.table().version as i64);
            m.route_snapshot_bytes
                .set(self.publisher.snapshot_len() as i64);
        }
        let revision = state.revision;
        let candidates = state.dispatch_candidates();
        self.view.store(Arc::new(ClusterView { state, candidates }));
        self.changes.send_replace(revision);
    }

    /// Counts a failed registry operation and passes the error on.
    pub fn registry_error(&self, op: &str, e: RegistryError) -> RegistryError {
        self.metrics
            .registry_errors
            .get_or_create(&OpLabel { op: op.into() })
            .inc();
        if matches!(e, RegistryError::Unavailable(_)) {
            self.metrics.registry_up.set(0);
        }
        e
    }

    pub fn registry_ok(&self) {
        self.metrics.registry_up.set(1);
    }

    /// Keeps `lease` (held by `holder`: the leader key, this replica's registration)
    /// alive once. False when it is lost: unknown to the registry, or not refreshed for
    /// a whole `ttl`, past which it is gone whatever the registry says later.
    pub async fn refresh_lease(
        &self,
        lease: LeaseId,
        ttl: std::time::Duration,
        last_refresh: &mut tokio::time::Instant,
        holder: &'static str,
    ) -> bool {
        match self.registry.keep_alive(lease).await {
            Ok(_) => {
                self.registry_ok();
                *last_refresh = tokio::time::Instant::now();
                true
            }
            Err(RegistryError::LeaseNotFound(_)) => false,
            Err(e) => {
                let e = self.registry_error(&format!("{holder}_keepalive"), e);
                tracing::warn!("cannot refresh the {holder} lease: {e}");
                last_refresh.elapsed() < ttl
            }
        }
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed) && self.metrics.registry_up.get() == 1
    }

    /// Whether `load` differs enough from what was last written for this member to be
    /// worth a registry write (leaving changed, sessions moved by 1% of capacity, or
    /// reached or left zero or the capacity).
    pub fn load_changed(
        &self,
        kind: MemberKind,
        id: &str,
        capacity: u32,
        load: LoadRecord,
    ) -> bool {
        let written = self.written_loads.lock().unwrap_or_else(|p| p.into_inner());
        match written.get(&(kind, id.to_owned())) {
            None => true,
            Some(old) => {
                let step = (capacity / 100).max(1);
                old.leaving != load.leaving
                    || old.sessions.abs_diff(load.sessions) >= step
                    || (old.sessions >= capacity) != (load.sessions >= capacity)
                    // An emptied edge (drained, its chargers moved) is news to a rollout.
                    || (old.sessions == 0) != (load.sessions == 0)
            }
        }
    }

    /// The record to write for a member's telemetry, if one is due (the first,
    /// [`crate::cluster::TELEMETRY_EVERY_MS`] after the last, or sooner when its sessions
    /// changed, but not within 2 s); notes it as written.
    pub fn telemetry_due(
        &self,
        kind: MemberKind,
        id: &str,
        reported: &pylon_proto::control::Telemetry,
        now_ms: i64,
    ) -> Option<crate::cluster::TelemetryRecord> {
        let mut written = self
            .written_telemetry
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let key = (kind, id.to_owned());
        let per_min = match written.get(&key) {
            Some((_, at, executors))
                if now_ms - at < 2_000
                    || (now_ms - at < crate::cluster::TELEMETRY_EVERY_MS
                        && !sessions_moved(executors, &reported.executor_sessions)) =>
            {
                return None
            }
            Some((count, at, _)) => {
                reported
                    .heartbeats
                    .saturating_sub(*count)
                    .saturating_mul(60_000)
                    / (now_ms - at).max(1) as u64
            }
            None => 0,
        };
        if written.len() > 1024 && written.len().is_power_of_two() {
            let view = self.view.load();
            written.retain(|(k, id), _| view.state.member(*k, id).is_some());
        }
        written.insert(
            key,
            (
                reported.heartbeats,
                now_ms,
                reported.executor_sessions.clone(),
            ),
        );
        Some(crate::cluster::TelemetryRecord {
            executors: reported.executor_sessions.clone(),
            heartbeats_per_min: per_min,
            cert_not_after: reported.cert_not_after,
            at_ms: now_ms,
        })
    }

    pub fn load_written(&self, kind: MemberKind, id: &str, load: LoadRecord) {
        let mut written = self.written_loads.lock().unwrap_or_else(|p| p.into_inner());
        // Members come and go: forget those no longer registered now and then.
        if written.len() > 1024 && written.len().is_power_of_two() {
            let view = self.view.load();
            written.retain(|(k, id), _| view.state.member(*k, id).is_some());
        }
        written.insert((kind, id.to_owned()), load);
    }

    /// Refreshes the subscriber-lag gauges (called before each scrape).
    pub fn update_lag_metrics(&self) {
        let lags = self.publisher.lags();
        self.metrics.subscribers.set(lags.len() as i64);
        let slowest = lags.first();
        self.metrics
            .slowest_lag_seconds
            .set(slowest.map_or(0.0, |l| l.seconds));
        self.metrics
            .slowest_lag_updates
            .set(slowest.map_or(0, |l| i64::from(l.behind)));
    }
}

/// What was written of a member's telemetry: its heartbeat count, when (Unix ms), and its
/// sessions per executor.
type TelemetryMark = (u64, i64, Vec<u32>);

/// Whether sessions per executor changed enough to write them before their time: another
/// number of executors, or 1 % of the sessions (one, for small numbers).
fn sessions_moved(before: &[u32], now: &[u32]) -> bool {
    let total = |v: &[u32]| v.iter().map(|&n| u64::from(n)).sum::<u64>();
    let (a, b) = (total(before), total(now));
    before.len() != now.len() || a.abs_diff(b) >= (a.max(b) / 100).max(1)
}
