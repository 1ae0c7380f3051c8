//! The control plane's Prometheus metrics.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabel {
    pub op: String,
}

pub fn result(r: &str) -> ResultLabel {
    ResultLabel { result: r.into() }
}

pub struct ControlMetrics {
    /// Operator calls forwarded to app instances, by result.
    pub forwards: Family<ResultLabel, Counter>,
    pub dispatch_requests: Family<ResultLabel, Counter>,
    pub dispatch_seconds: Histogram,
    pub admin_requests: Family<ResultLabel, Counter>,
    pub registrations: Family<KindLabel, Counter>,
    pub keepalives: Family<ResultLabel, Counter>,
    pub bad_member_requests: Counter,
    pub registry_errors: Family<OpLabel, Counter>,
    pub registry_up: Gauge,
    pub is_leader: Gauge,
    pub leader_changes: Counter,
    pub shard_moves: Counter,
    pub route_version: Gauge,
    pub route_updates: Counter,
    pub route_snapshot_bytes: Gauge,
    pub snapshots_sent: Counter,
    pub deltas_sent: Counter,
    pub subscribers: Gauge,
    pub slowest_lag_seconds:
        prometheus_client::metrics::gauge::Gauge<f64, std::sync::atomic::AtomicU64>,
    pub slowest_lag_updates: Gauge,
    pub edges_live: Gauge,
    pub edges_draining: Gauge,
    pub apps_live: Gauge,
    pub shards_unowned: Gauge,
    /// 1 while this site is the primary, 0 while it is a standby (disaster recovery).
    pub dr_primary: Gauge,
    /// When a standby last copied the primary site's registry (Unix ms).
    pub dr_mirror_ok_ms: Gauge,
    pub dr_mirror_failures: Counter,
    /// On a standby's leader: 1 while its store streams from the primary's, 0 when not;
    /// -1 where it is not watched (a primary, another replica, no `[dr] store_url`).
    pub dr_store_streaming: Gauge,
    /// On a standby's leader: the primary's WAL not yet received, as of its last report.
    pub dr_store_behind_bytes: Gauge,
}

impl Default for ControlMetrics {
    fn default() -> Self {
        ControlMetrics {
            dispatch_requests: Family::default(),
            dispatch_seconds: Histogram::new(exponential_buckets(0.000_01, 2.0, 16)),
            admin_requests: Family::default(),
            forwards: Family::default(),
            registrations: Family::default(),
            keepalives: Family::default(),
            bad_member_requests: Counter::default(),
            registry_errors: Family::default(),
            registry_up: Gauge::default(),
            is_leader: Gauge::default(),
            leader_changes: Counter::default(),
            shard_moves: Counter::default(),
            route_version: Gauge::default(),
            route_updates: Counter::default(),
            route_snapshot_bytes: Gauge::default(),
            snapshots_sent: Counter::default(),
            deltas_sent: Counter::default(),
            subscribers: Gauge::default(),
            slowest_lag_seconds: Default::default(),
            slowest_lag_updates: Gauge::default(),
            edges_live: Gauge::default(),
            edges_draining: Gauge::default(),
            apps_live: Gauge::default(),
            shards_unowned: Gauge::default(),
            dr_primary: Gauge::default(),
            dr_mirror_ok_ms: Gauge::default(),
            dr_mirror_failures: Counter::default(),
            dr_store_streaming: Gauge::default(),
            dr_store_behind_bytes: Gauge::default(),
        }
    }
}

