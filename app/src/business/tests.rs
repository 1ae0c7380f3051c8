//! The business rules, driven frame by frame against a real SQLite store (a file in a
//! temporary directory), a clock the test moves, and no sockets.

use std::time::Duration;

use pylon_proto::ykc::frames::{
    BillingModelVerify, CardStartReply, CardStartRequest, Login, TransactionRecord as RecordFrame,
};
use pylon_proto::ykc::{Bcd, Frame, PileNo, TradeNo};
use time::UtcOffset;

use super::*;
use crate::clock::ManualClock;
use crate::revenue::vault::Vault;
use crate::store::revenue::RevenueStore;
use crate::store::sqlite::SqliteStore;
use crate::store::Pile;

/// 2026-11-29 12:00:00 UTC.
pub(super) const T0: i64 = 1_795_953_600_000;
pub(super) const PILE: &str = "32010200000001";

pub(super) struct World {
    pub business: Business,
    pub store: Arc<SqliteStore>,
    pub clock: Arc<ManualClock>,
    pub vault: Arc<Vault>,
    _dir: tempfile::TempDir,
}

pub(super) async fn world() -> World {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("business.db")).expect("store");
    let clock = Arc::new(ManualClock::at(T0));
    let keys = dir.path().join("keys.toml");
    Vault::create_file(&keys).expect("key file");
    let vault = Arc::new(Vault::from_file(&keys).expect("vault"));
    let business = Business::new(
        store.clone(),
        Arc::default(),
        Arc::default(),
        BusinessSettings {
            notifier: crate::alarms::notify::Notifier::none(),
            alarm_settings: Default::default(),
            ingest: Default::default(),
            offset: UtcOffset::UTC,
            vault: Some(vault.clone()),
            policy: StartPolicy {
                min_balance: 100,
                max_hold: 50_000,
            },
            tolerance: 100,
            retention: Default::default(),
            fault: None,
            clock: clock.clone(),
        },
    );
    World {
        business,
        store,
        clock,
        vault,
        _dir: dir,
    }
}

impl World {
    pub(super) async fn register(&self, pile: &str, enabled: bool) {
        self.store
            .upsert_pile(&Pile {
                pile_no: pile.into(),
                enabled,
                billing_model: 1,
                name: String::new(),
                last_login_at: None,
            })
            .await
            .expect("pile registered");
    }

    pub(super) async fn handle(&self, frame: Frame) -> Vec<Reply> {
        self.business
            .handle(&Incoming {
                edge: "edge-1".into(),
                pile: pile_no(),
                session_id: 1,
                executor: 0,
                seq: 1,
                frame,
            })
            .await
            .expect("handled")
    }
}

pub(super) fn pile_no() -> PileNo {
    PileNo::parse(PILE).expect("pile number")
}

fn login() -> Frame {
    Login {
        pile_no: pile_no(),
        ..Default::default()
    }
    .into()
}

/// A card start of card `D14B0A54` on gun 1.
fn card_start() -> Frame {
    CardStartRequest {
        pile_no: pile_no(),
        gun_no: Bcd::from_u64(1),
        start_mode: 1,
        account_or_card_no: pylon_proto::ykc::Bytes([0, 0, 0, 0, 0xD1, 0x4B, 0x0A, 0x54]),
        ..Default::default()
    }
    .into()
}

pub(super) fn card_reply(replies: &[Reply]) -> CardStartReply {
    match replies {
        [Reply::Frame(Frame::CardStartReply(r))] => r.clone(),
        other => panic!("expected one 0x32, got {other:?}"),
    }
}

fn record(trade_no: &str) -> Frame {
    RecordFrame {
        trade_no: TradeNo::parse(trade_no).expect("trade number"),
        pile_no: pile_no(),
        gun_no: Bcd::from_u64(1),
        ..Default::default()
    }
    .into()
}

pub(super) fn confirmation(replies: &[Reply]) -> u8 {
    match replies {
        [Reply::Frame(Frame::TransactionConfirm(c))] => c.result,
        other => panic!("expected one 0x40, got {other:?}"),
    }
}

#[tokio::test]
async fn only_registered_enabled_piles_log_in_and_the_login_is_recorded() {
    let w = world().await;
    assert_eq!(
        w.handle(login()).await,
        vec![Reply::Login { accepted: false }]
    );
    w.register(PILE, false).await;
    assert_eq!(
        w.handle(login()).await,
        vec![Reply::Login { accepted: false }]
    );
    w.register(PILE, true).await;
    w.clock.advance(Duration::from_secs(7));
    assert_eq!(
        w.handle(login()).await,
        vec![Reply::Login { accepted: true }]
    );
    let pile = w.store.pile(PILE).await.expect("read").expect("pile");
    assert_eq!(
        pile.last_login_at,
        Some(T0 + 7_000),
        "stamped by the injected clock"
    );
}

