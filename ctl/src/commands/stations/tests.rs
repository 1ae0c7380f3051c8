use clap::Parser;
use serde_json::json;

use super::*;
use crate::cli::{Cli, Command};
use crate::client::tests::refused_endpoint;
use crate::commands::business::tests::{api_error, run_at, serve};
use crate::commands::OpsCommand;
use crate::render::stations::tests::sample_station_json;

const PILE: &str = "32010200000001";

fn parse(args: &[&str]) -> Result<StationsCommand, clap::Error> {
    let cli = Cli::try_parse_from(std::iter::once("pylonctl").chain(args.iter().copied()))?;
    match cli.command {
        Command::Ops(OpsCommand::Stations(a)) => Ok(a.command),
        other => panic!("{args:?} parsed as {other:?}"),
    }
}

fn parsed(args: &[&str]) -> StationsCommand {
    parse(args).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

#[test]
fn station_commands_parse_and_check_their_input() {
    assert_eq!(parsed(&["stations", "list"]), StationsCommand::List);
    assert_eq!(
        parsed(&["stations", "show", "3"]),
        StationsCommand::Show { id: 3 }
    );
    assert_eq!(
        parsed(&[
            "stations",
            "add",
            "--name",
            " North gate ",
            "--lat",
            "-33.8688",
            "--lon",
            "151.2093",
            "--utc-offset-minutes",
            "-300",
            "--power-cap-kw",
            "600",
        ]),
        StationsCommand::Add(StationAddArgs {
            name: "North gate".into(),
            address: None,
            lat: Some(-33.8688),
            lon: Some(151.2093),
            utc_offset_minutes: -300,
            power_cap_kw: Some(600),
        })
    );
    let StationsCommand::Add(add) = parsed(&["stations", "add", "--name", "X"]) else {
        panic!("not an add");
    };
    assert_eq!((add.utc_offset_minutes, add.lat), (480, None));
    assert_eq!(
        parsed(&[
            "stations",
            "tariff",
            "3",
            "--tariff",
            "2",
            "--from",
            "2024-05-01"
        ]),
        StationsCommand::Tariff {
            id: 3,
            tariff: 2,
            from: Some(1_714_521_600_000)
        }
    );
    assert_eq!(
        parsed(&["stations", "add-pile", "3", PILE]),
        StationsCommand::AddPile {
            id: 3,
            pile: PILE.into()
        }
    );
    assert_eq!(
        parsed(&["stations", "offline-cards", "3"]),
        StationsCommand::OfflineCards { id: 3 }
    );
    for bad in [
        &["stations", "show"][..],
        &["stations", "show", "0"],
        &["stations", "show", "north"],
        &["stations", "add"],
        &["stations", "add", "--name", "  "],
        &["stations", "add", "--name", "X", "--lat", "31.2"],
        &[
            "stations", "add", "--name", "X", "--lat", "91", "--lon", "0",
        ],
        &[
            "stations", "add", "--name", "X", "--lat", "0", "--lon", "-180.5",
        ],
        &[
            "stations", "add", "--name", "X", "--lat", "NaN", "--lon", "0",
        ],
        &[
            "stations",
            "add",
            "--name",
            "X",
            "--utc-offset-minutes",
            "900",
        ],
        &["stations", "add", "--name", "X", "--power-cap-kw", "0"],
        &[
            "stations",
            "edit",
            "3",
            "--no-location",
            "--lat",
            "1",
            "--lon",
            "1",
        ],
        &[
            "stations",
            "edit",
            "3",
            "--no-power-cap",
            "--power-cap-kw",
            "5",
        ],
        &["stations", "tariff", "3"],
        &[
            "stations", "tariff", "3", "--tariff", "2", "--from", "tomorrow",
        ],
        &["stations", "add-pile", "3"],
        &["stations", "offline-cards"],
        &["stations", "offline-cards", "0"],
        &["stations", "offline-cards", "north"],
        &["stations", "offline-cards", "3", "--body", "x"],
    ] {
        assert!(parse(bad).is_err(), "{bad:?} parsed");
    }
}

#[test]
fn add_posts_the_station_and_prints_it() {
    let station = sample_station_json();
    let (endpoint, requests, server) =
        serve(vec![(201, station.to_string()), (201, station.to_string())]);
    let text = run_at(
        &endpoint,
        Some("t"),
        &[
            "stations",
            "add",
            "--name",
            "North gate",
            "--address",
            "1 Main St",
            "--lat",
            "31.2304",
            "--lon",
            "121.4737",
            "--power-cap-kw",
            "600",
        ],
    )
    .unwrap();
    let typed: Station = serde_json::from_value(station.clone()).unwrap();
    assert_eq!(text, render::station_saved(&typed, "added"));
    let seen = requests.recv().unwrap();
    assert!(
        seen.head.starts_with("POST /v1/stations HTTP/1.1"),
        "{}",
        seen.head
    );
    assert_eq!(
        seen.json(),
        json!({"name": "North gate", "address": "1 Main St", "latitude": 31.2304,
               "longitude": 121.4737, "utc_offset_minutes": 480, "power_cap_kw": 600})
    );
    let text = run_at(
        &endpoint,
        Some("t"),
        &["stations", "add", "--name", "Depot", "-o", "json"],
    )
    .unwrap();
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), station);
    assert_eq!(
        requests.recv().unwrap().json(),
        json!({"name": "Depot", "address": "", "latitude": null, "longitude": null,
               "utc_offset_minutes": 480, "power_cap_kw": null})
    );
    server.join().unwrap();
}

