//! How `pylonctl piles|records|charge` print the app service's replies for people, in
//! the style of [`super::control`]: aligned columns and `key: value` blocks, times in
//! UTC, money in yuan and energy in kWh.

use std::fmt::Write as _;

use pylon_proto::ykc::FrameType;

use super::control::{fields, table};
use crate::commands::business::{Gun, Order, OrderDetail, Pile, PileDetail, Record};
use crate::units::{format_amount, format_energy, format_fen, format_time, format_time_or};

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.into()
}

fn or_dash(s: &str) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        s.to_owned()
    }
}

/// A gun's status code (frame 0x13) as a word.
pub fn gun_status(status: u8) -> String {
    match status {
        0 => "offline".into(),
        1 => "fault".into(),
        2 => "idle".into(),
        3 => "charging".into(),
        n => format!("unknown ({n})"),
    }
}

/// A stop reason as the protocol's hex code (`0x40`).
pub fn stop_reason(code: u8) -> String {
    format!("{code:#04x}")
}

/// `piles list`. `after`/`limit`: the query, to say how to get the next page.
pub fn piles(piles: &[Pile], after: Option<&str>, limit: u32) -> String {
    if piles.is_empty() {
        return match after {
            Some(after) => format!("No piles are registered after {after}.\n"),
            None => "No piles are registered.\n".into(),
        };
    }
    let rows: Vec<Vec<String>> = piles
        .iter()
        .map(|p| {
            vec![
                p.pile_no.clone(),
                yes_no(p.enabled),
                p.billing_model.to_string(),
                or_dash(&p.name),
                format_time_or(p.last_login_at, "never"),
            ]
        })
        .collect();
    let mut out = table(&["PILE", "ENABLED", "MODEL", "NAME", "LAST LOGIN"], &rows);
    if piles.len() >= limit as usize {
        if let Some(last) = piles.last() {
            let _ = writeln!(
                out,
                "\nThere may be more: pylonctl piles list --after {} --limit {limit}",
                last.pile_no
            );
        }
    }
    out
}

/// The confirmation of `piles add`.
pub fn piles_added(numbers: &[String], enabled: bool, model: u16, name: Option<&str>) -> String {
    let list = match numbers {
        [] => String::new(),
        [one] => one.clone(),
        [first, .., last] if numbers.len() > 4 => format!("{first} ... {last}"),
        _ => numbers.join(", "),
    };
    let mut settings = vec![
        if enabled { "enabled" } else { "disabled" }.to_owned(),
        format!("billing model {model}"),
    ];
    if let Some(name) = name.filter(|n| !n.is_empty()) {
        settings.push(format!("name {name:?}"));
    }
    format!(
        "{} pile{} added or updated ({}): {list}\n",
        numbers.len(),
        if numbers.len() == 1 { "" } else { "s" },
        settings.join(", ")
    )
}

/// The confirmation of `piles enable|disable`. `was`: whether it was enabled before.
pub fn pile_enabled(pile: &Pile, was: bool) -> String {
    let no = &pile.pile_no;
    match (pile.enabled, was) {
        (true, true) => format!("pile {no} was enabled already\n"),
        (false, false) => format!("pile {no} was disabled already\n"),
        (true, false) => format!("pile {no} is enabled: it may log in and charge again\n"),
        (false, true) => format!(
            "pile {no} is disabled: it may no longer log in, and no charge may start on it \
             (a session open now lasts until the pile reconnects)\n"
        ),
    }
}

/// `piles show`: the pile, its connection, its guns and its open orders.
pub fn pile_detail(d: &PileDetail) -> String {
    let p = &d.pile;
    let connection = match &d.online {
        Some(l) => format!(
            "edge {}, executor {}, session {}",
            l.edge, l.executor, l.session_id
        ),
        None => "offline".into(),
    };
    let mut out = fields(&[
        ("pile", p.pile_no.clone()),
        ("name", or_dash(&p.name)),
        ("enabled", yes_no(p.enabled)),
        ("billing model", p.billing_model.to_string()),
        ("last login", format_time_or(p.last_login_at, "never")),
        ("connected", connection),
    ]);
    out.push('\n');
    out.push_str(&guns(&d.guns));
    out.push('\n');
    if d.open_orders.is_empty() {
        out.push_str("No open orders.\n");
    } else {
        out.push_str("Open orders:\n");
        out.push_str(&orders(&d.open_orders, false));
    }
    out
}

pub fn guns(guns: &[Gun]) -> String {
    if guns.is_empty() {
        return "No gun has reported its status yet.\n".into();
    }
    let rows: Vec<Vec<String>> = guns
        .iter()
        .map(|g| {
            vec![
                g.gun_no.clone(),
                gun_status(g.status),
                format_time(g.updated_at),
            ]
        })
        .collect();
    table(&["GUN", "STATUS", "UPDATED"], &rows)
}

/// Orders as a table; `with_pile`: add a PILE column.
pub fn orders(orders: &[Order], with_pile: bool) -> String {
    let rows: Vec<Vec<String>> = orders
        .iter()
        .map(|o| {
            let mut row = vec![o.trade_no.clone()];
            if with_pile {
                row.push(o.pile_no.clone());
            }
            row.extend([
                o.gun_no.clone(),
                o.state.clone(),
                o.origin.clone(),
                format_fen(o.balance),
                format_time(o.created_at),
            ]);
            row
        })
        .collect();
    let mut header = vec!["TRADE NO"];
    if with_pile {
        header.push("PILE");
    }
    header.extend(["GUN", "STATE", "ORIGIN", "BALANCE yuan", "CREATED"]);
    table(&header, &rows)
}

