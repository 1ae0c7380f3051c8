//! Disaster recovery between two sites, each a whole Pylon (control plane, app, edges,
//! store). The primary site takes chargers; the standby site's PostgreSQL streams from
//! the primary's, its control plane copies the primary's operators and tokens
//! ([`mirror`]), and its dispatch turns chargers away. `pylonctl dr promote` on the
//! standby promotes its store ([`store`]) and makes it the primary: its dispatch then
//! sends chargers to its own edges.
//!
//! The role lives in the site's registry (`/pylon/dr/role`), so that every replica agrees
//! and a restart keeps it; `[dr] role` is only where a site starts. Replicas read it from
//! their view of the registry, which the registry watch keeps current ([`crate::mirror`]).

mod http;
mod mirror;
mod peer;
mod store;

pub use http::{refuse_identity_changes_on_a_standby, routes};

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pylon_proto::api::dr::{MirrorStatus, SiteRole};
use serde::{Deserialize, Serialize};

use crate::node::ControlNode;

/// The site's role, written on promotion and demotion.
pub const ROLE_KEY: &str = "/pylon/dr/role";

/// How often each replica looks at the role in its view of the registry, at least (it
/// also looks at each change of the view).
const ROLE_EVERY: Duration = Duration::from_secs(1);

/// `[dr]`: this site's part in disaster recovery. Without `peer`, the site is on its own
/// (always primary) and nothing here runs.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct DrConfig {
    /// This site's name, shown by `pylonctl dr status`.
    pub site: String,
    /// The role this site starts in until it is promoted or demoted: `primary` or
    /// `standby`.
    pub role: SiteRole,
    /// The other site's control plane (e.g. `https://10.1.0.5:7400`).
    pub peer: Option<String>,
    /// A file holding a token of the other site with the admin role: the standby copies
    /// the primary's operators with it, and checks the primary before a promotion.
    pub peer_token_file: Option<PathBuf>,
    /// The CA of the other site's certificate (default: `[cluster_tls] ca`).
    pub peer_ca: Option<PathBuf>,
    /// This site's PostgreSQL server, for its replication state and its promotion
    /// (a role allowed `pg_promote()`; a primary's status needs `pg_monitor`), e.g.
    /// `postgres://pylon_dr@10.1.0.7:5432/postgres`.
    pub store_url: Option<String>,
    /// A file holding the password for `store_url`.
    pub store_password_file: Option<PathBuf>,
    /// The CA of the store's certificate; without it, the link is in the clear (allowed
    /// only to this machine).
    pub store_ca: Option<PathBuf>,
    /// How often a standby copies the primary's registry, in seconds.
    pub mirror_secs: u64,
}

impl Default for DrConfig {
    fn default() -> Self {
        DrConfig {
            site: "main".into(),
            role: SiteRole::Primary,
            peer: None,
            peer_token_file: None,
            peer_ca: None,
            store_url: None,
            store_password_file: None,
            store_ca: None,
            mirror_secs: 5,
        }
    }
}

impl DrConfig {
    /// Whether this site has a partner site at all.
    pub fn enabled(&self) -> bool {
        self.peer.is_some()
    }

    pub fn validate(&self, insecure_dev: bool) -> anyhow::Result<()> {
        anyhow::ensure!(self.mirror_secs >= 1, "[dr] mirror_secs must be at least 1");
        if let Some(peer) = &self.peer {
            anyhow::ensure!(
                peer.starts_with("http://") || peer.starts_with("https://"),
                "[dr] peer must be an http:// or https:// URL, not {peer:?}"
            );
            anyhow::ensure!(
                self.peer_token_file.is_some(),
                "[dr] peer_token_file is needed with a peer: the other site's API takes no \
                 caller without a token"
            );
            if let Some(file) = &self.peer_token_file {
                let token = std::fs::read_to_string(file)
                    .map_err(|e| anyhow::anyhow!("[dr] peer_token_file {}: {e}", file.display()))?;
                anyhow::ensure!(
                    !token.trim().is_empty(),
                    "[dr] peer_token_file {} is empty",
                    file.display()
                );
            }
            anyhow::ensure!(
                insecure_dev || peer.starts_with("https://"),
                "[dr] peer {peer:?} is plain HTTP: tokens and password hashes would cross \
                 between sites in the clear. Use https://, or --insecure-dev on a \
                 developer's machine"
            );
        } else {
            anyhow::ensure!(
                self.role == SiteRole::Primary,
                "[dr] role = \"standby\" needs a peer (the primary site) to follow"
            );
        }
        anyhow::ensure!(
            self.role == SiteRole::Primary || self.store_url.is_some(),
            "[dr] role = \"standby\" needs store_url: a promotion must promote the site's \
             store, or its app instances would wait on a read-only one"
        );
        if let Some(url) = &self.store_url {
            let parsed: tokio_postgres::Config = url
                .parse()
                .map_err(|e| anyhow::anyhow!("[dr] store_url is not a PostgreSQL URL: {e}"))?;
            anyhow::ensure!(
                self.store_ca.is_some()
                    || insecure_dev
                    || pylon_service::postgres::is_local(&parsed),
                "[dr] store_url is on another machine and no store_ca is given: the link \
                 would be in the clear"
            );
        }
        Ok(())
    }
}

