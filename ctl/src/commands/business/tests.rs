use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::mpsc;
use std::thread;

use clap::Parser;
use serde_json::json;

use super::*;
use crate::cli::{Cli, Command};
use crate::client::tests::refused_endpoint;
use crate::commands::OpsCommand;
use crate::config;
use crate::render::business::tests::{sample_detail_json, sample_order_json, sample_record_json};

const PILE: &str = "32010200000001";
const TRADE: &str = "32010200000001012405010800000001";

fn parse(args: &[&str]) -> Result<OpsCommand, clap::Error> {
    let cli = Cli::try_parse_from(std::iter::once("pylonctl").chain(args.iter().copied()))?;
    match cli.command {
        Command::Ops(cmd) => Ok(cmd),
        other => panic!("{args:?} parsed as {other:?}"),
    }
}

fn piles(args: &[&str]) -> PilesArgs {
    match parse(args).unwrap_or_else(|e| panic!("{args:?}: {e}")) {
        OpsCommand::Piles(a) => a,
        other => panic!("{args:?} parsed as {other:?}"),
    }
}

fn records(args: &[&str]) -> RecordsArgs {
    match parse(args).unwrap_or_else(|e| panic!("{args:?}: {e}")) {
        OpsCommand::Records(a) => a,
        other => panic!("{args:?} parsed as {other:?}"),
    }
}

fn charge(args: &[&str]) -> ChargeArgs {
    match parse(args).unwrap_or_else(|e| panic!("{args:?}: {e}")) {
        OpsCommand::Charge(a) => a,
        other => panic!("{args:?} parsed as {other:?}"),
    }
}

