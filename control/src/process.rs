//! The `pylon-control` process, one replica of the Pylon control plane: its command line
//! and [`run`].

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::config::{Backend, Config};
use clap::Parser;

/// The Pylon control plane: the registry of edges and app instances, entry-address
/// dispatch for chargers (GET /v1/entry?pile=...), the shard map, route push to edges, and
/// the admin API that pylonctl talks to.
///
/// One machine needs nothing else: the default registry is embedded and kept in a file.
/// For several machines, run an etcd cluster and two or more replicas with
/// --registry etcd; they elect a leader to write shard assignments, and all of them serve
/// dispatch and route push.
///
/// Settings come from a TOML file (--config) and the flags below, which override it.
/// Examples:
///
///   pylon-control --admin-token "$(cat admin.token)" --registry-file /var/lib/pylon/registry.json
///   pylon-control --registry etcd --etcd https://10.0.0.1:2379,https://10.0.0.2:2379 \
///       --etcd-user pylon --http-listen 0.0.0.0:7400 --grpc-listen 0.0.0.0:7401 \
///       --grpc-advertise 10.0.0.5:7401 --cluster-ca ca.pem --cluster-cert control.pem \
///       --cluster-key control.key     (PYLON_ETCD_PASSWORD in the environment)
///
/// SIGTERM or Ctrl-C stops the replica; a leader hands over leadership on the way out.
#[derive(Parser, Debug, Clone)]
#[command(name = "pylon-control", version, verbatim_doc_comment)]
pub struct Cli {
    /// TOML configuration file.
    #[arg(long, short, env = "PYLON_CONTROL_CONFIG")]
    config: Option<PathBuf>,
    /// This replica's name (default: hostname-pid).
    #[arg(long)]
    replica_id: Option<String>,
    /// HTTP address: dispatch, admin API, /metrics, /healthz, /readyz (default 127.0.0.1:7400).
    #[arg(long)]
    http_listen: Option<SocketAddr>,
    /// gRPC address: membership and route push (default 127.0.0.1:7401).
    #[arg(long)]
    grpc_listen: Option<SocketAddr>,
    /// gRPC address to tell members and pylonctl, if not --grpc-listen.
    #[arg(long)]
    grpc_advertise: Option<String>,
    /// HTTP base URL to tell other replicas' users, if not http(s)://--http-listen.
    #[arg(long)]
    http_advertise: Option<String>,
    /// Where the registry lives: embedded (a local file) or etcd.
    #[arg(long, value_enum)]
    registry: Option<Backend>,
    /// The embedded registry's file (default ./pylon-registry.json).
    #[arg(long)]
    registry_file: Option<PathBuf>,
    /// etcd client URLs, comma-separated. Use https:// with client certificates when etcd
    /// is on another machine; http:// is refused there (unless --insecure-dev).
    #[arg(long, value_delimiter = ',')]
    etcd: Vec<String>,
    /// The CA that signed etcd's certificates (PEM), for https:// endpoints (default: the
    /// cluster CA).
    #[arg(long, env = "PYLON_ETCD_CA")]
    etcd_ca: Option<PathBuf>,
    /// The client certificate shown to etcd (PEM; default: the cluster certificate). etcd
    /// checks it with --client-cert-auth, and without --etcd-user takes the user from its
    /// common name.
    #[arg(long, env = "PYLON_ETCD_CERT")]
    etcd_cert: Option<PathBuf>,
    /// The key of --etcd-cert (PEM).
    #[arg(long, env = "PYLON_ETCD_KEY")]
    etcd_key: Option<PathBuf>,
    /// etcd user, when etcd's auth is on; the password comes from PYLON_ETCD_PASSWORD or
    /// --etcd-password-file.
    #[arg(long, env = "PYLON_ETCD_USER")]
    etcd_user: Option<String>,
    /// A file holding the etcd user's password.
    #[arg(long)]
    etcd_password_file: Option<PathBuf>,
    /// The etcd user's password (prefer the environment, which `ps` does not show).
    #[arg(long, env = "PYLON_ETCD_PASSWORD", hide_env_values = true)]
    etcd_password: Option<crate::config::Password>,
    /// Bootstrap admin token: creates the first admin user (`pylonctl users create`), and
    /// stops working once an enabled admin user exists. Needed on a first start.
    #[arg(long, env = "PYLON_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Bearer token edges and app instances must present to register (required).
    #[arg(long, env = "PYLON_CLUSTER_TOKEN", hide_env_values = true)]
    cluster_token: Option<String>,
    /// Start without credentials, for a developer's machine only: without a cluster token
    /// anything may register, without an admin token every API caller is an admin.
    #[arg(long)]
    insecure_dev: bool,
    #[command(flatten)]
    cluster_tls: pylon_service::tls::TlsArgs,
    /// Shards piles hash into; every component must agree (default 1024).
    #[arg(long)]
    shard_count: Option<u32>,
    /// Leader lease TTL in seconds: how fast another replica takes over (default 5).
    #[arg(long)]
    leader_ttl: Option<u32>,
    /// Threads serving requests (default 2).
    #[arg(long, default_value_t = 2)]
    worker_threads: usize,
    #[command(flatten)]
    pub config_args: pylon_service::config::ConfigArgs,
    #[command(flatten)]
    pub log: pylon_service::logging::LogArgs,
}

impl Cli {
    fn into_config(self) -> anyhow::Result<Config> {
        let mut config: Config = pylon_service::config::file_or_default(self.config.as_deref())?;
        let cli = self;
        pylon_service::overlay!(cli => config;
            set: replica_id => replica_id, http_listen => http_listen, grpc_listen => grpc_listen,
                registry => registry.backend, registry_file => registry.path,
                shard_count => shard_count, leader_ttl => leader_ttl_secs;
            some: grpc_advertise => grpc_advertise, http_advertise => http_advertise, admin_token => admin_token,
                cluster_token => cluster_token;
            lists: etcd => registry.endpoints;
        );
        let etcd = &mut config.registry.etcd;
        pylon_service::overlay!(cli => etcd;
            some: etcd_ca => tls.ca, etcd_cert => tls.cert, etcd_key => tls.key,
                etcd_user => user, etcd_password_file => password_file;
        );
        if let Some(password) = cli.etcd_password {
            etcd.password = Some(password);
        }
        config.insecure_dev |= cli.insecure_dev;
        cli.cluster_tls.overlay(&mut config.cluster_tls);
        config.validate()?;
        Ok(config)
    }
}

/// Runs the control service until the first SIGTERM or SIGINT (a second stops at once).
pub fn run(mut cli: Cli) -> anyhow::Result<()> {
    let workers = cli.worker_threads;
    let checks = cli.config_args.clone();
    cli.config = checks.config_file(cli.config.take());
    let reread = cli.clone();
    let config = cli.into_config()?;
    if pylon_service::config::handled(&checks, &config)? {
        return Ok(());
    }
    pylon_service::reload::log_filter_on_hangup(
        "pylon-control",
        config.clone(),
        |c| c.log.as_deref(),
        move || reread.clone().into_config(),
    )?;
    pylon_service::process::serve_until_signalled("pylon-control", workers, |shutdown| {
        crate::server::run(config, shutdown)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }
}
