//! The scheduled service, `pylon-backup`: a backup every `schedule.every_minutes`, each one
//! verified and old ones pruned, with the age of the newest verified backup per repository
//! on `/metrics` (the shipped alert `PylonBackupStale` fires when it is older than the
//! schedule allows) and an error in the log when it is.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::Parser;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::config::BackupConfig;
use crate::Backups;

const ABOUT: &str = "\
pylon-backup takes Pylon's backups on a schedule: the registry, the store and the
configuration and key files named in its settings file, each backup encrypted under the
backup key, checksummed, and copied to every repository (two at least). Each new backup is
verified (restored into a scratch folder and checked), and all but the newest `keep` are
removed from each repository.

/metrics shows, per repository, when the newest verified backup was taken; the shipped
alert PylonBackupStale fires when it is older than the schedule allows. /readyz is ready
while at least two repositories can be written.

One-off backups, listing, verifying and restoring: pylonctl backup --help.

Example:
  pylonctl backup keygen --out /etc/pylon/backup.key
  pylon-backup --config /etc/pylon/backup.toml --listen 127.0.0.1:7480";

#[derive(Debug, Parser)]
#[command(name = "pylon-backup", version, about = "Take Pylon's backups on a schedule", long_about = ABOUT)]
pub struct Cli {
    /// The backup settings file (TOML; see the README's Backups section).
    #[arg(long, env = "PYLON_BACKUP_CONFIG")]
    pub config: PathBuf,
    /// Where to serve /metrics, /healthz and /readyz.
    #[arg(long, default_value = "127.0.0.1:7480")]
    pub listen: SocketAddr,
    /// Take one backup (verify and prune as scheduled) and exit.
    #[arg(long)]
    pub once: bool,
    #[command(flatten)]
    pub log: pylon_service::logging::LogArgs,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RepoLabel {
    repository: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

/// What the service shows on /metrics.
#[derive(Default)]
pub struct Metrics {
    runs: Family<ResultLabel, Counter>,
    last_success: Gauge<f64, std::sync::atomic::AtomicU64>,
    last_size: Gauge,
    last_duration: Gauge<f64, std::sync::atomic::AtomicU64>,
    schedule: Gauge,
    newest_verified: Family<RepoLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
    verified_age: Family<RepoLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
    usable: Gauge,
}

impl Metrics {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "pylon_backup_runs",
            "Scheduled backups by outcome (ok: stored everywhere and verified; partial: stored somewhere; failed)",
            self.runs.clone(),
        );
        registry.register(
            "pylon_backup_last_success_timestamp_seconds",
            "When the last backup stored in every repository finished",
            self.last_success.clone(),
        );
        registry.register(
            "pylon_backup_last_size_bytes",
            "Content size of the last backup",
            self.last_size.clone(),
        );
        registry.register(
            "pylon_backup_last_duration_seconds",
            "How long the last backup (with its verification) took",
            self.last_duration.clone(),
        );
        registry.register(
            "pylon_backup_schedule_seconds",
            "The interval between scheduled backups",
            self.schedule.clone(),
        );
        registry.register(
            "pylon_backup_newest_verified_timestamp_seconds",
            "When the newest backup that passed verification was taken, per repository (0: none)",
            self.newest_verified.clone(),
        );
        registry.register(
            "pylon_backup_verified_age_seconds",
            "Age of the newest backup that passed verification, per repository",
            self.verified_age.clone(),
        );
        registry.register(
            "pylon_backup_repositories_usable",
            "Repositories that can be written now",
            self.usable.clone(),
        );
    }
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The newest verified backup's creation time (Unix seconds) per repository, and the
/// newest complete backup's over all.
fn survey(backups: &Backups) -> (Vec<(String, Option<f64>)>, Option<f64>) {
    let mut newest_any: Option<f64> = None;
    let per_repo = backups
        .list()
        .into_iter()
        .map(|(name, listed)| {
            let listed = listed.unwrap_or_default();
            for b in &listed {
                if let Some(m) = &b.manifest {
                    let at = m.created_at as f64 / 1000.0;
                    newest_any = Some(newest_any.map_or(at, |n: f64| n.max(at)));
                }
            }
            let verified = listed
                .iter()
                .rev()
                .find(|b| b.verified.as_ref().is_some_and(|v| v.ok))
                .and_then(|b| b.manifest.as_ref())
                .map(|m| m.created_at as f64 / 1000.0);
            (name, verified)
        })
        .collect();
    (per_repo, newest_any)
}

/// Refreshes the per-repository gauges; logs an error for each stale repository.
fn refresh(backups: &Backups, metrics: &Metrics) -> Option<f64> {
    let every = backups.config.schedule.every_minutes as f64 * 60.0;
    let (per_repo, newest) = survey(backups);
    let now = now_secs();
    for (name, verified) in per_repo {
        let label = RepoLabel {
            repository: name.clone(),
        };
        metrics
            .newest_verified
            .get_or_create(&label)
            .set(verified.unwrap_or(0.0));
        let age = verified.map_or(f64::INFINITY, |v| (now - v).max(0.0));
        metrics
            .verified_age
            .get_or_create(&label)
            .set(if age.is_finite() { age } else { -1.0 });
        if age > allowed_age(every) {
            tracing::error!(repository = %name, age_secs = if age.is_finite() { age as i64 } else { -1 }, "the newest verified backup is older than the schedule allows");
        }
    }
    let (usable, _) = backups.repositories();
    metrics.usable.set(usable.len() as i64);
    newest
}

/// How old the newest verified backup may be: one interval, the run itself, and slack.
pub fn allowed_age(every_secs: f64) -> f64 {
    every_secs * 1.5 + 600.0
}

/// One scheduled run: a backup, its verification, pruning. Returns the outcome's label.
async fn run_once(backups: &Arc<Backups>, metrics: &Metrics) -> &'static str {
    let started = std::time::Instant::now();
    let created = match backups.create().await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "backup failed");
            return "failed";
        }
    };
    let id = created.manifest.id.clone();
    for (repo, result) in &created.stored {
        if let Err(e) = result {
            tracing::error!(%id, repository = %repo, error = %e, "backup not stored in this repository");
        }
    }
    metrics.last_size.set(created.manifest.size() as i64);
    let mut verified_everywhere = true;
    if backups.config.schedule.verify {
        let b = backups.clone();
        let id2 = id.clone();
        match tokio::task::spawn_blocking(move || b.verify(Some(&id2))).await {
            Ok(outcomes) => {
                for o in outcomes {
                    match &o.result {
                        Ok(what) => {
                            tracing::info!(%id, repository = %o.repository, %what, "backup verified")
                        }
                        Err(e) => {
                            verified_everywhere = false;
                            tracing::error!(%id, repository = %o.repository, error = %e, "backup failed verification");
                        }
                    }
                }
            }
            Err(e) => {
                verified_everywhere = false;
                tracing::error!(error = %e, "the verification task failed");
            }
        }
    }
    let b = backups.clone();
    if let Ok(pruned) = tokio::task::spawn_blocking(move || b.prune()).await {
        for (repo, result) in pruned {
            match result {
                Ok(ids) if !ids.is_empty() => {
                    tracing::info!(repository = %repo, removed = ?ids, "old backups removed")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(repository = %repo, error = %e, "pruning failed"),
            }
        }
    }
    metrics.last_duration.set(started.elapsed().as_secs_f64());
    if created.everywhere() && verified_everywhere {
        metrics.last_success.set(now_secs());
        tracing::info!(%id, bytes = created.manifest.size(), secs = started.elapsed().as_secs(), "backup done");
        "ok"
    } else {
        "partial"
    }
}

