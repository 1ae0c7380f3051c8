//! `pylonctl accounts ...`: drivers' accounts and wallets, their cards and VINs, and the
//! ledger, through the app service's operator API (`pylon_proto::api::revenue`).
//!
//! Amounts are typed in yuan and sent in fen. Card numbers, card passwords and VINs are
//! sent in request bodies, never in a URL, and never printed as given: replies carry them
//! masked, and pylonctl's own messages mask them the same way (first four characters and
//! `****`).

use std::io::Write;

use clap::{Args, Subcommand};
use pylon_proto::api::revenue::{
    Account, AccountInput, CardInput, CardRemove, LedgerEntry, MoneyInput, VinInput,
};
use serde_json::Value;

use super::app::{explain_revenue, mask, parse_text, redacted, AppConnectOptions, AppCtx, Subject};
use crate::cli::Failure;
use crate::render::accounts as render;
use crate::units::{parse_signed_yuan, parse_yuan};

pub const ACCOUNTS_ABOUT: &str = "\
Manage drivers' accounts: their wallets (balance and the part held for charges under
way), the cards and VINs that identify them at a pile, the stations they may charge at,
and the ledger of every money movement. Amounts are in yuan with up to two decimals.
Card numbers and VINs are shown masked (D14B****), and are sent in request bodies, never
in a URL. Talks to the app service (--app-endpoint).

Examples:
  pylonctl accounts add --name 'Fleet A' --station 3
  pylonctl accounts edit 7 --name 'Fleet A (north)' --station 3 --station 4
  pylonctl accounts top-up 7 --amount 200 --reason 'paid by bank transfer 2024-05-01'
  pylonctl accounts card-add 7 --card D14B0A54 --logical 1000000000000001
  pylonctl accounts card-remove 7 --card D14B0A54
  pylonctl accounts vin-remove 7 --vin LSVAU2180N2183294
  pylonctl accounts show 7
  pylonctl accounts ledger 7 --limit 20
  pylonctl charge start 32010200000001 --account 7";

const LIST_ABOUT: &str = "\
List accounts by id, a page at a time: state, balance and amount on hold in yuan, how
many cards and VINs, and the stations each may charge at.

Examples:
  pylonctl accounts list
  pylonctl accounts list --after 100 --limit 500
  pylonctl accounts list -o json | jq '.[] | select(.balance < 0) | .id'";

const SHOW_ABOUT: &str = "\
Show an account: state, balance, amount on hold, the stations it may charge at, its cards
(masked, and whether each has a password) and VINs (masked).

Examples:
  pylonctl accounts show 7";

const ADD_ABOUT: &str = "\
Add an account, with an empty wallet. --station (repeatable) limits where it may charge;
without it, it may charge at every station. Prints its id.

Examples:
  pylonctl accounts add --name 'Zhang Wei'
  pylonctl accounts add --name 'Fleet A' --station 3 --station 4";

const EDIT_ABOUT: &str = "\
Change an account: only what is given changes (pylonctl reads the account and writes it
back). --station (repeatable) replaces the stations it may charge at with those given;
--all-stations lets it charge at every station. Its wallet, cards, VINs and state are
not touched. Prints the account.

Examples:
  pylonctl accounts edit 7 --name 'Fleet A (north)'
  pylonctl accounts edit 7 --station 3 --station 5
  pylonctl accounts edit 7 --all-stations";

const TOP_UP_ABOUT: &str = "\
Put money into an account's wallet (money received from the driver), in yuan with up to
two decimals. The reason is kept in the ledger.

Examples:
  pylonctl accounts top-up 7 --amount 200 --reason 'bank transfer ref 2024050112'";

const REFUND_ABOUT: &str = "\
Give money back to an account's wallet, counted against revenue (e.g. for a charge that
went wrong), in yuan. The reason is kept in the ledger.

