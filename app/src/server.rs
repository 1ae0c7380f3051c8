//! Wires one app-service instance together: store, business logic, the business stream
//! server for edges, the operator API, and registration with the control plane.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use prometheus_client::registry::Registry as MetricsRegistry;
use pylon_proto::app::business_server::BusinessServer;
use tokio::sync::watch;
use tonic::{Request, Status};

use crate::business::Business;
use crate::config::{Config, StoreBackend};
use crate::directory::Directory;
use crate::metrics::AppMetrics;
use crate::revenue::authorize::StartPolicy;
use crate::revenue::vault::Vault;
use crate::store::postgres::PostgresStore;
use crate::store::sqlite::SqliteStore;
use crate::store::{Store, StoreError};
use crate::stream::BusinessService;
use crate::{membership, operator};

pub async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    Ok(match config.store.backend {
        StoreBackend::Sqlite => {
            let path = &config.store.path;
            SqliteStore::open(path)
                .with_context(|| format!("opening the SQLite store {}", path.display()))?
                as Arc<dyn Store>
        }
        StoreBackend::Postgres => {
            let url = &config.store.url;
            let ca = config.store.ca.as_ref().or(config.cluster_tls.ca.as_ref());
            if ca.is_none() {
                anyhow::ensure!(
                    config.insecure_dev || crate::store::postgres::is_local(url),
                    "the PostgreSQL store is on another machine and no CA is given to check it \
                     (--postgres-ca, or --cluster-ca): the link would be in the clear. Give \
                     one, or run with --insecure-dev on a developer's machine"
                );
                tracing::warn!("the PostgreSQL link is not encrypted (a store on this machine)");
            }
            let ca = ca.map(std::path::PathBuf::as_path);
            let budget = std::time::Duration::from_secs(config.store.failover_secs);
            let mut pause = std::time::Duration::from_millis(200);
            loop {
                match PostgresStore::connect_tuned(url, ca, budget).await {
                    Ok(store) => break store as Arc<dyn Store>,
                    // A standby site's store takes no writes until it is promoted.
                    Err(StoreError::Unavailable(why)) if config.store.wait_for_primary => {
                        tracing::warn!(
                            "waiting for the PostgreSQL store to take writes (retrying in {pause:?}): {why}"
                        );
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(std::time::Duration::from_secs(2));
                    }
                    Err(e) => {
                        return Err(
                            anyhow::Error::new(e).context("connecting to the PostgreSQL store")
                        )
                    }
                }
            }
        }
    })
}

/// Edges present the cluster token on their business streams.
fn authenticate(
    token: Option<String>,
) -> impl Fn(Request<()>) -> Result<Request<()>, Status> + Clone {
    move |request: Request<()>| {
        let Some(expected) = token.as_deref() else {
            return Ok(request);
        };
        let presented = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        if pylon_proto::auth::bearer_matches(presented, expected) {
            Ok(request)
        } else {
            Err(Status::unauthenticated("missing or wrong cluster token"))
        }
    }
}

