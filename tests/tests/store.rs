//! The business store's conformance suite: every behaviour is written once against
//! `Arc<dyn Store>` (or a [`Harness`] when it must reopen or tamper with the store) and run
//! on both backends: SQLite in a temporary file and PostgreSQL in a throwaway cluster.
//!
//! Also: acknowledged records survive SIGKILL of the process that stored them (SQLite),
//! and an unreachable PostgreSQL is `Unavailable`. `--ignored` runs a rough
//! `store_record` rate measurement for each backend.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pylon_app::store::postgres::PostgresStore;
use pylon_app::store::sqlite::SqliteStore;
use pylon_app::store::{
    BillingModel, GunStatus, Order, OrderOrigin, OrderState, Pile, SessionEvent, StatusChange,
    Store, StoreError, Stored, TransactionRecord,
};
use pylon_tests::postgres::PostgresCluster;
use serde_json::json;

// ---------------------------------------------------------------------------------------
// Backends.

/// A store plus what backs it, so that a test can reopen it or reach under it.
struct Harness {
    store: Option<Arc<dyn Store>>,
    backing: Backing,
}

enum Backing {
    Sqlite {
        path: PathBuf,
        _dir: tempfile::TempDir,
    },
    Postgres(PostgresCluster),
}

impl Harness {
    async fn sqlite() -> Harness {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("store.db");
        let store = SqliteStore::open(&path).expect("opening the SQLite store");
        Harness {
            store: Some(store),
            backing: Backing::Sqlite { path, _dir: dir },
        }
    }

    async fn postgres() -> Harness {
        let cluster = tokio::task::spawn_blocking(PostgresCluster::start)
            .await
            .expect("starting PostgreSQL")
            .expect("starting PostgreSQL");
        let store = PostgresStore::connect(&cluster.url())
            .await
            .expect("connecting to PostgreSQL");
        Harness {
            store: Some(store),
            backing: Backing::Postgres(cluster),
        }
    }

    fn store(&self) -> Arc<dyn Store> {
        self.store.clone().expect("the store is open")
    }

    /// Closes the store (every handle must be dropped by now) and opens it again.
    async fn reopen(&mut self) {
        let store = self.store.take().expect("the store is open");
        assert_eq!(
            Arc::strong_count(&store),
            1,
            "a test still holds the store it wants reopened"
        );
        drop(store);
        self.store = Some(match &self.backing {
            Backing::Sqlite { path, .. } => SqliteStore::open(path).expect("reopening SQLite"),
            Backing::Postgres(cluster) => PostgresStore::connect(&cluster.url())
                .await
                .expect("reconnecting to PostgreSQL"),
        });
    }

    /// Runs SQL straight on the database, behind the store's back.
    async fn execute(&self, sql: &str) {
        match &self.backing {
            Backing::Sqlite { path, .. } => {
                let conn = rusqlite::Connection::open(path).expect("opening SQLite directly");
                conn.busy_timeout(Duration::from_secs(5))
                    .expect("busy timeout");
                conn.execute_batch(sql).expect("raw SQLite statement");
            }
            Backing::Postgres(cluster) => {
                let client = pg_client(cluster).await;
                client
                    .batch_execute(sql)
                    .await
                    .expect("raw PostgreSQL statement");
            }
        }
    }

    /// (version, name, applied_at) of every applied migration.
    async fn migrations(&self) -> Vec<(i64, String, i64)> {
        const SQL: &str =
            "SELECT version, name, applied_at FROM schema_migrations ORDER BY version";
        match &self.backing {
            Backing::Sqlite { path, .. } => {
                let conn = rusqlite::Connection::open(path).expect("opening SQLite directly");
                let mut stmt = conn.prepare(SQL).expect("preparing");
                let rows = stmt
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .expect("querying");
                rows.collect::<Result<_, _>>().expect("reading migrations")
            }
            Backing::Postgres(cluster) => {
                let client = pg_client(cluster).await;
                let rows = client.query(SQL, &[]).await.expect("querying migrations");
                rows.iter()
                    .map(|r| (r.get(0), r.get(1), r.get(2)))
                    .collect()
            }
        }
    }
}

async fn pg_client(cluster: &PostgresCluster) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&cluster.url(), tokio_postgres::NoTls)
        .await
        .expect("connecting to PostgreSQL directly");
    tokio::spawn(connection);
    client
}

/// For every behaviour `name(Arc<dyn Store>)` (or `name(&mut Harness)` after `harness:`),
/// a test `sqlite::name` and a test `postgres::name`.
macro_rules! conformance {
    (store: $($name:ident),* ; harness: $($hname:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let h = super::Harness::sqlite().await;
                    super::$name(h.store()).await;
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $hname() {
                    let mut h = super::Harness::sqlite().await;
                    super::$hname(&mut h).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let h = super::Harness::postgres().await;
                    super::$name(h.store()).await;
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $hname() {
                    let mut h = super::Harness::postgres().await;
                    super::$hname(&mut h).await;
                }
            )*
        }
    };
}