Examples:
  pylonctl accounts refund 7 --amount 12.50 --reason 'charge 3201...0001 stopped early'";

const ADJUST_ABOUT: &str = "\
Correct an account's wallet by hand, in yuan: a positive amount adds to it, a negative one
takes from it (the balance may go below zero). The reason is kept in the ledger.

Examples:
  pylonctl accounts adjust 7 --amount -5 --reason 'double top-up on 2024-05-01'
  pylonctl accounts adjust 7 --amount 0.30 --reason 'rounding'";

const FREEZE_ABOUT: &str = "\
Freeze an account: no new charge starts for it (by card, VIN or `pylonctl charge start`);
charges under way end and settle.

Examples:
  pylonctl accounts freeze 7";

const UNFREEZE_ABOUT: &str = "\
Unfreeze a frozen account: it may start charges again.

Examples:
  pylonctl accounts unfreeze 7";

const LEDGER_ABOUT: &str = "\
List an account's ledger entries, newest first: every movement of money between books
(wallet:ID, hold:ID, revenue:electricity, revenue:service, refunds, funding), in yuan,
with what the wallet gained or lost, the trade number of a charge, who made it and why.

Examples:
  pylonctl accounts ledger 7
  pylonctl accounts ledger 7 --limit 1000 -o json | jq '[.[] | select(.kind == \"charge\") | .amount] | add'";

const CARD_ADD_ABOUT: &str = "\
Give an account a card, so that it can start charges at a pile. --card is the physical
number the pile reads (up to 16 hex digits), --logical the number printed on it (up to
16 digits); --password, if the card has one (piles send its MD5). The app service stores
them encrypted and shows them masked. Other users can see command-line flags in `ps`:
prefer a shell that keeps them out of its history, and a card without a password.

Examples:
  pylonctl accounts card-add 7 --card D14B0A54 --logical 1000000000000001";

const CARD_REMOVE_ABOUT: &str = "\
Take a card from an account: it may no longer start charges, and it leaves the offline
card lists of the piles at the account's stations. Name it by its full physical number
(`accounts show` prints it masked); it is sent in the request body, never in a URL.

Examples:
  pylonctl accounts card-remove 7 --card D14B0A54";

const VIN_ADD_ABOUT: &str = "\
Give an account a vehicle's VIN (17 letters and digits), so that the vehicle can start
charges at piles that read it (plug and charge). Shown masked.

Examples:
  pylonctl accounts vin-add 7 --vin LSVAU2180N2183294";

const VIN_REMOVE_ABOUT: &str = "\
Take a vehicle's VIN from an account: the vehicle may no longer start charges by plug
and charge. Name it by its full VIN (`accounts show` prints it masked); it is sent in
the request body, never in a URL.

Examples:
  pylonctl accounts vin-remove 7 --vin LSVAU2180N2183294";

#[derive(Debug, Args)]
pub struct AccountsArgs {
    #[command(subcommand)]
    pub command: AccountsCommand,
    #[command(flatten)]
    pub connect: AppConnectOptions,
}

/// An account id as a positional argument.
#[derive(Debug, PartialEq, Eq, Args)]
pub struct AccountId {
    /// The account's id (`pylonctl accounts list`).
    #[arg(value_name = "ID", value_parser = clap::value_parser!(i64).range(1..))]
    pub id: i64,
}

/// A money movement: the account, how much and why.
#[derive(Debug, PartialEq, Eq, Args)]
pub struct MoneyArgs {
    #[command(flatten)]
    pub account: AccountId,
    /// The amount in yuan, up to two decimals, e.g. 50 or 12.50.
    #[arg(long, value_name = "YUAN", value_parser = parse_yuan, allow_negative_numbers = true)]
    pub amount: i64,
    /// Why, for the ledger.
    #[arg(long, value_name = "TEXT", value_parser = parse_text)]
    pub reason: String,
}

