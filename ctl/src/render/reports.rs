//! How `pylonctl reports` prints the revenue reports for people: money in yuan, energy in
//! kWh, a check list for the reconciliation.

use std::fmt::Write as _;

use pylon_proto::api::revenue::{Discrepancy, QuarantinedRecord, Reconciliation, StationDay};

use super::control::{fields, table};
use crate::units::{format_energy, format_fen, format_time};

/// 0.0001 yuan -> yuan with four decimals, as piles report amounts.
fn yuan4(raw: i64) -> String {
    format_energy(raw)
}

/// `reports daily`: one row per station and day, and the totals.
pub fn daily(days: &[StationDay]) -> String {
    if days.is_empty() {
        return "No settled charges in that time.\n".into();
    }
    let mut rows: Vec<Vec<String>> = days
        .iter()
        .map(|d| {
            vec![
                d.day.clone(),
                d.station_id.map_or_else(|| "-".into(), |s| s.to_string()),
                if d.station.is_empty() && d.station_id.is_none() {
                    "(no station)".into()
                } else {
                    d.station.clone()
                },
                d.sessions.to_string(),
                format_energy(d.energy),
                format_fen(d.electricity_fen),
                format_fen(d.service_fen),
                format_fen(d.revenue_fen),
            ]
        })
        .collect();
    let sum = |f: fn(&StationDay) -> i64| days.iter().map(f).fold(0i64, i64::saturating_add);
    rows.push(vec![
        "TOTAL".into(),
        String::new(),
        String::new(),
        days.iter().map(|d| d.sessions).sum::<u64>().to_string(),
        format_energy(sum(|d| d.energy)),
        format_fen(sum(|d| d.electricity_fen)),
        format_fen(sum(|d| d.service_fen)),
        format_fen(sum(|d| d.revenue_fen)),
    ]);
    table(
        &[
            "DAY",
            "STATION ID",
            "STATION",
            "CHARGES",
            "ENERGY kWh",
            "ELECTRICITY yuan",
            "SERVICE yuan",
            "REVENUE yuan",
        ],
        &rows,
    )
}

/// `ok`, or what is wrong.
fn check(ok: bool, wrong: impl FnOnce() -> String) -> String {
    if ok {
        "ok".into()
    } else {
        wrong()
    }
}

/// The reconciliation's checks, each `ok` or what is off.
fn checks(r: &Reconciliation) -> Vec<Vec<String>> {
    let differ = |a: i64, b: i64| format!("differ by {} yuan", format_fen(a.saturating_sub(b)));
    vec![
        vec![
            "every record settled".into(),
            check(r.unsettled_records.is_empty(), || {
                format!("{} unsettled", r.unsettled_records.len())
            }),
        ],
        vec![
            "electricity: settlements = ledger".into(),
            check(
                r.settled_electricity_fen == r.ledger_electricity_fen,
                || differ(r.settled_electricity_fen, r.ledger_electricity_fen),
            ),
        ],
        vec![
            "service: settlements = ledger".into(),
            check(r.settled_service_fen == r.ledger_service_fen, || {
                differ(r.settled_service_fen, r.ledger_service_fen)
            }),
        ],
        vec![
            "all books sum to zero".into(),
            check(r.books_sum == 0, || {
                format!("sum is {} yuan", format_fen(r.books_sum))
            }),
        ],
        vec![
            "open holds = hold books".into(),
            check(r.open_holds_fen == r.held_in_books_fen, || {
                differ(r.open_holds_fen, r.held_in_books_fen)
            }),
        ],
        vec![
            "wallets match their books".into(),
            check(r.wallet_mismatches.is_empty(), || {
                let ids: Vec<String> = r.wallet_mismatches.iter().map(i64::to_string).collect();
                format!("accounts {} differ", ids.join(", "))
            }),
        ],
    ]
}

/// `reports reconciliation`: the figures, the checks, and the verdict.
pub fn reconciliation(r: &Reconciliation) -> String {
    let money = |fen: i64| format!("{} yuan", format_fen(fen));
    let mut out = fields(&[
        ("records", r.records.to_string()),
        ("settlements", r.settlements.to_string()),
        ("electricity, settled", money(r.settled_electricity_fen)),
        ("electricity, ledger", money(r.ledger_electricity_fen)),
        ("service, settled", money(r.settled_service_fen)),
        ("service, ledger", money(r.ledger_service_fen)),
        ("top-ups", money(r.top_ups_fen)),
        ("refunds", money(r.refunds_fen)),
        ("open holds", money(r.open_holds_fen)),
        ("held in books", money(r.held_in_books_fen)),
        ("discrepancies", r.discrepancies.to_string()),
        ("quarantined", r.quarantined.to_string()),
    ]);
    out.push('\n');
    let rows = checks(r);
    let all_ok = rows.iter().all(|row| row.get(1).is_some_and(|v| v == "ok"));
    out.push_str(&table(&["CHECK", "RESULT"], &rows));
    if !r.unsettled_records.is_empty() {
        let _ = writeln!(
            out,
            "\nUnsettled records: {}",
            r.unsettled_records.join(", ")
        );
    }
    out.push('\n');
    match (r.balanced, all_ok) {
        (true, _) => out.push_str("Balanced: yes.\n"),
        (false, false) => out.push_str("Balanced: NO.\n"),
        (false, true) => out.push_str(
            "Balanced: NO, for a reason the checks above do not show; see pylon-app's log.\n",
        ),
    }
    out
}

/// `reports discrepancies`. `limit`: the query's, to say when there may be more.
pub fn discrepancies(list: &[Discrepancy], limit: u32) -> String {
    if list.is_empty() {
        return "No discrepancies: every pile's amount agrees with the platform's.\n".into();
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|d| {
            vec![
                d.trade_no.clone(),
                d.pile_no.clone(),
                yuan4(d.platform_amount),
                yuan4(d.pile_amount),
                yuan4(d.pile_amount.saturating_sub(d.platform_amount)),
                format_time(d.at),
            ]
        })
        .collect();
    let mut out = table(
        &[
            "TRADE NO",
            "PILE",
            "PLATFORM yuan",
            "PILE yuan",
            "PILE - PLATFORM",
            "AT",
        ],
        &rows,
    );
    more(&mut out, list.len(), limit);
    out
}

/// `reports quarantine`. `limit`: the query's, to say when there may be more.
pub fn quarantine(list: &[QuarantinedRecord], limit: u32) -> String {
    if list.is_empty() {
        return "No quarantined records.\n".into();
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|q| {
            vec![
                q.id.to_string(),
                q.trade_no.clone(),
                q.pile_no.clone(),
                format_time(q.received_at),
                q.reason.clone(),
            ]
        })
        .collect();
    let mut out = table(&["ID", "TRADE NO", "PILE", "RECEIVED", "REASON"], &rows);
    more(&mut out, list.len(), limit);
    out
}

fn more(out: &mut String, shown: usize, limit: u32) {
    if shown >= limit as usize {
        let _ = writeln!(
            out,
            "\nOnly {limit} shown; there may be more: raise --limit."
        );
    }
}

#[cfg(test)]
pub(crate) mod tests;