#[path = "store/monitor.rs"]
mod monitor;
use monitor::{alarms_life, fleet_presence_and_lists};
#[path = "store/revenue.rs"]
mod revenue;
use revenue::{
    privacy_retention_and_erasure, revenue_concurrent_starts, revenue_start_and_settle,
    revenue_tariff_revisions,
};

conformance!(
    store: piles, billing_models, gun_status, concurrent_gun_status, events, ingest_batches, orders,
        conditional_order_moves, store_record, concurrent_store_record, records_by_pile_and_time,
        revenue_start_and_settle, revenue_concurrent_starts, revenue_tariff_revisions,
        privacy_retention_and_erasure, alarms_life, fleet_presence_and_lists;
    harness: reopen, corrupt_data,
);

// ---------------------------------------------------------------------------------------
// Sample data.

const PILE: &str = "32010200000001";
const OTHER_PILE: &str = "32010200000002";

fn trade(pile: &str, gun: &str, seq: u64) -> String {
    format!("{pile}{gun}{seq:016}")
}

fn pile(no: &str, name: &str) -> Pile {
    Pile {
        pile_no: no.into(),
        enabled: true,
        billing_model: 7,
        name: name.into(),
        last_login_at: None,
    }
}

fn order(trade_no: &str, pile: &str, created_at: i64) -> Order {
    Order {
        trade_no: trade_no.into(),
        pile_no: pile.into(),
        gun_no: "01".into(),
        state: OrderState::Starting,
        origin: OrderOrigin::Operator,
        balance: 10_000,
        created_at,
        updated_at: created_at,
        failure: None,
    }
}

fn record(trade_no: &str, pile: &str, end_time: i64) -> TransactionRecord {
    TransactionRecord {
        trade_no: trade_no.into(),
        pile_no: pile.into(),
        gun_no: "01".into(),
        start_time: end_time - 3_600_000,
        end_time,
        total_energy: 123_456,
        total_amount: 98_765,
        stop_reason: 0x40,
        fields: json!({
            "card_no": "0000001234567890",
            "vin": "LSVAU2180N2183294",
            "periods": [{"energy": 1000, "amount": 700}, {"energy": 0, "amount": 0}],
            "meter": {"start": 1_000_000u64, "end": 1_123_456u64},
            "note": "中文 ok",
        }),
        received_at: end_time + 500,
    }
}

fn status(pile: &str, gun: &str, status: u8, at: i64) -> GunStatus {
    GunStatus {
        pile_no: pile.into(),
        gun_no: gun.into(),
        status,
        data: json!({"voltage": 3800, "current": 1250, "soc": 57, "at": at}),
        updated_at: at,
    }
}

// ---------------------------------------------------------------------------------------
// Behaviours.

async fn piles(store: Arc<dyn Store>) {
    assert_eq!(store.pile(PILE).await.unwrap(), None);
    let mut first = pile(PILE, "north gate");
    store.upsert_pile(&first).await.unwrap();
    assert_eq!(store.pile(PILE).await.unwrap(), Some(first.clone()));

    first.enabled = false;
    first.billing_model = 9999;
    first.name = "north gate, bay 2".into();
    store.upsert_pile(&first).await.unwrap();
    assert_eq!(store.pile(PILE).await.unwrap(), Some(first.clone()));

    store.record_login(PILE, 1_700_000_000_123).await.unwrap();
    first.last_login_at = Some(1_700_000_000_123);
    assert_eq!(store.pile(PILE).await.unwrap(), Some(first.clone()));
    // Unknown pile: nothing to update, not an error.
    store.record_login("99999999999999", 1).await.unwrap();
    assert_eq!(store.pile("99999999999999").await.unwrap(), None);

    for i in 0..25u32 {
        let no = format!("3201020000{:04}", 100 + i);
        store
            .upsert_pile(&pile(&no, &format!("pile {i}")))
            .await
            .unwrap();
    }
    // Paging through everything, 10 at a time, in number order.
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store.piles(after.as_deref(), 10).await.unwrap();
        assert!(page.len() <= 10);
        if page.is_empty() {
            break;
        }
        after = page.last().map(|p| p.pile_no.clone());
        seen.extend(page.into_iter().map(|p| p.pile_no));
    }
    assert_eq!(seen.len(), 26);
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen, sorted);
    assert_eq!(seen[0], PILE);
    assert_eq!(store.piles(Some(&seen[25]), 10).await.unwrap(), vec![]);
    assert_eq!(store.piles(None, 0).await.unwrap(), vec![]);
}

async fn billing_models(store: Arc<dyn Store>) {
    assert_eq!(store.billing_model(7).await.unwrap(), None);
    let mut model = BillingModel {
        model_no: 7,
        fields: json!({
            "rates": [[12000, 8000], [10000, 8000], [8000, 6000], [5000, 4000]],
            "periods": (0..48).map(|i| i % 4).collect::<Vec<_>>(),
            "loss_ratio": 0,
        }),
        updated_at: 1_700_000_000_000,
    };
    store.upsert_billing_model(&model).await.unwrap();
    assert_eq!(store.billing_model(7).await.unwrap(), Some(model.clone()));
    model.fields["loss_ratio"] = json!(3);
    model.updated_at += 1;
    store.upsert_billing_model(&model).await.unwrap();
    assert_eq!(store.billing_model(7).await.unwrap(), Some(model.clone()));
    let max = BillingModel {
        model_no: u16::MAX,
        ..model.clone()
    };
    store.upsert_billing_model(&max).await.unwrap();
    assert_eq!(store.billing_model(u16::MAX).await.unwrap(), Some(max));
    assert_eq!(store.billing_model(8).await.unwrap(), None);
}

