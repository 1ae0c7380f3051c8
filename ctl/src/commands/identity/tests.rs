use std::collections::HashMap;

use clap::Parser;
use pylon_proto::api::identity::TokenKind;
use serde_json::{json, Value};

use super::password::tests::FakeConsole;
use super::*;
use crate::cli::{Cli, Command};
use crate::client::tests::refused_endpoint;
use crate::commands::business::tests::{api_error, serve};
use crate::commands::{run_with_console, OpsCommand};
use crate::config;

fn parse(args: &[&str]) -> Result<OpsCommand, clap::Error> {
    let cli = Cli::try_parse_from(std::iter::once("pylonctl").chain(args.iter().copied()))?;
    match cli.command {
        Command::Ops(cmd) => Ok(cmd),
        other => panic!("{args:?} parsed as {other:?}"),
    }
}

fn users(args: &[&str]) -> UsersCommand {
    match parse(args).unwrap_or_else(|e| panic!("{args:?}: {e}")) {
        OpsCommand::Users(a) => a.command,
        other => panic!("{args:?} parsed as {other:?}"),
    }
}

fn tokens(args: &[&str]) -> TokensCommand {
    match parse(args).unwrap_or_else(|e| panic!("{args:?}: {e}")) {
        OpsCommand::Tokens(a) => a.command,
        other => panic!("{args:?} parsed as {other:?}"),
    }
}

