//! Backups as an operator takes them, with the real `pylonctl` and `pylon-backup`:
//! - a restore drill on SQLite and the embedded registry: a backup taken while a fleet
//!   charges, verified in both repositories; one repository's copy damaged (verify says
//!   so, restore takes the other); the store destroyed, restored, and charging resumed,
//!   with every record confirmed before the backup still there;
//! - the scheduled service: a backup at start, verified, pruned to `keep`, and the age of
//!   the newest verified backup on /metrics.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use pylon_tests::app::{AppOptions, AppProcess, Store};
use pylon_tests::certs::TestCerts;
use pylon_tests::control::{app_login_edge_flags, Backend, ControlOptions, ControlProcess};
use pylon_tests::edge::{EdgeOptions, EdgeProcess};
use pylon_tests::fleet::{ChargingFleet, Reach};
use pylon_tests::{binary, free_port, http, local, output, wait_for};

const FIRST_PILE: u64 = 32_010_730_000_000;
const CHARGERS: u64 = 30;

fn pylonctl(args: &[&str]) -> (bool, String) {
    output(Command::new(binary("pylonctl")).args(args))
}

/// The trade numbers in a SQLite store.
fn stored_trades(db: &Path) -> std::collections::HashSet<String> {
    let conn = rusqlite::Connection::open(db).expect("opening the store");
    let mut stmt = conn
        .prepare("SELECT trade_no FROM transaction_records")
        .expect("a query");
    stmt.query_map([], |r| r.get::<_, String>(0))
        .expect("records")
        .map(|r| r.expect("a trade number"))
        .collect()
}

/// A backup settings file for this test's platform; returns its path.
fn settings(dir: &Path, extra: &str) -> std::path::PathBuf {
    for repo in ["repo-a", "repo-b"] {
        std::fs::create_dir_all(dir.join(repo)).expect("a repository folder");
    }
    let key = dir.join("backup.key");
    if !key.exists() {
        let (ok, text) = pylonctl(&["backup", "keygen", "--out", &key.display().to_string()]);
        assert!(ok, "keygen: {text}");
    }
    let path = dir.join("backup.toml");
    std::fs::write(
        &path,
        format!(
            r#"key_file = "{key}"
files = ["{keys}"]

[registry]
embedded = "{registry}"

[store]
sqlite = "{db}"

[[repository]]
name = "repo-a"
path = "{a}"

[[repository]]
name = "repo-b"
path = "{b}"
{extra}"#,
            key = key.display(),
            keys = dir.join("card-keys.toml").display(),
            registry = dir.join("registry.json").display(),
            db = dir.join("app.db").display(),
            a = dir.join("repo-a").display(),
            b = dir.join("repo-b").display(),
        ),
    )
    .expect("writing backup.toml");
    path
}

#[test]
fn a_backup_taken_under_charging_restores_a_destroyed_store_and_charging_resumes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let certs = TestCerts::generate(dir.path()).expect("certs");
    let control = ControlProcess::start(ControlOptions {
        dir: dir.path(),
        replica: "c1",
        backend: Backend::Embedded(dir.path().join("registry.json")),
        extra: vec![],
    });
    let db = dir.path().join("app.db");
    let app_options = || AppOptions {
        dir: dir.path(),
        id: "app-1",
        control: vec![control.grpc_url()],
        store: Store::Sqlite(db.clone()),
        env: vec![],
    };
    let mut app = AppProcess::start(app_options());
    let edge = EdgeProcess::start(EdgeOptions {
        certs: &certs,
        dir: dir.path(),
        executors: 1,
        extra: app_login_edge_flags("e1", &[control.grpc_url()]),
        with_rsa: false,
        tls_only: false,
        log_filter_from_file: false,
    });
    wait_for("app-1 to own every shard", Duration::from_secs(20), || {
        (control.get("/v1/admin/shards")["per_app"]["app-1"] == 1024).then_some(())
    });
    app.add_piles(FIRST_PILE, CHARGERS);
    pylon_bench::accounts::provision(
        &format!("http://{}", app.http),
        pylon_tests::control::ADMIN_TOKEN,
        FIRST_PILE,
        CHARGERS,
        1_000_000,
    )
    .expect("accounts for the fleet");
    let fleet = ChargingFleet::start(
        dir.path(),
        Reach::Edge(edge.tcp),
        FIRST_PILE,
        CHARGERS,
        1,
        3,
    );
    fleet.wait_confirmed(20, Duration::from_secs(60));

    // A backup while the fleet charges.
    let config = settings(dir.path(), "");
    let config_arg = config.display().to_string();
    let confirmed_before_backup = fleet.confirmed_trades();
    let (ok, text) = pylonctl(&["backup", "create", "--config", &config_arg]);
    assert!(ok, "backup create: {text}");
    assert!(
        text.contains("stored in repo-a") && text.contains("stored in repo-b"),
        "{text}"
    );
    let id = text
        .split_whitespace()
        .nth(1)
        .expect("the backup's id")
        .to_owned();
    let (ok, text) = pylonctl(&["backup", "list", "--config", &config_arg]);
    assert!(
        ok && text.matches(&id).count() == 2 && text.contains("never"),
        "{text}"
    );
    let (ok, text) = pylonctl(&["backup", "verify", "--config", &config_arg]);
    assert!(ok, "verify: {text}");
    assert_eq!(text.matches("store intact").count(), 2, "{text}");
    assert!(text.contains("registry snapshot with"), "{text}");
    let (_, text) = pylonctl(&["backup", "list", "--config", &config_arg]);
    assert_eq!(text.matches("ok at").count(), 2, "{text}");

    // One repository's copy of the store is damaged: verify says so, and says which.
    let part = std::fs::read_dir(dir.path().join("repo-a").join(&id))
        .expect("the backup's folder")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with("-sqlite.sealed"))
        .expect("the store's part");
    let mut bytes = std::fs::read(&part).expect("reading the part");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    std::fs::write(&part, bytes).expect("damaging the part");
    let (ok, text) = pylonctl(&["backup", "verify", "--config", &config_arg, &id]);
    assert!(!ok, "a damaged backup verified: {text}");
    assert!(
        text.contains("repo-a") && text.contains("FAILED") && text.contains("damaged"),
        "{text}"
    );
    assert!(text.contains("repo-b") && text.contains("ok ("), "{text}");

    // The store is lost: the app dies and its database is gone.
    fleet.wait_confirmed(
        confirmed_before_backup.len() as u64 + 10,
        Duration::from_secs(60),
    );
    app.kill();
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    let (ok, text) = pylonctl(&[
        "backup",
        "restore",
        "--config",
        &config_arg,
        "latest",
        "--only",
        "store",
    ]);
    assert!(ok, "restore: {text}");
    assert!(
        text.contains("from repo-b"),
        "the damaged copy was used: {text}"
    );
    assert!(db.exists());
    // Restoring over what exists needs --force.
    let (ok, text) = pylonctl(&[
        "backup",
        "restore",
        "--config",
        &config_arg,
        "latest",
        "--only",
        "store",
    ]);
    assert!(!ok && text.contains("--force"), "{text}");

    // The app comes back on the restored store, and charging resumes.
    let restored = stored_trades(&db);
    let missing: Vec<&String> = confirmed_before_backup
        .iter()
        .filter(|t| !restored.contains(*t))
        .collect();
    assert!(
        missing.is_empty(),
        "records confirmed before the backup are missing: {missing:?}"
    );
    let app = AppProcess::start_on(app_options(), app.grpc, app.http);
    let before = fleet.confirmed();
    fleet.wait_confirmed(before + 20, Duration::from_secs(90));
    let confirmed = fleet.confirmed_trades();
    let report = fleet.stop();
    let stored = stored_trades(&db);
    let lost = confirmed.iter().filter(|t| !stored.contains(*t)).count();
    eprintln!(
        "restore drill: {} records confirmed before the backup, all restored; {lost} confirmed between the backup and the loss are gone (SQLite has no log to replay); {} confirmed in all",
        confirmed_before_backup.len(),
        confirmed.len()
    );
    assert_eq!(report["records_abandoned"], 0, "{report}");
    drop(app);
}

