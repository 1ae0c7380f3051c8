//! The commands of `pylonctl`, one file per group. Here: the options every operator
//! command shares, and the dispatch.
//!
//! - [`control`]: `status`, `edges`, `apps`, `shards`, `entry`, `routes show`.
//! - [`watch`]: `routes watch`, the control plane's gRPC route stream.
//! - [`app`]: what the app service's commands share (connection, context, errors).
//! - [`business`]: `piles` (with `piles keys`, a pile's 3DES key), `records` and `charge`,
//!   through the app service's operator API.
//! - [`stations`], [`tariffs`], [`accounts`], [`reports`], [`keys`]: the app service's
//!   revenue side (`keys rotate`: its card keys).
//! - [`identity`]: `users`, `tokens`, `login`, `logout` and `whoami`: who operates Pylon,
//!   through the control plane (passwords from a prompt or stdin, [`identity::password`]).
//! - [`audit`]: `audit list|verify`, the control plane's hash-chained audit log.
//! - [`dr`]: `dr status|promote|demote`, disaster recovery with a second site.
//! - [`guard`]: `guard status|block|unblock`, an edge's SYN-flood guard.
//! - [`top`]: `top`, a live view of edges from their Prometheus metrics.
//! - [`ykc`]: `ykc decode|encode|types`, offline.
//! - [`certs`]: `certs init|issue|rotate|show`, the cluster's TLS certificates, offline.

pub mod accounts;
pub mod alarms;
pub mod app;
pub mod audit;
pub mod backup;
pub mod business;
pub mod capacity;
pub mod certs;
pub mod control;
pub mod dr;
pub mod guard;
pub mod identity;
pub mod keys;
pub mod reports;
pub mod rollout;
pub mod stations;
pub mod tariffs;
pub mod top;
pub mod watch;
pub mod ykc;

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};
use pylon_proto::ykc::PileNo;
use serde::Serialize;

use self::accounts::AccountsArgs;
use self::audit::AuditArgs;
use self::business::{ChargeArgs, PilesArgs, RecordsArgs};
pub use self::control::{
    AppsArgs, AppsCommand, EdgesArgs, EdgesCommand, EntryArgs, RoutesArgs, RoutesCommand,
    ShardsArgs, ShardsCommand, StatusArgs, TransportArg,
};
use self::control::{
    APPS_ABOUT, EDGES_ABOUT, ENTRY_ABOUT, ROUTES_ABOUT, SHARDS_ABOUT, STATUS_ABOUT,
};
use self::guard::GuardArgs;
use self::identity::password::{Console, ProcessConsole};
use self::identity::{LoginArgs, LogoutArgs, TokensArgs, UsersArgs, WhoamiArgs};
use self::keys::KeysArgs;
use self::reports::ReportsArgs;
use self::stations::StationsArgs;
use self::tariffs::TariffsArgs;
use self::top::TopArgs;
use crate::cli::Failure;
use crate::client::{Client, ClientError};
use crate::config::{self, Flags, Settings};

/// Where the control plane is, how to prove who you are, and how to print; every
/// operator command takes these, before or after its subcommand.
#[derive(Debug, Clone, Default, PartialEq, Eq, Args)]
#[command(next_help_heading = "Connection and output")]
pub struct ConnectOptions {
    /// The control plane's HTTP address [env: PYLON_ENDPOINT] [default: http://127.0.0.1:7400]
    ///
    /// Taken from, in order: this flag, PYLON_ENDPOINT, `endpoint` in the
    /// config file, http://127.0.0.1:7400. An https:// URL (a control plane
    /// with cluster TLS) also needs --ca.
    #[arg(long, global = true, value_name = "URL", verbatim_doc_comment)]
    pub endpoint: Option<String>,

    /// The token, sent as `Authorization: Bearer <TOKEN>` [env: PYLON_TOKEN]
    ///
    /// Taken from, in order: this flag, PYLON_TOKEN, `token` in the config file.
    /// Prefer the variable or the file: other users can see a flag in `ps`.
    /// Get one with `pylonctl login`, or from an admin (`pylonctl tokens create`).
    #[arg(long, global = true, value_name = "TOKEN", verbatim_doc_comment)]
    pub token: Option<String>,