/// Runs `pylonctl <args>` with the control plane at `endpoint` (through PYLON_ENDPOINT),
/// `console` as stdin and terminal, `USER=ana` and no config file.
fn run_at(
    endpoint: &str,
    token: Option<&str>,
    console: &mut FakeConsole,
    args: &[&str],
) -> Result<String, Failure> {
    let mut env: HashMap<String, String> = [
        (config::ENV_ENDPOINT.to_string(), endpoint.to_string()),
        ("USER".to_string(), "ana".to_string()),
    ]
    .into();
    if let Some(token) = token {
        env.insert(config::ENV_TOKEN.into(), token.into());
    }
    let cmd = parse(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
    let mut out = Vec::new();
    run_with_console(cmd, &|k| env.get(k).cloned(), console, &mut out)?;
    Ok(String::from_utf8(out).unwrap())
}

fn user_json(name: &str, role: &str, disabled: bool) -> Value {
    json!({"name": name, "role": role, "disabled": disabled, "created_at": 1_714_550_400})
}

fn token_json() -> Value {
    json!({
        "id": "0123456789ab",
        "name": "grafana",
        "user": "ana",
        "role": "viewer",
        "kind": "api",
        "created_at": 1_714_550_400,
        "expires_at": 1_722_326_400
    })
}

fn issued_json() -> Value {
    json!({"token": "pylon_0123456789ab_5ec2e7", "info": token_json()})
}

fn body(seen: &crate::commands::business::tests::Seen) -> Value {
    serde_json::from_str(&seen.body).unwrap_or_else(|e| panic!("{:?}: {e}", seen.body))
}

#[test]
fn every_identity_command_parses() {
    assert_eq!(users(&["users", "list"]), UsersCommand::List);
    assert_eq!(
        users(&["users", "create", "ana", "--role", "operator"]),
        UsersCommand::Create {
            name: "ana".into(),
            role: Role::Operator,
            password_stdin: false
        }
    );
    assert_eq!(
        users(&["users", "set", "ana", "--role", "admin", "--password-stdin"]),
        UsersCommand::Set {
            name: "ana".into(),
            role: Some(Role::Admin),
            password_stdin: true
        }
    );
    assert_eq!(
        users(&["users", "disable", "ana"]),
        UsersCommand::Disable { name: "ana".into() }
    );
    assert_eq!(
        users(&["users", "enable", "ana"]),
        UsersCommand::Enable { name: "ana".into() }
    );
    assert_eq!(
        users(&["users", "remove", "ana"]),
        UsersCommand::Remove { name: "ana".into() }
    );
    assert_eq!(
        tokens(&["tokens", "list", "--user", "ana"]),
        TokensCommand::List {
            user: Some("ana".into())
        }
    );
    assert_eq!(
        tokens(&[
            "tokens",
            "create",
            "--user",
            "ana",
            "--name",
            " nightly export ",
            "--role",
            "viewer",
            "--expires-in-days",
            "0"
        ]),
        TokensCommand::Create {
            user: "ana".into(),
            name: "nightly export".into(),
            role: Some(Role::Viewer),
            expires_in_days: Some(0)
        }
    );
    assert_eq!(
        tokens(&["tokens", "revoke", "0123456789ab"]),
        TokensCommand::Revoke {
            id: "0123456789ab".into()
        }
    );
    let OpsCommand::Login(a) = parse(&["login", "--user", "bo", "--password-stdin"]).unwrap()
    else {
        panic!()
    };
    assert_eq!((a.user.as_deref(), a.password_stdin), (Some("bo"), true));
    assert!(matches!(parse(&["logout"]), Ok(OpsCommand::Logout(_))));
    assert!(matches!(
        parse(&["whoami", "-o", "json"]),
        Ok(OpsCommand::Whoami(_))
    ));

    for bad in [
        &["users"][..],
        &["users", "create", "ana"],
        &["users", "create", "ana", "--role", "root"],
        // A password is never a flag's value.
        &[
            "users",
            "create",
            "ana",
            "--role",
            "admin",
            "--password",
            "x",
        ],
        &[
            "users",
            "create",
            "ana",
            "--role",
            "admin",
            "--password-stdin",
            "x",
        ],
        &["login", "--password", "x"],
        &["tokens", "create", "--user", "ana"],
        &["tokens", "create", "--user", "ana", "--name", "  "],
        &[
            "tokens",
            "create",
            "--user",
            "ana",
            "--name",
            "x",
            "--expires-in-days",
            "-1",
        ],
        &["tokens", "revoke"],
    ] {
        assert!(parse(bad).is_err(), "{bad:?} parsed");
    }
}

#[test]
fn users_create_reads_the_password_from_stdin_and_sends_it_in_the_body() {
    let created = user_json("bo", "finance", false).to_string();
    let (endpoint, requests, server) = serve(vec![(201, created.clone()), (201, created)]);
    let mut console = FakeConsole::piped("correct horse battery\nignored\n");
    let text = run_at(
        &endpoint,
        Some("s3cret"),
        &mut console,
        &[
            "users",
            "create",
            "bo",
            "--role",
            "finance",
            "--password-stdin",
        ],
    )
    .unwrap();
    assert!(
        text.starts_with("User bo added with the finance role."),
        "{text}"
    );
    assert!(console.prompts.is_empty());
    let seen = requests.recv().unwrap();
    assert!(
        seen.head.starts_with("POST /v1/admin/users HTTP/1.1"),
        "{}",
        seen.head
    );
    let head = seen.head.to_ascii_lowercase();
    assert!(head.contains("authorization: bearer s3cret"), "{head}");
    assert!(head.contains("content-type: application/json"), "{head}");
    assert_eq!(
        body(&seen),
        json!({"name": "bo", "role": "finance", "password": "correct horse battery"})
    );

    // At a terminal: asked twice, without echo; JSON output is the user.
    let mut console = FakeConsole::terminal(&["twelve chars!", "twelve chars!"]);
    let text = run_at(
        &endpoint,
        Some("s3cret"),
        &mut console,
        &["users", "create", "bo", "--role", "finance", "-o", "json"],
    )
    .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap(),
        user_json("bo", "finance", false)
    );
    assert_eq!(
        console.prompts,
        ["Password for the new user bo: ", "Type it again: "]
    );
    assert_eq!(body(&requests.recv().unwrap())["password"], "twelve chars!");
    server.join().unwrap();
}

