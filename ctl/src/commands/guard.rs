//! `pylonctl guard status|block|unblock`: an edge's SYN-flood guard (`pylon-edge
//! --syn-guard <interface>`, an XDP program), through the edge's admin HTTP API
//! (`edge/src/admin.rs`: `GET /v1/guard`, `POST /v1/guard/blocklist`,
//! `DELETE /v1/guard/blocklist/{ip}`; no token, types in `pylon_proto::api::edge`).
//!
//! The edge's admin server is found at `--edge-admin` (flag > `PYLON_EDGE_ADMIN` >
//! `edge_admin` in the config file > http://127.0.0.1:9100). Each edge has a guard and
//! a blocklist of its own: these commands talk to one edge at a time. Replies are printed
//! for people by [`crate::render::guard`].

use std::io::Write;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4};
use std::path::PathBuf;

use clap::{Args, Subcommand};
pub use pylon_proto::api::edge::GuardStatus;
use pylon_proto::api::edge::{BlockRequest, BlockedReply, UnblockedReply};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::OutputFormat;
use crate::cli::Failure;
use crate::client::{path_segment, Client, ClientError};
use crate::config::{self, Flags, Target};
use crate::render::guard::{render_blocked, render_status, render_unblocked};

/// What `GET /v1/guard` and the failures of every guard command say when the edge runs
/// without the guard.
pub const NO_GUARD: &str = "this edge runs without the SYN-flood guard (start pylon-edge with \
                            --syn-guard <interface>)";

/// Where the edge's admin API is, and how to print; every `guard` command takes these,
/// before or after its subcommand.
#[derive(Debug, Clone, Default, PartialEq, Eq, Args)]
#[command(next_help_heading = "Connection and output")]
pub struct EdgeConnectOptions {
    /// The edge's admin HTTP address [env: PYLON_EDGE_ADMIN] [default: http://127.0.0.1:9100]
    ///
    /// Taken from, in order: this flag, PYLON_EDGE_ADMIN, `edge_admin` in the
    /// config file, http://127.0.0.1:9100. It is pylon-edge's --admin-listen,
    /// which is 127.0.0.1:9100 unless set otherwise: run pylonctl on the edge's
    /// host, or start the edge with an --admin-listen this host can reach.
    /// The edge's admin API takes no token. An https:// URL (an edge with
    /// cluster TLS) also needs --ca.
    #[arg(long, global = true, value_name = "URL", verbatim_doc_comment)]
    pub edge_admin: Option<String>,

    /// The config file [env: PYLONCTL_CONFIG] [default: ~/.config/pylon/pylonctl.toml]
    ///
    /// TOML with the keys `endpoint`, `token`, `grpc_endpoint`, `app_endpoint`,
    /// `edge_admin`, `ca` (the cluster CA, for https), `cert` and `key`, e.g.
    ///     edge_admin = "http://10.0.0.3:9100"
    /// The default is $XDG_CONFIG_HOME/pylon/pylonctl.toml, else
    /// ~/.config/pylon/pylonctl.toml, and need not exist; a file named by this
    /// flag or by PYLONCTL_CONFIG must.
    #[arg(long, global = true, value_name = "FILE", verbatim_doc_comment)]
    pub config: Option<PathBuf>,

    /// The cluster CA's certificate (PEM), for an https:// --edge-admin [env: PYLON_CA]
    ///
    /// With cluster TLS on (pylon-edge started with --cluster-ca,
    /// --cluster-cert and --cluster-key), the edge's admin API is HTTPS: give
    /// an https:// URL and the cluster CA's certificate, ca.pem from
    /// `pylonctl certs init`, which pylonctl checks the edge's certificate
    /// against (with the URL's host name or IP address, which the certificate
    /// must carry). Only this CA is trusted, and https needs it. Taken from, in
    /// order: this flag, PYLON_CA, `ca` in the config file (a relative path
    /// there is taken from the config file's folder).
    #[arg(long, global = true, value_name = "FILE", verbatim_doc_comment)]
    pub ca: Option<PathBuf>,

    /// A client certificate (PEM) of the cluster CA, shown over HTTPS [env: PYLON_CERT]
    ///
    /// Optional: the edge's admin API takes HTTPS clients with or without
    /// one. Needs --key. Taken from, in order: this flag, PYLON_CERT, `cert`
    /// in the config file.
    #[arg(long, global = true, value_name = "FILE", verbatim_doc_comment)]
    pub cert: Option<PathBuf>,

