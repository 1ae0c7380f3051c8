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

Examples:
  pylonctl routes watch
  pylonctl routes watch --count 1
  pylonctl routes watch --grpc-endpoint http://10.0.0.5:7401 -o json";

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
            let grpc_url = match &ctx.settings.grpc_endpoint {
                Some(url) => config::normalize_http_endpoint(url)?,
                None => {
                    let status: StatusReply = ctx.client.get("/v1/admin/status", &[])?;
                    watch::grpc_url_from_status(&status.grpc_address, ctx.client.endpoint())
                }
            };
            watch::watch(
                watch::WatchOptions {
                    grpc_url,
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
    let action = if drain { "drain" } else { "undrain" };
    let path = format!("/v1/admin/edges/{}/{action}", path_segment(id));
    let edge: EdgeInfo = ctx.client.post(&path).map_err(|e| match e.status() {
        Some(404) => Failure::Other(anyhow::anyhow!(
            "no edge named {id} is registered (see `pylonctl edges list`)"
        )),
        _ => Failure::from(e),
    })?;
    ctx.emit(out, &edge, |e| output::drained(e, drain))
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
mod tests {
    use std::collections::HashMap;
    use std::pin::Pin;
    use std::sync::{Arc, Mutex};

    use clap::Parser;
    use pylon_proto::control::route_update::Body;
    use pylon_proto::control::routes_server::{Routes, RoutesServer};
    use pylon_proto::control::{AppliedReply, AppliedReport, RouteUpdate, SubscribeRequest};
    use pylon_proto::routes::NO_OWNER;
    use tokio_stream::{Stream, StreamExt};

    use super::*;
    use std::path::PathBuf;

    use crate::cli::{Cli, Command};
    use crate::client::tests::{refused_endpoint, sample_edges, serve};
    use crate::commands::{run, OpsCommand};
    use pylon_proto::api::control::ApiError;

    fn parse(args: &[&str]) -> OpsCommand {
        let cli = Cli::try_parse_from(std::iter::once("pylonctl").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("{args:?}: {e}"));
        match cli.command {
            Command::Ops(cmd) => cmd,
            other => panic!("{args:?} parsed as {other:?}"),
        }
    }

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    /// Runs `pylonctl <args>` against `endpoint` with no config file and no other env.
    fn run_at(endpoint: &str, token: Option<&str>, args: &[&str]) -> Result<String, Failure> {
        let mut env = vec![(config::ENV_ENDPOINT, endpoint)];
        if let Some(token) = token {
            env.push((config::ENV_TOKEN, token));
        }
        let mut out = Vec::new();
        run(parse(args), &env_of(&env), &mut out)?;
        Ok(String::from_utf8(out).unwrap())
    }

    fn api_error(error: &str, message: &str) -> String {
        serde_json::to_string(&ApiError {
            error: error.into(),
            message: message.into(),
        })
        .unwrap()
    }

    #[test]
    fn every_command_parses() {
        assert!(matches!(parse(&["status"]), OpsCommand::Status(_)));

        let OpsCommand::Edges(a) = parse(&["edges", "list", "--endpoint", "h:1", "-o", "json"])
        else {
            panic!()
        };
        assert_eq!(a.command, EdgesCommand::List);
        assert_eq!(a.connect.endpoint.as_deref(), Some("h:1"));
        assert_eq!(a.connect.output, OutputFormat::Json);
        // Connection options go before or after the subcommand.
        let OpsCommand::Edges(a) = parse(&["edges", "--token", "t", "drain", "edge-1"]) else {
            panic!()
        };
        assert_eq!(
            a.command,
            EdgesCommand::Drain {
                id: "edge-1".into()
            }
        );
        assert_eq!(a.connect.token.as_deref(), Some("t"));
        let OpsCommand::Edges(a) = parse(&["edges", "undrain", "edge-1", "--config", "/c.toml"])
        else {
            panic!()
        };
        assert_eq!(
            a.command,
            EdgesCommand::Undrain {
                id: "edge-1".into()
            }
        );
        assert_eq!(a.connect.config, Some(PathBuf::from("/c.toml")));
        assert_eq!(a.connect.output, OutputFormat::Table);

        let OpsCommand::Apps(a) = parse(&["apps", "list"]) else {
            panic!()
        };
        assert_eq!(a.command, AppsCommand::List);

        let OpsCommand::Shards(a) = parse(&["shards", "show"]) else {
            panic!()
        };
        assert_eq!(a.command, ShardsCommand::Show { pile: None });
        let OpsCommand::Shards(a) = parse(&["shards", "show", "--pile", "32010200000001"]) else {
            panic!()
        };
        assert_eq!(
            a.command,
            ShardsCommand::Show {
                pile: Some("32010200000001".into())
            }
        );

        let OpsCommand::Entry(a) = parse(&["entry", "32010200000001", "--transport", "tls"]) else {
            panic!()
        };
        assert_eq!(a.pile, "32010200000001");
        assert_eq!(a.transport, Some(TransportArg::Tls));
        let OpsCommand::Entry(a) = parse(&["entry", "32010200000001"]) else {
            panic!()
        };
        assert_eq!(a.transport, None);

        let OpsCommand::Routes(a) = parse(&["routes", "show"]) else {
            panic!()
        };
        assert_eq!(a.command, RoutesCommand::Show);
        let OpsCommand::Routes(a) = parse(&[
            "routes",
            "watch",
            "--count",
            "3",
            "--grpc-endpoint",
            "http://x:7401",
        ]) else {
            panic!()
        };
        assert_eq!(
            a.command,
            RoutesCommand::Watch {
                count: Some(3),
                grpc_endpoint: Some("http://x:7401".into())
            }
        );

        for bad in [
            &["edges"][..],
            &["edges", "drain"],
            &["edges", "list", "extra"],
            &["apps", "list", "-o", "yaml"],
            &["entry"],
            &["entry", "32010200000001", "--transport", "udp"],
            &["routes", "watch", "--count", "many"],
            &["shards", "show", "--pile"],
        ] {
            let args = std::iter::once("pylonctl").chain(bad.iter().copied());
            assert!(Cli::try_parse_from(args).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn piles_are_checked_locally() {
        assert_eq!(parse_pile("32010200000001").unwrap(), "32010200000001");
        for bad in ["", "123", "3201020000000x", "320102000000011"] {
            assert_eq!(parse_pile(bad).unwrap_err().exit_code(), 2, "{bad:?}");
        }
        // Refused before any request: the endpoint would be exit status 3.
        let err = run_at(&refused_endpoint(), None, &["entry", "3201"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("14 digits"), "{err}");
        let err = run_at(
            &refused_endpoint(),
            None,
            &["shards", "show", "--pile", "x"],
        )
        .unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn edges_list_prints_a_table_and_sends_the_token() {
        let edges = sample_edges();
        let body = serde_json::to_string(&edges).unwrap();
        let (endpoint, requests, server) = serve(vec![(200, body.clone()), (200, body)]);
        let text = run_at(&endpoint, Some("s3cret"), &["edges", "list"]).unwrap();
        assert_eq!(text, output::edges(&edges));
        assert!(requests
            .recv()
            .unwrap()
            .to_ascii_lowercase()
            .contains("authorization: bearer s3cret"));
        let json = run_at(&endpoint, Some("s3cret"), &["edges", "list", "-o", "json"]).unwrap();
        assert_eq!(serde_json::from_str::<Vec<EdgeInfo>>(&json).unwrap(), edges);
        server.join().unwrap();
    }

    #[test]
    fn drain_confirms_and_names_unknown_edges() {
        let drained = EdgeInfo {
            draining: true,
            ..sample_edges().remove(0)
        };
        let (endpoint, requests, server) = serve(vec![
            (200, serde_json::to_string(&drained).unwrap()),
            (404, api_error("no_such_edge", "no edge edge-9")),
        ]);
        let text = run_at(&endpoint, Some("t"), &["edges", "drain", "edge-1"]).unwrap();
        assert_eq!(text, output::drained(&drained, true));
        assert!(requests
            .recv()
            .unwrap()
            .starts_with("POST /v1/admin/edges/edge-1/drain HTTP/1.1"));
        let err = run_at(&endpoint, Some("t"), &["edges", "undrain", "edge-9"]).unwrap_err();
        assert_eq!(err.exit_code(), 1);
        assert_eq!(
            err.to_string(),
            "no edge named edge-9 is registered (see `pylonctl edges list`)"
        );
        assert!(requests
            .recv()
            .unwrap()
            .starts_with("POST /v1/admin/edges/edge-9/undrain HTTP/1.1"));
        server.join().unwrap();
    }

    #[test]
    fn a_401_without_a_token_names_the_users_config_file() {
        let (endpoint, _requests, server) = serve(vec![(
            401,
            api_error("unauthorized", "missing or wrong admin token"),
        )]);
        let dir = tempfile::tempdir().unwrap();
        let env = env_of(&[
            (config::ENV_ENDPOINT, &endpoint),
            ("XDG_CONFIG_HOME", dir.path().to_str().unwrap()),
        ]);
        let err = run(parse(&["status"]), &env, &mut Vec::new()).unwrap_err();
        assert_eq!(err.exit_code(), 1);
        let expected = format!(
            "pass --token, set PYLON_TOKEN, or put token = \"...\" in {}",
            dir.path().join("pylon/pylonctl.toml").display()
        );
        assert!(err.to_string().contains(&expected), "{err}");
        server.join().unwrap();
    }

    #[test]
    fn a_400_is_bad_input_and_unreachable_is_3() {
        let (endpoint, _requests, server) =
            serve(vec![(400, api_error("bad_pile", "not a pile number"))]);
        let err = run_at(&endpoint, None, &["entry", "32010200000001"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert_eq!(err.to_string(), "not a pile number (bad_pile, HTTP 400)");
        server.join().unwrap();

        let err = run_at(&refused_endpoint(), Some("t"), &["apps", "list"]).unwrap_err();
        assert_eq!(err.exit_code(), 3);
        assert!(err.to_string().contains("connection refused"), "{err}");
    }

    #[test]
    fn shards_show_prints_the_owner_list_only_in_json() {
        let map = ShardMapReply {
            shard_count: 2,
            per_app: [("app-1".to_string(), 1)].into(),
            unowned: 1,
            owners: vec![Some("app-1".into()), None],
        };
        let body = serde_json::to_string(&map).unwrap();
        let (endpoint, _requests, server) = serve(vec![(200, body.clone()), (200, body)]);
        let text = run_at(&endpoint, Some("t"), &["shards", "show"]).unwrap();
        assert_eq!(text, output::shard_map(&map));
        let json = run_at(&endpoint, Some("t"), &["shards", "show", "-o", "json"]).unwrap();
        assert_eq!(serde_json::from_str::<ShardMapReply>(&json).unwrap(), map);
        server.join().unwrap();
    }

    #[test]
    fn routes_show_reads_the_route_table_json() {
        let mut table = RouteTable::empty(3);
        table.version = 12;
        table.edges = vec![EdgeRoute {
            id: "edge-1".into(),
            tcp_address: "10.0.0.1:7000".into(),
            tls_address: String::new(),
            capacity: 100,
            draining: false,
        }];
        table.apps = vec![AppRoute {
            id: "app-1".into(),
            grpc_address: "10.0.0.9:9000".into(),
            capacity: 0,
        }];
        table.shards = vec![0, NO_OWNER, 0];
        let (endpoint, requests, server) =
            serve(vec![(200, serde_json::to_string(&table).unwrap())]);
        let text = run_at(&endpoint, Some("t"), &["routes", "show"]).unwrap();
        assert_eq!(text, output::route_table(&table));
        assert!(requests
            .recv()
            .unwrap()
            .starts_with("GET /v1/admin/routes HTTP/1.1"));
        server.join().unwrap();
    }

    /// A route stream that checks the token, then sends `updates` and stays open.
    struct FakeRoutes {
        updates: Vec<RouteUpdate>,
        subscribers: Arc<Mutex<Vec<String>>>,
        applied: Arc<Mutex<Vec<(String, u64)>>>,
    }

    #[tonic::async_trait]
    impl Routes for FakeRoutes {
        type SubscribeStream =
            Pin<Box<dyn Stream<Item = Result<RouteUpdate, tonic::Status>> + Send>>;

        async fn subscribe(
            &self,
            request: tonic::Request<SubscribeRequest>,
        ) -> Result<tonic::Response<Self::SubscribeStream>, tonic::Status> {
            let auth = request
                .metadata()
                .get("authorization")
                .and_then(|v| v.to_str().ok());
            if auth != Some("Bearer s3cret") {
                return Err(tonic::Status::unauthenticated("missing or wrong token"));
            }
            self.subscribers
                .lock()
                .unwrap()
                .push(request.into_inner().subscriber_id);
            let updates: Vec<_> = self.updates.iter().cloned().map(Ok).collect();
            Ok(tonic::Response::new(Box::pin(
                tokio_stream::iter(updates).chain(tokio_stream::pending()),
            )))
        }

        async fn report_applied(
            &self,
            request: tonic::Request<AppliedReport>,
        ) -> Result<tonic::Response<AppliedReply>, tonic::Status> {
            let report = request.into_inner();
            self.applied
                .lock()
                .unwrap()
                .push((report.subscriber_id, report.version));
            Ok(tonic::Response::new(AppliedReply {}))
        }
    }

    /// Serves `routes` on 127.0.0.1 from a thread of its own; returns the port.
    fn serve_routes(routes: FakeRoutes) -> u16 {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(listener.local_addr().unwrap().port()).unwrap();
                tonic::transport::Server::builder()
                    .add_service(RoutesServer::new(routes))
                    .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
                    .await
                    .unwrap();
            });
        });
        rx.recv().unwrap()
    }

    #[test]
    fn routes_watch_follows_the_stream_found_through_status() {
        let mut v1 = RouteTable::empty(2);
        v1.version = 1;
        let mut v2 = v1.clone();
        v2.version = 2;
        v2.edges.push(EdgeRoute {
            id: "edge-1".into(),
            tcp_address: "10.0.0.1:7000".into(),
            tls_address: String::new(),
            capacity: 100,
            draining: true,
        });
        let subscribers = Arc::new(Mutex::new(Vec::new()));
        let applied = Arc::new(Mutex::new(Vec::new()));
        let grpc_port = serve_routes(FakeRoutes {
            updates: vec![
                RouteUpdate {
                    version: 1,
                    base_version: 0,
                    body: Some(Body::Snapshot(v1.encode().to_vec())),
                },
                RouteUpdate {
                    version: 2,
                    base_version: 1,
                    body: Some(Body::Delta(v1.diff(&v2).encode().to_vec())),
                },
            ],
            subscribers: subscribers.clone(),
            applied: applied.clone(),
        });
        // The status reply names the wildcard bind address; pylonctl uses the host it
        // reached over HTTP instead.
        let status = StatusReply {
            replica: "ctl-1".into(),
            leader: None,
            backend: "embedded".into(),
            registry_ok: true,
            grpc_address: format!("0.0.0.0:{grpc_port}"),
            route_version: 2,
            edges_live: 1,
            edges_draining: 1,
            apps_live: 0,
            shard_count: 2,
            shards_unowned: 2,
            subscribers: vec![],
        };
        let (endpoint, _requests, server) =
            serve(vec![(200, serde_json::to_string(&status).unwrap())]);
        let text = run_at(
            &endpoint,
            Some("s3cret"),
            &["routes", "watch", "--count", "2"],
        )
        .unwrap();
        assert_eq!(
            text,
            "v1 snapshot: 0 edges (0 draining), 0 apps, 2 shards (2 unowned)\n\
             v2 delta from v1: edge edge-1 added\n"
        );
        server.join().unwrap();
        let subscribers = subscribers.lock().unwrap().clone();
        assert_eq!(subscribers.len(), 1);
        assert!(subscribers[0].starts_with("pylonctl/"), "{subscribers:?}");
        let versions: Vec<u64> = applied.lock().unwrap().iter().map(|(_, v)| *v).collect();
        assert_eq!(versions, [1, 2]);

        // --grpc-endpoint needs no status call; a missing token gets the hint.
        let grpc = format!("http://127.0.0.1:{grpc_port}");
        let err = run_at(
            &refused_endpoint(),
            None,
            &["routes", "watch", "--count", "1", "--grpc-endpoint", &grpc],
        )
        .unwrap_err();
        assert_eq!(err.exit_code(), 1);
        assert!(
            err.to_string().contains("pass --token, set PYLON_TOKEN"),
            "{err}"
        );

        let json = run_at(
            &refused_endpoint(),
            Some("s3cret"),
            &[
                "routes",
                "watch",
                "--count",
                "1",
                "--grpc-endpoint",
                &grpc,
                "-o",
                "json",
            ],
        )
        .unwrap();
        let first: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
        assert_eq!(first["kind"], "snapshot");
        assert_eq!(first["table"]["shard_count"], 2);
    }
}
