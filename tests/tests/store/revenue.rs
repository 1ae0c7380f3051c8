//! The revenue side of the store, the same on both backends: tariffs and their
//! revisions, starts (authorise and hold at once), settlements exactly once, quarantine,
//! and the books balancing.

use std::sync::Arc;

use pylon_app::revenue::authorize::{Refusal, StartPolicy};
use pylon_app::revenue::ledger;
use pylon_app::revenue::tariff::{MeteredEnergy, Tariff};
use pylon_app::store::revenue::{
    Credential, EntryMeta, Repeat, SealedCard, SettleInput, StartOutcome, StartRequest,
};
use pylon_app::store::{OrderOrigin, OrderState, Pile, Store, TransactionRecord};
use pylon_proto::api::revenue::{
    AccountInput, Period, Rate, Rates, ScheduleChange, StationInput, TariffSpec,
};

const PILES: [&str; 4] = [
    "32010200000011",
    "32010200000012",
    "32010200000013",
    "32010200000014",
];

fn tariff(electricity: u32) -> Tariff {
    let rate = Rate {
        electricity,
        service: 40_000,
    };
    Tariff::try_from(&TariffSpec {
        rates: Rates {
            sharp: rate,
            peak: rate,
            flat: rate,
            valley: rate,
        },
        loss_ratio: 0,
        schedule: vec![ScheduleChange {
            from: "00:00".into(),
            period: Period::Flat,
        }],
    })
    .expect("tariff")
}

/// Piles in one station priced by tariff 1 (1.00 + 0.40 yuan per kWh) from time 0.
async fn station(store: &Arc<dyn Store>) -> i64 {
    for pile in PILES {
        store
            .upsert_pile(&Pile {
                pile_no: pile.into(),
                enabled: true,
                billing_model: 1,
                name: String::new(),
                last_login_at: None,
            })
            .await
            .expect("pile");
    }
    let station = store
        .create_station(
            &StationInput {
                name: "North".into(),
                address: "1 Road".into(),
                latitude: Some(32.0),
                longitude: Some(118.8),
                utc_offset_minutes: 480,
                power_cap_kw: Some(600),
            },
            0,
        )
        .await
        .expect("station");
    for pile in PILES {
        assert!(store.set_pile_station(pile, station.id).await.expect("set"));
    }
    let t = store
        .create_tariff("flat", &tariff(100_000), 0)
        .await
        .expect("tariff");
    assert!(store
        .assign_tariff(station.id, t.id, 0)
        .await
        .expect("assign"));
    station.id
}

/// A card as the business would seal it (the store sees only these strings).
fn card(n: u8) -> SealedCard {
    SealedCard {
        index: format!("card-index-{n}"),
        sealed: format!("k1:sealed-{n}"),
        masked: format!("CARD{n}****"),
        logical_sealed: format!("k1:logical-{n}"),
        logical_masked: "1000****".into(),
        password_index: None,
    }
}

async fn account_with(store: &Arc<dyn Store>, cards: &[u8], fen: i64) -> i64 {
    let id = store
        .create_account(
            &AccountInput {
                name: "driver".into(),
                stations: vec![],
            },
            0,
        )
        .await
        .expect("account")
        .id;
    for n in cards {
        assert!(store.add_card(id, &card(*n), 0).await.expect("card"));
    }
    let meta = EntryMeta {
        actor: "test".into(),
        reason: "top-up".into(),
        trade_no: None,
        at: 0,
    };
    store
        .post(id, &ledger::top_up(id, fen), &meta)
        .await
        .expect("top-up");
    id
}

fn start(pile: &str, trade_no: &str, card_no: u8, at: i64) -> StartRequest {
    StartRequest {
        pile_no: pile.into(),
        gun_no: "01".into(),
        trade_no: trade_no.into(),
        credential: Credential::Card {
            index: format!("card-index-{card_no}"),
            password_index: None,
        },
        origin: OrderOrigin::Pile,
        state: OrderState::Charging,
        policy: StartPolicy::default(),
        at,
    }
}

fn record(pile: &str, trade_no: &str, energy: i64, amount: i64) -> TransactionRecord {
    TransactionRecord {
        trade_no: trade_no.into(),
        pile_no: pile.into(),
        gun_no: "01".into(),
        start_time: 1_000,
        end_time: 2_000,
        total_energy: energy,
        total_amount: amount,
        stop_reason: 0x45,
        fields: serde_json::json!({"total_energy": energy, "total_amount": amount}),
        received_at: 3_000,
    }
}

fn settle_input(r: TransactionRecord) -> SettleInput {
    SettleInput {
        metered: MeteredEnergy {
            billed: [0, 0, r.total_energy as u64, 0],
            pile_amount: r.total_amount as u64,
        },
        card_index: None,
        tolerance: 100,
        at: 3_000,
        record: r,
    }
}

