//! The control plane's command groups: `status`, `edges`, `apps`, `shards`, `entry` and
//! `routes show`, over its HTTP/JSON API ([`pylon_proto::api::control`]); `routes watch`
//! is in [`super::watch`].

use std::io::Write;

use clap::{Args, Subcommand, ValueEnum};
use pylon_proto::api::control::{
    AppInfo, EdgeInfo, EntryReply, PileShardReply, ShardMapReply, StatusReply, Transport,
};
use pylon_proto::routes::{AppRoute, EdgeRoute, RouteTable};
use serde::Deserialize;

use super::{parse_pile, watch, ConnectOptions, Ctx, OutputFormat};
use crate::cli::Failure;
use crate::client::path_segment;
use crate::config;
use crate::render::control as output;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TransportArg {
    Tcp,
    Tls,
}

impl From<TransportArg> for Transport {
    fn from(t: TransportArg) -> Self {
        match t {
            TransportArg::Tcp => Transport::Tcp,
            TransportArg::Tls => Transport::Tls,
        }
    }
}

pub(super) const STATUS_ABOUT: &str = "\
Show the control plane at a glance: this replica and the leader, the registry backend
and whether it answers, the route-table version, how many edges are live or draining,
how many app instances are live, unowned shards, and every route subscriber with the
version it applied and how far behind it is.

Examples:
  pylonctl status
  pylonctl status --endpoint http://10.0.0.5:7400
  pylonctl status -o json | jq .subscribers";

pub(super) const EDGES_ABOUT: &str = "\
List edges (the gateways chargers connect to) and drain them for maintenance.

Examples:
  pylonctl edges list
  pylonctl edges drain edge-3
  pylonctl edges undrain edge-3
  pylonctl edges list -o json | jq -r '.[] | select(.live | not) | .id'";

pub(super) const EDGES_LIST_ABOUT: &str = "\
List the registered edges: their TCP and TLS addresses, sessions against capacity,
state and version.

STATE is `live`, `draining` (an operator drained it), `leaving` (it is shutting
down) or `down` (its lease ran out).

Examples:
  pylonctl edges list
  pylonctl edges list -o json";

pub(super) const EDGES_DRAIN_ABOUT: &str = "\
Drain an edge: it takes no new sessions, and its chargers are moved to other edges.
Use it before maintenance; `pylonctl edges list` shows the sessions going down.
It lasts until `pylonctl edges undrain`.

Examples:
  pylonctl edges drain edge-3";

pub(super) const EDGES_UNDRAIN_ABOUT: &str = "\
Undo `pylonctl edges drain`: the edge takes new sessions again.

Examples:
  pylonctl edges undrain edge-3";

pub(super) const APPS_ABOUT: &str = "\
List app-service instances (the charging business), each with its gRPC address,
load, the number of shards of chargers it owns, state and version.

Examples:
  pylonctl apps list
  pylonctl apps list -o json";

pub(super) const SHARDS_ABOUT: &str = "\
Show how chargers are split among app instances. Chargers hash into a fixed number
of shards; each shard is owned by one app instance.

Without --pile: the shard count, shards per app instance and unowned shards (the
full per-shard owner list only with -o json). With --pile: the shard of that pile,
and the app instance (and its address) that owns it.

Examples:
  pylonctl shards show
  pylonctl shards show --pile 32010200000001
  pylonctl shards show -o json | jq '.owners[17]'";

pub(super) const ENTRY_ABOUT: &str = "\
Ask the control plane which edge a charger should connect to, exactly as a charger
would (GET /v1/entry, which needs no token): the primary address, the backups in
order, the transport and how long the answer may be reused.

Examples:
  pylonctl entry 32010200000001
  pylonctl entry 32010200000001 --transport tls";

pub(super) const ROUTES_ABOUT: &str = "\
Show the route table the control plane pushes to edges and app instances, or follow
its updates live.

Examples:
  pylonctl routes show
  pylonctl routes watch
  pylonctl routes watch --count 1 -o json";

pub(super) const ROUTES_SHOW_ABOUT: &str = "\
Show the current route table: its version, its edges (addresses, capacity, draining),
its app instances and how many shards each owns (the per-shard list only with -o json).