#[tokio::test]
async fn a_card_start_on_an_enabled_pile_opens_one_order_and_a_repeat_gets_the_same() {
    let w = world().await;
    w.register(PILE, true).await;
    let account = w.account_with_card("D14B0A54", None, 5_000).await;
    let first = card_reply(&w.handle(card_start()).await);
    assert_eq!(first.auth_result, 1);
    assert_eq!(
        first.balance.0, 5_000,
        "the whole balance, under the cap, is held"
    );
    let wallet = w
        .store
        .account(account)
        .await
        .expect("read")
        .expect("account");
    assert_eq!((wallet.balance, wallet.held), (0, 5_000));
    // The reply was lost and the pile asks again within 30 s: the same order.
    w.clock.advance(Duration::from_secs(20));
    let again = card_reply(&w.handle(card_start()).await);
    assert_eq!(again.trade_no, first.trade_no);
    let open = w.store.open_orders(Some(PILE)).await.expect("orders");
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].created_at, T0);
}

#[tokio::test]
async fn a_card_start_on_a_disabled_pile_is_refused_with_the_specs_reason() {
    let w = world().await;
    w.register(PILE, false).await;
    let reply = card_reply(&w.handle(card_start()).await);
    assert_eq!((reply.auth_result, reply.failure_reason), (0, 0x05));
    assert_eq!(reply.balance.0, 0);
    assert!(w
        .store
        .open_orders(Some(PILE))
        .await
        .expect("orders")
        .is_empty());
}

#[tokio::test]
async fn a_record_is_stored_before_it_is_confirmed_and_a_repeat_is_stored_once() {
    let w = world().await;
    w.register(PILE, true).await;
    let trade_no = "32010200000001012611291200000001";
    assert_eq!(confirmation(&w.handle(record(trade_no)).await), 0);
    let stored = w
        .store
        .record(trade_no)
        .await
        .expect("read")
        .expect("stored");
    assert_eq!(stored.received_at, T0);
    assert_eq!(w.store.record_count().await.expect("count"), 1);
    // The confirmation was lost: the pile sends the record again.
    w.clock.advance(Duration::from_secs(60));
    assert_eq!(confirmation(&w.handle(record(trade_no)).await), 0);
    assert_eq!(w.store.record_count().await.expect("count"), 1);
    let kept = w
        .store
        .record(trade_no)
        .await
        .expect("read")
        .expect("stored");
    assert_eq!(kept.received_at, T0, "the first copy stays");
}

#[tokio::test]
async fn a_record_of_an_unknown_pile_is_refused_and_not_stored() {
    let w = world().await;
    assert_eq!(
        confirmation(&w.handle(record("32010200000001012611291200000002")).await),
        1
    );
    assert_eq!(w.store.record_count().await.expect("count"), 0);
}

#[tokio::test]
async fn the_billing_model_check_compares_with_the_piles_model() {
    let w = world().await;
    w.register(PILE, true).await;
    for (model, result) in [(1u64, 0u8), (2, 1)] {
        let replies = w
            .handle(
                BillingModelVerify {
                    pile_no: pile_no(),
                    billing_model_no: Bcd::from_u64(model),
                }
                .into(),
            )
            .await;
        match replies.as_slice() {
            [Reply::Frame(Frame::BillingModelVerifyReply(r))] => assert_eq!(r.result, result),
            other => panic!("expected one 0x06, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn unconfirmed_starts_fail_after_90_s_from_the_store() {
    let w = world().await;
    let order = |trade_no: &str, created_at: i64| Order {
        trade_no: trade_no.into(),
        pile_no: PILE.into(),
        gun_no: "01".into(),
        state: OrderState::Starting,
        origin: OrderOrigin::Operator,
        balance: 100,
        created_at,
        updated_at: created_at,
        failure: None,
    };
    let old = order("32010200000001010000000000000001", T0);
    w.store.insert_order(&old).await.expect("insert");
    w.clock.advance(Duration::from_secs(80));
    let fresh = order("32010200000001010000000000000002", w.clock.now_ms());
    w.store.insert_order(&fresh).await.expect("insert");
    assert_eq!(
        w.business.fail_unconfirmed_starts().await.expect("sweep"),
        0
    );
    w.clock.advance(Duration::from_secs(11));
    assert_eq!(
        w.business.fail_unconfirmed_starts().await.expect("sweep"),
        1
    );
    let old = w
        .store
        .order(&old.trade_no)
        .await
        .expect("read")
        .expect("order");
    assert_eq!(old.state, OrderState::Failed);
    assert!(old.failure.expect("why").contains("90 s"));
    let fresh = w
        .store
        .order(&fresh.trade_no)
        .await
        .expect("read")
        .expect("order");
    assert_eq!(fresh.state, OrderState::Starting);
    // Idempotent: nothing more to close.
    assert_eq!(
        w.business.fail_unconfirmed_starts().await.expect("sweep"),
        0
    );
}
