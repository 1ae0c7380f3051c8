//! `pylonctl reports daily|reconciliation|discrepancies|quarantine`: what the revenue side
//! earned and whether its books agree, through the app service's operator API
//! (`pylon_proto::api::revenue`). `--format csv` prints the app service's own CSV.

use std::io::Write;

use clap::{Args, Subcommand, ValueEnum};
use pylon_proto::api::revenue::{Discrepancy, QuarantinedRecord, Reconciliation, StationDay};
use serde_json::Value;

use super::app::{explain_revenue, AppConnectOptions, AppCtx, Subject};
use super::OutputFormat;
use crate::cli::Failure;
use crate::render::reports as render;
use crate::units::parse_time;

pub const REPORTS_ABOUT: &str = "\
Revenue reports: takings per station and day, the reconciliation of records, settlements
and the ledger, the records whose amount the platform disputes, and the quarantined
records. Money in yuan, energy in kWh. Talks to the app service (--app-endpoint).

Examples:
  pylonctl reports daily --from 2024-05-01 --to 2024-06-01
  pylonctl reports daily --from 2024-05-01 --format csv > may.csv
  pylonctl reports reconciliation || echo 'the books do not balance'
  pylonctl reports discrepancies
  pylonctl reports quarantine";

const DAILY_ABOUT: &str = "\
Takings per station and day (the station's local day): charges, energy in kWh, and
electricity, service and total revenue in yuan, of the settled charges that started in
[--from, --to). --from and --to take RFC 3339 (2024-05-01T00:00:00+08:00), a date
(2024-05-01, meaning midnight UTC) or Unix milliseconds; by default, all time.
--format csv prints the app service's CSV as it comes.

Examples:
  pylonctl reports daily
  pylonctl reports daily --from 2024-05-01T00:00:00+08:00 --to 2024-05-02T00:00:00+08:00
  pylonctl reports daily --from 2024-05-01 --format csv > may.csv
  pylonctl reports daily -o json | jq '[.[].revenue_fen] | add'";

const RECONCILIATION_ABOUT: &str = "\
Check the books: every transaction record settled, settlements and ledger agreeing on
electricity and service revenue, all books summing to zero, every wallet matching its
books. Also counts top-ups, refunds, open holds, discrepancies and quarantined records.
Exits with status 1 after printing when the books do not balance, so that it can run
from cron or a monitor. --format csv prints the app service's CSV as it comes.

Examples:
  pylonctl reports reconciliation
  pylonctl reports reconciliation --format csv
  pylonctl reports reconciliation -o json | jq .wallet_mismatches";

const DISCREPANCIES_ABOUT: &str = "\
List the transaction records whose amount, as the pile computed it, differs from the
platform's by more than the tolerance (amounts in yuan, four decimals as piles report
them). The platform's amount is what was charged.

Examples:
  pylonctl reports discrepancies
  pylonctl reports discrepancies --limit 1000 -o json";

const QUARANTINE_ABOUT: &str = "\
List the quarantined transaction records: records that reused a trade number with other
content. They are kept, and never settled.

Examples:
  pylonctl reports quarantine";

#[derive(Debug, Args)]
pub struct ReportsArgs {
    #[command(subcommand)]
    pub command: ReportsCommand,
    #[command(flatten)]
    pub connect: AppConnectOptions,
}

/// The other format a report comes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    /// The app service's CSV, printed as it comes.
    Csv,
}

#[derive(Debug, PartialEq, Eq, Subcommand)]
pub enum ReportsCommand {
    /// Takings per station and day.
    #[command(long_about = DAILY_ABOUT)]
    Daily {
        /// Charges that started at or after this time (RFC 3339, a date or Unix ms).
        #[arg(long, value_name = "TIME", value_parser = parse_time)]
        from: Option<i64>,
        /// Charges that started before this time (RFC 3339, a date or Unix ms).
        #[arg(long, value_name = "TIME", value_parser = parse_time)]
        to: Option<i64>,
        /// Print the app service's CSV instead of a table.
        #[arg(long, value_enum, value_name = "FORMAT")]
        format: Option<ReportFormat>,
    },
    /// Check records, settlements, ledger and wallets against each other.
    #[command(long_about = RECONCILIATION_ABOUT)]
    Reconciliation {
        /// Print the app service's CSV instead of a table.
        #[arg(long, value_enum, value_name = "FORMAT")]
        format: Option<ReportFormat>,
    },
    /// Records whose amount differs from the platform's.
    #[command(long_about = DISCREPANCIES_ABOUT)]
    Discrepancies {
        /// At most this many (1 to 10000).
        #[arg(long, value_name = "N", default_value_t = 100,
              value_parser = clap::value_parser!(u32).range(1..=10_000))]
        limit: u32,
    },
    /// Records kept aside: a trade number reused with other content.
    #[command(long_about = QUARANTINE_ABOUT)]
    Quarantine {
        /// At most this many (1 to 10000).
        #[arg(long, value_name = "N", default_value_t = 100,
              value_parser = clap::value_parser!(u32).range(1..=10_000))]
        limit: u32,
    },
}

