use serde_json::json;

use super::*;

pub(crate) fn sample_order_json() -> serde_json::Value {
    json!({
        "trade_no": "32010200000001012405010800000001",
        "pile_no": "32010200000001",
        "gun_no": "01",
        "state": "charging",
        "origin": "operator",
        "balance": 5000,
        "created_at": 1_714_550_400_000i64,
        "updated_at": 1_714_550_401_000i64,
        "failure": null
    })
}

pub(crate) fn sample_record_json() -> serde_json::Value {
    json!({
        "trade_no": "32010200000001012405010800000001",
        "pile_no": "32010200000001",
        "gun_no": "01",
        "start_time": 1_714_550_400_000i64,
        "end_time": 1_714_554_000_000i64,
        "total_energy": 123_456,
        "total_amount": 185_184,
        "stop_reason": 64,
        "fields": {"total_energy": 12.3456, "vin": "LSVAU2180N2183294"},
        "received_at": 1_714_554_001_000i64
    })
}

pub(crate) fn sample_detail_json() -> serde_json::Value {
    json!({
        "pile": {
            "pile_no": "32010200000001",
            "enabled": true,
            "billing_model": 1,
            "name": "Lot B #1",
            "last_login_at": 1_714_550_000_000i64
        },
        "online": {"edge": "edge-1", "executor": 3, "session_id": 77},
        "guns": [
            {"pile_no": "32010200000001", "gun_no": "01", "status": 3, "data": {},
             "updated_at": 1_714_550_460_000i64},
            {"pile_no": "32010200000001", "gun_no": "02", "status": 2, "data": {},
             "updated_at": 1_714_550_000_000i64}
        ],
        "open_orders": [sample_order_json()]
    })
}

#[test]
fn a_pile_detail_renders() {
    let d: PileDetail = serde_json::from_value(sample_detail_json()).unwrap();
    assert_eq!(
        pile_detail(&d),
        "\
pile:           32010200000001
name:           Lot B #1
enabled:        yes
billing model:  1
last login:     2024-05-01T07:53:20Z
connected:      edge edge-1, executor 3, session 77

GUN  STATUS    UPDATED
01   charging  2024-05-01T08:01:00Z
02   idle      2024-05-01T07:53:20Z

Open orders:
TRADE NO                          GUN  STATE     ORIGIN    BALANCE yuan  CREATED
32010200000001012405010800000001  01   charging  operator  50.00         2024-05-01T08:00:00Z
"
    );

    let mut offline = sample_detail_json();
    offline["online"] = json!(null);
    offline["guns"] = json!([]);
    offline["open_orders"] = json!([]);
    offline["pile"]["last_login_at"] = json!(null);
    offline["pile"]["name"] = json!("");
    let d: PileDetail = serde_json::from_value(offline).unwrap();
    let text = pile_detail(&d);
    assert!(text.contains("connected:      offline\n"), "{text}");
    assert!(text.contains("last login:     never\n"), "{text}");
    assert!(text.contains("name:           -\n"), "{text}");
    assert!(
        text.ends_with("No gun has reported its status yet.\n\nNo open orders.\n"),
        "{text}"
    );
}

#[test]
fn gun_statuses_are_words() {
    assert_eq!(gun_status(0), "offline");
    assert_eq!(gun_status(1), "fault");
    assert_eq!(gun_status(2), "idle");
    assert_eq!(gun_status(3), "charging");
    assert_eq!(gun_status(9), "unknown (9)");
}

#[test]
fn a_pile_list_renders_and_points_to_the_next_page() {
    let detail: PileDetail = serde_json::from_value(sample_detail_json()).unwrap();
    let mut second = detail.pile.clone();
    second.pile_no = "32010200000002".into();
    second.enabled = false;
    second.name = String::new();
    second.last_login_at = None;
    let list = vec![detail.pile, second];
    let expected = "\
PILE            ENABLED  MODEL  NAME      LAST LOGIN
32010200000001  yes      1      Lot B #1  2024-05-01T07:53:20Z
32010200000002  no       1      -         never
";
    assert_eq!(piles(&list, None, 100), expected);
    assert_eq!(
        piles(&list, None, 2),
        format!(
            "{expected}\nThere may be more: pylonctl piles list --after 32010200000002 \
                 --limit 2\n"
        )
    );
    assert_eq!(piles(&[], None, 100), "No piles are registered.\n");
    assert_eq!(
        piles(&[], Some("32010200000002"), 100),
        "No piles are registered after 32010200000002.\n"
    );
}

#[test]
fn a_records_list_renders_money_and_energy() {
    let r: Record = serde_json::from_value(sample_record_json()).unwrap();
    let mut r2 = r.clone();
    r2.trade_no = "32010200000001022405010900000002".into();
    r2.gun_no = "02".into();
    r2.total_energy = 5;
    r2.total_amount = 49;
    r2.stop_reason = 0x6e;
    let expected = "\
TRADE NO                          GUN  START                 END                   ENERGY kWh  AMOUNT yuan  STOP REASON
32010200000001012405010800000001  01   2024-05-01T08:00:00Z  2024-05-01T09:00:00Z  12.3456     18.52        0x40
32010200000001022405010900000002  02   2024-05-01T08:00:00Z  2024-05-01T09:00:00Z  0.0005      0.00         0x6e
";
    let list = vec![r, r2];
    assert_eq!(records(&list, "32010200000001", 100), expected);
    assert!(records(&list, "32010200000001", 2).contains("newest 2; there may be more"));
    assert_eq!(
        records(&[], "32010200000001", 100),
        "No transaction records of pile 32010200000001 in that time.\n"
    );
}

