//! Control-plane configuration: a TOML file, with command-line flags overriding it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::api::{DEFAULT_GRPC_PORT, DEFAULT_HTTP_PORT};

mod etcd;
pub use etcd::{EtcdSecurity, Password};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// This replica's name (in the leader key, logs and `pylonctl status`).
    pub replica_id: String,
    /// Log filter (e.g. `info`, `pylon_control=debug,info`), changed live on SIGHUP;
    /// `--log` and `RUST_LOG` win over it.
    pub log: Option<String>,
    /// Dispatch (`/v1/entry`), admin API, `/metrics`, `/healthz`, `/readyz`.
    pub http_listen: SocketAddr,
    /// Membership and route push (gRPC).
    pub grpc_listen: SocketAddr,
    /// The gRPC address members and `pylonctl` should use, when it differs from
    /// `grpc_listen` (e.g. listening on 0.0.0.0).
    pub grpc_advertise: Option<String>,
    /// The HTTP base URL other replicas' users (`pylonctl rollout control`) should use for
    /// this replica, when it differs from `http_listen` (e.g. listening on 0.0.0.0):
    /// `https://10.0.0.5:7400`.
    pub http_advertise: Option<String>,
    /// Bearer token for the admin API (`pylonctl`). The admin API is off without one.
    pub admin_token: Option<String>,
    /// Bearer token members (edges, app instances) present to register. Without one,
    /// anything that reaches the gRPC port may register.
    pub cluster_token: Option<String>,
    /// Run without credentials on purpose (a developer's machine): without a cluster
    /// token anything may register, and without an admin token every caller of the API
    /// is an admin. Without it, the replica refuses to start so.
    pub insecure_dev: bool,
    /// Shards piles hash into. Every replica, edge and app instance must agree.
    pub shard_count: u32,
    /// Lease TTL given to members that do not ask for one.
    pub member_ttl_secs: u32,
    /// The leader's lease TTL: how long a dead leader holds on before another replica takes over.
    pub leader_ttl_secs: u32,
    /// How long a charger may reuse a dispatch answer.
    pub dispatch_ttl_secs: u32,
    /// Backup addresses in a dispatch answer.
    pub dispatch_backups: usize,
    pub registry: RegistryConfig,
    /// The cluster certificate: with it, gRPC is mutual TLS and the HTTP API HTTPS.
    pub cluster_tls: pylon_service::tls::TlsFiles,
    /// Disaster recovery with a second site (`[dr]`).
    pub dr: crate::dr::DrConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// In this process, persisted to a file: one machine, no set-up.
    Embedded,
    /// An etcd cluster: many machines, several control-plane replicas.
    Etcd,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistryConfig {
    pub backend: Backend,
    /// The embedded registry's file.
    pub path: PathBuf,
    /// etcd client URLs, e.g. `https://10.0.0.1:2379`.
    pub endpoints: Vec<String>,
    /// TLS and etcd's own user (`[registry.etcd]`).
    pub etcd: EtcdSecurity,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            backend: Backend::Embedded,
            path: PathBuf::from("pylon-registry.json"),
            endpoints: vec!["http://127.0.0.1:2379".into()],
            etcd: EtcdSecurity::default(),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            replica_id: default_replica_id(),
            log: None,
            http_listen: SocketAddr::from(([127, 0, 0, 1], DEFAULT_HTTP_PORT)),
            grpc_listen: SocketAddr::from(([127, 0, 0, 1], DEFAULT_GRPC_PORT)),
            grpc_advertise: None,
            http_advertise: None,
            admin_token: None,
            cluster_token: None,
            insecure_dev: false,
            shard_count: pylon_proto::routes::DEFAULT_SHARD_COUNT,
            member_ttl_secs: 10,
            leader_ttl_secs: 5,
            dispatch_ttl_secs: 300,
            dispatch_backups: 2,
            registry: RegistryConfig::default(),
            cluster_tls: Default::default(),
            dr: Default::default(),
        }
    }
}

fn default_replica_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".into());
    format!("{host}-{}", std::process::id())
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
            (1..=65_536).contains(&self.shard_count),
            "shard_count must be between 1 and 65536, not {}",
            self.shard_count
        );
        anyhow::ensure!(
            self.leader_ttl_secs >= 2,
            "leader_ttl_secs must be at least 2"
        );
        anyhow::ensure!(
            self.registry.backend == Backend::Embedded || !self.registry.endpoints.is_empty(),
            "the etcd registry needs at least one endpoint (registry.endpoints or --etcd)"
        );
        if self.registry.backend == Backend::Etcd {
            self.registry.etcd.validate(
                &self.registry.endpoints,
                &self.cluster_tls,
                self.insecure_dev,
            )?;
        }
        anyhow::ensure!(
            self.insecure_dev || self.cluster_token.as_deref().is_some_and(|t| !t.is_empty()),
            "no cluster token (--cluster-token or PYLON_CLUSTER_TOKEN): anything could register \
             as an edge or app instance. Give one, or run with --insecure-dev on a developer's machine"
        );
        self.dr.validate(self.insecure_dev)?;
        Ok(())
    }

    pub fn grpc_address(&self) -> String {
        self.grpc_advertise
            .clone()
            .unwrap_or_else(|| self.grpc_listen.to_string())
    }

    /// This replica's HTTP base URL as others should use it.
    pub fn http_address(&self) -> String {
        self.http_advertise.clone().unwrap_or_else(|| {
            let scheme = if self.cluster_tls.is_complete() {
                "https"
            } else {
                "http"
            };
            format!("{scheme}://{}", self.http_listen)
        })
    }

    pub fn leader_ttl(&self) -> Duration {
        Duration::from_secs(self.leader_ttl_secs.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_file_and_refuses_unknown_keys() {
        let config: Config = toml::from_str(
            "replica_id = \"c1\"\nshard_count = 64\n[registry]\nbackend = \"etcd\"\nendpoints = [\"http://127.0.0.1:2379\"]\n",
        )
        .unwrap();
        assert_eq!(config.shard_count, 64);
        assert_eq!(config.registry.backend, Backend::Etcd);
        assert!(config.validate().is_err(), "no cluster token: refused");
        let config = Config {
            cluster_token: Some("t".into()),
            ..config
        };
        config.validate().unwrap();
        let dev = Config {
            cluster_token: None,
            insecure_dev: true,
            ..config
        };
        dev.validate().unwrap();
        assert!(toml::from_str::<Config>("shards = 3").is_err());
    }
}
