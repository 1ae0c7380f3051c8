//! App-service configuration: a TOML file, with command-line flags overriding it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Default port for the business stream from edges (gRPC).
pub const DEFAULT_GRPC_PORT: u16 = 7500;
/// Default port for the operator API and /metrics.
pub use pylon_proto::api::app::DEFAULT_HTTP_PORT;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// This instance's id in the control plane's registry (unique per instance).
    pub app_id: String,
    /// Log filter (e.g. `info`, `pylon_app=debug,info`), changed live on SIGHUP;
    /// `--log` and `RUST_LOG` win over it.
    pub log: Option<String>,
    /// Where edges open their business streams.
    pub grpc_listen: SocketAddr,
    /// The address edges should use, when it differs from `grpc_listen`.
    pub grpc_advertise: Option<String>,
    /// Operator API (piles, orders, records, commands), /metrics, /healthz, /readyz.
    pub http_listen: SocketAddr,
    /// The operator API's base URL the control plane forwards operators' calls to, when
    /// it differs from `http_listen` (e.g. listening on 0.0.0.0): `http://10.0.0.7:7510`.
    pub http_advertise: Option<String>,
    /// A bootstrap admin token for the operator API (for running without a control
    /// plane; with one, operators use the tokens it issues).
    pub admin_token: Option<String>,
    /// Cluster token: presented to the control plane, and required from edges.
    pub cluster_token: Option<String>,
    /// Run without credentials on purpose (a developer's machine): the business stream
    /// open to anyone, and without an admin token or control plane every API caller an
    /// admin. Without it, the instance refuses to start so.
    pub insecure_dev: bool,
    /// The cluster certificate: with it, the business stream (gRPC) is mutual TLS, the
    /// control-plane link is TLS and the operator API HTTPS.
    pub cluster_tls: pylon_service::tls::TlsFiles,
    /// Control-plane gRPC endpoints; empty: do not register (tests, single-edge setups).
    pub control: Vec<String>,
    /// Lease TTL asked of the control plane.
    pub lease_ttl_secs: u32,
    /// How often the fleet's size is written to its history (for capacity forecasts).
    pub history_sample_secs: u64,
    /// Piles this instance takes (its weight for the operator; shards are split evenly).
    pub capacity: u32,
    /// The piles' local time zone, in minutes east of UTC (China: 480).
    pub pile_utc_offset_minutes: i32,
    /// The key file that seals card numbers and VINs (see `pylon_app::revenue::vault`);
    /// without one, card and VIN starts are refused and cards cannot be added.
    pub card_keys: Option<PathBuf>,
    pub revenue: RevenueConfig,
    pub retention: RetentionConfig,
    pub store: StoreConfig,
    pub alarms: AlarmConfig,
    /// How real-time status and charging events are written (`[ingest]`).
    pub ingest: IngestConfig,
    /// Fault injection, for tests only (see [`Fault`]).
    pub fault: Option<Fault>,
}

/// How long personal data and raw history are kept (days; 0 keeps them for ever). A job
/// applies it every hour. Financial records (transaction records, settlements, the
/// ledger, orders) are not touched: the law keeps them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// Raw per-charge events (real-time data, BMS frames): 90 days.
    pub raw_events_days: u32,
    /// Guns' status changes: 180 days.
    pub status_history_days: u32,
    /// A driver's account untouched this long with an empty wallet is anonymised (name,
    /// cards, VINs): 3 years.
    pub dormant_account_days: u32,
    /// Guns' traces (voltage, current, SOC, one sample a minute): 7 days.
    pub gun_samples_days: u32,
    /// Resolved alarms: 365 days.
    pub resolved_alarms_days: u32,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            raw_events_days: 90,
            status_history_days: 180,
            dormant_account_days: 3 * 365,
            gun_samples_days: 7,
            resolved_alarms_days: 365,
        }
    }
}

impl RetentionConfig {
    /// The cut-offs (Unix ms) at `now`: events, status history, dormant accounts (0: none).
    pub fn cutoffs(&self, now_ms: i64) -> (i64, i64, i64) {
        let before = |days: u32| {
            if days == 0 {
                0
            } else {
                now_ms - i64::from(days) * 86_400_000
            }
        };
        (
            before(self.raw_events_days),
            before(self.status_history_days),
            before(self.dormant_account_days),
        )
    }
}

/// Real-time status (0x13) and charging-process frames are written behind, in batches
/// (transaction records are not: they are committed before they are confirmed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestConfig {
    /// Longest a status or event waits before it is written (ms). What waits is lost if
    /// the process dies; a pile's next status restores its own.
    pub flush_ms: u64,
    /// Write as soon as this many events wait.
    pub batch_events: usize,
    /// Events kept while the store cannot be written; beyond, the oldest are dropped
    /// (counted in pylon_app_ingest_dropped_events).
    pub max_pending_events: usize,
}

