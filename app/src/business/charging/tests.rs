//! Money in the charging flows, driven frame by frame against a real SQLite store with
//! a card vault, and no sockets.

use std::sync::Arc;

use proptest::prelude::*;
use pylon_proto::api::revenue::{
    AccountInput, AccountState, Period, Rate, Rates, ScheduleChange, StationInput, TariffSpec,
};
use pylon_proto::ykc::frames::{CardStartRequest, TransactionRecord as RecordFrame};
use pylon_proto::ykc::{Ascii, Bcd, Bytes, Frame, Scaled, TradeNo};

use super::*;
use crate::business::tests::{card_reply, confirmation, pile_no, world, World, PILE};
use crate::revenue::ledger;
use crate::revenue::tariff::Tariff;
use crate::store::revenue::RevenueStore;
use crate::store::revenue::{EntryMeta, SealedCard, SealedVin};
use crate::store::Store;

const CARD: [u8; 8] = [0, 0, 0, 0, 0xD1, 0x4B, 0x0A, 0x54];
const VIN: &str = "LSVAB2BZ0PN123456";

impl World {
    /// An account with card `card` (and its password), topped up with `balance` fen.
    pub(crate) async fn account_with_card(
        &self,
        card: &str,
        password: Option<&str>,
        balance: i64,
    ) -> i64 {
        let account = self
            .store
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
        let sealed = SealedCard {
            index: self.vault.index("card", card),
            sealed: self.vault.seal(card),
            masked: mask(card),
            logical_sealed: self.vault.seal("1000000573"),
            logical_masked: mask("1000000573"),
            password_index: password.map(|p| password_index(&self.vault, &password_md5(p))),
        };
        assert!(self
            .store
            .add_card(account, &sealed, 0)
            .await
            .expect("card"));
        self.top_up(account, balance).await;
        account
    }

    pub(crate) async fn top_up(&self, account: i64, amount: i64) {
        let meta = EntryMeta {
            actor: "test".into(),
            reason: "top-up".into(),
            trade_no: None,
            at: 0,
        };
        self.store
            .post(account, &ledger::top_up(account, amount), &meta)
            .await
            .expect("top-up");
    }

    async fn wallet(&self, account: i64) -> (i64, i64) {
        let a = self
            .store
            .account(account)
            .await
            .expect("read")
            .expect("account");
        (a.balance, a.held)
    }

    /// Puts the pile in a station with a flat tariff of 1.00 yuan + 0.40 yuan per kWh.
    async fn flat_tariff(&self) {
        let station = self
            .store
            .create_station(
                &StationInput {
                    name: "North".into(),
                    address: String::new(),
                    latitude: None,
                    longitude: None,
                    utc_offset_minutes: 480,
                    power_cap_kw: None,
                },
                0,
            )
            .await
            .expect("station");
        assert!(self
            .store
            .set_pile_station(PILE, station.id)
            .await
            .expect("pile"));
        let rate = Rate {
            electricity: 100_000,
            service: 40_000,
        };
        let spec = TariffSpec {
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
        };
        let tariff = Tariff::try_from(&spec).expect("tariff");
        let t = self
            .store
            .create_tariff("flat", &tariff, 0)
            .await
            .expect("tariff");
        assert!(self
            .store
            .assign_tariff(station.id, t.id, 0)
            .await
            .expect("assign"));
    }

    async fn start(
        &self,
        gun: u64,
        card: [u8; 8],
        password: Option<&str>,
    ) -> pylon_proto::ykc::frames::CardStartReply {
        let frame = CardStartRequest {
            pile_no: pile_no(),
            gun_no: Bcd::from_u64(gun),
            start_mode: 1,
            password_required: u8::from(password.is_some()),
            account_or_card_no: Bytes(card),
            password_md5: Bytes(
                password
                    .map(|p| password_md5(p).try_into().expect("16 bytes"))
                    .unwrap_or([0; 16]),
            ),
            ..Default::default()
        };
        card_reply(&self.handle(frame.into()).await)
    }