#[test]
fn users_create_without_a_password_sends_nothing() {
    // Nothing listens there: a request would be exit status 3.
    let endpoint = refused_endpoint();
    let err = run_at(
        &endpoint,
        Some("t"),
        &mut FakeConsole::piped("secret secret\n"),
        &["users", "create", "bo", "--role", "viewer"],
    )
    .unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert!(
        err.to_string().ends_with(
            "e.g.\n  pylonctl users create bo --role viewer --password-stdin < password.txt"
        ),
        "{err}"
    );
    let err = run_at(
        &endpoint,
        Some("t"),
        &mut FakeConsole::terminal(&["first password", "second password"]),
        &["users", "create", "bo", "--role", "viewer"],
    )
    .unwrap_err();
    assert_eq!(err.exit_code(), 2);
    let err = run_at(
        &endpoint,
        Some("t"),
        &mut FakeConsole::piped(""),
        &[
            "users",
            "create",
            "bo",
            "--role",
            "viewer",
            "--password-stdin",
        ],
    )
    .unwrap_err();
    assert_eq!(err.exit_code(), 2);
}

#[test]
fn users_list_set_disable_enable_and_remove() {
    let list = json!([
        user_json("ana", "admin", false),
        user_json("bo", "viewer", true)
    ]);
    let (endpoint, requests, server) = serve(vec![
        (200, list.to_string()),
        (200, user_json("bo", "operator", true).to_string()),
        (200, user_json("bo", "operator", true).to_string()),
        (200, user_json("bo", "operator", false).to_string()),
        (204, String::new()),
        (204, String::new()),
        (404, api_error("not_found", "user zed not found")),
        (409, api_error("exists", "user bo exists already")),
        (
            400,
            api_error("invalid", "a password needs at least 12 characters"),
        ),
    ]);
    let mut console = FakeConsole::default();
    let mut run = |args: &[&str]| run_at(&endpoint, Some("t"), &mut console, args);

    let text = run(&["users", "list"]).unwrap();
    assert_eq!(
        text,
        "NAME  ROLE    DISABLED  CREATED\n\
         ana   admin   no        2024-05-01T08:00:00Z\n\
         bo    viewer  yes       2024-05-01T08:00:00Z\n"
    );
    assert!(requests
        .recv()
        .unwrap()
        .head
        .starts_with("GET /v1/admin/users HTTP/1.1"));

    let text = run(&["users", "set", "bo", "--role", "operator"]).unwrap();
    assert!(text.starts_with("User bo: role is now operator"), "{text}");
    let seen = requests.recv().unwrap();
    assert!(seen.head.starts_with("PUT /v1/admin/users/bo HTTP/1.1"));
    assert_eq!(body(&seen), json!({"role": "operator"}));

    let text = run(&["users", "disable", "bo"]).unwrap();
    assert!(text.starts_with("User bo is disabled"), "{text}");
    let seen = requests.recv().unwrap();
    assert!(seen.head.starts_with("PUT /v1/admin/users/bo HTTP/1.1"));
    assert_eq!(body(&seen), json!({"disabled": true}));

    let text = run(&["users", "enable", "bo"]).unwrap();
    assert!(text.starts_with("User bo is enabled"), "{text}");
    assert_eq!(body(&requests.recv().unwrap()), json!({"disabled": false}));

    let text = run(&["users", "remove", "bo"]).unwrap();
    assert_eq!(
        text,
        "User bo removed, and every token of theirs revoked.\n"
    );
    let seen = requests.recv().unwrap();
    assert!(seen.head.starts_with("DELETE /v1/admin/users/bo HTTP/1.1"));
    // No reply body: JSON output prints nothing.
    assert_eq!(run(&["users", "remove", "bo", "-o", "json"]).unwrap(), "");
    requests.recv().unwrap();

    let err = run(&["users", "disable", "zed"]).unwrap_err();
    assert_eq!(
        (err.exit_code(), err.to_string()),
        (
            1,
            "there is no user zed; `pylonctl users list` lists the users, `pylonctl users \
             create zed --role ROLE` adds one"
                .into()
        )
    );
    let err = run(&["users", "create", "bo", "--role", "viewer"]);
    // No terminal and no --password-stdin: refused before any request.
    assert_eq!(err.unwrap_err().exit_code(), 2);
    let mut console = FakeConsole::piped("short\n");
    let err = run_at(
        &endpoint,
        Some("t"),
        &mut console,
        &[
            "users",
            "create",
            "bo",
            "--role",
            "viewer",
            "--password-stdin",
        ],
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("a user named bo exists already"),
        "{err}"
    );
    let mut console = FakeConsole::piped("short\n");
    let err = run_at(
        &endpoint,
        Some("t"),
        &mut console,
        &["users", "set", "bo", "--password-stdin"],
    )
    .unwrap_err();
    assert_eq!(
        (err.exit_code(), err.to_string()),
        (
            2,
            "a password needs at least 12 characters (invalid, HTTP 400)".into()
        )
    );
    server.join().unwrap();

    let err = run_at(
        &refused_endpoint(),
        Some("t"),
        &mut FakeConsole::default(),
        &["users", "set", "bo"],
    )
    .unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert!(err.to_string().starts_with("nothing to change"), "{err}");
}