#[test]
fn edit_reads_the_station_and_writes_back_only_the_changes() {
    let station = sample_station_json();
    let mut edited = station.clone();
    edited["power_cap_kw"] = json!(null);
    edited["name"] = json!("North gate (P2)");
    let (endpoint, requests, server) =
        serve(vec![(200, station.to_string()), (200, edited.to_string())]);
    let text = run_at(
        &endpoint,
        Some("t"),
        &[
            "stations",
            "edit",
            "3",
            "--name",
            "North gate (P2)",
            "--no-power-cap",
        ],
    )
    .unwrap();
    assert!(text.starts_with("Station 3 updated.\n"), "{text}");
    assert!(text.contains("power cap:   none\n"), "{text}");
    assert!(requests
        .recv()
        .unwrap()
        .head
        .starts_with("GET /v1/stations/3 HTTP/1.1"));
    let put = requests.recv().unwrap();
    assert!(
        put.head.starts_with("PUT /v1/stations/3 HTTP/1.1"),
        "{}",
        put.head
    );
    assert_eq!(
        put.json(),
        json!({"name": "North gate (P2)", "address": "1 Main St", "latitude": 31.2304,
               "longitude": 121.4737, "utc_offset_minutes": 480, "power_cap_kw": null})
    );
    server.join().unwrap();

    // Nothing to change: refused before any request (the endpoint refuses connections).
    let err = run_at(&refused_endpoint(), Some("t"), &["stations", "edit", "3"]).unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert!(
        err.to_string().starts_with("give something to change"),
        "{err}"
    );
}

#[test]
fn tariff_and_add_pile_send_what_the_api_takes() {
    let assignment = json!({"station_id": 3, "tariff_id": 2, "valid_from": 1_714_550_400_000i64,
                            "pushed_to": ["32010200000001"]});
    let (endpoint, requests, server) = serve(vec![
        (200, assignment.to_string()),
        (200, assignment.to_string()),
        (200, sample_station_json().to_string()),
    ]);
    let text = run_at(
        &endpoint,
        Some("t"),
        &["stations", "tariff", "3", "--tariff", "2"],
    )
    .unwrap();
    assert!(
        text.contains("Sent as the billing model to 1 connected pile"),
        "{text}"
    );
    let seen = requests.recv().unwrap();
    assert!(
        seen.head.starts_with("POST /v1/stations/3/tariff HTTP/1.1"),
        "{}",
        seen.head
    );
    assert_eq!(seen.json(), json!({"tariff_id": 2, "valid_from": null}));

    let text = run_at(
        &endpoint,
        Some("t"),
        &[
            "stations",
            "tariff",
            "3",
            "--tariff",
            "2",
            "--from",
            "2999-01-01T00:00:00+08:00",
        ],
    )
    .unwrap();
    assert!(text.contains("It is not in force yet"), "{text}");
    assert_eq!(
        requests.recv().unwrap().json(),
        json!({"tariff_id": 2, "valid_from": 32_472_115_200_000i64})
    );

    let text = run_at(&endpoint, Some("t"), &["stations", "add-pile", "3", PILE]).unwrap();
    assert!(
        text.starts_with("Pile 32010200000001 is at station 3 (North gate) now"),
        "{text}"
    );
    let seen = requests.recv().unwrap();
    assert!(
        seen.head
            .starts_with("PUT /v1/piles/32010200000001/station HTTP/1.1"),
        "{}",
        seen.head
    );
    assert_eq!(seen.json(), json!({"station_id": 3}));
    server.join().unwrap();

    let err = run_at(
        &refused_endpoint(),
        Some("t"),
        &["stations", "add-pile", "3", "123"],
    )
    .unwrap_err();
    assert_eq!(err.exit_code(), 2);
}

