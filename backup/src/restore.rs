//! Checking and restoring a backup.
//!
//! `verify` opens every part of a backup in every repository into a scratch folder and
//! checks it: the sealed file's checksum, the content's checksum once opened, and the
//! content itself (the SQLite store passes `PRAGMA integrity_check` and its records are
//! counted; the registry's files parse; an etcd snapshot's own checksum holds). The outcome
//! is kept beside the backup (`verified.json`), which the scheduled service reports.
//!
//! `restore` takes the backup from the first repository where it is intact and writes each
//! part back where it came from (or under `--to`), each file complete before it replaces
//! anything.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use crate::manifest::{Manifest, Part, PartKind};
use crate::repo::{Repository, Verified};
use crate::seal::{self, BackupKey};
use crate::Backups;

/// Which parts to restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Group {
    /// The registry (embedded files, or the etcd snapshot and Pylon's keys).
    Registry,
    /// The store (SQLite, or PostgreSQL through pgBackRest).
    Store,
    /// Configuration and key files.
    Files,
}

impl Group {
    fn of(kind: &PartKind) -> Group {
        match kind {
            PartKind::RegistrySnapshot
            | PartKind::RegistryJournal
            | PartKind::EtcdSnapshot
            | PartKind::EtcdKeys => Group::Registry,
            PartKind::Sqlite | PartKind::Pgbackrest { .. } => Group::Store,
            PartKind::File => Group::Files,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// Only these groups (all when empty).
    pub only: Vec<Group>,
    /// Write under this folder (each part at its original path inside it) instead of in
    /// place.
    pub to: Option<PathBuf>,
    /// Replace files that exist.
    pub force: bool,
    /// Take the backup from this repository.
    pub from: Option<String>,
    /// pgBackRest: the PostgreSQL data folder to restore into (its server stopped).
    pub pg_data: Option<PathBuf>,
    /// pgBackRest: replay the archived WAL up to this moment only (point-in-time
    /// recovery, to undo a mistake), instead of to the archive's end.
    pub until: Option<time::OffsetDateTime>,
    /// etcd endpoints: write the registry's keys into this running cluster (instead of
    /// writing out the snapshot and the keys file).
    pub etcd: Vec<String>,
}

impl RestoreOptions {
    /// The registry's keys go into a running etcd (and the snapshot stays out).
    fn keys_into_etcd(&self) -> bool {
        !self.etcd.is_empty()
    }
}

#[derive(Debug)]
pub struct Restored {
    pub id: String,
    pub repository: String,
    /// (where, what) of each part written.
    pub written: Vec<(PathBuf, String)>,
    /// What the operator still has to do by hand.
    pub next_steps: Vec<String>,
}

#[derive(Debug)]
pub struct VerifyOutcome {
    pub repository: String,
    pub id: String,
    pub result: Result<String, String>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The backup's manifest from `repo`, its MAC checked.
fn manifest_of(repo: &Repository, id: &str, key: &BackupKey) -> anyhow::Result<Manifest> {
    let bytes = repo.manifest_bytes(id)?;
    let manifest = Manifest::from_signed_json(&bytes, key)
        .map_err(|e| anyhow::anyhow!("repository {}: backup {id}: {e}", repo.name))?;
    if manifest.id != id {
        bail!(
            "repository {}: the manifest in {id} is that of {}",
            repo.name,
            manifest.id
        );
    }
    Ok(manifest)
}

/// Checks a part's sealed file and opens it into `out` (a sink when None), checking the
/// content's checksum too.
fn open_part(
    repo: &Repository,
    id: &str,
    part: &Part,
    key: &BackupKey,
    out: Option<&Path>,
) -> anyhow::Result<()> {
    let Some(file) = &part.file else {
        return Ok(());
    };
    let path = repo.part_path(id, file)?;
    let (sealed_sum, sealed_size) =
        seal::checksum(fs::File::open(&path).with_context(|| format!("part {file} is missing"))?)?;
    if (sealed_sum.as_str(), sealed_size) != (part.sealed_sha256.as_str(), part.sealed_size) {
        bail!("part {file}: its checksum does not match the manifest (damaged)");
    }
    let sealed = fs::File::open(&path)?;
    let (sum, size) = match out {
        Some(to) => {
            // Private until it is where it belongs, with the source's own mode.
            use std::os::unix::fs::OpenOptionsExt;
            let file_out = fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(to)
                .with_context(|| format!("writing {}", to.display()))?;
            let opened = seal::open(key, sealed, &file_out).and_then(|r| {
                file_out.sync_all()?;
                Ok(r)
            });
            match opened {
                Ok(r) => r,
                Err(e) => {
                    let _ = fs::remove_file(to);
                    return Err(e.into());
                }
            }
        }
        None => seal::open(key, sealed, std::io::sink())?,
    };
    if (sum.as_str(), size) != (part.sha256.as_str(), part.size) {
        bail!("part {file}: its content's checksum does not match the manifest");
    }
    Ok(())
}

/// Checks an opened part's content; says what it found.
fn check_content(part: &Part, path: &Path) -> anyhow::Result<String> {
    Ok(match &part.kind {
        PartKind::Sqlite => {
            let db = rusqlite::Connection::open_with_flags(
                path,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
            )?;
            let integrity: String = db.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
            if integrity != "ok" {
                bail!("the SQLite store fails its integrity check: {integrity}");
            }
            let records: i64 = db
                .query_row("SELECT count(*) FROM transaction_records", [], |r| r.get(0))
                .unwrap_or(0);
            format!("store intact, {records} transaction records")
        }
        PartKind::RegistrySnapshot => {
            let value: serde_json::Value = serde_json::from_slice(&fs::read(path)?)
                .context("the registry snapshot is not JSON")?;
            let Some(keys) = value.get("keys").and_then(|k| k.as_array()) else {
                bail!("the registry snapshot has no keys list");
            };
            format!("registry snapshot with {} keys", keys.len())
        }
        PartKind::RegistryJournal => {
            let text = fs::read_to_string(path)?;
            let lines: Vec<&str> = text.lines().collect();
            // The last line may be cut short (an unacknowledged change): the registry
            // ignores it, and so does this check.
            let whole = lines
                .len()
                .saturating_sub(usize::from(!text.ends_with('\n')));
            for (i, line) in lines.iter().take(whole).enumerate() {
                serde_json::from_str::<serde_json::Value>(line)
                    .with_context(|| format!("registry journal line {} is damaged", i + 1))?;
            }
            format!("registry journal of {whole} changes")
        }
        PartKind::EtcdSnapshot => {
            crate::sources::etcd_snapshot_intact(path)?;
            "etcd snapshot intact".into()
        }
        PartKind::EtcdKeys => {
            let keys = crate::etcd_keys::read(path)?;
            format!("{} registry keys", keys.keys.len())
        }
        PartKind::File => format!("{} ({} bytes)", part.source.display(), part.size),
        PartKind::Pgbackrest { .. } => String::new(),
    })
}

/// Gives a restored file its source's mode and, when we may, its owner.
fn give_back(path: &Path, part: &Part) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(mode) = part.mode {
        fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    }
    if let Some((uid, gid)) = part.owner {
        // Only root may give a file away; anyone else restores as themselves.
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            std::os::unix::fs::chown(path, Some(uid), Some(gid))
                .with_context(|| format!("giving {} back to {uid}:{gid}", path.display()))?;
        }
    }
    Ok(())
}

impl Backups {
    /// Verifies backup `id` (the newest when None) in every repository and records each
    /// outcome there.
    pub fn verify(&self, id: Option<&str>) -> Vec<VerifyOutcome> {
        let mut out = Vec::new();
        let (repos, broken) = self.repositories();
        for e in broken {
            out.push(VerifyOutcome {
                repository: "?".into(),
                id: id.unwrap_or("-").into(),
                result: Err(e),
            });
        }
        for repo in repos {
            let chosen = match id {
                Some(id) => Some(id.to_owned()),
                None => repo
                    .list()
                    .ok()
                    .and_then(|l| l.last().map(|b| b.id.clone())),
            };
            let Some(chosen) = chosen else {
                out.push(VerifyOutcome {
                    repository: repo.name.clone(),
                    id: "-".into(),
                    result: Err("no backup to verify".into()),
                });
                continue;
            };
            let result = self.verify_in(&repo, &chosen).map_err(|e| format!("{e:#}"));
            let verified = Verified {
                at: now_ms(),
                ok: result.is_ok(),
                detail: match &result {
                    Ok(s) | Err(s) => s.clone(),
                },
            };
            if let Err(e) = repo.record_verified(&chosen, &verified) {
                tracing::warn!(repository = %repo.name, error = %format!("{e:#}"), "the verification could not be recorded");
            }
            out.push(VerifyOutcome {
                repository: repo.name.clone(),
                id: chosen,
                result,
            });
        }
        out
    }

