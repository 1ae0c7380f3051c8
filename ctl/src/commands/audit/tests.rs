use std::collections::HashMap;

use clap::Parser;
use pylon_proto::api::audit::{seal, verify, AuditRecord, GENESIS};
use pylon_proto::auth::Role;
use serde_json::{json, Value};

use super::*;
use crate::cli::{Cli, Command};
use crate::client::tests::refused_endpoint;
use crate::commands::business::tests::{api_error, serve};
use crate::commands::OpsCommand;
use crate::config;

fn parse(args: &[&str]) -> Result<AuditCommand, clap::Error> {
    let cli = Cli::try_parse_from(std::iter::once("pylonctl").chain(args.iter().copied()))?;
    match cli.command {
        Command::Ops(OpsCommand::Audit(a)) => Ok(a.command),
        other => panic!("{args:?} parsed as {other:?}"),
    }
}

/// Runs `pylonctl <args>` with the control plane at `endpoint` and no config file.
fn run_at(endpoint: &str, token: Option<&str>, args: &[&str]) -> Result<String, Failure> {
    let mut env: HashMap<String, String> =
        [(config::ENV_ENDPOINT.to_string(), endpoint.to_string())].into();
    if let Some(token) = token {
        env.insert(config::ENV_TOKEN.into(), token.into());
    }
    let cmd = Cli::try_parse_from(std::iter::once("pylonctl").chain(args.iter().copied()))
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    let Command::Ops(cmd) = cmd.command else {
        panic!("{args:?} is not an operator command")
    };
    let mut out = Vec::new();
    crate::commands::run(cmd, &|k| env.get(k).cloned(), &mut out)?;
    Ok(String::from_utf8(out).unwrap())
}

fn chain(n: u64) -> Vec<AuditEntry> {
    let mut prev = GENESIS.to_owned();
    (1..=n)
        .map(|seq| {
            let e = seal(
                seq,
                &prev,
                AuditRecord {
                    at_ms: 1_714_550_400_000 + seq * 1000,
                    service: "control".into(),
                    actor: "ana".into(),
                    role: Role::Admin,
                    token_id: Some("0123456789ab".into()),
                    action: "edges.drain".into(),
                    target: format!("edge-{seq}"),
                    before: Some(json!({"draining": false})),
                    after: Some(json!({"draining": true})),
                    source: Some("10.0.0.9:51000".into()),
                },
            );
            prev = e.hash.clone();
            e
        })
        .collect()
}

#[test]
fn audit_commands_parse() {
    assert_eq!(
        parse(&["audit", "list"]).unwrap(),
        AuditCommand::List {
            after: None,
            limit: 100
        }
    );
    assert_eq!(
        parse(&["audit", "list", "--after", "1200", "--limit", "50"]).unwrap(),
        AuditCommand::List {
            after: Some(1200),
            limit: 50
        }
    );
    assert_eq!(parse(&["audit", "verify"]).unwrap(), AuditCommand::Verify);
    for bad in [
        &["audit"][..],
        &["audit", "list", "--limit", "0"],
        &["audit", "list", "--limit", "10001"],
        &["audit", "list", "--after", "-1"],
        &["audit", "verify", "now"],
    ] {
        assert!(parse(bad).is_err(), "{bad:?} parsed");
    }
}

#[test]
fn audit_list_asks_for_a_page_and_prints_a_table_or_the_entries() {
    let entries = chain(2);
    let reply = serde_json::to_string(&entries).unwrap();
    let (endpoint, requests, server) = serve(vec![(200, reply.clone()), (200, reply)]);
    let text = run_at(&endpoint, Some("s3cret"), &["audit", "list"]).unwrap();
    assert_eq!(text, render::entries(&entries, None, 100));
    assert!(text.contains("2024-05-01T08:00:01Z  ana    admin  control  edges.drain  edge-1"));
    let seen = requests.recv().unwrap();
    assert!(
        seen.head
            .starts_with("GET /v1/admin/audit?limit=100 HTTP/1.1"),
        "{}",
        seen.head
    );
    assert!(seen
        .head
        .to_ascii_lowercase()
        .contains("authorization: bearer s3cret"));

    let text = run_at(
        &endpoint,
        Some("s3cret"),
        &[
            "audit", "list", "--after", "7", "--limit", "2", "-o", "json",
        ],
    )
    .unwrap();
    let back: Vec<AuditEntry> = serde_json::from_str(&text).unwrap();
    assert_eq!(back, entries);
    // What JSON output prints still verifies.
    assert!(verify(&back).intact);
    assert!(requests
        .recv()
        .unwrap()
        .head
        .starts_with("GET /v1/admin/audit?after=7&limit=2 HTTP/1.1"));
    server.join().unwrap();
}