pub async fn revenue_start_and_settle(store: Arc<dyn Store>) {
    station(&store).await;
    let account = account_with(&store, &[1, 2], 80_000).await;
    let trade = "32010200000011012611291200000001";
    let started = store
        .start_charge(&start(PILES[0], trade, 1, 1_000))
        .await
        .expect("start");
    assert!(
        matches!(started, StartOutcome::Started { account: a, hold: 50_000, .. } if a == account),
        "{started:?}"
    );
    // The same driver again at once: the same order.
    let again = store
        .start_charge(&start(
            PILES[0],
            "32010200000011012611291200000002",
            1,
            2_000,
        ))
        .await
        .expect("start");
    assert!(
        matches!(&again, StartOutcome::Again { trade_no, hold: 50_000, .. } if trade_no == trade)
    );
    // Another card on the busy gun; the same card elsewhere.
    let busy = store
        .start_charge(&start(
            PILES[0],
            "32010200000011012611291200000003",
            2,
            2_000,
        ))
        .await
        .expect("start");
    assert_eq!(busy, StartOutcome::Refused(Refusal::PileUnsettled));
    let unsettled = store
        .start_charge(&start(
            PILES[1],
            "32010200000012012611291200000001",
            1,
            2_000,
        ))
        .await
        .expect("start");
    assert_eq!(unsettled, StartOutcome::Refused(Refusal::CardUnsettled));

    // 10 kWh at 1.40 yuan: 14.00 yuan, as the pile says.
    let input = settle_input(record(PILES[0], trade, 100_000, 140_000));
    let settled = store.settle_record(&input).await.expect("settle");
    assert_eq!(
        settled
            .as_ref()
            .map(|s| (s.account, s.charged, s.discrepancy)),
        Ok((Some(account), 1_400, false))
    );
    assert_eq!(
        store.settle_record(&input).await.expect("again"),
        Err(Repeat::Same)
    );
    let other = settle_input(record(PILES[0], trade, 5, 7));
    assert_eq!(
        store.settle_record(&other).await.expect("other"),
        Err(Repeat::Quarantined)
    );
    let wallet = store
        .account(account)
        .await
        .expect("read")
        .expect("account");
    assert_eq!((wallet.balance, wallet.held), (80_000 - 1_400, 0));
    let order = store.order(trade).await.expect("read").expect("order");
    assert_eq!(order.state, OrderState::Finished);
    let entries = store.ledger(account, 100).await.expect("ledger");
    let kinds: Vec<&str> = entries.iter().rev().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["top_up", "hold", "release", "charge", "charge"]);

    let r = store.reconciliation().await.expect("reconciliation");
    assert!(r.balanced, "{r:?}");
    assert_eq!((r.records, r.settlements, r.quarantined), (1, 1, 1));
    assert_eq!(
        (r.ledger_electricity_fen, r.ledger_service_fen),
        (1_000, 400)
    );
    let days = store.daily(0, i64::MAX).await.expect("daily");
    assert_eq!(days.len(), 1);
    assert_eq!((days[0].sessions, days[0].revenue_fen), (1, 1_400));
    assert_eq!(days[0].day, "1970-01-01");

    // A start that fails gives its hold back.
    let failing = "32010200000013012611291200000001";
    store
        .start_charge(&start(PILES[2], failing, 2, 5_000))
        .await
        .expect("start");
    store
        .update_order(failing, OrderState::Failed, Some("refused"), 6_000)
        .await
        .expect("fail");
    store
        .release_hold(failing, "refused", 6_000)
        .await
        .expect("release");
    store
        .release_hold(failing, "refused", 6_000)
        .await
        .expect("twice is nothing");
    let wallet = store
        .account(account)
        .await
        .expect("read")
        .expect("account");
    assert_eq!((wallet.balance, wallet.held), (80_000 - 1_400, 0));
    assert!(store.reconciliation().await.expect("r").balanced);
}

