//! A repository: a folder (another disk, or a mounted share) holding one folder per backup.
//!
//! ```text
//! <root>/<id>/manifest.json     written last, so a backup folder with one is complete
//! <root>/<id>/<n>-<kind>.sealed the sealed parts
//! <root>/<id>/verified.json     the last verification's outcome
//! <root>/.partial-<id>/         a backup being written (renamed into place when done)
//! ```
//!
//! Every file is flushed to disk before the folder is renamed into place, and the rename
//! is flushed too, so a crash leaves either a complete backup or a partial folder.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use crate::config::RepositoryConfig;
use crate::manifest::{self, Manifest};

const PARTIAL: &str = ".partial-";
const VERIFIED: &str = "verified.json";

/// The outcome of a verification.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Verified {
    /// Unix milliseconds.
    pub at: i64,
    pub ok: bool,
    pub detail: String,
}

/// A backup found in a repository.
#[derive(Debug, Clone)]
pub struct Listed {
    pub id: String,
    /// Read without the key: for showing, not for trusting.
    pub manifest: Option<Manifest>,
    pub verified: Option<Verified>,
}

pub struct Repository {
    pub name: String,
    pub root: PathBuf,
}

fn sync_dir(path: &Path) -> std::io::Result<()> {
    fs::File::open(path)?.sync_all()
}

/// Backup ids are made here: letters, digits, `-`; nothing that walks out of the root.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

impl Repository {
    /// The repository; its folder must exist (a missing one is usually a disk that is not
    /// mounted, and a backup written to the disk beneath would not be where it should).
    pub fn open(config: &RepositoryConfig) -> anyhow::Result<Repository> {
        if !config.path.is_dir() {
            bail!(
                "repository {}: {} is not a folder (is its disk mounted? create the folder first)",
                config.name,
                config.path.display()
            );
        }
        Ok(Repository {
            name: config.name.clone(),
            root: config.path.clone(),
        })
    }

    fn folder(&self, id: &str) -> anyhow::Result<PathBuf> {
        if !valid_id(id) {
            bail!("{id:?} is not a backup id");
        }
        Ok(self.root.join(id))
    }

    /// Copies the sealed files in `staged` (name, path) and then the manifest into a new
    /// backup folder `id`.
    pub fn store(
        &self,
        id: &str,
        staged: &[(String, PathBuf)],
        manifest: &[u8],
    ) -> anyhow::Result<()> {
        let last = self.folder(id)?;
        if last.exists() {
            bail!("repository {}: backup {id} exists already", self.name);
        }
        let partial = self.root.join(format!("{PARTIAL}{id}"));
        if partial.exists() {
            fs::remove_dir_all(&partial)?;
        }
        fs::create_dir(&partial)
            .with_context(|| format!("repository {}: creating {}", self.name, partial.display()))?;
        for (name, from) in staged {
            let to = partial.join(name);
            fs::copy(from, &to)
                .with_context(|| format!("repository {}: writing {}", self.name, to.display()))?;
            fs::File::open(&to)?.sync_all()?;
        }
        let mut file = fs::File::create(partial.join(manifest::FILE))?;
        file.write_all(manifest)?;
        file.sync_all()?;
        sync_dir(&partial)?;
        fs::rename(&partial, &last)
            .with_context(|| format!("repository {}: completing {id}", self.name))?;
        sync_dir(&self.root)?;
        Ok(())
    }