#[test]
fn every_business_command_parses() {
    let a = piles(&["piles", "list"]);
    assert_eq!(
        a.command,
        PilesCommand::List {
            after: None,
            limit: 100
        }
    );
    assert_eq!(a.connect, AppConnectOptions::default());
    let a = piles(&[
        "piles",
        "--app-endpoint",
        "http://a:7510",
        "list",
        "--after",
        PILE,
        "--limit",
        "5",
        "-o",
        "json",
    ]);
    assert_eq!(
        a.command,
        PilesCommand::List {
            after: Some(PILE.into()),
            limit: 5
        }
    );
    assert_eq!(a.connect.app_endpoint.as_deref(), Some("http://a:7510"));
    assert_eq!(a.connect.output, OutputFormat::Json);

    let a = piles(&["piles", "add", PILE, "32010200000002"]);
    assert_eq!(
        a.command,
        PilesCommand::Add(PilesAddArgs {
            piles: vec![PILE.into(), "32010200000002".into()],
            range: None,
            disabled: false,
            model: 1,
            name: None,
        })
    );
    let a = piles(&[
        "piles",
        "add",
        "--range",
        PILE,
        "100",
        "--disabled",
        "--model",
        "7",
        "--name",
        "Lot B",
        "--token",
        "t",
    ]);
    assert_eq!(
        a.command,
        PilesCommand::Add(PilesAddArgs {
            piles: vec![],
            range: Some(vec![PILE.into(), "100".into()]),
            disabled: true,
            model: 7,
            name: Some("Lot B".into()),
        })
    );
    assert_eq!(a.connect.token.as_deref(), Some("t"));
    assert_eq!(
        piles(&["piles", "show", PILE]).command,
        PilesCommand::Show { pile: PILE.into() }
    );
    assert_eq!(
        piles(&["piles", "disable", PILE]).command,
        PilesCommand::Disable { pile: PILE.into() }
    );
    let a = piles(&["piles", "enable", PILE, "--config", "/c.toml"]);
    assert_eq!(a.command, PilesCommand::Enable { pile: PILE.into() });
    assert_eq!(a.connect.config, Some(PathBuf::from("/c.toml")));

    assert_eq!(
        records(&["records", "list", PILE]).command,
        RecordsCommand::List {
            pile: PILE.into(),
            from: None,
            to: None,
            limit: 100
        }
    );
    assert_eq!(
        records(&[
            "records",
            "list",
            PILE,
            "--from",
            "2024-05-01T16:00:00+08:00",
            "--to",
            "1714554000000",
            "--limit",
            "10"
        ])
        .command,
        RecordsCommand::List {
            pile: PILE.into(),
            from: Some(1_714_550_400_000),
            to: Some(1_714_554_000_000),
            limit: 10
        }
    );
    assert_eq!(
        records(&["records", "show", TRADE]).command,
        RecordsCommand::Show {
            trade_no: TRADE.into()
        }
    );

    assert_eq!(
        charge(&["charge", "start", PILE, "--account", "7"]).command,
        ChargeCommand::Start {
            pile: PILE.into(),
            gun: 1,
            account: 7
        }
    );
    assert_eq!(
        charge(&["charge", "start", PILE, "--gun", "2", "--account", "12"]).command,
        ChargeCommand::Start {
            pile: PILE.into(),
            gun: 2,
            account: 12
        }
    );
    assert_eq!(
        charge(&["charge", "stop", TRADE]).command,
        ChargeCommand::Stop {
            trade_no: TRADE.into()
        }
    );
    assert_eq!(
        charge(&["charge", "show", TRADE]).command,
        ChargeCommand::Show {
            trade_no: TRADE.into()
        }
    );
    assert_eq!(
        charge(&["charge", "open"]).command,
        ChargeCommand::Open { pile: None }
    );
    assert_eq!(
        charge(&["charge", "open", "--pile", PILE]).command,
        ChargeCommand::Open {
            pile: Some(PILE.into())
        }
    );

    for bad in [
        &["piles"][..],
        &["piles", "add"],
        &["piles", "add", PILE, "--range", PILE, "3"],
        &["piles", "add", "--range", PILE],
        &["piles", "add", PILE, "--model", "0"],
        &["piles", "list", "--limit", "0"],
        &["piles", "list", "-o", "yaml"],
        &["piles", "show"],
        &["piles", "list", "--endpoint", "http://x:7400"],
        &["records", "list"],
        &["records", "list", PILE, "--from", "yesterday"],
        &["records", "list", PILE, "--to", "2024-05-01T08:00:00"],
        &["charge", "start", PILE],
        &["charge", "start", PILE, "--balance", "50"],
        &["charge", "start", PILE, "--account", "7", "--balance", "50"],
        &["charge", "start", PILE, "--account", "0"],
        &["charge", "start", PILE, "--account", "-1"],
        &["charge", "start", PILE, "--account", "seven"],
        &["charge", "start", PILE, "--account", "7", "--gun", "0"],
        &["charge", "start", PILE, "--account", "7", "--gun", "100"],
        &["charge", "stop"],
        &["charge", "open", "--pile"],
    ] {
        assert!(parse(bad).is_err(), "{bad:?} parsed");
    }
    let err = parse(&["charge", "start", PILE, "--balance", "50"]).unwrap_err();
    assert!(err.to_string().contains("--balance"), "{err}");
}

#[test]
fn trade_numbers_are_32_digits() {
    assert_eq!(parse_trade_no(TRADE).unwrap(), TRADE);
    for bad in [
        "",
        "123",
        &format!("{TRADE}0"),
        "3201020000000101240501080000000x",
    ] {
        let err = parse_trade_no(bad).unwrap_err();
        assert_eq!(err.exit_code(), 2, "{bad:?}");
        assert!(err.to_string().contains("32 digits"), "{err}");
    }
}

