use clap::Parser;
use serde_json::json;

use super::*;
use crate::cli::{Cli, Command};
use crate::client::tests::refused_endpoint;
use crate::commands::business::tests::{run_at, serve};
use crate::commands::OpsCommand;
use crate::render::reports::tests::{sample_days_json, sample_reconciliation_json};

fn parse(args: &[&str]) -> Result<ReportsCommand, clap::Error> {
    let cli = Cli::try_parse_from(std::iter::once("pylonctl").chain(args.iter().copied()))?;
    match cli.command {
        Command::Ops(OpsCommand::Reports(a)) => Ok(a.command),
        other => panic!("{args:?} parsed as {other:?}"),
    }
}

const CSV: &str = "station_id,station,day,sessions,energy_kwh,electricity_yuan,service_yuan,\
                   revenue_yuan\n3,\"North, gate\",2024-05-01,12,123.4567,987.65,493.83,1481.48\n";

#[test]
fn report_commands_parse() {
    assert_eq!(
        parse(&[
            "reports",
            "daily",
            "--from",
            "2024-05-01",
            "--to",
            "1714608000000"
        ])
        .unwrap(),
        ReportsCommand::Daily {
            from: Some(1_714_521_600_000),
            to: Some(1_714_608_000_000),
            format: None
        }
    );
    assert_eq!(
        parse(&["reports", "reconciliation", "--format", "csv"]).unwrap(),
        ReportsCommand::Reconciliation {
            format: Some(ReportFormat::Csv)
        }
    );
    assert_eq!(
        parse(&["reports", "quarantine", "--limit", "5"]).unwrap(),
        ReportsCommand::Quarantine { limit: 5 }
    );
    for bad in [
        &["reports"][..],
        &["reports", "daily", "--format", "xlsx"],
        &["reports", "daily", "--from", "last week"],
        &["reports", "discrepancies", "--limit", "0"],
        &["reports", "weekly"],
    ] {
        assert!(parse(bad).is_err(), "{bad:?} parsed");
    }
}

#[test]
fn daily_sends_the_range_and_prints_a_table_or_the_csv() {
    let days = sample_days_json();
    let (endpoint, requests, server) = serve(vec![(200, days.to_string()), (200, CSV.into())]);
    let text = run_at(
        &endpoint,
        Some("t"),
        &[
            "reports",
            "daily",
            "--from",
            "2024-05-01",
            "--to",
            "2024-05-02",
        ],
    )
    .unwrap();
    let typed: Vec<StationDay> = serde_json::from_value(days).unwrap();
    assert_eq!(text, render::daily(&typed));
    assert!(requests
        .recv()
        .unwrap()
        .head
        .starts_with("GET /v1/reports/daily?from=1714521600000&to=1714608000000 HTTP/1.1"));

    let text = run_at(
        &endpoint,
        Some("s3cret"),
        &[
            "reports",
            "daily",
            "--from",
            "2024-05-01",
            "--format",
            "csv",
        ],
    )
    .unwrap();
    assert_eq!(text, CSV);
    let head = requests.recv().unwrap().head;
    assert!(
        head.starts_with("GET /v1/reports/daily?from=1714521600000&format=csv HTTP/1.1"),
        "{head}"
    );
    let head = head.to_ascii_lowercase();
    assert!(head.contains("authorization: bearer s3cret"), "{head}");
    assert!(head.contains("accept: text/csv"), "{head}");
    server.join().unwrap();

    // Checked before any request.
    let nowhere = refused_endpoint();
    for args in [
        &["reports", "daily", "--format", "csv", "-o", "json"][..],
        &[
            "reports",
            "daily",
            "--from",
            "2024-05-02",
            "--to",
            "2024-05-01",
        ],
    ] {
        let err = run_at(&nowhere, Some("t"), args).unwrap_err();
        assert_eq!(err.exit_code(), 2, "{args:?}");
    }
}

