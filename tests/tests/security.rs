//! The security perimeter with real processes: every route of every service answered
//! by its declared permission for every role (and no token), tokens issued by the
//! control plane honoured and revoked across services, the audit log written by every
//! service and its tampering found in a real etcd, and services that refuse to start
//! without credentials.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use pylon_proto::auth::Role;
use pylon_service::routes::{Access, Declared};
use pylon_tests::control::{Backend, ControlOptions, ControlProcess, ADMIN_TOKEN, CLUSTER_TOKEN};
use pylon_tests::etcd::EtcdCluster;
use pylon_tests::http::{call_as, get_as};
use pylon_tests::platform::{pile_text, runtime, Platform};
use pylon_tests::Killed;
use pylon_tests::{binary, wait_for};
use serde_json::{json, Value};

const PASSWORD: &str = "a long test password";

/// Creates a user of `role` through the bootstrap token and returns an API token of
/// theirs. The admin is made last: it retires the bootstrap token.
fn user_token(control: SocketAddr, bearer: &str, role: Role) -> String {
    let name = format!("{}-user", role.as_str());
    let (code, body) = call_as(
        control,
        "POST",
        "/v1/admin/users",
        Some(json!({"name": name, "role": role, "password": PASSWORD})),
        Some(bearer),
    );
    assert_eq!(code, 201, "creating {name}: {body}");
    let session = login(control, &name);
    let (code, body) = call_as(
        control,
        "POST",
        "/v1/admin/tokens",
        Some(json!({"user": name, "name": "matrix"})),
        Some(if role == Role::Admin {
            &session
        } else {
            bearer
        }),
    );
    assert_eq!(code, 201, "a token for {name}: {body}");
    body["token"].as_str().expect("token text").to_owned()
}

fn login(control: SocketAddr, user: &str) -> String {
    let (code, body) = call_as(
        control,
        "POST",
        "/v1/login",
        Some(json!({"user": user, "password": PASSWORD})),
        None,
    );
    assert_eq!(code, 200, "login of {user}: {body}");
    body["token"].as_str().expect("session token").to_owned()
}

/// A concrete path for a declared route.
fn concrete(path: &str) -> String {
    path.replace("{pile}", &pile_text(1))
        .replace("{trade_no}", "00000000000000000000000000000000")
        .replace("{id}", "nothing-here")
        .replace("{name}", "nobody")
        .replace("{n}", "1")
        .replace("{source}", "10.9.9.9")
}

