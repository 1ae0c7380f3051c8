use std::collections::HashMap;

use clap::Parser;
use serde_json::json;

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
    json!({"error": {"code": code, "message": message}}).to_string()
}

fn no_guard_reply() -> String {
    api_error(
        "no_guard",
        "this edge runs without the SYN-flood guard (start it with --syn-guard <interface>)",
    )
}

pub(crate) fn sample_status() -> GuardStatus {
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
        (500, api_error("guard_failed", "cannot update the map")),
        // An edge older than the shared error body.
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
    for _ in 0..2 {
        let err = run_at(&endpoint, &["guard", "block", "203.0.113.7"]).unwrap_err();
        assert_eq!(err.exit_code(), 1);
        let msg = err.to_string();
        assert!(
            msg.contains("HTTP 500") && msg.contains("could not change its blocklist"),
            "{msg}"
        );
    }
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

#[test]
fn an_https_edge_is_checked_against_the_cluster_ca() {
    use crate::client::tests::{serve_tls, tls_files};
    let dir = tls_files();
    let d = dir.path();
    let status = sample_status();
    let (endpoint, requests, server) = serve_tls(
        &d.join("server.pem"),
        &d.join("server.key"),
        vec![(200, serde_json::to_string(&status).unwrap())],
    );
    let err = run_at(&endpoint, &["guard", "status"]).unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert!(err.to_string().contains("--ca FILE"), "{err}");

    let ca = d.join("ca.pem");
    let text = run_at(
        &endpoint,
        &["guard", "status", "--ca", ca.to_str().unwrap()],
    )
    .unwrap();
    assert_eq!(text, render_status(&status));
    let head = requests.recv().unwrap().unwrap();
    assert!(head.starts_with("GET /v1/guard HTTP/1.1"), "{head}");
    server.join().unwrap();
}
