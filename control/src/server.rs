//! Wires one control-plane replica together: registry, mirror, leader election, the
//! gRPC services and the HTTP API.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use prometheus_client::registry::Registry as MetricsRegistry;
use pylon_proto::control::audit_server::AuditServer;
use pylon_proto::control::identity_server::IdentityServer;
use pylon_proto::control::membership_server::MembershipServer;
use pylon_proto::control::routes_server::RoutesServer;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::{Backend, Config};
use crate::grpc::{authenticate, AuditService, IdentityService, MembershipService, RoutesService};
use crate::node::ControlNode;
use crate::registry::embedded::EmbeddedRegistry;
use crate::registry::etcd::{EtcdAccess, EtcdRegistry};
use crate::registry::Registry;
use crate::{http, leader, mirror, presence};

/// The registry, and the etcd link's TLS when it has files of its own (for their
/// metrics). Call after the cluster TLS is installed: etcd uses it by default.
pub async fn open_registry(
    config: &Config,
) -> anyhow::Result<(
    Arc<dyn Registry>,
    Option<Arc<pylon_service::tls::ClusterTls>>,
)> {
    Ok(match config.registry.backend {
        Backend::Embedded => {
            let path = &config.registry.path;
            let registry = EmbeddedRegistry::open(path)
                .with_context(|| format!("opening the embedded registry {}", path.display()))?;
            (registry as Arc<dyn Registry>, None)
        }
        Backend::Etcd => {
            let endpoints = config.registry.endpoints.clone();
            let etcd = &config.registry.etcd;
            // etcd's own files are loaded and watched here; the cluster's (the default)
            // are the process's cluster TLS, loaded once by `run`.
            let (tls, own) = match etcd.tls_files(&endpoints, &config.cluster_tls)? {
                None => {
                    tracing::warn!("the etcd link is not encrypted (http:// endpoints)");
                    (None, None)
                }
                Some(_) if etcd.tls.is_empty() => (pylon_service::tls::cluster(), None),
                Some(files) => {
                    let own = pylon_service::tls::ClusterTls::load_and_watch(files)
                        .context("loading the etcd TLS files")?;
                    (own.clone(), own)
                }
            };
            let access = EtcdAccess {
                tls,
                user: etcd.credentials()?,
            };
            let registry = EtcdRegistry::connect(endpoints.clone(), access)
                .await
                .with_context(|| format!("connecting to etcd at {}", endpoints.join(",")))?;
            (registry as Arc<dyn Registry>, own)
        }
    })
}

/// Runs a replica until `shutdown` completes, then resigns leadership and stops.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    config.validate()?;
    if config.insecure_dev {
        tracing::warn!(
            "INSECURE DEV MODE: missing credentials are not required (no cluster token: anything \
             may register; no admin token: every API caller is an admin). Never in production."
        );
    }
    let http_listener = pylon_service::process::listen(config.http_listen, "HTTP").await?;
    let grpc_listener = pylon_service::process::listen(config.grpc_listen, "gRPC").await?;
    let cluster_tls = pylon_service::tls::ClusterTls::install(&config.cluster_tls)?;
    let (registry, etcd_tls) = open_registry(&config).await?;
    let node = ControlNode::new(config, registry);
    if !node.config.insecure_dev && !node.identity.has_bootstrap() {
        let has_admin = node
            .identity
            .has_admin()
            .await
            .context("reading the users from the registry")?;
        anyhow::ensure!(
            has_admin,
            "no admin user exists and no bootstrap admin token is given (--admin-token or \
             PYLON_ADMIN_TOKEN): nobody could run this cluster. Start once with one and create \
             an admin (pylonctl users create), or use --insecure-dev on a developer's machine"
        );
    }
    let mut metrics = MetricsRegistry::default();
    node.metrics.register(&mut metrics);
    pylon_service::reload::register_metrics(&mut metrics);
    node.auth.register(&mut metrics);
    node.auditor.register(&mut metrics);
    if let Some(tls) = cluster_tls {
        tls.register(&mut metrics);
    }
    if let Some(tls) = etcd_tls {
        tls.register_client(&mut metrics, "pylon_etcd_tls");
    }

    let (stop, stopped) = watch::channel(false);
    let mirror = tokio::spawn(mirror::run(node.clone()));
    let leader = tokio::spawn(leader::run(node.clone(), stopped.clone()));
    let presence = tokio::spawn(presence::run(node.clone(), stopped.clone()));
    let dr = tokio::spawn(crate::dr::run(node.clone()));
    let grpc = tokio::spawn(serve_grpc(node.clone(), grpc_listener, stopped.clone()));
    let http_addr = local(&http_listener);
    let app = http::router(node.clone(), metrics);
    let mut http_stopped = stopped.clone();
    let http = tokio::spawn(pylon_service::tls::serve_http(
        http_listener,
        app,
        async move {
            let _ = http_stopped.changed().await;
        },
    ));
    tracing::info!(
        replica = %node.config.replica_id, backend = node.registry.backend(),
        http = %http_addr, grpc = %node.config.grpc_address(), shards = node.config.shard_count,
        "pylon-control started"
    );

    shutdown.await;
    tracing::info!("stopping");
    let _ = stop.send(true);
    // Leadership is handed over first (the leader revokes its lease on the way out).
    let _ = tokio::time::timeout(Duration::from_secs(3), leader).await;
    let _ = tokio::time::timeout(Duration::from_secs(3), presence).await;
    mirror.abort();
    dr.abort();
    let _ = tokio::time::timeout(Duration::from_secs(3), grpc).await;
    let _ = tokio::time::timeout(Duration::from_secs(3), http).await;
    node.auditor.flush(Duration::from_secs(5)).await;
    tracing::info!("pylon-control stopped");
    Ok(())
}

fn local(listener: &TcpListener) -> String {
    listener
        .local_addr()
        .map_or_else(|_| "?".into(), |a: SocketAddr| a.to_string())
}

async fn serve_grpc(
    node: Arc<ControlNode>,
    listener: TcpListener,
    mut stopped: watch::Receiver<bool>,
) {
    let auth = authenticate(node.clone());
    let membership =
        MembershipServer::with_interceptor(MembershipService { node: node.clone() }, auth.clone());
    let routes = RoutesServer::with_interceptor(RoutesService { node: node.clone() }, auth.clone());
    let identity =
        IdentityServer::with_interceptor(IdentityService { node: node.clone() }, auth.clone());
    let audit = AuditServer::with_interceptor(AuditService { node: node.clone() }, auth);
    let router = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(10)))
        .http2_keepalive_timeout(Some(Duration::from_secs(5)))
        .add_service(membership)
        .add_service(routes)
        .add_service(identity)
        .add_service(audit);
    let result = pylon_service::tls::serve_grpc(router, listener, async move {
        let _ = stopped.changed().await;
    })
    .await;
    if let Err(e) = result {
        tracing::error!("the gRPC server failed: {e}");
    }
}