pub async fn revenue_concurrent_starts(store: Arc<dyn Store>) {
    station(&store).await;
    // Enough for one start (the least balance is 1.00 yuan).
    let account = account_with(&store, &[1, 2, 3, 4], 150).await;
    let mut starts = Vec::new();
    for (i, pile) in PILES.iter().enumerate() {
        let store = store.clone();
        let trade = format!("{pile}012611291200000{i:03}");
        starts.push(tokio::spawn(async move {
            store
                .start_charge(&start(pile, &trade, i as u8 + 1, 1_000))
                .await
                .expect("start")
        }));
    }
    let mut granted = 0;
    for s in starts {
        match s.await.expect("joined") {
            StartOutcome::Started { hold, .. } => {
                assert_eq!(hold, 150);
                granted += 1;
            }
            StartOutcome::Refused(Refusal::InsufficientBalance) => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(granted, 1);
    let wallet = store
        .account(account)
        .await
        .expect("read")
        .expect("account");
    assert_eq!((wallet.balance, wallet.held), (0, 150));
}

pub async fn revenue_tariff_revisions(store: Arc<dyn Store>) {
    let station = station(&store).await;
    let t = store.tariffs().await.expect("list")[0].id;
    // A new revision at t=10_000 prices charges that start after it, not before.
    let revised = store
        .revise_tariff(t, "flat", &tariff(200_000), 10_000)
        .await
        .expect("revise")
        .expect("tariff");
    assert_eq!(revised.revision, 2);
    let before = store
        .priced_by(PILES[0], 9_999)
        .await
        .expect("read")
        .expect("priced");
    let after = store
        .priced_by(PILES[0], 10_000)
        .await
        .expect("read")
        .expect("priced");
    assert_eq!((before.revision, after.revision), (1, 2));
    assert_eq!(after.tariff.rates.flat.electricity, 200_000);
    // Another tariff assigned from t=20_000 on.
    let other = store
        .create_tariff("night", &tariff(50_000), 0)
        .await
        .expect("tariff");
    assert!(store
        .assign_tariff(station, other.id, 20_000)
        .await
        .expect("assign"));
    let later = store
        .priced_by(PILES[0], 25_000)
        .await
        .expect("read")
        .expect("priced");
    assert_eq!(later.tariff_id, other.id);
    assert!(matches!(
        store.create_tariff("night", &tariff(1), 0).await,
        Err(pylon_app::store::StoreError::Conflict(_))
    ));
    let s = store
        .station(station, 30_000)
        .await
        .expect("read")
        .expect("station");
    assert_eq!(s.piles.len(), PILES.len());
    assert_eq!(s.tariff_id, Some(other.id));
    assert!(!store
        .assign_tariff(999, other.id, 0)
        .await
        .expect("no station"));
}

/// Drivers' personal data and the retention policy: old raw events and status history go
/// (and nothing newer, nor any money), an account is erased only once its wallet is empty,
/// and the books still balance after.
pub async fn privacy_retention_and_erasure(store: Arc<dyn Store>) {
    use pylon_app::store::revenue::EraseRefusal;
    use pylon_proto::api::app::{GunStatus, SessionEvent};
    use pylon_proto::api::revenue::AccountState;
    let _ = station(&store).await;
    let pile = PILES[0];
    for (n, at) in [(1u8, 1_000i64), (2, 5_000)] {
        store
            .append_event(&SessionEvent {
                pile_no: pile.into(),
                gun_no: "01".into(),
                trade_no: "T".into(),
                frame_type: 0x13,
                fields: serde_json::json!({ "n": n }),
                at,
            })
            .await
            .expect("event");
        store
            .set_gun_status(&GunStatus {
                pile_no: pile.into(),
                gun_no: "01".into(),
                status: n,
                data: serde_json::json!({}),
                updated_at: at,
            })
            .await
            .expect("status");
    }
    let (events, status) = store.purge_history(3_000, 3_000).await.expect("purge");
    assert_eq!((events, status), (1, 1));
    let left = store.events("T").await.expect("events");
    assert_eq!(left.iter().map(|e| e.at).collect::<Vec<_>>(), vec![5_000]);
    let history = store
        .status_history(pile, "01", 0, i64::MAX, 10)
        .await
        .expect("history");
    assert_eq!(
        history.iter().map(|h| h.at).collect::<Vec<_>>(),
        vec![5_000]
    );
    assert_eq!(
        store.purge_history(0, 0).await.expect("purge"),
        (0, 0),
        "0 keeps"
    );

    // A driver with cards and money: not erased until the money is gone.
    let driver = account_with(&store, &[7, 8], 500).await;
    let data = store.personal_data(driver).await.expect("data");
    assert_eq!(data.cards.len(), 2);
    assert_eq!(
        store.erase_account(driver, 10).await.expect("erase"),
        Err(EraseRefusal::MoneyLeft {
            balance: 500,
            held: 0
        })
    );
    let meta = EntryMeta {
        actor: "test".into(),
        reason: "paid out before erasure".into(),
        trade_no: None,
        at: 20,
    };
    store
        .post(driver, &ledger::adjust(driver, -500), &meta)
        .await
        .expect("paid out");
    assert_eq!(
        store.erase_account(driver, 30).await.expect("erase"),
        Ok(())
    );
    let erased = store.account(driver).await.expect("read").expect("account");
    assert_eq!(erased.state, AccountState::Erased);
    assert!(!erased.name.contains("driver"), "{}", erased.name);
    let data = store.personal_data(driver).await.expect("data");
    assert!(data.cards.is_empty() && data.vins.is_empty());
    assert!(
        !store.ledger(driver, 100).await.expect("ledger").is_empty(),
        "the ledger stays"
    );
    assert!(store.reconciliation().await.expect("books").balanced);
    assert_eq!(
        store.erase_account(9_999, 40).await.expect("erase"),
        Err(EraseRefusal::NoSuchAccount)
    );

    // Dormant accounts: untouched, empty, not erased yet.
    let idle = account_with(&store, &[], 0).await;
    let dormant = store.dormant_accounts(1_000_000).await.expect("dormant");
    assert!(
        dormant.contains(&idle) && !dormant.contains(&driver),
        "{dormant:?}"
    );
    assert!(store.dormant_accounts(0).await.expect("dormant").is_empty());
}