    async fn vin_start(&self, vin: &str) -> pylon_proto::ykc::frames::CardStartReply {
        let mut raw = [0u8; 17];
        raw.copy_from_slice(vin.as_bytes());
        raw.reverse();
        let frame = CardStartRequest {
            pile_no: pile_no(),
            gun_no: Bcd::from_u64(1),
            start_mode: 3,
            vin: Ascii(raw),
            ..Default::default()
        };
        card_reply(&self.handle(frame.into()).await)
    }

    /// A record for `trade_no` of `energy` 0.0001 kWh (flat) that the pile priced at
    /// `amount` 0.0001 yuan.
    async fn record(&self, trade_no: &TradeNo, gun: u64, energy: u32, amount: u32) -> u8 {
        let frame = RecordFrame {
            trade_no: *trade_no,
            pile_no: pile_no(),
            gun_no: Bcd::from_u64(gun),
            flat_energy: Scaled(energy),
            total_energy: Scaled(energy),
            total_amount: Scaled(amount),
            physical_card_no: Bytes(CARD),
            ..Default::default()
        };
        confirmation(&self.handle(Frame::from(frame)).await)
    }
}

#[test]
fn card_numbers_have_one_form() {
    assert_eq!(
        card_number(&[0, 0, 0, 0, 0xD1, 0x4B, 0x0A, 0x54]),
        "D14B0A54"
    );
    assert_eq!(
        normalise_card("00000000d14b0a54").as_deref(),
        Some("D14B0A54")
    );
    assert_eq!(normalise_card("D14B0A54").as_deref(), Some("D14B0A54"));
    assert_eq!(normalise_card("xyz"), None);
    assert_eq!(normalise_card("12345678901234567"), None);
}

#[test]
fn vins_come_reversed_from_the_pile() {
    let mut raw = [0u8; 17];
    raw.copy_from_slice(b"LSVAB2BZ0PN123456");
    raw.reverse();
    assert_eq!(vin_from_pile(&Ascii(raw)), "LSVAB2BZ0PN123456");
}

#[test]
fn card_fields_are_masked() {
    let fields = serde_json::json!({
        "physical_card_no": "00000000d14b0a54",
        "vin": "LSVAB2BZ0PN123456",
        "password_md5": "00112233445566778899aabbccddeeff",
        "total_energy": 1.5,
    });
    let fields = redacted(fields);
    assert_eq!(fields["physical_card_no"], "D14B****");
    assert_eq!(fields["vin"], "LSVA****");
    assert_eq!(fields["password_md5"], "****");
    assert_eq!(fields["total_energy"], 1.5);
    assert!(!fields.to_string().contains("0A54"));
}

#[test]
fn passwords_are_md5_as_piles_send_them() {
    assert_eq!(
        hex::encode(password_md5("123456")),
        "e10adc3949ba59abbe56e057f20f883e"
    );
}

#[tokio::test]
async fn a_card_start_holds_and_its_record_settles_once() {
    let w = world().await;
    w.register(PILE, true).await;
    w.flat_tariff().await;
    let account = w.account_with_card("D14B0A54", None, 80_000).await;
    let reply = w.start(1, CARD, None).await;
    assert_eq!(
        (reply.auth_result, reply.balance.0),
        (1, 50_000),
        "held up to the cap"
    );
    assert_eq!(reply.logical_card_no.to_string(), "0000001000000573");
    assert_eq!(w.wallet(account).await, (30_000, 50_000));
    // 12.5 kWh at 1.40 yuan = 17.50 yuan; the pile says 17.50 too.
    assert_eq!(w.record(&reply.trade_no, 1, 125_000, 175_000).await, 0);
    assert_eq!(w.wallet(account).await, (80_000 - 1_750, 0));
    // The confirmation was lost; the record comes again: nothing moves.
    assert_eq!(w.record(&reply.trade_no, 1, 125_000, 175_000).await, 0);
    assert_eq!(w.wallet(account).await, (80_000 - 1_750, 0));
    let order = w
        .store
        .order(&reply.trade_no.to_string())
        .await
        .expect("read")
        .expect("order");
    assert_eq!(order.state, OrderState::Finished);
    let r = w.store.reconciliation().await.expect("reconciliation");
    assert!(r.balanced, "{r:?}");
    assert_eq!(
        (r.ledger_electricity_fen, r.ledger_service_fen),
        (1_250, 500)
    );
    assert_eq!(r.discrepancies, 0);
}

