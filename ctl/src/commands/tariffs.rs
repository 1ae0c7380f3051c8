//! `pylonctl tariffs list|show|add|revise`: time-of-use tariffs (prices per kWh for the
//! four YKC periods, and which period applies at each half hour of the day), through the
//! app service's operator API (`pylon_proto::api::revenue`).
//!
//! A tariff is given either as a JSON file holding a [`TariffInput`] (`name` optional
//! there), or in compact form with `--rates` and `--schedule`; both are checked here as
//! the app service checks them, before any request.

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use pylon_proto::api::revenue::{Rates, ScheduleChange, Tariff, TariffInput};
use serde_json::Value;

use self::input::read_file;
pub use self::input::{
    check_schedule, check_tariff, parse_rates, parse_schedule, slot_of, Schedule,
};
use super::app::{explain_revenue, parse_text, AppConnectOptions, AppCtx, Subject};
use crate::cli::Failure;
use crate::render::tariffs as render;

mod input;

pub const TARIFFS_ABOUT: &str = "\
Manage time-of-use tariffs. A tariff has an electricity price and a service fee per kWh
for each of the four periods (sharp, peak, flat, valley), a loss ratio, and a day
schedule saying which period applies from which half hour on (station local time). A
station is priced with one (`pylonctl stations tariff`). Revising a tariff makes a new
revision; a charge keeps the revision it started under. Talks to the app service
(--app-endpoint).

Prices are yuan per kWh with up to five decimals (the protocol's 0.00001 yuan).

Examples:
  pylonctl tariffs list
  pylonctl tariffs show 2
  pylonctl tariffs add --name Standard --file standard.json
  pylonctl tariffs add --name Standard \\
      --rates sharp=1.2/0.4,peak=1.0/0.4,flat=0.8/0.4,valley=0.4/0.4 \\
      --schedule 00:00=valley,08:00=flat,10:00=peak,15:00=flat,18:00=sharp,21:00=flat,23:00=valley
  pylonctl tariffs revise 2 --rates sharp=1.3/0.4,peak=1.1/0.4,flat=0.8/0.4,valley=0.4/0.4";

const LIST_ABOUT: &str = "\
List the tariffs at their latest revision, with each period's total price (electricity
plus service) in yuan per kWh.

Examples:
  pylonctl tariffs list
  pylonctl tariffs list -o json | jq '.[] | {id, name, revision}'";

const SHOW_ABOUT: &str = "\
Show a tariff at its latest revision: each period's prices in yuan per kWh and hours a
day, and the day schedule.

Examples:
  pylonctl tariffs show 2
  pylonctl tariffs show 2 -o json > standard.json";

