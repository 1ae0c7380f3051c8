use std::io::Write as _;

use clap::Parser;
use serde_json::json;

use super::*;
use crate::cli::{Cli, Command};
use crate::client::tests::refused_endpoint;
use crate::commands::business::tests::{api_error, run_at, serve};
use crate::commands::OpsCommand;
use crate::render::tariffs::tests::sample_tariff_json;
use pylon_proto::api::revenue::{Period, Rate};

const RATES: &str = "sharp=1.2/0.4,peak=1.0/0.4,flat=0.8/0.4,valley=0.4/0.12345";
const SCHEDULE: &str = "00:00=valley,08:00=flat,10:00=peak,18:00=sharp,20:30=flat,23:00=valley";

fn parse(args: &[&str]) -> Result<TariffsCommand, clap::Error> {
    let cli = Cli::try_parse_from(std::iter::once("pylonctl").chain(args.iter().copied()))?;
    match cli.command {
        Command::Ops(OpsCommand::Tariffs(a)) => Ok(a.command),
        other => panic!("{args:?} parsed as {other:?}"),
    }
}

fn rate(electricity: u32, service: u32) -> Rate {
    Rate {
        electricity,
        service,
    }
}

fn change(from: &str, period: Period) -> ScheduleChange {
    ScheduleChange {
        from: from.into(),
        period,
    }
}

/// A tariff file in a temporary directory.
fn file(json: &Value) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    write!(f, "{json}").unwrap();
    f
}

#[test]
fn compact_rates_are_yuan_with_five_decimals() {
    assert_eq!(
        parse_rates(RATES),
        Ok(Rates {
            sharp: rate(120_000, 40_000),
            peak: rate(100_000, 40_000),
            flat: rate(80_000, 40_000),
            valley: rate(40_000, 12_345),
        })
    );
    assert_eq!(
        parse_rates("Valley=0/0, flat=1/0 ,peak=2/0,sharp=3/0.5").map(|r| r.sharp),
        Ok(rate(300_000, 50_000))
    );
    for (bad, why) in [
        ("sharp=1.2/0.4,peak=1.0/0.4,flat=0.8/0.4", "missing: valley"),
        ("sharp=1.2/0.4,sharp=1.0/0.4", "sharp is given twice"),
        ("noon=1/1", "is not a period"),
        ("sharp=1.2", "is not PERIOD=ELECTRICITY/SERVICE"),
        ("sharp=1.234567/0.4", "has 6 decimals"),
        ("sharp=-1/0.4", "negative"),
        ("sharp=10000.5/0", "above 10000 yuan"),
    ] {
        let err = parse_rates(bad).unwrap_err();
        assert!(err.contains(why), "{bad:?}: {err}");
    }
}

#[test]
fn compact_schedules_are_checked_as_the_server_checks_them() {
    assert_eq!(
        parse_schedule("00:00=valley, 08:30=peak"),
        Ok(Schedule(vec![
            change("00:00", Period::Valley),
            change("08:30", Period::Peak)
        ]))
    );
    for (bad, why) in [
        ("", "the schedule is empty"),
        ("08:00=flat", "must start at 00:00"),
        ("00:00=flat,08:15=peak", "not a half-hour boundary"),
        ("00:00=flat,8:00=peak", "not a half-hour boundary"),
        ("00:00=flat,24:00=peak", "not a half-hour boundary"),
        (
            "00:00=flat,10:00=peak,09:00=valley",
            "must increase: 09:00 comes after 10:00",
        ),
        ("00:00=flat,00:00=peak", "must increase"),
        ("00:00=lunch", "is not a period"),
        ("00:00", "is not HH:MM=PERIOD"),
    ] {
        let err = parse_schedule(bad).unwrap_err();
        assert!(err.contains(why), "{bad:?}: {err}");
    }
}

