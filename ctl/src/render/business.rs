//! How `pylonctl piles|records|charge` print the app service's replies for people, in
//! the style of [`super::control`]: aligned columns and `key: value` blocks, times in
//! UTC, money in yuan and energy in kWh.

use std::fmt::Write as _;

use pylon_proto::ykc::FrameType;

use super::control::{fields, table};
use crate::commands::business::{
    GunStatus, Order, OrderDetail, OrderState, Pile, PileDetail, Record,
};
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

pub fn guns(guns: &[GunStatus]) -> String {
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
                o.state.as_str().to_owned(),
                o.origin.as_str().to_owned(),
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
        ("state", o.state.as_str().to_owned()),
        ("origin", o.origin.as_str().to_owned()),
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
        None if d.order.state == OrderState::Failed => out.push_str("No transaction record.\n"),
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
pub(crate) mod tests;
