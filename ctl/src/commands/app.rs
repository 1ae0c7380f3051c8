//! What the commands of the app service (`pylon-app`) share: where it is and how to print
//! ([`AppConnectOptions`]), what they run with ([`AppCtx`]), and what the errors of its
//! revenue side mean to an operator ([`explain_revenue`]).
//!
//! `piles`, `records` and `charge` ([`super::business`]) and `stations`, `tariffs`,
//! `accounts`, `reports` and `keys` (the revenue side) all talk to the app service's
//! operator API with the control plane's admin token; the requests and replies are
//! `pylon_proto::api::app`'s and `::revenue`'s types, and `--output json` prints the
//! replies unchanged.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use super::OutputFormat;
use crate::cli::Failure;
use crate::client::{Client, ClientError};
use crate::config::{self, Flags, Target};

/// Where the app service is, how to prove who you are, and how to print; every command of
/// the app service takes these, before or after its subcommand.
#[derive(Debug, Clone, Default, PartialEq, Eq, Args)]
#[command(next_help_heading = "Connection and output")]
pub struct AppConnectOptions {
    /// An app instance's HTTP address (its operator API) [env: PYLON_APP_ENDPOINT]
    ///
    /// Taken from, in order: this flag, PYLON_APP_ENDPOINT, `app_endpoint` in
    /// the config file; without any, the control plane's address (PYLON_ENDPOINT,
    /// `endpoint` in the config file, http://127.0.0.1:7400), which forwards each
    /// call to the instance that can answer it. Name one instance only to talk to
    /// it alone. An https:// URL (cluster TLS) also needs --ca.
    #[arg(long, global = true, value_name = "URL", verbatim_doc_comment)]
    pub app_endpoint: Option<String>,

    /// The admin token, sent as `Authorization: Bearer <TOKEN>` [env: PYLON_TOKEN]
    ///
    /// The control plane's admin token, which the app service shares. Taken
    /// from, in order: this flag, PYLON_TOKEN, `token` in the config file.
    /// Prefer the variable or the file: other users can see a flag in `ps`.
    #[arg(long, global = true, value_name = "TOKEN", verbatim_doc_comment)]
    pub token: Option<String>,

    /// The config file [env: PYLONCTL_CONFIG] [default: ~/.config/pylon/pylonctl.toml]
    ///
    /// TOML with the keys `endpoint`, `token`, `grpc_endpoint`, `app_endpoint`,
    /// `edge_admin`, `ca` (the cluster CA, for https), `cert` and `key`, e.g.
    ///     app_endpoint = "https://10.0.0.7:7510"
    ///     ca = "/etc/pylon/certs/ca.pem"
    ///     token = "..."
    /// The default is $XDG_CONFIG_HOME/pylon/pylonctl.toml, else
    /// ~/.config/pylon/pylonctl.toml, and need not exist; a file named by this
    /// flag or by PYLONCTL_CONFIG must.
    #[arg(long, global = true, value_name = "FILE", verbatim_doc_comment)]
    pub config: Option<PathBuf>,

    /// The cluster CA's certificate (PEM), for an https:// endpoint [env: PYLON_CA]
    ///
    /// With cluster TLS on (the services started with --cluster-ca,
    /// --cluster-cert and --cluster-key), the control plane and the app
    /// service serve HTTPS: give an https:// URL and the cluster CA's
    /// certificate, ca.pem from `pylonctl certs init`, which pylonctl checks
    /// the server's certificate against (with the URL's host name or IP
    /// address, which the certificate must carry). Only this CA is trusted,
    /// never the system's, and https needs it. The token says who you are; a
    /// client certificate (optional here) is shown only when PYLON_CERT and
    /// PYLON_KEY, or `cert` and `key` in the config file, name one. Taken from,
    /// in order: this flag, PYLON_CA, `ca` in the config file (a relative path
    /// there is taken from the config file's folder). Unused for http:// URLs.
    #[arg(long, global = true, value_name = "FILE", verbatim_doc_comment)]
    pub ca: Option<PathBuf>,

    /// How to print replies: `table` for people, `json` for scripts
    ///
    /// `json` prints the app service's reply as it is.
    #[arg(
        long,
        short = 'o',
        global = true,
        value_enum,
        default_value_t = OutputFormat::Table,
        value_name = "FORMAT",
        verbatim_doc_comment
    )]
    pub output: OutputFormat,
}

/// What every command of the app service runs with.
pub(crate) struct AppCtx {
    pub(crate) client: Client,
    pub(crate) output: OutputFormat,
}

impl AppCtx {
    pub(crate) fn new(
        connect: &AppConnectOptions,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, Failure> {
        let flags = Flags {
            token: connect.token.clone(),
            config: connect.config.clone(),
            app_endpoint: connect.app_endpoint.clone(),
            ca: connect.ca.clone(),
            // No --cert/--key flags here (a `--key` beside `piles keys` would be taken for
            // a pile's key): PYLON_CERT/PYLON_KEY or the config file give one.
            target: Target::App,
            ..Flags::default()
        };
        let settings = config::resolve(&flags, env)?;
        Ok(AppCtx {
            client: Client::app(
                &settings.app_endpoint,
                settings.token.clone(),
                settings.token_hint(),
            )
            .with_trust(settings.trust_for(&settings.app_endpoint)?),
            output: connect.output,
        })
    }

    /// The reply as `T`, for the tables and for the commands that use what they read.
    pub(crate) fn typed<T: DeserializeOwned>(
        &self,
        method: &'static str,
        path: &str,
        reply: &Value,
    ) -> Result<T, Failure> {
        T::deserialize(reply)
            .map_err(|e| Failure::from(self.client.bad_reply(method, path, e.to_string())))
    }

    /// Prints `reply` as it came (`-o json`) or, read as `T`, as `text(T)`.
    pub(crate) fn emit<T: DeserializeOwned>(
        &self,
        out: &mut dyn Write,
        method: &'static str,
        path: &str,
        reply: &Value,
        text: impl FnOnce(&T) -> String,
    ) -> Result<(), Failure> {
        match self.output {
            OutputFormat::Json => print_json(out, reply),
            OutputFormat::Table => {
                let typed: T = self.typed(method, path, reply)?;
                out.write_all(text(&typed).as_bytes())?;
                Ok(())
            }
        }
    }
}

pub(crate) fn print_json(out: &mut dyn Write, value: &impl Serialize) -> Result<(), Failure> {
    let json = serde_json::to_string_pretty(value)
        .map_err(|e| Failure::Other(anyhow::anyhow!("cannot print JSON: {e}")))?;
    writeln!(out, "{json}")?;
    Ok(())
}

/// What a revenue command was about, to explain the app service's errors in its terms.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Subject<'a> {
    pub(crate) station: Option<i64>,
    pub(crate) tariff: Option<i64>,
    pub(crate) account: Option<i64>,
    pub(crate) pile: Option<&'a str>,
}