/// The role as a replica knows it. `Unknown` until the registry was read once, when the
/// site has a partner: a site must not take chargers on a stale guess.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KnownRole {
    Unknown,
    Known(SiteRole),
}

/// The role record under [`ROLE_KEY`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleRecord {
    pub role: SiteRole,
    /// When it was set (Unix ms).
    pub since_ms: i64,
    /// Who set it.
    pub by: String,
}

/// What every replica keeps of disaster recovery.
pub struct DrState {
    role: AtomicU8,
    since_ms: AtomicI64,
    /// A primary asked the other site whether it was replaced, since this process started.
    peer_checked: AtomicBool,
    /// The registry revision of this replica's own last role write: the view is not
    /// believed about the role until it has caught up with it.
    written_revision: AtomicI64,
    pub(crate) mirror: Mutex<MirrorStatus>,
    pub(crate) peer: Option<peer::Peer>,
}

const UNKNOWN: u8 = 0;
const PRIMARY: u8 = 1;
const STANDBY: u8 = 2;

impl DrState {
    pub fn new(config: &DrConfig, cluster_ca: Option<&std::path::Path>) -> Self {
        let peer = config.peer.as_deref().map(|url| {
            peer::Peer::new(
                url,
                config.peer_token_file.clone().unwrap_or_default(),
                config.peer_ca.as_deref().or(cluster_ca),
            )
        });
        DrState {
            role: AtomicU8::new(if config.enabled() { UNKNOWN } else { PRIMARY }),
            since_ms: AtomicI64::new(0),
            peer_checked: AtomicBool::new(false),
            written_revision: AtomicI64::new(0),
            mirror: Mutex::new(MirrorStatus::default()),
            peer,
        }
    }

    pub fn role(&self) -> KnownRole {
        match self.role.load(Ordering::Relaxed) {
            PRIMARY => KnownRole::Known(SiteRole::Primary),
            STANDBY => KnownRole::Known(SiteRole::Standby),
            _ => KnownRole::Unknown,
        }
    }

    /// Whether this site's dispatch may send chargers to its edges.
    pub fn takes_chargers(&self) -> bool {
        self.role() == KnownRole::Known(SiteRole::Primary)
    }

    fn set_role(&self, role: SiteRole, since_ms: i64) {
        let code = match role {
            SiteRole::Primary => PRIMARY,
            SiteRole::Standby => STANDBY,
        };
        self.role.store(code, Ordering::Relaxed);
        self.since_ms.store(since_ms, Ordering::Relaxed);
    }

    pub fn since_ms(&self) -> i64 {
        self.since_ms.load(Ordering::Relaxed)
    }
}

/// The role written in the registry, else the configured one.
pub fn role_from(record: Option<&[u8]>, configured: SiteRole) -> Result<(SiteRole, i64), String> {
    match record {
        None => Ok((configured, 0)),
        Some(bytes) => serde_json::from_slice::<RoleRecord>(bytes)
            .map(|r| (r.role, r.since_ms))
            .map_err(|e| format!("{ROLE_KEY} is unreadable: {e}")),
    }
}

