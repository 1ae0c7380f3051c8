//! How `pylonctl tariffs` prints tariffs for people: prices in yuan per kWh with the
//! protocol's five decimals, the day schedule as `FROM TO PERIOD` rows.

use std::fmt::Write as _;

use pylon_proto::api::revenue::{Period, Tariff};

use super::control::{fields, table};
use crate::commands::tariffs::slot_of;
use crate::units::{format_price, format_time};

/// Half hours in a day.
const SLOTS: usize = 48;

/// `HH:MM` of a half hour (48 is `24:00`, the end of the day).
fn slot_text(slot: usize) -> String {
    format!("{:02}:{:02}", slot / 2, (slot % 2) * 30)
}

/// `h:mm` of a number of half hours.
fn hours(slots: usize) -> String {
    format!("{}:{:02}", slots / 2, (slots % 2) * 30)
}

/// The schedule's changes as `(from, to, period)` half hours; `None` if a time is not a
/// half-hour boundary (the app service does not store such tariffs).
fn spans(t: &Tariff) -> Option<Vec<(usize, usize, Period)>> {
    let starts: Vec<usize> = t
        .schedule
        .iter()
        .map(|c| slot_of(&c.from))
        .collect::<Option<_>>()?;
    Some(
        t.schedule
            .iter()
            .enumerate()
            .map(|(i, c)| {
                (
                    starts[i],
                    starts.get(i + 1).copied().unwrap_or(SLOTS),
                    c.period,
                )
            })
            .collect(),
    )
}

/// The total price of a period (electricity plus service), yuan per kWh.
fn total(t: &Tariff, period: Period) -> String {
    let rate = t.rates.of(period);
    format_price(rate.electricity.saturating_add(rate.service))
}

/// `tariffs list`.
pub fn tariffs(list: &[Tariff]) -> String {
    if list.is_empty() {
        return "No tariffs yet: add one with `pylonctl tariffs add`.\n".into();
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|t| {
            let mut row = vec![t.id.to_string(), t.name.clone(), t.revision.to_string()];
            row.extend(Period::ALL.iter().map(|p| total(t, *p)));
            row.push(format_time(t.created_at));
            row
        })
        .collect();
    let mut out = table(
        &[
            "ID", "NAME", "REVISION", "SHARP", "PEAK", "FLAT", "VALLEY", "REVISED",
        ],
        &rows,
    );
    out.push_str("\nPrices: electricity plus service, yuan per kWh.\n");
    out
}

/// `tariffs show`: the tariff, its prices per period and its day schedule.
pub fn tariff(t: &Tariff) -> String {
    let mut out = fields(&[
        ("tariff", t.id.to_string()),
        ("name", t.name.clone()),
        ("revision", t.revision.to_string()),
        ("loss ratio", format!("{} %", t.loss_ratio)),
        ("revised", format_time(t.created_at)),
    ]);
    let spans = spans(t);
    let rows: Vec<Vec<String>> = Period::ALL
        .iter()
        .map(|p| {
            let rate = t.rates.of(*p);
            let day = spans.as_ref().map_or_else(
                || "-".into(),
                |s| hours(s.iter().filter(|x| x.2 == *p).map(|x| x.1 - x.0).sum()),
            );
            vec![
                p.as_str().to_owned(),
                format_price(rate.electricity),
                format_price(rate.service),
                total(t, *p),
                day,
            ]
        })
        .collect();
    out.push('\n');
    out.push_str(&table(
        &["PERIOD", "ELECTRICITY", "SERVICE", "TOTAL", "HOURS A DAY"],
        &rows,
    ));
    out.push_str("(yuan per kWh)\n\n");
    let rows: Vec<Vec<String>> = match &spans {
        Some(spans) => spans
            .iter()
            .map(|(from, to, p)| vec![slot_text(*from), slot_text(*to), p.as_str().to_owned()])
            .collect(),
        None => t
            .schedule
            .iter()
            .map(|c| vec![c.from.clone(), "-".into(), c.period.as_str().to_owned()])
            .collect(),
    };
    out.push_str("Schedule (station local time):\n");
    out.push_str(&table(&["FROM", "TO", "PERIOD"], &rows));
    out
}