async fn gun_status(store: Arc<dyn Store>) {
    assert_eq!(store.gun_statuses(PILE).await.unwrap(), vec![]);
    let t = 1_700_000_000_000;
    // 2 idle, 2 again (data only), 3 charging, 3, 2 idle, 0 offline.
    let sequence = [
        (2, t),
        (2, t + 10),
        (3, t + 20),
        (3, t + 30),
        (2, t + 40),
        (0, t + 50),
    ];
    for (s, at) in sequence {
        store
            .set_gun_status(&status(PILE, "01", s, at))
            .await
            .unwrap();
    }
    store
        .set_gun_status(&status(PILE, "02", 1, t + 5))
        .await
        .unwrap();
    store
        .set_gun_status(&status(OTHER_PILE, "01", 3, t))
        .await
        .unwrap();

    let current = store.gun_statuses(PILE).await.unwrap();
    assert_eq!(
        current,
        vec![status(PILE, "01", 0, t + 50), status(PILE, "02", 1, t + 5)],
        "one row per gun, the last update's data, sorted by gun"
    );

    let change = |s, at| StatusChange {
        pile_no: PILE.into(),
        gun_no: "01".into(),
        status: s,
        at,
    };
    let all = store
        .status_history(PILE, "01", 0, i64::MAX, 100)
        .await
        .unwrap();
    assert_eq!(
        all,
        vec![
            change(2, t),
            change(3, t + 20),
            change(2, t + 40),
            change(0, t + 50)
        ],
        "history only when the status changed, oldest first"
    );
    // [from, to): t+20 in, t+50 out.
    assert_eq!(
        store
            .status_history(PILE, "01", t + 20, t + 50, 100)
            .await
            .unwrap(),
        vec![change(3, t + 20), change(2, t + 40)]
    );
    assert_eq!(
        store
            .status_history(PILE, "01", 0, i64::MAX, 2)
            .await
            .unwrap(),
        vec![change(2, t), change(3, t + 20)]
    );
    assert_eq!(
        store
            .status_history(PILE, "02", 0, i64::MAX, 100)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        store
            .status_history(PILE, "03", 0, i64::MAX, 100)
            .await
            .unwrap(),
        vec![]
    );
}

/// Concurrent updates of one gun (a new one, then a known one): the history never holds
/// the same status twice in a row, and ends with the current status.
async fn concurrent_gun_status(store: Arc<dyn Store>) {
    let at = 1_700_000_000_000;
    for round in 0..2u8 {
        let calls: Vec<_> = (0..40u8)
            .map(|i| {
                let store = store.clone();
                // Runs of equal statuses, so that some updates change nothing.
                let s = status(PILE, "01", (i / 3 + round) % 4, at);
                tokio::spawn(async move { store.set_gun_status(&s).await })
            })
            .collect();
        for call in calls {
            call.await.unwrap().unwrap();
        }
        let history = store
            .status_history(PILE, "01", 0, i64::MAX, 1000)
            .await
            .unwrap();
        assert!(!history.is_empty());
        for pair in history.windows(2) {
            assert_ne!(
                pair[0].status, pair[1].status,
                "a repeated status in {history:?}"
            );
        }
        let current = store.gun_statuses(PILE).await.unwrap();
        assert_eq!(current.len(), 1);
        assert_eq!(history.last().unwrap().status, current[0].status);
    }
}

async fn events(store: Arc<dyn Store>) {
    let a = trade(PILE, "01", 1);
    let b = trade(PILE, "01", 2);
    let event = |trade_no: &str, frame_type: u8, at: i64| SessionEvent {
        pile_no: PILE.into(),
        gun_no: "01".into(),
        trade_no: trade_no.into(),
        frame_type,
        fields: json!({"frame": frame_type, "at": at}),
        at,
    };
    // Stored out of time order; read back in time order, then in insertion order.
    let stored = [
        event(&a, 0x15, 300),
        event(&b, 0x15, 100),
        event(&a, 0x13, 100),
        event(&a, 0x17, 200),
        event(&a, 0x19, 200),
        event("", 0x25, 150),
    ];
    for e in &stored {
        store.append_event(e).await.unwrap();
    }
    assert_eq!(
        store.events(&a).await.unwrap(),
        vec![
            stored[2].clone(),
            stored[3].clone(),
            stored[4].clone(),
            stored[0].clone()
        ]
    );
    assert_eq!(store.events(&b).await.unwrap(), vec![stored[1].clone()]);
    assert_eq!(store.events("").await.unwrap(), vec![stored[5].clone()]);
    assert_eq!(store.events(&trade(PILE, "01", 3)).await.unwrap(), vec![]);
}

