//! `pylonctl piles|records|charge`: the charging business, through the app service's
//! operator API (`pylon-app`, HTTP/JSON, the control plane's admin token as bearer
//! token; documented in `app/src/operator/`). `piles keys`, a pile's 3DES key for the
//! YKC protocol's body encryption, is in [`pile_keys`].
//!
//! The app service is reached at `--app-endpoint` (flag > `PYLON_APP_ENDPOINT` >
//! `app_endpoint` in the config file), else through the control plane, which forwards
//! each call to the instance that can answer it (see [`super::app`]). The requests and replies are `pylon_proto::api::app`'s types (and
//! `::revenue`'s [`AccountCharge`] for `charge start`), the ones the app service uses;
//! `--output json` prints the replies unchanged.

pub mod pile_keys;

use std::io::Write;

use clap::{Args, Subcommand};
pub use pylon_proto::api::app::{
    GunStatus, Order, OrderDetail, OrderState, Pile, PileDetail, TransactionRecord as Record,
};
use pylon_proto::api::app::{PileInput, UpsertedReply};
use pylon_proto::api::revenue::AccountCharge;
use serde::Deserialize;
use serde_json::Value;

use self::pile_keys::PileKeysCommand;
pub use super::app::AppConnectOptions;
use super::app::{print_json, AppCtx};
use super::identity::password::Console;
use super::{parse_pile, OutputFormat};
use crate::cli::Failure;
use crate::client::{path_segment, ClientError};
use crate::render::business as render;
use crate::units::parse_time;

/// Piles per `POST /v1/piles` when adding many: the app service stores them one by one.
const ADD_BATCH: usize = 500;
/// The most piles one `piles add --range` adds.
const MAX_RANGE: u64 = 100_000;
/// The largest 14-digit pile number.
const MAX_PILE: u64 = 99_999_999_999_999;

pub const PILES_ABOUT: &str = "\
Register chargers (piles) with the platform, enable and disable them, and see how one
is doing: its connection, its guns and its open orders. A pile must be registered and
enabled to log in. `piles keys` sets up the 3DES key of a pile that encrypts its frames
(the YKC protocol's encryption flag 0x01). Talks to the app service (--app-endpoint).

Examples:
  pylonctl piles list
  pylonctl piles add 32010200000001 --name 'Lot B #1'
  pylonctl piles add --range 32010200000001 100 --model 2
  pylonctl piles show 32010200000001
  pylonctl piles disable 32010200000001
  pylonctl piles keys show 32010200000001";

const PILES_LIST_ABOUT: &str = "\
List the registered piles, by number, a page at a time: whether each is enabled, its
billing model, its name and when it last logged in (UTC).

Examples:
  pylonctl piles list
  pylonctl piles list --after 32010200000100 --limit 500
  pylonctl piles list -o json | jq -r '.[] | select(.enabled | not) | .pile_no'";

const PILES_ADD_ABOUT: &str = "\
Register piles so that they may log in: the numbers given, or with --range a block of
COUNT numbers from FIRST up. A pile registered already is updated: it takes the given
--disabled, --model and --name (its last login is kept). Running the same command twice
is harmless.

Examples:
  pylonctl piles add 32010200000001
  pylonctl piles add 32010200000001 32010200000002 --name 'Lot B' --model 2
  pylonctl piles add --range 32010200000001 100
  pylonctl piles add --range 32010200001000 20 --disabled";

const PILES_SHOW_ABOUT: &str = "\
Show one pile: its registration, where it is connected (edge, executor and session, or
offline), each gun's status (offline, fault, idle or charging) and its open orders.

Examples:
  pylonctl piles show 32010200000001
  pylonctl piles show 32010200000001 -o json | jq .guns";

const PILES_DISABLE_ABOUT: &str = "\
Disable a pile: it may no longer log in, and no charge may start on it. A session open
now lasts until the pile reconnects. Its billing model and name are kept.

Examples:
  pylonctl piles disable 32010200000001";

const PILES_ENABLE_ABOUT: &str = "\
Enable a pile that was disabled: it may log in and charge again.

Examples:
  pylonctl piles enable 32010200000001";

