//! `pylonctl audit list|verify`: the control plane's hash-chained audit log of operator
//! actions ([`pylon_proto::api::audit`]).

use std::io::Write;

use clap::{Args, Subcommand};
use pylon_proto::api::audit::{AuditCheck, AuditEntry};

use super::{ConnectOptions, Ctx};
use crate::cli::Failure;
use crate::render::audit as render;

pub const AUDIT_ABOUT: &str = "\
Read and check the audit log: every change an operator made on any service (the control
plane, app instances, edges), with who made it, with which role and token, from where,
and what it changed. The control plane keeps it as a hash chain: each entry's hash covers
its content and the entry before, so an entry removed, edited or reordered breaks the
chain from there on. Needs a token with the admin role.

Examples:
  pylonctl audit list
  pylonctl audit list --after 1200 --limit 50
  pylonctl audit list -o json | jq '.[] | select(.actor == \"ana\")'
  pylonctl audit verify";

const AUDIT_LIST_ABOUT: &str = "\
List audit entries, oldest first: sequence number, time (UTC), who (actor and role),
which service, what was done (action) to what (target), and from which address (source).
The table leaves out the content before and after the change and the hashes: -o json
prints the entries whole. Needs the admin role.

Examples:
  pylonctl audit list
  pylonctl audit list --after 1200
  pylonctl audit list --limit 10000 -o json > audit.json";

const AUDIT_VERIFY_ABOUT: &str = "\
Check the whole audit log's hash chain, on the control plane: each entry must match its
hash and link to the one before. Prints `intact`, or at which entry the chain breaks and
why, and the head hash (the newest entry's that verifies). Keep the head hash somewhere
else from time to time: a log rewritten from its first entry on would verify too, but
end in another hash.

Exits with status 1 after printing when the chain is broken, so that it can run from
cron or a monitor. Needs the admin role.

Examples:
  pylonctl audit verify
  pylonctl audit verify -o json | jq -r .head_hash
  pylonctl audit verify || echo 'the audit log was tampered with'";

#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub command: AuditCommand,
    #[command(flatten)]
    pub connect: ConnectOptions,
}

#[derive(Debug, PartialEq, Eq, Subcommand)]
pub enum AuditCommand {
    /// List audit entries, oldest first (needs admin).
    #[command(long_about = AUDIT_LIST_ABOUT)]
    List {
        /// Only entries after this sequence number (the SEQ column) [default: from the first].
        #[arg(long, value_name = "SEQ")]
        after: Option<u64>,
        /// At most this many (1 to 10000).
        #[arg(long, value_name = "N", default_value_t = 100,
              value_parser = clap::value_parser!(u32).range(1..=10_000))]
        limit: u32,
    },
    /// Check the audit log's hash chain; exit status 1 when it is broken (needs admin).
    #[command(long_about = AUDIT_VERIFY_ABOUT)]
    Verify,
}

/// Runs `pylonctl audit ...`.
pub fn run_audit(
    args: AuditArgs,
    env: &dyn Fn(&str) -> Option<String>,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let ctx = Ctx::new(&args.connect, None, env)?;
    match args.command {
        AuditCommand::List { after, limit } => {
            let (after_text, limit_text) = (after.map(|a| a.to_string()), limit.to_string());
            let mut query = Vec::new();
            if let Some(after) = &after_text {
                query.push(("after", after.as_str()));
            }
            query.push(("limit", limit_text.as_str()));
            let entries: Vec<AuditEntry> = ctx.client.get("/v1/admin/audit", &query)?;
            ctx.emit(out, &entries, |e| render::entries(e, after, limit))
        }
        AuditCommand::Verify => {
            let check: AuditCheck = ctx.client.get("/v1/admin/audit/verify", &[])?;
            ctx.emit(out, &check, render::check)?;
            if check.intact {
                Ok(())
            } else {
                Err(broken(&check))
            }
        }
    }
}

/// The failure that makes a broken chain exit with status 1.
fn broken(check: &AuditCheck) -> Failure {
    let at = check
        .broken_at
        .map_or_else(|| "an unknown entry".into(), |n| format!("entry {n}"));
    let why = check
        .problem
        .as_deref()
        .map(|p| format!(": {p}"))
        .unwrap_or_default();
    Failure::Other(anyhow::anyhow!(
        "the audit log's hash chain is broken at {at}{why}"
    ))
}

#[cfg(test)]
mod tests;
