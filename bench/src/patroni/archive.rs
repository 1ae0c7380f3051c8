//! WAL archiving with pgBackRest for a [`PatroniCluster`], and what restoring the whole
//! cluster from a backup takes: every member stopped and emptied, the cluster's state in
//! etcd forgotten, the backup restored into one member and recovered there, then that
//! member started first (it leads with its data) and the others cloned from it.
//!
//! Every member has its own pgBackRest configuration with itself as `pg1` (what
//! `archive-push` and a backup taken while it leads need); the two repositories are shared,
//! encrypted (aes-256-cbc) under passphrases made for the cluster.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::{Member, PatroniCluster, START_LIMIT};
use crate::postgres::{command, spawn_dying_with_us};

/// The pgBackRest stanza the cluster archives into.
pub const STANZA: &str = "pylon";
/// How long a restored member gets to replay the archive and open for writing.
const RECOVERY_LIMIT: Duration = Duration::from_secs(180);

/// Makes pgBackRest's folder in `dir` (two repositories, logs, locks, and the global
/// settings every member's configuration starts with); returns it.
pub(super) fn prepare(dir: &Path, owner: Option<(u32, u32)>) -> anyhow::Result<PathBuf> {
    let folder = dir.join("pgbackrest");
    let mut global = String::from("[global]\n");
    for repo in 1..=2 {
        let pass = hex::encode(rand::random::<[u8; 24]>());
        global.push_str(&format!(
            "repo{repo}-path={path}\nrepo{repo}-cipher-type=aes-256-cbc\nrepo{repo}-cipher-pass={pass}\nrepo{repo}-retention-full=4\n",
            path = folder.join(format!("repo{repo}")).display(),
        ));
    }
    global.push_str(&format!(
        "log-path={log}\nlock-path={lock}\nlog-level-console=warn\nlog-level-file=info\nstart-fast=y\n",
        log = folder.join("log").display(),
        lock = folder.join("lock").display(),
    ));
    for sub in ["repo1", "repo2", "log", "lock"] {
        std::fs::create_dir_all(folder.join(sub)).context("pgBackRest's folders")?;
    }
    std::fs::write(folder.join("global.conf"), global).context("pgBackRest's settings")?;
    give(&folder, owner)?;
    Ok(folder)
}

/// Writes `member`'s pgBackRest configuration (itself as `pg1`) into `home`.
pub(super) fn write_config(archive: &Path, member: &Member, home: &Path) -> anyhow::Result<()> {
    let global = std::fs::read_to_string(archive.join("global.conf"))?;
    let text = format!(
        "{global}\n[{STANZA}]\npg1-path={data}\npg1-port={port}\npg1-socket-path={home}\npg1-user=postgres\n",
        data = member.data.display(),
        port = member.pg_port,
        home = home.display(),
    );
    std::fs::write(config_path(home), text).context("a member's pgBackRest configuration")
}

fn config_path(home: &Path) -> PathBuf {
    home.join("pgbackrest.conf")
}

/// The member's PostgreSQL settings for archiving: its WAL pushed by its own pgBackRest
/// configuration, a segment handed over at least every second.
pub(super) fn settings(home: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("archive_mode", "on".to_owned()),
        ("archive_command", archive_command(home)),
        ("archive_timeout", "1".to_owned()),
    ]
}

fn archive_command(home: &Path) -> String {
    format!(
        "pgbackrest --config={} --stanza={STANZA} archive-push %p",
        config_path(home).display()
    )
}

/// Gives `path` and what is under it to `owner`.
fn give(path: &Path, owner: Option<(u32, u32)>) -> anyhow::Result<()> {
    let Some((uid, gid)) = owner else {
        return Ok(());
    };
    std::os::unix::fs::chown(path, Some(uid), Some(gid))?;
    if path.is_dir() {
        for entry in std::fs::read_dir(path)? {
            give(&entry?.path(), owner)?;
        }
    }
    Ok(())
}

impl PatroniCluster {
    /// Member `i`'s pgBackRest configuration (itself as `pg1`): for a backup while it
    /// leads, or a restore into its data folder. None without archiving.
    pub fn pgbackrest_config(&self, i: usize) -> Option<PathBuf> {
        self.archive
            .as_ref()
            .map(|_| config_path(self.members[i].data.parent().unwrap_or(Path::new("/"))))
    }