#[test]
fn tariff_commands_parse() {
    let cmd = parse(&[
        "tariffs",
        "add",
        "--name",
        "Std",
        "--rates",
        RATES,
        "--schedule",
        "00:00=flat",
    ])
    .unwrap();
    let TariffsCommand::Add { name, source } = cmd else {
        panic!("not an add: {cmd:?}");
    };
    assert_eq!(name.as_deref(), Some("Std"));
    assert_eq!(source.rates.map(|r| r.valley), Some(rate(40_000, 12_345)));
    assert_eq!(
        source.schedule,
        Some(Schedule(vec![change("00:00", Period::Flat)]))
    );
    assert_eq!((source.file, source.loss_ratio), (None, None));
    assert_eq!(
        parse(&["tariffs", "show", "2"]).unwrap(),
        TariffsCommand::Show { id: 2 }
    );
    assert!(matches!(
        parse(&["tariffs", "revise", "2", "--loss-ratio", "100"]).unwrap(),
        TariffsCommand::Revise { id: 2, .. }
    ));
    for bad in [
        &["tariffs", "show", "0"][..],
        &["tariffs", "add", "--file", "t.json", "--rates", RATES],
        &[
            "tariffs",
            "add",
            "--file",
            "t.json",
            "--schedule",
            "00:00=flat",
        ],
        &["tariffs", "add", "--rates", "sharp=1/1"],
        &["tariffs", "add", "--schedule", "01:00=flat"],
        &["tariffs", "revise", "2", "--loss-ratio", "101"],
        &["tariffs", "revise", "2", "--name", ""],
        &["tariffs", "revise"],
    ] {
        assert!(parse(bad).is_err(), "{bad:?} parsed");
    }
}

#[test]
fn add_sends_the_compact_form_as_a_tariff_input() {
    let tariff = sample_tariff_json();
    let (endpoint, requests, server) = serve(vec![(201, tariff.to_string())]);
    let text = run_at(
        &endpoint,
        Some("t"),
        &[
            "tariffs",
            "add",
            "--name",
            "Standard",
            "--rates",
            RATES,
            "--schedule",
            SCHEDULE,
            "--loss-ratio",
            "5",
        ],
    )
    .unwrap();
    let typed: Tariff = serde_json::from_value(tariff.clone()).unwrap();
    assert_eq!(text, render::tariff_added(&typed));
    let seen = requests.recv().unwrap();
    assert!(
        seen.head.starts_with("POST /v1/tariffs HTTP/1.1"),
        "{}",
        seen.head
    );
    let mut expected = tariff;
    for key in ["id", "revision", "created_at"] {
        expected.as_object_mut().unwrap().remove(key);
    }
    assert_eq!(seen.json(), expected);
    server.join().unwrap();
}

#[test]
fn add_reads_a_file_and_name_wins() {
    let mut body = sample_tariff_json();
    for key in ["id", "revision", "created_at", "name", "loss_ratio"] {
        body.as_object_mut().unwrap().remove(key);
    }
    let f = file(&body);
    let path = f.path().to_str().unwrap();
    let (endpoint, requests, server) = serve(vec![(201, sample_tariff_json().to_string())]);
    run_at(
        &endpoint,
        Some("t"),
        &["tariffs", "add", "--file", path, "--name", "Night"],
    )
    .unwrap();
    let mut expected = body.clone();
    expected["name"] = json!("Night");
    expected["loss_ratio"] = json!(0);
    assert_eq!(requests.recv().unwrap().json(), expected);
    server.join().unwrap();

    // Checked before any request: no name, a typo'd field, a bad schedule, no source.
    let nowhere = refused_endpoint();
    let fail = |args: &[&str]| {
        let err = run_at(&nowhere, Some("t"), args).unwrap_err();
        (err.exit_code(), err.to_string())
    };
    let (code, msg) = fail(&["tariffs", "add", "--file", path]);
    assert_eq!(code, 2);
    assert!(msg.starts_with("a tariff needs a name"), "{msg}");
    let mut typo = body.clone();
    typo["loss_ration"] = json!(3);
    let typo = file(&typo);
    let (code, msg) = fail(&[
        "tariffs",
        "add",
        "--name",
        "X",
        "--file",
        typo.path().to_str().unwrap(),
    ]);
    assert_eq!(code, 2);
    assert!(
        msg.contains("is not a tariff: unknown field `loss_ration`"),
        "{msg}"
    );
    let mut late = body.clone();
    late["schedule"][0]["from"] = json!("01:00");
    let late = file(&late);
    let (code, msg) = fail(&[
        "tariffs",
        "add",
        "--name",
        "X",
        "--file",
        late.path().to_str().unwrap(),
    ]);
    assert_eq!(code, 2);
    assert!(
        msg.contains("the schedule must start at 00:00, not 01:00"),
        "{msg}"
    );
    let mut dear = body;
    dear["rates"]["peak"]["service"] = json!(1_000_000_001u32);
    let dear = file(&dear);
    let (code, msg) = fail(&[
        "tariffs",
        "add",
        "--name",
        "X",
        "--file",
        dear.path().to_str().unwrap(),
    ]);
    assert_eq!(code, 2);
    assert!(
        msg.contains("a peak price is above 10000 yuan per kWh"),
        "{msg}"
    );
    let (code, msg) = fail(&[
        "tariffs",
        "add",
        "--name",
        "X",
        "--file",
        "/nonexistent/t.json",
    ]);
    assert_eq!(code, 2);
    assert!(
        msg.starts_with("cannot read the tariff file /nonexistent/t.json"),
        "{msg}"
    );
    let (code, msg) = fail(&["tariffs", "add", "--name", "X", "--rates", RATES]);
    assert_eq!(code, 2);
    assert!(
        msg.starts_with("give the tariff: --file F.json, or --rates and --schedule"),
        "{msg}"
    );
    let (code, _) = fail(&["tariffs", "revise", "2"]);
    assert_eq!(code, 2);
}