    fn verify_in(&self, repo: &Repository, id: &str) -> anyhow::Result<String> {
        let manifest = manifest_of(repo, id, self.key())?;
        let scratch = tempfile::Builder::new()
            .prefix("pylon-verify-")
            .tempdir()
            .context("a scratch folder")?;
        let mut found = Vec::new();
        for (i, part) in manifest.parts.iter().enumerate() {
            match &part.kind {
                PartKind::Pgbackrest { sets, .. } => {
                    let pg = self
                        .config
                        .store
                        .as_ref()
                        .and_then(|s| s.pgbackrest.as_ref())
                        .context("the backup holds a pgBackRest part but [store.pgbackrest] is not configured")?;
                    for set in sets {
                        found.push(crate::pgbackrest::verify(pg, set, scratch.path())?);
                    }
                }
                _ => {
                    let opened = scratch.path().join(format!("part-{i}"));
                    open_part(repo, id, part, self.key(), Some(&opened))?;
                    let what = check_content(part, &opened)?;
                    if !matches!(part.kind, PartKind::File) {
                        found.push(what);
                    }
                    let _ = fs::remove_file(&opened);
                }
            }
        }
        let files = manifest
            .parts
            .iter()
            .filter(|p| p.kind == PartKind::File)
            .count();
        found.push(format!("{files} files"));
        Ok(found.join("; "))
    }