#[test]
fn ranges_are_expanded_and_checked() {
    let add = |piles: &[&str], range: Option<[&str; 2]>| PilesAddArgs {
        piles: piles.iter().map(|p| p.to_string()).collect(),
        range: range.map(|r| r.iter().map(|s| s.to_string()).collect()),
        disabled: false,
        model: 1,
        name: None,
    };
    assert_eq!(
        piles_to_add(&add(&[], Some(["32010200000099", "3"]))).unwrap(),
        ["32010200000099", "32010200000100", "32010200000101"]
    );
    assert_eq!(
        piles_to_add(&add(&[PILE, "32010200000002", PILE], None)).unwrap(),
        [PILE, "32010200000002"]
    );
    for bad in [
        add(&["123"], None),
        add(&[], Some(["123", "3"])),
        add(&[], Some([PILE, "0"])),
        add(&[], Some([PILE, "100001"])),
        add(&[], Some([PILE, "many"])),
        add(&[], Some(["99999999999999", "2"])),
    ] {
        assert_eq!(piles_to_add(&bad).unwrap_err().exit_code(), 2, "{bad:?}");
    }
}

/// One request as the test server saw it.
pub(crate) struct Seen {
    pub(crate) head: String,
    pub(crate) body: String,
}

impl Seen {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }
}

/// Serves one canned `(status, body)` per connection, in order, on 127.0.0.1; reads
/// each request's head and body (by Content-Length) and sends them over the channel.
pub(crate) fn serve(
    replies: Vec<(u16, String)>,
) -> (String, mpsc::Receiver<Seen>, thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    let handle = thread::spawn(move || {
        for (status, body) in replies {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream);
            let mut head = String::new();
            let mut length = 0;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if line == "\r\n" || line.is_empty() {
                    break;
                }
                if let Some((k, v)) = line.split_once(':') {
                    if k.eq_ignore_ascii_case("content-length") {
                        length = v.trim().parse().unwrap();
                    }
                }
                head.push_str(&line);
            }
            let mut request_body = vec![0; length];
            reader.read_exact(&mut request_body).unwrap();
            tx.send(Seen {
                head,
                body: String::from_utf8(request_body).unwrap(),
            })
            .unwrap();
            let mut stream = reader.into_inner();
            write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .unwrap();
        }
    });
    (endpoint, rx, handle)
}

pub(crate) fn api_error(code: &str, message: &str) -> String {
    json!({"error": {"code": code, "message": message}}).to_string()
}

/// Runs `pylonctl <args>` with the app service at `endpoint` (through
/// PYLON_APP_ENDPOINT), the control plane nowhere, and no config file.
pub(crate) fn run_at(
    endpoint: &str,
    token: Option<&str>,
    args: &[&str],
) -> Result<String, Failure> {
    let mut env: HashMap<String, String> = [
        (config::ENV_APP_ENDPOINT.to_string(), endpoint.to_string()),
        (
            config::ENV_ENDPOINT.to_string(),
            "ftp://not-used".to_string(),
        ),
    ]
    .into();
    if let Some(token) = token {
        env.insert(config::ENV_TOKEN.into(), token.into());
    }
    let cmd = parse(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
    let mut out = Vec::new();
    crate::commands::run(cmd, &|k| env.get(k).cloned(), &mut out)?;
    Ok(String::from_utf8(out).unwrap())
}

#[test]
fn charge_start_posts_the_pile_and_gun_for_the_account_and_prints_the_order() {
    let mut order = sample_order_json();
    order["state"] = json!("starting");
    let body = order.to_string();
    let (endpoint, requests, server) = serve(vec![(201, body.clone()), (201, body)]);
    let text = run_at(
        &endpoint,
        Some("s3cret"),
        &["charge", "start", PILE, "--gun", "2", "--account", "7"],
    )
    .unwrap();
    let typed: Order = serde_json::from_value(order.clone()).unwrap();
    assert_eq!(text, render::charge_started(&typed));
    assert!(text.contains("pylonctl charge show 32010200000001012405010800000001"));
    let seen = requests.recv().unwrap();
    assert!(
        seen.head.starts_with("POST /v1/accounts/7/charge HTTP/1.1"),
        "{}",
        seen.head
    );
    let head = seen.head.to_ascii_lowercase();
    assert!(head.contains("authorization: bearer s3cret"), "{head}");
    assert!(head.contains("content-type: application/json"), "{head}");
    assert_eq!(seen.json(), json!({"pile": PILE, "gun": 2}));

    let text = run_at(
        &endpoint,
        Some("s3cret"),
        &["charge", "start", PILE, "--account", "12", "-o", "json"],
    )
    .unwrap();
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), order);
    let seen = requests.recv().unwrap();
    assert!(
        seen.head
            .starts_with("POST /v1/accounts/12/charge HTTP/1.1"),
        "{}",
        seen.head
    );
    assert_eq!(seen.json(), json!({"pile": PILE, "gun": 1}));
    server.join().unwrap();
}