impl Default for IngestConfig {
    fn default() -> Self {
        let d = crate::business::ingest::IngestSettings::default();
        IngestConfig {
            flush_ms: d.flush_every.as_millis() as u64,
            batch_events: d.batch_events,
            max_pending_events: d.max_pending_events,
        }
    }
}

impl IngestConfig {
    pub fn settings(&self) -> crate::business::ingest::IngestSettings {
        crate::business::ingest::IngestSettings {
            flush_every: std::time::Duration::from_millis(self.flush_ms.clamp(1, 60_000)),
            batch_events: self.batch_events.max(1),
            max_pending_events: self.max_pending_events.max(1),
        }
    }
}

/// Where alarms are sent and how they are judged.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlarmConfig {
    /// Webhook URLs: each alarm raised, acknowledged or resolved is POSTed as JSON,
    /// signed (header `x-pylon-signature: t=<ms>,v1=<hex HMAC-SHA256 of "<t>.<body>">`).
    pub webhooks: Vec<String>,
    /// The file holding the webhooks' HMAC secret (required with webhooks).
    pub webhook_secret_file: Option<PathBuf>,
    /// Alertmanager base URLs (`http://127.0.0.1:9093`): alarms are posted to its API v2.
    pub alertmanagers: Vec<String>,
    /// A pile logging in this many times within `flapping_minutes` is flapping.
    pub flapping_logins: u32,
    pub flapping_minutes: u32,
    /// A stop without a transaction record after this many minutes is an alarm.
    pub record_wait_minutes: u32,
    /// How often (seconds) the platform, this instance's store and certificate and the
    /// overdue records are checked.
    pub check_secs: u32,
}

impl Default for AlarmConfig {
    fn default() -> Self {
        let d = crate::alarms::AlarmSettings::default();
        AlarmConfig {
            webhooks: Vec::new(),
            webhook_secret_file: None,
            alertmanagers: Vec::new(),
            flapping_logins: d.flapping_logins as u32,
            flapping_minutes: d.flapping_minutes,
            record_wait_minutes: d.record_wait_minutes,
            check_secs: 30,
        }
    }
}

impl AlarmConfig {
    pub fn settings(&self) -> crate::alarms::AlarmSettings {
        crate::alarms::AlarmSettings {
            flapping_logins: self.flapping_logins as usize,
            flapping_minutes: self.flapping_minutes.max(1),
            record_wait_minutes: self.record_wait_minutes.max(1),
        }
    }
}

/// The operator's money rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RevenueConfig {
    /// No charge starts below this spendable balance (fen).
    pub min_balance: i64,
    /// At most this much (fen) is held for one charge, and so spent by it.
    pub max_hold: i64,
    /// A record whose amount differs from the platform's by more than this (0.0001 yuan)
    /// is flagged as a discrepancy.
    pub tolerance: i64,
}

impl Default for RevenueConfig {
    fn default() -> Self {
        RevenueConfig {
            min_balance: 100,
            max_hold: 50_000,
            tolerance: 100,
        }
    }
}

/// A fault a test can make the instance commit on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// Kill the process (SIGKILL) right after a new transaction record is committed,
    /// before its confirmation leaves: the charger's retransmission must find it stored.
    #[value(name = "kill_after_store")]
    KillAfterStore,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackend {
    /// One file on this machine (WAL, synchronous commits).
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    pub backend: StoreBackend,
    /// The SQLite file.
    pub path: PathBuf,
    /// The PostgreSQL URL, e.g. `postgres://pylon@db:5432/pylon`.
    pub url: String,
    /// The CA of the PostgreSQL server's certificate: the link is then TLS, the server's
    /// certificate verified against it and its host name (default: the cluster CA, when
    /// cluster TLS is on). Without one, only a server on this machine is reached in the
    /// clear, unless `--insecure-dev`.
    pub ca: Option<PathBuf>,
    /// PostgreSQL: how long a call keeps trying while no server takes writes (a
    /// failover), in seconds. Patroni's takes its leader TTL plus a loop.
    pub failover_secs: u64,
    /// PostgreSQL: at start, wait (however long it takes) for a server that takes
    /// writes, instead of exiting. For a disaster-recovery standby site, whose store is
    /// a read-only standby until `pylonctl dr promote`: its app instances then start
    /// serving on their own.
    pub wait_for_primary: bool,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            backend: StoreBackend::Sqlite,
            path: PathBuf::from("pylon-app.db"),
            url: String::new(),
            ca: None,
            failover_secs: 45,
            wait_for_primary: false,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            app_id: default_app_id(),
            log: None,
            grpc_listen: SocketAddr::from(([127, 0, 0, 1], DEFAULT_GRPC_PORT)),
            grpc_advertise: None,
            http_advertise: None,
            http_listen: SocketAddr::from(([127, 0, 0, 1], DEFAULT_HTTP_PORT)),
            admin_token: None,
            cluster_token: None,
            insecure_dev: false,
            cluster_tls: Default::default(),
            control: Vec::new(),
            lease_ttl_secs: 10,
            history_sample_secs: 3600,
            capacity: 1_000_000,
            pile_utc_offset_minutes: 480,
            card_keys: None,
            revenue: RevenueConfig::default(),
            retention: RetentionConfig::default(),
            store: StoreConfig::default(),
            alarms: AlarmConfig::default(),
            ingest: IngestConfig::default(),
            fault: None,
        }
    }
}

