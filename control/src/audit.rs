//! The cluster's audit log in the registry, as a hash chain:
//!
//! - `/pylon-audit/entries/<seq, 20 digits>` -> `AuditEntry` (JSON), written once
//! - `/pylon-audit/head`                     -> [`Head`]: a hint of the newest entry
//!
//! Appending creates the next entry key only if it does not exist, so two replicas
//! appending at once never write the same place: the loser reads the winner's entry
//! and goes after it. The head may lag (a replica died between the two writes) and is
//! repaired by the next append; the entries are the truth.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use pylon_proto::api::audit::{seal, verify, AuditCheck, AuditEntry, AuditRecord, GENESIS};
use serde::{Deserialize, Serialize};

use crate::registry::{Registry, RegistryError};

const ENTRIES: &str = "/pylon-audit/entries/";
const HEAD: &str = "/pylon-audit/head";
/// Appends racing with others give up after this many tries.
const MAX_TRIES: usize = 64;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Head {
    pub seq: u64,
    pub hash: String,
}

fn entry_key(seq: u64) -> String {
    format!("{ENTRIES}{seq:020}")
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("registry: {0}")]
    Registry(#[from] RegistryError),
    #[error("audit entry {0} is unreadable: {1}")]
    Corrupt(String, String),
    #[error("too many appends at once; try again")]
    Contended,
}

impl AuditError {
    /// Whether the same append may succeed later (the registry is out of reach or busy);
    /// otherwise the entry itself, or the chain, is the problem.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            AuditError::Contended | AuditError::Registry(RegistryError::Unavailable(_))
        )
    }
}

pub struct RegistryAudit {
    registry: Arc<dyn Registry>,
}

impl RegistryAudit {
    pub fn new(registry: Arc<dyn Registry>) -> RegistryAudit {
        RegistryAudit { registry }
    }

    async fn entry(&self, seq: u64) -> Result<Option<AuditEntry>, AuditError> {
        let key = entry_key(seq);
        match self.registry.get(&key).await? {
            None => Ok(None),
            Some(kv) => serde_json::from_slice(&kv.value)
                .map(Some)
                .map_err(|e| AuditError::Corrupt(key, e.to_string())),
        }
    }

    async fn head(&self) -> Result<Head, AuditError> {
        Ok(match self.registry.get(HEAD).await? {
            Some(kv) => serde_json::from_slice(&kv.value)
                .map_err(|e| AuditError::Corrupt(HEAD.into(), e.to_string()))?,
            None => Head {
                seq: 0,
                hash: GENESIS.into(),
            },
        })
    }

    async fn set_head(&self, seq: u64, hash: &str) -> Result<(), AuditError> {
        let value = serde_json::to_vec(&Head {
            seq,
            hash: hash.to_owned(),
        })
        .unwrap_or_default();
        self.registry.put(HEAD, value, None).await?;
        Ok(())
    }

    /// Appends `record` after the newest entry; returns its seq.
    pub async fn append(&self, record: AuditRecord) -> Result<u64, AuditError> {
        let mut head = self.head().await?;
        for _ in 0..MAX_TRIES {
            let entry = seal(head.seq + 1, &head.hash, record.clone());
            let value = serde_json::to_vec(&entry).unwrap_or_default();
            if self
                .registry
                .create(&entry_key(entry.seq), value, None)
                .await?
            {
                self.set_head(entry.seq, &entry.hash).await?;
                return Ok(entry.seq);
            }
            // Someone wrote that place: go after their entry.
            match self.entry(head.seq + 1).await? {
                Some(theirs) => {
                    head = Head {
                        seq: theirs.seq,
                        hash: theirs.hash,
                    }
                }
                None => head = self.head().await?,
            }
        }
        Err(AuditError::Contended)
    }

    /// Entries after `after`, oldest first, at most `limit`.
    pub async fn list(&self, after: u64, limit: usize) -> Result<Vec<AuditEntry>, AuditError> {
        let listing = self.registry.list(ENTRIES).await?;
        let mut entries = Vec::new();
        for kv in listing.items {
            let entry: AuditEntry = serde_json::from_slice(&kv.value)
                .map_err(|e| AuditError::Corrupt(kv.key.clone(), e.to_string()))?;
            if entry.seq > after {
                entries.push(entry);
            }
        }
        entries.sort_by_key(|e| e.seq);
        entries.truncate(limit);
        Ok(entries)
    }

    /// Checks the whole chain, and that the head does not point past its end.
    pub async fn check(&self) -> Result<AuditCheck, AuditError> {
        let listing = self.registry.list(ENTRIES).await?;
        let mut entries = Vec::with_capacity(listing.items.len());
        for kv in &listing.items {
            match serde_json::from_slice::<AuditEntry>(&kv.value) {
                Ok(e) => entries.push(e),
                Err(e) => {
                    return Ok(AuditCheck {
                        entries: listing.items.len() as u64,
                        intact: false,
                        broken_at: None,
                        problem: Some(format!("{} is unreadable: {e}", kv.key)),
                        head_hash: String::new(),
                    })
                }
            }
        }
        entries.sort_by_key(|e| e.seq);
        let mut check = verify(&entries);
        let head = self.head().await?;
        if check.intact && head.seq > check.entries {
            check.intact = false;
            check.broken_at = Some(check.entries + 1);
            check.problem = Some(format!(
                "the head names entry {} but the chain ends at {}: entries were removed from the end",
                head.seq, check.entries
            ));
        }
        Ok(check)
    }
}

impl pylon_service::audit::AuditSink for RegistryAudit {
    fn append(
        &self,
        record: AuditRecord,
    ) -> Pin<Box<dyn Future<Output = Result<u64, pylon_service::audit::AppendError>> + Send + '_>>
    {
        Box::pin(async move {
            RegistryAudit::append(self, record).await.map_err(|e| {
                if e.is_transient() {
                    pylon_service::audit::AppendError::Retry(e.to_string())
                } else {
                    pylon_service::audit::AppendError::Refused(e.to_string())
                }
            })
        })
    }
}

#[cfg(test)]
mod tests;