#[test]
fn a_record_shows_its_fields() {
    let r: Record = serde_json::from_value(sample_record_json()).unwrap();
    assert_eq!(
        record(&r),
        "\
trade no:     32010200000001012405010800000001
pile:         32010200000001
gun:          01
start:        2024-05-01T08:00:00Z
end:          2024-05-01T09:00:00Z
duration:     1:00:00
energy:       12.3456 kWh
amount:       18.52 yuan
stop reason:  0x40
received:     2024-05-01T09:00:01Z

fields (frame 0x3b):
{
  \"total_energy\": 12.3456,
  \"vin\": \"LSVAU2180N2183294\"
}
"
    );
}

#[test]
fn orders_render() {
    let o: Order = serde_json::from_value(sample_order_json()).unwrap();
    assert_eq!(
        charge_started(&o),
        "\
trade no:  32010200000001012405010800000001
pile:      32010200000001
gun:       01
state:     charging
origin:    operator
balance:   50.00 yuan

The start was sent to the pile, which confirms it within 90 s. Follow the charge with:
  pylonctl charge show 32010200000001012405010800000001
"
    );
    assert!(charge_stopped(&o).contains("The stop was sent to the pile."));
    assert_eq!(
            open_orders(std::slice::from_ref(&o), None),
            "\
TRADE NO                          PILE            GUN  STATE     ORIGIN    BALANCE yuan  CREATED
32010200000001012405010800000001  32010200000001  01   charging  operator  50.00         2024-05-01T08:00:00Z
"
        );
    assert_eq!(open_orders(&[], None), "No open orders.\n");
    assert_eq!(
        open_orders(&[], Some("32010200000001")),
        "Pile 32010200000001 has no open orders.\n"
    );
}

#[test]
fn an_order_detail_summarises_events_and_shows_the_record() {
    let mut order = sample_order_json();
    order["state"] = json!("finished");
    let event = |code: u8, at: i64| {
        json!({"pile_no": "32010200000001", "gun_no": "01",
            "trade_no": "32010200000001012405010800000001", "frame_type": code, "fields": {},
            "at": at})
    };
    let detail: OrderDetail = serde_json::from_value(json!({
        "order": order,
        "events": [
            event(0x33, 1_714_550_402_000),
            event(0x13, 1_714_550_415_000),
            event(0x13, 1_714_550_430_000),
            event(0x13, 1_714_550_445_000),
        ],
        "record": sample_record_json(),
    }))
    .unwrap();
    let text = order_detail(&detail);
    let name = |code| FrameType::by_code(code).unwrap().name;
    let table = table(
        &["EVENT", "CODE", "COUNT", "FIRST", "LAST"],
        &[
            vec![
                name(0x33).into(),
                "0x33".into(),
                "1".into(),
                "2024-05-01T08:00:02Z".into(),
                "2024-05-01T08:00:02Z".into(),
            ],
            vec![
                name(0x13).into(),
                "0x13".into(),
                "3".into(),
                "2024-05-01T08:00:15Z".into(),
                "2024-05-01T08:00:45Z".into(),
            ],
        ],
    );
    assert_eq!(
        text,
        format!(
            "\
trade no:  32010200000001012405010800000001
pile:      32010200000001
gun:       01
state:     finished
origin:    operator
balance:   50.00 yuan
created:   2024-05-01T08:00:00Z
updated:   2024-05-01T08:00:01Z
events:    4

{table}
Transaction record:
trade no:     32010200000001012405010800000001
pile:         32010200000001
gun:          01
start:        2024-05-01T08:00:00Z
end:          2024-05-01T09:00:00Z
duration:     1:00:00
energy:       12.3456 kWh
amount:       18.52 yuan
stop reason:  0x40
received:     2024-05-01T09:00:01Z
"
        )
    );

    let mut failed = sample_order_json();
    failed["state"] = json!("failed");
    failed["failure"] = json!("the pile did not confirm the start within 90 s");
    let detail: OrderDetail =
        serde_json::from_value(json!({"order": failed, "events": [], "record": null})).unwrap();
    let text = order_detail(&detail);
    assert!(
            text.contains("failure:   the pile did not confirm the start within 90 s\nevents:    0\n\nNo transaction record.\n"),
            "{text}"
        );
    let detail: OrderDetail =
        serde_json::from_value(json!({"order": sample_order_json(), "events": [], "record": null}))
            .unwrap();
    assert!(order_detail(&detail)
        .ends_with("No transaction record yet: the pile sends it when the charge has ended.\n"));
}

#[test]
fn confirmations() {
    let numbers: Vec<String> = (1..=3).map(|n| format!("320102000000{n:02}")).collect();
    assert_eq!(
        piles_added(&numbers, true, 1, None),
        "3 piles added or updated (enabled, billing model 1): 32010200000001, \
             32010200000002, 32010200000003\n"
    );
    let many: Vec<String> = (1..=100).map(|n| format!("320102000{n:05}")).collect();
    assert_eq!(
        piles_added(&many, false, 2, Some("Lot C")),
        "100 piles added or updated (disabled, billing model 2, name \"Lot C\"): \
             32010200000001 ... 32010200000100\n"
    );
    let d: PileDetail = serde_json::from_value(sample_detail_json()).unwrap();
    let mut p = d.pile;
    p.enabled = false;
    assert!(pile_enabled(&p, true).starts_with("pile 32010200000001 is disabled:"));
    assert_eq!(
        pile_enabled(&p, false),
        "pile 32010200000001 was disabled already\n"
    );
}
