//! `pylon-fleet`: a fleet of simulated YKC chargers.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::charger::{Cadence, Target};
use crate::dispatch::Dispatch;
use crate::fleet::{self, FleetConfig};
use crate::stats::{self, FleetStats};
use crate::tls::{client_config, TlsVersions};
use anyhow::Context;
use clap::Parser;
use rustls::pki_types::ServerName;

/// Simulates YKC chargers: each logs in, sends a heartbeat every 10 s and idle real-time
/// data every 5 minutes, measures heartbeat round trips, and reconnects with jittered
/// backoff when its connection drops.
///
/// Example (2,000 TLS chargers from 20 source addresses for a minute):
///
///   pylon-fleet --target 127.0.0.1:8769 --tls-ca ca.pem --sessions 2000 \
///       --source-ips 127.1.0.1-127.1.0.20 --duration 60 --report fleet.json
///
/// With --dispatch, each charger first asks the control plane for its edge:
///
///   pylon-fleet --dispatch http://127.0.0.1:7400 --sessions 200
///
/// Each charger keeps its own TLS session and resumes it when it reconnects. SIGUSR1
/// starts a reconnect wave: every connected charger closes its connection and connects
/// again, paced like the ramp (--ramp per second), which measures resumed set-ups.
#[derive(Parser, Debug)]
#[command(name = "pylon-fleet", version, verbatim_doc_comment)]
pub struct Cli {
    /// Edge (or reference server) address.
    #[arg(long, required_unless_present = "dispatch")]
    target: Option<SocketAddr>,
    /// Ask this control plane (e.g. http://127.0.0.1:7400) for each charger's edge
    /// before connecting, and again after every disconnect, instead of using --target.
    /// Several replicas, comma-separated, are asked in turn until one answers.
    #[arg(long)]
    dispatch: Option<String>,
    /// Use TLS, trusting this PEM CA.
    #[arg(long)]
    tls_ca: Option<PathBuf>,
    /// Name the server certificate must carry.
    #[arg(long, default_value = "pylon-edge")]
    server_name: String,
    /// Offer only TLS 1.2 (as many deployed chargers do).
    #[arg(long)]
    tls12_only: bool,
    /// Number of chargers.
    #[arg(long, default_value_t = 100)]
    sessions: u64,
    /// First pile number; charger i is pile base + i.
    #[arg(long, default_value_t = 10_000_000_000_000)]
    pile_base: u64,
    /// Source addresses to spread connections over: a range "127.1.0.1-127.1.0.50" or a
    /// comma-separated list. Empty: let the kernel choose.
    #[arg(long, default_value = "")]
    source_ips: String,
    /// New chargers per second while ramping up.
    #[arg(long, default_value_t = 1000)]
    ramp: u64,
    /// Heartbeat interval in seconds.
    #[arg(long, default_value_t = 10.0)]
    heartbeat_secs: f64,
    /// Idle real-time data interval in seconds.
    #[arg(long, default_value_t = 300.0)]
    realtime_secs: f64,
    /// Stop after this many seconds (0: run until killed).
    #[arg(long, default_value_t = 0)]
    duration: u64,
    /// Forget heartbeat latencies measured before this many seconds (the ramp).
    #[arg(long, default_value_t = 0)]
    measure_after: u64,
    /// Write the report (JSON) here at every progress tick and at the end; the final one
    /// is also printed on stdout.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Print a progress line on stderr every this many seconds (0: never).
    #[arg(long, default_value_t = 2)]
    progress_secs: u64,
    /// Do not print progress lines (reports are still written).
    #[arg(long)]
    quiet: bool,
    /// Simulate charging: answer remote start/stop, send real-time data and transaction
    /// records (resent until confirmed).
    #[arg(long)]
    charge: bool,
    /// With --charge: start a charge by card this often (seconds) when idle; 0: only
    /// remote starts.
    #[arg(long, default_value_t = 0.0)]
    card_start_secs: f64,
    /// With --charge: how long a charge lasts unless stopped remotely (seconds).
    #[arg(long, default_value_t = 60.0)]
    charge_secs: f64,
    /// Every N-th pile misbehaves, one episode per session in turn: a hardware fault
    /// raised and cleared, a silence the edge times out, a burst of quick reconnects;
    /// its charges end abnormally (stop reason 0x6C). 0: none.
    #[arg(long, default_value_t = 0)]
    troubled_every: u64,
    /// Seconds a troubled pile behaves after each login before its episode.
    #[arg(long, default_value_t = 20.0)]
    trouble_calm_secs: f64,
    /// With --charge: append the trade number of each record the platform confirmed to
    /// this file, one per line, as it is confirmed.
    #[arg(long)]
    confirmed_log: Option<PathBuf>,
    /// With --charge: seconds to wait for a record's confirmation before sending it again.
    #[arg(long, default_value_t = 5.0)]
    confirm_timeout_secs: f64,
    /// Tokio worker threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

fn parse_sources(text: &str) -> anyhow::Result<Vec<IpAddr>> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(Vec::new());
    }
    if let Some((a, b)) = text.split_once('-') {
        let a: Ipv4Addr = a
            .trim()
            .parse()
            .with_context(|| format!("bad address {a:?}"))?;
        let b: Ipv4Addr = b
            .trim()
            .parse()
            .with_context(|| format!("bad address {b:?}"))?;
        let (a, b) = (u32::from(a), u32::from(b));
        anyhow::ensure!(a <= b, "range {text:?} is backwards");
        return Ok((a..=b).map(|v| IpAddr::V4(Ipv4Addr::from(v))).collect());
    }
    text.split(',')
        .map(|s| {
            s.trim()
                .parse()
                .with_context(|| format!("bad address {s:?}"))
        })
        .collect()
}

