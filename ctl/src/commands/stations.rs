//! `pylonctl stations list|show|add|edit|tariff|add-pile|offline-cards`: charging
//! stations (sites with piles, a local time and a power cap), the tariff each is priced
//! with, and the offline cards sent to their piles, through the app service's operator
//! API (`pylon_proto::api::revenue`).

use std::io::Write;

use clap::{Args, Subcommand};
use pylon_proto::api::revenue::{AssignTariff, OfflineSync, PileStation, Station, StationInput};
use serde_json::Value;

use super::app::{explain_revenue, parse_text, AppConnectOptions, AppCtx, Subject};
use super::parse_pile;
use crate::cli::Failure;
use crate::client::path_segment;
use crate::render::stations as render;
use crate::units::parse_time;

pub const STATIONS_ABOUT: &str = "\
Manage charging stations: sites with piles, a local time (tariff schedules are in it)
and an optional power cap. A station's tariff prices the charges that start at its piles,
and is sent to them as their billing model. The cards of the accounts allowed at a
station can be sent to its piles, so that they start charges for them while offline.
Talks to the app service (--app-endpoint).

Examples:
  pylonctl stations list
  pylonctl stations add --name 'North gate' --address '1 Main St' --lat 31.2304 --lon 121.4737
  pylonctl stations add-pile 3 32010200000001
  pylonctl stations tariff 3 --tariff 2
  pylonctl stations show 3
  pylonctl stations offline-cards 3";

const LIST_ABOUT: &str = "\
List the stations: id, name, piles, the tariff in force, local time, power cap, address.

Examples:
  pylonctl stations list
  pylonctl stations list -o json | jq '.[] | select(.tariff_id == null) | .id'";

const SHOW_ABOUT: &str = "\
Show one station: its address and location, local time, power cap, the tariff in force
and its piles.

Examples:
  pylonctl stations show 3
  pylonctl stations show 3 -o json | jq .piles";

const ADD_ABOUT: &str = "\
Add a station. Its local time is given as minutes east of UTC (China, the default: 480);
tariff schedules are read in it. --lat and --lon (decimal degrees, WGS 84) go together.
The power cap is in kW, for the whole station. Prints the new station's id.

Examples:
  pylonctl stations add --name 'North gate'
  pylonctl stations add --name 'Depot' --address '8 Port Rd' --lat 22.5431 --lon 114.0579 \\
      --power-cap-kw 600
  pylonctl stations add --name 'Lisbon' --utc-offset-minutes 0";

const EDIT_ABOUT: &str = "\
Change a station: only what is given changes (pylonctl reads the station and writes it
back). --no-location forgets the location, --no-power-cap the power cap.

Examples:
  pylonctl stations edit 3 --name 'North gate (P2)'
  pylonctl stations edit 3 --power-cap-kw 400
  pylonctl stations edit 3 --no-location --address ''";

const TARIFF_ABOUT: &str = "\
Price the charges that start at a station with a tariff (`pylonctl tariffs`), from now or
from --from on (RFC 3339, a date meaning midnight UTC, or Unix ms). A charge keeps the
tariff revision it started under. A tariff in force at once is sent to the station's
connected piles as their billing model (frame 0x58); pylonctl lists the piles that took
it. One that starts later is not sent now: piles get it when they next ask for their
billing model (at login).

Examples:
  pylonctl stations tariff 3 --tariff 2
  pylonctl stations tariff 3 --tariff 5 --from 2024-06-01T00:00:00+08:00";

const ADD_PILE_ABOUT: &str = "\
Put a registered pile at a station (a pile is at one station at most; this moves it).
Its charges are then priced with the station's tariff.

Examples:
  pylonctl stations add-pile 3 32010200000001";

const OFFLINE_CARDS_ABOUT: &str = "\
Send the station's offline cards to its connected piles, so that they can start charges
with those cards while they cannot reach the platform. The cards sent are those of the
active accounts that list this station among theirs (`pylonctl accounts add --station
ID`); accounts allowed at every station are not sent. Each connected pile gets them all
(frame 0x44, 12 cards a frame) and must answer every frame (0x43); pylonctl prints, per
pile, how many cards were sent and whether it stored them.

