//! `pylon-refserver`: the reference YKC login + heartbeat responder (tokio +
//! tokio-rustls), for measuring the edge against the common way of writing it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::refserver::{self, RefStats};
use clap::Parser;

/// Answers YKC logins (accepting every pile) and heartbeats, over TCP or TLS. Several
/// processes can share one port (SO_REUSEPORT).
///
/// Example:  pylon-refserver --listen 127.0.0.1:9769 --tls-cert edge.pem --tls-key edge.key
#[derive(Parser, Debug)]
#[command(name = "pylon-refserver", version, verbatim_doc_comment)]
pub struct Cli {
    #[arg(long)]
    listen: SocketAddr,
    /// PEM certificate chain; with --tls-key, serve TLS.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    #[arg(long)]
    tls_key: Option<PathBuf>,
    /// Runtime worker threads (0: one per CPU).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Heartbeat interval in seconds; three missed close the connection.
    #[arg(long, default_value_t = 10)]
    heartbeat_secs: u64,
}

/// Logs to stderr.
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
}

/// Serves until stopped.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let tls = match (&cli.tls_cert, &cli.tls_key) {
        (Some(c), Some(k)) => Some(crate::tls::server_config(c, k)?),
        _ => None,
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if cli.threads > 0 {
        builder.worker_threads(cli.threads);
    }
    let runtime = builder.enable_all().build()?;
    runtime.block_on(async {
        let listener = refserver::reuseport_listener(cli.listen)?;
        let stats = Arc::new(RefStats::default());
        let server = tokio::spawn(refserver::serve(
            listener,
            tls,
            Duration::from_secs(3 * cli.heartbeat_secs),
            stats.clone(),
        ));
        tracing::info!(addr = %cli.listen, "reference server listening");
        tokio::select! {
            _ = server => {}
            _ = tokio::signal::ctrl_c() => {}
            _ = async {
                if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    s.recv().await;
                }
            } => {}
        }
        tracing::info!(
            connections = stats.connections.load(Ordering::Relaxed),
            heartbeats = stats.heartbeats.load(Ordering::Relaxed),
            "reference server stopped"
        );
        anyhow::Ok(())
    })
}
