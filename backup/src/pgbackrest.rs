//! PostgreSQL's part of a backup, through pgBackRest (Debian `pgbackrest`).
//!
//! pgBackRest keeps its own repositories (`repo1-path`, `repo2-path`, ... in its
//! configuration, encrypted with `repoN-cipher-type`), archives the WAL continuously
//! (PostgreSQL's `archive_command`), checksums every file, and restores to any moment
//! the archive covers. A Pylon backup runs a pgBackRest backup into each of the
//! repositories listed in `[store.pgbackrest] repos`, and its manifest names the
//! resulting backup sets; verifying one checks the repository (`pgbackrest verify`) and
//! restores the set into a scratch folder, starts a PostgreSQL there and counts the
//! transaction records.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::config::PgBackRest;
use crate::manifest::{Part, PartKind, PgSet};

fn command(pg: &PgBackRest) -> anyhow::Result<Command> {
    let mut cmd = match &pg.user {
        Some(user) => {
            let mut c = Command::new("setpriv");
            let (uid, gid) = user_ids(user)?;
            c.args([
                &format!("--reuid={uid}"),
                &format!("--regid={gid}"),
                "--init-groups",
                "--",
            ]);
            c.arg(&pg.program);
            c
        }
        None => Command::new(&pg.program),
    };
    if let Some(config) = &pg.config {
        cmd.arg(format!("--config={}", config.display()));
    }
    cmd.arg(format!("--stanza={}", pg.stanza));
    cmd.stdin(Stdio::null());
    Ok(cmd)
}

/// (uid, gid) of `user`, from `id`.
fn user_ids(user: &str) -> anyhow::Result<(u32, u32)> {
    let id = |flag: &str| -> anyhow::Result<u32> {
        let out = Command::new("id")
            .args([flag, user])
            .output()
            .context("running id")?;
        if !out.status.success() {
            bail!("there is no user {user:?} to run pgBackRest as");
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().parse()?)
    };
    Ok((id("-u")?, id("-g")?))
}

fn run(mut cmd: Command, what: &str) -> anyhow::Result<String> {
    let out = cmd.output().with_context(|| {
        format!("running pgBackRest ({what}); is it installed (Debian pgbackrest)?")
    })?;
    if !out.status.success() {
        bail!(
            "pgBackRest {what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The label of the newest backup set in repository `repo`.
fn newest_label(pg: &PgBackRest, repo: u32) -> anyhow::Result<String> {
    let mut cmd = command(pg)?;
    cmd.args([&format!("--repo={repo}"), "--output=json", "info"]);
    let text = run(cmd, "info")?;
    let info: serde_json::Value =
        serde_json::from_str(&text).context("pgBackRest info is not JSON")?;
    let backups = info
        .as_array()
        .and_then(|stanzas| stanzas.iter().find(|s| s["name"] == pg.stanza.as_str()))
        .and_then(|s| s["backup"].as_array())
        .context("pgBackRest info lists no backup")?;
    backups
        .iter()
        .filter(|b| {
            b["database"]["repo-key"]
                .as_u64()
                .is_none_or(|k| k == u64::from(repo))
        })
        .max_by_key(|b| b["timestamp"]["stop"].as_i64().unwrap_or(0))
        .and_then(|b| b["label"].as_str())
        .map(str::to_owned)
        .context("pgBackRest info lists no backup in this repository")
}

/// A pgBackRest backup into each configured repository; the part names the sets.
pub fn backup(pg: &PgBackRest) -> anyhow::Result<Part> {
    let mut sets = Vec::new();
    for &repo in &pg.repos {
        let mut cmd = command(pg)?;
        cmd.args([&format!("--repo={repo}"), "backup"]);
        run(cmd, &format!("backup to repo{repo}"))?;
        sets.push(PgSet {
            repo,
            label: newest_label(pg, repo)?,
        });
    }
    Ok(Part {
        kind: PartKind::Pgbackrest {
            stanza: pg.stanza.clone(),
            sets,
        },
        source: PathBuf::from(format!("pgbackrest:{}", pg.stanza)),
        file: None,
        sha256: String::new(),
        size: 0,
        sealed_sha256: String::new(),
        sealed_size: 0,
        mode: None,
        owner: None,
    })
}

/// Restores `set` into `data` (PostgreSQL's data folder, its server stopped). Recovery
/// replays the archived WAL to its end, so what was committed after the backup comes back
/// too, as far as the archive reaches; or, with `until`, to that moment only (what
/// committed later, a mistake included, is left out) and then opens for writing.
pub fn restore(
    pg: &PgBackRest,
    set: &PgSet,
    data: &Path,
    delta: bool,
    until: Option<time::OffsetDateTime>,
) -> anyhow::Result<()> {
    let mut cmd = command(pg)?;
    cmd.args([
        &format!("--repo={}", set.repo),
        &format!("--set={}", set.label),
        &format!("--pg1-path={}", data.display()),
    ]);
    if delta {
        cmd.arg("--delta");
    }
    if let Some(until) = until {
        cmd.args([
            "--type=time",
            &format!("--target={}", target_time(until)),
            "--target-action=promote",
        ]);
    }
    cmd.arg("restore");
    run(cmd, "restore")?;
    Ok(())
}

/// `at` as PostgreSQL reads a recovery target time: UTC, to the microsecond.
pub fn target_time(at: time::OffsetDateTime) -> String {
    let utc = at.to_offset(time::UtcOffset::UTC);
    let format = time::macros::format_description!(
        "[year]-[month]-[day] [hour]:[minute]:[second].[subsecond digits:6]+00"
    );
    utc.format(&format)
        .unwrap_or_else(|_| utc.unix_timestamp().to_string())
}

/// Checks the repository of `set`, restores the set into `scratch`, starts a PostgreSQL
/// there until it has recovered, and counts the transaction records.
pub fn verify(pg: &PgBackRest, set: &PgSet, scratch: &Path) -> anyhow::Result<String> {
    let mut cmd = command(pg)?;
    cmd.args([&format!("--repo={}", set.repo), "verify"]);
    run(cmd, "verify")?;
    // A folder of PostgreSQL's own: the rest of the scratch folder (the other parts,
    // opened) stays the verifier's.
    let home = scratch.join(format!("pg-repo{}", set.repo));
    let data = home.join("data");
    std::fs::create_dir(&home)?;
    std::fs::create_dir(&data)?;
    let owner = match &pg.user {
        Some(user) => {
            let (uid, gid) = user_ids(user)?;
            // The scratch folder itself must be passable (not readable) by that user.
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(scratch, std::fs::Permissions::from_mode(0o711))?;
            std::os::unix::fs::chown(&home, Some(uid), Some(gid))?;
            std::os::unix::fs::chown(&data, Some(uid), Some(gid))?;
            Some((uid, gid))
        }
        None => None,
    };
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700))?;
    let mut cmd = command(pg)?;
    cmd.args([
        &format!("--repo={}", set.repo),
        &format!("--set={}", set.label),
        &format!("--pg1-path={}", data.display()),
        // Consistent as soon as the backup is: no need to replay the whole archive here.
        "--type=immediate",
        "--target-action=promote",
        "restore",
    ]);
    run(cmd, "restore into a scratch folder")?;
    let records = ScratchServer::start(&data, &home, owner)?.count_records(&pg.database)?;
    Ok(format!(
        "PostgreSQL set {} (repo{}) restores, {records} transaction records",
        set.label, set.repo
    ))
}

/// A PostgreSQL started on a restored data folder, stopped when dropped.
struct ScratchServer {
    bin: PathBuf,
    port: u16,
    socket: PathBuf,
    child: std::process::Child,
    owner: Option<(u32, u32)>,
}

fn postgres_bin() -> anyhow::Result<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").exists().then_some((v, bin))
        })
        .collect();
    found.sort();
    found
        .pop()
        .map(|(_, b)| b)
        .context("no PostgreSQL server in /usr/lib/postgresql/*/bin to check the restore with")
}