Piles that are not connected get nothing: run this again when they are back online
(`pylonctl stations show ID` lists the station's piles, `pylonctl piles show PILE` shows
whether one is connected). With several app instances, each reaches only the piles of
its own shards: run it against each (--app-endpoint). Send the cards again after giving
the station's accounts new cards.

Exits with status 1 after printing when a pile did not store the cards (it refused them
or did not answer in time).

Examples:
  pylonctl stations offline-cards 3
  pylonctl stations offline-cards 3 -o json | jq '.[] | select(.stored | not) | .pile'";

#[derive(Debug, Args)]
pub struct StationsArgs {
    #[command(subcommand)]
    pub command: StationsCommand,
    #[command(flatten)]
    pub connect: AppConnectOptions,
}

#[derive(Debug, PartialEq, Subcommand)]
pub enum StationsCommand {
    /// List the stations.
    #[command(long_about = LIST_ABOUT)]
    List,
    /// Show a station: location, local time, power cap, tariff, piles.
    #[command(long_about = SHOW_ABOUT)]
    Show {
        /// The station's id (`pylonctl stations list`).
        #[arg(value_parser = clap::value_parser!(i64).range(1..))]
        id: i64,
    },
    /// Add a station.
    #[command(long_about = ADD_ABOUT)]
    Add(StationAddArgs),
    /// Change a station's name, address, location, local time or power cap.
    #[command(long_about = EDIT_ABOUT)]
    Edit(StationEditArgs),
    /// Price a station's charges with a tariff, from now or a given time.
    #[command(long_about = TARIFF_ABOUT)]
    Tariff {
        /// The station's id.
        #[arg(value_parser = clap::value_parser!(i64).range(1..))]
        id: i64,
        /// The tariff's id (`pylonctl tariffs list`).
        #[arg(long, value_name = "ID", value_parser = clap::value_parser!(i64).range(1..))]
        tariff: i64,
        /// From when (RFC 3339, a date or Unix ms) [default: now].
        #[arg(long, value_name = "TIME", value_parser = parse_time)]
        from: Option<i64>,
    },
    /// Put a pile at a station.
    #[command(long_about = ADD_PILE_ABOUT)]
    AddPile {
        /// The station's id.
        #[arg(value_parser = clap::value_parser!(i64).range(1..))]
        id: i64,
        /// The pile number: 14 digits, e.g. 32010200000001.
        pile: String,
    },
    /// Send the cards of the accounts allowed at a station to its connected piles.
    #[command(long_about = OFFLINE_CARDS_ABOUT)]
    OfflineCards {
        /// The station's id (`pylonctl stations list`).
        #[arg(value_parser = clap::value_parser!(i64).range(1..))]
        id: i64,
    },
}

#[derive(Debug, PartialEq, Args)]
pub struct StationAddArgs {
    /// The station's name.
    #[arg(long, value_name = "TEXT", value_parser = parse_text)]
    pub name: String,
    /// Its street address (default: none).
    #[arg(long, value_name = "TEXT")]
    pub address: Option<String>,
    /// Latitude, decimal degrees (-90 to 90); needs --lon.
    #[arg(long, value_name = "DEG", requires = "lon", allow_negative_numbers = true,
          value_parser = parse_latitude)]
    pub lat: Option<f64>,
    /// Longitude, decimal degrees (-180 to 180); needs --lat.
    #[arg(long, value_name = "DEG", requires = "lat", allow_negative_numbers = true,
          value_parser = parse_longitude)]
    pub lon: Option<f64>,
    /// Local time, minutes east of UTC (-720 to 840; China: 480).
    #[arg(long, value_name = "M", default_value_t = 480, allow_negative_numbers = true,
          value_parser = clap::value_parser!(i32).range(-720..=840))]
    pub utc_offset_minutes: i32,
    /// The station's power cap, kW (default: none).
    #[arg(long, value_name = "KW", value_parser = clap::value_parser!(u32).range(1..))]
    pub power_cap_kw: Option<u32>,
}