pub const RECORDS_ABOUT: &str = "\
Read the transaction records piles send when a charge ends (frame 0x3B): energy, amount,
times and why it stopped. Talks to the app service (--app-endpoint).

Examples:
  pylonctl records list 32010200000001
  pylonctl records list 32010200000001 --from 2024-05-01 --to 2024-05-02
  pylonctl records show 32010200000001012405010800000001";

const RECORDS_LIST_ABOUT: &str = "\
List a pile's transaction records, newest first, by the time the charge ended:
trade number, gun, start and end (UTC), energy in kWh, amount in yuan and the stop
reason (the protocol's hex code).

--from and --to take Unix milliseconds, an RFC 3339 time (2024-05-01T08:00:00Z,
2024-05-01T16:00:00+08:00) or a date (2024-05-01, meaning its midnight UTC); --from is
included, --to is not.

Examples:
  pylonctl records list 32010200000001
  pylonctl records list 32010200000001 --from 2024-05-01T00:00:00+08:00 --limit 1000
  pylonctl records list 32010200000001 -o json | jq '[.[].total_energy] | add'";

const RECORDS_SHOW_ABOUT: &str = "\
Show one transaction record, with every field of the frame the pile sent.

Examples:
  pylonctl records show 32010200000001012405010800000001
  pylonctl records show 32010200000001012405010800000001 -o json";

pub const CHARGE_ABOUT: &str = "\
Start and stop charges remotely, and follow them. The pile must be online (see
`pylonctl piles show`). Talks to the app service (--app-endpoint).

Examples:
  pylonctl charge start 32010200000001 --gun 1 --account 7
  pylonctl charge show 32010200000001012405010800000001
  pylonctl charge stop 32010200000001012405010800000001
  pylonctl charge open --pile 32010200000001";

const CHARGE_START_ABOUT: &str = "\
Start a charge on a gun of an online pile (the protocol's remote start, frame 0x34), paid
from an account's wallet (`pylonctl accounts`). The app service checks the account
(active, allowed at the pile's station, enough balance) and holds part of its balance
for the charge (the app service's policy decides how much; the pile stops there); the
charge is settled from the hold when the pile sends its transaction record. The order is
created at once in state `starting`; the pile confirms within 90 s and the order moves
to `charging`, or to `failed`. Prints the order's trade number, to follow it with
`pylonctl charge show`.

A refused start prints the app service's reason, such as insufficient_balance, frozen
or not_allowed_here, and exits with status 1.

Examples:
  pylonctl charge start 32010200000001 --account 7
  pylonctl charge start 32010200000001 --gun 2 --account 7";

const CHARGE_STOP_ABOUT: &str = "\
Stop a charge (the protocol's remote stop, frame 0x36). The order moves to `stopping`,
and to `finished` when the pile sends its transaction record.

Examples:
  pylonctl charge stop 32010200000001012405010800000001";

const CHARGE_SHOW_ABOUT: &str = "\
Show an order: its state, what the pile reported during the charge (events by frame
type) and, once the charge has ended, its transaction record.

Examples:
  pylonctl charge show 32010200000001012405010800000001
  pylonctl charge show 32010200000001012405010800000001 -o json | jq .events";

const CHARGE_OPEN_ABOUT: &str = "\
List the open orders (starting, charging or stopping), oldest first: all of them, or
one pile's.

Examples:
  pylonctl charge open
  pylonctl charge open --pile 32010200000001";

#[derive(Debug, Args)]
pub struct PilesArgs {
    #[command(subcommand)]
    pub command: PilesCommand,
    #[command(flatten)]
    pub connect: AppConnectOptions,
}

#[derive(Debug, PartialEq, Eq, Subcommand)]
pub enum PilesCommand {
    /// List registered piles: enabled, billing model, name, last login.
    #[command(long_about = PILES_LIST_ABOUT)]
    List {
        /// Start after this pile number (the last one of the previous page).
        #[arg(long, value_name = "PILE")]
        after: Option<String>,
        /// At most this many piles (1 to 10000).
        #[arg(long, value_name = "N", default_value_t = 100,
              value_parser = clap::value_parser!(u32).range(1..=10_000))]
        limit: u32,
    },
    /// Register piles (or update registered ones), one by one or a numbered block.
    #[command(long_about = PILES_ADD_ABOUT)]
    Add(PilesAddArgs),
    /// Show a pile: registration, connection, guns, open orders.
    #[command(long_about = PILES_SHOW_ABOUT)]
    Show {
        /// The pile number: 14 digits, e.g. 32010200000001.
        pile: String,
    },
    /// Disable a pile: it may not log in or charge.
    #[command(long_about = PILES_DISABLE_ABOUT)]
    Disable {
        /// The pile number: 14 digits, e.g. 32010200000001.
        pile: String,
    },
    /// Enable a disabled pile again.
    #[command(long_about = PILES_ENABLE_ABOUT)]
    Enable {
        /// The pile number: 14 digits, e.g. 32010200000001.
        pile: String,
    },
    /// Set, rotate, show and remove the 3DES key a pile encrypts its frames with.
    #[command(subcommand, long_about = pile_keys::KEYS_ABOUT)]
    Keys(PileKeysCommand),
}

