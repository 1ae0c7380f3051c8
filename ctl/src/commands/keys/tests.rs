use clap::Parser;
use serde_json::json;

use super::*;
use crate::cli::{Cli, Command};
use crate::client::tests::refused_endpoint;
use crate::commands::business::tests::{api_error, run_at, serve};
use crate::commands::OpsCommand;

fn parse(args: &[&str]) -> Result<KeysArgs, clap::Error> {
    let cli = Cli::try_parse_from(std::iter::once("pylonctl").chain(args.iter().copied()))?;
    match cli.command {
        Command::Ops(OpsCommand::Keys(a)) => Ok(a),
        other => panic!("{args:?} parsed as {other:?}"),
    }
}

#[test]
fn keys_rotate_parses_with_the_app_service_options() {
    let args = parse(&["keys", "rotate"]).unwrap();
    assert_eq!(args.command, KeysCommand::Rotate);
    assert_eq!(args.connect, AppConnectOptions::default());
    let args = parse(&[
        "keys",
        "rotate",
        "--app-endpoint",
        "http://10.0.0.7:7510",
        "-o",
        "json",
    ])
    .unwrap();
    assert_eq!(
        args.connect.app_endpoint.as_deref(),
        Some("http://10.0.0.7:7510")
    );
    assert_eq!(args.connect.output, crate::commands::OutputFormat::Json);
    for bad in [
        &["keys"][..],
        &["keys", "rotate", "k2"],
        &["keys", "init"],
        &["keys", "rotate", "--key", "k2"],
    ] {
        assert!(parse(bad).is_err(), "{bad:?} parsed");
    }
}

#[test]
fn rotate_posts_nothing_and_says_what_was_sealed_again() {
    let rotation = json!({"key": "k2", "resealed": 2});
    let (endpoint, requests, server) = serve(vec![
        (200, rotation.to_string()),
        (200, rotation.to_string()),
    ]);
    let text = run_at(&endpoint, Some("s3cret"), &["keys", "rotate"]).unwrap();
    assert_eq!(
        text,
        "Card keys rotated: new values are sealed with key k2; 2 stored cards/VINs were \
         sealed again.\nBack up the card key file (pylon-app's --card-keys) now, apart from \
         the database's backups: without key k2, the stored card numbers and VINs cannot be \
         opened. Keep the older keys in it, for the backups taken before.\n"
    );
    let seen = requests.recv().unwrap();
    assert!(
        seen.head.starts_with("POST /v1/card-keys/rotate HTTP/1.1"),
        "{}",
        seen.head
    );
    let head = seen.head.to_ascii_lowercase();
    assert!(head.contains("authorization: bearer s3cret"), "{head}");
    assert_eq!(seen.body, "");

    let text = run_at(&endpoint, Some("s3cret"), &["keys", "rotate", "-o", "json"]).unwrap();
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), rotation);
    assert!(requests
        .recv()
        .unwrap()
        .head
        .starts_with("POST /v1/card-keys/rotate HTTP/1.1"));
    server.join().unwrap();
}

#[test]
fn rotation_errors_are_explained() {
    let (endpoint, _requests, server) = serve(vec![
        (
            503,
            api_error(
                "card_keys_missing",
                "no card key file is configured (start pylon-app with --card-keys)",
            ),
        ),
        (
            500,
            api_error(
                "key_file",
                "the card key file /etc/pylon/card-keys.toml: Permission denied (os error 13)",
            ),
        ),
        (
            500,
            api_error("store_error", "a sealed value does not open: damaged"),
        ),
        (401, api_error("unauthorized", "bad token")),
    ]);
    let fail = |args: &[&str]| {
        let err = run_at(&endpoint, Some("t"), args).unwrap_err();
        (err.exit_code(), err.to_string())
    };
    let (code, msg) = fail(&["keys", "rotate"]);
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
        fail(&["keys", "rotate"]),
        (
            1,
            "the app service could not add a new key to its card key file: the card key file \
             /etc/pylon/card-keys.toml: Permission denied (os error 13). No stored card number \
             or VIN was sealed again. Check that pylon-app can read and write the file it was \
             started with (--card-keys), then run `pylonctl keys rotate` again"
                .into()
        )
    );
    assert_eq!(
        fail(&["keys", "rotate"]),
        (
            1,
            "a new key was added to the card key file and is current (new values are sealed \
             with it), but sealing the stored card numbers and VINs again failed: a sealed \
             value does not open: damaged (store_error). They still open with their old keys, \
             which stay in the file. Back up the key file now, and run `pylonctl keys rotate` \
             again once the store works (check pylon-app's log and its store)"
                .into()
        )
    );
    let (code, _) = fail(&["keys", "rotate"]);
    assert_eq!(code, 1);
    server.join().unwrap();

    let err = run_at(&refused_endpoint(), Some("t"), &["keys", "rotate"]).unwrap_err();
    assert_eq!(err.exit_code(), 3);
}
