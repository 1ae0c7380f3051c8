//! `pylon-balancer`: the XDP L4 balancer for a VIP in front of several edge hosts,
//! following the control plane's edge list and drain flags. The kernel program and its
//! loader are `pylon_ebpf::balancer`; this crate is the process around them.
//!
//! - [`follow`]: which edges take new flows, from the control plane's route table.
//! - [`run`]: the process: load and attach, follow routes, serve `/metrics`, `/healthz`
//!   and `/readyz` (ready once the first route table is installed).

pub mod follow;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use pylon_ebpf::balancer::Balancer;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::follow::{EdgeLink, ResolvedLink};
use pylon_proto::auth::with_bearer;
use pylon_proto::control::route_update::Body;
use pylon_proto::control::routes_client::RoutesClient;
use pylon_proto::control::{AppliedReport, SubscribeRequest};
use pylon_proto::routes::RouteView;
use serde::Deserialize;

/// The Pylon L4 balancer: chargers with a fixed address connect to a VIP on this host;
/// XDP sends each new TCP flow to an edge host chosen by Maglev consistent hashing over
/// the live, undrained edges (from the control plane), keeps established flows on their
/// edge, and forwards at L2 (the edges hold the VIP on a loopback address and answer the
/// chargers directly).
///
/// Configuration (TOML, --config):
///
///   vip = "10.90.0.1"
///   port = 8768
///   interface = "eth0"            # where chargers' packets arrive
///   native = true                 # driver-mode XDP
///   control = ["http://10.0.0.5:7401"]
///   [[edges]]
///   edge_id = "edge-1"
///   interface = "eth1"
///   mac = "02:00:0a:00:00:11"
///
/// Needs root (or CAP_BPF and CAP_NET_ADMIN). /metrics, /healthz and /readyz on
/// --admin-listen. SIGTERM (or Ctrl-C) stops following and detaches; a second one exits
/// at once.
#[derive(clap::Parser, Debug)]
#[command(name = "pylon-balancer", version, verbatim_doc_comment)]
pub struct Cli {
    /// The configuration file (TOML, as above).
    #[arg(long, short)]
    config: PathBuf,
    /// Where to serve /metrics, /healthz and /readyz (ready once a route table is installed).
    #[arg(long, default_value = "127.0.0.1:9200")]
    admin_listen: SocketAddr,
    /// Cluster token for the control plane.
    #[arg(long, env = "PYLON_CLUSTER_TOKEN", hide_env_values = true)]
    token: Option<String>,
    #[command(flatten)]
    pub log: pylon_service::logging::LogArgs,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    vip: Ipv4Addr,
    port: u16,
    interface: String,
    #[serde(default)]
    native: bool,
    control: Vec<String>,
    edges: Vec<EdgeLink>,
}