#[test]
fn tokens_create_shows_the_token_once() {
    let (endpoint, requests, server) = serve(vec![
        (201, issued_json().to_string()),
        (201, issued_json().to_string()),
    ]);
    let mut console = FakeConsole::default();
    let text = run_at(
        &endpoint,
        Some("s3cret"),
        &mut console,
        &[
            "tokens",
            "create",
            "--user",
            "ana",
            "--name",
            "grafana",
            "--role",
            "viewer",
            "--expires-in-days",
            "90",
        ],
    )
    .unwrap();
    assert!(
        text.contains("\n\n  pylon_0123456789ab_5ec2e7\n\n"),
        "{text}"
    );
    assert!(text.contains("it is not shown again"), "{text}");
    assert!(
        text.contains("export PYLON_TOKEN=pylon_0123456789ab_5ec2e7\n"),
        "{text}"
    );
    let seen = requests.recv().unwrap();
    assert!(seen.head.starts_with("POST /v1/admin/tokens HTTP/1.1"));
    assert_eq!(
        body(&seen),
        json!({"user": "ana", "name": "grafana", "role": "viewer", "expires_in_days": 90})
    );

    // JSON: the reply as it is; without --role and --expires-in-days, the server's defaults.
    let text = run_at(
        &endpoint,
        Some("s3cret"),
        &mut console,
        &[
            "tokens", "create", "--user", "ana", "--name", "grafana", "-o", "json",
        ],
    )
    .unwrap();
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), issued_json());
    assert_eq!(
        body(&requests.recv().unwrap()),
        json!({"user": "ana", "name": "grafana"})
    );
    server.join().unwrap();
}

#[test]
fn tokens_list_and_revoke() {
    let mut revoked = token_json();
    revoked["revoked_at"] = json!(1_714_554_000);
    let (endpoint, requests, server) = serve(vec![
        (200, json!([token_json()]).to_string()),
        (200, revoked.to_string()),
        (204, String::new()),
        (404, api_error("not_found", "token ffffffffffff not found")),
    ]);
    let mut console = FakeConsole::default();
    let mut run = |args: &[&str]| run_at(&endpoint, Some("t"), &mut console, args);

    let text = run(&["tokens", "list", "--user", "ana"]).unwrap();
    assert!(
        text.starts_with("ID            NAME     USER  ROLE    KIND"),
        "{text}"
    );
    assert!(
        text.contains("0123456789ab  grafana  ana   viewer  api"),
        "{text}"
    );
    assert!(requests
        .recv()
        .unwrap()
        .head
        .starts_with("GET /v1/admin/tokens?user=ana HTTP/1.1"));

    let text = run(&["tokens", "revoke", "0123456789ab"]).unwrap();
    assert_eq!(
        text,
        "Token 0123456789ab (grafana, of ana) is revoked since 2024-05-01T09:00:00Z: it no \
         longer works.\n"
    );
    assert!(requests
        .recv()
        .unwrap()
        .head
        .starts_with("DELETE /v1/admin/tokens/0123456789ab HTTP/1.1"));
    let text = run(&["tokens", "revoke", "0123456789ab"]).unwrap();
    assert_eq!(text, "Token 0123456789ab is revoked: it no longer works.\n");
    requests.recv().unwrap();

    let err = run(&["tokens", "revoke", "ffffffffffff"]).unwrap_err();
    assert_eq!(
        (err.exit_code(), err.to_string()),
        (
            1,
            "there is no token ffffffffffff; `pylonctl tokens list` lists the tokens by id".into()
        )
    );
    server.join().unwrap();
}

