//! The `pylon-app` process, one instance of the charging business service: its command
//! line and [`run`].

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::config::{Config, StoreBackend};
use clap::Parser;

/// The Pylon charging business service: checks logins against the pile registry, serves
/// billing models, runs remote start and stop, keeps the status of every pile and gun, and
/// stores transaction records before confirming them to the pile.
///
/// Edges open a business stream to it (gRPC); operators use its HTTP API (or pylonctl
/// piles|records|charge) with the control plane's admin token. It registers with the
/// control plane, which assigns it a share of the piles (shards).
///
/// Settings come from a TOML file (--config) and the flags below, which override it.
/// Examples:
///
///   pylon-app --app-id app-1 --control http://127.0.0.1:7401 --sqlite /var/lib/pylon/app.db
///   pylon-app --app-id app-2 --store postgres --postgres-url postgres://pylon@db/pylon \
///       --grpc-listen 0.0.0.0:7500 --grpc-advertise 10.0.0.8:7500 --control http://10.0.0.5:7401
///
/// SIGTERM or Ctrl-C stops the instance; it leaves the cluster so its piles move at once.
#[derive(Parser, Debug, Clone)]
#[command(name = "pylon-app", version, verbatim_doc_comment)]
pub struct Cli {
    /// TOML configuration file.
    #[arg(long, short, env = "PYLON_APP_CONFIG")]
    config: Option<PathBuf>,
    /// This instance's id in the registry (default: app-<hostname>).
    #[arg(long)]
    app_id: Option<String>,
    /// Business stream from edges (default 127.0.0.1:7500).
    #[arg(long)]
    grpc_listen: Option<SocketAddr>,
    /// The address edges should use, if not --grpc-listen.
    #[arg(long)]
    grpc_advertise: Option<String>,
    /// Operator API, /metrics, /healthz (default 127.0.0.1:7510).
    #[arg(long)]
    http_listen: Option<SocketAddr>,
    /// The operator API's URL the control plane forwards operators' calls to, if not
    /// --http-listen (needed when that is 0.0.0.0), e.g. http://10.0.0.7:7510.
    #[arg(long)]
    http_advertise: Option<String>,
    /// Control-plane gRPC endpoints, comma-separated.
    #[arg(long, value_delimiter = ',')]
    control: Vec<String>,
    /// A bootstrap admin token for this instance's operator API, for running without a
    /// control plane (with one, operators use the tokens the control plane issues).
    #[arg(long, env = "PYLON_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Start without credentials, for a developer's machine only: the business stream
    /// open to anyone and, with no admin token or control plane, every API caller an admin.
    #[arg(long)]
    insecure_dev: bool,
    #[command(flatten)]
    cluster_tls: pylon_service::tls::TlsArgs,
    /// Cluster token, presented to the control plane and required from edges.
    #[arg(long, env = "PYLON_CLUSTER_TOKEN", hide_env_values = true)]
    cluster_token: Option<String>,
    /// Where business data lives: sqlite (one file) or postgres.
    #[arg(long, value_enum)]
    store: Option<StoreBackend>,
    /// The SQLite file (default ./pylon-app.db).
    #[arg(long)]
    sqlite: Option<PathBuf>,
    /// The PostgreSQL URL.
    #[arg(long, env = "PYLON_POSTGRES_URL", hide_env_values = true)]
    postgres_url: Option<String>,
    /// The CA of the PostgreSQL server's certificate: TLS to the store, verified (default:
    /// the cluster CA with --cluster-ca). Without one, a store on another machine is
    /// refused unless --insecure-dev.
    #[arg(long, env = "PYLON_POSTGRES_CA")]
    postgres_ca: Option<PathBuf>,
    /// At start, wait for the PostgreSQL store to take writes instead of exiting: for the
    /// app instances of a disaster-recovery standby site, whose store is read-only until
    /// `pylonctl dr promote` (`[store] wait_for_primary`).
    #[arg(long, env = "PYLON_WAIT_FOR_PRIMARY")]
    wait_for_primary: bool,
    /// Lease TTL asked of the control plane, in seconds.
    #[arg(long)]
    lease_ttl: Option<u32>,
    /// The piles' local time zone in minutes east of UTC (default 480, China).
    #[arg(long, allow_hyphen_values = true)]
    pile_utc_offset_minutes: Option<i32>,
    /// The key file sealing card numbers and VINs at rest (created with
    /// `pylonctl keys init`); without it, card and VIN starts are refused.
    #[arg(long, env = "PYLON_CARD_KEYS")]
    card_keys: Option<std::path::PathBuf>,
    /// Create the --card-keys file (a new sealing key and index key, mode 0600) if it does
    /// not exist yet: for a first start. Without it a missing file is an error, so a lost
    /// mount never silently starts a new key.
    #[arg(long, requires = "card_keys")]
    init_card_keys: bool,
    /// A webhook URL for alarms (repeat, or comma-separate, for several): each alarm
    /// raised, acknowledged or resolved is POSTed as JSON, signed with HMAC-SHA256.
    #[arg(
        long = "alarm-webhook",
        env = "PYLON_ALARM_WEBHOOKS",
        value_delimiter = ','
    )]
    alarm_webhooks: Vec<String>,
    /// The file holding the webhooks' HMAC secret (header
    /// `x-pylon-signature: t=<unix ms>,v1=<hex HMAC-SHA256 of "<t>.<body>">`).
    #[arg(long, env = "PYLON_ALARM_WEBHOOK_SECRET_FILE")]
    alarm_webhook_secret_file: Option<PathBuf>,
    /// An Alertmanager to post alarms to (its base URL, e.g. http://127.0.0.1:9093).
    #[arg(
        long = "alertmanager",
        env = "PYLON_ALERTMANAGERS",
        value_delimiter = ','
    )]
    alertmanagers: Vec<String>,
    /// How often (seconds) platform alarms (edges and app instances gone, route lag,
    /// certificates), this instance's store and overdue records are checked (default 30).
    #[arg(long, env = "PYLON_ALARM_CHECK_SECS")]
    alarm_check_secs: Option<u32>,
    /// How often (seconds) the fleet's size is written to its history, which
    /// `pylonctl capacity forecast` fits (default 3600).
    #[arg(long, env = "PYLON_HISTORY_SAMPLE_SECS", value_name = "SECS")]
    history_sample_secs: Option<u64>,
    /// Fault injection, for tests only: commit the fault on purpose.
    #[arg(long, value_enum, env = "PYLON_APP_FAULT", hide = true)]
    fault: Option<crate::config::Fault>,
    #[command(flatten)]
    pub config_args: pylon_service::config::ConfigArgs,
    #[command(flatten)]
    pub log: pylon_service::logging::LogArgs,
}

