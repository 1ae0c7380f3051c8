//! Disaster recovery with a second site. Two sites, each a control plane (embedded
//! registry), an app instance and an edge on its own PostgreSQL server; the standby
//! site's server streams from the primary's (`pg_basebackup -R`), its control plane
//! copies the primary's operators and its dispatch turns chargers away. A fleet charges
//! through the primary site, asking both sites' dispatch. The whole primary site dies;
//! `pylonctl dr promote` on the standby promotes its store, its app instance (waiting for
//! a writable store) starts serving, and the chargers carry on there.
//!
//! Measured: the recovery point (records confirmed by the lost site and missing on the
//! standby, and the WAL the standby had not received at the last status) and the recovery
//! time (from the loss to records confirmed again). The lost site's control plane then
//! comes back and stands down, since the other site was promoted after it.

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use pylon_bench::postgres::PostgresCluster;
use pylon_tests::app::{AppOptions, AppProcess, Store};
use pylon_tests::certs::TestCerts;
use pylon_tests::control::{
    app_login_edge_flags, Backend, ControlOptions, ControlProcess, ADMIN_TOKEN,
};
use pylon_tests::edge::{EdgeOptions, EdgeProcess};
use pylon_tests::fleet::{ChargingFleet, FleetOptions, Reach};
use pylon_tests::{binary, http, output, wait_for};
use serde_json::{json, Value};

const FIRST_PILE: u64 = 32_010_730_000_000;
const CHARGERS: u64 = 30;

/// The primary site's loopback address, and the standby's: each site's control plane,
/// app instance, edge and PostgreSQL listen on their own.
const WEST: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
const EAST: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

fn control(dir: &Path, name: &str, settings: &str, host: Ipv4Addr) -> ControlProcess {
    let config = dir.join(format!("{name}.toml"));
    std::fs::write(&config, settings).expect("control settings");
    ControlProcess::start_on(
        ControlOptions {
            dir,
            replica: name,
            backend: Backend::Embedded(dir.join(format!("{name}-registry.json"))),
            // The sites talk plain HTTP on loopback here; production uses https://.
            extra: vec![
                "--insecure-dev".into(),
                "--config".into(),
                config.display().to_string(),
            ],
        },
        host,
    )
}

fn edge(
    dir: &Path,
    certs: &TestCerts,
    id: &str,
    control: &ControlProcess,
    host: Ipv4Addr,
) -> EdgeProcess {
    EdgeProcess::start_on(
        EdgeOptions {
            certs,
            dir,
            executors: 1,
            extra: app_login_edge_flags(id, &[control.grpc_url()]),
            with_rsa: false,
            tls_only: false,
            log_filter_from_file: false,
        },
        host,
    )
}

/// `pylonctl dr ...` against a site, as an operator runs it.
fn dr(site: &ControlProcess, token: &str, args: &[&str]) -> (bool, String) {
    output(
        Command::new(binary("pylonctl"))
            .arg("dr")
            .args(args)
            .args(["--endpoint", &format!("http://{}", site.http)])
            .env("PYLON_TOKEN", token)
            .env("PYLONCTL_CONFIG", "/dev/null"),
    )
}