#[derive(Debug, PartialEq, Eq, Args)]
pub struct PilesAddArgs {
    /// The pile numbers: 14 digits each, e.g. 32010200000001.
    #[arg(
        value_name = "PILE",
        required_unless_present = "range",
        conflicts_with = "range"
    )]
    pub piles: Vec<String>,
    /// Add COUNT piles numbered FIRST, FIRST+1, ... (COUNT at most 100000).
    #[arg(long, num_args = 2, value_names = ["FIRST", "COUNT"])]
    pub range: Option<Vec<String>>,
    /// Register them disabled: they may not log in until `pylonctl piles enable`.
    #[arg(long)]
    pub disabled: bool,
    /// The billing model they use (1 to 9999).
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=9999))]
    pub model: u16,
    /// A name for operators, e.g. where the piles stand (default: none).
    #[arg(long, value_name = "TEXT")]
    pub name: Option<String>,
}

#[derive(Debug, Args)]
pub struct RecordsArgs {
    #[command(subcommand)]
    pub command: RecordsCommand,
    #[command(flatten)]
    pub connect: AppConnectOptions,
}

#[derive(Debug, PartialEq, Eq, Subcommand)]
pub enum RecordsCommand {
    /// List a pile's transaction records, newest first.
    #[command(long_about = RECORDS_LIST_ABOUT)]
    List {
        /// The pile number: 14 digits, e.g. 32010200000001.
        pile: String,
        /// Only charges that ended at or after this time (RFC 3339, a date or Unix ms).
        #[arg(long, value_name = "TIME", value_parser = parse_time)]
        from: Option<i64>,
        /// Only charges that ended before this time (RFC 3339, a date or Unix ms).
        #[arg(long, value_name = "TIME", value_parser = parse_time)]
        to: Option<i64>,
        /// At most this many records (1 to 10000).
        #[arg(long, value_name = "N", default_value_t = 100,
              value_parser = clap::value_parser!(u32).range(1..=10_000))]
        limit: u32,
    },
    /// Show one transaction record with all its fields.
    #[command(long_about = RECORDS_SHOW_ABOUT)]
    Show {
        /// The trade number: 32 digits.
        trade_no: String,
    },
}

#[derive(Debug, Args)]
pub struct ChargeArgs {
    #[command(subcommand)]
    pub command: ChargeCommand,
    #[command(flatten)]
    pub connect: AppConnectOptions,
}

#[derive(Debug, PartialEq, Eq, Subcommand)]
pub enum ChargeCommand {
    /// Start a charge on an online pile, paid from an account.
    #[command(long_about = CHARGE_START_ABOUT)]
    Start {
        /// The pile number: 14 digits, e.g. 32010200000001.
        pile: String,
        /// The gun (1 to 99).
        #[arg(long, value_name = "N", default_value_t = 1,
              value_parser = clap::value_parser!(u8).range(1..=99))]
        gun: u8,
        /// The account that pays, by id (`pylonctl accounts list`).
        #[arg(long, value_name = "ID", value_parser = clap::value_parser!(i64).range(1..))]
        account: i64,
    },
    /// Stop a charge.
    #[command(long_about = CHARGE_STOP_ABOUT)]
    Stop {
        /// The order's trade number: 32 digits.
        trade_no: String,
    },
    /// Show an order: state, events, and its record once finished.
    #[command(long_about = CHARGE_SHOW_ABOUT)]
    Show {
        /// The order's trade number: 32 digits.
        trade_no: String,
    },
    /// List open orders, of all piles or one.
    #[command(long_about = CHARGE_OPEN_ABOUT)]
    Open {
        /// Only this pile's open orders.
        #[arg(long, value_name = "PILE")]
        pile: Option<String>,
    },
}

