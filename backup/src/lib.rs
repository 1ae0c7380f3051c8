//! Pylon's backups: the registry (an etcd snapshot, or the embedded registry's files), the
//! store (SQLite through its online backup API; PostgreSQL through pgBackRest) and the
//! configuration and key material needed to run again. Every part is sealed (AES-256-GCM
//! under the backup key, [`seal`]) and checksummed (SHA-256 of the content and of the
//! sealed file, in a MAC'd [`manifest`]), and each backup is copied to every repository.
//!
//! `pylonctl backup create|list|verify|restore` and the scheduled service `pylon-backup`
//! ([`schedule`]) are thin layers over [`Backups`].

pub mod config;
pub mod etcd_keys;
pub mod manifest;
mod pgbackrest;
pub mod repo;
pub mod restore;
pub mod schedule;
pub mod seal;
pub mod sources;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use crate::config::BackupConfig;
use crate::manifest::{Manifest, Part, PartKind};
use crate::repo::{Listed, Repository};
use crate::seal::BackupKey;

pub use crate::restore::{Group, RestoreOptions, Restored, VerifyOutcome};

/// The backup set-up of one site: its settings, its key and its repositories.
pub struct Backups {
    pub config: BackupConfig,
    key: BackupKey,
}

/// What `create` did.
#[derive(Debug)]
pub struct Created {
    pub manifest: Manifest,
    /// Per repository: stored, or why not.
    pub stored: Vec<(String, Result<(), String>)>,
}

impl Created {
    pub fn everywhere(&self) -> bool {
        self.stored.iter().all(|(_, r)| r.is_ok())
    }
}

/// Reads a key file, refusing one that others may read (as ssh does with private keys).
pub fn read_key_file(path: &Path) -> anyhow::Result<BackupKey> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).with_context(|| {
        format!(
            "the backup key file {} cannot be read (make one with `pylonctl backup keygen --out {}`)",
            path.display(),
            path.display()
        )
    })?;
    if meta.permissions().mode() & 0o077 != 0 {
        bail!(
            "the backup key file {} may be read by others: chmod 600 it",
            path.display()
        );
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the backup key file {}", path.display()))?;
    BackupKey::from_text(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// Writes a new backup key to `path` (mode 600); refuses to replace an existing file.
pub fn write_new_key(path: &Path) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let key = BackupKey::generate()?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(key.to_text().as_bytes())?;
    file.sync_all()?;
    Ok(())
}

/// A new backup id: the time (UTC, sortable) and a random suffix.
fn new_id(now: time::OffsetDateTime) -> String {
    let format = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    let stamp = now.format(&format).unwrap_or_else(|_| "0".into());
    let suffix: u16 = {
        let mut b = [0u8; 2];
        use ring::rand::SecureRandom;
        let _ = ring::rand::SystemRandom::new().fill(&mut b);
        u16::from_be_bytes(b)
    };
    format!("{stamp}-{suffix:04x}")
}

fn host_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default()
}

/// A part being staged: its sealed file and what the manifest says of it.
struct Staged {
    part: Part,
    sealed: Option<PathBuf>,
}

fn seal_file(
    key: &BackupKey,
    kind: PartKind,
    source: &Path,
    content: &Path,
    stage: &Path,
    index: usize,
) -> anyhow::Result<Staged> {
    let name = format!("{index}-{}.sealed", kind_name(&kind));
    let sealed_path = stage.join(&name);
    let input =
        std::fs::File::open(content).with_context(|| format!("reading {}", content.display()))?;
    let output = seal::Hashing::new(std::fs::File::create(&sealed_path)?);
    let mut output = output;
    let (sha256, size) = seal::seal(key, input, &mut output)?;
    let (sealed_sha256, sealed_size, file) = output.finish();
    file.sync_all()?;
    let meta = std::fs::metadata(source).ok();
    let (mode, owner) = {
        use std::os::unix::fs::MetadataExt;
        (
            meta.as_ref().map(|m| m.mode() & 0o7777),
            meta.as_ref().map(|m| (m.uid(), m.gid())),
        )
    };
    Ok(Staged {
        part: Part {
            kind,
            source: source.to_owned(),
            file: Some(name),
            sha256,
            size,
            sealed_sha256,
            sealed_size,
            mode,
            owner,
        },
        sealed: Some(sealed_path),
    })
}

