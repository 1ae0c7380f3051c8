//! The registry: a small key-value store with leases, revisions and prefix watches, behind
//! one trait with two backends.
//!
//! - [`embedded::EmbeddedRegistry`]: in this process, persisted to a local file. One machine,
//!   zero set-up (the default).
//! - [`etcd::EtcdRegistry`]: an etcd cluster (3 or 5 members) for many machines.
//!
//! The control plane keeps only membership, the shard map and operator settings here:
//! never anything per message or per heartbeat.

pub mod embedded;
pub mod etcd;

use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;

pub type LeaseId = i64;
/// A registry-wide counter that grows with every change (etcd's revision).
pub type Revision = i64;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    /// The revision of the change that wrote this value.
    pub mod_revision: Revision,
    /// The lease the key is attached to; it is deleted when the lease ends.
    pub lease: Option<LeaseId>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchEvent {
    Put(KeyValue),
    Delete { key: String, revision: Revision },
}

impl WatchEvent {
    pub fn revision(&self) -> Revision {
        match self {
            WatchEvent::Put(kv) => kv.mod_revision,
            WatchEvent::Delete { revision, .. } => *revision,
        }
    }

    pub fn key(&self) -> &str {
        match self {
            WatchEvent::Put(kv) => &kv.key,
            WatchEvent::Delete { key, .. } => key,
        }
    }
}

/// Every key under a prefix, as of `revision`.
#[derive(Clone, Debug, Default)]
pub struct Listing {
    pub revision: Revision,
    pub items: Vec<KeyValue>,
}

/// Events after the revision a watch started from, in revision order. The channel closes
/// when the watch breaks (registry unreachable, history compacted): list again, then watch
/// from the listing's revision.
pub type WatchStream = mpsc::Receiver<WatchEvent>;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("lease {0:#x} is not known to the registry (it expired or was revoked)")]
    LeaseNotFound(LeaseId),
    #[error("the registry is unavailable: {0}")]
    Unavailable(String),
    #[error("the registry's history before revision {0} is compacted; list again")]
    Compacted(Revision),
    #[error("registry storage failed: {0}")]
    Storage(String),
}

pub type Result<T, E = RegistryError> = std::result::Result<T, E>;

#[async_trait]
pub trait Registry: Send + Sync + 'static {
    /// `"embedded"` or `"etcd"`, for logs and `/v1/admin/status`.
    fn backend(&self) -> &'static str;

    /// A new lease that ends `ttl` after its last keep-alive.
    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId>;
    /// Refreshes a lease and returns its TTL; [`RegistryError::LeaseNotFound`] once it ended.
    async fn keep_alive(&self, lease: LeaseId) -> Result<Duration>;
    /// Ends a lease at once, deleting its keys. Revoking an unknown lease is not an error.
    async fn revoke(&self, lease: LeaseId) -> Result<()>;

    async fn get(&self, key: &str) -> Result<Option<KeyValue>>;
    /// Every key starting with `prefix`, sorted by key.
    async fn list(&self, prefix: &str) -> Result<Listing>;
    /// Writes `key`, attached to `lease` if given; returns the revision of the write.
    async fn put(&self, key: &str, value: Vec<u8>, lease: Option<LeaseId>) -> Result<Revision>;
    /// Writes `key` only if it does not exist; `Ok(false)` if it did.
    async fn create(&self, key: &str, value: Vec<u8>, lease: Option<LeaseId>) -> Result<bool>;
    /// Writes `key` only while `guard` holds exactly `guard_value` (a write fenced by
    /// leadership); `Ok(false)` if it did not.
    async fn put_guarded(
        &self,
        guard: &str,
        guard_value: &[u8],
        key: &str,
        value: Vec<u8>,
    ) -> Result<bool>;
    /// Deletes `key`; deleting a missing key is not an error.
    async fn delete(&self, key: &str) -> Result<()>;
    /// Changes under `prefix` with a revision greater than `after`.
    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream>;
}