#[test]
fn station_errors_are_explained() {
    let (endpoint, _requests, server) = serve(vec![
        (404, api_error("no_such_station", "no station 9")),
        (
            404,
            api_error(
                "no_such_pile_or_station",
                "no pile 32010200000001 or no station 9",
            ),
        ),
        (
            404,
            api_error("no_such_station_or_tariff", "no station 9 or no tariff 2"),
        ),
        (400, api_error("bad_station", "a station needs a name")),
        (200, json!([sample_station_json()]).to_string()),
    ]);
    let fail = |args: &[&str]| {
        let err = run_at(&endpoint, Some("t"), args).unwrap_err();
        (err.exit_code(), err.to_string())
    };
    assert_eq!(
        fail(&["stations", "show", "9"]),
        (
            1,
            "there is no station 9; `pylonctl stations list` lists the stations, `pylonctl \
             stations add --name NAME` adds one"
                .into()
        )
    );
    let (code, msg) = fail(&["stations", "add-pile", "9", PILE]);
    assert_eq!(code, 1);
    assert!(
        msg.starts_with("no pile 32010200000001 or no station 9: `pylonctl piles show"),
        "{msg}"
    );
    let (_, msg) = fail(&["stations", "tariff", "9", "--tariff", "2"]);
    assert!(msg.contains("`pylonctl tariffs show 2`"), "{msg}");
    assert_eq!(
        fail(&["stations", "add", "--name", "X"]),
        (2, "a station needs a name (bad_station, HTTP 400)".into())
    );
    let text = run_at(&endpoint, Some("t"), &["stations", "list"]).unwrap();
    assert!(text.starts_with("ID  NAME        PILES"), "{text}");
    server.join().unwrap();
}

/// Runs `pylonctl <args>` against the app service at `endpoint`: its result, and what it
/// printed (also when it failed).
fn run_printing(endpoint: &str, args: &[&str]) -> (Result<(), Failure>, String) {
    let env = |k: &str| match k {
        crate::config::ENV_APP_ENDPOINT => Some(endpoint.to_owned()),
        crate::config::ENV_TOKEN => Some("s3cret".to_owned()),
        _ => None,
    };
    let cli = Cli::try_parse_from(std::iter::once("pylonctl").chain(args.iter().copied()))
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    let Command::Ops(cmd) = cli.command else {
        panic!("not an operator command");
    };
    let mut out = Vec::new();
    let result = crate::commands::run(cmd, &env, &mut out);
    (result, String::from_utf8(out).unwrap())
}