/// A validated trade number (32 digits).
pub fn parse_trade_no(text: &str) -> Result<String, Failure> {
    let t = text.trim();
    if t.len() == 32 && t.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(t.to_owned());
    }
    let why = if !t.bytes().all(|b| b.is_ascii_digit()) {
        "it is not all digits".to_owned()
    } else {
        format!("it has {} digits", t.len())
    };
    Err(Failure::BadInput(format!(
        "{t:?} is not a trade number: {why} (a trade number is 32 digits, as `pylonctl \
         charge open` and `pylonctl records list` show them)"
    )))
}

/// The piles `piles add` registers, validated, without repeats.
fn piles_to_add(args: &PilesAddArgs) -> Result<Vec<String>, Failure> {
    if let Some(range) = &args.range {
        let [first, count] = range.as_slice() else {
            return Err(Failure::BadInput(
                "--range takes two values: the first pile number and how many".into(),
            ));
        };
        let first = parse_pile(first)?;
        let count: u64 = count
            .trim()
            .parse()
            .ok()
            .filter(|n| (1..=MAX_RANGE).contains(n))
            .ok_or_else(|| {
                Failure::BadInput(format!(
                    "--range {first} {count}: the count must be a number from 1 to {MAX_RANGE}"
                ))
            })?;
        let start: u64 = first
            .parse()
            .map_err(|_| Failure::BadInput(format!("{first:?} is not a pile number")))?;
        let last = start + count - 1;
        if last > MAX_PILE {
            return Err(Failure::BadInput(format!(
                "--range {first} {count} goes past the last pile number, {MAX_PILE}"
            )));
        }
        return Ok((start..=last).map(|n| format!("{n:014}")).collect());
    }
    let mut piles: Vec<String> = Vec::with_capacity(args.piles.len());
    for p in &args.piles {
        let p = parse_pile(p)?;
        if !piles.contains(&p) {
            piles.push(p);
        }
    }
    Ok(piles)
}

/// What a command was about, to explain the app service's errors in its terms.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct About<'a> {
    pile: Option<&'a str>,
    trade_no: Option<&'a str>,
    /// The account a start is paid from.
    account: Option<i64>,
    /// What the pile must be online for ("start a charge").
    action: Option<&'static str>,
}

/// Why the app service refused to start a charge for an account (HTTP 409, the refusal
/// reason as the code), with what to do about it; `None` for other errors.
fn refusal(code: &str, message: &str, account: i64, pile: Option<&str>) -> Option<String> {
    let pile = pile.unwrap_or("<pile>");
    let hint = match code {
        "insufficient_balance" => format!(
            "`pylonctl accounts show {account}` shows its balance; top it up with `pylonctl \
             accounts top-up {account} --amount YUAN --reason TEXT`"
        ),
        "frozen" => format!(
            "Account {account} is frozen; `pylonctl accounts unfreeze {account}` lets it \
             charge again"
        ),
        "not_allowed_here" => format!(
            "Account {account} may charge only at the stations `pylonctl accounts show \
             {account}` lists; `pylonctl stations list` shows which station has pile {pile}"
        ),
        "pile_unsettled" | "card_unsettled" => format!(
            "The last charge is not settled yet; `pylonctl charge open --pile {pile}` lists \
             the pile's open orders"
        ),
        "no_account" | "wrong_password" | "vin_unknown" => String::new(),
        _ => return None,
    };
    let mut text = format!("{message} ({code})");
    if !hint.is_empty() {
        text.push_str(".\n");
        text.push_str(&hint);
    }
    Some(text)
}

