//! The app service's Prometheus metrics.

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
pub struct TypeLabel {
    pub frame_type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CommandLabel {
    pub command: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OriginLabel {
    pub origin: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

pub struct AppMetrics {
    pub frames: Family<TypeLabel, Counter>,
    pub logins: Family<ResultLabel, Counter>,
    /// Transaction records by result: new, duplicate, unknown_pile, store_error.
    pub records: Family<ResultLabel, Counter>,
    /// From a record's arrival to its confirmation being queued (the store commit inside).
    pub confirm_seconds: Histogram,
    pub orders: Family<OriginLabel, Counter>,
    /// Starts refused, by the spec's reason (no_account, frozen, insufficient_balance, ...).
    pub starts_refused: Family<KindLabel, Counter>,
    pub commands: Family<CommandLabel, Counter>,
    /// Frames that could not be handled: bad body, wrong direction, store errors, ...
    pub frame_errors: Family<KindLabel, Counter>,
    /// What the retention policy removed: raw_events, status_history, accounts.
    pub retention_removed: Family<KindLabel, Counter>,
    /// Replies to orders the platform does not know or has closed.
    pub unexpected: Family<KindLabel, Counter>,
    pub edge_streams: Gauge,
    pub piles_online: Gauge,
    pub uplinks_in_flight: Gauge,
    /// From a login's arrival to its verdict being queued for the edge.
    pub login_seconds: Histogram,
}

impl Default for AppMetrics {
    fn default() -> Self {
        AppMetrics {
            frames: Family::default(),
            logins: Family::default(),
            records: Family::default(),
            confirm_seconds: Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
            orders: Family::default(),
            starts_refused: Family::default(),
            commands: Family::default(),
            frame_errors: Family::default(),
            retention_removed: Family::default(),
            unexpected: Family::default(),
            edge_streams: Gauge::default(),
            piles_online: Gauge::default(),
            uplinks_in_flight: Gauge::default(),
            login_seconds: Histogram::new(exponential_buckets(0.000_1, 2.0, 18)),
        }
    }
}

impl AppMetrics {
    pub fn frame(&self, frame_type: u8) {
        self.frames
            .get_or_create(&TypeLabel {
                frame_type: format!("{frame_type:#04x}"),
            })
            .inc();
    }

    pub fn login(&self, result: &str) {
        self.logins
            .get_or_create(&ResultLabel {
                result: result.into(),
            })
            .inc();
    }

    pub fn record(&self, result: &str) {
        self.records
            .get_or_create(&ResultLabel {
                result: result.into(),
            })
            .inc();
    }

    pub fn order(&self, origin: &str) {
        self.orders
            .get_or_create(&OriginLabel {
                origin: origin.into(),
            })
            .inc();
    }

    pub fn command(&self, command: &str, result: &str) {
        self.commands
            .get_or_create(&CommandLabel {
                command: command.into(),
                result: result.into(),
            })
            .inc();
    }

    pub fn retention_removed(&self, kind: &str, n: u64) {
        self.retention_removed
            .get_or_create(&KindLabel { kind: kind.into() })
            .inc_by(n);
    }

    pub fn frame_error(&self, kind: &str) {
        self.frame_errors
            .get_or_create(&KindLabel { kind: kind.into() })
            .inc();
    }

    pub fn start_refused(&self, reason: &str) {
        self.starts_refused
            .get_or_create(&KindLabel {
                kind: reason.into(),
            })
            .inc();
    }

    pub fn unexpected(&self, kind: &str) {
        self.unexpected
            .get_or_create(&KindLabel { kind: kind.into() })
            .inc();
    }

    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("pylon_app");
        r.register(
            "frames",
            "Business frames received, by type",
            self.frames.clone(),
        );
        r.register(
            "logins",
            "Login verdicts (accepted, unknown, disabled)",
            self.logins.clone(),
        );
        r.register(
            "records",
            "Transaction records (new, duplicate, unknown_pile, store_error)",
            self.records.clone(),
        );
        r.register(
            "confirm_seconds",
            "From a transaction record's arrival to its confirmation (store commit included)",
            self.confirm_seconds.clone(),
        );
        r.register("orders", "Orders opened, by origin", self.orders.clone());
        r.register(
            "starts_refused",
            "Starts refused, by reason (the 0x32 failure reasons)",
            self.starts_refused.clone(),
        );
        r.register(
            "commands",
            "Commands to piles by command and result (sent, answered, timeout, not_connected)",
            self.commands.clone(),
        );
        r.register(
            "retention_removed",
            "Rows removed (accounts anonymised) by the retention policy, by kind",
            self.retention_removed.clone(),
        );
        r.register(
            "frame_errors",
            "Business frames that could not be handled, by kind",
            self.frame_errors.clone(),
        );
        r.register(
            "unexpected",
            "Replies for orders unknown or already closed",
            self.unexpected.clone(),
        );
        r.register("edge_streams", "Edges connected", self.edge_streams.clone());
        r.register(
            "piles_online",
            "Piles this instance knows to be connected",
            self.piles_online.clone(),
        );
        r.register(
            "uplinks_in_flight",
            "Uplink frames received and not yet handled",
            self.uplinks_in_flight.clone(),
        );
        r.register(
            "login_seconds",
            "From a login's arrival to its verdict (store lookups included; queued business frames not)",
            self.login_seconds.clone(),
        );
    }
}