/// Loads and attaches the balancer, then follows the control plane until stopped.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let config: Config = pylon_service::config::from_toml_file(&cli.config)?;
    anyhow::ensure!(
        !config.control.is_empty(),
        "no control-plane endpoint (control = [...])"
    );
    let links: Vec<ResolvedLink> = config
        .edges
        .iter()
        .map(follow::resolve)
        .collect::<Result<_, _>>()
        .map_err(anyhow::Error::msg)?;
    let mut balancer = Balancer::load(config.vip, config.port)?;
    // Nothing takes new flows until the first route table arrives.
    balancer.set_backends(&follow::backends(&links, &Default::default()))?;
    let mode = if config.native {
        aya::programs::XdpMode::Driver
    } else {
        aya::programs::XdpMode::Skb
    };
    balancer
        .attach(&config.interface, mode)
        .with_context(|| format!("attaching XDP to {}", config.interface))?;
    tracing::info!(vip = %config.vip, port = config.port, interface = %config.interface, edges = links.len(), "balancer attached");
    let balancer = Arc::new(Mutex::new(balancer));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(cli.admin_listen).await?;
        let metrics_balancer = balancer.clone();
        let ready = Arc::new(AtomicBool::new(false));
        let ready_flag = ready.clone();
        let app = axum::Router::new()
            .route("/healthz", axum::routing::get(pylon_service::health::healthz))
            // Ready once a route table is installed: before, no edge takes new flows.
            .route(
                "/readyz",
                axum::routing::get(move || {
                    let ready = ready_flag.load(Ordering::Relaxed);
                    async move {
                        if ready {
                            (axum::http::StatusCode::OK, "ready\n")
                        } else {
                            (
                                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                                "waiting for the first route table\n",
                            )
                        }
                    }
                }),
            )
            .route(
                "/metrics",
                axum::routing::get(move || {
                    let b = metrics_balancer.clone();
                    async move {
                        let s = b.lock().map(|b| b.stats()).unwrap_or_default();
                        format!(
                            "# TYPE pylon_balancer_new_flows counter\npylon_balancer_new_flows_total {}\n\
                             # TYPE pylon_balancer_known_flow_packets counter\npylon_balancer_known_flow_packets_total {}\n\
                             # TYPE pylon_balancer_forwarded counter\npylon_balancer_forwarded_total {}\n\
                             # TYPE pylon_balancer_no_backend counter\npylon_balancer_no_backend_total {}\n# EOF\n",
                            s.new_flows, s.known_flow_packets, s.forwarded, s.no_backend
                        )
                    }
                }),
            );
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        // The first SIGTERM or SIGINT stops following and detaches (by dropping the
        // program); a second one exits at once.
        let shutdown = pylon_service::signals::drain_on_first_signal("pylon-balancer")?;
        tokio::select! {
            () = follow_routes(&config.control, cli.token.as_deref(), &links, &balancer, &ready) => {}
            () = shutdown => tracing::info!("stopping: the balancer's XDP program is detached"),
        }
        anyhow::Ok(())
    })
}

/// Follows the route table, failing over between control-plane replicas, and installs
/// the backends whenever the set of edges taking new flows changes.
async fn follow_routes(
    endpoints: &[String],
    token: Option<&str>,
    links: &[ResolvedLink],
    balancer: &Mutex<Balancer>,
    ready: &AtomicBool,
) {
    let subscriber = format!("balancer/{}", std::process::id());
    let mut installed: Vec<bool> = Vec::new();
    let mut backoff = pylon_service::control_link::Backoff::default();
    for endpoint in endpoints.iter().cycle() {
        let started = tokio::time::Instant::now();
        let result: anyhow::Result<()> = async {
            // HTTP/2 keep-alive: a replica that dies silently must not leave the balancer
            // on a frozen table.
            let channel = pylon_service::control_link::connect(endpoint).await?;
            let mut client = RoutesClient::new(channel);
            let mut stream = client
                .subscribe(with_bearer(SubscribeRequest { subscriber_id: subscriber.clone() }, token))
                .await?
                .into_inner();
            let mut view: Option<RouteView> = None;
            while let Some(update) = stream.message().await? {
                match update.body {
                    Some(Body::Snapshot(b)) => view = Some(RouteView::from_snapshot(&b)?),
                    Some(Body::Delta(d)) => match view.as_mut() {
                        Some(v) => v.apply_delta(&d)?,
                        None => anyhow::bail!("a delta before any snapshot"),
                    },
                    None => continue,
                }
                let Some(v) = &view else { continue };
                let backends = follow::backends(links, &v.to_table());
                let active: Vec<bool> = backends.iter().map(|b| b.active).collect();
                if active != installed {
                    if let Ok(mut b) = balancer.lock() {
                        b.set_backends(&backends)?;
                    }
                    tracing::info!(active = ?backends.iter().filter(|b| b.active).map(|b| &b.name).collect::<Vec<_>>(), "edges taking new flows");
                    installed = active;
                }
                ready.store(true, Ordering::Relaxed);
                let _ = client
                    .report_applied(with_bearer(AppliedReport { subscriber_id: subscriber.clone(), version: v.version() }, token))
                    .await;
            }
            Ok(())
        }
        .await;
        backoff.session_ended(started.elapsed());
        let wait = backoff.next_wait();
        if let Err(e) = result {
            tracing::warn!(%endpoint, "route stream lost: {e:#}; retrying in {wait:?}");
        }
        tokio::time::sleep(wait).await;
    }
}
