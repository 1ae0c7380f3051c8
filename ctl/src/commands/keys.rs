//! `pylonctl keys rotate`: the app service's card keys, which seal card numbers and VINs
//! at rest, through its operator API (`pylon_proto::api::revenue`).

use std::io::Write;

use clap::{Args, Subcommand};
use pylon_proto::api::revenue::KeyRotation;
use serde_json::Value;

use super::app::{explain_revenue, AppConnectOptions, AppCtx, Subject};
use crate::cli::Failure;
use crate::client::ClientError;
use crate::render::keys as render;

pub const KEYS_ABOUT: &str = "\
Manage the app service's card keys: the key file (pylon-app --card-keys) whose
AES-256-GCM keys seal the physical and logical card numbers and the VINs it stores, and
whose index key makes the keyed hashes they are looked up by. pylonctl never sees the
keys. Talks to the app service (--app-endpoint).

Examples:
  pylonctl keys rotate";

const ROTATE_ABOUT: &str = "\
Rotate the card keys. pylon-app adds a new AES-256-GCM key to its card key file
(--card-keys), makes it the current key, and seals every stored physical card number,
logical card number and VIN again under it; what is stored from then on is sealed with it
too. It prints the new key's id and how many stored cards and VINs were sealed again.

What does not change: the index key, which makes the keyed hashes that cards and VINs are
looked up by, never rotates, so cards and VINs keep working at the piles throughout and
nothing needs to be entered again. The old keys stay in the file, so that database
backups taken before the rotation still open; never delete them while such a backup may
be restored.

When to rotate: when a sealing key may have leaked (a copy of the key file, or of a
backup of it, got where it should not), when someone who could read the key file leaves,
or as your security policy says (e.g. once a year). A database copied after the rotation
cannot be opened with the old keys alone.

Afterwards, back up the key file at once and keep it apart from the database's backups:
it holds the new key, without which the stored card numbers and VINs cannot be opened. With several app instances, run it against one, then give the others
the updated key file and restart them: each reads the file at start, and until then they
cannot open values sealed under the new key.

Examples:
  pylonctl keys rotate
  pylonctl keys rotate --app-endpoint http://10.0.0.7:7510 -o json";

#[derive(Debug, Args)]
pub struct KeysArgs {
    #[command(subcommand)]
    pub command: KeysCommand,
    #[command(flatten)]
    pub connect: AppConnectOptions,
}

#[derive(Debug, PartialEq, Eq, Subcommand)]
pub enum KeysCommand {
    /// Add a new card key and seal every stored card number and VIN again under it.
    #[command(long_about = ROTATE_ABOUT)]
    Rotate,
}

/// Runs `pylonctl keys ...`.
pub fn run_keys(
    args: KeysArgs,
    env: &dyn Fn(&str) -> Option<String>,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    match args.command {
        KeysCommand::Rotate => {
            let ctx = AppCtx::new(&args.connect, env)?;
            let path = "/v1/card-keys/rotate";
            let reply: Value = ctx.client.post(path).map_err(explain_rotation)?;
            ctx.emit(out, "POST", path, &reply, |r: &KeyRotation| {
                render::rotated(r)
            })
        }
    }
}

/// The errors of a rotation, explained. The store is only used after the new key was
/// added, so its errors mean a rotation half done.
fn explain_rotation(e: ClientError) -> Failure {
    if let Some(code @ ("store_error" | "store_unavailable")) = e.code() {
        let message = e.message().unwrap_or_default().trim_end_matches('.');
        return Failure::Other(anyhow::anyhow!(
            "a new key was added to the card key file and is current (new values are sealed \
             with it), but sealing the stored card numbers and VINs again failed: {message} \
             ({code}). They still open with their old keys, which stay in the file. Back up \
             the key file now, and run `pylonctl keys rotate` again once the store works \
             (check pylon-app's log and its store)"
        ));
    }
    explain_revenue(e, Subject::default())
}

#[cfg(test)]
mod tests;