/// `--format csv` and `-o json` ask for two things: refuse the pair.
fn check_format(format: Option<ReportFormat>, output: OutputFormat) -> Result<bool, Failure> {
    match (format, output) {
        (Some(ReportFormat::Csv), OutputFormat::Json) => Err(Failure::BadInput(
            "--format csv and -o json do not go together: choose one".into(),
        )),
        (Some(ReportFormat::Csv), OutputFormat::Table) => Ok(true),
        (None, _) => Ok(false),
    }
}

/// Whether the reconciliation CSV says the books do not balance (its `balanced` row).
fn csv_unbalanced(csv: &str) -> bool {
    csv.lines()
        .any(|line| line.trim().eq_ignore_ascii_case("balanced,false"))
}

/// The failure that makes an unbalanced reconciliation exit with status 1.
fn unbalanced() -> Failure {
    Failure::Other(anyhow::anyhow!(
        "the books do not balance (see the checks above); `pylonctl reports \
         discrepancies` and `pylonctl reports quarantine` list the records behind them"
    ))
}

/// Runs `pylonctl reports ...`.
pub fn run_reports(
    args: ReportsArgs,
    env: &dyn Fn(&str) -> Option<String>,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let explain = |e| explain_revenue(e, Subject::default());
    match args.command {
        ReportsCommand::Daily { from, to, format } => {
            let csv = check_format(format, args.connect.output)?;
            if let (Some(from), Some(to)) = (from, to) {
                if from >= to {
                    return Err(Failure::BadInput(
                        "--from must be before --to (--from is included, --to is not)".into(),
                    ));
                }
            }
            let ctx = AppCtx::new(&args.connect, env)?;
            let path = "/v1/reports/daily";
            let (from_text, to_text) = (from.map(|t| t.to_string()), to.map(|t| t.to_string()));
            let mut query: Vec<(&str, &str)> = Vec::new();
            if let Some(from) = &from_text {
                query.push(("from", from));
            }
            if let Some(to) = &to_text {
                query.push(("to", to));
            }
            if csv {
                query.push(("format", "csv"));
                let text = ctx
                    .client
                    .get_admin_text(path, &query, "text/csv")
                    .map_err(explain)?;
                out.write_all(text.as_bytes())?;
                return Ok(());
            }
            let reply: Value = ctx.client.get(path, &query).map_err(explain)?;
            ctx.emit(out, "GET", path, &reply, |d: &Vec<StationDay>| {
                render::daily(d)
            })
        }
        ReportsCommand::Reconciliation { format } => {
            let csv = check_format(format, args.connect.output)?;
            let ctx = AppCtx::new(&args.connect, env)?;
            let path = "/v1/reports/reconciliation";
            if csv {
                let text = ctx
                    .client
                    .get_admin_text(path, &[("format", "csv")], "text/csv")
                    .map_err(explain)?;
                out.write_all(text.as_bytes())?;
                return if csv_unbalanced(&text) {
                    Err(unbalanced())
                } else {
                    Ok(())
                };
            }
            let reply: Value = ctx.client.get(path, &[]).map_err(explain)?;
            let typed: Reconciliation = ctx.typed("GET", path, &reply)?;
            ctx.emit(out, "GET", path, &reply, render::reconciliation)?;
            if typed.balanced {
                Ok(())
            } else {
                Err(unbalanced())
            }
        }
        ReportsCommand::Discrepancies { limit } => {
            let ctx = AppCtx::new(&args.connect, env)?;
            let path = "/v1/discrepancies";
            let limit_text = limit.to_string();
            let reply: Value = ctx
                .client
                .get(path, &[("limit", &limit_text)])
                .map_err(explain)?;
            ctx.emit(out, "GET", path, &reply, |d: &Vec<Discrepancy>| {
                render::discrepancies(d, limit)
            })
        }
        ReportsCommand::Quarantine { limit } => {
            let ctx = AppCtx::new(&args.connect, env)?;
            let path = "/v1/quarantine";
            let limit_text = limit.to_string();
            let reply: Value = ctx
                .client
                .get(path, &[("limit", &limit_text)])
                .map_err(explain)?;
            ctx.emit(out, "GET", path, &reply, |q: &Vec<QuarantinedRecord>| {
                render::quarantine(q, limit)
            })
        }
    }
}

#[cfg(test)]
mod tests;
