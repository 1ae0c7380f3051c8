use serde_json::json;

use super::*;

pub(crate) fn sample_days_json() -> serde_json::Value {
    json!([
        {"station_id": 3, "station": "North gate", "day": "2024-05-01", "sessions": 12,
         "energy": 1_234_567, "electricity_fen": 98_765, "service_fen": 49_383,
         "revenue_fen": 148_148},
        {"station_id": null, "station": "", "day": "2024-05-01", "sessions": 1,
         "energy": 100_000, "electricity_fen": 800, "service_fen": 400, "revenue_fen": 1200}
    ])
}

pub(crate) fn sample_reconciliation_json() -> serde_json::Value {
    json!({
        "records": 120, "settlements": 120, "unsettled_records": [],
        "settled_electricity_fen": 98_765, "settled_service_fen": 49_383,
        "ledger_electricity_fen": 98_765, "ledger_service_fen": 49_383,
        "refunds_fen": 1250, "top_ups_fen": 500_000, "books_sum": 0,
        "wallet_mismatches": [], "open_holds_fen": 2000, "held_in_books_fen": 2000,
        "discrepancies": 2,
        "quarantined": 0, "balanced": true
    })
}

fn sample_reconciliation() -> Reconciliation {
    serde_json::from_value(sample_reconciliation_json()).unwrap()
}

#[test]
fn the_daily_report_has_a_row_per_station_and_day_and_totals() {
    let days: Vec<StationDay> = serde_json::from_value(sample_days_json()).unwrap();
    assert_eq!(
        daily(&days),
        "\
DAY         STATION ID  STATION       CHARGES  ENERGY kWh  ELECTRICITY yuan  SERVICE yuan  REVENUE yuan
2024-05-01  3           North gate    12       123.4567    987.65            493.83        1481.48
2024-05-01  -           (no station)  1        10.0000     8.00              4.00          12.00
TOTAL                                 13       133.4567    995.65            497.83        1493.48
"
    );
    assert_eq!(daily(&[]), "No settled charges in that time.\n");
}

#[test]
fn a_balanced_reconciliation_says_so() {
    assert_eq!(
        reconciliation(&sample_reconciliation()),
        "\
records:               120
settlements:           120
electricity, settled:  987.65 yuan
electricity, ledger:   987.65 yuan
service, settled:      493.83 yuan
service, ledger:       493.83 yuan
top-ups:               5000.00 yuan
refunds:               12.50 yuan
open holds:            20.00 yuan
held in books:         20.00 yuan
discrepancies:         2
quarantined:           0

CHECK                              RESULT
every record settled               ok
electricity: settlements = ledger  ok
service: settlements = ledger      ok
all books sum to zero              ok
open holds = hold books            ok
wallets match their books          ok

Balanced: yes.
"
    );
}

#[test]
fn an_unbalanced_reconciliation_names_what_is_off() {
    let mut r = sample_reconciliation();
    r.balanced = false;
    r.unsettled_records = vec!["32010200000001012405010800000001".into()];
    r.ledger_service_fen -= 3;
    r.wallet_mismatches = vec![7, 9];
    r.books_sum = -3;
    let text = reconciliation(&r);
    for line in [
        "every record settled               1 unsettled\n",
        "service: settlements = ledger      differ by 0.03 yuan\n",
        "all books sum to zero              sum is -0.03 yuan\n",
        "wallets match their books          accounts 7, 9 differ\n",
        "\nUnsettled records: 32010200000001012405010800000001\n",
    ] {
        assert!(text.contains(line), "{line:?} in {text}");
    }
    assert!(text.ends_with("\nBalanced: NO.\n"), "{text}");
    // Unbalanced for a reason the reply does not carry.
    let mut hidden = sample_reconciliation();
    hidden.balanced = false;
    assert!(reconciliation(&hidden).contains("Balanced: NO, for a reason the checks above"));
}

#[test]
fn discrepancies_and_quarantine_render() {
    let d = Discrepancy {
        trade_no: "32010200000001012405010800000001".into(),
        pile_no: "32010200000001".into(),
        platform_amount: 185_184,
        pile_amount: 185_000,
        at: 1_714_554_001_000,
    };
    assert_eq!(
        discrepancies(std::slice::from_ref(&d), 100),
        "\
TRADE NO                          PILE            PLATFORM yuan  PILE yuan  PILE - PLATFORM  AT
32010200000001012405010800000001  32010200000001  18.5184        18.5000    -0.0184          2024-05-01T09:00:01Z
"
    );
    assert!(discrepancies(&[d], 1).ends_with("Only 1 shown; there may be more: raise --limit.\n"));
    assert!(discrepancies(&[], 100).starts_with("No discrepancies"));
    let q = QuarantinedRecord {
        id: 5,
        trade_no: "32010200000001012405010800000001".into(),
        pile_no: "32010200000001".into(),
        reason: "trade number reused with other content".into(),
        received_at: 1_714_554_001_000,
    };
    assert_eq!(
        quarantine(&[q], 100),
        "\
ID  TRADE NO                          PILE            RECEIVED              REASON
5   32010200000001012405010800000001  32010200000001  2024-05-01T09:00:01Z  trade number reused with other content
"
    );
    assert_eq!(quarantine(&[], 100), "No quarantined records.\n");
}

#[test]
fn holds_that_differ_from_their_books_are_named() {
    let mut r = sample_reconciliation();
    r.balanced = false;
    r.held_in_books_fen = 1_500;
    let text = reconciliation(&r);
    assert!(
        text.contains("open holds = hold books            differ by 5.00 yuan"),
        "{text}"
    );
    assert!(text.ends_with("Balanced: NO.\n"), "{text}");
}