#[test]
fn not_connected_says_the_pile_must_be_online() {
    let reply = api_error(
        "not_connected",
        "pile 32010200000001 is not connected to any edge this instance knows",
    );
    let (endpoint, requests, server) = serve(vec![(409, reply.clone()), (409, reply)]);
    let err = run_at(
        &endpoint,
        Some("t"),
        &["charge", "start", PILE, "--account", "7"],
    )
    .unwrap_err();
    assert_eq!(err.exit_code(), 1);
    let msg = err.to_string();
    assert!(
        msg.starts_with(
            "pile 32010200000001 is not connected to any edge right now; it must be online \
                 to start a charge (`pylonctl piles show 32010200000001` shows its connection)"
        ),
        "{msg}"
    );
    assert!(
        msg.contains("pylonctl shards show --pile 32010200000001"),
        "{msg}"
    );
    requests.recv().unwrap();

    // Stop: the pile is read from the trade number.
    let err = run_at(&endpoint, Some("t"), &["charge", "stop", TRADE]).unwrap_err();
    let msg = err.to_string();
    assert!(
            msg.starts_with("pile 32010200000001 is not connected to any edge right now; it must be online to stop a charge"),
            "{msg}"
        );
    assert!(msg.contains(&format!("Order {TRADE} stays open")), "{msg}");
    let seen = requests.recv().unwrap();
    assert!(
        seen.head
            .starts_with(&format!("POST /v1/orders/{TRADE}/stop HTTP/1.1")),
        "{}",
        seen.head
    );
    server.join().unwrap();
}

#[test]
fn an_unreachable_app_service_is_exit_status_3() {
    let endpoint = refused_endpoint();
    for args in [
        &["charge", "start", PILE, "--account", "7"][..],
        &["piles", "list"],
        &["records", "show", TRADE],
    ] {
        let err = run_at(&endpoint, Some("t"), args).unwrap_err();
        assert_eq!(err.exit_code(), 3, "{args:?}");
        assert_eq!(
            err.to_string(),
            format!(
                "cannot reach the app service at {endpoint}: connection refused (is \
                     pylon-app running, with its operator API on that address? set \
                     --app-endpoint, PYLON_APP_ENDPOINT or app_endpoint in the config file)"
            )
        );
    }
    // Bad input is refused before any request.
    let err = run_at(&endpoint, Some("t"), &["piles", "show", "3201"]).unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert!(err.to_string().contains("14 digits"), "{err}");
    let err = run_at(&endpoint, Some("t"), &["charge", "show", "42"]).unwrap_err();
    assert_eq!(err.exit_code(), 2);
    let err = run_at(&endpoint, Some("t"), &["charge", "open", "--pile", "x"]).unwrap_err();
    assert_eq!(err.exit_code(), 2);
    let err = run_at(
        &endpoint,
        Some("t"),
        &[
            "records",
            "list",
            PILE,
            "--from",
            "2024-05-02",
            "--to",
            "2024-05-01",
        ],
    )
    .unwrap_err();
    assert_eq!(err.exit_code(), 2);
    let err = run_at("https://app", Some("t"), &["piles", "list"]).unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert!(err.to_string().contains("--app-endpoint"), "{err}");
}