/// An adjustment: like [`MoneyArgs`], but the amount may be negative.
#[derive(Debug, PartialEq, Eq, Args)]
pub struct AdjustArgs {
    #[command(flatten)]
    pub account: AccountId,
    /// The amount in yuan, up to two decimals; negative takes money out, e.g. -5.
    #[arg(long, value_name = "[-]YUAN", value_parser = parse_signed_yuan,
          allow_negative_numbers = true)]
    pub amount: i64,
    /// Why, for the ledger.
    #[arg(long, value_name = "TEXT", value_parser = parse_text)]
    pub reason: String,
}

/// `accounts edit`: what to change; what is not given stays as it is.
#[derive(Debug, PartialEq, Eq, Args)]
pub struct AccountEditArgs {
    #[command(flatten)]
    pub account: AccountId,
    /// A new name for the account holder.
    #[arg(long, value_name = "TEXT", value_parser = parse_text)]
    pub name: Option<String>,
    /// A station it may charge at (repeat for more): replaces its stations.
    #[arg(long = "station", value_name = "ID", conflicts_with = "all_stations",
          value_parser = clap::value_parser!(i64).range(1..))]
    pub stations: Vec<i64>,
    /// Let it charge at every station (forget its list of stations).
    #[arg(long)]
    pub all_stations: bool,
}

impl AccountEditArgs {
    fn changes_nothing(&self) -> bool {
        self.name.is_none() && self.stations.is_empty() && !self.all_stations
    }

    /// `account` with this edit's changes, as `PUT /v1/accounts/{id}` takes it.
    fn apply(&self, account: &Account) -> AccountInput {
        let stations = if self.all_stations {
            Vec::new()
        } else if self.stations.is_empty() {
            account.stations.clone()
        } else {
            self.stations.clone()
        };
        AccountInput {
            name: self.name.clone().unwrap_or_else(|| account.name.clone()),
            stations,
        }
    }
}

#[derive(Debug, PartialEq, Eq, Subcommand)]
pub enum AccountsCommand {
    /// List accounts: state, balance, cards, VINs, stations.
    #[command(long_about = LIST_ABOUT)]
    List {
        /// Start after this account id (the last one of the previous page).
        #[arg(long, value_name = "ID", value_parser = clap::value_parser!(i64).range(0..))]
        after: Option<i64>,
        /// At most this many accounts (1 to 10000).
        #[arg(long, value_name = "N", default_value_t = 100,
              value_parser = clap::value_parser!(u32).range(1..=10_000))]
        limit: u32,
    },
    /// Show an account: wallet, stations, cards and VINs (masked).
    #[command(long_about = SHOW_ABOUT)]
    Show(AccountId),
    /// Add an account.
    #[command(long_about = ADD_ABOUT)]
    Add {
        /// The account holder's name.
        #[arg(long, value_name = "TEXT", value_parser = parse_text)]
        name: String,
        /// A station it may charge at (repeat for more; default: all).
        #[arg(long = "station", value_name = "ID",
              value_parser = clap::value_parser!(i64).range(1..))]
        stations: Vec<i64>,
    },
    /// Rename an account or change the stations it may charge at.
    #[command(long_about = EDIT_ABOUT)]
    Edit(AccountEditArgs),
    /// Put money into a wallet (yuan).
    #[command(long_about = TOP_UP_ABOUT)]
    TopUp(MoneyArgs),
    /// Give money back to a wallet, against revenue (yuan).
    #[command(long_about = REFUND_ABOUT)]
    Refund(MoneyArgs),
    /// Correct a wallet by hand, up or down (yuan).
    #[command(long_about = ADJUST_ABOUT)]
    Adjust(AdjustArgs),
    /// Stop an account from starting charges.
    #[command(long_about = FREEZE_ABOUT)]
    Freeze(AccountId),
    /// Let a frozen account charge again.
    #[command(long_about = UNFREEZE_ABOUT)]
    Unfreeze(AccountId),
    /// List an account's ledger entries, newest first.
    #[command(long_about = LEDGER_ABOUT)]
    Ledger {
        #[command(flatten)]
        account: AccountId,
        /// At most this many entries (1 to 10000).
        #[arg(long, value_name = "N", default_value_t = 100,
              value_parser = clap::value_parser!(u32).range(1..=10_000))]
        limit: u32,
    },
    /// Give an account a card.
    #[command(long_about = CARD_ADD_ABOUT)]
    CardAdd {
        #[command(flatten)]
        account: AccountId,
        /// The physical card number: up to 16 hex digits.
        #[arg(long, value_name = "HEX")]
        card: String,
        /// The number printed on the card: up to 16 digits.
        #[arg(long, value_name = "DIGITS")]
        logical: String,
        /// The card's password, if it has one.
        #[arg(long, value_name = "PASSWORD")]
        password: Option<String>,
    },
    /// Take a card from an account.
    #[command(long_about = CARD_REMOVE_ABOUT)]
    CardRemove {
        #[command(flatten)]
        account: AccountId,
        /// The physical card number: up to 16 hex digits.
        #[arg(long, value_name = "HEX")]
        card: String,
    },
    /// Give an account a vehicle's VIN.
    #[command(long_about = VIN_ADD_ABOUT)]
    VinAdd {
        #[command(flatten)]
        account: AccountId,
        /// The VIN: 17 letters and digits.
        #[arg(long, value_name = "VIN")]
        vin: String,
    },
    /// Take a vehicle's VIN from an account.
    #[command(long_about = VIN_REMOVE_ABOUT)]
    VinRemove {
        #[command(flatten)]
        account: AccountId,
        /// The VIN: 17 letters and digits.
        #[arg(long, value_name = "VIN")]
        vin: String,
    },
}