/// Follows the role in the registry; on a standby's leader, copies the primary's registry.
pub async fn run(node: Arc<ControlNode>) {
    if !node.config.dr.enabled() {
        return;
    }
    let every = Duration::from_secs(node.config.dr.mirror_secs);
    let mut last_copy: Option<tokio::time::Instant> = None;
    let mut tick = tokio::time::interval(ROLE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The role follows the registry view as soon as it changes; the tick paces the checks
    // of the other site.
    let mut changes = node.changes.subscribe();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            changed = changes.changed() => if changed.is_err() { return },
        }
        refresh_role(&node).await;
        let standby_leader = node.dr.role() == KnownRole::Known(SiteRole::Standby)
            && node.is_leader.load(Ordering::Relaxed);
        let primary_leader = node.dr.role() == KnownRole::Known(SiteRole::Primary)
            && node.is_leader.load(Ordering::Relaxed);
        let due = last_copy.is_none_or(|at| at.elapsed() >= every);
        if primary_leader && due {
            last_copy = Some(tokio::time::Instant::now());
            stand_down_if_superseded(&node, node.dr.since_ms()).await;
        }
        if standby_leader && due {
            last_copy = Some(tokio::time::Instant::now());
            mirror::copy_once(&node).await;
            watch_store(&node).await;
        } else if !standby_leader {
            node.metrics.dr_store_streaming.set(-1);
            node.metrics.dr_store_behind_bytes.set(0);
        }
    }
}

/// Exports whether the standby's store follows the primary's, for the alert rules.
async fn watch_store(node: &ControlNode) {
    if node.config.dr.store_url.is_none() {
        return;
    }
    let status = store::status(&node.config.dr).await;
    let receiver = status.receiver.as_ref();
    let streaming = status.error.is_none()
        && status.in_recovery
        && receiver.and_then(|r| r.status.as_deref()) == Some("streaming");
    node.metrics.dr_store_streaming.set(i64::from(streaming));
    node.metrics
        .dr_store_behind_bytes
        .set(receiver.map_or(0, |r| r.behind_bytes));
    if let Some(e) = &status.error {
        tracing::warn!("cannot read this standby's store: {e}");
    }
}

async fn refresh_role(node: &ControlNode) {
    if !node.ready.load(Ordering::Relaxed) {
        return;
    }
    let view = node.view.load();
    if view.state.revision < node.dr.written_revision.load(Ordering::Relaxed) {
        return;
    }
    match role_from(view.state.value(ROLE_KEY), node.config.dr.role) {
        Ok((role, since)) => {
            // A primary coming back (a restart, a healed partition) asks the other site
            // before it takes a charger: it may have been replaced meanwhile.
            if role == SiteRole::Primary
                && !node.dr.peer_checked.load(Ordering::Relaxed)
                && stand_down_if_superseded(node, since).await
            {
                return;
            }
            node.dr.peer_checked.store(true, Ordering::Relaxed);
            let before = node.dr.role();
            node.dr.set_role(role, since);
            if before != KnownRole::Known(role) {
                tracing::info!(role = role.as_str(), "this site's role");
            }
            node.metrics.set_dr_role(role);
        }
        Err(e) => tracing::error!("{e}"),
    }
}

/// Makes this primary site a standby when the other site answers that it was promoted
/// after this one became primary: two primaries would take the same chargers and write
/// diverging stores. An unreachable other site changes nothing. Returns whether it stood
/// down.
async fn stand_down_if_superseded(node: &ControlNode, our_since_ms: i64) -> bool {
    let Some(peer) = &node.dr.peer else {
        return false;
    };
    let Ok(theirs) = peer.status().await else {
        return false;
    };
    if !superseded(our_since_ms, theirs.role, theirs.role_since_ms) {
        return false;
    }
    tracing::error!(
        peer = %peer.url,
        their_promotion_ms = theirs.role_since_ms,
        "the other site was promoted after this one became primary: this site stands down \
         to standby and takes no chargers. Rebuild its store as a standby of the other site's"
    );
    match write_role(
        node,
        SiteRole::Standby,
        "fenced: the other site was promoted",
    )
    .await
    {
        Ok(()) => true,
        Err(e) => {
            // Not taking chargers matters more than the record of it.
            tracing::error!("cannot write the standby role: {e:#}");
            node.dr.set_role(SiteRole::Standby, now_ms());
            true
        }
    }
}