/// `charge open`.
pub fn open_orders(list: &[Order], pile: Option<&str>) -> String {
    if list.is_empty() {
        return match pile {
            Some(pile) => format!("Pile {pile} has no open orders.\n"),
            None => "No open orders.\n".into(),
        };
    }
    orders(list, true)
}

fn order_fields(o: &Order) -> Vec<(&'static str, String)> {
    let mut pairs = vec![
        ("trade no", o.trade_no.clone()),
        ("pile", o.pile_no.clone()),
        ("gun", o.gun_no.clone()),
        ("state", o.state.clone()),
        ("origin", o.origin.clone()),
        ("balance", format!("{} yuan", format_fen(o.balance))),
        ("created", format_time(o.created_at)),
        ("updated", format_time(o.updated_at)),
    ];
    if let Some(failure) = &o.failure {
        pairs.push(("failure", failure.clone()));
    }
    pairs
}

/// `charge start`.
pub fn charge_started(o: &Order) -> String {
    let mut out = fields(&order_fields(o)[..6]);
    let _ = write!(
        out,
        "\nThe start was sent to the pile, which confirms it within 90 s. Follow the charge \
         with:\n  pylonctl charge show {}\n",
        o.trade_no
    );
    out
}

/// `charge stop`.
pub fn charge_stopped(o: &Order) -> String {
    let mut out = fields(&order_fields(o)[..6]);
    let _ = write!(
        out,
        "\nThe stop was sent to the pile. The order is finished when the pile sends its \
         transaction record:\n  pylonctl charge show {}\n",
        o.trade_no
    );
    out
}

/// `charge show`: the order, a summary of its events and its record.
pub fn order_detail(d: &OrderDetail) -> String {
    let mut pairs = order_fields(&d.order);
    pairs.push(("events", d.events.len().to_string()));
    let mut out = fields(&pairs);
    if !d.events.is_empty() {
        // Per frame type, in the order the types first occur.
        let mut kinds: Vec<(u8, usize, i64, i64)> = Vec::new();
        for e in &d.events {
            match kinds.iter_mut().find(|k| k.0 == e.frame_type) {
                Some(k) => {
                    k.1 += 1;
                    k.2 = k.2.min(e.at);
                    k.3 = k.3.max(e.at);
                }
                None => kinds.push((e.frame_type, 1, e.at, e.at)),
            }
        }
        let rows: Vec<Vec<String>> = kinds
            .iter()
            .map(|&(code, count, first, last)| {
                vec![
                    FrameType::by_code(code)
                        .map_or("unknown", |t| t.name)
                        .to_owned(),
                    format!("{code:#04x}"),
                    count.to_string(),
                    format_time(first),
                    format_time(last),
                ]
            })
            .collect();
        out.push('\n');
        out.push_str(&table(&["EVENT", "CODE", "COUNT", "FIRST", "LAST"], &rows));
    }
    out.push('\n');
    match &d.record {
        Some(r) => {
            out.push_str("Transaction record:\n");
            out.push_str(&record_fields(r));
        }
        None if d.order.state == "failed" => out.push_str("No transaction record.\n"),
        None => out
            .push_str("No transaction record yet: the pile sends it when the charge has ended.\n"),
    }
    out
}

/// `records list`. `limit`: the query's, to say when there may be more.
pub fn records(records: &[Record], pile: &str, limit: u32) -> String {
    if records.is_empty() {
        return format!("No transaction records of pile {pile} in that time.\n");
    }
    let rows: Vec<Vec<String>> = records
        .iter()
        .map(|r| {
            vec![
                r.trade_no.clone(),
                r.gun_no.clone(),
                format_time(r.start_time),
                format_time(r.end_time),
                format_energy(r.total_energy),
                format_amount(r.total_amount),
                stop_reason(r.stop_reason),
            ]
        })
        .collect();
    let mut out = table(
        &[
            "TRADE NO",
            "GUN",
            "START",
            "END",
            "ENERGY kWh",
            "AMOUNT yuan",
            "STOP REASON",
        ],
        &rows,
    );
    if records.len() >= limit as usize {
        let _ = writeln!(
            out,
            "\nThese are the newest {limit}; there may be more: raise --limit, or narrow \
             with --from/--to."
        );
    }
    out
}

/// `h:mm:ss` between two millisecond times (`-` if negative).
fn duration(from: i64, to: i64) -> String {
    if to < from {
        return "-".into();
    }
    let s = (to - from) / 1000;
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

fn record_fields(r: &Record) -> String {
    fields(&[
        ("trade no", r.trade_no.clone()),
        ("pile", r.pile_no.clone()),
        ("gun", r.gun_no.clone()),
        ("start", format_time(r.start_time)),
        ("end", format_time(r.end_time)),
        ("duration", duration(r.start_time, r.end_time)),
        ("energy", format!("{} kWh", format_energy(r.total_energy))),
        ("amount", format!("{} yuan", format_amount(r.total_amount))),
        ("stop reason", stop_reason(r.stop_reason)),
        ("received", format_time(r.received_at)),
    ])
}

/// `records show`: the record, then every field of its frame (0x3B) as JSON.
pub fn record(r: &Record) -> String {
    let mut out = record_fields(r);
    if !r.fields.is_null() {
        let json = serde_json::to_string_pretty(&r.fields).unwrap_or_else(|_| r.fields.to_string());
        let _ = write!(out, "\nfields (frame 0x3b):\n{json}\n");
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
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
        let detail: OrderDetail = serde_json::from_value(
            json!({"order": sample_order_json(), "events": [], "record": null}),
        )
        .unwrap();
        assert!(order_detail(&detail).ends_with(
            "No transaction record yet: the pile sends it when the charge has ended.\n"
        ));
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
}
