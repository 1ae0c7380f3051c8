//! `pylonctl backup keygen|create|list|verify|restore`: Pylon's backups, run on the
//! machine that holds what they back up (see the `pylon_backup` library; the scheduled
//! service is `pylon-backup`).

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use pylon_backup::config::BackupConfig;
use pylon_backup::{Backups, Group, RestoreOptions};

use crate::cli::Failure;

pub const BACKUP_ABOUT: &str = "\
Back up and restore Pylon: the registry (an etcd snapshot, or the embedded registry's
files), the store (SQLite through its online backup API, while the app runs; PostgreSQL
through pgBackRest, with its WAL archive for point-in-time recovery) and the configuration
and key files needed to run again. Each part is encrypted (AES-256-GCM) under the backup
key and checksummed (SHA-256), and each backup is copied to every repository (two at
least: folders on other disks or mounted shares). What and where are in the settings file
(--config; see the README's Backups section). Keep a copy of the backup key away from the
repositories: without it no backup opens.

`verify` restores a backup into a scratch folder and checks it (the store's integrity and
its records, the registry's files, each checksum) and records the outcome beside it; the
scheduled service pylon-backup does this after each backup and alerts when the newest
verified one is too old. `restore` takes the backup from the first repository where it is
intact and puts each part back where it came from (stop the services first), or under
--to.

Examples:
  pylonctl backup keygen --out /etc/pylon/backup.key
  pylonctl backup create --config /etc/pylon/backup.toml
  pylonctl backup list
  pylonctl backup verify
  pylonctl backup restore latest --only store --force
  pylonctl backup restore 20261207T180000Z-3fa2 --to /srv/restore-check";

#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Make a new backup key file (mode 600); it never replaces an existing file.
    Keygen {
        /// Where to write the key.
        #[arg(long)]
        out: PathBuf,
    },
    /// Take a backup now and store it in every repository.
    Create(ConfigArg),
    /// List the backups in every repository, with their verification.
    List(ConfigArg),
    /// Restore a backup into a scratch folder, check it, and record the outcome.
    Verify {
        #[command(flatten)]
        config: ConfigArg,
        /// The backup (default: the newest in each repository).
        id: Option<String>,
    },
    /// Put a backup's parts back where they came from (or under --to).
    Restore(RestoreArgs),
}

#[derive(Debug, Args)]
pub struct ConfigArg {
    /// The backup settings file.
    #[arg(
        long,
        env = "PYLON_BACKUP_CONFIG",
        default_value = "/etc/pylon/backup.toml"
    )]
    pub config: PathBuf,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// The backup's id, or `latest`.
    pub id: String,
    /// Restore only these parts (repeat, or comma-separated).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub only: Vec<Group>,
    /// Write each part under this folder (at its original path inside it) instead of in
    /// place.
    #[arg(long)]
    pub to: Option<PathBuf>,
    /// Replace files that exist (stop the services that use them first).
    #[arg(long)]
    pub force: bool,
    /// Take the backup from this repository (default: the first where it is intact).
    #[arg(long)]
    pub from: Option<String>,
    /// PostgreSQL: the data folder pgBackRest restores into (its server stopped).
    #[arg(long)]
    pub pg_data: Option<PathBuf>,
    /// PostgreSQL: point-in-time recovery. Replay the archived WAL up to this moment only
    /// (RFC 3339, e.g. 2026-12-08T09:41:00Z), to undo a mistake such as a dropped table;
    /// without it, recovery replays the whole archive.
    #[arg(long, value_parser = rfc3339)]
    pub until: Option<time::OffsetDateTime>,
    /// etcd: write Pylon's registry keys into this running cluster (endpoints,
    /// comma-separated), replacing the ones there, instead of writing out the snapshot.
    /// Keys outside /pylon/ (Patroni's) and keys held by a lease are left alone. Works on a
    /// new, empty cluster too.
    #[arg(long, value_delimiter = ',', value_name = "ENDPOINTS")]
    pub etcd: Vec<String>,
}

fn rfc3339(text: &str) -> Result<time::OffsetDateTime, String> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("not an RFC 3339 time such as 2026-12-08T09:41:00Z: {e}"))
}

