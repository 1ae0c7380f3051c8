//! The `pylon-edge` process: its command line, and [`run`], which starts the executors,
//! the admin API and the control-plane link and serves until stopped.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::appstream::{self, AppUplink};
use crate::control;
use crate::executor::{self, EdgeShared, ExecutorCommand, DRAINING, STOPPING};
use crate::metrics::EdgeMetrics;
use crate::reload::{self, LiveSettings};
use crate::uplink::LogUplink;
use crate::{admin, runtime, Config};
use anyhow::Context;
use clap::Parser;
use prometheus_client::registry::Registry;
use pylon_service::logging::LogArgs;

/// The Pylon edge: accepts YKC chargers over TCP and TLS, answers their heartbeats and
/// hands business frames on.
///
/// Settings come from a TOML file (--config) and the flags below, which override it.
/// Example:
///
///   pylon-edge --tcp-listen 0.0.0.0:8768 --tls-listen 0.0.0.0:8769 \
///       --tls-cert edge.pem --tls-key edge.key --allowlist piles.txt
///
/// SIGTERM (or Ctrl-C) drains: stop accepting, keep serving for the grace period, then
/// close. A second signal stops at once.
#[derive(Parser, Debug, Clone)]
#[command(name = "pylon-edge", version, verbatim_doc_comment)]
pub struct Cli {
    /// TOML configuration file.
    #[arg(long, short, env = "PYLON_EDGE_CONFIG")]
    config: Option<PathBuf>,
    /// Name of this edge in logs, metrics and the control plane's registry (default: the
    /// host name; give each edge of a cluster its own).
    #[arg(long)]
    edge_id: Option<String>,
    /// Executors (one per core); 0 means one per CPU.
    #[arg(long)]
    executors: Option<usize>,
    /// Pin executor i to CPU i.
    #[arg(long)]
    pin_cpus: bool,
    /// Plain TCP listen address, e.g. 0.0.0.0:8768.
    #[arg(long)]
    tcp_listen: Option<SocketAddr>,
    /// Do not listen for plain TCP at all.
    #[arg(long)]
    no_tcp: bool,
    /// TLS listen address, e.g. 0.0.0.0:8769.
    #[arg(long)]
    tls_listen: Option<SocketAddr>,
    /// PEM certificate chain (repeat together with --tls-key for ECDSA + RSA).
    #[arg(long = "tls-cert")]
    tls_certs: Vec<PathBuf>,
    /// PEM private key for the --tls-cert at the same position.
    #[arg(long = "tls-key")]
    tls_keys: Vec<PathBuf>,
    /// Require client certificates signed by this PEM CA bundle.
    #[arg(long)]
    tls_client_ca: Option<PathBuf>,
    /// Refuse TLS 1.2 (only TLS 1.3).
    #[arg(long)]
    tls13_only: bool,
    /// Session-ticket keys every edge of the site shares (one per line, 64 hex digits,
    /// e.g. `openssl rand -hex 32`; the first seals, all open): chargers then resume their
    /// TLS sessions on any edge. Re-read on reload, for rotation.
    #[arg(long)]
    tls_ticket_key: Option<PathBuf>,
    /// Admin/metrics HTTP listen address.
    #[arg(long)]
    admin_listen: Option<SocketAddr>,
    /// File of pile numbers allowed to log in, one per line.
    #[arg(long)]
    allowlist: Option<PathBuf>,
    /// Let every pile log in (demos and benchmarks only).
    #[arg(long)]
    allow_all: bool,
    /// File of pile numbers that must log in over TLS (a plain-TCP login is refused).
    #[arg(long)]
    tls_only_piles: Option<PathBuf>,
    /// Kernel help for spreading connections: off (plain SO_REUSEPORT), auto (use it when
    /// it loads), on (refuse to start without it). Needs root or CAP_BPF.
    #[arg(long, value_enum)]
    ebpf: Option<crate::ebpf::EbpfMode>,
    /// A bpffs directory (e.g. /sys/fs/bpf) where edge processes serving the same ports
    /// share their per-CPU listener arrays; give each process its own --first-cpu.
    #[arg(long)]
    ebpf_pin_dir: Option<PathBuf>,
    /// The CPU of executor 0 with --pin-cpus (executor i runs on first-cpu + i).
    #[arg(long)]
    first_cpu: Option<usize>,
    /// Spread SYNs arriving on this interface over the executors' CPUs (XDP + CPUMAP), for
    /// NICs that spread poorly; pair with --pin-cpus and --ebpf on.
    #[arg(long)]
    xdp_spread: Option<String>,
    /// Guard against SYN floods on this interface (XDP): SYNs to the edge's ports are
    /// limited per source, and blocklisted sources are dropped (see the admin API).
    #[arg(long)]
    syn_guard: Option<String>,
    /// SYNs per second each source may send (with --syn-guard).
    #[arg(long)]
    syn_rate: Option<u64>,
    /// SYNs a source may send at once (with --syn-guard).
    #[arg(long)]
    syn_burst: Option<u64>,
    /// Run the XDP programs (--syn-guard, --xdp-spread) in the driver (native) instead of
    /// the stack (generic).
    #[arg(long)]
    xdp_native: bool,
    /// Let the app service decide logins from its pile registry (needs --control).
    #[arg(long)]
    app_login: bool,
    /// Expected heartbeat interval in seconds (three missed close the session).
    #[arg(long)]
    heartbeat_interval: Option<u64>,
    /// Seconds to keep serving after SIGTERM before closing sessions.
    #[arg(long)]
    drain_grace: Option<u64>,
    /// Seconds allowed for a TLS handshake.
    #[arg(long)]
    tls_handshake_timeout: Option<u64>,
    /// Seconds allowed between connecting and the login frame.
    #[arg(long)]
    login_timeout: Option<u64>,
    /// Sustained frames per second per connection.
    #[arg(long)]
    max_frames_per_sec: Option<u32>,
    /// io_uring queue depth per executor.
    #[arg(long)]
    ring_depth: Option<usize>,
    /// Longest park in epoll_wait in µs (default 100,000); timers wait at most this (commands
    /// from other threads ring the executor awake at once).
    #[arg(long)]
    park_timeout_us: Option<u64>,
    /// Connections per executor.
    #[arg(long)]
    max_sessions_per_executor: Option<usize>,
    /// Control-plane gRPC endpoints to register with, comma-separated
    /// (e.g. http://10.0.0.5:7401). Without any, the edge runs standalone.
    #[arg(long, value_delimiter = ',')]
    control: Vec<String>,
    /// Cluster token presented to the control plane.
    #[arg(long, env = "PYLON_CLUSTER_TOKEN", hide_env_values = true)]
    control_token: Option<String>,
    /// A bootstrap admin token for the admin API (/v1/status, /v1/downlink, /v1/guard),
    /// for an edge without a control plane; with one, operators use its tokens.
    #[arg(long, env = "PYLON_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Start without credentials, for a developer's machine only: no cluster token and,
    /// with no admin token or control plane, every admin API caller an admin.
    #[arg(long)]
    insecure_dev: bool,
    #[command(flatten)]
    cluster_tls: pylon_service::tls::TlsArgs,
    /// host:port chargers use for plain TCP (needed when --tcp-listen is 0.0.0.0).
    #[arg(long)]
    advertise_tcp: Option<String>,
    /// host:port chargers use for TLS (needed when --tls-listen is 0.0.0.0).
    #[arg(long)]
    advertise_tls: Option<String>,
    /// Sessions this edge takes before dispatch sends piles elsewhere.
    #[arg(long)]
    capacity: Option<u32>,
    /// Seconds over which an operator drain moves chargers off this edge.
    #[arg(long)]
    drain_period: Option<u64>,
    /// Seconds the control plane keeps this edge after its last keep-alive.
    #[arg(long)]
    lease_ttl: Option<u32>,
    #[command(flatten)]
    pub config_args: pylon_service::config::ConfigArgs,
    #[command(flatten)]
    pub log: LogArgs,
}