    /// Restores backup `id` (or the newest complete one when `id` is "latest").
    pub fn restore(&self, id: &str, options: &RestoreOptions) -> anyhow::Result<Restored> {
        let (repos, _) = self.repositories();
        let candidates: Vec<Repository> = repos
            .into_iter()
            .filter(|r| options.from.as_ref().is_none_or(|f| *f == r.name))
            .collect();
        if candidates.is_empty() {
            bail!(
                "no usable repository{}",
                options
                    .from
                    .as_ref()
                    .map(|f| format!(" named {f}"))
                    .unwrap_or_default()
            );
        }
        let wanted = |p: &Part| {
            (options.only.is_empty() || options.only.contains(&Group::of(&p.kind)))
                && !(options.keys_into_etcd() && p.kind == PartKind::EtcdSnapshot)
        };
        let mut problems = Vec::new();
        for repo in &candidates {
            let chosen = if id == "latest" {
                match repo
                    .list()
                    .ok()
                    .and_then(|l| l.last().map(|b| b.id.clone()))
                {
                    Some(id) => id,
                    None => {
                        problems.push(format!("{}: no backup", repo.name));
                        continue;
                    }
                }
            } else {
                id.to_owned()
            };
            // Intact here? Every wanted part's sealed file and content are checked before
            // anything is written.
            let check = manifest_of(repo, &chosen, self.key()).and_then(|m| {
                for part in m.parts.iter().filter(|p| wanted(p)) {
                    open_part(repo, &chosen, part, self.key(), None)?;
                }
                Ok(m)
            });
            match check {
                Ok(manifest) => return self.restore_from(repo, &manifest, options, &wanted),
                Err(e) => problems.push(format!("{}: {e:#}", repo.name)),
            }
        }
        bail!(
            "backup {id} is intact in no repository: {}",
            problems.join("; ")
        )
    }