    /// The complete backups, oldest first (ids sort by time).
    pub fn list(&self) -> anyhow::Result<Vec<Listed>> {
        let mut out = Vec::new();
        let entries = fs::read_dir(&self.root).with_context(|| {
            format!("repository {}: reading {}", self.name, self.root.display())
        })?;
        for entry in entries {
            let entry = entry?;
            let Some(id) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if !valid_id(&id) || !entry.path().join(manifest::FILE).is_file() {
                continue;
            }
            let manifest = fs::read(entry.path().join(manifest::FILE))
                .ok()
                .and_then(|b| Manifest::peek(&b));
            let verified = fs::read(entry.path().join(VERIFIED))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            out.push(Listed {
                id,
                manifest,
                verified,
            });
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// Folders left by a backup that did not finish.
    pub fn partials(&self) -> anyhow::Result<Vec<PathBuf>> {
        Ok(fs::read_dir(&self.root)?
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(PARTIAL))
            .map(|e| e.path())
            .collect())
    }

    pub fn manifest_bytes(&self, id: &str) -> anyhow::Result<Vec<u8>> {
        let path = self.folder(id)?.join(manifest::FILE);
        fs::read(&path)
            .with_context(|| format!("repository {}: reading {}", self.name, path.display()))
    }

    /// A part's sealed file (its name comes from a manifest whose MAC was checked).
    pub fn part_path(&self, id: &str, file: &str) -> anyhow::Result<PathBuf> {
        if file.contains('/') || file.starts_with('.') {
            bail!("{file:?} is not a part file name");
        }
        Ok(self.folder(id)?.join(file))
    }

    pub fn record_verified(&self, id: &str, verified: &Verified) -> anyhow::Result<()> {
        let folder = self.folder(id)?;
        let tmp = folder.join(".verified.tmp");
        fs::write(&tmp, serde_json::to_vec_pretty(verified)?)?;
        fs::File::open(&tmp)?.sync_all()?;
        fs::rename(&tmp, folder.join(VERIFIED))?;
        Ok(())
    }

    pub fn remove(&self, id: &str) -> anyhow::Result<()> {
        let folder = self.folder(id)?;
        fs::remove_dir_all(&folder)
            .with_context(|| format!("repository {}: removing {}", self.name, folder.display()))
    }

    /// Removes all but the newest `keep` complete backups, and partial folders; returns the
    /// ids removed. The newest backup that passed verification is always kept, so a run of
    /// failed ones never leaves a repository without a good backup.
    pub fn prune(&self, keep: usize) -> anyhow::Result<Vec<String>> {
        let listed = self.list()?;
        let newest_good = listed
            .iter()
            .rev()
            .find(|b| b.verified.as_ref().is_some_and(|v| v.ok))
            .map(|b| b.id.clone());
        let mut removed = Vec::new();
        for old in listed.iter().take(listed.len().saturating_sub(keep)) {
            if Some(&old.id) == newest_good.as_ref() {
                continue;
            }
            self.remove(&old.id)?;
            removed.push(old.id.clone());
        }
        for partial in self.partials()? {
            fs::remove_dir_all(&partial)?;
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_backup_is_listed_and_pruned_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::open(&RepositoryConfig {
            name: "a".into(),
            path: dir.path().into(),
        })
        .unwrap();
        let part = dir.path().join("p");
        fs::write(&part, b"sealed").unwrap();
        for id in [
            "20260101T000000Z-aa",
            "20260102T000000Z-bb",
            "20260103T000000Z-cc",
        ] {
            repo.store(id, &[("0-file.sealed".into(), part.clone())], b"{}")
                .unwrap();
        }
        assert!(repo.store("20260101T000000Z-aa", &[], b"{}").is_err());
        fs::create_dir(dir.path().join(".partial-x")).unwrap();
        let ids: Vec<String> = repo.list().unwrap().into_iter().map(|l| l.id).collect();
        assert_eq!(ids.len(), 3);
        // The oldest is the only verified one: it stays, the next oldest goes.
        let good = Verified {
            at: 1,
            ok: true,
            detail: String::new(),
        };
        repo.record_verified("20260101T000000Z-aa", &good).unwrap();
        assert_eq!(
            repo.prune(1).unwrap(),
            vec!["20260102T000000Z-bb".to_owned()]
        );
        let ids: Vec<String> = repo.list().unwrap().into_iter().map(|l| l.id).collect();
        assert_eq!(ids, ["20260101T000000Z-aa", "20260103T000000Z-cc"]);
        assert!(repo.partials().unwrap().is_empty());
        assert!(repo.part_path("20260102T000000Z-bb", "../x").is_err());
        assert!(repo.manifest_bytes("../etc").is_err());
    }

    #[test]
    fn a_missing_folder_is_not_a_repository() {
        let err = Repository::open(&RepositoryConfig {
            name: "gone".into(),
            path: "/nonexistent/pylon-backups".into(),
        })
        .err()
        .unwrap();
        assert!(err.to_string().contains("mounted"));
    }
}
