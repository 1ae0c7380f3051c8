//! The monitoring side of the store, the same on both backends: alarms raised,
//! deduplicated, acknowledged and resolved; pile presence and filtered lists; counts;
//! guns' traces.

use std::sync::Arc;

use pylon_app::store::monitor::{AlarmFilter, Handling, HandlingRefusal, PileFilter, Raised};
use pylon_app::store::{GunStatus, Pile, Store, TransactionRecord};
use pylon_proto::api::monitor::{AlarmState, GunSample, PileState, RaiseAlarm, Severity};
use serde_json::json;

fn raise(key: &str, pile: &str, severity: Severity) -> RaiseAlarm {
    RaiseAlarm {
        key: key.into(),
        kind: "gun_fault".into(),
        severity,
        subject: format!("pile {pile} gun 1"),
        text: "hardware fault bit 1: emergency stop".into(),
        pile_no: Some(pile.into()),
        gun_no: Some("1".into()),
    }
}

pub async fn alarms_life(store: Arc<dyn Store>) {
    let first = match store
        .raise_alarm(&raise("k1", "32010200000001", Severity::Critical), 1_000)
        .await
        .expect("raising")
    {
        Raised::New(a) => a,
        other => panic!("a new key opens an alarm: {other:?}"),
    };
    assert_eq!(first.state, AlarmState::Open);
    assert_eq!(first.count, 1);
    // Raised again while open: counted on the same alarm.
    match store
        .raise_alarm(&raise("k1", "32010200000001", Severity::Critical), 2_000)
        .await
        .expect("raising again")
    {
        Raised::Again(a) => {
            assert_eq!(a.id, first.id);
            assert_eq!(a.count, 2);
            assert_eq!(a.last_at, 2_000);
        }
        other => panic!("an open key counts: {other:?}"),
    }
    let other = match store
        .raise_alarm(&raise("k2", "32010200000002", Severity::Warning), 3_000)
        .await
        .expect("raising")
    {
        Raised::New(a) => a,
        other => panic!("{other:?}"),
    };
    let counts = store.alarm_counts().await.expect("counts");
    assert_eq!((counts.open, counts.critical), (2, 1));

    // Acknowledge, then resolve, with who and when.
    let acked = store
        .handle_alarm(first.id, Handling::Acknowledge, "ana", 4_000)
        .await
        .expect("ack")
        .expect("an open alarm can be acknowledged");
    assert_eq!(acked.state, AlarmState::Acknowledged);
    assert_eq!(acked.acked_by.as_deref(), Some("ana"));
    assert_eq!(acked.acked_at, Some(4_000));
    let resolved = store
        .handle_alarm(first.id, Handling::Resolve, "bo", 5_000)
        .await
        .expect("resolve")
        .expect("an acknowledged alarm can be resolved");
    assert_eq!(resolved.state, AlarmState::Resolved);
    assert_eq!(resolved.resolved_by.as_deref(), Some("bo"));
    assert_eq!(
        store
            .handle_alarm(first.id, Handling::Acknowledge, "ana", 6_000)
            .await
            .expect("ack"),
        Err(HandlingRefusal::Resolved)
    );
    assert_eq!(
        store
            .handle_alarm(999_999, Handling::Resolve, "ana", 6_000)
            .await
            .expect("resolve"),
        Err(HandlingRefusal::NotFound)
    );
    // The same condition after resolution is a new alarm.
    let again = store
        .raise_alarm(&raise("k1", "32010200000001", Severity::Critical), 7_000)
        .await
        .expect("raising");
    assert!(
        matches!(again, Raised::New(ref a) if a.id != first.id),
        "{again:?}"
    );

    // The system clears by key; open keys by prefix.
    let asked = ["k2".to_owned(), "k1".to_owned(), "k9".to_owned()];
    assert_eq!(
        store.open_alarm_keys(&asked).await.expect("keys"),
        vec!["k1".to_owned(), "k2".to_owned()]
    );
    // Keys are matched whole: LIKE's wildcards mean nothing.
    assert!(store
        .open_alarm_keys(&["k_".to_owned(), "%".to_owned()])
        .await
        .expect("keys")
        .is_empty());
    let cleared = store
        .clear_alarm("k2", "system", 8_000)
        .await
        .expect("clear")
        .expect("k2 was open");
    assert_eq!(cleared.id, other.id);
    assert_eq!(cleared.resolved_by.as_deref(), Some("system"));
    assert!(store
        .clear_alarm("k2", "system", 9_000)
        .await
        .expect("clear")
        .is_none());

    // Lists: newest first, filtered by state, pile and kind, paged by id.
    let all = store
        .alarms(&AlarmFilter::default(), 10)
        .await
        .expect("list");
    assert_eq!(all.len(), 3);
    assert!(all.windows(2).all(|w| w[0].id > w[1].id));
    let active = store
        .alarms(
            &AlarmFilter {
                states: Some(vec![AlarmState::Open, AlarmState::Acknowledged]),
                ..Default::default()
            },
            10,
        )
        .await
        .expect("active");
    assert_eq!(active.len(), 1);
    let of_pile = store
        .alarms(
            &AlarmFilter {
                pile_no: Some("32010200000002".into()),
                ..Default::default()
            },
            10,
        )
        .await
        .expect("by pile");
    assert_eq!(of_pile.len(), 1);
    let page = store
        .alarms(
            &AlarmFilter {
                before: Some(all[0].id),
                ..Default::default()
            },
            10,
        )
        .await
        .expect("next page");
    assert_eq!(page.len(), 2);
    // Resolved long enough ago: purged (the open one stays).
    assert_eq!(store.purge_alarms(8_500).await.expect("purge"), 2);
    assert_eq!(
        store
            .alarms(&AlarmFilter::default(), 10)
            .await
            .expect("list")
            .len(),
        1
    );
}

