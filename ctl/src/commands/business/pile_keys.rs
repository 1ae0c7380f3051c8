//! `pylonctl piles keys show|set|rotate|remove`: a pile's 3DES key for the YKC protocol's
//! body encryption (encryption flag 0x01), through the app service's operator API
//! (`/v1/piles/{pile}/cipher`; `pylon_proto::api::app::{PileCipherState, CipherRotate}`
//! and `pylon_proto::ykc::PileCipher`).
//!
//! A key never comes from a flag's value, which other users can read in `ps` and shells
//! keep in their history: `set` asks for it at the terminal without echo, or reads the
//! first line of stdin (`--key-stdin`), and checks it before anything is sent. Nothing
//! here prints a key but `rotate`, which must show the new one, once.

use std::io::{self, Write};

use clap::{Subcommand, ValueEnum};
use pylon_proto::api::app::CipherRotate;
use pylon_proto::ykc::cipher::{Mode, Padding};
use pylon_proto::ykc::PileCipher;
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::Value;

use super::{explain, About, AppConnectOptions};
use crate::cli::Failure;
use crate::client::{path_segment, ClientError};
use crate::commands::app::{print_json, redacted, AppCtx};
use crate::commands::identity::password::{Console, MAX_LINE};
use crate::commands::{parse_pile, OutputFormat};
use crate::render::pile_keys as render;

/// Hex digits in a key: 24 bytes, three DES keys.
const KEY_DIGITS: usize = 48;

pub const KEYS_ABOUT: &str = "\
Give a pile the 3DES key its charger encrypts frames with, have the platform make a new
one (rotate), remove it, and see how a pile is set up.