impl ControlMetrics {
    pub fn register(&self, r: &mut Registry) {
        let r = r.sub_registry_with_prefix("pylon_control");
        r.register(
            "dispatch_requests",
            "Entry-address requests by result (ok, bad_request, no_edge)",
            self.dispatch_requests.clone(),
        );
        r.register(
            "dispatch_seconds",
            "Time to answer an entry-address request",
            self.dispatch_seconds.clone(),
        );
        r.register(
            "forwards",
            "Operator calls forwarded to app instances, by result (ok, unreachable, timeout, no_app_instance, shard_unowned, ...)",
            self.forwards.clone(),
        );
        r.register(
            "admin_requests",
            "Admin API requests by result (ok, unauthorized, not_found, bad_request, error)",
            self.admin_requests.clone(),
        );
        r.register(
            "registrations",
            "Member registrations",
            self.registrations.clone(),
        );
        r.register(
            "keepalives",
            "Member keep-alives by result (ok, expired, error)",
            self.keepalives.clone(),
        );
        r.register(
            "bad_member_requests",
            "Membership calls refused as invalid or unauthenticated",
            self.bad_member_requests.clone(),
        );
        r.register(
            "registry_errors",
            "Failed registry operations",
            self.registry_errors.clone(),
        );
        r.register(
            "registry_up",
            "1 while the registry answers",
            self.registry_up.clone(),
        );
        r.register(
            "is_leader",
            "1 while this replica writes shard assignments",
            self.is_leader.clone(),
        );
        r.register(
            "leader_changes",
            "Times this replica gained or lost leadership",
            self.leader_changes.clone(),
        );
        r.register(
            "shard_moves",
            "Shards moved to another app instance by this replica",
            self.shard_moves.clone(),
        );
        r.register(
            "route_version",
            "Version of the route table this replica serves",
            self.route_version.clone(),
        );
        r.register(
            "route_updates",
            "Route-table changes published",
            self.route_updates.clone(),
        );
        r.register(
            "route_snapshot_bytes",
            "Size of the encoded route table",
            self.route_snapshot_bytes.clone(),
        );
        r.register(
            "route_snapshots_sent",
            "Full snapshots sent to subscribers",
            self.snapshots_sent.clone(),
        );
        r.register(
            "route_deltas_sent",
            "Deltas sent to subscribers",
            self.deltas_sent.clone(),
        );
        r.register(
            "route_subscribers",
            "Route subscribers connected to this replica",
            self.subscribers.clone(),
        );
        r.register(
            "route_slowest_lag_seconds",
            "Seconds since the oldest update the slowest subscriber has not applied was published",
            self.slowest_lag_seconds.clone(),
        );
        r.register(
            "route_slowest_lag_updates",
            "Updates the slowest subscriber has not applied",
            self.slowest_lag_updates.clone(),
        );
        r.register("edges_live", "Registered edges", self.edges_live.clone());
        r.register(
            "edges_draining",
            "Registered edges an operator is draining",
            self.edges_draining.clone(),
        );
        r.register(
            "apps_live",
            "Registered app instances",
            self.apps_live.clone(),
        );
        r.register(
            "shards_unowned",
            "Shards no registered app instance owns",
            self.shards_unowned.clone(),
        );
        r.register(
            "dr_primary",
            "1 while this site takes chargers (primary), 0 while it is a disaster-recovery standby",
            self.dr_primary.clone(),
        );
        r.register(
            "dr_mirror_success_timestamp_ms",
            "When this standby site last copied the primary site's operators and tokens (Unix ms; 0: never)",
            self.dr_mirror_ok_ms.clone(),
        );
        r.register(
            "dr_mirror_failures",
            "Tries to copy the primary site's registry that failed",
            self.dr_mirror_failures.clone(),
        );
        r.register(
            "dr_store_streaming",
            "On a standby site's leader: 1 while its store streams from the primary site's, 0 when not; -1 where not watched",
            self.dr_store_streaming.clone(),
        );
        r.register(
            "dr_store_behind_bytes",
            "On a standby site's leader: the primary's WAL its store has not received (the recovery point)",
            self.dr_store_behind_bytes.clone(),
        );
    }

    pub fn set_dr_role(&self, role: pylon_proto::api::dr::SiteRole) {
        self.dr_primary
            .set(i64::from(role == pylon_proto::api::dr::SiteRole::Primary));
    }
}