    /// Runs pgBackRest with member `i`'s configuration, as PostgreSQL's user.
    pub(super) fn pgbackrest(&self, i: usize, args: &[&str]) -> anyhow::Result<String> {
        let config = self
            .pgbackrest_config(i)
            .context("the cluster does not archive")?;
        let out = command(Path::new("pgbackrest"), self.owner, self.dir.path())
            .arg(format!("--config={}", config.display()))
            .arg(format!("--stanza={STANZA}"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .context("running pgbackrest (Debian package pgbackrest)")?;
        if !out.status.success() {
            bail!(
                "pgbackrest {}: {}{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr),
                String::from_utf8_lossy(&out.stdout)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Stops every member (Patroni stops its server first).
    pub fn stop(&mut self) {
        self.stop_all();
    }

    /// Forgets the cluster's state in etcd (`patronictl remove`), as before starting it
    /// again from a restored backup: the first member started then leads with the data it
    /// has, whatever the last leader had written.
    pub fn forget(&self) -> anyhow::Result<()> {
        use std::io::Write;
        let mut child = std::process::Command::new("patronictl")
            .arg("-c")
            .arg(&self.members[0].config)
            .args(["remove", &self.scope])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("running patronictl (Debian package patroni)")?;
        // Its two questions: the cluster's name, then that we know what we are doing.
        if let Some(mut stdin) = child.stdin.take() {
            writeln!(stdin, "{}\nYes I am aware", self.scope)?;
        }
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "patronictl remove: {}{}",
                String::from_utf8_lossy(&out.stderr),
                String::from_utf8_lossy(&out.stdout)
            );
        }
        Ok(())
    }

    /// Empties member `i`'s data folder (its disk lost), leaving it ready for a restore or
    /// a clone: empty, PostgreSQL's, mode 0700. The member must be stopped.
    pub fn empty_data(&self, i: usize) -> anyhow::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let data = &self.members[i].data;
        if data.exists() {
            std::fs::remove_dir_all(data).context("emptying a data folder")?;
        }
        std::fs::create_dir(data)?;
        std::fs::set_permissions(data, std::fs::Permissions::from_mode(0o700))?;
        give(data, self.owner)
    }

    /// Member `i`'s data folder.
    pub fn data_dir(&self, i: usize) -> &Path {
        &self.members[i].data
    }

    /// Runs member `i`'s PostgreSQL alone (no Patroni, no TCP) on its restored data folder
    /// until recovery has finished and it has opened for writing, then stops it cleanly,
    /// so that Patroni finds a server that was a primary.
    pub fn recover_alone(&self, i: usize) -> anyhow::Result<()> {
        let member = &self.members[i];
        let home = member.data.parent().context("a member's folder")?;
        let setting = |name: &str, value: &str| ["-c".to_owned(), format!("{name}={value}")];
        let data = member.data.display().to_string();
        let mut cmd = command(&self.bin.join("postgres"), self.owner, home);
        cmd.args(["-D", &data])
            .args(setting("port", &member.pg_port.to_string()))
            .args(setting("listen_addresses", ""))
            .args(setting(
                "unix_socket_directories",
                &home.display().to_string(),
            ))
            // The restored settings name the folders of the member that was backed up.
            .args(setting("hba_file", &format!("{data}/pg_hba.conf")))
            .args(setting("ident_file", &format!("{data}/pg_ident.conf")))
            .args(setting("archive_command", &archive_command(home)))
            .args(setting("synchronous_standby_names", ""))
            .stdin(Stdio::null());
        let log = std::fs::File::create(home.join("recovery.log"))?;
        cmd.stdout(log.try_clone()?).stderr(log);
        let mut server = spawn_dying_with_us(cmd, libc::SIGQUIT)
            .context("starting postgres on the restored data")?;
        let start = Instant::now();
        let recovered = loop {
            let answer = command(&self.bin.join("psql"), self.owner, home)
                .args(["-h", &home.display().to_string()])
                .args(["-p", &member.pg_port.to_string()])
                .args(["-U", "postgres", "-At", "-c", "SELECT pg_is_in_recovery()"])
                .stdin(Stdio::null())
                .output();
            if answer.is_ok_and(|o| o.status.success() && o.stdout.starts_with(b"f")) {
                break Ok(());
            }
            if let Ok(Some(status)) = server.try_wait() {
                break Err(anyhow::anyhow!(
                    "the restored PostgreSQL exited during recovery ({status})"
                ));
            }
            if start.elapsed() > RECOVERY_LIMIT {
                break Err(anyhow::anyhow!(
                    "the restored PostgreSQL did not finish recovery within {RECOVERY_LIMIT:?}"
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        // SIGINT: a fast shutdown, with a checkpoint.
        // SAFETY: kill(2) has no memory effects.
        unsafe {
            libc::kill(server.id() as libc::pid_t, libc::SIGINT);
        }
        let _ = server.wait();
        recovered
    }

    /// Starts member `i` (which then leads with its data), and once it leads the others
    /// (each cloned from it when its data folder is empty); returns when every member
    /// streams again, one in sync.
    pub fn start_from(&mut self, i: usize) -> anyhow::Result<()> {
        self.spawn(i)?;
        self.wait_until("the restored member leading", START_LIMIT, |c| {
            c.leader() == Some(i)
        })?;
        for other in (0..self.members.len()).filter(|&m| m != i) {
            self.spawn(other)?;
        }
        self.wait_until("every member streaming after a restore", START_LIMIT, |c| {
            c.all_streaming(c.members.len())
        })
    }
}