/// The alarms no frame raises: stops whose record is overdue, this instance's store and
/// certificate; and the active alarms repeated to Alertmanager (which forgets an alert
/// not repeated within its resolve timeout).
async fn watch_alarms(
    business: Arc<Business>,
    app_id: String,
    targets: crate::alarms::notify::Targets,
    control: Option<pylon_service::control_link::Replicas>,
    every: Duration,
) {
    use pylon_proto::api::monitor::AlarmState;
    use pylon_proto::control::membership_client::MembershipClient;
    let mut platform = crate::alarms::platform::PlatformWatch::default();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .ok();
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let now = business.now_ms();
        if let Err(e) = business.alarms.check_overdue_records(now).await {
            tracing::warn!("cannot look for overdue transaction records: {e}");
        }
        let store_ok = business
            .store
            .alarm_counts()
            .await
            .map(|_| ())
            .map_err(|e| e.to_string());
        business.alarms.check_instance(&app_id, store_ok, now).await;
        if let Some(control) = &control {
            let reply = control
                .first_answer(|channel, bearer| async move {
                    MembershipClient::new(channel)
                        .platform(pylon_proto::auth::with_bearer(
                            pylon_proto::control::PlatformRequest {},
                            bearer.as_deref(),
                        ))
                        .await
                })
                .await;
            match reply {
                Ok(reply) => {
                    let changes = platform.observe(&reply, now / 1000);
                    business.alarms.platform(changes, now).await;
                }
                Err(e) => tracing::warn!("cannot read the platform's state: {e}"),
            }
        }
        if let (Some(client), false) = (&client, targets.alertmanagers.is_empty()) {
            let filter = crate::store::monitor::AlarmFilter {
                states: Some(vec![AlarmState::Open, AlarmState::Acknowledged]),
                ..Default::default()
            };
            // Page by page, newest first, up to 100 000 alarms a round.
            let mut filter = filter;
            for _ in 0..100 {
                match business.store.alarms(&filter, 1_000).await {
                    Ok(active) => {
                        crate::alarms::notify::repeat_active(client, &targets, &active).await;
                        match active.last() {
                            Some(last) if active.len() == 1_000 => filter.before = Some(last.id),
                            _ => break,
                        }
                    }
                    Err(e) => {
                        tracing::warn!("cannot read the active alarms: {e}");
                        break;
                    }
                }
            }
        }
    }
}

/// Where this instance sends alarm notifications.
fn alarm_targets(config: &Config) -> anyhow::Result<crate::alarms::notify::Targets> {
    let secret = match &config.alarms.webhook_secret_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the webhook secret {}", path.display()))?;
            let secret = text.trim().as_bytes().to_vec();
            anyhow::ensure!(
                secret.len() >= 16,
                "the webhook secret in {} is shorter than 16 bytes",
                path.display()
            );
            Some(secret)
        }
        None => None,
    };
    Ok(crate::alarms::notify::Targets {
        webhooks: config.alarms.webhooks.clone(),
        secret,
        alertmanagers: config.alarms.alertmanagers.clone(),
        source: format!("app:{}", config.app_id),
    })
}