/// Batches of real-time status and events, as the app's write-behind makes them
/// (`business::ingest::Pending`): each gun's latest status, every change of it once
/// (the first one compared with the stored status), events in order.
async fn ingest_batches(store: Arc<dyn Store>) {
    use pylon_app::business::ingest::Pending;
    let t = 1_700_000_000_000;
    let a = trade(PILE, "01", 1);
    // Gun 01 was idle before this process started.
    store
        .set_gun_status(&status(PILE, "01", 2, t))
        .await
        .unwrap();
    let event = |frame_type: u8, at: i64| SessionEvent {
        pile_no: PILE.into(),
        gun_no: "01".into(),
        trade_no: a.clone(),
        frame_type,
        fields: json!({"frame": frame_type, "at": at}),
        at,
    };
    let mut pending = Pending::default();
    for (gun, code, at) in [
        ("01", 2, 10),
        ("01", 3, 20),
        ("02", 1, 25),
        ("01", 3, 30),
        ("01", 2, 40),
    ] {
        pending.status(status(PILE, gun, code, t + at));
    }
    pending.event(event(0x23, t + 20));
    pending.event(event(0x25, t + 21));
    pending.status(status(OTHER_PILE, "01", 0, t + 50));
    let batch = pending.take();
    store.write_ingest(batch).await.unwrap();
    // Writing an empty batch is harmless.
    store.write_ingest(pending.take()).await.unwrap();

    assert_eq!(
        store.gun_statuses(PILE).await.unwrap(),
        vec![status(PILE, "01", 2, t + 40), status(PILE, "02", 1, t + 25)]
    );
    let codes = |pile: &'static str, gun: &'static str| {
        let store = store.clone();
        async move {
            store
                .status_history(pile, gun, 0, i64::MAX, 100)
                .await
                .unwrap()
                .iter()
                .map(|h| (h.status, h.at - t))
                .collect::<Vec<_>>()
        }
    };
    // 01: idle before (set_gun_status), idle again at 10 is no change, then 3, 2.
    assert_eq!(codes(PILE, "01").await, vec![(2, 0), (3, 20), (2, 40)]);
    assert_eq!(codes(PILE, "02").await, vec![(1, 25)]);
    assert_eq!(codes(OTHER_PILE, "01").await, vec![(0, 50)]);
    assert_eq!(
        store.events(&a).await.unwrap(),
        vec![event(0x23, t + 20), event(0x25, t + 21)]
    );

    // The pile logged in again (it may have reported elsewhere): its first status is
    // compared with the stored one again, and written as history only if it differs.
    pending.forget_pile(PILE);
    pending.status(status(PILE, "01", 2, t + 60));
    pending.status(status(PILE, "02", 3, t + 61));
    store.write_ingest(pending.take()).await.unwrap();
    assert_eq!(codes(PILE, "01").await, vec![(2, 0), (3, 20), (2, 40)]);
    assert_eq!(codes(PILE, "02").await, vec![(1, 25), (3, 61)]);
}

/// A move happens only from the states given: a late reply cannot undo a stop.
async fn conditional_order_moves(store: Arc<dyn Store>) {
    let t = 1_700_000_000_000;
    let o = order(&trade(PILE, "01", 7), PILE, t);
    store.insert_order(&o).await.unwrap();
    let open = [OrderState::Starting, OrderState::Charging];
    assert!(store
        .move_order(&o.trade_no, &open, OrderState::Stopping, None, t + 1)
        .await
        .unwrap());
    // A start confirmation arriving now finds the order no longer starting.
    assert!(!store
        .move_order(
            &o.trade_no,
            &[OrderState::Starting],
            OrderState::Charging,
            None,
            t + 2
        )
        .await
        .unwrap());
    let now = store.order(&o.trade_no).await.unwrap().unwrap();
    assert_eq!((now.state, now.updated_at), (OrderState::Stopping, t + 1));
    assert!(!store
        .move_order(
            &trade(PILE, "01", 8),
            &open,
            OrderState::Failed,
            Some("x"),
            t
        )
        .await
        .unwrap());
}