fn open(config: &ConfigArg) -> Result<Backups, Failure> {
    let settings =
        BackupConfig::load(&config.config).map_err(|e| Failure::BadInput(format!("{e:#}")))?;
    Backups::open(settings).map_err(|e| Failure::BadInput(format!("{e:#}")))
}

fn time_text(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}

pub fn run(cmd: BackupCommand, out: &mut dyn Write) -> Result<(), Failure> {
    match cmd {
        BackupCommand::Keygen { out: path } => {
            pylon_backup::write_new_key(&path).map_err(|e| Failure::BadInput(format!("{e:#}")))?;
            writeln!(
                out,
                "wrote a new backup key to {} (mode 600); keep a copy away from the repositories",
                path.display()
            )?;
            Ok(())
        }
        BackupCommand::Create(config) => {
            let backups = open(&config)?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let created = runtime.block_on(backups.create()).map_err(Failure::Other)?;
            let m = &created.manifest;
            writeln!(
                out,
                "backup {} ({} parts, {})",
                m.id,
                m.parts.len(),
                crate::units::format_bytes(m.size())
            )?;
            for (repo, result) in &created.stored {
                match result {
                    Ok(()) => writeln!(out, "  stored in {repo}")?,
                    Err(e) => writeln!(out, "  NOT stored in {repo}: {e}")?,
                }
            }
            if created.everywhere() {
                Ok(())
            } else {
                Err(Failure::Other(anyhow::anyhow!(
                    "backup {} is missing from a repository",
                    m.id
                )))
            }
        }
        BackupCommand::List(config) => {
            let backups = open(&config)?;
            let mut failed = false;
            for (repo, listed) in backups.list() {
                writeln!(out, "{repo}:")?;
                match listed {
                    Err(e) => {
                        failed = true;
                        writeln!(out, "  cannot be read: {e}")?;
                    }
                    Ok(list) if list.is_empty() => writeln!(out, "  no backups")?,
                    Ok(list) => {
                        writeln!(
                            out,
                            "  {:<22} {:<26} {:>6} {:>10}  VERIFIED",
                            "ID", "TAKEN", "PARTS", "SIZE"
                        )?;
                        for b in list {
                            let (taken, parts, size) =
                                b.manifest.as_ref().map_or(("?".into(), 0, 0), |m| {
                                    (time_text(m.created_at), m.parts.len(), m.size())
                                });
                            let verified = match &b.verified {
                                None => "never".to_owned(),
                                Some(v) if v.ok => format!("ok at {}", time_text(v.at)),
                                Some(v) => format!("FAILED at {}: {}", time_text(v.at), v.detail),
                            };
                            writeln!(
                                out,
                                "  {:<22} {:<26} {:>6} {:>10}  {verified}",
                                b.id,
                                taken,
                                parts,
                                crate::units::format_bytes(size)
                            )?;
                        }
                    }
                }
            }
            if failed {
                return Err(Failure::Other(anyhow::anyhow!(
                    "a repository cannot be read"
                )));
            }
            Ok(())
        }
        BackupCommand::Verify { config, id } => {
            let backups = open(&config)?;
            let mut failed = 0;
            for outcome in backups.verify(id.as_deref()) {
                match &outcome.result {
                    Ok(what) => {
                        writeln!(out, "{} {}: ok ({what})", outcome.repository, outcome.id)?
                    }
                    Err(e) => {
                        failed += 1;
                        writeln!(out, "{} {}: FAILED: {e}", outcome.repository, outcome.id)?;
                    }
                }
            }
            if failed > 0 {
                return Err(Failure::Other(anyhow::anyhow!(
                    "{failed} verification(s) failed"
                )));
            }
            Ok(())
        }
        BackupCommand::Restore(args) => {
            let backups = open(&args.config)?;
            let options = RestoreOptions {
                only: args.only,
                to: args.to,
                force: args.force,
                from: args.from,
                pg_data: args.pg_data,
                until: args.until,
                etcd: args.etcd,
            };
            let restored = backups
                .restore(&args.id, &options)
                .map_err(Failure::Other)?;
            writeln!(
                out,
                "restored backup {} from {}:",
                restored.id, restored.repository
            )?;
            for (path, what) in &restored.written {
                writeln!(out, "  {what}: {}", path.display())?;
            }
            for step in &restored.next_steps {
                writeln!(out, "next: {step}")?;
            }
            Ok(())
        }
    }
}