#[test]
fn login_with_password_stdin_sends_login_input_without_a_token() {
    let mut session = issued_json();
    session["info"]["kind"] = json!(TokenKind::Session);
    session["info"]["name"] = json!("session");
    let (endpoint, requests, server) = serve(vec![
        (200, session.to_string()),
        (200, session.to_string()),
        (401, api_error("bad_login", "wrong user name or password")),
    ]);
    let text = run_at(
        &endpoint,
        Some("old-token"),
        &mut FakeConsole::piped("correct horse battery\n"),
        &["login", "--user", "bo", "--password-stdin"],
    )
    .unwrap();
    assert!(text.starts_with("Logged in as ana (viewer)."), "{text}");
    assert!(
        text.contains("export PYLON_TOKEN=pylon_0123456789ab_5ec2e7\n"),
        "{text}"
    );
    let seen = requests.recv().unwrap();
    assert!(
        seen.head.starts_with("POST /v1/login HTTP/1.1"),
        "{}",
        seen.head
    );
    assert!(
        !seen.head.to_ascii_lowercase().contains("authorization"),
        "{}",
        seen.head
    );
    assert_eq!(
        body(&seen),
        json!({"user": "bo", "password": "correct horse battery"})
    );

    // At a terminal, asked once; the user defaults to $USER; JSON is the IssuedToken.
    let mut console = FakeConsole::terminal(&["twelve chars!"]);
    let text = run_at(&endpoint, None, &mut console, &["login", "-o", "json"]).unwrap();
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), session);
    assert_eq!(console.prompts, ["Password for ana: "]);
    assert_eq!(
        body(&requests.recv().unwrap()),
        json!({"user": "ana", "password": "twelve chars!"})
    );

    let err = run_at(
        &endpoint,
        None,
        &mut FakeConsole::piped("wrong password\n"),
        &["login", "--user", "bo", "--password-stdin"],
    )
    .unwrap_err();
    assert_eq!(
        (err.exit_code(), err.to_string()),
        (
            1,
            "not logged in: wrong user name or password, or user bo is disabled".into()
        )
    );
    server.join().unwrap();
}

#[test]
fn logout_and_whoami_use_the_token() {
    let me = json!({"user": "ana", "role": "operator", "token_id": "0123456789ab"});
    let (endpoint, requests, server) = serve(vec![(204, String::new()), (200, me.to_string())]);
    let mut console = FakeConsole::default();
    let text = run_at(&endpoint, Some("s3cret"), &mut console, &["logout"]).unwrap();
    assert!(text.starts_with("Logged out"), "{text}");
    let seen = requests.recv().unwrap();
    assert!(seen.head.starts_with("POST /v1/logout HTTP/1.1"));
    assert!(seen
        .head
        .to_ascii_lowercase()
        .contains("authorization: bearer s3cret"));

    let text = run_at(&endpoint, Some("s3cret"), &mut console, &["whoami"]).unwrap();
    assert_eq!(
        text,
        "user:   ana\nrole:   operator\ntoken:  0123456789ab\n"
    );
    assert!(requests
        .recv()
        .unwrap()
        .head
        .starts_with("GET /v1/whoami HTTP/1.1"));
    server.join().unwrap();
}
