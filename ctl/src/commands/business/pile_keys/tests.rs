use std::collections::HashMap;

use clap::Parser;
use pylon_proto::api::app::PileCipherState;
use serde_json::json;

use super::*;
use crate::cli::{Cli, Command};
use crate::client::tests::refused_endpoint;
use crate::commands::business::tests::{api_error, serve};
use crate::commands::identity::password::tests::FakeConsole;
use crate::commands::{run_with_console, OpsCommand};
use crate::config;

const PILE: &str = "32010200000001";
const KEY: &str = "0123456789ABCDEFFEDCBA98765432100011223344556677";
const KEY_LOWER: &str = "0123456789abcdeffedcba98765432100011223344556677";

fn parse(args: &[&str]) -> Result<OpsCommand, clap::Error> {
    let cli = Cli::try_parse_from(std::iter::once("pylonctl").chain(args.iter().copied()))?;
    match cli.command {
        Command::Ops(cmd) => Ok(cmd),
        other => panic!("{args:?} parsed as {other:?}"),
    }
}

fn keys(args: &[&str]) -> PileKeysCommand {
    match parse(args).unwrap_or_else(|e| panic!("{args:?}: {e}")) {
        OpsCommand::Piles(a) => match a.command {
            super::super::PilesCommand::Keys(cmd) => cmd,
            other => panic!("{args:?} parsed as {other:?}"),
        },
        other => panic!("{args:?} parsed as {other:?}"),
    }
}