async fn orders(store: Arc<dyn Store>) {
    let t = 1_700_000_000_000;
    let first = order(&trade(PILE, "01", 1), PILE, t);
    store.insert_order(&first).await.unwrap();
    assert_eq!(
        store.order(&first.trade_no).await.unwrap(),
        Some(first.clone())
    );
    match store.insert_order(&first).await {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("inserting an order twice: {other:?}"),
    }
    assert_eq!(
        store.order(&first.trade_no).await.unwrap(),
        Some(first.clone())
    );
    assert_eq!(store.order(&trade(PILE, "01", 99)).await.unwrap(), None);

    // Moves.
    assert!(store
        .update_order(&first.trade_no, OrderState::Charging, None, t + 1)
        .await
        .unwrap());
    let got = store.order(&first.trade_no).await.unwrap().unwrap();
    assert_eq!(
        (got.state, got.updated_at, got.created_at),
        (OrderState::Charging, t + 1, t)
    );
    assert!(!store
        .update_order(&trade(PILE, "01", 99), OrderState::Charging, None, t + 1)
        .await
        .unwrap());

    // More orders: pile / other pile, open and closed.
    let mut second = order(&trade(PILE, "02", 2), PILE, t + 10);
    second.origin = OrderOrigin::Pile;
    let mut third = order(&trade(OTHER_PILE, "01", 3), OTHER_PILE, t + 5);
    third.origin = OrderOrigin::Parallel;
    third.state = OrderState::Stopping;
    let failed = order(&trade(PILE, "01", 4), PILE, t + 20);
    for o in [&second, &third, &failed] {
        store.insert_order(o).await.unwrap();
    }
    assert!(store
        .update_order(
            &failed.trade_no,
            OrderState::Failed,
            Some("pile refused: 0x02"),
            t + 21
        )
        .await
        .unwrap());
    let got = store.order(&failed.trade_no).await.unwrap().unwrap();
    assert_eq!(got.state, OrderState::Failed);
    assert_eq!(got.failure.as_deref(), Some("pile refused: 0x02"));

    let trades = |orders: Vec<Order>| orders.into_iter().map(|o| o.trade_no).collect::<Vec<_>>();
    assert_eq!(
        trades(store.open_orders(None).await.unwrap()),
        vec![
            first.trade_no.clone(),
            third.trade_no.clone(),
            second.trade_no.clone()
        ],
        "open orders of all piles, oldest first"
    );
    assert_eq!(
        trades(store.open_orders(Some(PILE)).await.unwrap()),
        vec![first.trade_no.clone(), second.trade_no.clone()]
    );
    assert_eq!(
        store.open_orders(Some("99999999999999")).await.unwrap(),
        vec![]
    );

    // Range of one pile, newest first, [from, to).
    assert_eq!(
        trades(store.orders(PILE, t, t + 100, 10).await.unwrap()),
        vec![
            failed.trade_no.clone(),
            second.trade_no.clone(),
            first.trade_no.clone()
        ]
    );
    assert_eq!(
        trades(store.orders(PILE, t, t + 20, 10).await.unwrap()),
        vec![second.trade_no.clone(), first.trade_no.clone()]
    );
    assert_eq!(
        trades(store.orders(PILE, t, t + 100, 1).await.unwrap()),
        vec![failed.trade_no.clone()]
    );
    assert_eq!(
        trades(store.orders(OTHER_PILE, 0, i64::MAX, 10).await.unwrap()),
        vec![third.trade_no.clone()]
    );
}

async fn store_record(store: Arc<dyn Store>) {
    let t = 1_700_000_000_000;
    let trade_no = trade(PILE, "01", 1);
    let mut charging = order(&trade_no, PILE, t);
    charging.state = OrderState::Charging;
    store.insert_order(&charging).await.unwrap();
    assert_eq!(store.record(&trade_no).await.unwrap(), None);
    assert_eq!(store.record_count().await.unwrap(), 0);

    let rec = record(&trade_no, PILE, t + 3_600_000);
    assert_eq!(store.store_record(&rec).await.unwrap(), Stored::New);
    assert_eq!(store.record(&trade_no).await.unwrap(), Some(rec.clone()));
    let finished = store.order(&trade_no).await.unwrap().unwrap();
    assert_eq!(
        finished.state,
        OrderState::Finished,
        "the record finishes its order"
    );
    assert_eq!(finished.updated_at, rec.received_at);
    assert!(store.open_orders(None).await.unwrap().is_empty());

    // Retransmissions: the same frame, or one that differs, store nothing.
    assert_eq!(store.store_record(&rec).await.unwrap(), Stored::Duplicate);
    let mut changed = rec.clone();
    changed.total_amount += 1;
    changed.fields["note"] = json!("retransmitted");
    changed.received_at += 30_000;
    assert_eq!(
        store.store_record(&changed).await.unwrap(),
        Stored::Duplicate
    );
    assert_eq!(store.record(&trade_no).await.unwrap(), Some(rec.clone()));
    assert_eq!(store.record_count().await.unwrap(), 1);
    assert_eq!(store.order(&trade_no).await.unwrap(), Some(finished));

    // A record whose order already failed does not revive or finish it.
    let failed_trade = trade(PILE, "01", 2);
    store
        .insert_order(&order(&failed_trade, PILE, t))
        .await
        .unwrap();
    store
        .update_order(&failed_trade, OrderState::Failed, Some("timeout"), t + 5)
        .await
        .unwrap();
    assert_eq!(
        store
            .store_record(&record(&failed_trade, PILE, t + 10))
            .await
            .unwrap(),
        Stored::New
    );
    let still_failed = store.order(&failed_trade).await.unwrap().unwrap();
    assert_eq!(
        (still_failed.state, still_failed.updated_at),
        (OrderState::Failed, t + 5)
    );

    // A record without any order (started at the pile offline) is stored all the same.
    let orphan = record(&trade(OTHER_PILE, "02", 3), OTHER_PILE, t);
    assert_eq!(store.store_record(&orphan).await.unwrap(), Stored::New);
    assert_eq!(
        store.record(&orphan.trade_no).await.unwrap(),
        Some(orphan.clone())
    );
    assert_eq!(store.order(&orphan.trade_no).await.unwrap(), None);
    assert_eq!(store.record_count().await.unwrap(), 3);
}