#[test]
fn revise_keeps_what_is_not_given_from_the_latest_revision() {
    let current = sample_tariff_json();
    let mut revised = current.clone();
    revised["revision"] = json!(4);
    let (endpoint, requests, server) = serve(vec![
        (200, current.to_string()),
        (200, revised.to_string()),
        (200, revised.to_string()),
    ]);
    let text = run_at(
        &endpoint,
        Some("t"),
        &[
            "tariffs",
            "revise",
            "2",
            "--rates",
            "sharp=2/0,peak=2/0,flat=1/0,valley=0.5/0",
        ],
    )
    .unwrap();
    assert!(text.starts_with("Tariff 2 revised: revision 4"), "{text}");
    assert!(requests
        .recv()
        .unwrap()
        .head
        .starts_with("GET /v1/tariffs/2 HTTP/1.1"));
    let put = requests.recv().unwrap();
    assert!(
        put.head.starts_with("PUT /v1/tariffs/2 HTTP/1.1"),
        "{}",
        put.head
    );
    let body = put.json();
    assert_eq!(body["name"], "Standard");
    assert_eq!(body["loss_ratio"], 5);
    assert_eq!(body["schedule"], current["schedule"]);
    assert_eq!(
        body["rates"]["valley"],
        json!({"electricity": 50_000, "service": 0})
    );

    // Everything given: no read first.
    let mut whole = current.clone();
    for key in ["id", "revision", "created_at"] {
        whole.as_object_mut().unwrap().remove(key);
    }
    let f = file(&whole);
    run_at(
        &endpoint,
        Some("t"),
        &[
            "tariffs",
            "revise",
            "2",
            "--file",
            f.path().to_str().unwrap(),
        ],
    )
    .unwrap();
    let put = requests.recv().unwrap();
    assert!(
        put.head.starts_with("PUT /v1/tariffs/2 HTTP/1.1"),
        "{}",
        put.head
    );
    assert_eq!(put.json(), whole);
    server.join().unwrap();
}

#[test]
fn show_prints_the_table_and_errors_are_explained() {
    let (endpoint, requests, server) = serve(vec![
        (200, sample_tariff_json().to_string()),
        (404, api_error("no_such_tariff", "no tariff 9")),
        (409, api_error("conflict", "a tariff is named \"Standard\"")),
        (
            400,
            api_error(
                "bad_tariff",
                "the loss ratio is a percentage (0 to 100), not 101",
            ),
        ),
    ]);
    let text = run_at(&endpoint, Some("t"), &["tariffs", "show", "2"]).unwrap();
    let typed: Tariff = serde_json::from_value(sample_tariff_json()).unwrap();
    assert_eq!(text, render::tariff(&typed));
    assert!(requests
        .recv()
        .unwrap()
        .head
        .starts_with("GET /v1/tariffs/2 HTTP/1.1"));
    let err = run_at(&endpoint, Some("t"), &["tariffs", "show", "9"]).unwrap_err();
    assert_eq!(
        (err.exit_code(), err.to_string()),
        (
            1,
            "there is no tariff 9; `pylonctl tariffs list` lists the tariffs, `pylonctl \
             tariffs add` adds one"
                .into()
        )
    );
    let args = [
        "tariffs",
        "add",
        "--name",
        "Standard",
        "--rates",
        RATES,
        "--schedule",
        SCHEDULE,
    ];
    let err = run_at(&endpoint, Some("t"), &args).unwrap_err();
    assert_eq!(
        (err.exit_code(), err.to_string()),
        (1, "a tariff is named \"Standard\" (conflict)".into())
    );
    let err = run_at(&endpoint, Some("t"), &args).unwrap_err();
    assert_eq!(err.exit_code(), 2);
    server.join().unwrap();
}