#[derive(Debug, PartialEq, Args)]
pub struct StationEditArgs {
    /// The station's id.
    #[arg(value_parser = clap::value_parser!(i64).range(1..))]
    pub id: i64,
    /// A new name.
    #[arg(long, value_name = "TEXT", value_parser = parse_text)]
    pub name: Option<String>,
    /// A new street address ('' for none).
    #[arg(long, value_name = "TEXT")]
    pub address: Option<String>,
    /// A new latitude, decimal degrees; needs --lon.
    #[arg(long, value_name = "DEG", requires = "lon", allow_negative_numbers = true,
          value_parser = parse_latitude)]
    pub lat: Option<f64>,
    /// A new longitude, decimal degrees; needs --lat.
    #[arg(long, value_name = "DEG", requires = "lat", allow_negative_numbers = true,
          value_parser = parse_longitude)]
    pub lon: Option<f64>,
    /// Forget the station's location.
    #[arg(long, conflicts_with_all = ["lat", "lon"])]
    pub no_location: bool,
    /// A new local time, minutes east of UTC (-720 to 840).
    #[arg(long, value_name = "M", allow_negative_numbers = true,
          value_parser = clap::value_parser!(i32).range(-720..=840))]
    pub utc_offset_minutes: Option<i32>,
    /// A new power cap, kW.
    #[arg(long, value_name = "KW", value_parser = clap::value_parser!(u32).range(1..))]
    pub power_cap_kw: Option<u32>,
    /// Remove the power cap.
    #[arg(long, conflicts_with = "power_cap_kw")]
    pub no_power_cap: bool,
}

impl StationEditArgs {
    fn changes_nothing(&self) -> bool {
        self.name.is_none()
            && self.address.is_none()
            && self.lat.is_none()
            && !self.no_location
            && self.utc_offset_minutes.is_none()
            && self.power_cap_kw.is_none()
            && !self.no_power_cap
    }

    /// `station` with this edit's changes.
    fn apply(&self, station: &Station) -> StationInput {
        let (latitude, longitude) = match (self.no_location, self.lat, self.lon) {
            (true, _, _) => (None, None),
            (false, Some(lat), Some(lon)) => (Some(lat), Some(lon)),
            _ => (station.latitude, station.longitude),
        };
        StationInput {
            name: self.name.clone().unwrap_or_else(|| station.name.clone()),
            address: self
                .address
                .as_deref()
                .map_or_else(|| station.address.clone(), |a| a.trim().to_owned()),
            latitude,
            longitude,
            utc_offset_minutes: self
                .utc_offset_minutes
                .unwrap_or(station.utc_offset_minutes),
            power_cap_kw: match (self.no_power_cap, self.power_cap_kw) {
                (true, _) => None,
                (false, Some(kw)) => Some(kw),
                (false, None) => station.power_cap_kw,
            },
        }
    }
}

fn parse_degrees(text: &str, limit: f64, what: &str) -> Result<f64, String> {
    let value: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a {what} in decimal degrees, e.g. 31.2304"))?;
    if !value.is_finite() || value.abs() > limit {
        return Err(format!("a {what} is from -{limit} to {limit} degrees"));
    }
    Ok(value)
}

fn parse_latitude(text: &str) -> Result<f64, String> {
    parse_degrees(text, 90.0, "latitude")
}

fn parse_longitude(text: &str) -> Result<f64, String> {
    parse_degrees(text, 180.0, "longitude")
}

