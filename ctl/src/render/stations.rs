//! How `pylonctl stations` prints the app service's replies for people.

use std::fmt::Write as _;

use pylon_proto::api::revenue::{OfflineSync, Station, TariffAssignment};

use super::control::{fields, table};
use crate::units::format_time;

fn or_dash(s: &str) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        s.to_owned()
    }
}

/// Minutes east of UTC as `UTC+08:00`.
pub fn utc_offset(minutes: i32) -> String {
    let sign = if minutes < 0 { '-' } else { '+' };
    let m = minutes.unsigned_abs();
    format!("UTC{sign}{:02}:{:02}", m / 60, m % 60)
}

fn location(s: &Station) -> String {
    match (s.latitude, s.longitude) {
        (Some(lat), Some(lon)) => format!("{lat}, {lon}"),
        _ => "-".into(),
    }
}

fn power_cap(s: &Station) -> String {
    s.power_cap_kw
        .map_or_else(|| "none".into(), |kw| format!("{kw} kW"))
}

/// `stations list`.
pub fn stations(list: &[Station]) -> String {
    if list.is_empty() {
        return "No stations yet: add one with `pylonctl stations add --name NAME`.\n".into();
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|s| {
            vec![
                s.id.to_string(),
                s.name.clone(),
                s.piles.len().to_string(),
                s.tariff_id.map_or_else(|| "-".into(), |t| t.to_string()),
                utc_offset(s.utc_offset_minutes),
                s.power_cap_kw
                    .map_or_else(|| "-".into(), |kw| kw.to_string()),
                or_dash(&s.address),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "NAME",
            "PILES",
            "TARIFF",
            "LOCAL TIME",
            "POWER CAP kW",
            "ADDRESS",
        ],
        &rows,
    )
}

/// `stations show`.
pub fn station(s: &Station) -> String {
    let tariff = match s.tariff_id {
        Some(t) => format!("{t} (`pylonctl tariffs show {t}`)"),
        None => "none: its piles use their own billing models".into(),
    };
    let mut out = fields(&[
        ("station", s.id.to_string()),
        ("name", s.name.clone()),
        ("address", or_dash(&s.address)),
        ("location", location(s)),
        ("local time", utc_offset(s.utc_offset_minutes)),
        ("power cap", power_cap(s)),
        ("tariff", tariff),
        ("created", format_time(s.created_at)),
        ("updated", format_time(s.updated_at)),
    ]);
    out.push('\n');
    if s.piles.is_empty() {
        let _ = writeln!(
            out,
            "No piles yet: add one with `pylonctl stations add-pile {} PILE`.",
            s.id
        );
    } else {
        let _ = writeln!(out, "Piles ({}):", s.piles.len());
        for pile in &s.piles {
            let _ = writeln!(out, "  {pile}");
        }
    }
    out
}

/// The confirmation of `stations add|edit` (`verb`: "added", "updated").
pub fn station_saved(s: &Station, verb: &str) -> String {
    let mut out = format!("Station {} {verb}.\n\n", s.id);
    out.push_str(&station(s));
    out
}

/// The confirmation of `stations tariff`; `later`: it takes effect in the future.
pub fn tariff_assigned(a: &TariffAssignment, later: bool) -> String {
    let mut out = format!(
        "Station {} is priced with tariff {} from {}: charges starting from then on use it.\n",
        a.station_id,
        a.tariff_id,
        format_time(a.valid_from)
    );
    if later {
        out.push_str(
            "It is not in force yet, so it was not sent to the piles now: they get it when \
             they next ask for their billing model (at login).\n",
        );
    } else if a.pushed_to.is_empty() {
        out.push_str(
            "No connected pile took it as its billing model; the others get it when they \
             next ask for it (at login).\n",
        );
    } else {
        let _ = writeln!(
            out,
            "Sent as the billing model to {} connected pile{}, which took it: {}",
            a.pushed_to.len(),
            if a.pushed_to.len() == 1 { "" } else { "s" },
            a.pushed_to.join(", ")
        );
    }
    if !later && !a.not_taken.is_empty() {
        let _ = writeln!(
            out,
            "Refused or not answered by {}: {} (they get it when they next ask, at login)",
            a.not_taken.len(),
            a.not_taken.join(", ")
        );
    }
    out
}

/// The confirmation of `stations add-pile`.
pub fn pile_placed(s: &Station, pile: &str) -> String {
    format!(
        "Pile {pile} is at station {} ({}) now, with {} pile{} in all; its charges are priced \
         with the station's tariff ({}).\n",
        s.id,
        s.name,
        s.piles.len(),
        if s.piles.len() == 1 { "" } else { "s" },
        s.tariff_id
            .map_or_else(|| "none yet".into(), |t| format!("tariff {t}")),
    )
}

/// `stations offline-cards`: what each connected pile of station `id` made of its cards.
pub fn offline_cards(syncs: &[OfflineSync], id: i64) -> String {
    if syncs.is_empty() {
        return format!(
            "No pile of station {id} is connected, so no offline cards were sent. Run this \
             again when its piles are online (`pylonctl stations show {id}` lists them, \
             `pylonctl piles show PILE` shows a pile's connection).\n"
        );
    }
    let rows: Vec<Vec<String>> = syncs
        .iter()
        .map(|s| {
            vec![
                s.pile.clone(),
                s.cards.to_string(),
                if s.stored { "yes" } else { "no" }.to_owned(),
            ]
        })
        .collect();
    let mut out = table(&["PILE", "CARDS SENT", "STORED"], &rows);
    out.push('\n');
    let piles = |n: usize| format!("{n} connected pile{}", if n == 1 { "" } else { "s" });
    let not_stored: Vec<&str> = syncs
        .iter()
        .filter(|s| !s.stored)
        .map(|s| s.pile.as_str())
        .collect();
    if !not_stored.is_empty() {
        let _ = writeln!(
            out,
            "Not stored by {} of {} (refused, or no answer in time): {}",
            not_stored.len(),
            piles(syncs.len()),
            not_stored.join(", ")
        );
    } else if syncs.iter().all(|s| s.cards == 0) {
        let _ = writeln!(
            out,
            "No cards to send: no active account with cards lists station {id} among its \
             stations (accounts allowed at every station are not sent). `pylonctl accounts \
             add --name NAME --station {id}` adds one that does."
        );
    } else if syncs.len() == 1 {
        let _ = writeln!(
            out,
            "The connected pile of station {id} stored the offline cards."
        );
    } else {
        let _ = writeln!(
            out,
            "All {} of station {id} stored the offline cards.",
            piles(syncs.len())
        );
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use serde_json::json;

    use super::*;

    pub(crate) fn sample_station_json() -> serde_json::Value {
        json!({
            "id": 3,
            "name": "North gate",
            "address": "1 Main St",
            "latitude": 31.2304,
            "longitude": 121.4737,
            "utc_offset_minutes": 480,
            "power_cap_kw": 600,
            "piles": ["32010200000001", "32010200000002"],
            "tariff_id": 2,
            "created_at": 1_714_550_400_000i64,
            "updated_at": 1_714_554_000_000i64
        })
    }

    fn sample() -> Station {
        serde_json::from_value(sample_station_json()).unwrap()
    }

    #[test]
    fn a_station_renders() {
        assert_eq!(
            station(&sample()),
            "\
station:     3
name:        North gate
address:     1 Main St
location:    31.2304, 121.4737
local time:  UTC+08:00
power cap:   600 kW
tariff:      2 (`pylonctl tariffs show 2`)
created:     2024-05-01T08:00:00Z
updated:     2024-05-01T09:00:00Z

Piles (2):
  32010200000001
  32010200000002
"
        );
        let mut bare = sample();
        (bare.latitude, bare.longitude, bare.power_cap_kw) = (None, None, None);
        (bare.tariff_id, bare.piles, bare.address) = (None, vec![], String::new());
        bare.utc_offset_minutes = -210;
        let text = station(&bare);
        assert!(text.contains("location:    -\n"), "{text}");
        assert!(text.contains("local time:  UTC-03:30\n"), "{text}");
        assert!(text.contains("power cap:   none\n"), "{text}");
        assert!(text.contains("tariff:      none: its piles use"), "{text}");
        assert!(
            text.ends_with("`pylonctl stations add-pile 3 PILE`.\n"),
            "{text}"
        );
    }

    #[test]
    fn a_station_list_renders() {
        let mut other = sample();
        (other.id, other.name, other.piles) = (4, "Depot".into(), vec![]);
        (other.tariff_id, other.power_cap_kw, other.address) = (None, None, String::new());
        assert_eq!(
            stations(&[sample(), other]),
            "\
ID  NAME        PILES  TARIFF  LOCAL TIME  POWER CAP kW  ADDRESS
3   North gate  2      2       UTC+08:00   600           1 Main St
4   Depot       0      -       UTC+08:00   -             -
"
        );
        assert!(stations(&[]).starts_with("No stations yet"));
    }

    #[test]
    fn confirmations_say_what_happened() {
        let mut a = TariffAssignment {
            station_id: 3,
            tariff_id: 2,
            valid_from: 1_714_550_400_000,
            pushed_to: vec!["32010200000001".into()],
            not_taken: vec![],
        };
        assert_eq!(
            tariff_assigned(&a, false),
            "Station 3 is priced with tariff 2 from 2024-05-01T08:00:00Z: charges starting \
             from then on use it.\nSent as the billing model to 1 connected pile, which took \
             it: 32010200000001\n"
        );
        assert!(tariff_assigned(&a, true).contains("not in force yet"));
        a.pushed_to.clear();
        assert!(tariff_assigned(&a, false).contains("No connected pile took it"));
        a.not_taken = vec!["32010200000003".into()];
        assert!(tariff_assigned(&a, false).contains("not answered by 1: 32010200000003"));
        assert_eq!(
            pile_placed(&sample(), "32010200000002"),
            "Pile 32010200000002 is at station 3 (North gate) now, with 2 piles in all; its \
             charges are priced with the station's tariff (tariff 2).\n"
        );
        assert!(station_saved(&sample(), "added").starts_with("Station 3 added.\n\nstation:"));
    }

    #[test]
    fn offline_cards_render_per_pile() {
        let sync = |pile: &str, cards, stored| OfflineSync {
            pile: pile.into(),
            cards,
            stored,
        };
        assert_eq!(
            offline_cards(
                &[
                    sync("32010200000001", 13, true),
                    sync("32010200000002", 13, true)
                ],
                3
            ),
            "\
PILE            CARDS SENT  STORED
32010200000001  13          yes
32010200000002  13          yes

All 2 connected piles of station 3 stored the offline cards.
"
        );
        assert!(offline_cards(&[sync("32010200000001", 13, true)], 3)
            .ends_with("\nThe connected pile of station 3 stored the offline cards.\n"));
        assert_eq!(
            offline_cards(
                &[
                    sync("32010200000001", 13, true),
                    sync("32010200000002", 13, false)
                ],
                3
            ),
            "\
PILE            CARDS SENT  STORED
32010200000001  13          yes
32010200000002  13          no

Not stored by 1 of 2 connected piles (refused, or no answer in time): 32010200000002
"
        );
        let none = offline_cards(&[sync("32010200000001", 0, true)], 3);
        assert!(none.contains("No cards to send"), "{none}");
        assert!(none.contains("--station 3`"), "{none}");
        assert_eq!(
            offline_cards(&[], 3),
            "No pile of station 3 is connected, so no offline cards were sent. Run this again \
             when its piles are online (`pylonctl stations show 3` lists them, `pylonctl piles \
             show PILE` shows a pile's connection).\n"
        );
    }
}