/// Runs `pylonctl <args>` with the app service at `endpoint`, `console` as stdin and
/// terminal, the token `s3cret` and no config file.
fn run_at(endpoint: &str, console: &mut FakeConsole, args: &[&str]) -> Result<String, Failure> {
    let env: HashMap<String, String> = [
        (config::ENV_APP_ENDPOINT.to_string(), endpoint.to_string()),
        (
            config::ENV_ENDPOINT.to_string(),
            "ftp://not-used".to_string(),
        ),
        (config::ENV_TOKEN.to_string(), "s3cret".to_string()),
    ]
    .into();
    let cmd = parse(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
    let mut out = Vec::new();
    run_with_console(cmd, &|k| env.get(k).cloned(), console, &mut out)?;
    Ok(String::from_utf8(out).unwrap())
}

#[test]
fn every_keys_command_parses_and_no_key_is_taken_from_a_flag() {
    assert_eq!(
        keys(&["piles", "keys", "show", PILE]),
        PileKeysCommand::Show { pile: PILE.into() }
    );
    assert_eq!(
        keys(&["piles", "keys", "set", PILE]),
        PileKeysCommand::Set {
            pile: PILE.into(),
            mode: None,
            iv: None,
            padding: None,
            key_stdin: false,
        }
    );
    assert_eq!(
        keys(&[
            "piles",
            "keys",
            "set",
            PILE,
            "--mode",
            "cbc",
            "--iv",
            "00010203040506A7",
            "--padding",
            "zero",
            "--key-stdin",
            "-o",
            "json",
        ]),
        PileKeysCommand::Set {
            pile: PILE.into(),
            mode: Some(ModeArg::Cbc),
            iv: Some([0, 1, 2, 3, 4, 5, 6, 0xa7]),
            padding: Some(PaddingArg::Zero),
            key_stdin: true,
        }
    );
    assert_eq!(
        keys(&[
            "piles",
            "--app-endpoint",
            "http://a:7510",
            "keys",
            "rotate",
            PILE,
            "--mode",
            "ecb"
        ]),
        PileKeysCommand::Rotate {
            pile: PILE.into(),
            mode: Some(ModeArg::Ecb),
            iv: None,
            padding: None,
        }
    );
    assert_eq!(
        keys(&["piles", "keys", "remove", PILE]),
        PileKeysCommand::Remove { pile: PILE.into() }
    );
    for bad in [
        &["piles", "keys"][..],
        &["piles", "keys", "show"],
        &["piles", "keys", "set", PILE, KEY],
        &["piles", "keys", "set", PILE, "--key", KEY],
        &["piles", "keys", "set", PILE, "--key-stdin", KEY],
        &["piles", "keys", "set", PILE, "--mode", "ofb"],
        &["piles", "keys", "set", PILE, "--padding", "none"],
        &[
            "piles",
            "keys",
            "set",
            PILE,
            "--mode",
            "cbc",
            "--iv",
            "0001020304",
        ],
        &["piles", "keys", "rotate", PILE, "--iv", "000102030405060g"],
        &["piles", "keys", "rotate", PILE, "--key-stdin"],
        &["piles", "keys", "remove"],
    ] {
        assert!(parse(bad).is_err(), "{bad:?} parsed");
    }
    let err = parse(&["piles", "keys", "set", PILE, "--iv", "0001"]).unwrap_err();
    assert!(err.to_string().contains("16 hex digits"), "{err}");
}

#[test]
fn keys_are_48_hex_digits_and_errors_never_quote_them() {
    let want: [u8; 24] = hex::decode(KEY_LOWER).unwrap().try_into().unwrap();
    assert_eq!(parse_key(KEY).unwrap(), want);
    assert_eq!(parse_key(&format!("  {KEY_LOWER}\t")).unwrap(), want);
    for (bad, why) in [
        ("", "it is empty"),
        (
            &KEY[..32],
            "it has 32 hex digits, a two-key 3DES key (K1 K2)",
        ),
        (&KEY[..46], "it has 46 hex digits"),
        (format!("{KEY}00").as_str(), "it has 50 hex digits"),
        (
            format!("{}x{}", &KEY[..20], &KEY[21..]).as_str(),
            "character 21 of it is not a hex digit",
        ),
        (
            KEY.replace('A', " ").as_str(),
            "character 11 of it is not a hex digit",
        ),
        (
            format!("0x{}", &KEY[2..]).as_str(),
            "character 2 of it is not a hex digit",
        ),
    ] {
        let err = parse_key(bad).unwrap_err();
        assert_eq!(err.exit_code(), 2, "{bad:?}");
        let text = err.to_string();
        assert!(text.contains(why), "{bad:?}: {text}");
        assert!(text.ends_with("Nothing was sent"), "{text}");
        assert!(!text.contains(&KEY[..8]), "the key leaked: {text}");
    }
    assert_eq!(parse_iv("0001020304050607"), Ok([0, 1, 2, 3, 4, 5, 6, 7]));
    assert!(parse_iv("00010203040506")
        .unwrap_err()
        .contains("it has 14 digits"));
    assert!(parse_iv("zz01020304050607")
        .unwrap_err()
        .contains("not all hex digits"));
}

#[test]
fn set_puts_the_key_from_stdin_with_the_settings() {
    let (endpoint, requests, server) = serve(vec![(204, String::new()), (204, String::new())]);
    let mut console = FakeConsole::piped(&format!("{KEY}\r\nignored\n"));
    let text = run_at(
        &endpoint,
        &mut console,
        &[
            "piles",
            "keys",
            "set",
            PILE,
            "--key-stdin",
            "--mode",
            "cbc",
            "--iv",
            "0001020304050607",
            "--padding",
            "zero",
        ],
    )
    .unwrap();
    assert!(console.prompts.is_empty());
    let seen = requests.recv().unwrap();
    assert!(
        seen.head
            .starts_with("PUT /v1/piles/32010200000001/cipher HTTP/1.1"),
        "{}",
        seen.head
    );
    let head = seen.head.to_ascii_lowercase();
    assert!(head.contains("authorization: bearer s3cret"), "{head}");
    assert!(head.contains("content-type: application/json"), "{head}");
    assert_eq!(
        seen.json(),
        json!({"key": KEY_LOWER, "mode": "cbc", "iv": "0001020304050607", "padding": "zero"})
    );
    let sent: PileCipher = serde_json::from_value(seen.json()).unwrap();
    assert_eq!(text, render::set(PILE, &sent));
    assert!(
        text.contains("3DES, CBC, zero padding, IV 0001020304050607"),
        "{text}"
    );
    assert!(!text.to_ascii_lowercase().contains(KEY_LOWER), "{text}");

    // The defaults: ECB with PKCS#7. JSON output prints nothing (there is no reply body).
    let mut console = FakeConsole::piped(KEY_LOWER);
    let text = run_at(
        &endpoint,
        &mut console,
        &["piles", "keys", "set", PILE, "--key-stdin", "-o", "json"],
    )
    .unwrap();
    assert_eq!(text, "");
    assert_eq!(
        requests.recv().unwrap().json(),
        json!({"key": KEY_LOWER, "mode": "ecb", "iv": "0000000000000000", "padding": "pkcs7"})
    );
    server.join().unwrap();
}

#[test]
fn set_at_a_terminal_asks_twice_without_echo() {
    let (endpoint, requests, server) = serve(vec![(204, String::new())]);
    // Typed once in capitals and once not: the same key.
    let mut console = FakeConsole::terminal(&[KEY, KEY_LOWER]);
    let text = run_at(&endpoint, &mut console, &["piles", "keys", "set", PILE]).unwrap();
    assert_eq!(
        console.prompts,
        [
            "3DES key for pile 32010200000001 (48 hex digits, not shown): ",
            "Type it again: "
        ]
    );
    assert_eq!(requests.recv().unwrap().json()["key"], KEY_LOWER);
    assert!(text.starts_with("Pile 32010200000001 has its key: 3DES, ECB, PKCS#7 padding.\n"));
    server.join().unwrap();
}

#[test]
fn set_refuses_a_bad_key_or_iv_before_sending_anything() {
    // Nothing listens there: a request would fail with exit status 3, not 2.
    let nowhere = refused_endpoint();
    let cases: Vec<(FakeConsole, Vec<&str>, &str)> = vec![
        (
            FakeConsole::piped(&format!("{}\n", &KEY[..32])),
            vec!["--key-stdin"],
            "it has 32 hex digits",
        ),
        (
            FakeConsole::piped(&format!("{}Z\n", &KEY[..47])),
            vec!["--key-stdin"],
            "character 48 of it is not a hex digit",
        ),
        (
            FakeConsole::piped(""),
            vec!["--key-stdin"],
            "--key-stdin: stdin is empty",
        ),
        (FakeConsole::piped("\n"), vec!["--key-stdin"], "it is empty"),
        (
            FakeConsole {
                stdin: vec![0xff, b'\n'],
                ..FakeConsole::default()
            },
            vec!["--key-stdin"],
            "not UTF-8",
        ),
        (
            FakeConsole::piped(&format!("{KEY}\n")),
            vec![],
            "no key: stdin is not a terminal",
        ),
        (
            FakeConsole::terminal(&[KEY, &KEY.replace('F', "E")]),
            vec![],
            "the two keys typed differ",
        ),
        (
            FakeConsole::terminal(&["not a key"]),
            vec![],
            "not a 3DES key",
        ),
        (
            FakeConsole::piped(&format!("{KEY}\n")),
            vec!["--key-stdin", "--mode", "cbc"],
            "--mode cbc needs the IV",
        ),
        (
            FakeConsole::piped(&format!("{KEY}\n")),
            vec!["--key-stdin", "--iv", "0001020304050607"],
            "--iv is for --mode cbc",
        ),
        (
            FakeConsole::piped(&format!("{KEY}\n")),
            vec!["--key-stdin", "--mode", "ecb", "--iv", "0001020304050607"],
            "ECB uses no IV",
        ),
    ];
    for (mut console, flags, why) in cases {
        let mut args = vec!["piles", "keys", "set", PILE];
        args.extend(flags);
        let err = run_at(&nowhere, &mut console, &args).unwrap_err();
        let text = err.to_string();
        assert_eq!(err.exit_code(), 2, "{args:?}: {text}");
        assert!(text.contains(why), "{args:?}: {text}");
        assert!(!text.contains(&KEY[..8]), "the key leaked: {text}");
    }
}

#[test]
fn rotate_prints_the_new_key_once_with_its_settings() {
    let new = json!({
        "key": "000102030405060708090a0b0c0d0e0f1011121314151617",
        "mode": "cbc",
        "iv": "a001020304050607",
        "padding": "pkcs7"
    });
    let (endpoint, requests, server) = serve(vec![(200, new.to_string()), (200, new.to_string())]);
    let text = run_at(
        &endpoint,
        &mut FakeConsole::default(),
        &[
            "piles",
            "keys",
            "rotate",
            PILE,
            "--mode",
            "cbc",
            "--iv",
            "A001020304050607",
        ],
    )
    .unwrap();
    let seen = requests.recv().unwrap();
    assert!(
        seen.head
            .starts_with("POST /v1/piles/32010200000001/cipher/rotate HTTP/1.1"),
        "{}",
        seen.head
    );
    assert_eq!(
        seen.json(),
        json!({"mode": "cbc", "iv": "a001020304050607"})
    );
    let cipher: PileCipher = serde_json::from_value(new.clone()).unwrap();
    assert_eq!(text, render::rotated(PILE, &cipher));
    assert!(
        text.contains("  key:          000102030405060708090a0b0c0d0e0f1011121314151617\n"),
        "{text}"
    );
    assert!(text.contains("IV:           a001020304050607"), "{text}");
    assert!(text.contains("It will not be shown again"), "{text}");

    // Settings not given are the app service's to choose (the pile's current ones);
    // -o json prints the reply as it came.
    let text = run_at(
        &endpoint,
        &mut FakeConsole::default(),
        &["piles", "keys", "rotate", PILE, "-o", "json"],
    )
    .unwrap();
    assert_eq!(requests.recv().unwrap().json(), json!({}));
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), new);
    server.join().unwrap();
}

