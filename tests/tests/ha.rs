//! A store that survives its primary: three PostgreSQL servers kept by Patroni on etcd, with
//! synchronous replication, behind one app instance while a fleet charges. The primary
//! (Patroni and its server together, as a machine dying) is killed: a standby is promoted,
//! the app finds it on its own and goes on, and every record the fleet saw confirmed is
//! in the store, once. The old primary then rejoins as a replica.

use std::time::{Duration, Instant};

use pylon_bench::patroni::PatroniCluster;
use pylon_tests::app::{AppOptions, AppProcess, Store};
use pylon_tests::certs::TestCerts;
use pylon_tests::control::{app_login_edge_flags, Backend, ControlOptions, ControlProcess};
use pylon_tests::edge::{EdgeOptions, EdgeProcess};
use pylon_tests::etcd::EtcdCluster;
use pylon_tests::fleet::{ChargingFleet, Reach};
use pylon_tests::platform::runtime;
use pylon_tests::wait_for;

const FIRST_PILE: u64 = 32_010_720_000_000;
const CHARGERS: u64 = 40;

#[test]
fn the_store_loses_its_primary_under_charging_and_no_confirmed_record_is_lost_or_doubled() {
    let etcd = runtime().block_on(EtcdCluster::start(1)).expect("etcd");
    let mut pg = PatroniCluster::start(&etcd.endpoints(), 3).expect("a Patroni cluster");
    let dir = tempfile::tempdir().expect("temp dir");
    let certs = TestCerts::generate(dir.path()).expect("certs");
    let control = ControlProcess::start(ControlOptions {
        dir: dir.path(),
        replica: "c1",
        backend: Backend::Embedded(dir.path().join("registry.json")),
        extra: vec![],
    });
    let app = AppProcess::start(AppOptions {
        dir: dir.path(),
        id: "app-1",
        control: vec![control.grpc_url()],
        store: Store::Postgres(pg.url()),
        env: vec![],
    });
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
    fleet.wait_confirmed(30, Duration::from_secs(60));

    // The primary's machine dies.
    let old = pg.leader().expect("a leader");
    let confirmed_before = fleet.confirmed();
    pg.kill(old);
    let killed = Instant::now();
    let new = pg
        .wait_leader(Some(old), Duration::from_secs(60))
        .expect("a standby promoted");
    let promoted = killed.elapsed();
    fleet.wait_confirmed(confirmed_before + 30, Duration::from_secs(90));
    let charging_again = killed.elapsed();
    eprintln!(
        "{} died; {} promoted after {:.1} s; 30 more records confirmed {:.1} s after the death",
        pg.name(old),
        pg.name(new),
        promoted.as_secs_f64(),
        charging_again.as_secs_f64()
    );
    assert!(
        app.log_text()
            .contains("PostgreSQL is unavailable: trying again"),
        "the app did not notice the failover:\n{}",
        app.log_text()
    );

    // The old primary comes back, as a replica of the new one.
    pg.restart(old).expect("restarting the old primary");
    pg.wait_healthy(Duration::from_secs(90))
        .expect("the old primary rejoined");
    assert_eq!(pg.leader(), Some(new), "leadership stayed");
    let before = fleet.confirmed();
    fleet.wait_confirmed(before + 10, Duration::from_secs(60));

    let confirmed: Vec<String> = fleet.confirmed_trades();
    let report = fleet.stop();
    let stored = pylon_tests::records::postgres(&pg.url());
    let lost = stored.missing(&confirmed);
    assert!(
        lost.is_empty(),
        "{} confirmed records are not in the store: {lost:?}\n{report}",
        lost.len()
    );
    assert_eq!(
        stored.duplicated(),
        0,
        "a record is stored or settled twice"
    );
    let rows = stored.rows;
    let sent = report["records_sent"].as_u64().unwrap_or(0);
    assert!(
        rows as u64 <= sent,
        "stored {rows} of {sent} sent: {report}"
    );
    assert_eq!(report["records_abandoned"], 0, "{report}");
    assert!(
        confirmed.len() as u64 >= confirmed_before + 40,
        "{} confirmed: {report}",
        confirmed.len()
    );
}