/// The app service's error, said so that an operator new to Pylon knows what to do.
/// Unknown codes, 400s (exit status 2), tokens and unreachable servers keep the client's
/// own messages.
pub(crate) fn explain(e: ClientError, about: About<'_>) -> Failure {
    // A trade number starts with its pile's number.
    let pile = about
        .pile
        .or_else(|| about.trade_no.and_then(|t| t.get(..14)));
    let message = e.message().unwrap_or_default().trim_end_matches('.');
    if let (Some(code), Some(account), 409) = (e.code(), about.account, e.status().unwrap_or(0)) {
        if let Some(text) = refusal(code, message, account, pile) {
            return Failure::Other(anyhow::anyhow!(text));
        }
    }
    if let (Some("no_such_account"), Some(a)) = (e.code(), about.account) {
        return Failure::Other(anyhow::anyhow!(
            "there is no account {a}; `pylonctl accounts list` lists the accounts"
        ));
    }
    let text = match (e.code(), pile, about.trade_no) {
        (Some("no_such_pile"), Some(p), _) => format!(
            "no pile {p} is registered; register it with `pylonctl piles add {p}` (`pylonctl \
             piles list` lists the registered piles)"
        ),
        (Some("no_such_order"), _, Some(t)) => format!(
            "there is no order {t}; `pylonctl charge open` lists the open orders, `pylonctl \
             records list <pile>` the finished charges"
        ),
        (Some("no_such_record"), _, Some(t)) => format!(
            "there is no transaction record {t} (yet): a pile sends it when a charge has \
             ended; `pylonctl charge show {t}` shows how the order stands"
        ),
        (Some("not_connected"), Some(p), _) => {
            let mut text = format!(
                "pile {p} is not connected to any edge right now; it must be online to {} \
                 (`pylonctl piles show {p}` shows its connection)",
                about.action.unwrap_or("receive commands")
            );
            if let Some(t) = about.trade_no {
                text.push_str(&format!(
                    ".\nOrder {t} stays open; stop it again once the pile is back online"
                ));
            }
            text.push_str(&format!(
                ".\nIf several app instances run, --app-endpoint must be the one that owns the \
                 pile's shard: see `pylonctl shards show --pile {p}`"
            ));
            text
        }
        (Some("conflict"), _, Some(t)) => format!(
            "{message}: there is nothing to stop (`pylonctl charge show {t}` shows the order)"
        ),
        (Some("conflict"), Some(p), None) => format!(
            "{message}.\nStop that charge first (`pylonctl charge stop <trade no>`) or use \
             another gun (--gun); `pylonctl charge open --pile {p}` lists the pile's open \
             orders"
        ),
        (Some("pile_disabled"), Some(p), _) => format!(
            "pile {p} is disabled, so it may not charge; enable it with `pylonctl piles \
             enable {p}`"
        ),
        (Some("no_reply"), _, _) => format!(
            "{message}: the pile may be busy or just gone offline{}; try again",
            pile.map(|p| format!(" (`pylonctl piles show {p}`)"))
                .unwrap_or_default()
        ),
        (Some("store_unavailable"), _, _) => format!(
            "the app service cannot use its database right now ({message}). Try again \
             shortly; if it lasts, check pylon-app's log and its store (the SQLite file, \
             or the PostgreSQL server)"
        ),
        (Some("operator_api_disabled"), _, _) => "the app service's operator API is off: \
             start pylon-app with --admin-token (or PYLON_ADMIN_TOKEN) set to the control \
             plane's admin token, the one pylonctl sends"
            .to_owned(),
        _ => return Failure::from(e),
    };
    Failure::Other(anyhow::anyhow!(text))
}

/// A `GET` whose errors are explained in terms of what the command was `about`.
fn get(
    ctx: &AppCtx,
    path: &str,
    query: &[(&str, &str)],
    about: About<'_>,
) -> Result<Value, Failure> {
    ctx.client.get(path, query).map_err(|e| explain(e, about))
}

