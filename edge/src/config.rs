//! Edge configuration: a TOML file, with command-line flags overriding it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pylon_proto::api::edge::DEFAULT_ADMIN_PORT;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Name of this edge in logs, metrics and uplink messages.
    pub edge_id: String,
    /// Log filter (e.g. `info`, `pylon_edge=debug,info`), changed live on SIGHUP;
    /// `--log` and `RUST_LOG` win over it.
    pub log: Option<String>,
    /// Number of executors (one per core); 0 means one per available CPU.
    pub executors: usize,
    /// Pin each executor to its own CPU.
    pub pin_cpus: bool,
    /// Plain TCP listener address (shared by all executors with SO_REUSEPORT).
    pub tcp_listen: Option<SocketAddr>,
    /// TLS listener address.
    pub tls_listen: Option<SocketAddr>,
    /// Admin/metrics HTTP address (/metrics, /healthz, /readyz, /v1/...).
    pub admin_listen: SocketAddr,
    /// A bootstrap admin token for the admin API, for an edge without a control plane
    /// (with one, operators use the tokens it issues).
    pub admin_token: Option<String>,
    /// Run without credentials on purpose (a developer's machine): no cluster token, and
    /// with no admin token or control plane every admin API caller an admin. Without it,
    /// the edge refuses to start so.
    pub insecure_dev: bool,
    /// The cluster certificate: with it, the links to the control plane and the app
    /// instances are mutual TLS and the admin API is HTTPS.
    pub cluster_tls: pylon_service::tls::TlsFiles,
    pub tls: TlsConfig,
    pub limits: Limits,
    pub auth: AuthConfig,
    /// Per-executor io_uring buffer memory in bytes (glommio's default is 10 MiB).
    pub io_memory: usize,
    /// io_uring submission queue depth per executor. The kernel sizes the table it
    /// searches on every cancellation by this (up to 256 buckets at 4096 entries), and
    /// glommio cancels its preemption timers on every loop, so with many idle
    /// connections (one pending poll each) a deep ring is much cheaper.
    pub ring_depth: usize,
    /// Longest time (µs) an executor parks in `epoll_wait` before it lets glommio's
    /// reactor run (timers); also glommio's preemption tick. Commands from other threads
    /// (downlinks, login verdicts, drains) do not wait for it: they ring the executor's
    /// doorbell, and sockets wake it when they are ready. What waits for it is timers
    /// only (the deadline sweep every 500 ms, the drain's pace), so it can be long: every
    /// wake-up of an idle executor costs a context switch, and at 10 ms those were a
    /// quarter of the edge's CPU at 20,000 sessions.
    pub park_timeout_us: u64,
    /// Kernel help for spreading connections over executors: off, auto or on.
    pub ebpf: crate::ebpf::EbpfMode,
    /// A bpffs directory where edge processes serving the same ports share their listener
    /// arrays (several processes per host); none: this process alone.
    pub ebpf_pin_dir: Option<PathBuf>,
    /// The CPU of executor 0 (executor i runs on CPU first_cpu + i when pinned): lets
    /// several edge processes on one host take different CPUs.
    pub first_cpu: usize,
    pub syn_guard: crate::ebpf::SynGuardConfig,
    /// Spread SYNs arriving on this interface over the executors' CPUs (XDP + CPUMAP);
    /// empty: leave spreading to the NIC.
    pub xdp_spread: String,
    pub control: ControlConfig,
}

/// Registration with the control plane and the route table it pushes.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ControlConfig {
    /// Control-plane gRPC endpoints (`http://host:7401`), tried in turn. Empty: the edge
    /// runs standalone and registers nowhere.
    pub endpoints: Vec<String>,
    /// The cluster token presented when registering.
    pub token: Option<String>,
    /// `host:port` chargers should use for plain TCP (default: `tcp_listen`, unless it
    /// is a wildcard address).
    pub advertise_tcp: Option<String>,
    /// `host:port` chargers should use for TLS (default: `tls_listen`, unless wildcard).
    pub advertise_tls: Option<String>,
    /// Sessions this edge takes before dispatch sends piles elsewhere (default: executors
    /// times `limits.max_sessions_per_executor`).
    pub capacity: Option<u32>,
    /// The registration lease: the edge drops out of dispatch this long after it dies.
    pub lease_ttl_secs: u32,
    /// When an operator drains this edge, its chargers are moved off over this period.
    pub drain_period_secs: u64,
}