impl ScratchServer {
    fn start(data: &Path, socket: &Path, owner: Option<(u32, u32)>) -> anyhow::Result<Self> {
        use std::os::unix::process::CommandExt;
        let bin = postgres_bin()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut cmd = Command::new(bin.join("postgres"));
        cmd.arg("-D")
            .arg(data)
            .args(["-p", &port.to_string(), "-k"])
            .arg(socket)
            .args(["-c", "listen_addresses=", "-c", "archive_mode=off"])
            // The primary's own settings otherwise: recovery refuses fewer connections,
            // workers or locks than it had.
            .args(["-c", "shared_buffers=32MB"])
            .stdin(Stdio::null());
        let log_path = socket.join("postgres.log");
        let log = std::fs::File::create(&log_path)?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&log_path, Some(uid), Some(gid))?;
            cmd.uid(uid).gid(gid);
        }
        cmd.stdout(log.try_clone()?).stderr(log);
        let child = cmd
            .spawn()
            .context("starting PostgreSQL on the restored data")?;
        let mut server = ScratchServer {
            bin,
            port,
            socket: socket.to_owned(),
            child,
            owner,
        };
        if let Err(e) = server.wait_promoted() {
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            bail!(
                "{e:#}; its log ends:\n{}",
                lines[lines.len().saturating_sub(8)..].join("\n")
            );
        }
        Ok(server)
    }

    fn psql(&self, database: &str, sql: &str) -> anyhow::Result<String> {
        use std::os::unix::process::CommandExt;
        let mut cmd = Command::new(self.bin.join("psql"));
        cmd.args(["-X", "-A", "-t", "-h"])
            .arg(&self.socket)
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                database,
                "-c",
                sql,
            ])
            .stdin(Stdio::null());
        if let Some((uid, gid)) = self.owner {
            cmd.uid(uid).gid(gid);
        }
        let out = cmd.output().context("running psql")?;
        if !out.status.success() {
            bail!("{}", String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    fn wait_promoted(&mut self) -> anyhow::Result<()> {
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                bail!("the restored PostgreSQL exited ({status})");
            }
            if let Ok(answer) = self.psql("postgres", "SELECT pg_is_in_recovery()") {
                if answer == "f" {
                    return Ok(());
                }
            }
            if start.elapsed() > Duration::from_secs(120) {
                bail!("the restored PostgreSQL did not finish recovery within 2 minutes");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn count_records(&self, database: &str) -> anyhow::Result<i64> {
        let text = self.psql(database, "SELECT count(*) FROM transaction_records")?;
        text.parse()
            .with_context(|| format!("counting records in the restored store: {text:?}"))
    }
}

impl Drop for ScratchServer {
    fn drop(&mut self) {
        // SAFETY: kill(2) has no memory effects. SIGQUIT: immediate shutdown.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGQUIT);
        }
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_target_time_is_utc_to_the_microsecond() {
        let at = time::macros::datetime!(2026-12-08 01:02:03.456789 +01:00);
        assert_eq!(super::target_time(at), "2026-12-08 00:02:03.456789+00");
    }
}