    fn restore_from(
        &self,
        repo: &Repository,
        manifest: &Manifest,
        options: &RestoreOptions,
        wanted: &dyn Fn(&Part) -> bool,
    ) -> anyhow::Result<Restored> {
        let destination = |source: &Path| -> PathBuf {
            match &options.to {
                Some(root) => root.join(source.strip_prefix("/").unwrap_or(source)),
                None => source.to_owned(),
            }
        };
        let parts: Vec<&Part> = manifest.parts.iter().filter(|p| wanted(p)).collect();
        if parts.is_empty() {
            bail!("backup {} holds nothing of what was asked", manifest.id);
        }
        let into_etcd = options.keys_into_etcd();
        if into_etcd && !parts.iter().any(|p| p.kind == PartKind::EtcdKeys) {
            bail!(
                "--etcd writes the registry's keys into etcd, and backup {} holds none (an embedded registry, or a backup older than the keys part)",
                manifest.id
            );
        }
        if !options.force {
            let existing: Vec<String> = parts
                .iter()
                .filter(|p| p.file.is_some() && !(into_etcd && p.kind == PartKind::EtcdKeys))
                .map(|p| destination(&p.source))
                .filter(|d| d.exists())
                .map(|d| d.display().to_string())
                .collect();
            if !existing.is_empty() {
                bail!(
                    "these exist and would be replaced: {} (stop the services using them, then add --force; or restore elsewhere with --to)",
                    existing.join(", ")
                );
            }
        }
        if options.until.is_some()
            && !parts
                .iter()
                .any(|p| matches!(p.kind, PartKind::Pgbackrest { .. }))
        {
            bail!("--until is PostgreSQL's point-in-time recovery, and backup {} restores no PostgreSQL here", manifest.id);
        }
        let mut written = Vec::new();
        let mut next_steps = Vec::new();
        let has_journal = parts.iter().any(|p| p.kind == PartKind::RegistryJournal);
        for part in parts {
            if let PartKind::Pgbackrest { sets, .. } = &part.kind {
                let pg = self
                    .config
                    .store
                    .as_ref()
                    .and_then(|s| s.pgbackrest.as_ref())
                    .context("[store.pgbackrest] is not configured")?;
                let data = options.pg_data.as_deref().context(
                    "restoring PostgreSQL needs --pg-data (the data folder, its server stopped)",
                )?;
                // The first set in a repository pgBackRest can read.
                let mut problems = Vec::new();
                let mut restored = None;
                for (attempt, set) in sets.iter().enumerate() {
                    // After a failed attempt the folder holds its leftovers: --delta.
                    let delta = options.force || attempt > 0;
                    match crate::pgbackrest::restore(pg, set, data, delta, options.until) {
                        Ok(()) => {
                            restored = Some(set);
                            break;
                        }
                        Err(e) => problems.push(format!("repo{}: {e:#}", set.repo)),
                    }
                }
                let Some(set) = restored else {
                    bail!("PostgreSQL could not be restored: {}", problems.join("; "));
                };
                written.push((
                    data.to_owned(),
                    format!(
                        "PostgreSQL (set {} from pgBackRest repo{})",
                        set.label, set.repo
                    ),
                ));
                next_steps.push(match options.until {
                    Some(until) => format!(
                        "start PostgreSQL on {}: it replays the archived WAL up to {} and opens for writing (a new timeline)",
                        data.display(),
                        crate::pgbackrest::target_time(until)
                    ),
                    None => format!(
                        "start PostgreSQL on {}: it replays the archived WAL to the end",
                        data.display()
                    ),
                });
                continue;
            }
            if into_etcd && part.kind == PartKind::EtcdKeys {
                let scratch = tempfile::tempdir().context("a scratch folder")?;
                let file = scratch.path().join(crate::etcd_keys::FILE);
                open_part(repo, &manifest.id, part, self.key(), Some(&file))?;
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                let loaded = runtime.block_on(crate::etcd_keys::load(&options.etcd, &file))?;
                written.push((
                    PathBuf::from(options.etcd.join(",")),
                    format!(
                        "registry keys written into etcd ({} keys; {} newer ones removed)",
                        loaded.written, loaded.removed
                    ),
                ));
                continue;
            }
            let to = destination(&part.source);
            if let Some(parent) = to.parent() {
                fs::create_dir_all(parent)?;
            }
            let mut temp = to.clone().into_os_string();
            temp.push(".restoring");
            let temp = PathBuf::from(temp);
            open_part(repo, &manifest.id, part, self.key(), Some(&temp))?;
            if let Err(e) = give_back(&temp, part) {
                let _ = fs::remove_file(&temp);
                return Err(e);
            }
            // What the replaced file leaves beside it, moved aside until the new file is
            // in place: a SQLite write-ahead log would be applied to the restored database.
            let mut aside = Vec::new();
            match part.kind {
                PartKind::Sqlite => {
                    for suffix in ["", "-wal", "-shm", "-journal"] {
                        let mut old = to.clone().into_os_string();
                        old.push(suffix);
                        let old = PathBuf::from(old);
                        if old.exists() {
                            let mut moved = old.clone().into_os_string();
                            moved.push(".replaced");
                            let moved = PathBuf::from(moved);
                            fs::rename(&old, &moved)
                                .with_context(|| format!("moving {} aside", old.display()))?;
                            aside.push(moved);
                        }
                    }
                }
                PartKind::RegistrySnapshot if !has_journal => {
                    // A journal left beside it belongs to the replaced registry.
                    let _ = fs::remove_file(crate::sources::journal_of(&to));
                }
                PartKind::EtcdSnapshot => next_steps.push(format!(
                    "to restore etcd's whole keyspace from {}: on each member, etcdutl snapshot restore {} --name <member> --initial-cluster <...> --data-dir <new folder> (etcd before 3.5, as in Debian 12: ETCDCTL_API=3 etcdctl snapshot restore with the same options), then start the members on the new folders",
                    to.display(),
                    to.display()
                )),
                PartKind::EtcdKeys => next_steps.push(format!(
                    "or write only Pylon's keys (from {}) into a running etcd cluster: pylonctl backup restore {} --only registry --etcd <endpoints>",
                    to.display(),
                    manifest.id
                )),
                _ => {}
            }
            if let Err(e) = fs::rename(&temp, &to) {
                let _ = fs::remove_file(&temp);
                return Err(e).with_context(|| {
                    format!(
                        "replacing {} (the replaced files are kept: {})",
                        to.display(),
                        aside
                            .iter()
                            .map(|p| p.display().to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                });
            }
            if let Some(parent) = to.parent() {
                let _ = fs::File::open(parent).and_then(|d| d.sync_all());
            }
            for old in aside {
                let _ = fs::remove_file(old);
            }
            written.push((to, crate::kind_name(&part.kind).to_owned()));
        }
        Ok(Restored {
            id: manifest.id.clone(),
            repository: repo.name.clone(),
            written,
            next_steps,
        })
    }
}
