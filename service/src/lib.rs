//! What every long-running Pylon process (edge, control plane, app service, balancer) does
//! alike, written once:
//!
//! - [`signals`]: the first SIGTERM or SIGINT drains, the second stops at once.
//! - [`control_link`]: reaching the control plane: channel settings (keep-alive) and the
//!   retry policy (exponential backoff with jitter).
//! - [`config`]: TOML settings files, with errors that name the file and line.
//! - [`http`]: the one error body of every HTTP API; [`errors`]: errors as text.
//! - [`audit`]: recording operator actions in the cluster's audit log.
//! - [`auth`] and [`routes`]: who is calling (tokens, the session cookie) and the
//!   permission each HTTP route declares.
//! - [`redact`]: secrets and card data kept out of logs and the audit log.
//! - [`health`]: `/metrics`, `/healthz`, `/readyz`.
//! - [`process`]: a tokio service's runtime until the first signal, and its exit status.
//! - [`tls`]: TLS between Pylon's services (the cluster CA), reloaded when files change.
//! - `postgres` (feature `postgres`): PostgreSQL links, local or TLS to a given CA.
//! - [`logging`]: `tracing` set up from `--log` / `RUST_LOG` / the settings file, as text
//!   or JSON (`--log-format json`).
//! - [`reload`]: SIGHUP reads the settings file again and applies what can change live.

pub mod audit;
pub mod auth;
pub mod config;
pub mod control_link;
pub mod errors;
pub mod health;
pub mod http;
pub mod logging;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod process;
pub mod redact;
pub mod reload;
pub mod routes;
pub mod signals;
pub mod tls;
