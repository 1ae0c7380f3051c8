//! Logging set-up shared by every process: a level filter and text or JSON lines on stdout.
//!
//! The filter comes from, first to last: `RUST_LOG`, `--log`, the settings file's `log`
//! key, else `info`. Only the file's key changes while running: a reload (SIGHUP, see
//! [`crate::reload`]) passes it to [`use_file_filter`].

use std::sync::OnceLock;

use clap::{Args, ValueEnum};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

/// How log lines look.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line (for Loki, ELK and the like).
    Json,
}

/// The logging flags, flattened into each process's command line.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Logging")]
pub struct LogArgs {
    /// Log filter, e.g. `info` or `pylon_edge=debug,info` [default: the settings file's
    /// `log` key, else info]. RUST_LOG, when set, wins. Set the level in the file rather
    /// than here to change it on SIGHUP without a restart.
    #[arg(long, value_name = "FILTER")]
    pub log: Option<String>,
    /// Log line format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, value_name = "FORMAT")]
    pub log_format: LogFormat,
}

/// What [`LogArgs::init`] installed: the handle that swaps the filter, and the sources
/// that outrank the settings file.
struct Installed {
    handle: reload::Handle<EnvFilter, Registry>,
    fixed: Option<String>,
}

static INSTALLED: OnceLock<Installed> = OnceLock::new();

const DEFAULT_FILTER: &str = "info";

impl LogArgs {
    /// Installs the global subscriber; a second call in the same process does nothing.
    pub fn init(&self) {
        let fixed = std::env::var("RUST_LOG")
            .ok()
            .filter(|v| !v.trim().is_empty())
            .or_else(|| self.log.clone());
        let filter = fixed
            .as_deref()
            .and_then(|f| EnvFilter::try_new(f).ok())
            .unwrap_or_else(|| EnvFilter::new(DEFAULT_FILTER));
        let (filter, handle) = reload::Layer::new(filter);
        let registry = tracing_subscriber::registry().with(filter);
        let installed = match self.log_format {
            LogFormat::Text => registry.with(tracing_subscriber::fmt::layer()).try_init(),
            // Event fields at the top level (`"pile": "..."` beside `"message"`), so a
            // log shipper indexes them without unnesting.
            LogFormat::Json => registry
                .with(tracing_subscriber::fmt::layer().json().flatten_event(true))
                .try_init(),
        };
        if installed.is_ok() {
            let _ = INSTALLED.set(Installed { handle, fixed });
        }
    }
}

/// Checks a filter's syntax (for settings files, before anything is applied).
pub fn check_filter(filter: &str) -> anyhow::Result<()> {
    EnvFilter::try_new(filter)
        .map(drop)
        .map_err(|e| anyhow::anyhow!("log filter {filter:?}: {e}"))
}

/// Applies the settings file's `log` key, unless `RUST_LOG` or `--log` set the filter.
/// Returns whether the filter in force changed.
pub fn use_file_filter(file: Option<&str>) -> anyhow::Result<bool> {
    let Some(installed) = INSTALLED.get() else {
        return Ok(false);
    };
    if installed.fixed.is_some() {
        return Ok(false);
    }
    let wanted = file.unwrap_or(DEFAULT_FILTER);
    let current = installed
        .handle
        .with_current(|f| f.to_string())
        .map_err(|e| anyhow::anyhow!("reading the log filter: {e}"))?;
    let filter = EnvFilter::try_new(wanted).map_err(|e| anyhow::anyhow!("log filter: {e}"))?;
    if filter.to_string() == current {
        return Ok(false);
    }
    installed
        .handle
        .reload(filter)
        .map_err(|e| anyhow::anyhow!("setting the log filter: {e}"))?;
    Ok(true)
}