fn pile(no: &str) -> Pile {
    Pile {
        pile_no: no.into(),
        enabled: true,
        billing_model: 1,
        name: format!("pile {no}"),
        last_login_at: None,
    }
}

async fn gun(store: &Arc<dyn Store>, pile: &str, status: u8) {
    store
        .set_gun_status(&GunStatus {
            pile_no: pile.into(),
            gun_no: "1".into(),
            status,
            data: json!({}),
            updated_at: 1,
        })
        .await
        .expect("gun status");
}

pub async fn fleet_presence_and_lists(store: Arc<dyn Store>) {
    // Five piles: offline, idle, charging, faulted (all online but the first), offline.
    let piles = [
        "32010200000101",
        "32010200000102",
        "32010200000103",
        "32010200000104",
        "32010200000105",
    ];
    for p in piles {
        store.upsert_pile(&pile(p)).await.expect("pile");
    }
    for p in &piles[1..4] {
        store
            .set_presence(p, true, Some("V1.2"), 10)
            .await
            .expect("online");
    }
    store
        .set_presence(piles[1], true, Some("V2.0"), 11)
        .await
        .expect("online");
    gun(&store, piles[1], 2).await;
    gun(&store, piles[2], 3).await;
    gun(&store, piles[3], 1).await;
    // A pile that went offline with a charging gun stored is offline.
    store
        .set_presence(piles[4], true, None, 10)
        .await
        .expect("online");
    gun(&store, piles[4], 3).await;
    store
        .set_presence(piles[4], false, None, 12)
        .await
        .expect("offline");

    let counts = store.pile_counts().await.expect("counts");
    assert_eq!(counts.total, 5);
    assert_eq!(counts.online, 3);
    assert_eq!(counts.offline, 2);
    assert_eq!(counts.charging, 1);
    assert_eq!(counts.faulted, 1);

    let list = |filter: PileFilter| {
        let store = store.clone();
        async move {
            store
                .pile_summaries(&filter, 100)
                .await
                .expect("list")
                .into_iter()
                .map(|p| (p.pile_no, p.state))
                .collect::<Vec<_>>()
        }
    };
    let all = list(PileFilter::default()).await;
    assert_eq!(
        all.iter().map(|(_, s)| *s).collect::<Vec<_>>(),
        vec![
            PileState::Offline,
            PileState::Idle,
            PileState::Charging,
            PileState::Faulted,
            PileState::Offline
        ]
    );
    let offline = list(PileFilter {
        states: Some(vec![PileState::Offline]),
        ..Default::default()
    })
    .await;
    assert_eq!(offline.len(), 2);
    let charging = list(PileFilter {
        states: Some(vec![PileState::Charging]),
        ..Default::default()
    })
    .await;
    assert_eq!(charging, vec![(piles[2].to_owned(), PileState::Charging)]);
    let faulted = list(PileFilter {
        states: Some(vec![PileState::Faulted]),
        ..Default::default()
    })
    .await;
    assert_eq!(faulted, vec![(piles[3].to_owned(), PileState::Faulted)]);
    let v2 = list(PileFilter {
        firmware: Some("V2.0".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(v2, vec![(piles[1].to_owned(), PileState::Idle)]);
    let after = list(PileFilter {
        after: Some(piles[2].into()),
        text: Some("3201020000010".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(after.len(), 2);
    let summary = store
        .pile_summary(piles[1])
        .await
        .expect("summary")
        .expect("known pile");
    assert!(summary.online);
    assert_eq!(summary.firmware, "V2.0");
    assert_eq!(summary.seen_at, Some(11));

    // Today's records and the last minute's.
    let record = TransactionRecord {
        trade_no: format!("{}01{:016}", piles[2], 1),
        pile_no: piles[2].into(),
        gun_no: "1".into(),
        start_time: 0,
        end_time: 0,
        total_energy: 125_000,
        total_amount: 200_000,
        stop_reason: 0x40,
        fields: json!({}),
        received_at: 100_000,
    };
    store.store_record(&record).await.expect("record");
    let today = store.records_since(50_000).await.expect("today");
    assert_eq!(today.records, 1);
    assert!((today.energy_kwh - 12.5).abs() < 1e-9);
    assert!((today.revenue_yuan - 20.0).abs() < 1e-9);
    assert_eq!(store.per_minute(130_000).await.expect("minute").records, 1);
    assert_eq!(store.per_minute(200_000).await.expect("minute").records, 0);

    // Traces: oldest first, power worked out, old ones purged.
    for (at, volts) in [(1_000, 380.0), (61_000, 390.0), (121_000, 400.0)] {
        store
            .append_sample(
                piles[2],
                &GunSample {
                    gun_no: "1".into(),
                    at,
                    voltage: volts,
                    current: 20.0,
                    power_kw: 0.0,
                    soc: 50,
                },
            )
            .await
            .expect("sample");
    }
    let samples = store
        .samples(piles[2], 0, 200_000, 100)
        .await
        .expect("samples");
    assert_eq!(samples.len(), 3);
    assert_eq!(samples[0].at, 1_000);
    assert!((samples[2].power_kw - 8.0).abs() < 1e-9);
    assert_eq!(store.purge_samples(61_000).await.expect("purge"), 1);
}
