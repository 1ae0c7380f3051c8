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

use pylon_tests::app::Store;
use pylon_tests::certs::TestCerts;
use pylon_tests::charging::ChargingPlatform;
use pylon_tests::{binary, free_port, http, local, output, pylonctl, wait_for};

const FIRST_PILE: u64 = 32_010_730_000_000;
const CHARGERS: u64 = 30;

/// `pylonctl backup VERB --config CONFIG ARGS...`
fn backup(config: &str, verb: &str, args: &[&str]) -> (bool, String) {
    output(
        Command::new(binary("pylonctl"))
            .args(["backup", verb, "--config", config])
            .args(args),
    )
}

/// The `[store]` section for the app's SQLite database in `dir`.
fn sqlite_store(dir: &Path) -> String {
    format!("[store]\nsqlite = \"{}\"\n", dir.join("app.db").display())
}

/// The `[registry]` section for the embedded registry in `dir`.
fn embedded_registry(dir: &Path) -> String {
    format!(
        "[registry]\nembedded = \"{}\"\n",
        dir.join("registry.json").display()
    )
}

/// A backup settings file with two repositories in `dir`, the card key file, and
/// `sources` (the registry and store sections); returns its path.
fn settings(dir: &Path, sources: &str) -> std::path::PathBuf {
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

{sources}
[[repository]]
name = "repo-a"
path = "{a}"

[[repository]]
name = "repo-b"
path = "{b}"
"#,
            key = key.display(),
            keys = dir.join("card-keys.toml").display(),
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
    let db = dir.path().join("app.db");
    let mut platform = ChargingPlatform::start(
        dir.path(),
        &certs,
        Store::Sqlite(db.clone()),
        FIRST_PILE,
        CHARGERS,
    );
    let fleet = &platform.fleet;

    // A backup while the fleet charges.
    let sources = format!(
        "{}\n{}",
        embedded_registry(dir.path()),
        sqlite_store(dir.path())
    );
    let config = settings(dir.path(), &sources);
    let config_arg = config.display().to_string();
    let confirmed_before_backup = fleet.confirmed_trades();
    let (ok, text) = backup(&config_arg, "create", &[]);
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
    let (ok, text) = backup(&config_arg, "list", &[]);
    assert!(
        ok && text.matches(&id).count() == 2 && text.contains("never"),
        "{text}"
    );
    let (ok, text) = backup(&config_arg, "verify", &[]);
    assert!(ok, "verify: {text}");
    assert_eq!(text.matches("store intact").count(), 2, "{text}");
    assert!(text.contains("registry snapshot with"), "{text}");
    let (_, text) = backup(&config_arg, "list", &[]);
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
    let (ok, text) = backup(&config_arg, "verify", &[&id]);
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
    let restore_store = || backup(&config_arg, "restore", &["latest", "--only", "store"]);
    platform.app.kill();
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    let (ok, text) = restore_store();
    assert!(ok, "restore: {text}");
    assert!(
        text.contains("from repo-b"),
        "the damaged copy was used: {text}"
    );
    assert!(db.exists());
    // Restoring over what exists needs --force.
    let (ok, text) = restore_store();
    assert!(!ok && text.contains("--force"), "{text}");

    // The app comes back on the restored store, and charging resumes.
    let restored = pylon_tests::records::sqlite(&db);
    let missing = restored.missing(&confirmed_before_backup);
    assert!(
        missing.is_empty(),
        "records confirmed before the backup are missing: {missing:?}"
    );
    platform.restart_app();
    let fleet = &platform.fleet;
    let before = fleet.confirmed();
    fleet.wait_confirmed(before + 20, Duration::from_secs(90));
    let confirmed = fleet.confirmed_trades();
    let report = platform.fleet.stop();
    let stored = pylon_tests::records::sqlite(&db);
    let lost = stored.missing(&confirmed).len();
    assert_eq!(
        stored.duplicated(),
        0,
        "a record is stored or settled twice"
    );
    eprintln!(
        "restore drill: {} records confirmed before the backup, all restored; {lost} confirmed between the backup and the loss are gone (SQLite has no log to replay); {} confirmed in all",
        confirmed_before_backup.len(),
        confirmed.len()
    );
    assert_eq!(report["records_abandoned"], 0, "{report}");
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
    let sources = format!(
        "{}\n{}\n[schedule]\nevery_minutes = 60\nkeep = 2\n",
        embedded_registry(dir.path()),
        sqlite_store(dir.path())
    );
    let config = settings(dir.path(), &sources);
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
    struct Killed(std::process::Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _service = Killed(
        Command::new(binary("pylon-backup"))
            .arg("--config")
            .arg(&config)
            .args(["--listen", &listen.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("starting pylon-backup"),
    );
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
}

/// Waits for 20 more records confirmed on the restored store at `url`, and checks that
/// none is stored or settled twice; returns what the store holds.
fn charging_resumes_without_duplicates(
    platform: &ChargingPlatform,
    url: &str,
) -> pylon_tests::records::StoredRecords {
    let before = platform.fleet.confirmed();
    platform
        .fleet
        .wait_confirmed(before + 20, Duration::from_secs(120));
    let stored = pylon_tests::records::postgres(url);
    assert_eq!(
        stored.duplicated(),
        0,
        "a record is stored or settled twice"
    );
    stored
}

/// Empties PostgreSQL's data folder `data` (its server stopped: the disk lost) and
/// restores the newest backup's store into it, with `extra` restore flags.
fn restore_store_into_emptied(
    config: &str,
    data: &Path,
    owner: Option<(u32, u32)>,
    extra: &[&str],
) -> (bool, String) {
    std::fs::remove_dir_all(data).expect("emptying the data folder");
    std::fs::create_dir(data).expect("an empty data folder");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(data, std::fs::Permissions::from_mode(0o700)).expect("mode");
    }
    give(data, owner);
    let data = data.display().to_string();
    let mut args = vec!["latest", "--only", "store", "--pg-data", &data, "--force"];
    args.extend_from_slice(extra);
    backup(config, "restore", &args)
}

/// Runs `program` with `args` as `owner` (when the tests run as root).
fn run_as(owner: Option<(u32, u32)>, program: &str, args: &[&str]) -> (bool, String) {
    let mut cmd = match owner {
        Some((uid, gid)) => {
            let mut c = Command::new("setpriv");
            c.args([
                &format!("--reuid={uid}"),
                &format!("--regid={gid}"),
                "--init-groups",
                "--",
                program,
            ]);
            c
        }
        None => Command::new(program),
    };
    output(cmd.args(args))
}

/// Gives `path` (and what is under it) to `owner`.
fn give(path: &Path, owner: Option<(u32, u32)>) {
    if let Some((uid, gid)) = owner {
        let (ok, text) = output(
            Command::new("chown")
                .arg("-R")
                .arg(format!("{uid}:{gid}"))
                .arg(path),
        );
        assert!(ok, "chown {}: {text}", path.display());
    }
}

#[test]
fn postgresql_is_backed_up_by_pgbackrest_into_two_repositories_and_restored_to_its_archive() {
    let dir = tempfile::tempdir().expect("temp dir");
    let certs = TestCerts::generate(dir.path()).expect("certs");
    // pgBackRest's folder belongs to PostgreSQL's user, who archives into it.
    let pgbr = tempfile::Builder::new()
        .prefix("pylon-pgbackrest-")
        .tempdir()
        .expect("a pgBackRest folder");
    let conf = pgbr.path().join("pgbackrest.conf");
    let archive_command = format!(
        "pgbackrest --config={} --stanza=pylon archive-push %p",
        conf.display()
    );
    let mut pg = pylon_tests::postgres::PostgresCluster::start_with_settings(&[
        ("archive_mode", "on"),
        ("archive_command", &archive_command),
        // A busy server hands a WAL segment to the archive at least every second.
        ("archive_timeout", "1"),
    ])
    .expect("a PostgreSQL cluster");
    let owner = pg.owner().expect("PostgreSQL's user");
    let cipher = |n: u8| {
        let mut random = [0u8; 16];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut random)
            .expect("random bytes");
        format!("pylon-test-cipher-{n}-{}", hex::encode(random))
    };
    std::fs::write(
        &conf,
        format!(
            "[global]\nrepo1-path={p}/repo1\nrepo1-cipher-type=aes-256-cbc\nrepo1-cipher-pass={c1}\n\
             repo1-retention-full=4\nrepo2-path={p}/repo2\nrepo2-cipher-type=aes-256-cbc\n\
             repo2-cipher-pass={c2}\nrepo2-retention-full=4\nlog-path={p}/log\nlock-path={p}/lock\n\
             log-level-console=warn\nlog-level-file=off\nstart-fast=y\n\n\
             [pylon]\npg1-path={data}\npg1-port={port}\npg1-socket-path={socket}\npg1-user=postgres\n",
            p = pgbr.path().display(),
            c1 = cipher(1),
            c2 = cipher(2),
            data = pg.data_dir().display(),
            port = pg.port(),
            socket = pg.dir().display(),
        ),
    )
    .expect("pgbackrest.conf");
    give(pgbr.path(), owner);
    let config_arg = format!("--config={}", conf.display());
    let (ok, text) = run_as(
        owner,
        "pgbackrest",
        &[&config_arg, "--stanza=pylon", "stanza-create"],
    );
    assert!(ok, "stanza-create: {text}");

    let platform = ChargingPlatform::start(
        dir.path(),
        &certs,
        Store::Postgres(pg.url()),
        FIRST_PILE,
        CHARGERS,
    );
    let user = if owner.is_some() {
        "user = \"postgres\"\n"
    } else {
        ""
    };
    let sources = format!(
        "{}\n[store.pgbackrest]\nstanza = \"pylon\"\nconfig = \"{}\"\nrepos = [1, 2]\n{user}",
        embedded_registry(dir.path()),
        conf.display()
    );
    let config = settings(dir.path(), &sources);
    let config_arg = config.display().to_string();
    let confirmed_before_backup = platform.fleet.confirmed_trades();
    let (ok, text) = backup(&config_arg, "create", &[]);
    assert!(ok, "backup create: {text}");
    let (ok, text) = backup(&config_arg, "verify", &[]);
    assert!(ok, "verify: {text}");
    // Each Pylon repository's verification restores both pgBackRest sets and counts.
    assert_eq!(text.matches("restores,").count(), 4, "{text}");

    // Charging goes on; five seconds later the server dies and its data is lost.
    let before = platform.fleet.confirmed();
    platform
        .fleet
        .wait_confirmed(before + 10, Duration::from_secs(60));
    let archived_by_now = platform.fleet.confirmed_trades();
    std::thread::sleep(Duration::from_secs(5));
    let confirmed_at_loss = platform.fleet.confirmed_trades();
    pg.stop();
    let data = pg.data_dir();
    let (ok, text) = restore_store_into_emptied(&config_arg, &data, owner, &[]);
    assert!(ok, "restore: {text}");
    assert!(text.contains("repo1"), "{text}");
    pg.start_again().expect("PostgreSQL on the restored data");

    // The app finds its store again and charging resumes.
    let stored = charging_resumes_without_duplicates(&platform, &pg.url());
    let missing =
        |list: &[String]| -> Vec<String> { stored.missing(list).into_iter().cloned().collect() };
    assert!(
        missing(&confirmed_before_backup).is_empty(),
        "records from before the backup are gone"
    );
    // The archive replayed past the backup: what was confirmed 5 s before the loss is back.
    assert!(
        missing(&archived_by_now).is_empty(),
        "records confirmed 5 s before the loss are gone: {:?}",
        missing(&archived_by_now)
    );
    eprintln!(
        "pgBackRest drill: {} records confirmed before the backup, {} by 5 s before the loss, {} at the loss; {} of those not in the restored store",
        confirmed_before_backup.len(),
        archived_by_now.len(),
        confirmed_at_loss.len(),
        missing(&confirmed_at_loss).len()
    );

    // A mistake undone: the store's tables dropped while charging, the backup restored
    // to the moment before (--until), and charging resumed with nothing confirmed lost.
    let before = platform.fleet.confirmed();
    platform
        .fleet
        .wait_confirmed(before + 10, Duration::from_secs(60));
    let dropped_at = pylon_tests::mishap::drop_tables(&pg.url());
    let confirmed_at_drop = platform.fleet.confirmed_trades();
    pylon_tests::mishap::wait_archived(&pg.url());
    pg.stop();
    let (ok, text) =
        restore_store_into_emptied(&config_arg, &data, owner, &["--until", &dropped_at]);
    assert!(ok, "restore --until {dropped_at}: {text}");
    assert!(text.contains(&dropped_at[..10]), "{text}");
    pg.start_again()
        .expect("PostgreSQL recovering to the moment before the drop");
    let stored = charging_resumes_without_duplicates(&platform, &pg.url());
    let lost: Vec<&String> = stored.missing(&confirmed_at_drop);
    assert!(
        lost.is_empty(),
        "records confirmed before the drop are gone: {lost:?}"
    );
    eprintln!(
        "point-in-time drill: tables dropped at {dropped_at}; all {} records confirmed by then restored",
        confirmed_at_drop.len()
    );
    let report = platform.fleet.stop();
    assert_eq!(report["records_abandoned"], 0, "{report}");
}

#[test]
fn an_etcd_registry_is_backed_up_as_a_snapshot_and_its_keys_go_back_into_a_running_cluster() {
    let rt = pylon_tests::platform::runtime();
    let etcd = rt
        .block_on(pylon_tests::etcd::EtcdCluster::start(1))
        .expect("etcd");
    rt.block_on(async {
        let mut client = etcd.root_client().await.expect("an etcd client");
        for i in 0..50 {
            client
                .put(format!("/pylon/test/{i}"), vec![b'x'; 100], None)
                .await
                .expect("a key");
        }
        // A live process's presence (held by a lease) is not a key to restore.
        let lease = client.lease_grant(300, None).await.expect("a lease").id();
        client
            .put(
                "/pylon/members/edge/live",
                "up",
                Some(etcd_client::PutOptions::new().with_lease(lease)),
            )
            .await
            .expect("a leased key");
    });
    let dir = tempfile::tempdir().expect("temp dir");
    pylon_app::revenue::vault::Vault::create_file(&dir.path().join("card-keys.toml"))
        .expect("card keys");
    let toml_list = |endpoints: Vec<String>| -> String {
        endpoints
            .iter()
            .map(|e| format!("\"{e}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let config = settings(
        dir.path(),
        &format!("[registry]\netcd = [{}]\n", toml_list(etcd.endpoints())),
    );
    let config_arg = config.display().to_string();
    let (ok, text) = backup(&config_arg, "create", &[]);
    assert!(ok, "backup create: {text}");
    let (ok, text) = backup(&config_arg, "verify", &[]);
    assert!(ok, "verify: {text}");
    assert_eq!(text.matches("etcd snapshot intact").count(), 2, "{text}");
    assert_eq!(text.matches("50 registry keys").count(), 2, "{text}");

    // Written out: the snapshot and the keys, with what to do next.
    let out = dir.path().join("restored");
    let (ok, text) = backup(
        &config_arg,
        "restore",
        &["latest", "--to", &out.display().to_string()],
    );
    assert!(ok, "restore: {text}");
    assert!(text.contains("etcdutl snapshot restore"), "{text}");
    assert!(text.contains("--etcd <endpoints>"), "{text}");
    assert!(out.join(pylon_backup::ETCD_SNAPSHOT_FILE).is_file());
    assert!(out.join(pylon_backup::etcd_keys::FILE).is_file());
    assert!(out
        .join(
            dir.path()
                .join("card-keys.toml")
                .strip_prefix("/")
                .expect("absolute")
        )
        .is_file());

    // Into the same cluster after changes: the backup's keys come back, newer lasting
    // keys go, and neither other tenants' keys nor leased ones are touched.
    rt.block_on(async {
        let mut client = etcd.root_client().await.expect("an etcd client");
        client.delete("/pylon/test/3", None).await.expect("delete");
        client
            .put("/pylon/test/4", "changed", None)
            .await
            .expect("put");
        client
            .put("/pylon/test/new", "newer", None)
            .await
            .expect("put");
        client
            .put("/service/pylon/leader", "patroni's", None)
            .await
            .expect("put");
    });
    let endpoints = etcd.endpoints().join(",");
    let (ok, text) = backup(
        &config_arg,
        "restore",
        &["latest", "--only", "registry", "--etcd", &endpoints],
    );
    assert!(ok, "restore --etcd: {text}");
    assert!(
        text.contains("registry keys written into etcd (50 keys; 1 newer ones removed)"),
        "{text}"
    );
    let value = |client: &mut etcd_client::Client, key: &'static str| {
        let answer = rt.block_on(client.get(key, None)).expect("get");
        answer.kvs().first().map(|kv| kv.value().to_vec())
    };
    let mut client = rt.block_on(etcd.root_client()).expect("an etcd client");
    assert_eq!(value(&mut client, "/pylon/test/3"), Some(vec![b'x'; 100]));
    assert_eq!(value(&mut client, "/pylon/test/4"), Some(vec![b'x'; 100]));
    assert_eq!(value(&mut client, "/pylon/test/new"), None);
    assert_eq!(
        value(&mut client, "/service/pylon/leader"),
        Some(b"patroni's".to_vec())
    );
    assert_eq!(
        value(&mut client, "/pylon/members/edge/live"),
        Some(b"up".to_vec())
    );

    // Into a new, empty cluster: the site's registry lost with its etcd.
    let fresh = rt
        .block_on(pylon_tests::etcd::EtcdCluster::start(1))
        .expect("a second etcd");
    let (ok, text) = backup(
        &config_arg,
        "restore",
        &[
            "latest",
            "--only",
            "registry",
            "--etcd",
            &fresh.endpoints().join(","),
        ],
    );
    assert!(ok, "restore --etcd into a new cluster: {text}");
    let mut client = rt.block_on(fresh.root_client()).expect("an etcd client");
    let answer = rt
        .block_on(client.get(
            "/pylon/",
            Some(etcd_client::GetOptions::new().with_prefix()),
        ))
        .expect("get");
    assert_eq!(
        answer.kvs().len(),
        50,
        "the backup's 50 keys, and only them"
    );
}