#[test]
fn api_errors_are_explained() {
    let (endpoint, _requests, server) = serve(vec![
        (
            404,
            api_error("no_such_pile", "no pile 32010200000001 is registered"),
        ),
        (
            409,
            api_error("pile_disabled", "pile 32010200000001 is disabled"),
        ),
        (
            409,
            api_error(
                "conflict",
                "gun 01 of pile 32010200000001 already has open order 3201 (charging)",
            ),
        ),
        (
            409,
            api_error("conflict", &format!("order {TRADE} is finished already")),
        ),
        (
            404,
            api_error("no_such_order", &format!("no order {TRADE}")),
        ),
        (
            404,
            api_error("no_such_record", &format!("no record {TRADE}")),
        ),
        (
            503,
            api_error(
                "store_unavailable",
                "the store is unavailable: pool timed out",
            ),
        ),
        (400, api_error("bad_pile", "a pile number has 14 digits")),
        (
            403,
            api_error(
                "operator_api_disabled",
                "the operator API is off: start pylon-app with --admin-token",
            ),
        ),
        (401, api_error("unauthorized", "missing or wrong token")),
        (404, "not found".into()),
    ]);
    let fail = |token: Option<&str>, args: &[&str]| {
        let err = run_at(&endpoint, token, args).unwrap_err();
        (err.exit_code(), err.to_string())
    };
    let t = Some("t");
    assert_eq!(
        fail(t, &["piles", "show", PILE]),
        (
            1,
            "no pile 32010200000001 is registered; register it with `pylonctl piles add \
                 32010200000001` (`pylonctl piles list` lists the registered piles)"
                .into()
        )
    );
    assert_eq!(
        fail(t, &["charge", "start", PILE, "--account", "7"]),
        (
            1,
            "pile 32010200000001 is disabled, so it may not charge; enable it with \
                 `pylonctl piles enable 32010200000001`"
                .into()
        )
    );
    let (code, msg) = fail(t, &["charge", "start", PILE, "--account", "7"]);
    assert_eq!(code, 1);
    assert!(
            msg.starts_with("gun 01 of pile 32010200000001 already has open order 3201 (charging).\nStop that charge first"),
            "{msg}"
        );
    assert_eq!(
        fail(t, &["charge", "stop", TRADE]),
        (
            1,
            format!(
                "order {TRADE} is finished already: there is nothing to stop (`pylonctl \
                     charge show {TRADE}` shows the order)"
            )
        )
    );
    let (code, msg) = fail(t, &["charge", "show", TRADE]);
    assert_eq!(code, 1);
    assert!(
        msg.starts_with(&format!("there is no order {TRADE};")),
        "{msg}"
    );
    let (code, msg) = fail(t, &["records", "show", TRADE]);
    assert_eq!(code, 1);
    assert!(
        msg.contains("a pile sends it when a charge has ended"),
        "{msg}"
    );
    let (code, msg) = fail(t, &["piles", "list"]);
    assert_eq!(code, 1);
    assert!(
            msg.starts_with("the app service cannot use its database right now (the store is unavailable: pool timed out)"),
            "{msg}"
        );
    assert_eq!(
        fail(t, &["piles", "list"]),
        (2, "a pile number has 14 digits (bad_pile, HTTP 400)".into())
    );
    let (code, msg) = fail(t, &["charge", "open"]);
    assert_eq!(code, 1);
    assert!(
        msg.contains("set to the control plane's admin token"),
        "{msg}"
    );
    let (code, msg) = fail(None, &["charge", "open"]);
    assert_eq!(code, 1);
    assert!(
            msg.contains("needs the control plane's admin token (the app service uses the same one): pass --token"),
            "{msg}"
        );
    let (code, msg) = fail(t, &["charge", "open"]);
    assert_eq!(code, 1);
    assert!(
        msg.contains("is --app-endpoint the app service's HTTP port (7510 by default)"),
        "{msg}"
    );
    server.join().unwrap();
}