    /// The private key (PEM) of --cert [env: PYLON_KEY]
    #[arg(long, global = true, value_name = "FILE", verbatim_doc_comment)]
    pub key: Option<PathBuf>,

    /// How to print replies: `table` for people, `json` for scripts
    ///
    /// `json` prints the edge's reply as it is.
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

pub const GUARD_ABOUT: &str = "\
See and steer an edge's SYN-flood guard: an XDP program on the edge's network interface
(pylon-edge --syn-guard <interface>) that lets each source send SYNs to the edge's ports
only at a limited rate (--syn-rate, --syn-burst), and drops every SYN of a source on its
blocklist. Talks to the edge's admin API (--edge-admin), one edge at a time.

Examples:
  pylonctl guard status
  pylonctl guard block 203.0.113.7
  pylonctl guard unblock 203.0.113.7
  pylonctl guard status --edge-admin http://10.0.0.3:9100 -o json";

const GUARD_STATUS_ABOUT: &str = "\
Show what the edge's SYN-flood guard has done with SYNs to the edge's ports since the
edge started: how many it PASSED, how many it DROPPED because their source sent them
faster than the per-source rate (RATE), and how many because their source is on the
blocklist (BLOCKLIST); then the blocklist itself.

Examples:
  pylonctl guard status
  pylonctl guard status --edge-admin http://10.0.0.3:9100
  pylonctl guard status -o json | jq -r '.blocklist[]'";

const GUARD_BLOCK_ABOUT: &str = "\
Put an IPv4 address on the edge's blocklist: the guard drops every SYN from it to the
edge's ports, so it can open no new connection. Connections it has open already are
not affected. Blocking an address that is blocked already is harmless.

The blocklist is this edge's own (block the source on every edge it floods) and is held
in the kernel while the edge runs: it is not kept when the edge restarts.

Examples:
  pylonctl guard block 203.0.113.7
  pylonctl guard block 203.0.113.7 --edge-admin http://10.0.0.3:9100";

const GUARD_UNBLOCK_ABOUT: &str = "\
Take an IPv4 address off the edge's blocklist: its SYNs pass again, within the per-source
rate. Unblocking an address that is not blocked is harmless.

Examples:
  pylonctl guard unblock 203.0.113.7
  pylonctl guard status -o json | jq -r '.blocklist[]' | xargs -n1 pylonctl guard unblock";

#[derive(Debug, Args)]
pub struct GuardArgs {
    #[command(subcommand)]
    pub command: GuardCommand,
    #[command(flatten)]
    pub connect: EdgeConnectOptions,
}

#[derive(Debug, PartialEq, Eq, Subcommand)]
pub enum GuardCommand {
    /// SYNs passed and dropped (by rate, by blocklist), and the blocklist.
    #[command(long_about = GUARD_STATUS_ABOUT)]
    Status,
    /// Drop every SYN from an IPv4 address (until unblocked or the edge restarts).
    #[command(long_about = GUARD_BLOCK_ABOUT)]
    Block {
        /// The source to block: one IPv4 address, e.g. 203.0.113.7.
        #[arg(value_name = "IP")]
        ip: String,
    },
    /// Take an IPv4 address off the blocklist.
    #[command(long_about = GUARD_UNBLOCK_ABOUT)]
    Unblock {
        /// The source to unblock: one IPv4 address, e.g. 203.0.113.7.
        #[arg(value_name = "IP")]
        ip: String,
    },
}

/// A validated IPv4 address: one address, no network, no port, not IPv6.
pub fn parse_ipv4(text: &str) -> Result<Ipv4Addr, Failure> {
    let text = text.trim();
    let bad = |why: String| {
        Failure::BadInput(format!(
            "{text:?} {why} (give one IPv4 address, e.g. 203.0.113.7)"
        ))
    };
    if let Ok(addr) = text.parse::<Ipv4Addr>() {
        return Ok(addr);
    }
    if text.contains('/') {
        return Err(bad(
            "is a network: the guard blocks single addresses, one at a time".into(),
        ));
    }
    if let Ok(addr) = text.parse::<SocketAddrV4>() {
        return Err(bad(format!(
            "has a port: the guard blocks addresses, give {} alone",
            addr.ip()
        )));
    }
    if text
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<Ipv6Addr>()
        .is_ok()
    {
        return Err(bad(
            "is an IPv6 address: the SYN-flood guard handles IPv4 only".into(),
        ));
    }
    Err(bad("is not an IPv4 address".into()))
}

/// [`parse_ipv4`], refusing what no connection comes from (nothing to block).
fn parse_source(text: &str) -> Result<Ipv4Addr, Failure> {
    let addr = parse_ipv4(text)?;
    if addr.is_unspecified() || addr.is_broadcast() || addr.is_multicast() {
        return Err(Failure::BadInput(format!(
            "{addr} is not the address of a host: no connection comes from it, so there \
             is nothing to block (give one IPv4 address, e.g. 203.0.113.7)"
        )));
    }
    Ok(addr)
}

/// What an operator should make of a failed guard call.
fn explain(e: ClientError, changing: bool) -> Failure {
    match (e.code(), e.status()) {
        (Some("no_guard"), _) => Failure::Other(anyhow::anyhow!(NO_GUARD)),
        // The edge could not change its kernel map (full, or the guard is gone); edges
        // before the shared error body answered a plain-text 500.
        (Some("guard_failed"), _) | (None, Some(500)) if changing => {
            Failure::Other(anyhow::anyhow!(
                "{e}: the edge could not change its blocklist (it holds at most 65536 \
                 addresses); see pylon-edge's log"
            ))
        }
        _ => Failure::from(e),
    }
}

/// Runs `pylonctl guard ...`.
pub fn run_guard(
    args: GuardArgs,
    env: &dyn Fn(&str) -> Option<String>,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    // Called after the command's address is checked: bad input is reported first.
    let connect = || -> Result<Client, Failure> {
        let flags = Flags {
            config: args.connect.config.clone(),
            edge_admin: args.connect.edge_admin.clone(),
            ca: args.connect.ca.clone(),
            cert: args.connect.cert.clone(),
            key: args.connect.key.clone(),
            target: Target::EdgeAdmin,
            ..Flags::default()
        };
        let settings = config::resolve(&flags, env)?;
        Ok(Client::edge_admin(&settings.edge_admin)
            .with_trust(settings.trust_for(&settings.edge_admin)?))
    };
    let output = args.connect.output;
    match &args.command {
        GuardCommand::Status => {
            let client = connect()?;
            let path = "/v1/guard";
            let reply: Value = client.get(path, &[]).map_err(|e| explain(e, false))?;
            emit(&client, output, out, "GET", path, &reply, render_status)
        }
        GuardCommand::Block { ip } => {
            let source = parse_source(ip)?;
            let client = connect()?;
            let path = "/v1/guard/blocklist";
            let reply: Value = client
                .post_json(
                    path,
                    &BlockRequest {
                        source: source.to_string(),
                    },
                )
                .map_err(|e| explain(e, true))?;
            emit(
                &client,
                output,
                out,
                "POST",
                path,
                &reply,
                |b: &BlockedReply| render_blocked(&b.blocked),
            )
        }
        GuardCommand::Unblock { ip } => {
            let source = parse_ipv4(ip)?;
            let client = connect()?;
            let path = format!("/v1/guard/blocklist/{}", path_segment(&source.to_string()));
            let reply: Value = client.delete(&path).map_err(|e| explain(e, true))?;
            emit(
                &client,
                output,
                out,
                "DELETE",
                &path,
                &reply,
                |u: &UnblockedReply| render_unblocked(&u.unblocked),
            )
        }
    }
}

/// Prints `reply` as it came (`-o json`) or, read as `T`, as `text(T)`.
fn emit<T: DeserializeOwned>(
    client: &Client,
    output: OutputFormat,
    out: &mut dyn Write,
    method: &'static str,
    path: &str,
    reply: &Value,
    text: impl FnOnce(&T) -> String,
) -> Result<(), Failure> {
    match output {
        OutputFormat::Json => {
            let json = serde_json::to_string_pretty(reply)
                .map_err(|e| Failure::Other(anyhow::anyhow!("cannot print JSON: {e}")))?;
            writeln!(out, "{json}")?;
        }
        OutputFormat::Table => {
            let typed = T::deserialize(reply)
                .map_err(|e| Failure::from(client.bad_reply(method, path, e.to_string())))?;
            out.write_all(text(&typed).as_bytes())?;
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests;