#[test]
fn the_scheduled_service_backs_up_verifies_prunes_and_reports_the_age_of_the_newest_verified_backup(
) {
    let dir = tempfile::tempdir().expect("temp dir");
    // A small platform's files: a registry snapshot, a store, a key file.
    std::fs::write(
        dir.path().join("registry.json"),
        r#"{"version":2,"journal_seq":0,"revision":1,"next_lease":1,"leases":[],"keys":[]}"#,
    )
    .expect("registry");
    let db = rusqlite::Connection::open(dir.path().join("app.db")).expect("store");
    db.execute_batch("CREATE TABLE transaction_records (trade_no TEXT PRIMARY KEY); INSERT INTO transaction_records VALUES ('1');")
        .expect("a record");
    drop(db);
    pylon_app::revenue::vault::Vault::create_file(&dir.path().join("card-keys.toml"))
        .expect("card keys");
    let config = settings(dir.path(), "\n[schedule]\nevery_minutes = 60\nkeep = 2\n");
    // Three earlier runs (`--once`): pruned to two.
    for _ in 0..3 {
        let (ok, text) = output(
            Command::new(binary("pylon-backup"))
                .arg("--config")
                .arg(&config)
                .args(["--once", "--listen", &local(free_port()).to_string()]),
        );
        assert!(ok, "pylon-backup --once: {text}");
        std::thread::sleep(Duration::from_millis(1100));
    }
    for repo in ["repo-a", "repo-b"] {
        let backups = std::fs::read_dir(dir.path().join(repo))
            .expect("repository")
            .flatten()
            .filter(|e| e.path().join("manifest.json").exists())
            .count();
        assert_eq!(backups, 2, "{repo} keeps 2");
    }
    // The service: the newest backup is recent, so it waits; its metrics say how old the
    // newest verified one is.
    let listen = local(free_port());
    let mut service = Command::new(binary("pylon-backup"))
        .arg("--config")
        .arg(&config)
        .args(["--listen", &listen.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("starting pylon-backup");
    let metrics = wait_for("pylon-backup's metrics", Duration::from_secs(20), || {
        let (code, body) = http::get(listen, "/metrics");
        (code == 200 && body.contains("pylon_backup_verified_age_seconds{repository=\"repo-b\"}"))
            .then_some(body)
    });
    assert_eq!(http::get(listen, "/readyz").0, 200);
    let age = metrics
        .lines()
        .find(|l| l.starts_with("pylon_backup_verified_age_seconds{repository=\"repo-a\"}"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse::<f64>().ok())
        .expect("the age of the newest verified backup");
    assert!((0.0..60.0).contains(&age), "age {age}\n{metrics}");
    assert!(
        metrics.contains("pylon_backup_schedule_seconds 3600"),
        "{metrics}"
    );
    let _ = service.kill();
    let _ = service.wait();
}