    /// The config file [env: PYLONCTL_CONFIG] [default: ~/.config/pylon/pylonctl.toml]
    ///
    /// TOML with the keys `endpoint`, `token`, `grpc_endpoint`, `app_endpoint`
    /// (for `piles`, `records` and `charge`), `edge_admin` (for `guard`),
    /// `ca` (the cluster CA, for https), `cert` and `key` (a client
    /// certificate, for `routes watch` with cluster TLS), e.g.
    ///     endpoint = "https://10.0.0.5:7400"
    ///     ca = "/etc/pylon/certs/ca.pem"
    ///     cert = "/etc/pylon/certs/operator-ana.pem"
    ///     key = "/etc/pylon/certs/operator-ana.key"
    ///     token = "..."
    /// The default is $XDG_CONFIG_HOME/pylon/pylonctl.toml, else
    /// ~/.config/pylon/pylonctl.toml, and need not exist; a file named by this
    /// flag or by PYLONCTL_CONFIG must.
    #[arg(long, global = true, value_name = "FILE", verbatim_doc_comment)]
    pub config: Option<PathBuf>,

    /// The cluster CA's certificate (PEM), for an https:// endpoint [env: PYLON_CA]
    ///
    /// With cluster TLS on (the services started with --cluster-ca,
    /// --cluster-cert and --cluster-key), the control plane and the app
    /// service serve HTTPS: give an https:// URL and the cluster CA's
    /// certificate, ca.pem from `pylonctl certs init`, which pylonctl checks
    /// the server's certificate against (with the URL's host name or IP
    /// address, which the certificate must carry). Only this CA is trusted,
    /// never the system's, and https needs it. The token says who you are; a
    /// client certificate is shown only with --cert and --key. Taken from, in
    /// order: this flag, PYLON_CA, `ca` in the config file (a relative path
    /// there is taken from the config file's folder). Unused for http:// URLs.
    #[arg(long, global = true, value_name = "FILE", verbatim_doc_comment)]
    pub ca: Option<PathBuf>,

    /// A client certificate (PEM) of the cluster CA, for mutual TLS [env: PYLON_CERT]
    ///
    /// `routes watch` with cluster TLS on needs it: the control plane's gRPC
    /// port is mutual TLS and takes only clients showing a certificate of the
    /// cluster CA (the token still says who you are). Make an operator's
    /// certificate once, where the cluster CA is:
    ///     pylonctl certs issue --dir /etc/pylon/certs operator-ana --dns operator-ana
    /// (its name and --dns are labels only: servers check a client's
    /// certificate against the CA, not its names), then give
    /// --cert /etc/pylon/certs/operator-ana.pem --key .../operator-ana.key.
    /// Over HTTPS it is shown too (optional there). Needs --key. Taken from,
    /// in order: this flag, PYLON_CERT, `cert` in the config file (a relative
    /// path there is taken from the config file's folder).
    #[arg(long, global = true, value_name = "FILE", verbatim_doc_comment)]
    pub cert: Option<PathBuf>,

    /// The private key (PEM) of --cert [env: PYLON_KEY]
    ///
    /// NAME.key, written by `pylonctl certs issue` beside NAME.pem. Needs
    /// --cert. Taken from, in order: this flag, PYLON_KEY, `key` in the
    /// config file (a relative path there is taken from its folder).
    #[arg(long, global = true, value_name = "FILE", verbatim_doc_comment)]
    pub key: Option<PathBuf>,

    /// How to print replies: `table` for people, `json` for scripts
    ///
    /// `json` prints the control plane's reply as it is (for `routes watch`,
    /// one JSON object per line).
    #[arg(
        long,
        short = 'o',
        global = true,
        value_enum,
        default_value_t = OutputFormat::Table,
        value_name = "FORMAT",
        verbatim_doc_comment
    )]
    pub output: OutputFormat,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    #[default]
    Table,
    Json,
}