#[test]
fn piles_show_and_list_print_tables_or_the_json() {
    let detail = sample_detail_json();
    let list = json!([detail["pile"].clone()]);
    let (endpoint, requests, server) = serve(vec![
        (200, detail.to_string()),
        (200, detail.to_string()),
        (200, list.to_string()),
    ]);
    let text = run_at(&endpoint, Some("t"), &["piles", "show", PILE]).unwrap();
    let typed: PileDetail = serde_json::from_value(detail.clone()).unwrap();
    assert_eq!(text, render::pile_detail(&typed));
    assert!(requests
        .recv()
        .unwrap()
        .head
        .starts_with("GET /v1/piles/32010200000001 HTTP/1.1"));
    let json = run_at(&endpoint, Some("t"), &["piles", "show", PILE, "-o", "json"]).unwrap();
    // The reply as it came, fields pylonctl does not read included.
    assert_eq!(serde_json::from_str::<Value>(&json).unwrap(), detail);
    requests.recv().unwrap();
    let text = run_at(
        &endpoint,
        Some("t"),
        &["piles", "list", "--after", "32010200000000", "--limit", "1"],
    )
    .unwrap();
    assert!(text.starts_with("PILE "), "{text}");
    assert!(
        text.ends_with("pylonctl piles list --after 32010200000001 --limit 1\n"),
        "{text}"
    );
    assert!(requests
        .recv()
        .unwrap()
        .head
        .starts_with("GET /v1/piles?limit=1&after=32010200000000 HTTP/1.1"));
    server.join().unwrap();
}

#[test]
fn piles_add_posts_lists_in_batches() {
    let (endpoint, requests, server) = serve(vec![
        (200, json!({"upserted": 2}).to_string()),
        (200, json!({"upserted": 500}).to_string()),
        (200, json!({"upserted": 1}).to_string()),
    ]);
    let text = run_at(
        &endpoint,
        Some("t"),
        &[
            "piles",
            "add",
            PILE,
            "32010200000002",
            "--model",
            "3",
            "--name",
            "Lot B",
        ],
    )
    .unwrap();
    assert_eq!(
        text,
        "2 piles added or updated (enabled, billing model 3, name \"Lot B\"): \
             32010200000001, 32010200000002\n"
    );
    let seen = requests.recv().unwrap();
    assert!(
        seen.head.starts_with("POST /v1/piles HTTP/1.1"),
        "{}",
        seen.head
    );
    assert_eq!(
        seen.json(),
        json!([
            {"pile_no": PILE, "enabled": true, "billing_model": 3, "name": "Lot B"},
            {"pile_no": "32010200000002", "enabled": true, "billing_model": 3, "name": "Lot B"}
        ])
    );

    let json = run_at(
        &endpoint,
        Some("t"),
        &[
            "piles",
            "add",
            "--range",
            PILE,
            "501",
            "--disabled",
            "-o",
            "json",
        ],
    )
    .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&json).unwrap(),
        json!({"upserted": 501})
    );
    let first = requests.recv().unwrap().json();
    let second = requests.recv().unwrap().json();
    assert_eq!(first.as_array().unwrap().len(), 500);
    assert_eq!(
        second,
        json!([{"pile_no": "32010200000501", "enabled": false, "billing_model": 1, "name": ""}])
    );
    server.join().unwrap();
}

#[test]
fn a_failed_batch_says_what_was_saved() {
    let (endpoint, _requests, server) = serve(vec![
        (200, json!({"upserted": 500}).to_string()),
        (503, api_error("store_unavailable", "down")),
    ]);
    let err = run_at(
        &endpoint,
        Some("t"),
        &["piles", "add", "--range", PILE, "600"],
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.ends_with(
            "The first 500 of 600 piles (up to 32010200000500) were saved before this \
                 error; running the command again is harmless"
        ),
        "{msg}"
    );
    server.join().unwrap();
}