/// The two forms a tariff is given in, for the long help of `add` and `revise`.
macro_rules! source_help {
    () => {
        "\
The tariff is given in one of two forms:

  --file F.json   a JSON file:
                    {\"name\": \"Standard\",
                     \"rates\": {\"sharp\":  {\"electricity\": 120000, \"service\": 40000},
                               \"peak\":   {\"electricity\": 100000, \"service\": 40000},
                               \"flat\":   {\"electricity\": 80000, \"service\": 40000},
                               \"valley\": {\"electricity\": 40000, \"service\": 40000}},
                     \"loss_ratio\": 0,
                     \"schedule\": [{\"from\": \"00:00\", \"period\": \"valley\"},
                                  {\"from\": \"08:00\", \"period\": \"flat\"}]}
                  prices in 0.00001 yuan per kWh (120000 = 1.2 yuan), as the API takes
                  them; \"name\" is optional (--name wins), \"loss_ratio\" too (0).
  --rates and --schedule, with yuan:
    --rates sharp=1.2/0.4,peak=1.0/0.4,flat=0.8/0.4,valley=0.4/0.4
        each period's electricity price / service fee, yuan per kWh, up to five
        decimals; all four periods
    --schedule 00:00=valley,08:00=flat,10:00=peak,18:00=sharp,21:00=flat,23:00=valley
        from which half hour (HH:00 or HH:30, station local time) each period applies,
        until the next; the first is 00:00
    --loss-ratio P   the loss ratio (计损比例), percent, 0 to 100 [default: 0]"
    };
}

const ADD_ABOUT: &str = concat!(
    "\
Add a tariff (revision 1). Prints its id, for `pylonctl stations tariff`.

",
    source_help!(),
    "

Examples:
  pylonctl tariffs add --file standard.json
  pylonctl tariffs add --name Standard --file standard.json
  pylonctl tariffs add --name Flat --rates sharp=0.8/0.4,peak=0.8/0.4,flat=0.8/0.4,valley=0.8/0.4 \\
      --schedule 00:00=flat"
);

const REVISE_ABOUT: &str = concat!(
    "\
Revise a tariff: its next revision takes effect at once for charges that start from now
on (charges under way keep theirs), and stations priced with it send it to their
connected piles. With --rates, --schedule, --loss-ratio or --name alone, the rest is kept
from the latest revision (pylonctl reads it first); --file gives the whole tariff.

",
    source_help!(),
    "

Examples:
  pylonctl tariffs revise 2 --file standard.json
  pylonctl tariffs revise 2 --rates sharp=1.3/0.4,peak=1.1/0.4,flat=0.8/0.4,valley=0.4/0.4
  pylonctl tariffs revise 2 --schedule 00:00=valley,07:00=flat,10:00=peak,22:00=valley
  pylonctl tariffs revise 2 --name 'Standard 2025'"
);

#[derive(Debug, Args)]
pub struct TariffsArgs {
    #[command(subcommand)]
    pub command: TariffsCommand,
    #[command(flatten)]
    pub connect: AppConnectOptions,
}

#[derive(Debug, PartialEq, Subcommand)]
pub enum TariffsCommand {
    /// List the tariffs.
    #[command(long_about = LIST_ABOUT)]
    List,
    /// Show a tariff: prices per period and the day schedule.
    #[command(long_about = SHOW_ABOUT)]
    Show {
        /// The tariff's id (`pylonctl tariffs list`).
        #[arg(value_parser = clap::value_parser!(i64).range(1..))]
        id: i64,
    },
    /// Add a tariff, from a JSON file or --rates and --schedule.
    #[command(long_about = ADD_ABOUT)]
    Add {
        /// The tariff's name (required unless the file has one).
        #[arg(long, value_name = "TEXT", value_parser = parse_text)]
        name: Option<String>,
        #[command(flatten)]
        source: TariffSource,
    },
    /// Revise a tariff: a new revision, for charges starting from now on.
    #[command(long_about = REVISE_ABOUT)]
    Revise {
        /// The tariff's id.
        #[arg(value_parser = clap::value_parser!(i64).range(1..))]
        id: i64,
        /// A new name (default: the file's, else the current one).
        #[arg(long, value_name = "TEXT", value_parser = parse_text)]
        name: Option<String>,
        #[command(flatten)]
        source: TariffSource,
    },
}

/// Where a tariff's prices and schedule come from.
#[derive(Debug, Default, PartialEq, Args)]
pub struct TariffSource {
    /// A JSON file with the tariff (see above); `-` reads standard input.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["rates", "schedule", "loss_ratio"])]
    pub file: Option<PathBuf>,
    /// Prices, yuan per kWh: sharp=E/S,peak=E/S,flat=E/S,valley=E/S (electricity/service).
    #[arg(long, value_name = "PERIOD=E/S,...", value_parser = parse_rates)]
    pub rates: Option<Rates>,
    /// The day: HH:MM=PERIOD,... from 00:00, on half hours, station local time.
    #[arg(long, value_name = "HH:MM=PERIOD,...", value_parser = parse_schedule)]
    pub schedule: Option<Schedule>,
    /// The loss ratio (计损比例), percent, 0 to 100 [default: 0, or the current one].
    #[arg(long, value_name = "P", value_parser = clap::value_parser!(u8).range(0..=100))]
    pub loss_ratio: Option<u8>,
}

/// The tariff `add` sends: from the file, or from --rates and --schedule.
fn new_tariff(name: Option<String>, source: &TariffSource) -> Result<TariffInput, Failure> {
    let input = match (&source.file, source.rates, &source.schedule) {
        (Some(path), _, _) => read_file(path, name.as_deref())?,
        (None, Some(rates), Some(schedule)) => TariffInput {
            name: name.unwrap_or_default(),
            rates,
            loss_ratio: source.loss_ratio.unwrap_or(0),
            schedule: schedule.0.clone(),
        },
        _ => {
            return Err(Failure::BadInput(
                "give the tariff: --file F.json, or --rates and --schedule (`pylonctl \
                 tariffs add --help` shows both forms)"
                    .into(),
            ))
        }
    };
    check_tariff(&input).map_err(Failure::BadInput)?;
    Ok(input)
}

/// What `revise` was given: a whole tariff from a file (maybe without a name), or parts.
enum Revision {
    File(TariffInput),
    Parts {
        name: Option<String>,
        rates: Option<Rates>,
        schedule: Option<Vec<ScheduleChange>>,
        loss_ratio: Option<u8>,
    },
}

impl Revision {
    /// Reads and checks what was given, before any request.
    fn given(name: Option<String>, source: TariffSource) -> Result<Revision, Failure> {
        if let Some(path) = &source.file {
            return Ok(Revision::File(read_file(path, name.as_deref())?));
        }
        if name.is_none() && source == TariffSource::default() {
            return Err(Failure::BadInput(
                "give what changes: --file, --rates, --schedule, --loss-ratio or --name".into(),
            ));
        }
        Ok(Revision::Parts {
            name,
            rates: source.rates,
            schedule: source.schedule.map(|s| s.0),
            loss_ratio: source.loss_ratio,
        })
    }

    /// Whether the current revision must be read for what was not given.
    fn needs_current(&self) -> bool {
        match self {
            Revision::File(input) => input.name.is_empty(),
            Revision::Parts {
                name,
                rates,
                schedule,
                loss_ratio,
            } => name.is_none() || rates.is_none() || schedule.is_none() || loss_ratio.is_none(),
        }
    }

    /// The revision to send: what was given, the rest from `current`.
    fn complete(self, current: Option<&Tariff>) -> Result<TariffInput, Failure> {
        let input = match (self, current) {
            (Revision::File(mut input), current) => {
                if input.name.is_empty() {
                    input.name = current.map(|t| t.name.clone()).unwrap_or_default();
                }
                input
            }
            (
                Revision::Parts {
                    name,
                    rates: Some(rates),
                    schedule: Some(schedule),
                    loss_ratio: Some(loss_ratio),
                },
                None,
            ) => TariffInput {
                name: name.unwrap_or_default(),
                rates,
                loss_ratio,
                schedule,
            },
            (
                Revision::Parts {
                    name,
                    rates,
                    schedule,
                    loss_ratio,
                },
                Some(t),
            ) => TariffInput {
                name: name.unwrap_or_else(|| t.name.clone()),
                rates: rates.unwrap_or(t.rates),
                loss_ratio: loss_ratio.unwrap_or(t.loss_ratio),
                schedule: schedule.unwrap_or_else(|| t.schedule.clone()),
            },
            (Revision::Parts { .. }, None) => {
                return Err(Failure::Other(anyhow::anyhow!(
                    "pylonctl did not read the current revision it needs"
                )))
            }
        };
        check_tariff(&input).map_err(Failure::BadInput)?;
        Ok(input)
    }
}

/// Runs `pylonctl tariffs ...`.
pub fn run_tariffs(
    args: TariffsArgs,
    env: &dyn Fn(&str) -> Option<String>,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    match args.command {
        TariffsCommand::List => {
            let ctx = AppCtx::new(&args.connect, env)?;
            let path = "/v1/tariffs";
            let reply: Value = ctx
                .client
                .get(path, &[])
                .map_err(|e| explain_revenue(e, Subject::default()))?;
            ctx.emit(out, "GET", path, &reply, |t: &Vec<Tariff>| {
                render::tariffs(t)
            })
        }
        TariffsCommand::Show { id } => {
            let ctx = AppCtx::new(&args.connect, env)?;
            let path = format!("/v1/tariffs/{id}");
            let reply = get_tariff(&ctx, &path, id)?;
            ctx.emit(out, "GET", &path, &reply, render::tariff)
        }
        TariffsCommand::Add { name, source } => {
            let input = new_tariff(name, &source)?;
            let ctx = AppCtx::new(&args.connect, env)?;
            let path = "/v1/tariffs";
            let reply: Value = ctx
                .client
                .post_json(path, &input)
                .map_err(|e| explain_revenue(e, Subject::default()))?;
            ctx.emit(out, "POST", path, &reply, render::tariff_added)
        }
        TariffsCommand::Revise { id, name, source } => {
            let revision = Revision::given(name, source)?;
            let ctx = AppCtx::new(&args.connect, env)?;
            let path = format!("/v1/tariffs/{id}");
            let current: Option<Tariff> = if revision.needs_current() {
                Some(ctx.typed("GET", &path, &get_tariff(&ctx, &path, id)?)?)
            } else {
                None
            };
            let input = revision.complete(current.as_ref())?;
            let about = Subject {
                tariff: Some(id),
                ..Subject::default()
            };
            let reply: Value = ctx
                .client
                .put_json(&path, &input)
                .map_err(|e| explain_revenue(e, about))?;
            ctx.emit(out, "PUT", &path, &reply, render::tariff_revised)
        }
    }
}

fn get_tariff(ctx: &AppCtx, path: &str, id: i64) -> Result<Value, Failure> {
    let about = Subject {
        tariff: Some(id),
        ..Subject::default()
    };
    ctx.client
        .get(path, &[])
        .map_err(|e| explain_revenue(e, about))
}

#[cfg(test)]
mod tests;