#[tokio::test]
async fn a_pile_amount_beyond_the_tolerance_is_kept_for_review_and_ours_is_charged() {
    let w = world().await;
    w.register(PILE, true).await;
    w.flat_tariff().await;
    let account = w.account_with_card("D14B0A54", None, 10_000).await;
    let reply = w.start(1, CARD, None).await;
    // 1 kWh: 1.40 yuan by the tariff, the pile says 2.00.
    assert_eq!(w.record(&reply.trade_no, 1, 10_000, 20_000).await, 0);
    assert_eq!(w.wallet(account).await, (10_000 - 140, 0));
    let d = w.store.discrepancies(10).await.expect("list");
    assert_eq!(d.len(), 1);
    assert_eq!((d[0].platform_amount, d[0].pile_amount), (14_000, 20_000));
}

#[tokio::test]
async fn another_record_under_a_used_trade_number_is_quarantined_not_settled() {
    let w = world().await;
    w.register(PILE, true).await;
    w.flat_tariff().await;
    let account = w.account_with_card("D14B0A54", None, 10_000).await;
    let reply = w.start(1, CARD, None).await;
    assert_eq!(w.record(&reply.trade_no, 1, 10_000, 14_000).await, 0);
    let after_first = w.wallet(account).await;
    assert_eq!(
        w.record(&reply.trade_no, 1, 99_000, 140_000).await,
        1,
        "refused as an invalid record"
    );
    assert_eq!(w.wallet(account).await, after_first);
    assert_eq!(w.store.quarantined(10).await.expect("list").len(), 1);
    let kept = w
        .store
        .record(&reply.trade_no.to_string())
        .await
        .expect("read")
        .expect("record");
    assert_eq!(kept.total_energy, 10_000, "the first record stays");
}

#[tokio::test]
async fn each_refusal_reason_reaches_the_pile() {
    let w = world().await;
    w.register(PILE, true).await;
    // 0x01: no account has the card.
    assert_eq!(w.start(1, CARD, None).await.failure_reason, 0x01);
    let account = w.account_with_card("D14B0A54", Some("123456"), 50).await;
    // 0x07: the card's password differs (or is missing).
    assert_eq!(w.start(1, CARD, Some("654321")).await.failure_reason, 0x07);
    assert_eq!(w.start(1, CARD, None).await.failure_reason, 0x07);
    // 0x03: 0.50 yuan is under the least balance of 1.00.
    assert_eq!(w.start(1, CARD, Some("123456")).await.failure_reason, 0x03);
    w.top_up(account, 10_000).await;
    // 0x02: frozen.
    w.store
        .set_account_state(account, AccountState::Frozen, 0)
        .await
        .expect("freeze");
    assert_eq!(w.start(1, CARD, Some("123456")).await.failure_reason, 0x02);
    w.store
        .set_account_state(account, AccountState::Active, 0)
        .await
        .expect("unfreeze");
    let started = w.start(1, CARD, Some("123456")).await;
    assert_eq!(started.auth_result, 1);
    // 0x04: the same card, another gun, while its first charge is unsettled.
    assert_eq!(w.start(2, CARD, Some("123456")).await.failure_reason, 0x04);
    // 0x0A: another card on the busy gun.
    let other = [0, 0, 0, 0, 0, 0, 0x12, 0x34];
    w.account_with_card("1234", None, 10_000).await;
    assert_eq!(w.start(1, other, None).await.failure_reason, 0x0A);
    // 0x09: an unknown VIN.
    assert_eq!(
        w.vin_start(VIN).await.failure_reason,
        0x0A,
        "gun 1 is still busy"
    );
    assert_eq!(w.record(&started.trade_no, 1, 0, 0).await, 0);
    assert_eq!(w.vin_start(VIN).await.failure_reason, 0x09);
    // 0x06: an account limited to another station.
    let limited = w
        .store
        .create_account(
            &AccountInput {
                name: "fleet".into(),
                stations: vec![999],
            },
            0,
        )
        .await
        .expect("account");
    let vin = SealedVin {
        index: w.vault.index("vin", VIN),
        sealed: w.vault.seal(VIN),
        masked: mask(VIN),
    };
    assert!(w.store.add_vin(limited.id, &vin, 0).await.expect("vin"));
    w.top_up(limited.id, 10_000).await;
    assert_eq!(w.vin_start(VIN).await.failure_reason, 0x06);
    // 0x05: the pile is disabled (checked before the driver).
    w.register(PILE, false).await;
    assert_eq!(w.start(1, other, None).await.failure_reason, 0x05);
    let r = w.store.reconciliation().await.expect("reconciliation");
    assert!(r.balanced, "{r:?}");
}