fn default_app_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "app".into());
    format!("app-{host}")
}

impl Config {
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        pylon_service::config::from_toml_file(path)
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        if let Some(filter) = &self.log {
            pylon_service::logging::check_filter(filter)?;
        }
        anyhow::ensure!(
            self.store.backend != StoreBackend::Postgres || !self.store.url.is_empty(),
            "the postgres store needs store.url (or --postgres-url)"
        );
        anyhow::ensure!(
            (-720..=840).contains(&self.pile_utc_offset_minutes),
            "pile_utc_offset_minutes must be within -720..=840"
        );
        anyhow::ensure!(
            self.insecure_dev || self.cluster_token.as_deref().is_some_and(|t| !t.is_empty()),
            "no cluster token (--cluster-token or PYLON_CLUSTER_TOKEN): anything that reaches the \
             business port could pose as an edge. Give one, or run with --insecure-dev on a \
             developer's machine"
        );
        anyhow::ensure!(
            self.revenue.min_balance >= 1 && self.revenue.max_hold >= self.revenue.min_balance,
            "revenue.min_balance must be at least 1 fen and revenue.max_hold at least min_balance"
        );
        anyhow::ensure!(
            self.revenue.tolerance >= 0,
            "revenue.tolerance cannot be negative"
        );
        if !self.control.is_empty() && self.grpc_listen.ip().is_unspecified() {
            anyhow::ensure!(
                self.grpc_advertise.is_some(),
                "grpc_listen is a wildcard address: set grpc_advertise (--grpc-advertise) to the address edges should use"
            );
        }
        if !self.control.is_empty() && self.http_listen.ip().is_unspecified() {
            anyhow::ensure!(
                self.http_advertise.is_some(),
                "http_listen is a wildcard address: set http_advertise (--http-advertise) to the \
                 operator API's URL the control plane should forward to"
            );
        }
        anyhow::ensure!(
            self.alarms.webhooks.is_empty()
                || self.alarms.webhook_secret_file.is_some()
                || self.insecure_dev,
            "alarm webhooks need a signing secret (--alarm-webhook-secret-file): receivers \
             could not tell our alarms from anyone's. Give one, or run with --insecure-dev"
        );
        for url in self
            .alarms
            .webhooks
            .iter()
            .chain(&self.alarms.alertmanagers)
        {
            anyhow::ensure!(
                url.starts_with("http://") || url.starts_with("https://"),
                "alarm target {url:?} is not an http(s):// URL"
            );
        }
        if let Some(url) = &self.http_advertise {
            let rest = url
                .strip_prefix("https://")
                .or_else(|| url.strip_prefix("http://"));
            let valid = rest.is_some_and(|r| {
                let r = r.trim_end_matches('/');
                !r.contains('/')
                    && r.rsplit_once(':')
                        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
            });
            anyhow::ensure!(valid, "http_advertise {url:?} is not http(s)://host:port");
            anyhow::ensure!(
                self.cluster_tls.is_empty() || url.starts_with("https://"),
                "http_advertise {url:?} is plain http, but this instance runs with cluster TLS: \
                 give its https:// URL"
            );
        }
        Ok(())
    }

    /// The operator API's base URL for the control plane: `http_advertise`, else
    /// `http_listen` (https with cluster TLS); empty when that is a wildcard address,
    /// which the control plane cannot reach.
    pub fn http_address(&self) -> String {
        if let Some(url) = &self.http_advertise {
            return url.trim_end_matches('/').to_owned();
        }
        if self.http_listen.ip().is_unspecified() {
            return String::new();
        }
        let scheme = if self.cluster_tls.is_empty() {
            "http"
        } else {
            "https"
        };
        format!("{scheme}://{}", self.http_listen)
    }

    pub fn grpc_address(&self) -> String {
        self.grpc_advertise
            .clone()
            .unwrap_or_else(|| self.grpc_listen.to_string())
    }

    pub fn offset(&self) -> time::UtcOffset {
        time::UtcOffset::from_whole_seconds(self.pile_utc_offset_minutes * 60)
            .unwrap_or(time::UtcOffset::UTC)
    }
}