/// The operator commands, flattened into the top-level command list.
#[derive(Debug, Subcommand)]
pub enum OpsCommand {
    /// Show the control plane's health, membership counts and route subscribers.
    #[command(long_about = STATUS_ABOUT)]
    Status(StatusArgs),
    /// List, drain and undrain edges.
    #[command(long_about = EDGES_ABOUT)]
    Edges(EdgesArgs),
    /// List app-service instances.
    #[command(long_about = APPS_ABOUT)]
    Apps(AppsArgs),
    /// Show the shard map, or which shard and app instance serve one pile.
    #[command(long_about = SHARDS_ABOUT)]
    Shards(ShardsArgs),
    /// Ask which edge a charger should connect to (as the charger would).
    #[command(long_about = ENTRY_ABOUT)]
    Entry(EntryArgs),
    /// Show the route table, or watch its updates live.
    #[command(long_about = ROUTES_ABOUT)]
    Routes(RoutesArgs),
    /// Register, enable, disable and inspect piles; set their 3DES keys (app service).
    #[command(long_about = business::PILES_ABOUT)]
    Piles(PilesArgs),
    /// List and show transaction records (app service).
    #[command(long_about = business::RECORDS_ABOUT)]
    Records(RecordsArgs),
    /// Start, stop and follow charges (app service).
    #[command(long_about = business::CHARGE_ABOUT)]
    Charge(ChargeArgs),
    /// Add and change stations; set their tariff and piles (app service).
    #[command(long_about = stations::STATIONS_ABOUT)]
    Stations(StationsArgs),
    /// See, acknowledge and resolve alarms (app service).
    #[command(long_about = alarms::ALARMS_ABOUT)]
    Alarms(alarms::AlarmsArgs),
    /// Add, show and revise time-of-use tariffs (app service).
    #[command(long_about = tariffs::TARIFFS_ABOUT)]
    Tariffs(TariffsArgs),
    /// Manage accounts: wallets, cards, VINs, the ledger (app service).
    #[command(long_about = accounts::ACCOUNTS_ABOUT)]
    Accounts(AccountsArgs),
    /// Revenue reports: daily takings, reconciliation, discrepancies (app service).
    #[command(long_about = reports::REPORTS_ABOUT)]
    Reports(ReportsArgs),
    /// Rotate the card keys that seal card numbers and VINs (app service).
    #[command(long_about = keys::KEYS_ABOUT)]
    Keys(KeysArgs),
    /// Plan capacity for a fleet size, or forecast when the deployment runs out.
    #[command(long_about = capacity::CAPACITY_ABOUT)]
    Capacity(capacity::CapacityArgs),
    /// Restart edges or app instances a batch at a time, without losing chargers.
    #[command(long_about = rollout::ROLLOUT_ABOUT)]
    Rollout(rollout::RolloutArgs),
    /// Manage users (operators) and their roles (needs admin).
    #[command(long_about = identity::USERS_ABOUT)]
    Users(UsersArgs),
    /// Make, list and revoke API tokens (needs admin).
    #[command(long_about = identity::TOKENS_ABOUT)]
    Tokens(TokensArgs),
    /// Log in with a user's password and print a session token.
    #[command(long_about = identity::LOGIN_ABOUT)]
    Login(LoginArgs),
    /// End the session of the token in use.
    #[command(long_about = identity::LOGOUT_ABOUT)]
    Logout(LogoutArgs),
    /// Show the user and role of the token in use.
    #[command(long_about = identity::WHOAMI_ABOUT)]
    Whoami(WhoamiArgs),
    /// Disaster recovery: a standby site's state, its promotion, a site's demotion.
    #[command(long_about = dr::DR_ABOUT)]
    Dr(dr::DrArgs),
    /// Read the audit log of operator actions and check its hash chain (needs admin).
    #[command(long_about = audit::AUDIT_ABOUT)]
    Audit(AuditArgs),
    /// Show an edge's SYN-flood guard; block and unblock sources (edge admin API).
    #[command(long_about = guard::GUARD_ABOUT)]
    Guard(GuardArgs),
    /// Watch edges live: sessions, connections, rates (edge metrics).
    #[command(long_about = top::TOP_ABOUT)]
    Top(TopArgs),
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Unreachable { .. } => Failure::Unreachable(e.to_string()),
            // The control plane refused what we sent as invalid.
            ClientError::Api { status: 400, .. } => Failure::BadInput(e.to_string()),
            e => Failure::Other(e.into()),
        }
    }
}

/// A validated pile number in its 14-digit form.
pub fn parse_pile(pile: &str) -> Result<String, Failure> {
    let pile = pile.trim();
    let bad = |why: String| {
        Failure::BadInput(format!(
            "{pile:?} is not a pile number: {why} (a pile number is 14 digits, e.g. \
             32010200000001)"
        ))
    };
    let parsed = PileNo::parse(pile).map_err(bad)?;
    if pile.len() != 14 {
        return Err(bad(format!("it has {} digits", pile.len())));
    }
    Ok(parsed.to_string())
}