impl Default for ControlConfig {
    fn default() -> Self {
        ControlConfig {
            endpoints: Vec::new(),
            token: None,
            advertise_tcp: None,
            advertise_tls: None,
            capacity: None,
            lease_ttl_secs: 10,
            drain_period_secs: 60,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chains, each paired with the key at the same position in `keys`.
    /// Give an ECDSA and an RSA pair to serve both kinds of client.
    pub certs: Vec<PathBuf>,
    pub keys: Vec<PathBuf>,
    /// PEM CA bundle: when set, chargers must present a certificate signed by it.
    pub client_ca: Option<PathBuf>,
    /// Allow TLS 1.2 (many deployed chargers have nothing newer).
    pub enable_tls12: bool,
    /// Size of the server-side session cache for resumption (in sessions).
    pub session_cache: usize,
    /// Session-ticket keys shared by every edge of the site (one per line, 64 hex
    /// digits; the first seals, all open), so a charger resumes its session on whichever
    /// edge its reconnection reaches. Without it each edge process makes its own key.
    pub ticket_key: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// A TLS handshake must finish within this many seconds.
    pub tls_handshake_timeout_secs: u64,
    /// The login frame (0x01) must arrive within this many seconds of connecting.
    pub login_timeout_secs: u64,
    /// Expected heartbeat interval; three missed intervals close the session.
    pub heartbeat_interval_secs: u64,
    /// Sustained frames per second a connection may send.
    pub max_frames_per_sec: u32,
    /// Burst of frames allowed above the sustained rate.
    pub frame_burst: u32,
    /// Bytes that may wait to be written to one connection before it is closed.
    pub max_buffered_bytes: usize,
    /// Connections one executor accepts before refusing new ones.
    pub max_sessions_per_executor: usize,
    /// Seconds a drain keeps serving before closing the remaining sessions.
    pub drain_grace_secs: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// File of allowed pile numbers, one per line (`#` starts a comment).
    pub allowlist: Option<PathBuf>,
    /// Accept every pile (standalone demos and benchmarks).
    pub allow_all: bool,
    /// Let the app service owning each pile decide its login (the pile registry in the
    /// business store) instead of a local list. Needs `control.endpoints`.
    pub app_login: bool,
    /// File of pile numbers (one per line, as the allowlist) that may log in over TLS only:
    /// a plain-TCP login of one of them is refused.
    pub tls_only: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            edge_id: default_edge_id(),
            log: None,
            executors: 0,
            pin_cpus: false,
            tcp_listen: Some(([0, 0, 0, 0], 8768).into()),
            tls_listen: None,
            admin_listen: ([127, 0, 0, 1], DEFAULT_ADMIN_PORT).into(),
            admin_token: None,
            insecure_dev: false,
            cluster_tls: Default::default(),
            tls: TlsConfig {
                enable_tls12: true,
                session_cache: 65_536,
                ..Default::default()
            },
            limits: Limits::default(),
            auth: AuthConfig::default(),
            io_memory: 256 * 1024,
            ring_depth: 4096,
            park_timeout_us: 100_000,
            ebpf: crate::ebpf::EbpfMode::Off,
            ebpf_pin_dir: None,
            first_cpu: 0,
            syn_guard: Default::default(),
            xdp_spread: String::new(),
            control: ControlConfig::default(),
        }
    }
}

/// The host name: unique per machine, which is what one edge per machine needs. Several
/// edges on one machine need `--edge-id` each (the control plane refuses duplicates).
fn default_edge_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "edge-1".into())
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            tls_handshake_timeout_secs: 10,
            login_timeout_secs: 30,
            heartbeat_interval_secs: 10,
            max_frames_per_sec: 20,
            frame_burst: 100,
            max_buffered_bytes: 64 * 1024,
            max_sessions_per_executor: 500_000,
            drain_grace_secs: 30,
        }
    }
}

impl Limits {
    pub fn heartbeat_timeout(&self) -> Duration {
        Duration::from_secs(3 * self.heartbeat_interval_secs)
    }
}