#[test]
fn audit_verify_exits_non_zero_on_a_broken_chain() {
    let mut entries = chain(4);
    entries[2].record.target = "edge-9".into();
    let broken = verify(&entries);
    assert_eq!(broken.broken_at, Some(3));
    let intact = verify(&chain(4));
    let (endpoint, requests, server) = serve(vec![
        (200, serde_json::to_string(&intact).unwrap()),
        (200, serde_json::to_string(&broken).unwrap()),
        (200, serde_json::to_string(&broken).unwrap()),
    ]);

    let mut out = Vec::new();
    let env: HashMap<String, String> = [
        (config::ENV_ENDPOINT.to_string(), endpoint.clone()),
        (config::ENV_TOKEN.to_string(), "t".to_string()),
    ]
    .into();
    let run = |args: &[&str], out: &mut Vec<u8>| {
        let Command::Ops(cmd) = Cli::try_parse_from(args).unwrap().command else {
            panic!()
        };
        out.clear();
        crate::commands::run(cmd, &|k| env.get(k).cloned(), out)
    };

    run(&["pylonctl", "audit", "verify"], &mut out).unwrap();
    let text = String::from_utf8(out.clone()).unwrap();
    assert!(
        text.starts_with("audit log:  intact\nentries:    4\n"),
        "{text}"
    );
    assert!(text.contains(&intact.head_hash), "{text}");
    assert!(requests
        .recv()
        .unwrap()
        .head
        .starts_with("GET /v1/admin/audit/verify HTTP/1.1"));

    // Broken: the check is printed, then the command fails with exit status 1.
    let err = run(&["pylonctl", "audit", "verify"], &mut out).unwrap_err();
    assert_eq!(err.exit_code(), 1);
    assert_eq!(
        err.to_string(),
        "the audit log's hash chain is broken at entry 3: its content does not match its \
         hash (edited)"
    );
    let text = String::from_utf8(out.clone()).unwrap();
    assert!(
        text.starts_with("audit log:  BROKEN at entry 3\n"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "head hash:  {} (entry 2's, the last that verifies)",
            entries[1].hash
        )),
        "{text}"
    );

    // JSON output is the check as it is, and fails the same way.
    let err = run(&["pylonctl", "audit", "verify", "-o", "json"], &mut out).unwrap_err();
    assert_eq!(err.exit_code(), 1);
    let printed: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(printed, serde_json::to_value(&broken).unwrap());
    assert_eq!(printed["broken_at"], 3);
    server.join().unwrap();
}

#[test]
fn audit_errors_keep_their_exit_statuses() {
    let (endpoint, _requests, server) = serve(vec![
        (
            403,
            api_error(
                "forbidden",
                "bo (operator) may not do this: it needs the admin permission",
            ),
        ),
        (
            503,
            api_error("audit_unavailable", "the registry does not answer"),
        ),
    ]);
    let err = run_at(&endpoint, Some("t"), &["audit", "verify"]).unwrap_err();
    assert_eq!(err.exit_code(), 1);
    assert!(
        err.to_string()
            .starts_with("bo (operator) may not do this: it needs the admin permission"),
        "{err}"
    );
    let err = run_at(&endpoint, Some("t"), &["audit", "list"]).unwrap_err();
    assert_eq!(err.exit_code(), 1);
    server.join().unwrap();

    let err = run_at(&refused_endpoint(), Some("t"), &["audit", "verify"]).unwrap_err();
    assert_eq!(err.exit_code(), 3);
}