/// Runs the instance until `shutdown` completes.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    config.validate()?;
    let config = Arc::new(config);
    let grpc_listener = pylon_service::process::listen(config.grpc_listen, "edges").await?;
    let http_listener =
        pylon_service::process::listen(config.http_listen, "the operator API").await?;
    let store = open_store(&config).await?;
    let metrics = Arc::new(AppMetrics::default());
    let mut registry = MetricsRegistry::default();
    metrics.register(&mut registry);
    pylon_service::reload::register_metrics(&mut registry);
    if let Some(tls) = pylon_service::tls::ClusterTls::install(&config.cluster_tls)? {
        tls.register(&mut registry);
    }
    let auth = Arc::new(pylon_service::auth::Authenticator::for_member(
        config.admin_token.clone(),
        &config.control,
        config.cluster_token.clone(),
        config.insecure_dev,
    )?);
    auth.register(&mut registry);
    let auditor = Arc::new(pylon_service::audit::Auditor::for_member(
        format!("app:{}", config.app_id),
        &config.control,
        config.cluster_token.clone(),
    )?);
    auditor.register(&mut registry);
    let directory = Arc::new(Directory::default());
    let vault = match &config.card_keys {
        Some(path) => Some(Arc::new(Vault::from_file(path)?)),
        None => {
            tracing::warn!("no card key file (--card-keys): card and VIN starts are refused, cards cannot be added");
            None
        }
    };
    let targets = alarm_targets(&config)?;
    let business = Arc::new(Business::new(
        store.clone(),
        directory.clone(),
        metrics,
        crate::business::BusinessSettings {
            offset: config.offset(),
            vault,
            policy: StartPolicy {
                min_balance: config.revenue.min_balance,
                max_hold: config.revenue.max_hold,
            },
            tolerance: config.revenue.tolerance,
            retention: config.retention,
            fault: config.fault,
            clock: Arc::new(crate::clock::SystemClock),
            notifier: crate::alarms::notify::Notifier::start(targets.clone()),
            alarm_settings: config.alarms.settings(),
            ingest: config.ingest.settings(),
        },
    ));
    business.alarms.register(&mut registry);
    business.ingest.register(&mut registry);

    let (stop, stopped) = watch::channel(false);
    // Its own stop: it flushes last, after the edges' streams have closed.
    let (stop_ingest, ingest_stopped) = watch::channel(false);
    let ingest = tokio::spawn(business.ingest.clone().run(ingest_stopped));
    let service = BusinessServer::with_interceptor(
        BusinessService::new(business.clone()),
        authenticate(config.cluster_token.clone()),
    );
    let mut grpc_stopped = stopped.clone();
    let router = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(10)))
        .http2_keepalive_timeout(Some(Duration::from_secs(5)))
        .add_service(service);
    let grpc = tokio::spawn(pylon_service::tls::serve_grpc(
        router,
        grpc_listener,
        async move {
            let _ = grpc_stopped.changed().await;
        },
    ));
    let app = operator::router(business.clone(), auth, auditor.clone(), registry);
    let mut http_stopped = stopped.clone();
    let http = tokio::spawn(pylon_service::tls::serve_http(
        http_listener,
        app,
        async move {
            let _ = http_stopped.changed().await;
        },
    ));
    // The retention policy, every hour (the first pass a minute after start).
    let retention = {
        let business = business.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(60)).await;
            let mut tick = tokio::time::interval(Duration::from_secs(3600));
            loop {
                tick.tick().await;
                if let Err(e) = business.apply_retention().await {
                    tracing::warn!("the retention policy did not run: {e}");
                }
            }
        })
    };
    // The fleet's size, once per period, for capacity forecasts.
    let history = {
        let business = business.clone();
        let period_ms = config.history_sample_secs.max(1) as i64 * 1000;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(period_ms as u64));
            loop {
                tick.tick().await;
                let now = business.now_ms();
                let at = now - now.rem_euclid(period_ms);
                if let Err(e) = business.store.record_history(at).await {
                    tracing::warn!("cannot record the fleet's history: {e}");
                }
            }
        })
    };
    // Starts the piles did not confirm in time are closed from the store, so they are
    // closed even across a restart.
    let sweeper = {
        let business = business.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                if let Err(e) = business.fail_unconfirmed_starts().await {
                    tracing::warn!("cannot check unconfirmed starts: {e}");
                }
                if let Err(e) = business.push_due_tariffs().await {
                    tracing::warn!("cannot push the tariffs taking effect: {e}");
                }
            }
        })
    };
    let control_replicas = if config.control.is_empty() {
        None
    } else {
        Some(pylon_service::control_link::Replicas::new(
            &config.control,
            config.cluster_token.clone(),
        )?)
    };
    let watcher = tokio::spawn(watch_alarms(
        business.clone(),
        config.app_id.clone(),
        targets,
        control_replicas,
        Duration::from_secs(u64::from(config.alarms.check_secs.max(1))),
    ));
    let member = (!config.control.is_empty()).then(|| {
        tokio::spawn(membership::run(
            config.clone(),
            directory.clone(),
            stopped.clone(),
        ))
    });
    tracing::info!(
        app = %config.app_id, store = store.backend(), grpc = %config.grpc_address(),
        http = %config.http_listen, "pylon-app started"
    );

    shutdown.await;
    tracing::info!("stopping");
    sweeper.abort();
    watcher.abort();
    retention.abort();
    history.abort();
    let _ = stop.send(true);
    if let Some(member) = member {
        let _ = tokio::time::timeout(Duration::from_secs(3), member).await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), grpc).await;
    let _ = tokio::time::timeout(Duration::from_secs(3), http).await;
    // After the edges' streams closed: the last statuses and events are written.
    let _ = stop_ingest.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), ingest).await;
    auditor.flush(Duration::from_secs(5)).await;
    tracing::info!("pylon-app stopped");
    Ok(())
}