/// The pause before a failed run is tried again.
const RETRY_AFTER: Duration = Duration::from_secs(300);

/// The service's process.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let config = BackupConfig::load(&cli.config)?;
    let backups = Arc::new(Backups::open(config)?);
    let metrics = Arc::new(Metrics::default());
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    let registry = Arc::new(registry);
    let every = Duration::from_secs(backups.config.schedule.every_minutes * 60);
    metrics.schedule.set(every.as_secs() as i64);
    pylon_service::process::serve_until_signalled("pylon-backup", 2, move |shutdown| async move {
        let listener = pylon_service::process::listen(cli.listen, "metrics").await?;
        let (m, r) = (metrics.clone(), registry.clone());
        let app = axum::Router::new()
            .route(
                "/healthz",
                axum::routing::get(pylon_service::health::healthz),
            )
            .route(
                "/readyz",
                axum::routing::get(move || {
                    let usable = m.usable.get();
                    async move {
                        pylon_service::health::readiness(if usable >= 2 {
                            Ok(())
                        } else {
                            Err("fewer than two repositories can be written")
                        })
                    }
                }),
            )
            .route(
                "/metrics",
                axum::routing::get(move || {
                    let r = r.clone();
                    async move { pylon_service::health::metrics(&r) }
                }),
            );
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let schedule = async {
            loop {
                let b = backups.clone();
                let newest = tokio::task::spawn_blocking({
                    let m = metrics.clone();
                    move || refresh(&b, &m)
                })
                .await
                .context("surveying the repositories")?;
                let due = newest.map_or(0.0, |n| n + every.as_secs_f64());
                let wait = (due - now_secs()).max(0.0);
                if cli.once || wait <= 0.0 {
                    // In a task of its own: its blocking file work must not hold up the
                    // shutdown signal this loop waits on beside it.
                    let (b, m) = (backups.clone(), metrics.clone());
                    let result = tokio::spawn(async move { run_once(&b, &m).await })
                        .await
                        .unwrap_or("failed");
                    metrics.runs.get_or_create(&ResultLabel { result }).inc();
                    let b = backups.clone();
                    let m = metrics.clone();
                    let _ = tokio::task::spawn_blocking(move || refresh(&b, &m)).await;
                    if cli.once {
                        return if result == "failed" {
                            Err(anyhow::anyhow!("the backup failed"))
                        } else {
                            Ok(())
                        };
                    }
                    if result != "ok" {
                        // Not at once again: whatever failed is likely still failing.
                        tokio::time::sleep(every.min(RETRY_AFTER)).await;
                    }
                    continue;
                }
                tracing::info!(in_secs = wait as u64, "next backup");
                // Wake at least every minute to refresh the ages on /metrics.
                tokio::time::sleep(Duration::from_secs_f64(wait.min(60.0))).await;
            }
        };
        tokio::select! {
            result = schedule => result,
            () = shutdown => {
                tracing::info!("stopping");
                Ok(())
            }
        }
    })
}
