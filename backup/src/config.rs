//! What to back up, where to, and how often: the backup settings file (TOML).
//!
//! ```toml
//! key_file = "/etc/pylon/backup.key"          # pylonctl backup keygen --out ...
//! files = ["/etc/pylon", "/var/lib/pylon/card-keys.toml"]
//!
//! [registry]
//! embedded = "/var/lib/pylon/registry.json"   # or: etcd = ["http://10.0.0.5:2379"]
//!
//! [store]
//! sqlite = "/var/lib/pylon/app.db"            # or: [store.pgbackrest] stanza = "pylon"
//!
//! [[repository]]
//! name = "disk2"
//! path = "/mnt/disk2/pylon-backups"
//!
//! [[repository]]
//! name = "nfs"
//! path = "/mnt/nfs/pylon-backups"
//!
//! [schedule]
//! every_minutes = 360
//! keep = 14
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupConfig {
    /// The backup key (64 hex digits). Without it nothing is backed up or restored.
    pub key_file: PathBuf,
    #[serde(default)]
    pub registry: Option<RegistrySource>,
    #[serde(default)]
    pub store: Option<StoreSource>,
    /// Configuration and key material: files, or folders taken whole.
    #[serde(default)]
    pub files: Vec<PathBuf>,
    /// Every backup is copied to each; at least two, on different disks or machines.
    #[serde(default, rename = "repository")]
    pub repositories: Vec<RepositoryConfig>,
    #[serde(default)]
    pub schedule: Schedule,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrySource {
    /// The embedded registry's snapshot file (its journal `<file>.journal` comes along).
    pub embedded: Option<PathBuf>,
    /// etcd endpoints: a snapshot of the whole keyspace from one of them.
    #[serde(default)]
    pub etcd: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSource {
    /// The app's SQLite database, copied with SQLite's online backup (the app keeps running).
    pub sqlite: Option<PathBuf>,
    /// PostgreSQL through pgBackRest.
    pub pgbackrest: Option<PgBackRest>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PgBackRest {
    pub stanza: String,
    /// pgBackRest's configuration (its repositories, cipher and the PostgreSQL it backs up).
    pub config: Option<PathBuf>,
    /// The pgBackRest program.
    #[serde(default = "default_pgbackrest")]
    pub program: PathBuf,
    /// Run pgBackRest as this user (the PostgreSQL owner), when backing up as root.
    pub user: Option<String>,
    /// pgBackRest's repositories to back up into, each in turn (`repoN-path` in its
    /// configuration): two or more, like Pylon's own.
    #[serde(default = "default_pg_repos")]
    pub repos: Vec<u32>,
    /// The database whose records a verification counts.
    #[serde(default = "default_database")]
    pub database: String,
}

fn default_pg_repos() -> Vec<u32> {
    vec![1, 2]
}

fn default_database() -> String {
    "pylon".into()
}

fn default_pgbackrest() -> PathBuf {
    PathBuf::from("pgbackrest")
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepositoryConfig {
    pub name: String,
    /// A folder: another disk, or a mounted network share.
    pub path: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// A new backup this often (the scheduled service, `pylon-backup`).
    #[serde(default = "default_every")]
    pub every_minutes: u64,
    /// Complete backups kept in each repository; older ones are removed.
    #[serde(default = "default_keep")]
    pub keep: usize,
    /// Verify (restore into a scratch folder and check) each new backup.
    #[serde(default = "default_true")]
    pub verify: bool,
}

fn default_every() -> u64 {
    360
}
fn default_keep() -> usize {
    14
}
fn default_true() -> bool {
    true
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule {
            every_minutes: default_every(),
            keep: default_keep(),
            verify: true,
        }
    }
}

impl BackupConfig {
    pub fn load(path: &Path) -> anyhow::Result<BackupConfig> {
        use anyhow::Context;
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let config: BackupConfig =
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        config.check()?;
        Ok(config)
    }

    /// What makes no sense, or would not be a backup worth having.
    pub fn check(&self) -> anyhow::Result<()> {
        use anyhow::bail;
        if self.repositories.len() < 2 {
            bail!(
                "{} repositories given: a backup goes to at least two (add [[repository]] \
                 sections on different disks or machines)",
                self.repositories.len()
            );
        }
        for (i, r) in self.repositories.iter().enumerate() {
            if r.name.is_empty()
                || !r
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
            {
                bail!(
                    "repository {:?}: names are letters, digits, - and _",
                    r.name
                );
            }
            if self.repositories[..i]
                .iter()
                .any(|o| o.name == r.name || o.path == r.path)
            {
                bail!("repository {:?} is given twice (same name or path)", r.name);
            }
        }
        if let Some(reg) = &self.registry {
            if reg.embedded.is_some() != reg.etcd.is_empty() {
                bail!("[registry]: give either `embedded` (a file) or `etcd` (endpoints)");
            }
        }
        if let Some(store) = &self.store {
            if store.sqlite.is_some() == store.pgbackrest.is_some() {
                bail!("[store]: give either `sqlite` (a file) or [store.pgbackrest]");
            }
            if let Some(pg) = &store.pgbackrest {
                if pg.repos.is_empty() || pg.repos.iter().any(|&r| r == 0 || r > 256) {
                    bail!("[store.pgbackrest] repos: pgBackRest repository numbers (1-256)");
                }
            }
        }
        if self.registry.is_none() && self.store.is_none() && self.files.is_empty() {
            bail!("nothing to back up: give [registry], [store] or files");
        }
        if self.schedule.every_minutes == 0 || self.schedule.keep == 0 {
            bail!("[schedule]: every_minutes and keep must be at least 1");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
key_file = "/k"
files = ["/etc/pylon"]
[registry]
embedded = "/var/lib/pylon/registry.json"
[store]
sqlite = "/var/lib/pylon/app.db"
[[repository]]
name = "a"
path = "/mnt/a"
[[repository]]
name = "b"
path = "/mnt/b"
"#;

    #[test]
    fn a_config_needs_two_repositories_and_one_source_of_each_kind() {
        let config: BackupConfig = toml::from_str(GOOD).unwrap();
        config.check().unwrap();
        assert_eq!(config.schedule.every_minutes, 360);
        let one = GOOD.replace("[[repository]]\nname = \"b\"\npath = \"/mnt/b\"\n", "");
        let config: BackupConfig = toml::from_str(&one).unwrap();
        assert!(config
            .check()
            .unwrap_err()
            .to_string()
            .contains("at least two"));
        let same = GOOD.replace("/mnt/b", "/mnt/a");
        let config: BackupConfig = toml::from_str(&same).unwrap();
        assert!(config.check().is_err());
        let both = GOOD.replace(
            "embedded = \"/var/lib/pylon/registry.json\"",
            "embedded = \"/r\"\netcd = [\"http://e:2379\"]",
        );
        let config: BackupConfig = toml::from_str(&both).unwrap();
        assert!(config.check().is_err());
        assert!(toml::from_str::<BackupConfig>(&format!("{GOOD}\nunknown = 1")).is_err());
    }
}