/// A physical card number as the app service keys it: 1 to 16 hex digits, upper case,
/// without leading zeros. Errors name it masked only.
pub fn parse_card(text: &str) -> Result<String, Failure> {
    let t = text.trim();
    if t.is_empty() || t.len() > 16 || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Failure::BadInput(format!(
            "the card number {} is not a physical card number: 1 to 16 hex digits, as the \
             pile reads it (e.g. D14B0A54)",
            mask(t)
        )));
    }
    let upper = t.to_ascii_uppercase();
    let trimmed = upper.trim_start_matches('0');
    Ok(if trimmed.is_empty() { "0" } else { trimmed }.to_owned())
}

/// The number printed on a card: 1 to 16 digits. Errors name it masked only.
pub fn parse_logical(text: &str) -> Result<String, Failure> {
    let t = text.trim();
    if t.is_empty() || t.len() > 16 || !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Failure::BadInput(format!(
            "the logical card number {} is not 1 to 16 digits (the number printed on the card)",
            mask(t)
        )));
    }
    Ok(t.to_owned())
}

/// A VIN: 17 letters and digits, upper case. Errors name it masked only.
pub fn parse_vin(text: &str) -> Result<String, Failure> {
    let t = text.trim().to_ascii_uppercase();
    if t.len() != 17 || !t.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(Failure::BadInput(format!(
            "the VIN {} is not a VIN: 17 letters and digits",
            mask(&t)
        )));
    }
    Ok(t)
}

