//! A store that survives its primary: three PostgreSQL servers kept by Patroni on etcd, with
//! synchronous replication, behind one app instance while a fleet charges. The primary
//! (Patroni and its server together, as a machine dying) is killed: a standby is promoted,
//! the app finds it on its own and goes on, and every record the fleet saw confirmed is
//! in the store, once. The old primary then rejoins as a replica.

use std::time::{Duration, Instant};

use pylon_bench::patroni::PatroniCluster;
use pylon_tests::app::Store;
use pylon_tests::certs::TestCerts;
use pylon_tests::charging::ChargingPlatform;
use pylon_tests::etcd::EtcdCluster;
use pylon_tests::platform::runtime;

const FIRST_PILE: u64 = 32_010_720_000_000;
const CHARGERS: u64 = 40;

#[test]
fn the_store_loses_its_primary_under_charging_and_no_confirmed_record_is_lost_or_doubled() {
    let etcd = runtime().block_on(EtcdCluster::start(1)).expect("etcd");
    let mut pg = PatroniCluster::start(&etcd.endpoints(), 3).expect("a Patroni cluster");
    let dir = tempfile::tempdir().expect("temp dir");
    let certs = TestCerts::generate(dir.path()).expect("certs");
    let platform = ChargingPlatform::start(
        dir.path(),
        &certs,
        Store::Postgres(pg.url()),
        FIRST_PILE,
        CHARGERS,
    );
    let (app, fleet) = (&platform.app, platform.fleet);
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
