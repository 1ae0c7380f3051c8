//! `pylonctl guard status|block|unblock`: an edge's SYN-flood guard (`pylon-edge
//! --syn-guard <interface>`, an XDP program), through the edge's admin HTTP API
//! (`edge/src/admin.rs`: `GET /v1/guard`, `POST /v1/guard/blocklist`,
//! `DELETE /v1/guard/blocklist/{ip}`; no token).
//!
//! The edge's admin server is found at `--edge-admin` (flag > `PYLON_EDGE_ADMIN` >
//! `edge_admin` in the config file > http://127.0.0.1:9100). Each edge has a guard and
//! a blocklist of its own: these commands talk to one edge at a time.

use std::io::Write;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4};
use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::OutputFormat;
use crate::cli::Failure;
use crate::client::{path_segment, Client, ClientError};
use crate::config::{self, Flags, Target};
use crate::render::control::table;

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
    /// The edge's admin API takes no token.
    #[arg(long, global = true, value_name = "URL", verbatim_doc_comment)]
    pub edge_admin: Option<String>,

    /// The config file [env: PYLONCTL_CONFIG] [default: ~/.config/pylon/pylonctl.toml]
    ///
    /// TOML with the keys `endpoint`, `token`, `grpc_endpoint`, `app_endpoint`
    /// and `edge_admin`, e.g.
    ///     edge_admin = "http://10.0.0.3:9100"
    /// The default is $XDG_CONFIG_HOME/pylon/pylonctl.toml, else
    /// ~/.config/pylon/pylonctl.toml, and need not exist; a file named by this
    /// flag or by PYLONCTL_CONFIG must.
    #[arg(long, global = true, value_name = "FILE", verbatim_doc_comment)]
    pub config: Option<PathBuf>,

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

/// `GET /v1/guard`, as far as the table needs it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuardStatus {
    pub passed: u64,
    pub dropped_rate: u64,
    pub dropped_blocked: u64,
    pub blocklist: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct Blocked {
    blocked: String,
}

#[derive(Debug, Deserialize)]
struct Unblocked {
    unblocked: String,
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
        // The edge could not change its kernel map (full, or the guard is gone).
        (None, Some(500)) if changing => Failure::Other(anyhow::anyhow!(
            "{e}: the edge could not change its blocklist (it holds at most 65536 \
             addresses); see pylon-edge's log"
        )),
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
            target: Target::EdgeAdmin,
            ..Flags::default()
        };
        let settings = config::resolve(&flags, env)?;
        Ok(Client::edge_admin(&settings.edge_admin))
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
                .post_json(path, &json!({ "source": source.to_string() }))
                .map_err(|e| explain(e, true))?;
            emit(&client, output, out, "POST", path, &reply, |b: &Blocked| {
                render_blocked(&b.blocked)
            })
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
                |u: &Unblocked| render_unblocked(&u.unblocked),
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

/// The counters as a one-row table, then the blocklist, one address a line.
pub fn render_status(s: &GuardStatus) -> String {
    let mut out = table(
        &["PASSED", "DROPPED (RATE)", "DROPPED (BLOCKLIST)"],
        &[vec![
            s.passed.to_string(),
            s.dropped_rate.to_string(),
            s.dropped_blocked.to_string(),
        ]],
    );
    out.push('\n');
    if s.blocklist.is_empty() {
        out.push_str("The blocklist is empty.\n");
    } else {
        let rows: Vec<Vec<String>> = s.blocklist.iter().map(|a| vec![a.clone()]).collect();
        out.push_str(&table(
            &[&format!("BLOCKLIST ({})", s.blocklist.len())],
            &rows,
        ));
    }
    out
}

pub fn render_blocked(addr: &str) -> String {
    format!(
        "{addr} is blocked: the edge drops every SYN from it (connections open already are \
         not affected)\n"
    )
}