pub(crate) fn kind_name(kind: &PartKind) -> &'static str {
    match kind {
        PartKind::Sqlite => "sqlite",
        PartKind::RegistrySnapshot => "registry",
        PartKind::RegistryJournal => "registry-journal",
        PartKind::EtcdSnapshot => "etcd",
        PartKind::EtcdKeys => "etcd-keys",
        PartKind::File => "file",
        PartKind::Pgbackrest { .. } => "pgbackrest",
    }
}

/// Where an etcd snapshot goes back when no folder is given: beside the working directory.
pub const ETCD_SNAPSHOT_FILE: &str = "etcd-snapshot.db";

impl Backups {
    /// The set-up of `config`; fails without a readable key (nothing is done without one).
    pub fn open(config: BackupConfig) -> anyhow::Result<Backups> {
        config.check()?;
        let key = read_key_file(&config.key_file)?;
        Ok(Backups { config, key })
    }

    /// Each repository, or why it cannot be used now (looked at afresh: a disk may have
    /// been mounted or gone since).
    fn repos(&self) -> Vec<Result<Repository, String>> {
        self.config
            .repositories
            .iter()
            .map(|r| Repository::open(r).map_err(|e| format!("{e:#}")))
            .collect()
    }

    /// The repositories that can be used now, and the errors of the others.
    pub fn repositories(&self) -> (Vec<Repository>, Vec<String>) {
        let mut ok = Vec::new();
        let mut errors = Vec::new();
        for r in self.repos() {
            match r {
                Ok(r) => ok.push(r),
                Err(e) => errors.push(e),
            }
        }
        (ok, errors)
    }