/// Calls every declared route with every token and none, and checks each answer
/// against the declaration.
fn check_matrix(service: &str, addr: SocketAddr, routes: &[Declared], tokens: &[(Role, String)]) {
    assert!(!routes.is_empty());
    for route in routes {
        let path = concrete(route.path);
        let method = route.method.as_str();
        let body = (method != "GET" && method != "DELETE").then(|| json!({}));
        let answer = |token: Option<&str>| call_as(addr, method, &path, body.clone(), token);
        match route.access {
            Access::Public => {
                let (code, text) = answer(None);
                assert!(
                    code != 401 && code != 403 && code != 0,
                    "{service} {method} {path} is public but answered {code}: {text}"
                );
            }
            Access::Needs(permission) => {
                let (code, text) = answer(None);
                assert_eq!(code, 401, "{service} {method} {path} with no token: {text}");
                let (code, _) = answer(Some("pylon_0123456789ab_not-a-real-secret"));
                assert_eq!(code, 401, "{service} {method} {path} with a made-up token");
                for (role, token) in tokens {
                    let (code, text) = answer(Some(token));
                    if role.allows(permission) {
                        assert!(
                            code != 401 && code != 403,
                            "{service} {method} {path} refused {role:?} ({code}): {text}"
                        );
                    } else {
                        assert_eq!(
                            code, 403,
                            "{service} {method} {path} let {role:?} in ({code}): {text}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn every_route_of_every_service_answers_by_its_declared_permission() {
    let platform = Platform::start(1, vec![]);
    let control = platform.control.http;
    let mut tokens: Vec<(Role, String)> = [Role::Viewer, Role::Operator, Role::Finance]
        .into_iter()
        .map(|role| (role, user_token(control, ADMIN_TOKEN, role)))
        .collect();
    tokens.push((Role::Admin, user_token(control, ADMIN_TOKEN, Role::Admin)));
    // The first admin retired the control plane's bootstrap token.
    assert_eq!(
        get_as(control, "/v1/admin/status", Some(ADMIN_TOKEN)).0,
        401
    );

    check_matrix(
        "control",
        control,
        &pylon_control::http::routes().declared(),
        &tokens,
    );
    // The app and the edge know these tokens only through the control plane.
    check_matrix(
        "app",
        platform.app.http,
        &pylon_app::operator::routes().declared(),
        &tokens,
    );
    check_matrix(
        "edge",
        platform.edges[0].admin,
        &pylon_edge::admin::routes().declared(),
        &tokens,
    );
    assert!(
        platform
            .app
            .metric("pylon_auth_refusals_total", &["reason=\"forbidden\""])
            > 0.0
    );
}

#[test]
fn a_revoked_token_stops_working_on_every_service() {
    let platform = Platform::start(1, vec![]);
    let control = platform.control.http;
    let token = user_token(control, ADMIN_TOKEN, Role::Operator);
    let (_, whoami) = call_as(control, "GET", "/v1/whoami", None, Some(&token));
    assert_eq!(whoami["user"], "operator-user");
    assert_eq!(get_as(platform.app.http, "/v1/stats", Some(&token)).0, 200);
    assert_eq!(
        get_as(platform.edges[0].admin, "/v1/status", Some(&token)).0,
        200
    );
    let id = pylon_proto::auth::token_id(&token).expect("named token");
    let (code, revoked) = call_as(
        control,
        "DELETE",
        &format!("/v1/admin/tokens/{id}"),
        None,
        Some(ADMIN_TOKEN),
    );
    assert_eq!(code, 200, "{revoked}");
    assert!(revoked["revoked_at"].is_u64());
    assert_eq!(get_as(control, "/v1/admin/status", Some(&token)).0, 401);
    // The app and the edge keep an answer at most 10 s.
    wait_for(
        "the app to refuse the revoked token",
        Duration::from_secs(15),
        || (get_as(platform.app.http, "/v1/stats", Some(&token)).0 == 401).then_some(()),
    );
    wait_for(
        "the edge to refuse the revoked token",
        Duration::from_secs(15),
        || (get_as(platform.edges[0].admin, "/v1/status", Some(&token)).0 == 401).then_some(()),
    );
}

#[test]
fn a_session_cookie_works_for_reading_and_needs_the_csrf_header_to_change() {
    let platform = Platform::start(0, vec![]);
    let control = platform.control.http;
    user_token(control, ADMIN_TOKEN, Role::Operator);
    let response = pylon_tests::http::agent()
        .post(&format!("http://{control}/v1/login"))
        .send_json(json!({"user": "operator-user", "password": PASSWORD}))
        .expect("login");
    let cookie = response.header("set-cookie").expect("a cookie").to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().expect("name=value").to_owned();
    let read = pylon_tests::http::agent()
        .get(&format!("http://{control}/v1/admin/edges"))
        .set("cookie", &pair)
        .call();
    assert_eq!(read.map(|r| r.status()).ok(), Some(200));
    let change = |csrf: bool| {
        let mut request = pylon_tests::http::agent()
            .post(&format!("http://{control}/v1/admin/edges/none/drain"))
            .set("cookie", &pair);
        if csrf {
            request = request.set("x-pylon-csrf", "1");
        }
        match request.call() {
            Ok(r) => r.status(),
            Err(ureq::Error::Status(code, _)) => code,
            Err(_) => 0,
        }
    };
    assert_eq!(change(false), 403, "no csrf header");
    assert_eq!(change(true), 404, "allowed; the edge does not exist");
    // A wrong password is refused.
    let (code, _) = call_as(
        control,
        "POST",
        "/v1/login",
        Some(json!({"user": "operator-user", "password": "not the password"})),
        None,
    );
    assert_eq!(code, 401);
}

#[test]
fn the_audit_log_holds_every_services_actions_and_tampering_is_found() {
    let rt = runtime();
    let etcd = rt.block_on(EtcdCluster::start(1)).expect("etcd");
    let dir = tempfile::tempdir().expect("temp dir");
    let control = ControlProcess::start(ControlOptions {
        dir: dir.path(),
        replica: "c1",
        backend: Backend::Etcd(etcd.endpoints()),
        extra: vec![],
    });
    let app = pylon_tests::app::AppProcess::start(pylon_tests::app::AppOptions {
        dir: dir.path(),
        id: "app-1",
        control: vec![control.grpc_url()],
        store: pylon_tests::app::Store::Sqlite(dir.path().join("app.db")),
        env: vec![],
    });
    let admin = user_token(control.http, ADMIN_TOKEN, Role::Admin);
    // Actions on the app, by the admin, one with card data in the body.
    let (code, account) = call_as(
        app.http,
        "POST",
        "/v1/accounts",
        Some(json!({"name": "Driver One"})),
        Some(&admin),
    );
    assert!(code == 200 || code == 201, "{account}");
    let card_path = format!("/v1/accounts/{}/cards", account["id"]);
    let (code, body) = call_as(
        app.http,
        "POST",
        &card_path,
        Some(json!({"physical": "D14B0A54", "logical": "8888777766665555"})),
        Some(&admin),
    );
    assert!(code == 200 || code == 201, "{body}");

    let entries = wait_for("the app's entries", Duration::from_secs(10), || {
        let (_, entries) = call_as(control.http, "GET", "/v1/admin/audit", None, Some(&admin));
        let list = entries.as_array()?.clone();
        (list.iter().filter(|e| e["service"] == "app:app-1").count() == 2).then_some(list)
    });
    let text = Value::Array(entries.clone()).to_string();
    assert!(
        !text.contains("8888777766665555") && !text.contains("D14B0A54"),
        "{text}"
    );
    let actions: Vec<&str> = entries
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert!(
        actions.contains(&"users.create") && actions.contains(&"tokens.create"),
        "{actions:?}"
    );
    let from_app = entries
        .iter()
        .find(|e| e["service"] == "app:app-1")
        .expect("app entry");
    assert_eq!(from_app["action"], "POST /v1/accounts");
    assert_eq!(from_app["actor"], "admin-user");
    assert_eq!(from_app["role"], "admin");
    assert!(from_app["source"]
        .as_str()
        .is_some_and(|s| s.starts_with("127.0.0.1:")));
    let (_, check) = call_as(
        control.http,
        "GET",
        "/v1/admin/audit/verify",
        None,
        Some(&admin),
    );
    assert_eq!(check["intact"], true, "{check}");

    // Someone with access to etcd rewrites who did the first action.
    let first: Value = entries[0].clone();
    let key = format!(
        "/pylon-audit/entries/{:020}",
        first["seq"].as_u64().expect("seq")
    );
    rt.block_on(async {
        let mut client = etcd_client::Client::connect(etcd.endpoints(), None)
            .await
            .expect("etcd client");
        let mut forged = first.clone();
        forged["actor"] = json!("someone-else");
        client
            .put(key, forged.to_string(), None)
            .await
            .expect("put");
    });
    let (_, check) = call_as(
        control.http,
        "GET",
        "/v1/admin/audit/verify",
        None,
        Some(&admin),
    );
    assert_eq!(check["intact"], false, "{check}");
    assert_eq!(check["broken_at"], first["seq"]);
    drop(app);
    drop(control);
}

/// Runs a binary that must refuse to start; returns what it said.
fn refuses(name: &str, args: &[&str]) -> String {
    let output = Command::new(binary(name))
        .args(args)
        .env_remove("PYLON_ADMIN_TOKEN")
        .env_remove("PYLON_CLUSTER_TOKEN")
        .stdin(Stdio::null())
        .output()
        .expect("running");
    assert!(!output.status.success(), "{name} {args:?} started");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn services_refuse_to_start_without_credentials() {
    let dir = tempfile::tempdir().expect("temp dir");
    let registry = dir.path().join("r.json");
    let registry = registry.to_str().expect("utf-8 path");
    let port = || format!("127.0.0.1:{}", pylon_tests::free_port());
    let said = refuses(
        "pylon-control",
        &[
            "--registry-file",
            registry,
            "--admin-token",
            "a",
            "--http-listen",
            &port(),
        ],
    );
    assert!(said.contains("no cluster token"), "{said}");
    let said = refuses(
        "pylon-control",
        &[
            "--registry-file",
            registry,
            "--cluster-token",
            "c",
            "--http-listen",
            &port(),
        ],
    );
    assert!(said.contains("no admin user"), "{said}");
    let said = refuses(
        "pylon-app",
        &[
            "--sqlite",
            dir.path().join("a.db").to_str().expect("utf-8"),
            "--http-listen",
            &port(),
        ],
    );
    assert!(said.contains("no cluster token"), "{said}");
    let said = refuses(
        "pylon-app",
        &[
            "--sqlite",
            dir.path().join("a.db").to_str().expect("utf-8"),
            "--cluster-token",
            CLUSTER_TOKEN,
            "--http-listen",
            &port(),
        ],
    );
    assert!(
        said.contains("nothing can check operators' tokens"),
        "{said}"
    );
    // A store on another machine without a CA to check it: not in the clear.
    let said = refuses(
        "pylon-app",
        &[
            "--store",
            "postgres",
            "--postgres-url",
            "postgres://pylon@db.example:5432/pylon",
            "--cluster-token",
            CLUSTER_TOKEN,
            "--admin-token",
            ADMIN_TOKEN,
            "--http-listen",
            &port(),
        ],
    );
    assert!(said.contains("on another machine"), "{said}");
    let said = refuses(
        "pylon-edge",
        &[
            "--tcp-listen",
            &port(),
            "--admin-listen",
            &port(),
            "--allow-all",
        ],
    );
    assert!(
        said.contains("nothing can check operators' tokens"),
        "{said}"
    );
    let said = refuses(
        "pylon-edge",
        &[
            "--tcp-listen",
            &port(),
            "--admin-listen",
            &port(),
            "--control",
            "http://127.0.0.1:1",
        ],
    );
    assert!(said.contains("no cluster token"), "{said}");

    // --insecure-dev starts, and says so.
    let http = pylon_tests::local(pylon_tests::free_port());
    let log = dir.path().join("dev.log");
    let mut child = Command::new(binary("pylon-control"))
        .args(["--insecure-dev", "--registry-file", registry])
        .args(["--http-listen", &http.to_string(), "--grpc-listen", &port()])
        .env_remove("PYLON_ADMIN_TOKEN")
        .env_remove("PYLON_CLUSTER_TOKEN")
        .stdout(std::fs::File::create(&log).expect("log"))
        .stderr(Stdio::null())
        .spawn()
        .expect("starting");
    wait_for(
        "the insecure control plane",
        Duration::from_secs(15),
        || (get_as(http, "/readyz", None).0 == 200).then_some(()),
    );
    assert_eq!(
        get_as(http, "/v1/admin/status", None).0,
        200,
        "open on purpose"
    );
    let _ = child.kill();
    let _ = child.wait();
    let said = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(said.contains("INSECURE DEV MODE"), "{said}");
}

/// A child process killed when the test ends, however it ends.
fn spawn(name: &str, args: &[String], log: &std::path::Path) -> Killed {
    let file = std::fs::File::create(log).expect("log file");
    Killed(
        Command::new(binary(name))
            .args(args)
            .env("RUST_LOG", "info")
            .env_remove("PYLON_ADMIN_TOKEN")
            .env_remove("PYLON_CLUSTER_TOKEN")
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log handle"))
            .stderr(file)
            .spawn()
            .expect("starting"),
    )
}

/// Runs `pylonctl args` with `token` (and no other PYLON_ setting, nor the user's config
/// file) for at most 30 s: its exit status, stdout and stderr.
fn pylonctl(args: &[&str], token: &str, home: &std::path::Path) -> (Option<i32>, String, String) {
    let mut command = Command::new(binary("pylonctl"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("PYLON") {
            command.env_remove(name);
        }
    }
    let mut child = command
        .args(args)
        .env("PYLON_TOKEN", token)
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting pylonctl");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("pylonctl's status").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().expect("pylonctl's output");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

#[test]
fn a_cluster_on_tls_refuses_plaintext_and_serves_chargers_end_to_end() {
    use pylon_bench::certs::TestCa;
    use pylon_tests::http::https_call;
    use pylon_tests::local;

    let dir = tempfile::tempdir().expect("temp dir");
    let pki = dir.path().join("pki");
    let ca = TestCa::new(&pki, "Pylon test cluster CA").expect("CA");
    let names = ["127.0.0.1", "localhost"];
    let issue = |name: &str| ca.issue(name, &names, None).expect("certificate");
    let (control_pair, app_pair, edge_pair) = (issue("control"), issue("app"), issue("edge"));
    let tls = |pair: &pylon_bench::certs::PemPair| -> Vec<String> {
        vec![
            "--cluster-ca".into(),
            ca.ca_pem.display().to_string(),
            "--cluster-cert".into(),
            pair.cert.display().to_string(),
            "--cluster-key".into(),
            pair.key.display().to_string(),
        ]
    };
    let port = || local(pylon_tests::free_port());
    let (c_http, c_grpc, a_http, a_grpc, e_tcp, e_admin) =
        (port(), port(), port(), port(), port(), port());
    let https = |addr, method, path: &str, body, token| {
        https_call(addr, &ca.ca_pem, method, path, body, token)
    };
    let ready = |what: &str, addr| {
        wait_for(what, Duration::from_secs(30), || {
            (https(addr, "GET", "/readyz", None, None).0 == 200).then_some(())
        })
    };

    let mut args = strings(&["--replica-id", "c1", "--leader-ttl", "2"]);
    args.extend(strings(&[
        "--admin-token",
        ADMIN_TOKEN,
        "--cluster-token",
        CLUSTER_TOKEN,
    ]));
    args.extend([
        "--registry-file".into(),
        dir.path().join("r.json").display().to_string(),
    ]);
    args.extend([
        "--http-listen".into(),
        c_http.to_string(),
        "--grpc-listen".into(),
        c_grpc.to_string(),
    ]);
    args.extend(tls(&control_pair));
    let _control = spawn("pylon-control", &args, &dir.path().join("control.log"));
    ready("the control plane over HTTPS", c_http);

    let control_url = format!("https://{c_grpc}");
    let mut args = strings(&["--app-id", "app-1", "--lease-ttl", "4", "--store", "sqlite"]);
    args.extend([
        "--sqlite".into(),
        dir.path().join("app.db").display().to_string(),
    ]);
    args.extend([
        "--http-listen".into(),
        a_http.to_string(),
        "--grpc-listen".into(),
        a_grpc.to_string(),
    ]);
    args.extend([
        "--control".into(),
        control_url.clone(),
        "--cluster-token".into(),
        CLUSTER_TOKEN.into(),
    ]);
    args.extend(tls(&app_pair));
    let _app = spawn("pylon-app", &args, &dir.path().join("app.log"));
    ready("the app over HTTPS", a_http);

    // The app knows operators' tokens through the control plane (over mutual TLS).
    let pile = pylon_proto::ykc::PileNo::from_u64(32_010_200_000_777);
    let (code, body) = https(
        a_http,
        "POST",
        "/v1/piles",
        Some(json!([{"pile_no": pile.to_string()}])),
        Some(ADMIN_TOKEN),
    );
    assert_eq!(code, 200, "{body}");

    let mut args = strings(&[
        "--edge-id",
        "e1",
        "--executors",
        "1",
        "--app-login",
        "--lease-ttl",
        "4",
    ]);
    args.extend([
        "--tcp-listen".into(),
        e_tcp.to_string(),
        "--admin-listen".into(),
        e_admin.to_string(),
    ]);
    args.extend([
        "--control".into(),
        control_url,
        "--control-token".into(),
        CLUSTER_TOKEN.into(),
    ]);
    args.extend(tls(&edge_pair));
    let _edge = spawn("pylon-edge", &args, &dir.path().join("edge.log"));
    ready("the edge over HTTPS", e_admin);

    // A charger logs in: the edge asks the app over mutual TLS, and the app says yes.
    let rt = runtime();
    let target = pylon_bench::charger::Target {
        addr: e_tcp,
        tls: None,
    };
    let mut charger = wait_for(
        "the login to be decided by the app",
        Duration::from_secs(30),
        || {
            rt.block_on(async {
                let mut c = pylon_bench::charger::ChargerConn::connect(&target, None)
                    .await
                    .ok()?;
                c.login(pile).await.ok()?;
                Some(c)
            })
        },
    );
    let (code, status) = https(e_admin, "GET", "/v1/status", None, Some(ADMIN_TOKEN));
    assert_eq!(code, 200, "{status}");

    // An operator follows the route stream with pylonctl: its gRPC port is mutual TLS,
    // so it takes a client certificate of the cluster CA besides the operator's token.
    let (code, body) = https(
        c_http,
        "POST",
        "/v1/admin/users",
        Some(json!({"name": "ana", "role": Role::Operator, "password": PASSWORD})),
        Some(ADMIN_TOKEN),
    );
    assert_eq!(code, 201, "{body}");
    let (code, body) = https(
        c_http,
        "POST",
        "/v1/admin/tokens",
        Some(json!({"user": "ana", "name": "routes-watch"})),
        Some(ADMIN_TOKEN),
    );
    assert_eq!(code, 201, "{body}");
    let operator_token = body["token"].as_str().expect("token text").to_owned();
    let operator = ca
        .issue("operator-ana", &["operator-ana"], None)
        .expect("an operator's certificate");
    let endpoint = format!("https://{c_http}");
    let ca_pem = ca.ca_pem.display().to_string();
    let (cert, key) = (
        operator.cert.display().to_string(),
        operator.key.display().to_string(),
    );
    let watch = |extra: &[&str]| {
        let mut args = vec![
            "routes",
            "watch",
            "--count",
            "1",
            "--endpoint",
            &endpoint,
            "--ca",
            &ca_pem,
        ];
        args.extend_from_slice(extra);
        pylonctl(&args, &operator_token, dir.path())
    };
    let (code, out, err) = watch(&["--cert", &cert, "--key", &key]);
    assert_eq!(code, Some(0), "stdout: {out}\nstderr: {err}");
    let line = out.lines().next().unwrap_or_default();
    assert!(
        line.starts_with('v') && line.contains(" snapshot: 1 edges (0 draining), 1 apps"),
        "{out}"
    );
    // Without the client certificate: refused, saying how to give one.
    let (code, out, err) = watch(&[]);
    assert_eq!(code, Some(2), "stdout: {out}\nstderr: {err}");
    assert!(
        err.contains("routes watch over TLS needs a client certificate")
            && err.contains("--cert FILE and --key FILE"),
        "{err}"
    );

    // Plaintext is refused on every listener: HTTP APIs and gRPC.
    for addr in [c_http, a_http, e_admin] {
        let (code, _) = get_as(addr, "/readyz", None);
        assert_eq!(code, 0, "{addr} answered plaintext HTTP");
    }
    for grpc in [c_grpc, a_grpc] {
        let refused = rt.block_on(async {
            let channel = tonic::transport::Endpoint::from_shared(format!("http://{grpc}"))
                .expect("url")
                .connect_timeout(Duration::from_secs(3))
                .timeout(Duration::from_secs(3))
                .connect()
                .await;
            let Ok(channel) = channel else { return true };
            let mut client =
                pylon_proto::control::membership_client::MembershipClient::new(channel);
            client
                .leave(pylon_proto::auth::with_bearer(
                    pylon_proto::control::LeaveRequest::default(),
                    Some(CLUSTER_TOKEN),
                ))
                .await
                .is_err()
        });
        assert!(refused, "{grpc} answered plaintext gRPC");
    }
    let metrics = |addr| {
        let (_, text) = https(addr, "GET", "/metrics", None, None);
        text.as_str().unwrap_or_default().to_owned()
    };
    let refused =
        pylon_tests::http::metric(&metrics(c_http), "pylon_tls_handshakes_refused_total", &[]);
    assert!(refused >= 2.0, "control refused {refused} handshakes");

    // The control plane's certificate is rotated in place: reloaded without a restart,
    // and the charger's session (edge <-> app) goes on.
    // (A new key and certificate in the same files, a second later: a new mtime.)
    std::thread::sleep(Duration::from_millis(1100));
    ca.issue("control", &names, None).expect("reissued");
    wait_for(
        "the control plane to reload its certificate",
        Duration::from_secs(20),
        || {
            let text = metrics(c_http);
            (pylon_tests::http::metric(&text, "pylon_tls_reloads_total", &["result=\"ok\""]) >= 1.0)
                .then_some(())
        },
    );
    let (code, _) = https(c_http, "GET", "/v1/admin/status", None, Some(ADMIN_TOKEN));
    assert_eq!(code, 200);
    rt.block_on(async {
        let seq = charger
            .send(&pylon_bench::charger::heartbeat_frame(pile))
            .await
            .expect("heartbeat");
        loop {
            let (s, frame) = charger
                .recv_timeout("heartbeat reply", Duration::from_secs(5))
                .await
                .expect("reply");
            if s == seq && matches!(frame, pylon_proto::ykc::Frame::HeartbeatReply(_)) {
                break;
            }
        }
    });
}