#[test]
fn reconciliation_fails_after_printing_when_the_books_do_not_balance() {
    let balanced = sample_reconciliation_json();
    let mut unbalanced = balanced.clone();
    unbalanced["balanced"] = json!(false);
    unbalanced["wallet_mismatches"] = json!([7]);
    let csv = "check,value\nrecords,120\nbalanced,false\n";
    let (endpoint, requests, server) = serve(vec![
        (200, balanced.to_string()),
        (200, unbalanced.to_string()),
        (200, unbalanced.to_string()),
        (200, csv.into()),
        (200, csv.replace("false", "true")),
    ]);
    let text = run_at(&endpoint, Some("t"), &["reports", "reconciliation"]).unwrap();
    assert!(text.ends_with("Balanced: yes.\n"), "{text}");
    assert!(requests
        .recv()
        .unwrap()
        .head
        .starts_with("GET /v1/reports/reconciliation HTTP/1.1"));

    let mut out = Vec::new();
    let env = |k: &str| (k == crate::config::ENV_APP_ENDPOINT).then(|| endpoint.clone());
    let run = |args: &[&str], out: &mut Vec<u8>| {
        let cli =
            Cli::try_parse_from(std::iter::once("pylonctl").chain(args.iter().copied())).unwrap();
        let Command::Ops(cmd) = cli.command else {
            panic!("not an operator command");
        };
        crate::commands::run(cmd, &env, out)
    };
    let err = run(&["reports", "reconciliation"], &mut out).unwrap_err();
    assert_eq!(err.exit_code(), 1);
    assert!(
        err.to_string().starts_with("the books do not balance"),
        "{err}"
    );
    let printed = String::from_utf8(out).unwrap();
    assert!(printed.contains("accounts 7 differ"), "{printed}");
    assert!(printed.ends_with("Balanced: NO.\n"), "{printed}");
    requests.recv().unwrap();

    let mut out = Vec::new();
    let err = run(&["reports", "reconciliation", "-o", "json"], &mut out).unwrap_err();
    assert_eq!(err.exit_code(), 1);
    let printed: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(printed, unbalanced);
    requests.recv().unwrap();

    let mut out = Vec::new();
    let err = run(&["reports", "reconciliation", "--format", "csv"], &mut out).unwrap_err();
    assert_eq!(err.exit_code(), 1);
    assert_eq!(String::from_utf8(out).unwrap(), csv);
    assert!(requests
        .recv()
        .unwrap()
        .head
        .starts_with("GET /v1/reports/reconciliation?format=csv HTTP/1.1"));
    let text = run_at(
        &endpoint,
        Some("t"),
        &["reports", "reconciliation", "--format", "csv"],
    )
    .unwrap();
    assert!(text.ends_with("balanced,true\n"), "{text}");
    server.join().unwrap();
}

#[test]
fn discrepancies_and_quarantine_ask_for_a_limit() {
    let d = json!([{"trade_no": "32010200000001012405010800000001", "pile_no": "32010200000001",
                    "platform_amount": 185_184, "pile_amount": 185_000, "at": 1_714_554_001_000i64}]);
    let (endpoint, requests, server) = serve(vec![(200, d.to_string()), (200, "[]".into())]);
    let text = run_at(
        &endpoint,
        Some("t"),
        &["reports", "discrepancies", "--limit", "1"],
    )
    .unwrap();
    let typed: Vec<Discrepancy> = serde_json::from_value(d).unwrap();
    assert_eq!(text, render::discrepancies(&typed, 1));
    assert!(requests
        .recv()
        .unwrap()
        .head
        .starts_with("GET /v1/discrepancies?limit=1 HTTP/1.1"));
    let text = run_at(&endpoint, Some("t"), &["reports", "quarantine"]).unwrap();
    assert_eq!(text, "No quarantined records.\n");
    assert!(requests
        .recv()
        .unwrap()
        .head
        .starts_with("GET /v1/quarantine?limit=100 HTTP/1.1"));
    server.join().unwrap();
}