#[test]
fn a_rotation_reply_pylonctl_cannot_read_is_still_printed() {
    let odd = json!({"key": "0011", "mode": "ecb"});
    let (endpoint, _requests, server) = serve(vec![(200, odd.to_string())]);
    let mut out = Vec::new();
    let env: HashMap<String, String> =
        [(config::ENV_APP_ENDPOINT.to_string(), endpoint.clone())].into();
    let cmd = parse(&["piles", "keys", "rotate", PILE]).unwrap();
    let err = run_with_console(
        cmd,
        &|k| env.get(k).cloned(),
        &mut FakeConsole::default(),
        &mut out,
    )
    .unwrap_err();
    assert!(err.to_string().contains("will not be shown again"), "{err}");
    let printed: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(printed, odd);
    server.join().unwrap();
}

#[test]
fn show_renders_the_state_and_never_a_key() {
    let state = json!({
        "pile_no": PILE,
        "configured": true,
        "mode": "cbc",
        "padding": "zero",
        "iv": "0001020304050607",
        "updated_at": 1_714_550_400_000i64
    });
    let none = json!({"pile_no": PILE, "configured": false});
    let (endpoint, requests, server) = serve(vec![
        (200, state.to_string()),
        (200, none.to_string()),
        (200, state.to_string()),
    ]);
    let text = run_at(
        &endpoint,
        &mut FakeConsole::default(),
        &["piles", "keys", "show", PILE],
    )
    .unwrap();
    let seen = requests.recv().unwrap();
    assert!(
        seen.head
            .starts_with("GET /v1/piles/32010200000001/cipher HTTP/1.1"),
        "{}",
        seen.head
    );
    let typed: PileCipherState = serde_json::from_value(state.clone()).unwrap();
    assert_eq!(text, render::state(&typed));
    for line in [
        "key configured:  yes\n",
        "mode:            CBC\n",
        "padding:         zero\n",
        "IV:              0001020304050607\n",
        "updated:         2024-05-01T08:00:00Z\n",
    ] {
        assert!(text.contains(line), "{line:?} in {text}");
    }

    let text = run_at(
        &endpoint,
        &mut FakeConsole::default(),
        &["piles", "keys", "show", PILE],
    )
    .unwrap();
    requests.recv().unwrap();
    assert!(text.contains("key configured:  no\n"), "{text}");

    let text = run_at(
        &endpoint,
        &mut FakeConsole::default(),
        &["piles", "keys", "show", PILE, "-o", "json"],
    )
    .unwrap();
    requests.recv().unwrap();
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), state);
    server.join().unwrap();
}