fn dr_json(site: &ControlProcess, token: &str) -> Value {
    let (ok, text) = dr(site, token, &["status", "-o", "json"]);
    assert!(ok, "pylonctl dr status: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[test]
fn the_standby_site_takes_over_when_the_primary_site_is_lost() {
    let dir = tempfile::tempdir().expect("temp dir");
    let certs = TestCerts::generate(dir.path()).expect("certs");
    let (west_dir, east_dir) = (dir.path().join("west"), dir.path().join("east"));
    std::fs::create_dir_all(&west_dir).expect("west dir");
    std::fs::create_dir_all(&east_dir).expect("east dir");

    // The primary site, west.
    let mut west_pg = PostgresCluster::start().expect("west's PostgreSQL");
    let mut west = control(
        &west_dir,
        "west",
        &format!(
            "[dr]\nsite = \"west\"\nstore_url = \"{}\"\n",
            west_pg.url_for("postgres")
        ),
        WEST,
    );
    let mut west_app = AppProcess::start(AppOptions {
        dir: &west_dir,
        id: "west-app",
        control: vec![west.grpc_url()],
        store: Store::Postgres(west_pg.url()),
        env: vec![],
    });
    let west_edge = edge(&west_dir, &certs, "west-e1", &west, WEST);
    wait_for(
        "west-app to own every shard",
        Duration::from_secs(20),
        || (west.get("/v1/admin/shards")["per_app"]["west-app"] == 1024).then_some(()),
    );
    west_app.add_piles(FIRST_PILE, CHARGERS);
    pylon_bench::accounts::provision(
        &format!("http://{}", west_app.http),
        ADMIN_TOKEN,
        FIRST_PILE,
        CHARGERS,
        1_000_000,
    )
    .expect("accounts for the fleet");

    // West's first operator (the bootstrap token retires with it), and the token the
    // standby site follows west with. Both sites take it once east has copied it.
    let (code, body) = http::call_as(
        west.http,
        "POST",
        "/v1/admin/users",
        Some(json!({"name": "dr-follower", "role": "admin", "password": "a long enough password"})),
        Some(ADMIN_TOKEN),
    );
    assert_eq!(code, 201, "creating a user at west: {body}");
    let (code, body) = http::call_as(
        west.http,
        "POST",
        "/v1/login",
        Some(json!({"user": "dr-follower", "password": "a long enough password"})),
        None,
    );
    assert_eq!(code, 200, "logging in at west: {body}");
    let session = body["token"].as_str().expect("a session token").to_owned();
    let (code, body) = http::call_as(
        west.http,
        "POST",
        "/v1/admin/tokens",
        Some(json!({"user": "dr-follower", "name": "east-site"})),
        Some(&session),
    );
    assert!(
        code == 200 || code == 201,
        "creating a token at west: {code} {body}"
    );
    let token = body["token"].as_str().expect("a token").to_owned();
    let token_file = east_dir.join("west.token");
    std::fs::write(&token_file, &token).expect("token file");

    // The standby site, east: its store streams from west's.
    let east_pg = PostgresCluster::start_standby_of(&west_pg, EAST).expect("east's standby");
    let east = control(
        &east_dir,
        "east",
        &format!(
            "[dr]\nsite = \"east\"\nrole = \"standby\"\npeer = \"http://{}\"\n\
             peer_token_file = \"{}\"\nstore_url = \"{}\"\nmirror_secs = 1\n",
            west.http,
            token_file.display(),
            east_pg.url_for("postgres")
        ),
        EAST,
    );
    // The card key file seals card numbers in the store: the standby site needs the same.
    std::fs::copy(
        west_dir.join("card-keys.toml"),
        east_dir.join("card-keys.toml"),
    )
    .expect("the card key file at east");
    let mut east_app = AppProcess::spawn_at(
        AppOptions {
            dir: &east_dir,
            id: "east-app",
            control: vec![east.grpc_url()],
            store: Store::Postgres(format!("{}?target_session_attrs=read-write", east_pg.url())),
            env: vec![],
        },
        EAST,
        &["--wait-for-primary"],
    );
    let _east_edge = edge(&east_dir, &certs, "east-e1", &east, EAST);

    // Chargers know both sites' dispatch, the primary's first.
    let dispatch = format!("http://{},http://{}", west.http, east.http);
    let fleet = ChargingFleet::start_with(
        dir.path(),
        FleetOptions {
            name: "fleet",
            reach: Reach::Dispatch(&dispatch),
            tls_ca: None,
            first_pile: FIRST_PILE,
            sessions: CHARGERS,
            charge_secs: 1,
            idle_secs: 1.0,
            confirm_timeout_secs: 3,
            ramp: 500,
        },
    );
    fleet.wait_confirmed(30, Duration::from_secs(90));

    // The standby takes no chargers, follows west's store and copies its operators.
    let pile = format!("{FIRST_PILE:014}");
    let (code, body) = east.entry(&pile, Some("tcp"));
    assert_eq!(code, 503, "the standby's dispatch: {body}");
    assert_eq!(body["error"]["code"], "standby_site", "{body}");
    wait_for(
        "east to copy west's operators",
        Duration::from_secs(20),
        || (http::get_as(east.http, "/v1/whoami", Some(&token)).0 == 200).then_some(()),
    );
    let status = dr_json(&east, &token);
    assert_eq!(status["role"], "standby", "{status}");
    assert_eq!(status["peer"]["role"], "primary", "{status}");
    assert_eq!(status["store"]["in_recovery"], true, "{status}");
    assert_eq!(
        status["store"]["receiver"]["status"], "streaming",
        "{status}"
    );
    assert!(status["mirror"]["keys"].as_u64() >= Some(2), "{status}");
    wait_for(
        "east's leader to watch its store",
        Duration::from_secs(20),
        || (east.metric("pylon_control_dr_store_streaming", &[]) == 1.0).then_some(()),
    );
    assert_eq!(east.metric("pylon_control_dr_primary", &[]), 0.0);
    let (ok, text) = dr(&east, &token, &["status"]);
    assert!(
        ok && text.contains("east (standby)") && text.contains("streaming"),
        "{text}"
    );
    let west_status = dr_json(&west, &token);
    assert_eq!(west_status["role"], "primary", "{west_status}");
    let standbys = west_status["store"]["standbys"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(standbys.len(), 1, "west streams to east: {west_status}");

    // Operators are changed at the primary, not at the standby that copies them.
    let (code, body) = http::call_as(
        east.http,
        "POST",
        "/v1/admin/users",
        Some(json!({"name": "eve", "role": "admin", "password": "a long enough password"})),
        Some(&token),
    );
    assert_eq!(code, 409, "a user made at the standby: {body}");

    // Promotion is refused while the primary site answers.
    let (ok, text) = dr(&east, &token, &["promote"]);
    assert!(
        !ok && text.contains("peer_is_primary"),
        "promoted beside a live primary: {text}"
    );

    // The recovery point just before the loss, as `dr status` shows it.
    let behind = dr_json(&east, &token)["store"]["receiver"]["behind_bytes"].as_i64();

    // The whole primary site is lost.
    fleet.wait_confirmed(fleet.confirmed() + 10, Duration::from_secs(60));
    drop(west_edge);
    west_app.kill();
    west.kill();
    west_pg.stop();
    let lost_at = Instant::now();
    let confirmed_by_west = fleet.confirmed_trades();

    // The operator promotes the standby site.
    let (ok, text) = dr(&east, &token, &["promote"]);
    assert!(ok, "pylonctl dr promote: {text}");
    let promoted_after = lost_at.elapsed();
    assert!(text.contains("east is now primary"), "{text}");
    east_app.wait_ready(Duration::from_secs(60));
    let (code, body) = east.entry(&pile, Some("tcp"));
    assert_eq!(code, 200, "east's dispatch after the promotion: {body}");
    assert_eq!(body["primary"]["edge"], "east-e1", "{body}");
    let before = fleet.confirmed();
    fleet.wait_confirmed(before + 30, Duration::from_secs(120));
    let charging_again = lost_at.elapsed();

    let status = dr_json(&east, &token);
    assert_eq!(status["role"], "primary", "{status}");
    assert_eq!(status["store"]["in_recovery"], false, "{status}");
    assert_eq!(status["peer"]["reachable"], false, "{status}");

    // West's control plane comes back on its old registry, now knowing east: it finds east
    // promoted after it and stands down before it sends a charger anywhere.
    let west_token = west_dir.join("east.token");
    std::fs::write(&west_token, &token).expect("token file");
    let west = control(
        &west_dir,
        "west",
        &format!(
            "[dr]\nsite = \"west\"\npeer = \"http://{}\"\npeer_token_file = \"{}\"\n",
            east.http,
            west_token.display()
        ),
        WEST,
    );
    let (code, body) = west.entry(&pile, Some("tcp"));
    assert_eq!(code, 503, "the old primary's dispatch: {body}");
    // Its role is known once it has read its registry and asked east ("retry" until then).
    let west_status = wait_for("west to know its role", Duration::from_secs(10), || {
        let (ok, text) = dr(&west, &token, &["status", "-o", "json"]);
        ok.then(|| serde_json::from_str::<Value>(&text).expect("JSON"))
    });
    assert_eq!(west_status["role"], "standby", "{west_status}");
    assert_eq!(west_status["peer"]["role"], "primary", "{west_status}");
    assert!(
        west.log_text().contains("stands down"),
        "{}",
        west.log_text()
    );
    // Demoting east now would leave no primary.
    let (ok, text) = dr(&east, &token, &["demote"]);
    assert!(!ok && text.contains("demotion_refused"), "{text}");

    let report = fleet.stop();
    let stored = pylon_tests::records::postgres(&east_pg.url());
    let lost = stored.missing(&confirmed_by_west);
    eprintln!(
        "recovery point: {} of {} records confirmed by west not on east (east was {:?} bytes \
         behind at its last status); recovery time: promoted {:.1} s and charging again \
         {:.1} s after the loss",
        lost.len(),
        confirmed_by_west.len(),
        behind,
        promoted_after.as_secs_f64(),
        charging_again.as_secs_f64()
    );
    // Asynchronous streaming on loopback: at most the last moment's records.
    assert!(
        lost.len() * 50 <= confirmed_by_west.len(),
        "{} of {} confirmed records lost: {lost:?}\n{report}",
        lost.len(),
        confirmed_by_west.len()
    );
    assert_eq!(
        stored.duplicated(),
        0,
        "a record stored or settled twice\n{report}"
    );
    assert_eq!(report["records_abandoned"], 0, "{report}");
    assert!(
        east_app
            .log_text()
            .contains("waiting for the PostgreSQL store to take writes"),
        "east's app did not wait for its store"
    );
}