impl Cli {
    fn into_config(self) -> anyhow::Result<Config> {
        let mut c: Config = pylon_service::config::file_or_default(self.config.as_deref())?;
        let cli = self;
        pylon_service::overlay!(cli => c;
            set: app_id => app_id, grpc_listen => grpc_listen, http_listen => http_listen,
                store => store.backend, sqlite => store.path, postgres_url => store.url,
                lease_ttl => lease_ttl_secs, pile_utc_offset_minutes => pile_utc_offset_minutes,
                alarm_check_secs => alarms.check_secs,
                history_sample_secs => history_sample_secs;
            some: fault => fault, grpc_advertise => grpc_advertise,
                http_advertise => http_advertise, admin_token => admin_token,
                cluster_token => cluster_token, card_keys => card_keys,
                postgres_ca => store.ca,
                alarm_webhook_secret_file => alarms.webhook_secret_file;
            lists: control => control, alarm_webhooks => alarms.webhooks,
                alertmanagers => alarms.alertmanagers;
        );
        c.insecure_dev |= cli.insecure_dev;
        c.store.wait_for_primary |= cli.wait_for_primary;
        cli.cluster_tls.overlay(&mut c.cluster_tls);
        // Printing or checking the configuration writes nothing.
        let only_looking = cli.config_args.print_config || cli.config_args.check_config.is_some();
        if let (true, false, Some(path)) = (cli.init_card_keys, only_looking, &c.card_keys) {
            if !path.exists() {
                crate::revenue::vault::Vault::create_file(path)?;
                tracing::info!(path = %path.display(), "created a new card key file; back it up");
            }
        }
        c.validate()?;
        Ok(c)
    }
}

/// Runs the app service until the first SIGTERM or SIGINT (a second stops at once).
pub fn run(mut cli: Cli) -> anyhow::Result<()> {
    let checks = cli.config_args.clone();
    cli.config = checks.config_file(cli.config.take());
    let reread = cli.clone();
    let config = cli.into_config()?;
    if pylon_service::config::handled(&checks, &config)? {
        return Ok(());
    }
    pylon_service::reload::log_filter_on_hangup(
        "pylon-app",
        config.clone(),
        |c| c.log.as_deref(),
        move || reread.clone().into_config(),
    )?;
    pylon_service::process::serve_until_signalled("pylon-app", 2, |shutdown| {
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