/// What every operator command runs with.
pub(crate) struct Ctx {
    pub(crate) settings: Settings,
    pub(crate) client: Client,
    pub(crate) output: OutputFormat,
}

impl Ctx {
    pub(crate) fn new(
        connect: &ConnectOptions,
        grpc_endpoint: Option<String>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, Failure> {
        let flags = Flags {
            endpoint: connect.endpoint.clone(),
            token: connect.token.clone(),
            config: connect.config.clone(),
            grpc_endpoint,
            ca: connect.ca.clone(),
            cert: connect.cert.clone(),
            key: connect.key.clone(),
            ..Flags::default()
        };
        let settings = config::resolve(&flags, env)?;
        let client = Client::new(
            &settings.endpoint,
            settings.token.clone(),
            settings.token_hint(),
        )
        .with_trust(settings.trust_for(&settings.endpoint)?);
        Ok(Ctx {
            settings,
            client,
            output: connect.output,
        })
    }

    /// Prints `value` as JSON, or as `text(value)` for people.
    pub(crate) fn emit<T: Serialize>(
        &self,
        out: &mut dyn Write,
        value: &T,
        text: impl FnOnce(&T) -> String,
    ) -> Result<(), Failure> {
        match self.output {
            OutputFormat::Json => {
                let json = serde_json::to_string_pretty(value)
                    .map_err(|e| Failure::Other(anyhow::anyhow!("cannot print JSON: {e}")))?;
                writeln!(out, "{json}")?;
            }
            OutputFormat::Table => out.write_all(text(value).as_bytes())?,
        }
        Ok(())
    }
}

/// Runs one operator command. `env` looks up environment variables (the process's own in
/// `pylonctl`; a fixed map in tests). Passwords and pile keys come from the process's
/// stdin or terminal.
pub fn run(
    cmd: OpsCommand,
    env: &dyn Fn(&str) -> Option<String>,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    run_with_console(cmd, env, &mut ProcessConsole, out)
}

/// [`run`], with passwords and pile keys from `console` (a fake in tests).
pub fn run_with_console(
    cmd: OpsCommand,
    env: &dyn Fn(&str) -> Option<String>,
    console: &mut dyn Console,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    match cmd {
        OpsCommand::Status(args) => control::status(args, env, out),
        OpsCommand::Edges(args) => control::edges(args, env, out),
        OpsCommand::Apps(args) => control::apps(args, env, out),
        OpsCommand::Shards(args) => control::shards(args, env, out),
        OpsCommand::Entry(args) => control::entry(args, env, out),
        OpsCommand::Routes(args) => control::routes(args, env, out),
        OpsCommand::Piles(args) => business::run_piles(args, env, console, out),
        OpsCommand::Records(args) => business::run_records(args, env, out),
        OpsCommand::Charge(args) => business::run_charge(args, env, out),
        OpsCommand::Stations(args) => stations::run_stations(args, env, out),
        OpsCommand::Alarms(args) => alarms::run_alarms(args, env, out),
        OpsCommand::Tariffs(args) => tariffs::run_tariffs(args, env, out),
        OpsCommand::Accounts(args) => accounts::run_accounts(args, env, out),
        OpsCommand::Reports(args) => reports::run_reports(args, env, out),
        OpsCommand::Keys(args) => keys::run_keys(args, env, out),
        OpsCommand::Rollout(args) => rollout::run_rollout(args, env, out),
        OpsCommand::Capacity(args) => capacity::run_capacity(args, env, out),
        OpsCommand::Users(args) => identity::run_users(args, env, console, out),
        OpsCommand::Tokens(args) => identity::run_tokens(args, env, out),
        OpsCommand::Login(args) => identity::run_login(args, env, console, out),
        OpsCommand::Logout(args) => identity::run_logout(args, env, out),
        OpsCommand::Whoami(args) => identity::run_whoami(args, env, out),
        OpsCommand::Audit(args) => audit::run_audit(args, env, out),
        OpsCommand::Dr(args) => dr::run_dr(args, env, out),
        OpsCommand::Guard(args) => guard::run_guard(args, env, out),
        OpsCommand::Top(args) => top::run_top(args, env, out),
    }
}