/// Runs `pylonctl stations ...`.
pub fn run_stations(
    args: StationsArgs,
    env: &dyn Fn(&str) -> Option<String>,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    match args.command {
        StationsCommand::List => {
            let ctx = AppCtx::new(&args.connect, env)?;
            let path = "/v1/stations";
            let reply: Value = ctx
                .client
                .get(path, &[])
                .map_err(|e| explain_revenue(e, Subject::default()))?;
            ctx.emit(out, "GET", path, &reply, |s: &Vec<Station>| {
                render::stations(s)
            })
        }
        StationsCommand::Show { id } => {
            let ctx = AppCtx::new(&args.connect, env)?;
            let path = format!("/v1/stations/{id}");
            let reply = get_station(&ctx, &path, id)?;
            ctx.emit(out, "GET", &path, &reply, render::station)
        }
        StationsCommand::Add(add) => {
            let ctx = AppCtx::new(&args.connect, env)?;
            let input = StationInput {
                name: add.name,
                address: add.address.as_deref().unwrap_or_default().trim().to_owned(),
                latitude: add.lat,
                longitude: add.lon,
                utc_offset_minutes: add.utc_offset_minutes,
                power_cap_kw: add.power_cap_kw,
            };
            let path = "/v1/stations";
            let reply: Value = ctx
                .client
                .post_json(path, &input)
                .map_err(|e| explain_revenue(e, Subject::default()))?;
            ctx.emit(out, "POST", path, &reply, |s: &Station| {
                render::station_saved(s, "added")
            })
        }
        StationsCommand::Edit(edit) => {
            if edit.changes_nothing() {
                return Err(Failure::BadInput(
                    "give something to change: --name, --address, --lat and --lon, \
                     --no-location, --utc-offset-minutes, --power-cap-kw or --no-power-cap"
                        .into(),
                ));
            }
            let ctx = AppCtx::new(&args.connect, env)?;
            let path = format!("/v1/stations/{}", edit.id);
            let current: Station = ctx.typed("GET", &path, &get_station(&ctx, &path, edit.id)?)?;
            let about = Subject {
                station: Some(edit.id),
                ..Subject::default()
            };
            let reply: Value = ctx
                .client
                .put_json(&path, &edit.apply(&current))
                .map_err(|e| explain_revenue(e, about))?;
            ctx.emit(out, "PUT", &path, &reply, |s: &Station| {
                render::station_saved(s, "updated")
            })
        }
        StationsCommand::Tariff { id, tariff, from } => {
            let ctx = AppCtx::new(&args.connect, env)?;
            let path = format!("/v1/stations/{id}/tariff");
            let body = AssignTariff {
                tariff_id: tariff,
                valid_from: from,
            };
            let about = Subject {
                station: Some(id),
                tariff: Some(tariff),
                ..Subject::default()
            };
            let reply: Value = ctx
                .client
                .post_json(&path, &body)
                .map_err(|e| explain_revenue(e, about))?;
            let later = from.is_some_and(|t| t > now_ms());
            ctx.emit(out, "POST", &path, &reply, |a| {
                render::tariff_assigned(a, later)
            })
        }
        StationsCommand::AddPile { id, pile } => {
            let pile = parse_pile(&pile)?;
            let ctx = AppCtx::new(&args.connect, env)?;
            let path = format!("/v1/piles/{}/station", path_segment(&pile));
            let about = Subject {
                station: Some(id),
                pile: Some(&pile),
                ..Subject::default()
            };
            let reply: Value = ctx
                .client
                .put_json(&path, &PileStation { station_id: id })
                .map_err(|e| explain_revenue(e, about))?;
            ctx.emit(out, "PUT", &path, &reply, |s: &Station| {
                render::pile_placed(s, &pile)
            })
        }
        StationsCommand::OfflineCards { id } => {
            let ctx = AppCtx::new(&args.connect, env)?;
            let path = format!("/v1/stations/{id}/offline-cards");
            let about = Subject {
                station: Some(id),
                ..Subject::default()
            };
            let reply: Value = ctx
                .client
                .post(&path)
                .map_err(|e| explain_revenue(e, about))?;
            let syncs: Vec<OfflineSync> = ctx.typed("POST", &path, &reply)?;
            ctx.emit(out, "POST", &path, &reply, |s: &Vec<OfflineSync>| {
                render::offline_cards(s, id)
            })?;
            let refused: Vec<&str> = syncs
                .iter()
                .filter(|s| !s.stored)
                .map(|s| s.pile.as_str())
                .collect();
            if refused.is_empty() {
                Ok(())
            } else {
                Err(Failure::Other(anyhow::anyhow!(
                    "{} of station {id} did not store the offline cards: {}; run `pylonctl \
                     stations offline-cards {id}` again once {} online",
                    plural(refused.len(), "pile"),
                    refused.join(", "),
                    if refused.len() == 1 {
                        "it is"
                    } else {
                        "they are"
                    }
                )))
            }
        }
    }
}

/// `n thing` or `n things`.
fn plural(n: usize, thing: &str) -> String {
    format!("{n} {thing}{}", if n == 1 { "" } else { "s" })
}

fn get_station(ctx: &AppCtx, path: &str, id: i64) -> Result<Value, Failure> {
    let about = Subject {
        station: Some(id),
        ..Subject::default()
    };
    ctx.client
        .get(path, &[])
        .map_err(|e| explain_revenue(e, about))
}

/// Now, in Unix milliseconds (0 if the clock is before 1970).
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests;