Examples:
  pylonctl routes show
  pylonctl routes show -o json | jq .version";

pub(super) const ROUTES_WATCH_ABOUT: &str = "\
Subscribe to the route stream (gRPC) and print one line per update as it arrives: the
full table first (a snapshot), then each change (a delta: edges and apps added,
updated, drained or removed, shards moved). Runs until Ctrl-C, or until --count
updates have arrived. pylonctl subscribes as `pylonctl/<hostname>` and reports the
versions it applied, like any subscriber, so it shows up in `pylonctl status` while it
watches.

The gRPC address is --grpc-endpoint, else PYLON_GRPC_ENDPOINT, else `grpc_endpoint` in
the config file, else the address `pylonctl status` reports.

With cluster TLS on (an https:// --endpoint, or an https:// gRPC address), the route
stream is mutual TLS: pylonctl checks the control plane's certificate against the
cluster CA (--ca) and shows a client certificate of that CA (--cert and --key, else
PYLON_CERT and PYLON_KEY, else `cert` and `key` in the config file). The token is
still needed and still says who you are (a role with the read permission). The gRPC
address asked of an https control plane is dialled over TLS, and so is a
--grpc-endpoint given without a scheme beside one (an http:// one is refused there).
Without a client certificate, pylonctl says how to give one and stops before dialling.
Make an operator's certificate once, where the cluster CA's files are (its name and
--dns are labels only: the control plane checks a client's certificate against the CA):
  pylonctl certs issue --dir /etc/pylon/certs operator-ana --dns operator-ana

Examples:
  pylonctl routes watch
  pylonctl routes watch --count 1
  pylonctl routes watch --grpc-endpoint http://10.0.0.5:7401 -o json
  pylonctl routes watch --endpoint https://10.0.0.5:7400 --ca /etc/pylon/certs/ca.pem \\
      --cert /etc/pylon/certs/operator-ana.pem --key /etc/pylon/certs/operator-ana.key";

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub connect: ConnectOptions,
}

#[derive(Debug, Args)]
pub struct EdgesArgs {
    #[command(subcommand)]
    pub command: EdgesCommand,
    #[command(flatten)]
    pub connect: ConnectOptions,
}

#[derive(Debug, PartialEq, Eq, Subcommand)]
pub enum EdgesCommand {
    /// List the registered edges: addresses, sessions/capacity, state, version.
    #[command(long_about = EDGES_LIST_ABOUT)]
    List,
    /// Drain an edge: no new sessions, its chargers move to other edges.
    #[command(long_about = EDGES_DRAIN_ABOUT)]
    Drain {
        /// The edge's id, as `pylonctl edges list` shows it.
        id: String,
    },
    /// Let a drained edge take new sessions again.
    #[command(long_about = EDGES_UNDRAIN_ABOUT)]
    Undrain {
        /// The edge's id, as `pylonctl edges list` shows it.
        id: String,
    },
}

#[derive(Debug, Args)]
pub struct AppsArgs {
    #[command(subcommand)]
    pub command: AppsCommand,
    #[command(flatten)]
    pub connect: ConnectOptions,
}

#[derive(Debug, PartialEq, Eq, Subcommand)]
pub enum AppsCommand {
    /// List app instances: gRPC address, sessions/capacity, shards, state, version.
    List,
}

#[derive(Debug, Args)]
pub struct ShardsArgs {
    #[command(subcommand)]
    pub command: ShardsCommand,
    #[command(flatten)]
    pub connect: ConnectOptions,
}

#[derive(Debug, PartialEq, Eq, Subcommand)]
pub enum ShardsCommand {
    /// Shard count, shards per app instance, unowned shards; or one pile's shard.
    #[command(long_about = SHARDS_ABOUT)]
    Show {
        /// Show the shard and owner of this pile (14 digits, e.g. 32010200000001).
        #[arg(long, value_name = "PILE")]
        pile: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct EntryArgs {
    /// The charger's pile number: 14 digits, e.g. 32010200000001.
    pub pile: String,
    /// The transport the charger speaks (default: the control plane's, normally tcp).
    #[arg(long, value_enum)]
    pub transport: Option<TransportArg>,
    #[command(flatten)]
    pub connect: ConnectOptions,
}

#[derive(Debug, Args)]
pub struct RoutesArgs {
    #[command(subcommand)]
    pub command: RoutesCommand,
    #[command(flatten)]
    pub connect: ConnectOptions,
}

#[derive(Debug, PartialEq, Eq, Subcommand)]
pub enum RoutesCommand {
    /// Show the current route table, summarised.
    #[command(long_about = ROUTES_SHOW_ABOUT)]
    Show,
    /// Print each route-table update as it arrives, until Ctrl-C.
    #[command(long_about = ROUTES_WATCH_ABOUT)]
    Watch {
        /// Stop after this many updates (the first, full table, counts as one).
        #[arg(long, value_name = "N")]
        count: Option<u64>,
        /// The control plane's gRPC address [env: PYLON_GRPC_ENDPOINT] [default: from `pylonctl status`]
        #[arg(long, value_name = "URL")]
        grpc_endpoint: Option<String>,
    },
}

/// `pylonctl status`.
pub fn status(
    args: StatusArgs,
    env: &dyn Fn(&str) -> Option<String>,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let ctx = Ctx::new(&args.connect, None, env)?;
    let status: StatusReply = ctx.client.get("/v1/admin/status", &[])?;
    ctx.emit(out, &status, output::status)
}

/// `pylonctl edges list|drain|undrain`.
pub fn edges(
    args: EdgesArgs,
    env: &dyn Fn(&str) -> Option<String>,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let ctx = Ctx::new(&args.connect, None, env)?;
    match args.command {
        EdgesCommand::List => {
            let edges: Vec<EdgeInfo> = ctx.client.get("/v1/admin/edges", &[])?;
            ctx.emit(out, &edges, |e| output::edges(e))
        }
        EdgesCommand::Drain { id } => set_draining(&ctx, &id, true, out),
        EdgesCommand::Undrain { id } => set_draining(&ctx, &id, false, out),
    }
}

/// `pylonctl apps list`.
pub fn apps(
    args: AppsArgs,
    env: &dyn Fn(&str) -> Option<String>,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let ctx = Ctx::new(&args.connect, None, env)?;
    match args.command {
        AppsCommand::List => {
            let apps: Vec<AppInfo> = ctx.client.get("/v1/admin/apps", &[])?;
            ctx.emit(out, &apps, |a| output::apps(a))
        }
    }
}

/// `pylonctl shards show [--pile]`.
pub fn shards(
    args: ShardsArgs,
    env: &dyn Fn(&str) -> Option<String>,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let ctx = Ctx::new(&args.connect, None, env)?;
    match args.command {
        ShardsCommand::Show { pile: None } => {
            let map: ShardMapReply = ctx.client.get("/v1/admin/shards", &[])?;
            ctx.emit(out, &map, output::shard_map)
        }
        ShardsCommand::Show { pile: Some(pile) } => {
            let pile = parse_pile(&pile)?;
            let reply: PileShardReply = ctx.client.get("/v1/admin/shards", &[("pile", &pile)])?;
            ctx.emit(out, &reply, output::pile_shard)
        }
    }
}

/// `pylonctl entry <pile>`: dispatch, as a charger asks it.
pub fn entry(
    args: EntryArgs,
    env: &dyn Fn(&str) -> Option<String>,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let pile = parse_pile(&args.pile)?;
    let ctx = Ctx::new(&args.connect, None, env)?;
    let transport = args.transport.map(|t| Transport::from(t).to_string());
    let mut query = vec![("pile", pile.as_str())];
    if let Some(t) = &transport {
        query.push(("transport", t));
    }
    let reply: EntryReply = ctx.client.get_public("/v1/entry", &query)?;
    ctx.emit(out, &reply, output::entry)
}

/// `pylonctl routes show|watch`.
pub fn routes(
    args: RoutesArgs,
    env: &dyn Fn(&str) -> Option<String>,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    match args.command {
        RoutesCommand::Show => {
            let ctx = Ctx::new(&args.connect, None, env)?;
            let table: RouteTableJson = ctx.client.get("/v1/admin/routes", &[])?;
            ctx.emit(out, &RouteTable::from(table), output::route_table)
        }
        RoutesCommand::Watch {
            count,
            grpc_endpoint,
        } => {
            let ctx = Ctx::new(&args.connect, grpc_endpoint, env)?;
            // A control plane with cluster TLS (an https endpoint) has its gRPC port on
            // mutual TLS too.
            let control_tls = config::is_https(ctx.client.endpoint());
            let no_cert = ctx.settings.client_cert.is_none();
            let grpc_url = match &ctx.settings.grpc_endpoint {
                Some(url) => watch::normalize_grpc_endpoint(url, ctx.client.endpoint())?,
                // Refused before anything is asked of the control plane.
                None if control_tls && no_cert => {
                    return Err(watch::client_cert_needed(None, &ctx.settings.cert_hint()))
                }
                None => {
                    let status: StatusReply = ctx.client.get("/v1/admin/status", &[])?;
                    watch::grpc_url_from_status(&status.grpc_address, ctx.client.endpoint())
                }
            };
            let tls = if config::is_https(&grpc_url) {
                if no_cert {
                    return Err(watch::client_cert_needed(
                        Some(&grpc_url),
                        &ctx.settings.cert_hint(),
                    ));
                }
                ctx.settings.trust_for(&grpc_url)?
            } else {
                None
            };
            watch::watch(
                watch::WatchOptions {
                    grpc_url,
                    tls,
                    token: ctx.settings.token.clone(),
                    token_hint: ctx.settings.token_hint(),
                    count,
                    json: ctx.output == OutputFormat::Json,
                    subscriber_id: watch::subscriber_id(env),
                },
                out,
            )
        }
    }
}

fn set_draining(ctx: &Ctx, id: &str, drain: bool, out: &mut dyn Write) -> Result<(), Failure> {
    let edge = post_drain(ctx, id, drain)?;
    ctx.emit(out, &edge, |e| output::drained(e, drain))
}

/// Drains (or undrains) edge `id` through the control plane; its state as written.
pub(super) fn post_drain(ctx: &Ctx, id: &str, drain: bool) -> Result<EdgeInfo, Failure> {
    let action = if drain { "drain" } else { "undrain" };
    let path = format!("/v1/admin/edges/{}/{action}", path_segment(id));
    ctx.client.post(&path).map_err(|e| match e.status() {
        Some(404) => Failure::Other(anyhow::anyhow!(
            "no edge named {id} is registered (see `pylonctl edges list`)"
        )),
        _ => Failure::from(e),
    })
}

/// `GET /v1/admin/routes` as it arrives: `RouteTable` derives `Serialize` but not
/// `Deserialize`, so it is read through this mirror.
#[derive(Debug, Deserialize)]
struct RouteTableJson {
    version: u64,
    shard_count: u32,
    edges: Vec<EdgeRouteJson>,
    apps: Vec<AppRouteJson>,
    shards: Vec<u32>,
}

#[derive(Debug, Deserialize)]
struct EdgeRouteJson {
    id: String,
    tcp_address: String,
    tls_address: String,
    capacity: u32,
    draining: bool,
}

#[derive(Debug, Deserialize)]
struct AppRouteJson {
    id: String,
    grpc_address: String,
    capacity: u32,
}

impl From<RouteTableJson> for RouteTable {
    fn from(t: RouteTableJson) -> Self {
        RouteTable {
            version: t.version,
            shard_count: t.shard_count,
            edges: t
                .edges
                .into_iter()
                .map(|e| EdgeRoute {
                    id: e.id,
                    tcp_address: e.tcp_address,
                    tls_address: e.tls_address,
                    capacity: e.capacity,
                    draining: e.draining,
                })
                .collect(),
            apps: t
                .apps
                .into_iter()
                .map(|a| AppRoute {
                    id: a.id,
                    grpc_address: a.grpc_address,
                    capacity: a.capacity,
                })
                .collect(),
            shards: t.shards,
        }
    }
}

#[cfg(test)]
mod tests;