impl Config {
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        pylon_service::config::from_toml_file(path)
    }

    pub fn executor_count(&self) -> usize {
        if self.executors > 0 {
            self.executors
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }

    /// The address chargers should use for `listen`, or `None` when it cannot be told
    /// (a wildcard listen address without an explicit advertised one).
    fn advertised(explicit: &Option<String>, listen: Option<SocketAddr>) -> Option<String> {
        explicit.clone().or_else(|| {
            listen
                .filter(|a| !a.ip().is_unspecified())
                .map(|a| a.to_string())
        })
    }

    pub fn advertise_tcp(&self) -> Option<String> {
        Self::advertised(&self.control.advertise_tcp, self.tcp_listen)
    }

    pub fn advertise_tls(&self) -> Option<String> {
        Self::advertised(&self.control.advertise_tls, self.tls_listen)
    }

    /// Sessions this edge takes, as told to the control plane.
    pub fn capacity(&self) -> u32 {
        self.control.capacity.unwrap_or_else(|| {
            let total = self.executor_count() * self.limits.max_sessions_per_executor;
            u32::try_from(total).unwrap_or(u32::MAX)
        })
    }

    /// Checks what would otherwise fail later with a less clear message.
    pub fn validate(&self) -> anyhow::Result<()> {
        if !self.control.endpoints.is_empty() {
            if self.tcp_listen.is_some() && self.advertise_tcp().is_none() {
                anyhow::bail!("tcp_listen is a wildcard address: set control.advertise_tcp (or --advertise-tcp) to the address chargers should use");
            }
            if self.tls_listen.is_some() && self.advertise_tls().is_none() {
                anyhow::bail!("tls_listen is a wildcard address: set control.advertise_tls (or --advertise-tls) to the address chargers should use");
            }
            if self.control.lease_ttl_secs < 2 {
                anyhow::bail!("control.lease_ttl_secs must be at least 2");
            }
            if !self.insecure_dev && self.control.token.as_deref().is_none_or(str::is_empty) {
                anyhow::bail!("no cluster token (control.token, --control-token or PYLON_CLUSTER_TOKEN): the control plane and app instances would take this edge for anyone. Give one, or run with --insecure-dev on a developer's machine");
            }
        }
        if self.tcp_listen.is_none() && self.tls_listen.is_none() {
            anyhow::bail!("nothing to listen on: set tcp_listen and/or tls_listen");
        }
        if self.tls_listen.is_some() {
            if self.tls.certs.is_empty() {
                anyhow::bail!("tls_listen is set but no certificate is configured (tls.certs)");
            }
            if self.tls.certs.len() != self.tls.keys.len() {
                anyhow::bail!(
                    "tls.certs has {} entries but tls.keys has {}: give one key per certificate",
                    self.tls.certs.len(),
                    self.tls.keys.len()
                );
            }
        }
        if !self.xdp_spread.is_empty() && self.xdp_spread == self.syn_guard.interface {
            anyhow::bail!("--xdp-spread and --syn-guard name the same interface ({}); an interface takes one XDP program: put the guard on the interface facing the chargers and spread on another, or use one of them", self.xdp_spread);
        }
        if self.auth.app_login && self.control.endpoints.is_empty() {
            anyhow::bail!("auth.app_login needs the control plane (control.endpoints / --control) to find the app service");
        }
        if !self.auth.allow_all && self.auth.allowlist.is_none() && !self.auth.app_login {
            anyhow::bail!("no login policy: give an allowlist file (auth.allowlist / --allowlist), --app-login or --allow-all");
        }
        if let Some(filter) = &self.log {
            pylon_service::logging::check_filter(filter)?;
        }
        if self.limits.heartbeat_interval_secs == 0 || self.limits.max_frames_per_sec == 0 {
            anyhow::bail!(
                "limits.heartbeat_interval_secs and limits.max_frames_per_sec must be positive"
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_partial_file() {
        let c: Config = toml::from_str(
            "edge_id = \"e7\"\ntls_listen = \"127.0.0.1:8443\"\n[limits]\nheartbeat_interval_secs = 5\n",
        )
        .unwrap();
        assert_eq!(c.edge_id, "e7");
        assert_eq!(c.limits.heartbeat_interval_secs, 5);
        assert_eq!(c.limits.login_timeout_secs, 30);
    }

    #[test]
    fn rejects_unknown_keys() {
        assert!(toml::from_str::<Config>("edge_idd = \"x\"").is_err());
    }
}