impl Cli {
    fn into_config(self) -> anyhow::Result<Config> {
        let mut c: Config = pylon_service::config::file_or_default(self.config.as_deref())?;
        let cli = self;
        pylon_service::overlay!(cli => c;
            set: edge_id => edge_id, executors => executors, admin_listen => admin_listen,
                heartbeat_interval => limits.heartbeat_interval_secs,
                drain_grace => limits.drain_grace_secs,
                tls_handshake_timeout => limits.tls_handshake_timeout_secs,
                login_timeout => limits.login_timeout_secs,
                max_frames_per_sec => limits.max_frames_per_sec,
                max_sessions_per_executor => limits.max_sessions_per_executor,
                ring_depth => ring_depth, park_timeout_us => park_timeout_us,
                drain_period => control.drain_period_secs, lease_ttl => control.lease_ttl_secs,
                ebpf => ebpf, first_cpu => first_cpu, xdp_spread => xdp_spread,
                syn_guard => syn_guard.interface, syn_rate => syn_guard.rate_per_sec,
                syn_burst => syn_guard.burst;
            some: control_token => control.token, advertise_tcp => control.advertise_tcp,
                advertise_tls => control.advertise_tls, capacity => control.capacity,
                tcp_listen => tcp_listen, tls_listen => tls_listen,
                tls_client_ca => tls.client_ca, allowlist => auth.allowlist,
                tls_ticket_key => tls.ticket_key,
                ebpf_pin_dir => ebpf_pin_dir, admin_token => admin_token,
                tls_only_piles => auth.tls_only;
            lists: control => control.endpoints;
        );
        c.insecure_dev |= cli.insecure_dev;
        cli.cluster_tls.overlay(&mut c.cluster_tls);
        if cli.no_tcp {
            c.tcp_listen = None;
        }
        if !cli.tls_certs.is_empty() {
            c.tls.certs = cli.tls_certs;
            c.tls.keys = cli.tls_keys;
        }
        c.tls.enable_tls12 &= !cli.tls13_only;
        c.pin_cpus |= cli.pin_cpus;
        c.auth.allow_all |= cli.allow_all;
        c.auth.app_login |= cli.app_login;
        c.syn_guard.native |= cli.xdp_native;
        c.validate()?;
        Ok(c)
    }
}