/// Runs `pylonctl accounts ...`.
pub fn run_accounts(
    args: AccountsArgs,
    env: &dyn Fn(&str) -> Option<String>,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let connect = args.connect;
    match args.command {
        AccountsCommand::List { after, limit } => {
            let ctx = AppCtx::new(&connect, env)?;
            let (after_text, limit_text) = (after.map(|a| a.to_string()), limit.to_string());
            let mut query = vec![("limit", limit_text.as_str())];
            if let Some(after) = &after_text {
                query.push(("after", after));
            }
            let path = "/v1/accounts";
            let reply: Value = ctx
                .client
                .get(path, &query)
                .map_err(|e| explain_revenue(e, Subject::default()))?;
            ctx.emit(out, "GET", path, &reply, |a: &Vec<Account>| {
                render::accounts(a, limit)
            })
        }
        AccountsCommand::Show(AccountId { id }) => {
            let ctx = AppCtx::new(&connect, env)?;
            let path = format!("/v1/accounts/{id}");
            let reply: Value = ctx.client.get(&path, &[]).map_err(explain(id))?;
            ctx.emit(out, "GET", &path, &reply, render::account)
        }
        AccountsCommand::Add { name, stations } => {
            let ctx = AppCtx::new(&connect, env)?;
            let path = "/v1/accounts";
            let reply: Value = ctx
                .client
                .post_json(path, &AccountInput { name, stations })
                .map_err(|e| explain_revenue(e, Subject::default()))?;
            ctx.emit(out, "POST", path, &reply, render::account_added)
        }
        AccountsCommand::Edit(edit) => {
            if edit.changes_nothing() {
                return Err(Failure::BadInput(
                    "give something to change: --name, --station (repeatable) or \
                     --all-stations"
                        .into(),
                ));
            }
            let id = edit.account.id;
            let ctx = AppCtx::new(&connect, env)?;
            let path = format!("/v1/accounts/{id}");
            let current: Value = ctx.client.get(&path, &[]).map_err(explain(id))?;
            let current: Account = ctx.typed("GET", &path, &current)?;
            let reply: Value = ctx
                .client
                .put_json(&path, &edit.apply(&current))
                .map_err(explain(id))?;
            ctx.emit(out, "PUT", &path, &reply, render::account_updated)
        }
        AccountsCommand::TopUp(m) => move_money(
            &connect,
            env,
            out,
            "top-up",
            m.account.id,
            m.amount,
            m.reason,
        ),
        AccountsCommand::Refund(m) => move_money(
            &connect,
            env,
            out,
            "refund",
            m.account.id,
            m.amount,
            m.reason,
        ),
        AccountsCommand::Adjust(m) => move_money(
            &connect,
            env,
            out,
            "adjust",
            m.account.id,
            m.amount,
            m.reason,
        ),
        AccountsCommand::Freeze(AccountId { id }) => set_state(&connect, env, out, id, "freeze"),
        AccountsCommand::Unfreeze(AccountId { id }) => {
            set_state(&connect, env, out, id, "unfreeze")
        }
        AccountsCommand::Ledger { account, limit } => {
            let id = account.id;
            let ctx = AppCtx::new(&connect, env)?;
            let path = format!("/v1/accounts/{id}/ledger");
            let limit_text = limit.to_string();
            let reply: Value = ctx
                .client
                .get(&path, &[("limit", &limit_text)])
                .map_err(explain(id))?;
            ctx.emit(out, "GET", &path, &reply, |e: &Vec<LedgerEntry>| {
                render::ledger(e, id, limit)
            })
        }
        AccountsCommand::CardAdd {
            account,
            card,
            logical,
            password,
        } => {
            let id = account.id;
            let physical = parse_card(&card)?;
            let logical = parse_logical(&logical)?;
            let ctx = AppCtx::new(&connect, env)?;
            let path = format!("/v1/accounts/{id}/cards");
            let body = CardInput {
                physical: physical.clone(),
                logical: logical.clone(),
                password: password.clone().filter(|p| !p.is_empty()),
            };
            let secrets = [Some(card), Some(physical.clone()), Some(logical), password];
            let reply: Value = ctx
                .client
                .post_json(&path, &body)
                .map_err(explain(id))
                .map_err(|f| redact_all(f, &secrets))?;
            ctx.emit(out, "POST", &path, &reply, |a: &Account| {
                render::card_added(a, &mask(&physical))
            })
        }
        AccountsCommand::CardRemove { account, card } => {
            let id = account.id;
            let physical = parse_card(&card)?;
            let ctx = AppCtx::new(&connect, env)?;
            // The number travels in the body; should a message quote it, it is masked.
            let path = format!("/v1/accounts/{id}/cards/remove");
            let body = CardRemove {
                physical: physical.clone(),
            };
            let reply: Value = ctx
                .client
                .post_json(&path, &body)
                .map_err(explain(id))
                .map_err(|f| redact_all(f, &[Some(card), Some(physical.clone())]))?;
            ctx.emit(out, "POST", &path, &reply, |a: &Account| {
                render::card_removed(a, &mask(&physical))
            })
        }
        AccountsCommand::VinAdd { account, vin } => {
            let id = account.id;
            let vin = parse_vin(&vin)?;
            let ctx = AppCtx::new(&connect, env)?;
            let path = format!("/v1/accounts/{id}/vins");
            let reply: Value = ctx
                .client
                .post_json(&path, &VinInput { vin: vin.clone() })
                .map_err(explain(id))
                .map_err(|f| redacted(f, &vin, &mask(&vin)))?;
            ctx.emit(out, "POST", &path, &reply, |a: &Account| {
                render::vin_added(a, &mask(&vin))
            })
        }
        AccountsCommand::VinRemove { account, vin } => {
            let id = account.id;
            let vin = parse_vin(&vin)?;
            let ctx = AppCtx::new(&connect, env)?;
            let path = format!("/v1/accounts/{id}/vins/remove");
            let reply: Value = ctx
                .client
                .post_json(&path, &VinInput { vin: vin.clone() })
                .map_err(explain(id))
                .map_err(|f| redacted(f, &vin, &mask(&vin)))?;
            ctx.emit(out, "POST", &path, &reply, |a: &Account| {
                render::vin_removed(a, &mask(&vin))
            })
        }
    }
}