/// Runs `pylonctl piles ...`; `piles keys set` reads the key from `console`.
pub fn run_piles(
    args: PilesArgs,
    env: &dyn Fn(&str) -> Option<String>,
    console: &mut dyn Console,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    match args.command {
        PilesCommand::List { after, limit } => {
            let after = after.as_deref().map(parse_pile).transpose()?;
            let ctx = AppCtx::new(&args.connect, env)?;
            let limit_text = limit.to_string();
            let mut query = vec![("limit", limit_text.as_str())];
            if let Some(after) = &after {
                query.push(("after", after));
            }
            let path = "/v1/piles";
            let reply = get(&ctx, path, &query, About::default())?;
            ctx.emit(out, "GET", path, &reply, |piles: &Vec<Pile>| {
                render::piles(piles, after.as_deref(), limit)
            })
        }
        PilesCommand::Add(add) => {
            let numbers = piles_to_add(&add)?;
            let ctx = AppCtx::new(&args.connect, env)?;
            let name = add.name.clone().unwrap_or_default();
            let mut upserted: u64 = 0;
            // Piles of the batches the app service took.
            let mut done: usize = 0;
            for batch in numbers.chunks(ADD_BATCH) {
                let inputs: Vec<PileInput> = batch
                    .iter()
                    .map(|p| PileInput {
                        pile_no: Some(p.clone()),
                        enabled: !add.disabled,
                        billing_model: add.model,
                        name: name.clone(),
                    })
                    .collect();
                let reply: Value = ctx.client.post_json("/v1/piles", &inputs).map_err(|e| {
                    let failure = explain(e, About::default());
                    match done.checked_sub(1).and_then(|i| numbers.get(i)) {
                        None => failure,
                        Some(last) => Failure::Other(anyhow::anyhow!(
                            "{failure}\nThe first {done} of {} piles (up to {last}) were \
                             saved before this error; running the command again is harmless",
                            numbers.len(),
                        )),
                    }
                })?;
                done += batch.len();
                // The batch was saved: a reply of another shape is no reason to stop.
                upserted +=
                    UpsertedReply::deserialize(&reply).map_or(batch.len() as u64, |r| r.upserted);
            }
            match ctx.output {
                OutputFormat::Json => print_json(out, &UpsertedReply { upserted }),
                OutputFormat::Table => {
                    let text = render::piles_added(
                        &numbers,
                        !add.disabled,
                        add.model,
                        add.name.as_deref(),
                    );
                    out.write_all(text.as_bytes())?;
                    Ok(())
                }
            }
        }
        PilesCommand::Show { pile } => {
            let pile = parse_pile(&pile)?;
            let ctx = AppCtx::new(&args.connect, env)?;
            let path = format!("/v1/piles/{}", path_segment(&pile));
            let about = About {
                pile: Some(&pile),
                ..About::default()
            };
            let reply = get(&ctx, &path, &[], about)?;
            ctx.emit(out, "GET", &path, &reply, render::pile_detail)
        }
        PilesCommand::Disable { pile } => set_enabled(args.connect, &pile, false, env, out),
        PilesCommand::Enable { pile } => set_enabled(args.connect, &pile, true, env, out),
        PilesCommand::Keys(cmd) => pile_keys::run(cmd, &args.connect, env, console, out),
    }
}

/// `piles enable|disable`: reads the pile, then writes it back with `enabled` changed.
fn set_enabled(
    connect: AppConnectOptions,
    pile: &str,
    enabled: bool,
    env: &dyn Fn(&str) -> Option<String>,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let pile = parse_pile(pile)?;
    let ctx = AppCtx::new(&connect, env)?;
    let path = format!("/v1/piles/{}", path_segment(&pile));
    let about = About {
        pile: Some(&pile),
        ..About::default()
    };
    let detail: PileDetail = ctx.typed("GET", &path, &get(&ctx, &path, &[], about)?)?;
    let was = detail.pile.enabled;
    let input = PileInput {
        pile_no: None,
        enabled,
        billing_model: detail.pile.billing_model,
        name: detail.pile.name,
    };
    let reply: Value = ctx
        .client
        .put_json(&path, &input)
        .map_err(|e| explain(e, about))?;
    ctx.emit(out, "PUT", &path, &reply, |p: &Pile| {
        render::pile_enabled(p, was)
    })
}