#[test]
fn remove_sends_delete() {
    let (endpoint, requests, server) = serve(vec![(204, String::new()), (204, String::new())]);
    let text = run_at(
        &endpoint,
        &mut FakeConsole::default(),
        &["piles", "keys", "remove", PILE],
    )
    .unwrap();
    let seen = requests.recv().unwrap();
    assert!(
        seen.head
            .starts_with("DELETE /v1/piles/32010200000001/cipher HTTP/1.1"),
        "{}",
        seen.head
    );
    assert!(seen.body.is_empty());
    assert_eq!(text, render::removed(PILE));
    let text = run_at(
        &endpoint,
        &mut FakeConsole::default(),
        &["piles", "keys", "remove", PILE, "-o", "json"],
    )
    .unwrap();
    assert_eq!(text, "");
    requests.recv().unwrap();
    server.join().unwrap();
}

#[test]
fn the_app_service_errors_say_what_to_do() {
    let (endpoint, _requests, server) = serve(vec![
        (
            409,
            api_error(
                "card_keys_missing",
                "pile keys are sealed with the card keys: start pylon-app with --card-keys",
            ),
        ),
        (
            404,
            api_error("no_such_pile", "pile 32010200000001 is not registered"),
        ),
        (
            403,
            api_error(
                "forbidden",
                "ana (viewer) may not do this: it needs the admin permission",
            ),
        ),
        (400, api_error("bad_body", &format!("odd key {KEY_LOWER}"))),
        (404, String::new()),
    ]);
    let stdin = || FakeConsole::piped(&format!("{KEY}\n"));
    let set = ["piles", "keys", "set", PILE, "--key-stdin"];

    let err = run_at(&endpoint, &mut stdin(), &set).unwrap_err();
    assert_eq!(err.exit_code(), 1);
    assert!(
        err.to_string()
            .contains("Start pylon-app with --card-keys FILE"),
        "{err}"
    );

    let err = run_at(&endpoint, &mut stdin(), &["piles", "keys", "remove", PILE]).unwrap_err();
    assert!(
        err.to_string()
            .contains("register it with `pylonctl piles add 32010200000001`"),
        "{err}"
    );

    let err = run_at(&endpoint, &mut stdin(), &["piles", "keys", "rotate", PILE]).unwrap_err();
    assert!(
        err.to_string()
            .contains("needs a token with the admin role"),
        "{err}"
    );

    // Should the app service quote the key in an error, pylonctl does not print it.
    let err = run_at(&endpoint, &mut stdin(), &set).unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert!(!err.to_string().contains(KEY_LOWER), "{err}");
    assert!(err.to_string().contains("odd key <the key>"), "{err}");

    let err = run_at(&endpoint, &mut stdin(), &["piles", "keys", "show", PILE]).unwrap_err();
    assert!(
        err.to_string().contains("a version without pile keys"),
        "{err}"
    );
    server.join().unwrap();
}