async fn concurrent_store_record(store: Arc<dyn Store>) {
    let t = 1_700_000_000_000;
    let trade_no = trade(PILE, "01", 7);
    store
        .insert_order(&order(&trade_no, PILE, t))
        .await
        .unwrap();
    let rec = record(&trade_no, PILE, t + 1000);
    let calls: Vec<_> = (0..50)
        .map(|_| {
            let store = store.clone();
            let rec = rec.clone();
            tokio::spawn(async move { store.store_record(&rec).await })
        })
        .collect();
    let mut new = 0;
    for call in calls {
        match call.await.unwrap().unwrap() {
            Stored::New => new += 1,
            Stored::Duplicate => {}
        }
    }
    assert_eq!(
        new, 1,
        "exactly one of 50 concurrent calls stores the record"
    );
    assert_eq!(store.record_count().await.unwrap(), 1);
    assert_eq!(store.record(&trade_no).await.unwrap(), Some(rec));
    assert_eq!(
        store.order(&trade_no).await.unwrap().unwrap().state,
        OrderState::Finished
    );

    // 200 different records at once: all stored, each exactly once.
    let calls: Vec<_> = (0..200)
        .map(|i| {
            let store = store.clone();
            let rec = record(&trade(OTHER_PILE, "01", 1000 + i), OTHER_PILE, t + i as i64);
            tokio::spawn(async move { store.store_record(&rec).await })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap(), Stored::New);
    }
    assert_eq!(store.record_count().await.unwrap(), 201);
}

async fn records_by_pile_and_time(store: Arc<dyn Store>) {
    let t = 1_700_000_000_000;
    let hour = 3_600_000;
    // PILE: ends at t, t+1h, ..., t+9h; OTHER_PILE: same times.
    for i in 0..10u64 {
        let end = t + i as i64 * hour;
        store
            .store_record(&record(&trade(PILE, "01", i), PILE, end))
            .await
            .unwrap();
        store
            .store_record(&record(&trade(OTHER_PILE, "01", i), OTHER_PILE, end))
            .await
            .unwrap();
    }
    // Two records ending at the same moment: ordered by trade number, newest first.
    store
        .store_record(&record(&trade(PILE, "02", 100), PILE, t + 5 * hour))
        .await
        .unwrap();
    assert_eq!(store.record_count().await.unwrap(), 21);

    let ends = |records: Vec<TransactionRecord>| {
        records
            .into_iter()
            .map(|r| {
                assert_eq!(r.pile_no, PILE);
                ((r.end_time - t) / hour, r.trade_no)
            })
            .collect::<Vec<_>>()
    };
    // [t+3h, t+6h): 5h (two of them), 4h, 3h.
    assert_eq!(
        ends(
            store
                .records(PILE, t + 3 * hour, t + 6 * hour, 100)
                .await
                .unwrap()
        ),
        vec![
            (5, trade(PILE, "02", 100)),
            (5, trade(PILE, "01", 5)),
            (4, trade(PILE, "01", 4)),
            (3, trade(PILE, "01", 3)),
        ]
    );
    let newest = ends(store.records(PILE, 0, i64::MAX, 3).await.unwrap());
    assert_eq!(
        newest.iter().map(|(h, _)| *h).collect::<Vec<_>>(),
        vec![9, 8, 7]
    );
    assert_eq!(
        store
            .records(PILE, t + 10 * hour, i64::MAX, 10)
            .await
            .unwrap(),
        vec![]
    );
    assert_eq!(
        store
            .records("99999999999999", 0, i64::MAX, 10)
            .await
            .unwrap(),
        vec![]
    );
    // Every field comes back as stored.
    let one = store.records(OTHER_PILE, t, t + 1, 10).await.unwrap();
    assert_eq!(
        one,
        vec![record(&trade(OTHER_PILE, "01", 0), OTHER_PILE, t)]
    );
}

