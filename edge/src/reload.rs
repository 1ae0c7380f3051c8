//! What SIGHUP changes on a running edge (the mechanism is `pylon_service::reload`): the
//! limits, the login policy (allowlist, allow-all, TLS-only piles), the chargers' TLS
//! certificates, keys, client CA and versions, and the log filter.
//!
//! Sessions already open go on: new limits apply to the deadlines and checks made from then
//! on, a new certificate to new handshakes. Files named by the settings (allowlist,
//! certificates) are read again on every reload, changed names or not. Everything is read
//! and checked before anything is swapped, so a bad file changes nothing.

use std::collections::HashSet;
use std::sync::Arc;

use anyhow::Context;
use pylon_proto::ykc::PileNo;
use rustls::ServerConfig;

use crate::allowlist::LoginPolicy;
use crate::config::{Config, Limits};
use crate::executor::{EdgeShared, ExecutorCommand, ExecutorHandle};

/// Settings keys a reload applies; every other key needs a restart.
pub const LIVE_KEYS: &[&str] = &[
    "log",
    "limits",
    "auth.allowlist",
    "auth.allow_all",
    "auth.tls_only",
    "tls",
];

/// The part of the configuration a reload swaps whole; executors read it at each use
/// (limits: at each reload, see `Executor::refresh_settings`).
pub struct LiveSettings {
    pub limits: Limits,
    pub policy: LoginPolicy,
    /// Piles that may log in over TLS only.
    pub tls_only: HashSet<PileNo>,
    /// The chargers' TLS, when the edge listens for it.
    pub tls: Option<Arc<ServerConfig>>,
    /// TLS chargers must show a certificate of the client CA that names their pile.
    pub client_certs: bool,
    /// The earliest expiry of the certificates chargers are shown (0: none, or unreadable).
    pub cert_not_after: i64,
}

impl LiveSettings {
    /// Reads every file `config` names. With `previous`, the TLS ticket key and session
    /// cache carry over, so chargers resume their sessions across a reload.
    pub fn load(config: &Config, previous: Option<&ServerConfig>) -> anyhow::Result<Self> {
        // With app logins, the app service's pile registry decides; the local policy is unused.
        let policy = if config.auth.allow_all || config.auth.app_login {
            LoginPolicy::AllowAll
        } else {
            let path = config
                .auth
                .allowlist
                .as_ref()
                .context("no allowlist configured")?;
            LoginPolicy::from_file(path)?
        };
        let tls_only = match &config.auth.tls_only {
            Some(path) => LoginPolicy::piles_from_file(path)?,
            None => HashSet::new(),
        };
        let tls = match config.tls_listen {
            Some(_) => Some(crate::tls::server_config(&config.tls, previous)?),
            None => None,
        };
        Ok(LiveSettings {
            limits: config.limits,
            policy,
            tls_only,
            tls,
            client_certs: config.tls.client_ca.is_some(),
            cert_not_after: cert_not_after(&config.tls.certs),
        })
    }
}

/// The earliest expiry of the certificates in `paths` (0: none, or unreadable).
fn cert_not_after(paths: &[std::path::PathBuf]) -> i64 {
    paths
        .iter()
        .filter_map(|p| pylon_service::tls::read_pem_certs(p).ok())
        .filter_map(|chain| chain.first().map(pylon_service::tls::not_after))
        .filter(|t| *t > 0)
        .min()
        .unwrap_or(0)
}

/// Swaps in the live part of `config` (the settings read again on SIGHUP) and tells the
/// executors; returns what was read again, for the log.
pub fn apply(
    config: &Config,
    shared: &EdgeShared,
    executors: &ExecutorHandle,
) -> anyhow::Result<Vec<String>> {
    let previous = shared.live.load();
    let live = LiveSettings::load(config, previous.tls.as_deref())?;
    let mut notes = pylon_service::reload::apply_log_filter(config.log.as_deref())?;
    shared.live.store(Arc::new(live));
    executors.broadcast(|| ExecutorCommand::Reload);
    if config.auth.allowlist.is_some() && !config.auth.allow_all && !config.auth.app_login {
        notes.push("allowlist (read again)".into());
    }
    if config.tls_listen.is_some() {
        notes.push("TLS certificates (read again)".into());
    }
    Ok(notes)
}