/// The confirmation of `tariffs add`.
pub fn tariff_added(t: &Tariff) -> String {
    let mut out = format!("Tariff {} added (revision {}).\n\n", t.id, t.revision);
    out.push_str(&tariff(t));
    let _ = write!(
        out,
        "\nPrice a station with it: pylonctl stations tariff STATION --tariff {}\n",
        t.id
    );
    out
}

/// The confirmation of `tariffs revise`.
pub fn tariff_revised(t: &Tariff) -> String {
    let mut out = format!(
        "Tariff {} revised: revision {} prices the charges that start from now on; stations \
         priced with it sent it to their connected piles.\n\n",
        t.id, t.revision
    );
    out.push_str(&tariff(t));
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use serde_json::json;

    use super::*;

    pub(crate) fn sample_tariff_json() -> serde_json::Value {
        let rate = |e: u32, s: u32| json!({"electricity": e, "service": s});
        json!({
            "id": 2,
            "name": "Standard",
            "revision": 3,
            "rates": {
                "sharp": rate(120_000, 40_000),
                "peak": rate(100_000, 40_000),
                "flat": rate(80_000, 40_000),
                "valley": rate(40_000, 12_345)
            },
            "loss_ratio": 5,
            "schedule": [
                {"from": "00:00", "period": "valley"},
                {"from": "08:00", "period": "flat"},
                {"from": "10:00", "period": "peak"},
                {"from": "18:00", "period": "sharp"},
                {"from": "20:30", "period": "flat"},
                {"from": "23:00", "period": "valley"}
            ],
            "created_at": 1_714_550_400_000i64
        })
    }

    fn sample() -> Tariff {
        serde_json::from_value(sample_tariff_json()).unwrap()
    }

    #[test]
    fn a_tariff_shows_prices_in_yuan_and_its_schedule() {
        assert_eq!(
            tariff(&sample()),
            "\
tariff:      2
name:        Standard
revision:    3
loss ratio:  5 %
revised:     2024-05-01T08:00:00Z

PERIOD  ELECTRICITY  SERVICE  TOTAL    HOURS A DAY
sharp   1.20000      0.40000  1.60000  2:30
peak    1.00000      0.40000  1.40000  8:00
flat    0.80000      0.40000  1.20000  4:30
valley  0.40000      0.12345  0.52345  9:00
(yuan per kWh)

Schedule (station local time):
FROM   TO     PERIOD
00:00  08:00  valley
08:00  10:00  flat
10:00  18:00  peak
18:00  20:30  sharp
20:30  23:00  flat
23:00  24:00  valley
"
        );
    }

    #[test]
    fn a_tariff_list_shows_total_prices() {
        assert_eq!(
            tariffs(&[sample()]),
            "\
ID  NAME      REVISION  SHARP    PEAK     FLAT     VALLEY   REVISED
2   Standard  3         1.60000  1.40000  1.20000  0.52345  2024-05-01T08:00:00Z

Prices: electricity plus service, yuan per kWh.
"
        );
        assert!(tariffs(&[]).starts_with("No tariffs yet"));
    }

    #[test]
    fn confirmations_point_to_the_next_step() {
        let added = tariff_added(&sample());
        assert!(
            added.starts_with("Tariff 2 added (revision 3).\n\ntariff:"),
            "{added}"
        );
        assert!(
            added.ends_with("pylonctl stations tariff STATION --tariff 2\n"),
            "{added}"
        );
        assert!(tariff_revised(&sample()).starts_with("Tariff 2 revised: revision 3 prices"));
    }

    #[test]
    fn a_schedule_the_server_should_not_hold_still_renders() {
        let mut t = sample();
        t.schedule[1].from = "8:00".into();
        let text = tariff(&t);
        assert!(
            text.contains("valley  0.40000      0.12345  0.52345  -\n"),
            "{text}"
        );
        assert!(text.contains("8:00   -   flat\n"), "{text}");
    }
}
