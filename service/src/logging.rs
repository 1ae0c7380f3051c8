//! Logging set-up shared by every process: a level filter from `--log` (overridden by
//! `RUST_LOG` when that is set) and text or JSON lines on stdout.

use clap::{Args, ValueEnum};

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
    /// Log filter, e.g. `info` or `pylon_edge=debug,info` (RUST_LOG, when set, wins).
    #[arg(long, default_value = "info", value_name = "FILTER")]
    pub log: String,
    /// Log line format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, value_name = "FORMAT")]
    pub log_format: LogFormat,
}

impl LogArgs {
    /// Installs the global subscriber; a second call in the same process does nothing.
    pub fn init(&self) {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .or_else(|_| tracing_subscriber::EnvFilter::try_new(&self.log))
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
        let builder = tracing_subscriber::fmt().with_env_filter(filter);
        let _ = match self.log_format {
            LogFormat::Text => builder.try_init(),
            LogFormat::Json => builder.json().try_init(),
        };
    }
}
