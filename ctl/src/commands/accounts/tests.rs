use clap::Parser;
use serde_json::json;

use super::*;
use crate::cli::{Cli, Command};
use crate::client::tests::refused_endpoint;
use crate::commands::business::tests::{api_error, run_at, serve};
use crate::commands::OpsCommand;
use crate::render::accounts::tests::{sample_account_json, sample_ledger_json};

const CARD: &str = "d14b0a54c3";
const LOGICAL: &str = "1000000000000001";

fn parse(args: &[&str]) -> Result<AccountsCommand, clap::Error> {
    let cli = Cli::try_parse_from(std::iter::once("pylonctl").chain(args.iter().copied()))?;
    match cli.command {
        Command::Ops(OpsCommand::Accounts(a)) => Ok(a.command),
        other => panic!("{args:?} parsed as {other:?}"),
    }
}

fn parsed(args: &[&str]) -> AccountsCommand {
    parse(args).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

#[test]
fn amounts_are_yuan_and_only_adjust_goes_negative() {
    let money = |id, amount, reason: &str| MoneyArgs {
        account: AccountId { id },
        amount,
        reason: reason.into(),
    };
    assert_eq!(
        parsed(&["accounts", "top-up", "7", "--amount", "50.5", "--reason", " bank "]),
        AccountsCommand::TopUp(money(7, 5050, "bank"))
    );
    assert_eq!(
        parsed(&["accounts", "refund", "7", "--amount", "0.01", "--reason", "x"]),
        AccountsCommand::Refund(money(7, 1, "x"))
    );
    assert_eq!(
        parsed(&["accounts", "adjust", "7", "--amount", "-5", "--reason", "typo"]),
        AccountsCommand::Adjust(AdjustArgs {
            account: AccountId { id: 7 },
            amount: -500,
            reason: "typo".into()
        })
    );
    assert_eq!(
        parsed(&[
            "accounts",
            "add",
            "--name",
            "Fleet A",
            "--station",
            "3",
            "--station",
            "4"
        ]),
        AccountsCommand::Add {
            name: "Fleet A".into(),
            stations: vec![3, 4]
        }
    );
    assert_eq!(
        parsed(&["accounts", "list", "--after", "100", "--limit", "5"]),
        AccountsCommand::List {
            after: Some(100),
            limit: 5
        }
    );
    assert_eq!(
        parsed(&["accounts", "ledger", "7"]),
        AccountsCommand::Ledger {
            account: AccountId { id: 7 },
            limit: 100
        }
    );
    for bad in [
        &["accounts", "top-up", "7", "--amount", "-5", "--reason", "x"][..],
        &["accounts", "top-up", "7", "--amount", "0", "--reason", "x"],
        &[
            "accounts", "top-up", "7", "--amount", "1.234", "--reason", "x",
        ],
        &["accounts", "top-up", "7", "--amount", "5"],
        &["accounts", "top-up", "7", "--amount", "5", "--reason", " "],
        &["accounts", "refund", "7", "--amount", "-1", "--reason", "x"],
        &["accounts", "adjust", "7", "--amount", "0", "--reason", "x"],
        &[
            "accounts", "adjust", "7", "--amount", "-0.001", "--reason", "x",
        ],
        &["accounts", "adjust", "0", "--amount", "1", "--reason", "x"],
        &["accounts", "add"],
        &["accounts", "add", "--name", "X", "--station", "0"],
        &["accounts", "ledger", "7", "--limit", "0"],
        &["accounts", "card-add", "7", "--card", CARD],
        &["accounts", "vin-add", "7"],
        &["accounts", "vin-remove", "7"],
        &["accounts", "card-remove", "7"],
        &["accounts", "freeze"],
        &["accounts", "edit", "0", "--name", "X"],
        &["accounts", "edit", "7", "--name", " "],
        &["accounts", "edit", "7", "--station", "0"],
        &["accounts", "edit", "7", "--station", "3", "--all-stations"],
    ] {
        assert!(parse(bad).is_err(), "{bad:?} parsed");
    }
    let err = parse(&["accounts", "top-up", "7", "--amount", "-5", "--reason", "x"]).unwrap_err();
    assert!(err.to_string().contains("negative"), "{err}");
}

#[test]
fn cards_and_vins_are_checked_without_showing_them() {
    assert_eq!(parse_card(" 00d14b0a54 ").unwrap(), "D14B0A54");
    assert_eq!(parse_card("0000").unwrap(), "0");
    assert_eq!(parse_logical(LOGICAL).unwrap(), LOGICAL);
    assert_eq!(parse_vin("lsvau2180n2183294").unwrap(), "LSVAU2180N2183294");
    for (err, secret) in [
        (parse_card("D14B0A54XYZ").unwrap_err(), "D14B0A54XYZ"),
        (
            parse_card("D14B0A54C3D2E1F0A").unwrap_err(),
            "D14B0A54C3D2E1F0A",
        ),
        (
            parse_logical("10000000000000019").unwrap_err(),
            "10000000000000019",
        ),
        (parse_logical("1000-0000").unwrap_err(), "1000-0000"),
        (
            parse_vin("LSVAU2180N218329").unwrap_err(),
            "LSVAU2180N218329",
        ),
    ] {
        assert_eq!(err.exit_code(), 2);
        let msg = err.to_string();
        assert!(!msg.contains(secret), "{msg}");
        assert!(msg.contains(&format!("{}****", &secret[..4])), "{msg}");
    }
}

#[test]
fn money_movements_post_fen_and_print_the_wallet() {
    let account = sample_account_json();
    let (endpoint, requests, server) = serve(vec![
        (200, account.to_string()),
        (200, account.to_string()),
        (200, account.to_string()),
    ]);
    let text = run_at(
        &endpoint,
        Some("t"),
        &[
            "accounts",
            "top-up",
            "7",
            "--amount",
            "200",
            "--reason",
            "bank transfer",
        ],
    )
    .unwrap();
    assert_eq!(
        text,
        "Topped up account 7 by 200.00 yuan: balance 62.50 yuan, on hold 20.00 yuan.\n"
    );
    let seen = requests.recv().unwrap();
    assert!(
        seen.head.starts_with("POST /v1/accounts/7/top-up HTTP/1.1"),
        "{}",
        seen.head
    );
    assert_eq!(
        seen.json(),
        json!({"amount": 20_000, "reason": "bank transfer"})
    );

    let text = run_at(
        &endpoint,
        Some("t"),
        &[
            "accounts", "adjust", "7", "--amount", "-0.30", "--reason", "rounding",
        ],
    )
    .unwrap();
    assert!(
        text.starts_with("Adjusted account 7 by -0.30 yuan:"),
        "{text}"
    );
    let seen = requests.recv().unwrap();
    assert!(
        seen.head.starts_with("POST /v1/accounts/7/adjust HTTP/1.1"),
        "{}",
        seen.head
    );
    assert_eq!(seen.json(), json!({"amount": -30, "reason": "rounding"}));

    let json = run_at(
        &endpoint,
        Some("t"),
        &[
            "accounts", "refund", "7", "--amount", "1", "--reason", "r", "-o", "json",
        ],
    )
    .unwrap();
    assert_eq!(serde_json::from_str::<Value>(&json).unwrap(), account);
    let seen = requests.recv().unwrap();
    assert!(
        seen.head.starts_with("POST /v1/accounts/7/refund HTTP/1.1"),
        "{}",
        seen.head
    );
    assert_eq!(seen.json(), json!({"amount": 100, "reason": "r"}));
    server.join().unwrap();
}

#[test]
fn state_ledger_list_and_add_use_their_routes() {
    let mut frozen = sample_account_json();
    frozen["state"] = json!("frozen");
    let (endpoint, requests, server) = serve(vec![
        (200, frozen.to_string()),
        (200, json!([sample_ledger_json()]).to_string()),
        (200, json!([sample_account_json()]).to_string()),
        (201, sample_account_json().to_string()),
        (200, sample_account_json().to_string()),
    ]);
    let text = run_at(&endpoint, Some("t"), &["accounts", "freeze", "7"]).unwrap();
    assert!(text.starts_with("Account 7 is frozen"), "{text}");
    let seen = requests.recv().unwrap();
    assert!(
        seen.head.starts_with("POST /v1/accounts/7/freeze HTTP/1.1"),
        "{}",
        seen.head
    );
    assert_eq!(seen.body, "");

    let text = run_at(
        &endpoint,
        Some("t"),
        &["accounts", "ledger", "7", "--limit", "20"],
    )
    .unwrap();
    assert!(text.starts_with("AT "), "{text}");
    assert!(requests
        .recv()
        .unwrap()
        .head
        .starts_with("GET /v1/accounts/7/ledger?limit=20 HTTP/1.1"));

    let text = run_at(&endpoint, Some("t"), &["accounts", "list", "--after", "6"]).unwrap();
    assert!(text.starts_with("ID  NAME"), "{text}");
    assert!(requests
        .recv()
        .unwrap()
        .head
        .starts_with("GET /v1/accounts?limit=100&after=6 HTTP/1.1"));

    let text = run_at(
        &endpoint,
        Some("t"),
        &["accounts", "add", "--name", "Fleet A", "--station", "3"],
    )
    .unwrap();
    assert!(
        text.starts_with("Account 7 added, with an empty wallet."),
        "{text}"
    );
    let seen = requests.recv().unwrap();
    assert!(
        seen.head.starts_with("POST /v1/accounts HTTP/1.1"),
        "{}",
        seen.head
    );
    assert_eq!(seen.json(), json!({"name": "Fleet A", "stations": [3]}));

    let text = run_at(&endpoint, Some("t"), &["accounts", "show", "7"]).unwrap();
    let typed: Account = serde_json::from_value(sample_account_json()).unwrap();
    assert_eq!(text, render::account(&typed));
    server.join().unwrap();
}

#[test]
fn cards_are_sent_in_full_but_only_shown_masked() {
    let account = sample_account_json();
    let (endpoint, requests, server) = serve(vec![
        (200, account.to_string()),
        (
            409,
            api_error("conflict", "card D14B**** belongs to account 3 already"),
        ),
        (200, account.to_string()),
        (404, "nothing here".into()),
        (200, "not json".into()),
        (200, account.to_string()),
    ]);
    let card_add = [
        "accounts",
        "card-add",
        "7",
        "--card",
        CARD,
        "--logical",
        LOGICAL,
        "--password",
        "hunter22",
    ];
    let text = run_at(&endpoint, Some("t"), &card_add).unwrap();
    assert_eq!(text, "Card D14B**** added to account 7 (1 card in all).\n");
    let seen = requests.recv().unwrap();
    assert!(
        seen.head.starts_with("POST /v1/accounts/7/cards HTTP/1.1"),
        "{}",
        seen.head
    );
    assert_eq!(
        seen.json(),
        json!({"physical": "D14B0A54C3", "logical": LOGICAL, "password": "hunter22"})
    );
    let err = run_at(&endpoint, Some("t"), &card_add).unwrap_err();
    assert_eq!(
        err.to_string(),
        "card D14B**** belongs to account 3 already (conflict)"
    );
    requests.recv().unwrap();

    let remove = ["accounts", "card-remove", "7", "--card", CARD];
    let text = run_at(&endpoint, Some("t"), &remove).unwrap();
    assert_eq!(
        text,
        "Card D14B**** removed from account 7 (1 card left).\n"
    );
    // The number travels in the body, whole; the URL does not name it.
    let seen = requests.recv().unwrap();
    assert!(
        seen.head
            .starts_with("POST /v1/accounts/7/cards/remove HTTP/1.1"),
        "{}",
        seen.head
    );
    assert!(
        !seen.head.to_ascii_uppercase().contains("D14B0A54"),
        "{}",
        seen.head
    );
    assert_eq!(seen.json(), json!({"physical": "D14B0A54C3"}));
    // The client's own messages name the path, which does not hold the card.
    for _ in 0..2 {
        let msg = run_at(&endpoint, Some("t"), &remove)
            .unwrap_err()
            .to_string();
        assert!(!msg.to_ascii_uppercase().contains("D14B0A54C3"), "{msg}");
        assert!(msg.contains("/v1/accounts/7/cards/remove"), "{msg}");
        requests.recv().unwrap();
    }

    let text = run_at(
        &endpoint,
        Some("t"),
        &["accounts", "vin-add", "7", "--vin", "lsvau2180n2183294"],
    )
    .unwrap();
    assert_eq!(text, "VIN LSVA**** added to account 7 (1 VIN in all).\n");
    assert_eq!(
        requests.recv().unwrap().json(),
        json!({"vin": "LSVAU2180N2183294"})
    );
    server.join().unwrap();

    // A bad card is refused before any request, masked.
    let err = run_at(
        &refused_endpoint(),
        Some("t"),
        &[
            "accounts",
            "card-add",
            "7",
            "--card",
            "D14B0A54ZZ",
            "--logical",
            LOGICAL,
        ],
    )
    .unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert!(!err.to_string().contains("D14B0A54ZZ"), "{err}");
}

#[test]
fn account_errors_are_explained() {
    let (endpoint, _requests, server) = serve(vec![
        (404, api_error("no_such_account", "no account 9")),
        (
            503,
            api_error(
                "card_keys_missing",
                "no card key file is configured (start pylon-app with --card-keys)",
            ),
        ),
        (400, api_error("bad_money", "say why (reason)")),
        (
            404,
            api_error("no_such_card", "account 7 has no card D14B****"),
        ),
        (
            404,
            api_error("no_such_card", "account 7 has no card d14b0a54c3"),
        ),
        (
            404,
            api_error("no_such_vin", "account 7 has no VIN LSVAU2180N2183294"),
        ),
        (404, api_error("no_such_account", "no account 9")),
    ]);
    let fail = |args: &[&str]| {
        let err = run_at(&endpoint, Some("t"), args).unwrap_err();
        (err.exit_code(), err.to_string())
    };
    assert_eq!(
        fail(&["accounts", "freeze", "9"]),
        (
            1,
            "there is no account 9; `pylonctl accounts list` lists the accounts, `pylonctl \
             accounts add --name NAME` adds one"
                .into()
        )
    );
    let (code, msg) = fail(&["accounts", "vin-add", "7", "--vin", "LSVAU2180N2183294"]);
    assert_eq!(code, 1);
    assert!(
        msg.starts_with("the app service cannot store or look up card numbers and VINs"),
        "{msg}"
    );
    assert!(
        msg.ends_with("Start pylon-app with --card-keys FILE"),
        "{msg}"
    );
    let (code, _) = fail(&["accounts", "top-up", "7", "--amount", "1", "--reason", "x"]);
    assert_eq!(code, 2);
    assert_eq!(
        fail(&["accounts", "card-remove", "7", "--card", CARD]),
        (
            1,
            "account 7 has no card D14B****; `pylonctl accounts show 7` lists its cards \
             (masked)"
                .into()
        )
    );
    // Should the service quote a number whole, pylonctl masks it.
    let (code, msg) = fail(&["accounts", "card-remove", "7", "--card", CARD]);
    assert_eq!(code, 1);
    assert!(!msg.to_ascii_uppercase().contains("D14B0A54C3"), "{msg}");
    assert!(msg.starts_with("account 7 has no card d14b****;"), "{msg}");
    assert_eq!(
        fail(&["accounts", "vin-remove", "7", "--vin", "lsvau2180n2183294"]),
        (
            1,
            "account 7 has no VIN LSVA****; `pylonctl accounts show 7` lists its VINs \
             (masked)"
                .into()
        )
    );
    assert_eq!(
        fail(&["accounts", "edit", "9", "--name", "X"]),
        (
            1,
            "there is no account 9; `pylonctl accounts list` lists the accounts, `pylonctl \
             accounts add --name NAME` adds one"
                .into()
        )
    );
    server.join().unwrap();
}

#[test]
fn edit_changes_only_what_is_given() {
    let current: Account = serde_json::from_value(sample_account_json()).unwrap();
    let edit = |args: &[&str]| match parsed(args) {
        AccountsCommand::Edit(e) => e,
        other => panic!("{args:?} parsed as {other:?}"),
    };
    let rename = edit(&["accounts", "edit", "7", "--name", " Fleet B "]);
    assert_eq!(
        rename,
        AccountEditArgs {
            account: AccountId { id: 7 },
            name: Some("Fleet B".into()),
            stations: vec![],
            all_stations: false,
        }
    );
    assert_eq!(
        rename.apply(&current),
        AccountInput {
            name: "Fleet B".into(),
            stations: vec![3, 4]
        }
    );
    assert_eq!(
        edit(&["accounts", "edit", "7", "--station", "5", "--station", "6"]).apply(&current),
        AccountInput {
            name: "Fleet A".into(),
            stations: vec![5, 6]
        }
    );
    assert_eq!(
        edit(&["accounts", "edit", "7", "--all-stations"]).apply(&current),
        AccountInput {
            name: "Fleet A".into(),
            stations: vec![]
        }
    );
    assert!(edit(&["accounts", "edit", "7"]).changes_nothing());
    assert!(!rename.changes_nothing());
    assert!(!edit(&["accounts", "edit", "7", "--all-stations"]).changes_nothing());
    assert!(!edit(&["accounts", "edit", "7", "--station", "3"]).changes_nothing());
}

#[test]
fn edit_reads_the_account_and_puts_it_back_changed() {
    let account = sample_account_json();
    let mut edited = account.clone();
    edited["name"] = json!("Fleet B");
    edited["stations"] = json!([]);
    let (endpoint, requests, server) = serve(vec![
        (200, account.to_string()),
        (200, edited.to_string()),
        (200, account.to_string()),
        (200, account.to_string()),
        (200, account.to_string()),
        (400, api_error("bad_account", "an account needs a name")),
        (200, account.to_string()),
        (404, api_error("no_such_account", "no account 7")),
    ]);
    let text = run_at(
        &endpoint,
        Some("t"),
        &[
            "accounts",
            "edit",
            "7",
            "--name",
            "Fleet B",
            "--all-stations",
        ],
    )
    .unwrap();
    let typed: Account = serde_json::from_value(edited.clone()).unwrap();
    assert_eq!(
        text,
        format!("Account 7 updated.\n\n{}", render::account(&typed))
    );
    assert!(text.contains("stations:  all\n"), "{text}");
    let get = requests.recv().unwrap();
    assert!(
        get.head.starts_with("GET /v1/accounts/7 HTTP/1.1"),
        "{}",
        get.head
    );
    let put = requests.recv().unwrap();
    assert!(
        put.head.starts_with("PUT /v1/accounts/7 HTTP/1.1"),
        "{}",
        put.head
    );
    assert_eq!(put.json(), json!({"name": "Fleet B", "stations": []}));

    // --station replaces the list; the name stays; -o json prints the reply as it is.
    let json = run_at(
        &endpoint,
        Some("t"),
        &["accounts", "edit", "7", "--station", "5", "-o", "json"],
    )
    .unwrap();
    assert_eq!(serde_json::from_str::<Value>(&json).unwrap(), account);
    requests.recv().unwrap();
    assert_eq!(
        requests.recv().unwrap().json(),
        json!({"name": "Fleet A", "stations": [5]})
    );

    // The service refuses the input: its message, exit status 2.
    let err = run_at(
        &endpoint,
        Some("t"),
        &["accounts", "edit", "7", "--name", "X"],
    )
    .unwrap_err();
    assert_eq!(err.exit_code(), 2, "{err}");
    assert!(err.to_string().contains("an account needs a name"), "{err}");
    requests.recv().unwrap();
    assert_eq!(
        requests.recv().unwrap().json(),
        json!({"name": "X", "stations": [3, 4]})
    );

    // Gone between the read and the write.
    let err = run_at(
        &endpoint,
        Some("t"),
        &["accounts", "edit", "7", "--name", "X"],
    )
    .unwrap_err();
    assert!(
        err.to_string().starts_with("there is no account 7;"),
        "{err}"
    );
    requests.recv().unwrap();
    requests.recv().unwrap();
    server.join().unwrap();

    // Nothing to change: refused before any request (the endpoint refuses connections).
    let err = run_at(&refused_endpoint(), Some("t"), &["accounts", "edit", "7"]).unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert!(
        err.to_string().starts_with("give something to change"),
        "{err}"
    );
}

#[test]
fn vin_remove_sends_the_vin_in_the_body_and_shows_it_masked() {
    let mut account = sample_account_json();
    account["vins"] = json!([]);
    let (endpoint, requests, server) = serve(vec![(200, account.to_string())]);
    let text = run_at(
        &endpoint,
        Some("t"),
        &[
            "accounts",
            "vin-remove",
            "7",
            "--vin",
            " lsvau2180n2183294 ",
        ],
    )
    .unwrap();
    assert_eq!(text, "VIN LSVA**** removed from account 7 (0 VINs left).\n");
    let seen = requests.recv().unwrap();
    assert!(
        seen.head
            .starts_with("POST /v1/accounts/7/vins/remove HTTP/1.1"),
        "{}",
        seen.head
    );
    assert_eq!(seen.json(), json!({"vin": "LSVAU2180N2183294"}));
    server.join().unwrap();

    // A bad VIN is refused before any request, masked.
    let err = run_at(
        &refused_endpoint(),
        Some("t"),
        &["accounts", "vin-remove", "7", "--vin", "LSVAU2180N218329"],
    )
    .unwrap_err();
    assert_eq!(err.exit_code(), 2);
    let msg = err.to_string();
    assert!(!msg.contains("LSVAU2180N218329"), "{msg}");
    assert!(msg.contains("LSVA****"), "{msg}");
}
