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
