use serde_json::json;

use super::*;

pub(crate) fn sample_account_json() -> serde_json::Value {
    json!({
        "id": 7,
        "name": "Fleet A",
        "state": "active",
        "balance": 6250,
        "held": 2000,
        "stations": [3, 4],
        "cards": [{"card": "D14B****", "logical": "1000****", "has_password": true}],
        "vins": ["LSVA****"],
        "created_at": 1_714_550_400_000i64,
        "updated_at": 1_714_554_000_000i64
    })
}

pub(crate) fn sample_ledger_json() -> serde_json::Value {
    json!({
        "id": 41,
        "at": 1_714_554_000_000i64,
        "kind": "charge",
        "from": "hold:7",
        "to": "revenue:electricity",
        "amount": 1234,
        "trade_no": "32010200000001012405010800000001",
        "actor": "settlement",
        "reason": "charge settled"
    })
}

fn sample() -> Account {
    serde_json::from_value(sample_account_json()).unwrap()
}

#[test]
fn an_account_shows_its_wallet_and_masked_cards() {
    assert_eq!(
        account(&sample()),
        "\
account:   7
name:      Fleet A
state:     active
balance:   62.50 yuan
on hold:   20.00 yuan
stations:  3, 4
created:   2024-05-01T08:00:00Z
updated:   2024-05-01T09:00:00Z

CARD      LOGICAL NO  PASSWORD
D14B****  1000****    yes
VINs: LSVA****
"
    );
    let mut bare = sample();
    (bare.cards, bare.vins, bare.stations) = (vec![], vec![], vec![]);
    bare.balance = -150;
    let text = account(&bare);
    assert!(text.contains("balance:   -1.50 yuan\n"), "{text}");
    assert!(text.contains("stations:  all\n"), "{text}");
    assert!(text.ends_with("\nNo cards.\nNo VINs.\n"), "{text}");
}

#[test]
fn an_account_list_renders_and_points_to_the_next_page() {
    let mut frozen = sample();
    (frozen.id, frozen.name, frozen.state) = (8, "Zhang Wei".into(), AccountState::Frozen);
    (frozen.balance, frozen.held, frozen.stations) = (0, 0, vec![]);
    let expected = "\
ID  NAME       STATE   BALANCE yuan  HELD yuan  CARDS  VINS  STATIONS
7   Fleet A    active  62.50         20.00      1      1     3, 4
8   Zhang Wei  frozen  0.00          0.00       1      1     all
";
    let list = [sample(), frozen];
    assert_eq!(accounts(&list, 100), expected);
    assert_eq!(
        accounts(&list, 2),
        format!("{expected}\nThere may be more: pylonctl accounts list --after 8 --limit 2\n")
    );
    assert!(accounts(&[], 100).starts_with("No accounts"));
}

#[test]
fn the_ledger_shows_what_the_wallet_gained_or_lost() {
    let charge: LedgerEntry = serde_json::from_value(sample_ledger_json()).unwrap();
    let top_up = LedgerEntry {
        id: 40,
        at: 1_714_550_400_000,
        kind: "top_up".into(),
        from: "funding".into(),
        to: "wallet:7".into(),
        amount: 20_000,
        trade_no: None,
        actor: "operator".into(),
        reason: "bank transfer".into(),
    };
    let hold = LedgerEntry {
        kind: "hold".into(),
        from: "wallet:7".into(),
        to: "hold:7".into(),
        amount: 2000,
        ..top_up.clone()
    };
    assert_eq!(
        ledger(&[charge, hold, top_up], 7, 100),
        "\
AT                    KIND    WALLET yuan  AMOUNT yuan  FROM      TO                   TRADE NO                          BY          REASON
2024-05-01T09:00:00Z  charge  -            12.34        hold:7    revenue:electricity  32010200000001012405010800000001  settlement  charge settled
2024-05-01T08:00:00Z  hold    -20.00       20.00        wallet:7  hold:7               -                                 operator    bank transfer
2024-05-01T08:00:00Z  top_up  +200.00      200.00       funding   wallet:7             -                                 operator    bank transfer
"
    );
    assert!(ledger(&[], 7, 100).starts_with("Account 7 has no ledger entries"));
}

#[test]
fn confirmations_say_what_changed() {
    let a = sample();
    assert_eq!(
        money_moved(&a, "refund", 1250),
        "Refunded account 7 by 12.50 yuan: balance 62.50 yuan, on hold 20.00 yuan.\n"
    );
    assert_eq!(
        account_state(&a),
        "Account 7 is active: it may start charges.\n"
    );
    assert_eq!(
        card_removed(&a, "D14B****"),
        "Card D14B**** removed from account 7 (1 card left).\n"
    );
    assert!(account_added(&a).contains("pylonctl accounts top-up 7 --amount YUAN"));
    assert_eq!(
        account_updated(&a),
        format!("Account 7 updated.\n\n{}", account(&a))
    );
    assert_eq!(
        vin_removed(&a, "LSVA****"),
        "VIN LSVA**** removed from account 7 (1 VIN left).\n"
    );
    let mut bare = a.clone();
    bare.vins.clear();
    assert_eq!(
        vin_removed(&bare, "LSVA****"),
        "VIN LSVA**** removed from account 7 (0 VINs left).\n"
    );
}