#[test]
fn disable_reads_the_pile_and_keeps_its_model_and_name() {
    let mut detail = sample_detail_json();
    detail["pile"]["billing_model"] = json!(4);
    let mut disabled = detail["pile"].clone();
    disabled["enabled"] = json!(false);
    let (endpoint, requests, server) =
        serve(vec![(200, detail.to_string()), (200, disabled.to_string())]);
    let text = run_at(&endpoint, Some("t"), &["piles", "disable", PILE]).unwrap();
    assert!(
        text.starts_with("pile 32010200000001 is disabled: it may no longer log in"),
        "{text}"
    );
    assert!(requests
        .recv()
        .unwrap()
        .head
        .starts_with("GET /v1/piles/32010200000001 HTTP/1.1"));
    let put = requests.recv().unwrap();
    assert!(
        put.head
            .starts_with("PUT /v1/piles/32010200000001 HTTP/1.1"),
        "{}",
        put.head
    );
    assert_eq!(
        put.json(),
        json!({"enabled": false, "billing_model": 4, "name": "Lot B #1"})
    );
    server.join().unwrap();
}

#[test]
fn records_list_sends_the_range_in_milliseconds() {
    let list = json!([sample_record_json()]);
    let (endpoint, requests, server) = serve(vec![(200, list.to_string())]);
    let text = run_at(
        &endpoint,
        Some("t"),
        &[
            "records",
            "list",
            PILE,
            "--from",
            "2024-05-01",
            "--to",
            "2024-05-02T00:00:00Z",
            "--limit",
            "50",
        ],
    )
    .unwrap();
    let typed: Vec<Record> = serde_json::from_value(list).unwrap();
    assert_eq!(text, render::records(&typed, PILE, 50));
    let head = requests.recv().unwrap().head;
    assert!(
            head.starts_with(
                "GET /v1/piles/32010200000001/records?limit=50&from=1714521600000&to=1714608000000 HTTP/1.1"
            ),
            "{head}"
        );
    server.join().unwrap();
}

#[test]
fn charge_show_and_open_read_orders() {
    let detail = json!({"order": sample_order_json(), "events": [], "record": null});
    let open = json!([sample_order_json()]);
    let (endpoint, requests, server) =
        serve(vec![(200, detail.to_string()), (200, open.to_string())]);
    let text = run_at(&endpoint, Some("t"), &["charge", "show", TRADE]).unwrap();
    assert!(text.starts_with(&format!("trade no:  {TRADE}\n")), "{text}");
    assert!(requests
        .recv()
        .unwrap()
        .head
        .starts_with(&format!("GET /v1/orders/{TRADE} HTTP/1.1")));
    let text = run_at(&endpoint, Some("t"), &["charge", "open", "--pile", PILE]).unwrap();
    assert!(text.starts_with("TRADE NO "), "{text}");
    assert!(requests
        .recv()
        .unwrap()
        .head
        .starts_with("GET /v1/orders?pile=32010200000001 HTTP/1.1"));
    server.join().unwrap();
}

#[test]
fn a_reply_of_the_wrong_shape_is_reported() {
    let (endpoint, _requests, server) = serve(vec![(200, json!({"piles": []}).to_string())]);
    let err = run_at(&endpoint, Some("t"), &["piles", "list"]).unwrap_err();
    assert_eq!(err.exit_code(), 1);
    assert!(
        err.to_string().starts_with(&format!(
            "the app service at {endpoint} gave GET /v1/piles a reply"
        )),
        "{err}"
    );
    server.join().unwrap();
}

