//! `pylonctl alarms list|ack|resolve`: the alarms the app service raised
//! ([`pylon_proto::api::monitor`]), through the control plane like every app command.

use std::io::Write;

use clap::{Args, Subcommand};
use pylon_proto::api::monitor::{Alarm, AlarmNote, AlarmPage};
use serde_json::Value;

use super::app::{explain_revenue, AppConnectOptions, AppCtx, Subject};
use crate::cli::Failure;
use crate::render::alarms as render;

pub const ALARMS_ABOUT: &str = "\
See and handle alarms: piles offline (missed heartbeats) or flapping, guns' hardware
faults (each fault bit of the real-time data, opened and resolved as it changes), charges
that ended abnormally, starts not confirmed, transaction records overdue, settlement
discrepancies, quarantined records, and the platform's own (a failing store, a
certificate about to expire). An alarm is open, then acknowledged (someone is on it),
then resolved (by a person, or by the system when its condition ends); raised again while
not resolved, it counts instead of repeating. Talks to the app service (--app-endpoint).

Examples:
  pylonctl alarms list
  pylonctl alarms list --state all --pile 32010200000001
  pylonctl alarms ack 42 --note 'crew on the way'
  pylonctl alarms resolve 42";

const LIST_ABOUT: &str = "\
List alarms, newest first: id, severity, state, kind, subject, count, first and last
time, and what happened. The active ones (open or acknowledged) unless --state says
otherwise.

Examples:
  pylonctl alarms list
  pylonctl alarms list --state resolved --limit 200
  pylonctl alarms list --kind gun_fault -o json | jq '.alarms[].subject'";

#[derive(Debug, Args)]
pub struct AlarmsArgs {
    #[command(subcommand)]
    pub command: AlarmsCommand,
    #[command(flatten)]
    pub connect: AppConnectOptions,
}

#[derive(Debug, PartialEq, Eq, Subcommand)]
pub enum AlarmsCommand {
    /// List alarms, newest first (the active ones by default).
    #[command(long_about = LIST_ABOUT)]
    List {
        /// active (open or acknowledged), open, acknowledged, resolved or all.
        #[arg(long, default_value = "active", value_parser = ["active", "open", "acknowledged", "resolved", "all"])]
        state: String,
        /// Only this pile's (14 digits).
        #[arg(long)]
        pile: Option<String>,
        /// Only this kind (pile_offline, pile_flapping, gun_fault, charge_abnormal_end,
        /// start_unconfirmed, record_missing, settlement_discrepancy, record_quarantined,
        /// store_errors, certificate_expiring, ...).
        #[arg(long)]
        kind: Option<String>,
        /// Only alarms older than this id (the next page).
        #[arg(long, value_name = "ID")]
        after: Option<i64>,
        /// At most this many (1 to 500).
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=500))]
        limit: u32,
    },
    /// Acknowledge an alarm: someone is on it (needs the operator role).
    Ack {
        id: i64,
        /// Why, or what is being done (logged with your name).
        #[arg(long)]
        note: Option<String>,
    },
    /// Resolve an alarm by hand (needs the operator role).
    Resolve {
        id: i64,
        #[arg(long)]
        note: Option<String>,
    },
}

/// Runs `pylonctl alarms ...`.
pub fn run_alarms(
    args: AlarmsArgs,
    env: &dyn Fn(&str) -> Option<String>,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let ctx = AppCtx::new(&args.connect, env)?;
    match args.command {
        AlarmsCommand::List {
            state,
            pile,
            kind,
            after,
            limit,
        } => {
            let (after, limit_text) = (after.map(|a| a.to_string()), limit.to_string());
            let mut query = vec![("state", state.as_str()), ("limit", limit_text.as_str())];
            if let Some(pile) = &pile {
                query.push(("pile", pile));
            }
            if let Some(kind) = &kind {
                query.push(("kind", kind));
            }
            if let Some(after) = &after {
                query.push(("after", after));
            }
            let path = "/v1/alarms";
            let reply: Value = ctx
                .client
                .get(path, &query)
                .map_err(|e| explain_revenue(e, Subject::default()))?;
            ctx.emit(out, "GET", path, &reply, |page: &AlarmPage| {
                render::alarms(page, &state)
            })
        }
        AlarmsCommand::Ack { id, note } => handle(&ctx, out, id, "ack", note),
        AlarmsCommand::Resolve { id, note } => handle(&ctx, out, id, "resolve", note),
    }
}

fn handle(
    ctx: &AppCtx,
    out: &mut dyn Write,
    id: i64,
    action: &str,
    note: Option<String>,
) -> Result<(), Failure> {
    let path = format!("/v1/alarms/{id}/{action}");
    let reply: Value = ctx
        .client
        .post_json(&path, &AlarmNote { note })
        .map_err(|e| explain_revenue(e, Subject::default()))?;
    ctx.emit(out, "POST", &path, &reply, |a: &Alarm| render::alarm(a))
}
