//! The audit log: every state-changing operator action on any service, kept by the
//! control plane as a hash chain (each entry's hash covers the one before, so an entry
//! removed, edited or reordered breaks every hash after it).
//!
//! - `GET /v1/admin/audit?after=<seq>&limit=<n>` -> `Vec<AuditEntry>` (admin)
//! - `GET /v1/admin/audit/verify`                -> [`AuditCheck`] (admin)

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::auth::Role;

/// What happened, as the service that did it tells it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Unix milliseconds.
    pub at_ms: u64,
    /// `control`, `app:<id>` or `edge:<id>`.
    pub service: String,
    /// The user (or `bootstrap`, `insecure-dev`).
    pub actor: String,
    pub role: Role,
    /// The named token used, by id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_id: Option<String>,
    /// What was done: `edges.drain`, `users.create`, `piles.remote_start`, ...
    pub action: String,
    /// What it was done to: an edge id, a user name, a pile number, ...
    pub target: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<Value>,
    /// The caller's address, as the service saw it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// A record in its place in the chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub seq: u64,
    #[serde(flatten)]
    pub record: AuditRecord,
    /// The previous entry's hash ([`GENESIS`] for the first).
    pub prev_hash: String,
    /// Hex SHA-256 over `prev_hash`, `seq` and the record.
    pub hash: String,
}

/// The `prev_hash` of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The hash an entry must carry.
pub fn entry_hash(seq: u64, prev_hash: &str, record: &AuditRecord) -> String {
    // serde_json writes a struct's fields in declaration order and a JSON object's keys
    // sorted, so the same record always gives the same text.
    let body = serde_json::to_string(record).unwrap_or_default();
    let text = format!("{prev_hash}\n{seq}\n{body}");
    hex::encode(ring::digest::digest(&ring::digest::SHA256, text.as_bytes()))
}

/// `record` sealed as the entry after (`seq`, `prev_hash`).
pub fn seal(seq: u64, prev_hash: &str, record: AuditRecord) -> AuditEntry {
    let hash = entry_hash(seq, prev_hash, &record);
    AuditEntry {
        seq,
        record,
        prev_hash: prev_hash.to_owned(),
        hash,
    }
}

/// What checking the chain found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditCheck {
    /// Entries read.
    pub entries: u64,
    pub intact: bool,
    /// The first entry that does not fit, and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broken_at: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// The newest entry's hash: write it down elsewhere to detect a chain rewritten
    /// from the start.
    pub head_hash: String,
}

/// Checks a whole chain, in order from the first entry.
pub fn verify(entries: &[AuditEntry]) -> AuditCheck {
    let mut prev = GENESIS.to_owned();
    for (i, entry) in entries.iter().enumerate() {
        let expected_seq = i as u64 + 1;
        let problem = if entry.seq != expected_seq {
            Some(format!(
                "entry {expected_seq} is missing (found {} in its place)",
                entry.seq
            ))
        } else if entry.prev_hash != prev {
            Some("its previous hash is not the hash of the entry before".to_owned())
        } else if entry.hash != entry_hash(entry.seq, &entry.prev_hash, &entry.record) {
            Some("its content does not match its hash (edited)".to_owned())
        } else {
            None
        };
        if let Some(problem) = problem {
            return AuditCheck {
                entries: entries.len() as u64,
                intact: false,
                broken_at: Some(expected_seq),
                problem: Some(problem),
                head_hash: prev,
            };
        }
        prev = entry.hash.clone();
    }
    AuditCheck {
        entries: entries.len() as u64,
        intact: true,
        broken_at: None,
        problem: None,
        head_hash: prev,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(action: &str) -> AuditRecord {
        AuditRecord {
            at_ms: 1,
            service: "control".into(),
            actor: "ana".into(),
            role: Role::Operator,
            token_id: None,
            action: action.into(),
            target: "edge-1".into(),
            before: Some(serde_json::json!({"draining": false, "a": 1})),
            after: Some(serde_json::json!({"draining": true})),
            source: Some("127.0.0.1:5000".into()),
        }
    }

    fn chain(n: u64) -> Vec<AuditEntry> {
        let mut prev = GENESIS.to_owned();
        (1..=n)
            .map(|seq| {
                let e = seal(seq, &prev, record(&format!("action-{seq}")));
                prev = e.hash.clone();
                e
            })
            .collect()
    }

    #[test]
    fn an_untouched_chain_verifies() {
        let c = chain(5);
        let check = verify(&c);
        assert!(check.intact, "{check:?}");
        assert_eq!((check.entries, check.head_hash), (5, c[4].hash.clone()));
        assert!(verify(&[]).intact);
    }

    #[test]
    fn an_edited_entry_is_found() {
        let mut c = chain(5);
        c[2].record.target = "edge-2".into();
        let check = verify(&c);
        assert_eq!((check.intact, check.broken_at), (false, Some(3)));
        // Re-hashing the edited entry breaks the next one's link instead.
        c[2].hash = entry_hash(3, &c[2].prev_hash, &c[2].record);
        assert_eq!(verify(&c).broken_at, Some(4));
    }

    #[test]
    fn a_removed_or_reordered_entry_is_found() {
        let mut c = chain(5);
        c.remove(1);
        assert_eq!(verify(&c).broken_at, Some(2));
        let mut c = chain(5);
        c.swap(1, 2);
        assert_eq!(verify(&c).broken_at, Some(2));
    }

    #[test]
    fn the_hash_survives_a_round_trip_through_json() {
        let c = chain(3);
        let text = serde_json::to_string(&c).expect("json");
        let back: Vec<AuditEntry> = serde_json::from_str(&text).expect("json");
        assert!(verify(&back).intact);
    }
}