#[test]
fn offline_cards_posts_nothing_and_prints_each_pile() {
    let synced = json!([
        {"pile": "32010200000001", "cards": 13, "stored": true},
        {"pile": "32010200000002", "cards": 13, "stored": true}
    ]);
    let (endpoint, requests, server) = serve(vec![
        (200, synced.to_string()),
        (200, synced.to_string()),
        (200, "[]".into()),
    ]);
    let (result, text) = run_printing(&endpoint, &["stations", "offline-cards", "3"]);
    result.unwrap();
    assert_eq!(
        text,
        "\
PILE            CARDS SENT  STORED
32010200000001  13          yes
32010200000002  13          yes

All 2 connected piles of station 3 stored the offline cards.
"
    );
    let seen = requests.recv().unwrap();
    assert!(
        seen.head
            .starts_with("POST /v1/stations/3/offline-cards HTTP/1.1"),
        "{}",
        seen.head
    );
    assert!(
        seen.head
            .to_ascii_lowercase()
            .contains("authorization: bearer s3cret"),
        "{}",
        seen.head
    );
    assert_eq!(seen.body, "");

    let (result, text) = run_printing(&endpoint, &["stations", "offline-cards", "3", "-o", "json"]);
    result.unwrap();
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), synced);
    requests.recv().unwrap();

    // No pile connected: said plainly, and not a failure.
    let (result, text) = run_printing(&endpoint, &["stations", "offline-cards", "4"]);
    result.unwrap();
    assert!(
        text.starts_with("No pile of station 4 is connected, so no offline cards were sent."),
        "{text}"
    );
    assert!(requests
        .recv()
        .unwrap()
        .head
        .starts_with("POST /v1/stations/4/offline-cards HTTP/1.1"));
    server.join().unwrap();
}

#[test]
fn offline_cards_fail_after_printing_when_a_pile_did_not_store_them() {
    let synced = json!([
        {"pile": "32010200000001", "cards": 25, "stored": true},
        {"pile": "32010200000002", "cards": 25, "stored": false},
        {"pile": "32010200000003", "cards": 25, "stored": false}
    ]);
    let (endpoint, requests, server) =
        serve(vec![(200, synced.to_string()), (200, synced.to_string())]);
    let (result, text) = run_printing(&endpoint, &["stations", "offline-cards", "3"]);
    let err = result.unwrap_err();
    assert_eq!(err.exit_code(), 1);
    assert_eq!(
        err.to_string(),
        "2 piles of station 3 did not store the offline cards: 32010200000002, \
         32010200000003; run `pylonctl stations offline-cards 3` again once they are online"
    );
    assert!(text.contains("32010200000002  25          no\n"), "{text}");
    assert!(
        text.ends_with(
            "Not stored by 2 of 3 connected piles (refused, or no answer in time): \
             32010200000002, 32010200000003\n"
        ),
        "{text}"
    );
    requests.recv().unwrap();

    let (result, text) = run_printing(&endpoint, &["stations", "offline-cards", "3", "-o", "json"]);
    assert_eq!(result.unwrap_err().exit_code(), 1);
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), synced);
    requests.recv().unwrap();
    server.join().unwrap();
}

#[test]
fn offline_card_errors_are_explained() {
    let (endpoint, _requests, server) = serve(vec![
        (404, api_error("no_such_station", "no station 9")),
        (
            503,
            api_error(
                "card_keys_missing",
                "no card key file is configured (start pylon-app with --card-keys)",
            ),
        ),
        (500, api_error("sync_failed", "store: database is locked")),
        (200, "{\"not\": \"a list\"}".into()),
    ]);
    let fail = |args: &[&str]| {
        let err = run_at(&endpoint, Some("t"), args).unwrap_err();
        (err.exit_code(), err.to_string())
    };
    assert_eq!(
        fail(&["stations", "offline-cards", "9"]),
        (
            1,
            "there is no station 9; `pylonctl stations list` lists the stations, `pylonctl \
             stations add --name NAME` adds one"
                .into()
        )
    );
    let (code, msg) = fail(&["stations", "offline-cards", "3"]);
    assert_eq!(code, 1);
    assert!(
        msg.starts_with("the app service cannot store or look up card numbers and VINs"),
        "{msg}"
    );
    assert!(
        msg.ends_with("Start pylon-app with --card-keys FILE"),
        "{msg}"
    );
    assert_eq!(
        fail(&["stations", "offline-cards", "3"]),
        (
            1,
            "the app service could not send the offline cards of station 3: store: database \
             is locked. Check pylon-app's log, then try again (`pylonctl stations \
             offline-cards 3`)"
                .into()
        )
    );
    let (code, msg) = fail(&["stations", "offline-cards", "3"]);
    assert_eq!(code, 1);
    assert!(msg.contains("/v1/stations/3/offline-cards"), "{msg}");
    server.join().unwrap();

    let err = run_at(
        &refused_endpoint(),
        Some("t"),
        &["stations", "offline-cards", "3"],
    )
    .unwrap_err();
    assert_eq!(err.exit_code(), 3);
}