/// The revenue side's errors, said so that an operator knows what to do next. Refused
/// input (HTTP 400, exit status 2), unknown codes and the errors every app command shares
/// keep their messages (see `business::explain`).
pub(crate) fn explain_revenue(e: ClientError, about: Subject<'_>) -> Failure {
    let message = e.message().unwrap_or_default().trim_end_matches('.');
    let text = match (e.code(), about) {
        (
            Some("no_such_station"),
            Subject {
                station: Some(s), ..
            },
        ) => format!(
            "there is no station {s}; `pylonctl stations list` lists the stations, `pylonctl \
             stations add --name NAME` adds one"
        ),
        (
            Some("no_such_tariff"),
            Subject {
                tariff: Some(t), ..
            },
        ) => format!(
            "there is no tariff {t}; `pylonctl tariffs list` lists the tariffs, `pylonctl \
             tariffs add` adds one"
        ),
        (
            Some("no_such_account"),
            Subject {
                account: Some(a), ..
            },
        ) => format!(
            "there is no account {a}; `pylonctl accounts list` lists the accounts, \
             `pylonctl accounts add --name NAME` adds one"
        ),
        (
            Some("no_such_card"),
            Subject {
                account: Some(a), ..
            },
        ) => format!("{message}; `pylonctl accounts show {a}` lists its cards (masked)"),
        (
            Some("no_such_vin"),
            Subject {
                account: Some(a), ..
            },
        ) => format!("{message}; `pylonctl accounts show {a}` lists its VINs (masked)"),
        (
            Some("no_such_pile_or_station"),
            Subject {
                station: Some(s),
                pile: Some(p),
                ..
            },
        ) => {
            format!(
                "{message}: `pylonctl piles show {p}` shows whether the pile is registered \
                 (`pylonctl piles add {p}` registers it), `pylonctl stations show {s}` the \
                 station"
            )
        }
        (
            Some("no_such_station_or_tariff"),
            Subject {
                station: Some(s),
                tariff: Some(t),
                ..
            },
        ) => {
            format!(
                "{message}: `pylonctl stations show {s}` and `pylonctl tariffs show {t}` show \
                 which one is missing"
            )
        }
        (Some("card_keys_missing"), _) => format!(
            "the app service cannot store or look up card numbers and VINs: it has no card \
             key file ({message}). Start pylon-app with --card-keys FILE"
        ),
        (
            Some("push_failed"),
            Subject {
                station: Some(s), ..
            },
        ) => format!(
            "the tariff was assigned to station {s}, but sending it to the station's piles \
             failed: {message}. Piles get their billing model again when they log in; \
             `pylonctl stations show {s}` shows the tariff in force"
        ),
        (
            Some("sync_failed"),
            Subject {
                station: Some(s), ..
            },
        ) => format!(
            "the app service could not send the offline cards of station {s}: {message}. \
             Check pylon-app's log, then try again (`pylonctl stations offline-cards {s}`)"
        ),
        (Some("key_file"), _) => format!(
            "the app service could not add a new key to its card key file: {message}. No \
             stored card number or VIN was sealed again. Check that pylon-app can read and \
             write the file it was started with (--card-keys), then run `pylonctl keys \
             rotate` again"
        ),
        (Some("conflict"), _) if !message.is_empty() => format!("{message} (conflict)"),
        _ => return super::business::explain(e, Default::default()),
    };
    Failure::Other(anyhow::anyhow!(text))
}

/// `failure` with every `secret` in its message replaced by `masked`: for commands whose
/// input must never be echoed (a card number or VIN the app service's message quotes). Secrets of four characters or fewer are left: their mask would
/// show them whole, and replacing them would garble the message.
pub(crate) fn redacted(failure: Failure, secret: &str, masked: &str) -> Failure {
    if secret.chars().count() <= 4 {
        return failure;
    }
    let clean = |text: String| text.replace(secret, masked);
    match failure {
        Failure::BadInput(m) => Failure::BadInput(clean(m)),
        Failure::Unreachable(m) => Failure::Unreachable(clean(m)),
        Failure::Other(e) => Failure::Other(anyhow::anyhow!(clean(format!("{e:#}")))),
    }
}

/// A secret as it may be shown: its first four characters and `****`, as the app service
/// masks card numbers.
pub fn mask(secret: &str) -> String {
    let shown: String = secret.chars().take(4).collect();
    format!("{shown}****")
}

/// Text an operator must give (a name, a reason): not blank; trimmed.
pub fn parse_text(text: &str) -> Result<String, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("it is empty: give some text".into());
    }
    Ok(t.to_owned())
}