#[tokio::test]
async fn two_starts_against_a_wallet_that_pays_for_one_authorise_exactly_one() {
    let w = Arc::new(world().await);
    w.register(PILE, true).await;
    let account = w.account_with_card("D14B0A54", None, 150).await;
    let second = [0, 0, 0, 0, 0, 0, 0x99, 0x99];
    let sealed = SealedCard {
        index: w.vault.index("card", "9999"),
        sealed: w.vault.seal("9999"),
        masked: mask("9999"),
        logical_sealed: w.vault.seal("2"),
        logical_masked: mask("2"),
        password_index: None,
    };
    assert!(w.store.add_card(account, &sealed, 0).await.expect("card"));
    let (a, b) = tokio::join!(w.start(1, CARD, None), w.start(2, second, None));
    let granted = [a.auth_result, b.auth_result]
        .iter()
        .filter(|r| **r == 1)
        .count();
    assert_eq!(granted, 1, "{a:?} {b:?}");
    let refused = if a.auth_result == 0 { a } else { b };
    assert_eq!(refused.failure_reason, 0x03);
    assert_eq!(w.wallet(account).await, (0, 150));
}

#[derive(Debug, Clone)]
enum Op {
    TopUp(i64),
    Start(u64),
    Record(u64, u32, u32),
    Repeat,
    Refund(i64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (1i64..20_000).prop_map(Op::TopUp),
        (1u64..3).prop_map(Op::Start),
        (1u64..3, 0u32..200_000, 0u32..400_000).prop_map(|(g, e, a)| Op::Record(g, e, a)),
        Just(Op::Repeat),
        (1i64..3_000).prop_map(Op::Refund),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    /// Whatever happens (top-ups, starts, records repeated, refunds), the reconciliation
    /// balances to the fen and each wallet equals its books.
    #[test]
    fn the_ledger_always_balances(ops in proptest::collection::vec(op(), 1..40)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(async {
            let w = world().await;
            w.register(PILE, true).await;
            w.flat_tariff().await;
            let account = w.account_with_card("D14B0A54", None, 0).await;
            let mut open: Vec<(u64, TradeNo)> = Vec::new();
            let mut last: Option<(TradeNo, u64, u32, u32)> = None;
            for op in ops {
                match op {
                    Op::TopUp(n) => w.top_up(account, n).await,
                    Op::Start(gun) => {
                        let r = w.start(gun, CARD, None).await;
                        if r.auth_result == 1 && !open.contains(&(gun, r.trade_no)) {
                            open.push((gun, r.trade_no));
                        }
                    }
                    Op::Record(gun, energy, amount) => {
                        if let Some(i) = open.iter().position(|(g, _)| *g == gun) {
                            let (_, trade) = open.remove(i);
                            assert_eq!(w.record(&trade, gun, energy, amount).await, 0);
                            last = Some((trade, gun, energy, amount));
                        }
                    }
                    Op::Repeat => {
                        if let Some((trade, gun, energy, amount)) = last {
                            assert_eq!(w.record(&trade, gun, energy, amount).await, 0);
                        }
                    }
                    Op::Refund(n) => {
                        let meta = EntryMeta { actor: "test".into(), reason: "refund".into(), trade_no: None, at: 0 };
                        w.store.post(account, &ledger::refund(account, n), &meta).await.expect("refund");
                    }
                }
            }
            let r = w.store.reconciliation().await.expect("reconciliation");
            assert!(r.balanced, "{r:?}");
            assert_eq!(r.books_sum, 0);
            assert_eq!(r.records, r.settlements);
        });
    }
}