#[test]
fn a_refused_start_shows_the_servers_reason_and_what_to_do() {
    let refused = |code: &str, why: &str| {
        (
            409,
            api_error(code, &format!("the start was refused: {why}")),
        )
    };
    let (endpoint, requests, server) = serve(vec![
        refused("insufficient_balance", "the balance is too low"),
        refused("frozen", "the account is frozen"),
        refused(
            "not_allowed_here",
            "the account may not charge at this pile",
        ),
        refused("pile_unsettled", "the gun has an unsettled charge"),
        refused("wrong_password", "wrong password"),
        (404, api_error("no_such_account", "no account 7")),
    ]);
    let fail = || {
        let args = ["charge", "start", PILE, "--account", "7"];
        let err = run_at(&endpoint, Some("t"), &args).unwrap_err();
        let seen = requests.recv().unwrap();
        assert!(
            seen.head.starts_with("POST /v1/accounts/7/charge "),
            "{}",
            seen.head
        );
        (err.exit_code(), err.to_string())
    };
    assert_eq!(
        fail(),
        (
            1,
            "the start was refused: the balance is too low (insufficient_balance).\n\
             `pylonctl accounts show 7` shows its balance; top it up with `pylonctl accounts \
             top-up 7 --amount YUAN --reason TEXT`"
                .into()
        )
    );
    assert_eq!(
        fail(),
        (
            1,
            "the start was refused: the account is frozen (frozen).\nAccount 7 is frozen; \
             `pylonctl accounts unfreeze 7` lets it charge again"
                .into()
        )
    );
    let (code, msg) = fail();
    assert_eq!(code, 1);
    assert!(
        msg.starts_with(
            "the start was refused: the account may not charge at this pile \
             (not_allowed_here).\nAccount 7 may charge only at the stations"
        ),
        "{msg}"
    );
    let (_, msg) = fail();
    assert!(
        msg.starts_with(
            "the start was refused: the gun has an unsettled charge (pile_unsettled).\n"
        ),
        "{msg}"
    );
    assert!(
        msg.contains("pylonctl charge open --pile 32010200000001"),
        "{msg}"
    );
    assert_eq!(
        fail(),
        (
            1,
            "the start was refused: wrong password (wrong_password)".into()
        )
    );
    assert_eq!(
        fail(),
        (
            1,
            "there is no account 7; `pylonctl accounts list` lists the accounts".into()
        )
    );
    server.join().unwrap();
}

#[test]
fn an_https_app_service_is_checked_against_the_cluster_ca() {
    use crate::client::tests::{serve_tls, tls_files};
    let dir = tls_files();
    let d = dir.path();
    let detail = sample_detail_json();
    let (endpoint, requests, server) = serve_tls(
        &d.join("server.pem"),
        &d.join("server.key"),
        vec![(200, detail.to_string())],
    );
    let run_with = |env: &HashMap<String, String>| -> Result<String, Failure> {
        let cmd = parse(&["piles", "show", PILE, "-o", "json"]).unwrap();
        let mut out = Vec::new();
        crate::commands::run(cmd, &|k| env.get(k).cloned(), &mut out)?;
        Ok(String::from_utf8(out).unwrap())
    };
    let mut env: HashMap<String, String> = [
        (config::ENV_APP_ENDPOINT.to_string(), endpoint.clone()),
        (config::ENV_TOKEN.to_string(), "t".to_string()),
    ]
    .into();

    // No CA: refused before connecting, saying how to give one.
    let err = run_with(&env).unwrap_err();
    assert_eq!(err.exit_code(), 2);
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!(
            "--app-endpoint / PYLON_APP_ENDPOINT: the endpoint {endpoint} is https"
        )) && msg.contains("--ca FILE")
            && msg.contains("PYLON_CA"),
        "{msg}"
    );

    // PYLON_CA: the server's certificate is checked, and the call goes through.
    env.insert(
        config::ENV_CA.to_string(),
        d.join("ca.pem").display().to_string(),
    );
    let json = run_with(&env).unwrap();
    assert_eq!(serde_json::from_str::<Value>(&json).unwrap(), detail);
    assert!(requests
        .recv()
        .unwrap()
        .unwrap()
        .starts_with("GET /v1/piles/32010200000001 HTTP/1.1"));
    server.join().unwrap();
}