async fn reopen(h: &mut Harness) {
    let store = h.store();
    let t = 1_700_000_000_000;
    store.upsert_pile(&pile(PILE, "kept")).await.unwrap();
    let rec = record(&trade(PILE, "01", 1), PILE, t);
    assert_eq!(store.store_record(&rec).await.unwrap(), Stored::New);
    store
        .set_gun_status(&status(PILE, "01", 3, t))
        .await
        .unwrap();
    drop(store);
    let migrations = h.migrations().await;
    assert!(!migrations.is_empty());
    assert_eq!(migrations[0].0, 1);

    h.reopen().await;
    let store = h.store();
    assert_eq!(store.pile(PILE).await.unwrap(), Some(pile(PILE, "kept")));
    assert_eq!(
        store.record(&rec.trade_no).await.unwrap(),
        Some(rec.clone())
    );
    assert_eq!(store.store_record(&rec).await.unwrap(), Stored::Duplicate);
    assert_eq!(
        store.gun_statuses(PILE).await.unwrap(),
        vec![status(PILE, "01", 3, t)]
    );
    // Same status after the restart: still no new history row.
    store
        .set_gun_status(&status(PILE, "01", 3, t + 1))
        .await
        .unwrap();
    assert_eq!(
        store
            .status_history(PILE, "01", 0, i64::MAX, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    drop(store);
    assert_eq!(
        h.migrations().await,
        migrations,
        "reopening an up-to-date store applies nothing"
    );
    if let Backing::Sqlite { path, .. } = &h.backing {
        let conn = rusqlite::Connection::open(path).unwrap();
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |row| row.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }
}

/// Data that cannot be decoded is reported as corrupt, for that row only.
async fn corrupt_data(h: &mut Harness) {
    let store = h.store();
    let t = 1_700_000_000_000;
    let good = trade(PILE, "01", 1);
    let bad = trade(PILE, "01", 2);
    store.insert_order(&order(&good, PILE, t)).await.unwrap();
    store.insert_order(&order(&bad, PILE, t + 1)).await.unwrap();
    store.store_record(&record(&bad, PILE, t)).await.unwrap();
    store
        .set_gun_status(&status(PILE, "01", 2, t))
        .await
        .unwrap();

    h.execute(&format!(
        "UPDATE orders SET state = 'teleporting' WHERE trade_no = '{bad}';
         UPDATE transaction_records SET stop_reason = 300 WHERE trade_no = '{bad}';
         UPDATE gun_status SET status = -1;"
    ))
    .await;
    let is_corrupt = |what: &str, result: Result<(), StoreError>| match result {
        Err(StoreError::Corrupt(message)) => eprintln!("{what}: {message}"),
        other => panic!("{what}: expected Corrupt, got {other:?}"),
    };
    is_corrupt("order", store.order(&bad).await.map(drop));
    is_corrupt(
        "orders",
        store.orders(PILE, 0, i64::MAX, 10).await.map(drop),
    );
    is_corrupt("record", store.record(&bad).await.map(drop));
    is_corrupt("gun status", store.gun_statuses(PILE).await.map(drop));
    // The rest still reads.
    assert_eq!(store.order(&good).await.unwrap().unwrap().trade_no, good);
    assert_eq!(store.record_count().await.unwrap(), 1);

    if let Backing::Sqlite { .. } = h.backing {
        // JSON is TEXT in SQLite: it can go bad. (PostgreSQL's JSONB cannot hold bad JSON.)
        h.execute(&format!(
            "UPDATE transaction_records SET stop_reason = 1, fields = '{{not json' \
             WHERE trade_no = '{bad}'"
        ))
        .await;
        is_corrupt("record fields", store.record(&bad).await.map(drop));
    }
}

// ---------------------------------------------------------------------------------------
// Backend-specific.

/// A server that does not answer is `Unavailable`, at connect time and later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_unavailable() {
    let port = pylon_tests::free_port();
    let url = format!("postgres://postgres@127.0.0.1:{port}/pylon");
    match PostgresStore::connect(&url).await {
        Err(StoreError::Unavailable(message)) => eprintln!("connect: {message}"),
        other => panic!("connecting to nothing: {other:?}"),
    }
    match PostgresStore::connect("postgres://[bad").await {
        Err(StoreError::Backend(_)) => {}
        other => panic!("a malformed URL: {other:?}"),
    }

    let mut h = Harness::postgres().await;
    // A call tries again for its failover budget (45 s by default) before it says so.
    let store: Arc<dyn Store> = match &h.backing {
        Backing::Postgres(cluster) => {
            PostgresStore::connect_tuned(&cluster.url(), None, Duration::from_millis(300))
                .await
                .expect("connecting")
        }
        _ => unreachable!("a PostgreSQL harness"),
    };
    store.upsert_pile(&pile(PILE, "x")).await.unwrap();
    if let Backing::Postgres(cluster) = &mut h.backing {
        cluster.stop();
    }
    let rec = record(&trade(PILE, "01", 1), PILE, 1);
    for _ in 0..2 {
        match store.store_record(&rec).await {
            Err(StoreError::Unavailable(message)) => eprintln!("store_record: {message}"),
            other => panic!("storing with the server gone: {other:?}"),
        }
        match store.pile(PILE).await {
            Err(StoreError::Unavailable(_)) => {}
            other => panic!("reading with the server gone: {other:?}"),
        }
    }
}

const CHILD_DB: &str = "PYLON_STORE_TEST_CHILD_DB";

/// Not a test on its own: the child of `sqlite_acknowledged_records_survive_sigkill`,
/// which runs this binary again with `CHILD_DB` set. Four tasks store records and print
/// `ACK <trade_no>` each time `store_record` returned, until the process is killed.
#[test]
fn sqlite_durability_child() {
    let Some(path) = std::env::var_os(CHILD_DB) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let store = SqliteStore::open(Path::new(&path)).unwrap();
        let tasks: Vec<_> = (0..4u64)
            .map(|task| {
                let store = store.clone();
                tokio::spawn(async move {
                    for i in 0..1_000_000u64 {
                        let trade_no = trade(PILE, "01", task * 1_000_000 + i);
                        let stored = store.store_record(&record(&trade_no, PILE, 1)).await;
                        assert_eq!(stored.unwrap(), Stored::New);
                        let mut out = std::io::stdout().lock();
                        writeln!(out, "ACK {trade_no}").unwrap();
                        out.flush().unwrap();
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
    });
}

/// "Nothing acknowledged is ever lost": a process stores records and is SIGKILLed while
/// storing more; every record it saw acknowledged is there when the file is reopened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_acknowledged_records_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "sqlite_durability_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DB, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let pid = child.id();
    let acked = tokio::task::spawn_blocking(move || {
        let mut acked = BTreeSet::new();
        let mut killed = false;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(trade_no) = line.strip_prefix("ACK ") {
                acked.insert(trade_no.to_owned());
            }
            if acked.len() >= 300 && !killed {
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
                killed = true;
            }
        }
        // Lines already written before the kill are acknowledgements too.
        acked
    })
    .await
    .unwrap();
    let status = child.wait().unwrap();
    assert!(
        !status.success() && acked.len() >= 300,
        "the child should have been killed after 300 acknowledgements ({status}, {} acks)",
        acked.len()
    );

    let store = SqliteStore::open(&path).unwrap();
    let mut missing = Vec::new();
    for trade_no in &acked {
        if store.record(trade_no).await.unwrap().is_none() {
            missing.push(trade_no.clone());
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged records lost: {missing:?}",
        missing.len(),
        acked.len()
    );
    let count = store.record_count().await.unwrap();
    assert!(count >= acked.len() as u64);
    eprintln!(
        "{} acknowledged before SIGKILL, {count} stored (the rest were in flight)",
        acked.len()
    );
}

// ---------------------------------------------------------------------------------------
// Rough rates (not timed assertions): cargo test -p pylon-tests --test store -- --ignored
// --nocapture

async fn record_rate(store: Arc<dyn Store>) {
    let n = 2000u64;
    let start = Instant::now();
    for i in 0..n {
        let rec = record(&trade(PILE, "01", i), PILE, i as i64);
        assert_eq!(store.store_record(&rec).await.unwrap(), Stored::New);
    }
    let one = n as f64 / start.elapsed().as_secs_f64();

    let tasks = 64u64;
    let start = Instant::now();
    let calls: Vec<_> = (0..tasks)
        .map(|task| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..n / 4 {
                    let rec = record(&trade(OTHER_PILE, "01", task * n + i), OTHER_PILE, 1);
                    assert_eq!(store.store_record(&rec).await.unwrap(), Stored::New);
                }
            })
        })
        .collect();
    for call in calls {
        call.await.unwrap();
    }
    let many = (tasks * (n / 4)) as f64 / start.elapsed().as_secs_f64();
    eprintln!(
        "{}: store_record {one:.0}/s one caller at a time, {many:.0}/s with {tasks} concurrent callers",
        store.backend()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check"]
async fn sqlite_record_rate() {
    let h = Harness::sqlite().await;
    record_rate(h.store()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check"]
async fn postgres_record_rate() {
    let h = Harness::postgres().await;
    record_rate(h.store()).await;
}

/// A store over TLS: the server's certificate checked against the CA given (and the host
/// name), a plaintext client refused by the server, a client trusting another CA refused
/// by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_over_tls_is_verified() {
    let cluster = tokio::task::spawn_blocking(pylon_bench::postgres::PostgresCluster::start_tls)
        .await
        .expect("task")
        .expect("a TLS PostgreSQL");
    let ca = cluster.ca().expect("a CA").to_path_buf();
    let store = PostgresStore::connect_with(&cluster.url(), Some(&ca))
        .await
        .expect("TLS with the right CA");
    store
        .upsert_pile(&pile(PILE, "over TLS"))
        .await
        .expect("write");
    assert_eq!(
        store.pile(PILE).await.expect("read").map(|p| p.name),
        Some("over TLS".to_owned())
    );
    // By name too: the certificate names localhost.
    let by_name = cluster.url().replace("127.0.0.1", "localhost");
    assert!(PostgresStore::connect_with(&by_name, Some(&ca))
        .await
        .is_ok());

    let plain = PostgresStore::connect(&cluster.url()).await;
    assert!(plain.is_err(), "the server refuses a plaintext login");

    let other = tempfile::tempdir().expect("dir");
    let stranger = pylon_bench::certs::TestCa::new(other.path(), "another CA").expect("CA");
    let refused = PostgresStore::connect_with(&cluster.url(), Some(&stranger.ca_pem)).await;
    assert!(
        refused.is_err(),
        "a server whose certificate the CA did not sign"
    );

    assert!(pylon_app::store::postgres::is_local(&cluster.url()));
    assert!(pylon_app::store::postgres::is_local(
        "host=/var/run/postgresql user=pylon"
    ));
    assert!(!pylon_app::store::postgres::is_local(
        "postgres://pylon@db.example:5432/pylon"
    ));
}