/// Runs the edge until it is stopped (see [`watch_signals`]).
pub fn run(mut cli: Cli) -> anyhow::Result<()> {
    let checks = cli.config_args.clone();
    cli.config = checks.config_file(cli.config.take());
    let reload_cli = cli.clone();
    let config = cli.into_config()?;
    if pylon_service::config::handled(&checks, &config)? {
        return Ok(());
    }
    pylon_service::logging::use_file_filter(config.log.as_deref())?;
    let live = LiveSettings::load(&config, None)?;
    let config = Arc::new(config);
    let metrics = Arc::new(EdgeMetrics::default());
    metrics
        .control_configured
        .set(i64::from(!config.control.endpoints.is_empty()));
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    pylon_service::reload::register_metrics(&mut registry);

    let count = config.executor_count();
    let (handle, receivers) = executor::command_channels(count)
        .map_err(|e| anyhow::anyhow!("cannot create the executors' doorbells (eventfd): {e}"))?;
    let selectors = crate::ebpf::ListenerSelectors::load(
        config.ebpf,
        [config.tcp_listen, config.tls_listen],
        config.ebpf_pin_dir.as_deref(),
    )?
    .map(Arc::new);
    let syn_guard = if config.syn_guard.interface.is_empty() {
        None
    } else {
        let ports: Vec<u16> = [config.tcp_listen, config.tls_listen]
            .iter()
            .flatten()
            .map(|a| a.port())
            .collect();
        let guard = crate::ebpf::start_syn_guard(&config.syn_guard, &ports)
            .context("starting the SYN-flood guard (needs root or CAP_BPF + CAP_NET_ADMIN)")?;
        Some(std::sync::Mutex::new(guard))
    };
    let cpu_spreader = if config.xdp_spread.is_empty() {
        None
    } else {
        Some(
            crate::ebpf::start_cpu_spreader(
                &config.xdp_spread,
                config.first_cpu as u32,
                config.executor_count() as u32,
                config.syn_guard.native,
            )
            .context("starting the XDP SYN spreader (needs root)")?,
        )
    };
    let tcp_metrics = if config.ebpf == crate::ebpf::EbpfMode::Off {
        None
    } else {
        let ports: Vec<u16> = [config.tcp_listen, config.tls_listen]
            .iter()
            .flatten()
            .map(|a| a.port())
            .collect();
        match pylon_ebpf::tcpmetrics::TcpMetrics::start(&ports) {
            Ok(m) => Some(m),
            Err(e) if config.ebpf == crate::ebpf::EbpfMode::Auto => {
                tracing::warn!("kernel TCP metrics unavailable: {e}");
                None
            }
            Err(e) => anyhow::bail!("--ebpf on: cannot start the kernel TCP metrics: {e}"),
        }
    };
    let with_control = !config.control.endpoints.is_empty();
    // With a control plane, business frames go to the app instances owning their shards.
    let (uplinks, uplink_events) = if with_control {
        let (factory, events) = AppUplink::factory();
        (factory, Some(events))
    } else {
        (LogUplink::factory(metrics.uplink_frames.clone()), None)
    };
    let shared = Arc::new(EdgeShared {
        edge_id: config.edge_id.as_str().into(),
        uplinks,
        config: config.clone(),
        metrics,
        live: arc_swap::ArcSwap::from_pointee(live),
        logins: Default::default(),
        session_ids: AtomicU64::new(1),
        state: AtomicU8::new(executor::RUNNING),
        operator_drain: Default::default(),
        selectors,
        syn_guard,
        tcp_metrics,
        cpu_spreader,
        peers: handle.clone(),
    });
    let mut background: Vec<admin::Background> = Vec::new();
    if let Some(events) = uplink_events {
        let (shards_tx, shards_rx) = tokio::sync::watch::channel(Arc::default());
        background.push(Box::pin(control::run(
            shared.clone(),
            handle.clone(),
            shards_tx,
        )));
        background.push(Box::pin(appstream::run_router(
            shared.clone(),
            handle.clone(),
            events,
            shards_rx,
        )));
    }
    admin::start(
        config.admin_listen,
        shared.clone(),
        registry,
        handle.clone(),
        background,
    )?;

    let receivers = Arc::new(std::sync::Mutex::new(
        receivers.into_iter().map(Some).collect::<Vec<_>>(),
    ));
    let run_shared = shared.clone();
    let executors = runtime::start_executors(
        count,
        config.pin_cpus,
        config.first_cpu,
        config.io_memory,
        config.ring_depth,
        Duration::from_micros(config.park_timeout_us),
        move |i| {
            let shared = run_shared.clone();
            let commands = receivers.lock().ok().and_then(|mut r| r[i].take());
            async move {
                match commands {
                    Some(commands) => executor::run(i, shared, commands).await,
                    None => tracing::error!(executor = i, "no command channel"),
                }
            }
        },
    )?;
    tracing::info!(
        edge = %config.edge_id, executors = count,
        tcp = ?config.tcp_listen, tls = ?config.tls_listen, admin = %config.admin_listen,
        "pylon-edge started"
    );

    let (reload_shared, reload_handle) = (shared.clone(), handle.clone());
    pylon_service::reload::reread_on_hangup(
        "pylon-edge",
        (*config).clone(),
        reload::LIVE_KEYS,
        move || reload_cli.clone().into_config(),
        move |config| reload::apply(config, &reload_shared, &reload_handle),
    )?;
    watch_signals(shared.clone(), handle)?;
    for e in executors {
        e.join();
    }
    tracing::info!("pylon-edge stopped");
    Ok(())
}

/// First SIGTERM/SIGINT drains, the second stops at once.
fn watch_signals(shared: Arc<EdgeShared>, handle: executor::ExecutorHandle) -> anyhow::Result<()> {
    let (drain_shared, drain_handle) = (shared.clone(), handle.clone());
    pylon_service::signals::watch(
        move |signal| {
            let grace = drain_shared.live.load().limits.drain_grace_secs;
            tracing::info!(
                signal,
                grace_secs = grace,
                "draining: no new connections; sessions close after the grace period"
            );
            drain_shared.state.store(DRAINING, Ordering::Relaxed);
            drain_handle.broadcast(|| ExecutorCommand::Drain);
        },
        move |signal| {
            tracing::info!(signal, "second signal: stopping now");
            shared.state.store(STOPPING, Ordering::Relaxed);
            handle.broadcast(|| ExecutorCommand::Shutdown);
            pylon_service::signals::exit_soon();
        },
    )?;
    Ok(())
}