The YKC V1.6 protocol lets a charger encrypt the body of its frames (encryption flag
0x01) with 3DES, under a key set up out of band, one per pile: the same key is loaded
into the charger (with the vendor's tool or menu) and given to the platform here. The
login frame and its answer stay plain; every frame after them is encrypted, both ways. A
pile with a key must encrypt: plain frames from it, or frames that do not decrypt with
its key, end its connection. A pile without one must not encrypt.

The spec names 3DES and nothing more: neither the block mode nor the padding. So both
are set per pile, to match the charger: ECB (each 8-byte block on its own) or CBC
(blocks chained from an 8-byte IV that charger and platform share); PKCS#7 padding or
zero padding. The default is ECB with PKCS#7, what most chargers do; the charger's
manual or vendor says which it uses.

The key is 24 bytes (three DES keys, K1 K2 K3), written as 48 hex digits. A change
applies from the pile's next login: a connection open now keeps the setting it logged in
with. The app service stores each key sealed with its card keys (pylon-app --card-keys;
`pylonctl keys` rotates those, not these) and never shows a key: only `rotate` prints
the new key it makes, once.

Roles: `show` needs a token that may read (any role); `set`, `rotate` and `remove` need
the admin role. Talks to the app service (--app-endpoint).

Examples:
  pylonctl piles keys show 32010200000001
  pylonctl piles keys set 32010200000001
  pylonctl piles keys set 32010200000001 --key-stdin < pile-32010200000001.key
  pylonctl piles keys rotate 32010200000001
  pylonctl piles keys remove 32010200000001";

const SHOW_ABOUT: &str = "\
Show whether a pile encrypts its frames, and how: whether a key is configured, the block
mode (ECB or CBC), the padding (PKCS#7 or zero), the IV (CBC only) and when the setting
last changed (UTC). The key itself is never shown: the app service keeps it sealed and
does not give it out.

Needs a token that may read (any role).

Examples:
  pylonctl piles keys show 32010200000001
  pylonctl piles keys show 32010200000001 -o json";

const SET_ABOUT: &str = "\
Give a pile the 3DES key its charger was set up with, replacing any key it had, with the
block mode and padding the charger uses. The YKC spec names 3DES without saying which
mode or padding: check the charger's manual or ask its vendor. The default, ECB with
PKCS#7 padding, is what most chargers do. With --mode cbc, give the IV the charger uses
with --iv (16 hex digits; --iv 0000000000000000 if it uses zeros). Every setting is
replaced: one not given takes its default, not the pile's current value.

The key is 48 hex digits (24 bytes: K1 K2 K3, with no spaces). A two-key 3DES key of 16
bytes (K1 K2) is given as K1 K2 K1: its first 16 hex digits again at the end. The key is
never taken from a flag, which other users can see in `ps` and shells keep in their
history: at a terminal pylonctl asks for it, twice, without echo; otherwise give it as
the first line of stdin with --key-stdin. pylonctl checks the key and the IV before it
sends anything.

The key applies from the pile's next login: from then on the pile must encrypt its
frames with it. To have the platform make a new random key instead, use `pylonctl piles
keys rotate`. With -o json nothing is printed (the app service's reply has no body).

Needs the admin role.

Examples:
  pylonctl piles keys set 32010200000001
  pylonctl piles keys set 32010200000001 --key-stdin < pile-32010200000001.key
  pylonctl piles keys set 32010200000001 --mode cbc --iv 0001020304050607 --padding zero \\
      --key-stdin < pile-32010200000001.key";

const ROTATE_ABOUT: &str = "\
Have the app service make a new random 3DES key for a pile, replacing any key it had,
and print it, this once: neither pylonctl nor the app service can show it again. Load it
into the charger, with the mode, padding and IV printed beside it, before the pile's next
login: the new key applies from that login on, and a charger still on the old key cannot
talk to the platform after it. A connection open now keeps the old key until the pile
reconnects.

--mode, --padding and --iv default to the pile's current settings, else ECB with PKCS#7
padding and a zero IV (the YKC spec names 3DES without mode or padding; ECB with PKCS#7
is what most chargers do). With -o json the app service's reply is printed as it came:
{\"key\": \"<48 hex digits>\", \"mode\": \"ecb\"|\"cbc\", \"iv\": \"<16 hex digits>\",
\"padding\": \"pkcs7\"|\"zero\"}. Keep the output out of logs, tickets and shared
terminals.

Needs the admin role.

Examples:
  pylonctl piles keys rotate 32010200000001
  pylonctl piles keys rotate 32010200000001 --mode cbc --iv 0001020304050607
  (umask 077; pylonctl piles keys rotate 32010200000001 -o json > pile-32010200000001.json)";

const REMOVE_ABOUT: &str = "\
Remove a pile's key: from its next login the pile must send its frames in plain
(encryption flag 0x00), and encrypted frames from it are refused, so turn encryption off
in the charger as well. A connection open now keeps its key until the pile reconnects.
Removing the key of a pile that has none changes nothing. With -o json nothing is
printed (the app service's reply has no body).

Needs the admin role.

Examples:
  pylonctl piles keys remove 32010200000001";

/// The block modes, as the command line names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    /// Electronic codebook: each 8-byte block on its own, no IV (the default)
    Ecb,
    /// Cipher block chaining, from an IV the charger and the platform share (--iv)
    Cbc,
}

impl From<ModeArg> for Mode {
    fn from(m: ModeArg) -> Self {
        match m {
            ModeArg::Ecb => Mode::Ecb,
            ModeArg::Cbc => Mode::Cbc,
        }
    }
}

/// The paddings, as the command line names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PaddingArg {
    /// 1 to 8 bytes, each holding how many were added (the default)
    Pkcs7,
    /// 0x00 bytes up to a whole block, none when the body is one already
    Zero,
}

impl From<PaddingArg> for Padding {
    fn from(p: PaddingArg) -> Self {
        match p {
            PaddingArg::Pkcs7 => Padding::Pkcs7,
            PaddingArg::Zero => Padding::Zero,
        }
    }
}

#[derive(Debug, PartialEq, Eq, Subcommand)]
pub enum PileKeysCommand {
    /// Show whether a pile encrypts, and its mode, padding and IV (never the key).
    #[command(long_about = SHOW_ABOUT)]
    Show {
        /// The pile number: 14 digits, e.g. 32010200000001.
        pile: String,
    },
    /// Give a pile the key its charger uses, read from the terminal or stdin (admin).
    #[command(long_about = SET_ABOUT)]
    Set {
        /// The pile number: 14 digits, e.g. 32010200000001.
        pile: String,
        /// The block mode the charger uses [default: ecb]
        #[arg(long, value_enum, value_name = "MODE")]
        mode: Option<ModeArg>,
        /// CBC's IV, as the charger has it: 16 hex digits (8 bytes); needed with --mode cbc
        #[arg(long, value_name = "HEX16", value_parser = parse_iv)]
        iv: Option<[u8; 8]>,
        /// The padding the charger uses [default: pkcs7]
        #[arg(long, value_enum, value_name = "PADDING")]
        padding: Option<PaddingArg>,
        /// Read the key (48 hex digits) from the first line of stdin, for scripts
        ///
        /// At a terminal pylonctl asks for the key without echo, with or without this
        /// flag; without a terminal the key must come this way. Never give the key as an
        /// argument.
        #[arg(long, verbatim_doc_comment)]
        key_stdin: bool,
    },
    /// Make a new random key for a pile and print it, once (admin).
    #[command(long_about = ROTATE_ABOUT)]
    Rotate {
        /// The pile number: 14 digits, e.g. 32010200000001.
        pile: String,
        /// The block mode [default: the pile's current one, else ecb]
        #[arg(long, value_enum, value_name = "MODE")]
        mode: Option<ModeArg>,
        /// CBC's IV: 16 hex digits (8 bytes) [default: the pile's current one, else zeros]
        #[arg(long, value_name = "HEX16", value_parser = parse_iv)]
        iv: Option<[u8; 8]>,
        /// The padding [default: the pile's current one, else pkcs7]
        #[arg(long, value_enum, value_name = "PADDING")]
        padding: Option<PaddingArg>,
    },
    /// Remove a pile's key: it must send plain frames from its next login (admin).
    #[command(long_about = REMOVE_ABOUT)]
    Remove {
        /// The pile number: 14 digits, e.g. 32010200000001.
        pile: String,
    },
}

/// An IV as given to --iv: 16 hex digits.
pub fn parse_iv(text: &str) -> Result<[u8; 8], String> {
    let t = text.trim();
    let bytes = hex::decode(t)
        .ok()
        .and_then(|b| <[u8; 8]>::try_from(b).ok());
    bytes.ok_or_else(|| {
        let why = if !t.chars().all(|c| c.is_ascii_hexdigit()) {
            "it is not all hex digits (0-9, a-f)".to_owned()
        } else {
            format!("it has {} digits", t.len())
        };
        format!("{why}; an IV is 16 hex digits (8 bytes), e.g. 0001020304050607")
    })
}

/// A 3DES key as the operator gives it: 48 hex digits (24 bytes), surrounding blanks
/// ignored. The errors never quote the key, not even in part.
pub fn parse_key(text: &str) -> Result<[u8; 24], Failure> {
    let t = text.trim();
    let bad = |why: String| {
        Failure::BadInput(format!(
            "that is not a 3DES key: {why}. A key is {KEY_DIGITS} hex digits (24 bytes, K1 K2 \
             K3) with no spaces. Nothing was sent"
        ))
    };
    if t.is_empty() {
        return Err(bad("it is empty".into()));
    }
    if let Some(at) = t.chars().position(|c| !c.is_ascii_hexdigit()) {
        return Err(bad(format!(
            "character {} of it is not a hex digit (0-9, a-f)",
            at + 1
        )));
    }
    if t.len() != KEY_DIGITS {
        let mut why = format!("it has {} hex digits", t.len());
        if t.len() == 32 {
            why.push_str(
                ", a two-key 3DES key (K1 K2), which is given as K1 K2 K1: its first 16 \
                 digits again at the end",
            );
        }
        return Err(bad(why));
    }
    let mut key = [0u8; 24];
    hex::decode_to_slice(t, &mut key).map_err(|e| bad(e.to_string()))?;
    Ok(key)
}

/// The key for `piles keys set`: typed at the terminal, twice and without echo, when
/// stdin is one; else the first line of stdin when `from_stdin` (`--key-stdin`); refused
/// otherwise. Checked before it is returned.
pub fn read_key(
    console: &mut dyn Console,
    from_stdin: bool,
    pile: &str,
) -> Result<[u8; 24], Failure> {
    if console.stdin_is_terminal() {
        let prompt = format!("3DES key for pile {pile} ({KEY_DIGITS} hex digits, not shown): ");
        let key = parse_key(&ask(console, &prompt)?)?;
        let again = ask(console, "Type it again: ")?;
        if parse_key(&again).ok() != Some(key) {
            return Err(Failure::BadInput(
                "the two keys typed differ: nothing was sent; try again".into(),
            ));
        }
        return Ok(key);
    }
    if !from_stdin {
        return Err(Failure::BadInput(format!(
            "no key: stdin is not a terminal, so pylonctl cannot ask for it. Give it as the \
             first line of stdin with --key-stdin, e.g.\n  pylonctl piles keys set {pile} \
             --key-stdin < pile-{pile}.key"
        )));
    }
    let line = console
        .read_stdin_line(MAX_LINE)
        .map_err(|e| match e.kind() {
            io::ErrorKind::InvalidData => {
                Failure::BadInput("--key-stdin: the first line of stdin is not UTF-8".into())
            }
            _ => Failure::Other(anyhow::anyhow!("cannot read the key from stdin: {e}")),
        })?;
    if line.is_empty() {
        return Err(Failure::BadInput(format!(
            "--key-stdin: stdin is empty; give the key ({KEY_DIGITS} hex digits) as its first \
             line"
        )));
    }
    let key = line.strip_suffix('\n').unwrap_or(&line);
    parse_key(key.strip_suffix('\r').unwrap_or(key))
}

fn ask(console: &mut dyn Console, prompt: &str) -> Result<String, Failure> {
    console.prompt_password(prompt).map_err(|e| {
        Failure::Other(anyhow::anyhow!(
            "cannot read the key from the terminal: {e}"
        ))
    })
}

/// --iv is CBC's: refused with ECB given, where it would mean nothing.
fn check_iv(mode: Option<ModeArg>, iv: Option<[u8; 8]>, set: bool) -> Result<(), Failure> {
    match (mode, iv) {
        (Some(ModeArg::Ecb), Some(_)) => Err(Failure::BadInput(
            "--iv is for --mode cbc: ECB uses no IV. Drop --iv, or give --mode cbc".into(),
        )),
        (None, Some(_)) if set => Err(Failure::BadInput(
            "--iv is for --mode cbc, and the mode is ECB unless --mode cbc is given: add \
             --mode cbc, or drop --iv"
                .into(),
        )),
        (Some(ModeArg::Cbc), None) if set => Err(Failure::BadInput(
            "--mode cbc needs the IV the charger uses: give --iv with 16 hex digits (--iv \
             0000000000000000 if it uses zeros)"
                .into(),
        )),
        _ => Ok(()),
    }
}

/// What an admin-only change is refused for, and the errors of keys, explained; the rest
/// as for any command about the pile (`business::explain`).
fn explain_keys(e: ClientError, pile: &str, change: bool) -> Failure {
    let message = e.message().unwrap_or_default().trim_end_matches('.');
    let text = match (e.code(), e.status()) {
        (Some("card_keys_missing"), _) => format!(
            "the app service cannot store pile keys: it seals them with its card keys, and \
             was started without a card key file ({message}). Start pylon-app with \
             --card-keys FILE (the same file on every app instance). Nothing was changed"
        ),
        (Some("cipher_unreadable"), _) => format!(
            "the app service holds a key for pile {pile} but cannot open it ({message}): the \
             card key file it runs with (--card-keys) may not be the one the key was sealed \
             with. Start pylon-app with that file, or give the pile a key again (`pylonctl \
             piles keys set {pile}` or `pylonctl piles keys rotate {pile}`)"
        ),
        (Some("forbidden"), _) if change => format!(
            "{e}\nSetting, rotating and removing a pile's key needs a token with the admin \
             role (`pylonctl whoami` shows the role of yours); `pylonctl piles keys show` \
             needs only read"
        ),
        (None, Some(404)) => format!(
            "{e}\nIf --app-endpoint is right, the app service may be a version without pile \
             keys: upgrade pylon-app"
        ),
        _ => {
            let about = About {
                pile: Some(pile),
                ..About::default()
            };
            return explain(e, about);
        }
    };
    Failure::Other(anyhow::anyhow!(text))
}

/// Runs `pylonctl piles keys ...`.
pub fn run(
    cmd: PileKeysCommand,
    connect: &AppConnectOptions,
    env: &dyn Fn(&str) -> Option<String>,
    console: &mut dyn Console,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let path = |pile: &str| format!("/v1/piles/{}/cipher", path_segment(pile));
    match cmd {
        PileKeysCommand::Show { pile } => {
            let pile = parse_pile(&pile)?;
            let ctx = AppCtx::new(connect, env)?;
            let path = path(&pile);
            let reply: Value = ctx
                .client
                .get(&path, &[])
                .map_err(|e| explain_keys(e, &pile, false))?;
            ctx.emit(out, "GET", &path, &reply, render::state)
        }
        PileKeysCommand::Set {
            pile,
            mode,
            iv,
            padding,
            key_stdin,
        } => {
            let pile = parse_pile(&pile)?;
            check_iv(mode, iv, true)?;
            // The connection settings first: a bad one is told before the key is asked for.
            let ctx = AppCtx::new(connect, env)?;
            let key = read_key(console, key_stdin, &pile)?;
            let cipher = PileCipher {
                key,
                mode: mode.unwrap_or(ModeArg::Ecb).into(),
                iv: iv.unwrap_or_default(),
                padding: padding.unwrap_or(PaddingArg::Pkcs7).into(),
            };
            let path = path(&pile);
            let _: Option<IgnoredAny> =
                ctx.client.put_json_optional(&path, &cipher).map_err(|e| {
                    redacted(explain_keys(e, &pile, true), &hex::encode(key), "<the key>")
                })?;
            // The reply has no body: JSON output prints nothing.
            if ctx.output == OutputFormat::Table {
                out.write_all(render::set(&pile, &cipher).as_bytes())?;
            }
            Ok(())
        }
        PileKeysCommand::Rotate {
            pile,
            mode,
            iv,
            padding,
        } => {
            let pile = parse_pile(&pile)?;
            check_iv(mode, iv, false)?;
            let ctx = AppCtx::new(connect, env)?;
            let body = CipherRotate {
                mode: mode.map(Into::into),
                padding: padding.map(Into::into),
                iv: iv.map(hex::encode),
            };
            let path = format!("{}/rotate", path(&pile));
            let reply: Value = ctx
                .client
                .post_json(&path, &body)
                .map_err(|e| explain_keys(e, &pile, true))?;
            match ctx.output {
                OutputFormat::Json => print_json(out, &reply),
                OutputFormat::Table => match PileCipher::deserialize(&reply) {
                    Ok(cipher) => {
                        out.write_all(render::rotated(&pile, &cipher).as_bytes())?;
                        Ok(())
                    }
                    // The new key is in force and shown only now: print the reply as it
                    // came rather than lose it.
                    Err(e) => {
                        print_json(out, &reply)?;
                        Err(Failure::from(ctx.client.bad_reply(
                            "POST",
                            &path,
                            format!(
                                "{e}; the reply is printed above as it came: it holds the \
                                 pile's new key, which will not be shown again"
                            ),
                        )))
                    }
                },
            }
        }
        PileKeysCommand::Remove { pile } => {
            let pile = parse_pile(&pile)?;
            let ctx = AppCtx::new(connect, env)?;
            let path = path(&pile);
            let _: Option<IgnoredAny> = ctx
                .client
                .delete_optional(&path)
                .map_err(|e| explain_keys(e, &pile, true))?;
            // The reply has no body: JSON output prints nothing.
            if ctx.output == OutputFormat::Table {
                out.write_all(render::removed(&pile).as_bytes())?;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests;
