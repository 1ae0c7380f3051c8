//! A backup's manifest: what it holds, each part's checksums, and a MAC under the backup
//! key, so a manifest that was changed (or written with another key) is refused before any
//! of its parts is trusted. It is written last: a backup without one is incomplete.

use std::path::PathBuf;

use ring::hmac;
use serde::{Deserialize, Serialize};

use crate::seal::BackupKey;

pub const FORMAT: u32 = 1;
pub const FILE: &str = "manifest.json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum PartKind {
    /// The app's SQLite database (`source`: where it lives).
    Sqlite,
    /// The embedded registry's snapshot file.
    RegistrySnapshot,
    /// The embedded registry's journal (changes after the snapshot).
    RegistryJournal,
    /// A snapshot of etcd's keyspace (restore with `etcdutl snapshot restore`, or
    /// `etcdctl snapshot restore` before etcd 3.5).
    EtcdSnapshot,
    /// The control plane's lasting keys in etcd (see [`crate::etcd_keys`]).
    EtcdKeys,
    /// A configuration or key file.
    File,
    /// PostgreSQL: pgBackRest backup sets, kept in pgBackRest's own repositories.
    Pgbackrest { stanza: String, sets: Vec<PgSet> },
}

/// A pgBackRest backup set: its repository's number and its label.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PgSet {
    pub repo: u32,
    pub label: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    #[serde(flatten)]
    pub kind: PartKind,
    /// Where it came from (and where `restore` puts it back).
    pub source: PathBuf,
    /// Its sealed file in the backup's folder; None when it is kept elsewhere (pgBackRest).
    pub file: Option<String>,
    /// SHA-256 and size of the content, and of the sealed file.
    pub sha256: String,
    pub size: u64,
    pub sealed_sha256: String,
    pub sealed_size: u64,
    /// The source's permission bits and (uid, gid), given back on restore (key files stay
    /// private, the store stays its service's).
    #[serde(default)]
    pub mode: Option<u32>,
    #[serde(default)]
    pub owner: Option<(u32, u32)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub id: String,
    /// Unix milliseconds.
    pub created_at: i64,
    pub host: String,
    pub version: String,
    pub parts: Vec<Part>,
    /// HMAC-SHA256 (hex) of the manifest with this field empty.
    #[serde(default)]
    pub mac: String,
}

fn mac_key(key: &BackupKey) -> hmac::Key {
    hmac::Key::new(
        hmac::HMAC_SHA256,
        &key.derive(b"manifest", b"pylon backup manifest v1"),
    )
}

impl Manifest {
    fn unsigned_bytes(&self) -> Vec<u8> {
        let mut copy = self.clone();
        copy.mac.clear();
        // Serializing a plain struct of strings and numbers cannot fail.
        serde_json::to_vec(&copy).unwrap_or_default()
    }

    /// The manifest as stored: signed, pretty JSON.
    pub fn to_signed_json(&self, key: &BackupKey) -> Vec<u8> {
        let mut signed = self.clone();
        signed.mac = hex::encode(hmac::sign(&mac_key(key), &self.unsigned_bytes()).as_ref());
        let mut text = serde_json::to_vec_pretty(&signed).unwrap_or_default();
        text.push(b'\n');
        text
    }

    /// A stored manifest, its MAC checked against `key`.
    pub fn from_signed_json(bytes: &[u8], key: &BackupKey) -> Result<Manifest, String> {
        let manifest: Manifest =
            serde_json::from_slice(bytes).map_err(|e| format!("unreadable manifest: {e}"))?;
        if manifest.format != FORMAT {
            return Err(format!(
                "manifest format {} (this version reads {FORMAT})",
                manifest.format
            ));
        }
        let mac = hex::decode(&manifest.mac).map_err(|_| "the manifest's MAC is not hex")?;
        hmac::verify(&mac_key(key), &manifest.unsigned_bytes(), &mac)
            .map_err(|_| "the manifest was changed, or made with another backup key".to_owned())?;
        Ok(manifest)
    }

    /// A stored manifest read without the key (for listing only: nothing is trusted).
    pub fn peek(bytes: &[u8]) -> Option<Manifest> {
        serde_json::from_slice(bytes).ok()
    }

    /// Total content size.
    pub fn size(&self) -> u64 {
        self.parts.iter().map(|p| p.size).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        Manifest {
            format: FORMAT,
            id: "20261207T180000Z-ab12".into(),
            created_at: 1,
            host: "h".into(),
            version: "0.1.0".into(),
            parts: vec![Part {
                kind: PartKind::Sqlite,
                source: "/var/lib/pylon/app.db".into(),
                file: Some("0-sqlite.sealed".into()),
                sha256: "aa".into(),
                size: 10,
                sealed_sha256: "bb".into(),
                sealed_size: 60,
                mode: Some(0o600),
                owner: Some((0, 0)),
            }],
            mac: String::new(),
        }
    }

    #[test]
    fn a_changed_manifest_or_another_key_is_refused() {
        let key = BackupKey::generate().unwrap();
        let bytes = sample().to_signed_json(&key);
        let back = Manifest::from_signed_json(&bytes, &key).unwrap();
        assert_eq!(back.parts, sample().parts);
        let changed = String::from_utf8(bytes.clone())
            .unwrap()
            .replace("\"size\": 10", "\"size\": 11");
        assert!(Manifest::from_signed_json(changed.as_bytes(), &key).is_err());
        let other = BackupKey::generate().unwrap();
        assert!(Manifest::from_signed_json(&bytes, &other).is_err());
        assert!(Manifest::peek(&bytes).is_some());
    }
}