/// Runs `pylonctl records ...`.
pub fn run_records(
    args: RecordsArgs,
    env: &dyn Fn(&str) -> Option<String>,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    match args.command {
        RecordsCommand::List {
            pile,
            from,
            to,
            limit,
        } => {
            let pile = parse_pile(&pile)?;
            if let (Some(from), Some(to)) = (from, to) {
                if from >= to {
                    return Err(Failure::BadInput(
                        "--from must be before --to (--from is included, --to is not)".into(),
                    ));
                }
            }
            let ctx = AppCtx::new(&args.connect, env)?;
            let path = format!("/v1/piles/{}/records", path_segment(&pile));
            let (from, to, limit_text) = (
                from.map(|t| t.to_string()),
                to.map(|t| t.to_string()),
                limit.to_string(),
            );
            let mut query = vec![("limit", limit_text.as_str())];
            if let Some(from) = &from {
                query.push(("from", from));
            }
            if let Some(to) = &to {
                query.push(("to", to));
            }
            let about = About {
                pile: Some(&pile),
                ..About::default()
            };
            let reply = get(&ctx, &path, &query, about)?;
            ctx.emit(out, "GET", &path, &reply, |records: &Vec<Record>| {
                render::records(records, &pile, limit)
            })
        }
        RecordsCommand::Show { trade_no } => {
            let trade_no = parse_trade_no(&trade_no)?;
            let ctx = AppCtx::new(&args.connect, env)?;
            let path = format!("/v1/records/{trade_no}");
            let about = About {
                trade_no: Some(&trade_no),
                ..About::default()
            };
            let reply = get(&ctx, &path, &[], about)?;
            ctx.emit(out, "GET", &path, &reply, render::record)
        }
    }
}

/// Runs `pylonctl charge ...`.
pub fn run_charge(
    args: ChargeArgs,
    env: &dyn Fn(&str) -> Option<String>,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    match args.command {
        ChargeCommand::Start { pile, gun, account } => {
            let pile = parse_pile(&pile)?;
            let ctx = AppCtx::new(&args.connect, env)?;
            let path = format!("/v1/accounts/{account}/charge");
            let about = About {
                pile: Some(&pile),
                account: Some(account),
                action: Some("start a charge"),
                ..About::default()
            };
            let body = AccountCharge {
                pile: pile.clone(),
                gun,
            };
            let reply: Value = ctx
                .client
                .post_json(&path, &body)
                .map_err(|e| explain(e, about))?;
            ctx.emit(out, "POST", &path, &reply, render::charge_started)
        }
        ChargeCommand::Stop { trade_no } => {
            let trade_no = parse_trade_no(&trade_no)?;
            let ctx = AppCtx::new(&args.connect, env)?;
            let path = format!("/v1/orders/{trade_no}/stop");
            let about = About {
                trade_no: Some(&trade_no),
                action: Some("stop a charge"),
                ..About::default()
            };
            let reply: Value = ctx.client.post(&path).map_err(|e| explain(e, about))?;
            ctx.emit(out, "POST", &path, &reply, render::charge_stopped)
        }
        ChargeCommand::Show { trade_no } => {
            let trade_no = parse_trade_no(&trade_no)?;
            let ctx = AppCtx::new(&args.connect, env)?;
            let path = format!("/v1/orders/{trade_no}");
            let about = About {
                trade_no: Some(&trade_no),
                ..About::default()
            };
            let reply = get(&ctx, &path, &[], about)?;
            ctx.emit(out, "GET", &path, &reply, render::order_detail)
        }
        ChargeCommand::Open { pile } => {
            let pile = pile.as_deref().map(parse_pile).transpose()?;
            let ctx = AppCtx::new(&args.connect, env)?;
            let path = "/v1/orders";
            let query: Vec<(&str, &str)> = pile.iter().map(|p| ("pile", p.as_str())).collect();
            let about = About {
                pile: pile.as_deref(),
                ..About::default()
            };
            let reply = get(&ctx, path, &query, about)?;
            ctx.emit(out, "GET", path, &reply, |orders: &Vec<Order>| {
                render::open_orders(orders, pile.as_deref())
            })
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
