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
use pylon_proto::routes::RouteView;
use pylon_service::control_link::{ControlLink, LinkSettings, Participant};
use serde::{Deserialize, Serialize};

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
    /// The configuration file (TOML, as above); required unless --check-config names one.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Where to serve /metrics, /healthz and /readyz (ready once a route table is installed).
    #[arg(long, default_value = "127.0.0.1:9200")]
    admin_listen: SocketAddr,
    /// Cluster token for the control plane.
    #[arg(long, env = "PYLON_CLUSTER_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The cluster certificate, for a control plane that runs TLS (`https://` endpoints).
    #[command(flatten)]
    cluster_tls: pylon_service::tls::TlsArgs,
    #[command(flatten)]
    pub config_args: pylon_service::config::ConfigArgs,
    #[command(flatten)]
    pub log: pylon_service::logging::LogArgs,
}

#[derive(Debug, Deserialize, Serialize)]
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

impl Config {
    /// Checks what a start needs; returns the resolved edge links.
    fn validate(&self) -> anyhow::Result<Vec<ResolvedLink>> {
        anyhow::ensure!(
            !self.control.is_empty(),
            "no control-plane endpoint (control = [...])"
        );
        self.edges
            .iter()
            .map(follow::resolve)
            .collect::<Result<_, _>>()
            .map_err(anyhow::Error::msg)
    }
}

/// Loads and attaches the balancer, then follows the control plane until stopped.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let file = cli
        .config_args
        .config_file(cli.config.clone())
        .context("no configuration file: give --config FILE")?;
    let config: Config = pylon_service::config::from_toml_file(&file)?;
    let links = config.validate()?;
    if pylon_service::config::handled(&cli.config_args, &config)? {
        return Ok(());
    }
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
        let mut tls_files = pylon_service::tls::TlsFiles::default();
        cli.cluster_tls.overlay(&mut tls_files);
        pylon_service::tls::ClusterTls::install(&tls_files)?;
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

/// Follows the route table through the shared control-plane link (failover between
/// replicas, HTTP/2 keep-alive so a replica that dies silently is left), installing the
/// backends whenever the set of edges taking new flows changes.
async fn follow_routes(
    endpoints: &[String],
    token: Option<&str>,
    links: &[ResolvedLink],
    balancer: &Mutex<Balancer>,
    ready: &AtomicBool,
) {
    let settings = LinkSettings {
        endpoints: endpoints.to_vec(),
        token: token.map(str::to_owned),
        member: None,
        lease_ttl_secs: 10,
        subscriber: Some(format!("balancer/{}", std::process::id())),
    };
    let follower = RouteFollower {
        links,
        balancer,
        ready,
        installed: Vec::new(),
    };
    let (_never, stop) = tokio::sync::watch::channel(false);
    ControlLink::new(settings, follower).run(stop).await;
}

/// Installs the edges a route table lets take new flows.
struct RouteFollower<'a> {
    links: &'a [ResolvedLink],
    balancer: &'a Mutex<Balancer>,
    ready: &'a AtomicBool,
    /// Which configured edges take new flows in the kernel now.
    installed: Vec<bool>,
}

impl Participant for RouteFollower<'_> {
    fn routes_applied(&mut self, view: &RouteView) {
        let backends = follow::backends(self.links, &view.to_table());
        let active: Vec<bool> = backends.iter().map(|b| b.active).collect();
        if active != self.installed {
            let installed = match self.balancer.lock() {
                Ok(mut balancer) => balancer.set_backends(&backends),
                Err(_) => return,
            };
            if let Err(e) = installed {
                // Left as it was; the next update tries again.
                tracing::error!("cannot install the backends: {e:#}");
                return;
            }
            tracing::info!(active = ?backends.iter().filter(|b| b.active).map(|b| &b.name).collect::<Vec<_>>(), "edges taking new flows");
            self.installed = active;
        }
        self.ready.store(true, Ordering::Relaxed);
    }
}