/// The app service's errors about account `id`, explained.
fn explain(id: i64) -> impl Fn(crate::client::ClientError) -> Failure {
    move |e| {
        explain_revenue(
            e,
            Subject {
                account: Some(id),
                ..Subject::default()
            },
        )
    }
}

/// `failure` with each of `secrets` masked (longest first, so that a secret holding
/// another is masked whole).
fn redact_all(failure: Failure, secrets: &[Option<String>]) -> Failure {
    let mut secrets: Vec<&str> = secrets.iter().flatten().map(String::as_str).collect();
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    secrets
        .into_iter()
        .fold(failure, |f, secret| redacted(f, secret, &mask(secret)))
}

/// `accounts top-up|refund|adjust` (`action`, also the path's last segment).
fn move_money(
    connect: &AppConnectOptions,
    env: &dyn Fn(&str) -> Option<String>,
    out: &mut dyn Write,
    action: &'static str,
    id: i64,
    amount: i64,
    reason: String,
) -> Result<(), Failure> {
    let ctx = AppCtx::new(connect, env)?;
    let path = format!("/v1/accounts/{id}/{action}");
    let reply: Value = ctx
        .client
        .post_json(&path, &MoneyInput { amount, reason })
        .map_err(explain(id))?;
    ctx.emit(out, "POST", &path, &reply, |a: &Account| {
        render::money_moved(a, action, amount)
    })
}

/// `accounts freeze|unfreeze` (`action`, also the path's last segment).
fn set_state(
    connect: &AppConnectOptions,
    env: &dyn Fn(&str) -> Option<String>,
    out: &mut dyn Write,
    id: i64,
    action: &'static str,
) -> Result<(), Failure> {
    let ctx = AppCtx::new(connect, env)?;
    let path = format!("/v1/accounts/{id}/{action}");
    let reply: Value = ctx.client.post(&path).map_err(explain(id))?;
    ctx.emit(out, "POST", &path, &reply, render::account_state)
}

#[cfg(test)]
mod tests;