/// Whether the other site's role replaces ours: it is primary too, and became so later.
pub fn superseded(our_since_ms: i64, their_role: SiteRole, their_since_ms: i64) -> bool {
    their_role == SiteRole::Primary && their_since_ms > our_since_ms
}

/// Writes a new role for this site.
pub(crate) async fn write_role(node: &ControlNode, role: SiteRole, by: &str) -> anyhow::Result<()> {
    let record = RoleRecord {
        role,
        since_ms: now_ms(),
        by: by.to_owned(),
    };
    let revision = node
        .registry
        .put(ROLE_KEY, serde_json::to_vec(&record)?, None)
        .await
        .map_err(|e| anyhow::anyhow!("writing the site's role: {e}"))?;
    node.dr
        .written_revision
        .fetch_max(revision, Ordering::Relaxed);
    node.dr.set_role(role, record.since_ms);
    node.metrics.set_dr_role(role);
    Ok(())
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registry_wins_over_the_configuration() {
        assert_eq!(
            role_from(None, SiteRole::Standby),
            Ok((SiteRole::Standby, 0))
        );
        let record = serde_json::to_vec(&RoleRecord {
            role: SiteRole::Primary,
            since_ms: 7,
            by: "ana".into(),
        })
        .unwrap();
        assert_eq!(
            role_from(Some(&record), SiteRole::Standby),
            Ok((SiteRole::Primary, 7))
        );
        assert!(role_from(Some(b"{"), SiteRole::Primary).is_err());
    }

    #[test]
    fn a_partnered_site_takes_no_chargers_before_it_knows_its_role() {
        let alone = DrState::new(&DrConfig::default(), None);
        assert!(alone.takes_chargers());
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "t").unwrap();
        let config = DrConfig {
            peer: Some("http://127.0.0.1:1".into()),
            peer_token_file: Some(token),
            ..DrConfig::default()
        };
        let partnered = DrState::new(&config, None);
        assert_eq!(partnered.role(), KnownRole::Unknown);
        assert!(!partnered.takes_chargers());
        partnered.set_role(SiteRole::Standby, 1);
        assert!(!partnered.takes_chargers());
        partnered.set_role(SiteRole::Primary, 2);
        assert!(partnered.takes_chargers());
    }

    #[test]
    fn a_primary_stands_down_only_for_a_later_promotion() {
        assert!(superseded(0, SiteRole::Primary, 1_700));
        assert!(superseded(1_000, SiteRole::Primary, 1_700));
        assert!(
            !superseded(2_000, SiteRole::Primary, 1_700),
            "we were promoted later"
        );
        assert!(
            !superseded(0, SiteRole::Primary, 0),
            "both configured primary"
        );
        assert!(!superseded(0, SiteRole::Standby, 1_700));
    }

    #[test]
    fn configuration_is_checked() {
        let standby_alone = DrConfig {
            role: SiteRole::Standby,
            ..DrConfig::default()
        };
        assert!(standby_alone.validate(false).is_err());
        let dir = tempfile::tempdir().unwrap();
        let (token, empty) = (dir.path().join("token"), dir.path().join("empty"));
        std::fs::write(&token, "secret\n").unwrap();
        std::fs::write(&empty, "\n").unwrap();
        let plain_peer = DrConfig {
            peer: Some("http://10.0.0.1:7400".into()),
            peer_token_file: Some(token.clone()),
            ..DrConfig::default()
        };
        assert!(plain_peer.validate(false).is_err());
        assert!(plain_peer.validate(true).is_ok());
        for missing_or_empty in [dir.path().join("nothing"), empty] {
            let config = DrConfig {
                peer_token_file: Some(missing_or_empty),
                ..plain_peer.clone()
            };
            assert!(config.validate(true).is_err());
        }
        let no_token = DrConfig {
            peer: Some("https://10.0.0.1:7400".into()),
            ..DrConfig::default()
        };
        assert!(no_token.validate(false).is_err());
        let remote_store = DrConfig {
            store_url: Some("postgres://dr@10.0.0.7/postgres".into()),
            ..DrConfig::default()
        };
        assert!(remote_store.validate(false).is_err());
        let local_store = DrConfig {
            store_url: Some("postgres://dr@127.0.0.1:5432/postgres".into()),
            ..DrConfig::default()
        };
        assert!(local_store.validate(false).is_ok());
    }
}