pub fn render_unblocked(addr: &str) -> String {
    format!("{addr} is not blocked: its SYNs pass again, within the per-source rate\n")
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};
    use crate::client::tests::refused_endpoint;
    use crate::commands::business::tests::serve;
    use crate::commands::OpsCommand;

    fn parse(args: &[&str]) -> Result<GuardArgs, clap::Error> {
        let cli = Cli::try_parse_from(std::iter::once("pylonctl").chain(args.iter().copied()))?;
        match cli.command {
            Command::Ops(OpsCommand::Guard(args)) => Ok(args),
            other => panic!("{args:?} parsed as {other:?}"),
        }
    }

    /// Runs `pylonctl <args>` with the edge's admin API at `endpoint` (through
    /// PYLON_EDGE_ADMIN), the control plane and app service nowhere, and no config file.
    fn run_at(endpoint: &str, args: &[&str]) -> Result<String, Failure> {
        let env: HashMap<String, String> = [
            (config::ENV_EDGE_ADMIN, endpoint),
            (config::ENV_ENDPOINT, "ftp://not-used"),
            (config::ENV_APP_ENDPOINT, "ftp://not-used"),
            (config::ENV_TOKEN, "not-sent"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let cmd = parse(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        let mut out = Vec::new();
        run_guard(cmd, &|k| env.get(k).cloned(), &mut out)?;
        Ok(String::from_utf8(out).unwrap())
    }

    fn api_error(code: &str, message: &str) -> String {
        json!({"error": code, "message": message}).to_string()
    }

    fn no_guard_reply() -> String {
        api_error(
            "no_guard",
            "this edge runs without the SYN-flood guard (start it with --syn-guard <interface>)",
        )
    }

    fn sample_status() -> GuardStatus {
        GuardStatus {
            passed: 123456,
            dropped_rate: 789,
            dropped_blocked: 42,
            blocklist: vec!["198.51.100.23".into(), "203.0.113.7".into()],
        }
    }

    #[test]
    fn guard_commands_parse() {
        let a = parse(&["guard", "status"]).unwrap();
        assert_eq!(a.command, GuardCommand::Status);
        assert_eq!(a.connect, EdgeConnectOptions::default());

        let a = parse(&[
            "guard",
            "--edge-admin",
            "http://10.0.0.3:9100",
            "block",
            "203.0.113.7",
            "-o",
            "json",
        ])
        .unwrap();
        assert_eq!(
            a.command,
            GuardCommand::Block {
                ip: "203.0.113.7".into()
            }
        );
        assert_eq!(
            a.connect.edge_admin.as_deref(),
            Some("http://10.0.0.3:9100")
        );
        assert_eq!(a.connect.output, OutputFormat::Json);

        let a = parse(&["guard", "unblock", "203.0.113.7", "--config", "/c.toml"]).unwrap();
        assert_eq!(
            a.command,
            GuardCommand::Unblock {
                ip: "203.0.113.7".into()
            }
        );
        assert_eq!(a.connect.config, Some(PathBuf::from("/c.toml")));
        assert_eq!(a.connect.output, OutputFormat::Table);

        for bad in [
            &["guard"][..],
            &["guard", "block"],
            &["guard", "unblock"],
            &["guard", "status", "extra"],
            &["guard", "block", "1.2.3.4", "5.6.7.8"],
            &["guard", "status", "-o", "yaml"],
            // The edge's admin API takes no token.
            &["guard", "status", "--token", "t"],
            &["guard", "status", "--endpoint", "http://ctl:7400"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn addresses_are_checked_locally() {
        assert_eq!(
            parse_ipv4(" 203.0.113.7 ").unwrap(),
            Ipv4Addr::new(203, 0, 113, 7)
        );
        assert_eq!(parse_ipv4("0.0.0.0").unwrap(), Ipv4Addr::UNSPECIFIED);
        for (bad, why) in [
            ("", "is not an IPv4 address"),
            ("example.com", "is not an IPv4 address"),
            ("1.2.3", "is not an IPv4 address"),
            ("1.2.3.256", "is not an IPv4 address"),
            ("01.2.3.4", "is not an IPv4 address"),
            ("203.0.113.0/24", "is a network"),
            ("203.0.113.7:7000", "give 203.0.113.7 alone"),
            ("2001:db8::1", "IPv4 only"),
            ("[::1]", "IPv4 only"),
        ] {
            let err = parse_ipv4(bad).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{bad:?}");
            let msg = err.to_string();
            assert!(
                msg.contains(why) && msg.contains("e.g. 203.0.113.7"),
                "{msg}"
            );
        }
        for bad in ["0.0.0.0", "255.255.255.255", "224.0.0.1"] {
            let err = parse_source(bad).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{bad:?}");
            assert!(err.to_string().contains("nothing to block"), "{err}");
        }
        assert!(parse_source("10.1.2.3").is_ok());

        // Refused before any request: the refused port would be exit status 3.
        for args in [
            &["guard", "block", "1.2.3.0/24"][..],
            &["guard", "block", "0.0.0.0"],
            &["guard", "unblock", "::1"],
        ] {
            let err = run_at(&refused_endpoint(), args).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{args:?}: {err}");
        }
    }

    #[test]
    fn status_renders_counters_then_the_blocklist() {
        assert_eq!(
            render_status(&sample_status()),
            "\
PASSED  DROPPED (RATE)  DROPPED (BLOCKLIST)
123456  789             42

BLOCKLIST (2)
198.51.100.23
203.0.113.7
"
        );
        assert_eq!(
            render_status(&GuardStatus::default()),
            "\
PASSED  DROPPED (RATE)  DROPPED (BLOCKLIST)
0       0               0

The blocklist is empty.
"
        );
    }

    #[test]
    fn status_reads_the_guard_and_prints_json_as_it_came() {
        let status = sample_status();
        let mut reply = serde_json::to_value(&status).unwrap();
        // A field a newer edge may add is kept in JSON output.
        reply["interface"] = json!("eth0");
        let (endpoint, requests, server) =
            serve(vec![(200, reply.to_string()), (200, reply.to_string())]);
        let text = run_at(&endpoint, &["guard", "status"]).unwrap();
        assert_eq!(text, render_status(&status));
        let seen = requests.recv().unwrap();
        assert!(
            seen.head.starts_with("GET /v1/guard HTTP/1.1"),
            "{}",
            seen.head
        );
        // No token goes to the edge, even with PYLON_TOKEN set.
        assert!(
            !seen.head.to_ascii_lowercase().contains("authorization"),
            "{}",
            seen.head
        );
        let json = run_at(&endpoint, &["guard", "status", "-o", "json"]).unwrap();
        assert_eq!(serde_json::from_str::<Value>(&json).unwrap(), reply);
        server.join().unwrap();
    }

    #[test]
    fn block_posts_the_source_and_unblock_deletes_it() {
        let (endpoint, requests, server) = serve(vec![
            (200, json!({"blocked": "203.0.113.7"}).to_string()),
            (200, json!({"unblocked": "203.0.113.7"}).to_string()),
            (200, json!({"unblocked": "203.0.113.7"}).to_string()),
        ]);
        let text = run_at(&endpoint, &["guard", "block", " 203.0.113.7"]).unwrap();
        assert_eq!(text, render_blocked("203.0.113.7"));
        let seen = requests.recv().unwrap();
        assert!(
            seen.head.starts_with("POST /v1/guard/blocklist HTTP/1.1"),
            "{}",
            seen.head
        );
        assert_eq!(seen.json(), json!({"source": "203.0.113.7"}));

        let text = run_at(&endpoint, &["guard", "unblock", "203.0.113.7"]).unwrap();
        assert_eq!(text, render_unblocked("203.0.113.7"));
        let seen = requests.recv().unwrap();
        assert!(
            seen.head
                .starts_with("DELETE /v1/guard/blocklist/203.0.113.7 HTTP/1.1"),
            "{}",
            seen.head
        );
        assert!(seen.body.is_empty());

        let json = run_at(
            &endpoint,
            &["guard", "unblock", "203.0.113.7", "-o", "json"],
        )
        .unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&json).unwrap(),
            json!({"unblocked": "203.0.113.7"})
        );
        server.join().unwrap();
    }

    #[test]
    fn an_edge_without_the_guard_says_how_to_start_one() {
        let (endpoint, _requests, server) = serve(vec![
            (404, no_guard_reply()),
            (404, no_guard_reply()),
            (404, no_guard_reply()),
        ]);
        for args in [
            &["guard", "status"][..],
            &["guard", "block", "203.0.113.7"],
            &["guard", "unblock", "203.0.113.7"],
        ] {
            let err = run_at(&endpoint, args).unwrap_err();
            assert_eq!(err.exit_code(), 1, "{args:?}");
            assert_eq!(err.to_string(), NO_GUARD);
        }
        server.join().unwrap();
    }

    #[test]
    fn other_errors_say_what_went_wrong() {
        let (endpoint, _requests, server) = serve(vec![
            (400, api_error("bad_source", "\"x\" is not an IPv4 address")),
            (500, "cannot update the map".into()),
            // An edge older than the guard: no such route.
            (404, String::new()),
            (200, "{\"unexpected\": true}".into()),
        ]);
        let err = run_at(&endpoint, &["guard", "block", "203.0.113.7"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert_eq!(
            err.to_string(),
            "\"x\" is not an IPv4 address (bad_source, HTTP 400)"
        );
        let err = run_at(&endpoint, &["guard", "block", "203.0.113.7"]).unwrap_err();
        assert_eq!(err.exit_code(), 1);
        let msg = err.to_string();
        assert!(
            msg.contains("HTTP 500") && msg.contains("could not change its blocklist"),
            "{msg}"
        );
        let err = run_at(&endpoint, &["guard", "status"]).unwrap_err();
        assert_eq!(err.exit_code(), 1);
        let msg = err.to_string();
        assert!(
            msg.contains("HTTP 404") && msg.contains("--edge-admin the edge's admin port, 9100"),
            "{msg}"
        );
        let err = run_at(&endpoint, &["guard", "status"]).unwrap_err();
        assert_eq!(err.exit_code(), 1);
        assert!(err.to_string().contains("does not understand"), "{err}");
        server.join().unwrap();
    }

    #[test]
    fn an_unreachable_edge_is_3_with_a_hint() {
        let endpoint = refused_endpoint();
        let err = run_at(&endpoint, &["guard", "status"]).unwrap_err();
        assert_eq!(err.exit_code(), 3);
        assert_eq!(
            err.to_string(),
            format!(
                "cannot reach the edge at {endpoint}: connection refused (is pylon-edge \
                 running, with its admin server on that address? set --edge-admin, \
                 PYLON_EDGE_ADMIN or edge_admin in the config file)"
            )
        );
        // A bad --edge-admin is bad input, and the control plane's address is not checked.
        let err = run_at("https://edge:9100", &["guard", "status"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(
            err.to_string()
                .starts_with("--edge-admin / PYLON_EDGE_ADMIN"),
            "{err}"
        );
    }
}