    /// Takes a backup of everything configured and stores it in every repository.
    /// Fails when nothing could be stored; a repository that failed is in [`Created`].
    pub async fn create(&self) -> anyhow::Result<Created> {
        let now = time::OffsetDateTime::now_utc();
        let id = new_id(now);
        // Content copies (the SQLite copy, the etcd snapshot) are in clear: a private
        // folder (mode 700) in the temporary directory ($TMPDIR), removed at once.
        let stage = tempfile::Builder::new()
            .prefix("pylon-backup-")
            .tempdir()
            .context("creating a staging folder")?;
        let stage = stage.path();
        let mut staged: Vec<Staged> = Vec::new();
        let key = &self.key;
        if let Some(registry) = &self.config.registry {
            if let Some(snapshot) = &registry.embedded {
                let (snap_copy, journal_copy) = (stage.join("registry"), stage.join("journal"));
                let journal = sources::embedded_registry(snapshot, &snap_copy, &journal_copy)?;
                staged.push(seal_file(
                    key,
                    PartKind::RegistrySnapshot,
                    snapshot,
                    &snap_copy,
                    stage,
                    staged.len(),
                )?);
                if journal {
                    staged.push(seal_file(
                        key,
                        PartKind::RegistryJournal,
                        &sources::journal_of(snapshot),
                        &journal_copy,
                        stage,
                        staged.len(),
                    )?);
                }
                let _ = std::fs::remove_file(&snap_copy);
                let _ = std::fs::remove_file(&journal_copy);
            } else {
                let copy = stage.join("etcd.db");
                sources::etcd_snapshot(&registry.etcd, &copy).await?;
                sources::etcd_snapshot_intact(&copy)?;
                staged.push(seal_file(
                    key,
                    PartKind::EtcdSnapshot,
                    Path::new(ETCD_SNAPSHOT_FILE),
                    &copy,
                    stage,
                    staged.len(),
                )?);
                let _ = std::fs::remove_file(&copy);
                // Pylon's own keys too, which `restore --etcd` writes into a running
                // cluster without any etcd tool.
                let keys = stage.join("etcd-keys.json");
                etcd_keys::export(&registry.etcd, &keys).await?;
                staged.push(seal_file(
                    key,
                    PartKind::EtcdKeys,
                    Path::new(etcd_keys::FILE),
                    &keys,
                    stage,
                    staged.len(),
                )?);
                let _ = std::fs::remove_file(&keys);
            }
        }
        if let Some(store) = &self.config.store {
            if let Some(db) = &store.sqlite {
                let copy = stage.join("store.db");
                let (db2, copy2) = (db.clone(), copy.clone());
                tokio::task::spawn_blocking(move || sources::sqlite(&db2, &copy2))
                    .await
                    .context("the SQLite backup task")??;
                staged.push(seal_file(
                    key,
                    PartKind::Sqlite,
                    db,
                    &copy,
                    stage,
                    staged.len(),
                )?);
                let _ = std::fs::remove_file(&copy);
            }
            if let Some(pg) = &store.pgbackrest {
                let pg = pg.clone();
                let part = tokio::task::spawn_blocking(move || pgbackrest::backup(&pg))
                    .await
                    .context("the pgBackRest task")??;
                staged.push(Staged { part, sealed: None });
            }
        }
        for file in sources::files(&self.config.files)? {
            staged.push(seal_file(
                key,
                PartKind::File,
                &file,
                &file,
                stage,
                staged.len(),
            )?);
        }
        let manifest = Manifest {
            format: manifest::FORMAT,
            id: id.clone(),
            created_at: (now.unix_timestamp_nanos() / 1_000_000) as i64,
            host: host_name(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            parts: staged.iter().map(|s| s.part.clone()).collect(),
            mac: String::new(),
        };
        let signed = manifest.to_signed_json(key);
        let files: Vec<(String, PathBuf)> = staged
            .iter()
            .filter_map(|s| Some((s.part.file.clone()?, s.sealed.clone()?)))
            .collect();
        let mut stored = Vec::new();
        for repo in self.repos() {
            match repo {
                Ok(r) => stored.push((
                    r.name.clone(),
                    r.store(&id, &files, &signed).map_err(|e| format!("{e:#}")),
                )),
                Err(e) => stored.push(("?".into(), Err(e))),
            }
        }
        if stored.iter().all(|(_, r)| r.is_err()) {
            let why: Vec<String> = stored
                .iter()
                .filter_map(|(n, r)| r.as_ref().err().map(|e| format!("{n}: {e}")))
                .collect();
            bail!("backup {id} was stored nowhere: {}", why.join("; "));
        }
        Ok(Created { manifest, stored })
    }

    /// Every repository's backups (or why it cannot be read).
    pub fn list(&self) -> Vec<(String, Result<Vec<Listed>, String>)> {
        self.config
            .repositories
            .iter()
            .zip(self.repos())
            .map(|(c, r)| {
                (
                    c.name.clone(),
                    r.and_then(|r| r.list().map_err(|e| format!("{e:#}"))),
                )
            })
            .collect()
    }

    /// Removes all but the newest `schedule.keep` backups in every repository.
    pub fn prune(&self) -> Vec<(String, Result<Vec<String>, String>)> {
        let (repos, _) = self.repositories();
        repos
            .into_iter()
            .map(|r| {
                (
                    r.name.clone(),
                    r.prune(self.config.schedule.keep)
                        .map_err(|e| format!("{e:#}")),
                )
            })
            .collect()
    }

    pub(crate) fn key(&self) -> &BackupKey {
        &self.key
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_by_time_and_name_nothing_outside_the_repository() {
        let a = new_id(time::macros::datetime!(2026-12-07 18:00:00 UTC));
        let b = new_id(time::macros::datetime!(2026-12-07 18:00:01 UTC));
        assert!(a < b, "{a} {b}");
        assert!(a.starts_with("20261207T180000Z-"));
        assert!(repo::valid_id(&a));
    }

    #[test]
    fn a_key_file_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("backup.key");
        write_new_key(&path).unwrap();
        read_key_file(&path).unwrap();
        assert!(
            write_new_key(&path).is_err(),
            "an existing key is never replaced"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(read_key_file(&path)
            .unwrap_err()
            .to_string()
            .contains("chmod 600"));
    }
}