/// Logs to stderr (stdout may carry the report), `warn` unless RUST_LOG says otherwise.
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
}

/// Runs the fleet until its duration ends or it is stopped.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let tls = match &cli.tls_ca {
        Some(ca) => {
            let versions = if cli.tls12_only {
                TlsVersions::Only12
            } else {
                TlsVersions::Both
            };
            let name =
                ServerName::try_from(cli.server_name.clone()).context("bad --server-name")?;
            Some((client_config(ca, None, versions)?, name))
        }
        None => None,
    };
    let mut cfg = FleetConfig {
        charging: cli.charge.then(|| crate::charging::ChargingConfig {
            session: Duration::from_secs_f64(cli.charge_secs.max(1.0)),
            realtime_every: Duration::from_secs(15),
            card_start_every: (cli.card_start_secs > 0.0)
                .then(|| Duration::from_secs_f64(cli.card_start_secs)),
            confirm_timeout: Duration::from_secs_f64(cli.confirm_timeout_secs.max(0.1)),
            end_reason: 0x45,
            misbehave: false,
        }),
        trouble: (cli.troubled_every > 0).then(|| crate::trouble::TroubleConfig {
            every: cli.troubled_every,
            calm: Duration::from_secs_f64(cli.trouble_calm_secs.max(0.0)),
        }),
        dispatch: cli.dispatch.as_deref().map(|urls| Dispatch {
            urls: urls.split(',').map(str::to_owned).collect(),
            transport: if tls.is_some() { "tls" } else { "tcp" },
        }),
        target: Target {
            addr: cli
                .target
                .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0))),
            tls,
        },
        sessions: cli.sessions,
        pile_base: cli.pile_base,
        sources: parse_sources(&cli.source_ips)?,
        ramp_per_sec: cli.ramp,
        cadence: Cadence {
            heartbeat: Duration::from_secs_f64(cli.heartbeat_secs),
            realtime_idle: Duration::from_secs_f64(cli.realtime_secs),
        },
        waves: None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cli.threads.max(1))
        .enable_all()
        .build()?;
    let confirmed_log = match &cli.confirmed_log {
        Some(path) => Some(std::sync::Mutex::new(std::io::LineWriter::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("opening {}", path.display()))?,
        ))),
        None => None,
    };
    let mut stats = FleetStats::default();
    stats.confirmed_log = confirmed_log;
    let stats = Arc::new(stats);
    runtime.block_on(async {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        // SIGUSR1: a reconnect wave.
        let (waves_tx, waves_rx) = tokio::sync::watch::channel(0u64);
        let mut usr1 =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1())?;
        tokio::spawn(async move {
            while usr1.recv().await.is_some() {
                waves_tx.send_modify(|n| *n += 1);
            }
        });
        cfg.waves = Some(waves_rx);
        let fleet = tokio::spawn(fleet::run(cfg, stats.clone(), stop_rx));
        if cli.progress_secs > 0 {
            let stats = stats.clone();
            let every = Duration::from_secs(cli.progress_secs);
            let report_path = cli.report.clone();
            let quiet = cli.quiet;
            tokio::spawn(async move {
                let mut last = 0;
                loop {
                    tokio::time::sleep(every).await;
                    let r = stats.report();
                    let (_, rtt, _) = stats::merge(std::slice::from_ref(&r));
                    if !quiet { eprintln!(
                        "[fleet {}] connected {} | setups {} (+{}/s) | heartbeats {}/{} p99 {:.1} ms | charges {} records {}/{} | errors {:?}",
                        std::process::id(), r.connected, r.setups,
                        (r.setups - last) / every.as_secs().max(1), r.heartbeats_ok, r.heartbeats_sent,
                        rtt.p99_ms, r.charges, r.records_confirmed, r.records_sent, r.errors
                    ); }
                    last = r.setups;
                    if let Some(path) = &report_path {
                        // Written atomically so a reader never sees half a report.
                        let tmp = path.with_extension("tmp");
                        if let Ok(json) = serde_json::to_string(&r) {
                            if std::fs::write(&tmp, json).is_ok() {
                                let _ = std::fs::rename(&tmp, path);
                            }
                        }
                    }
                }
            });
        }
        if cli.measure_after > 0 {
            let stats = stats.clone();
            let after = Duration::from_secs(cli.measure_after);
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                stats.reset_latencies();
            });
        }
        let until_stopped = async {
            if cli.duration > 0 {
                tokio::time::sleep(Duration::from_secs(cli.duration)).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            _ = until_stopped => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        let report = stats.report();
        let _ = stop_tx.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(5), fleet).await;
        let json = serde_json::to_string(&report)?;
        if let Some(path) = &cli.report {
            std::fs::write(path, &json).with_context(|| format!("writing {}", path.display()))?;
        }
        println!("{json}");
        anyhow::Ok(())
    })?;
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}
