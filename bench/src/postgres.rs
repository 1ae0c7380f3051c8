//! A throwaway PostgreSQL server for a test or a benchmark: `initdb` into a temporary directory, the
//! server on a free loopback port (its unix socket in that directory too), one database
//! `pylon`. Dropping it stops the server at once and removes everything, also when a test
//! panics; the server also dies with the test process, since it is started with a
//! parent-death signal.
//!
//! Debian keeps `initdb` and `postgres` in `/usr/lib/postgresql/<version>/bin`, off PATH.
//! PostgreSQL refuses to run as root: as root, the cluster belongs to the `postgres` user.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// A port that was free a moment ago on 127.0.0.1.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_or(0, |a| a.port())
}

/// How long a new server gets to accept connections.
const START_LIMIT: Duration = Duration::from_secs(30);
/// Tries with another port when the one picked was taken in the meantime.
const PORT_TRIES: usize = 3;

pub struct PostgresCluster {
    bin: PathBuf,
    /// The loopback address it listens on (127.0.0.1 unless a second site's).
    host: std::net::Ipv4Addr,
    port: u16,
    /// None once stopped.
    server: Option<Child>,
    log: PathBuf,
    /// With TLS: the CA of the server's certificate.
    ca: Option<PathBuf>,
    /// Server settings beyond the defaults (`-c name=value`).
    settings: Vec<(String, String)>,
    dir: tempfile::TempDir,
}

impl PostgresCluster {
    /// A new cluster with a database `pylon`, trust authentication for user `postgres`.
    pub fn start() -> anyhow::Result<PostgresCluster> {
        Self::start_with(false, Vec::new())
    }

    /// As [`PostgresCluster::start`], the server started with `settings` (e.g. WAL
    /// archiving) beside the defaults.
    pub fn start_with_settings(settings: &[(&str, &str)]) -> anyhow::Result<PostgresCluster> {
        let settings = settings
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Self::start_with(false, settings)
    }

    /// As [`PostgresCluster::start`], taking TCP logins over TLS only (`hostssl`), with a
    /// server certificate for 127.0.0.1 and localhost from a new CA ([`Self::ca`]).
    pub fn start_tls() -> anyhow::Result<PostgresCluster> {
        Self::start_with(true, Vec::new())
    }

    /// The CA of the server's certificate (TLS clusters only).
    pub fn ca(&self) -> Option<&Path> {
        self.ca.as_deref()
    }

    fn start_with(tls: bool, settings: Vec<(String, String)>) -> anyhow::Result<PostgresCluster> {
        let bin = bin_dir()?;
        let dir = tempfile::Builder::new()
            .prefix("pylon-pg-")
            .tempdir()
            .context("creating a directory for PostgreSQL")?;
        let owner = owner()?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .context("giving the PostgreSQL directory to the postgres user")?;
        }
        let data = dir.path().join("data");
        let log = dir.path().join("server.log");
        // -N: initdb does not fsync the new files (saves seconds); the server itself runs
        // with fsync on, as in production.
        let output = command(&bin.join("initdb"), owner, dir.path())
            .arg("-D")
            .arg(&data)
            .args(["--auth=trust", "--username=postgres", "--encoding=UTF8"])
            .args(["--locale=C", "--no-instructions", "-N"])
            .stdin(Stdio::null())
            .output()
            .context("running initdb")?;
        if !output.status.success() {
            bail!(
                "initdb failed ({}):\n{}{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        // Trust the whole loopback range (not only 127.0.0.1): a second site's processes
        // run on addresses of their own.
        let hba = data.join("pg_hba.conf");
        let mut rules = std::fs::read_to_string(&hba).context("reading pg_hba.conf")?;
        rules.push_str("host all all 127.0.0.0/8 trust\nhost replication all 127.0.0.0/8 trust\n");
        std::fs::write(&hba, rules).context("writing pg_hba.conf")?;
        let ca = if tls {
            Some(serve_tls_only(dir.path(), &data, owner)?)
        } else {
            None
        };
        let mut cluster = PostgresCluster {
            bin,
            host: std::net::Ipv4Addr::LOCALHOST,
            port: 0,
            server: None,
            log,
            ca,
            settings,
            dir,
        };
        let mut tries = 0;
        loop {
            tries += 1;
            cluster.port = free_port();
            match cluster.start_server(owner) {
                Ok(()) => break,
                Err(e) if tries < PORT_TRIES && cluster.log_tail(20).contains("in use") => {
                    eprintln!(
                        "postgres: port {} was taken, trying another: {e:#}",
                        cluster.port
                    );
                }
                Err(e) => bail!("{e:#}\n{}", cluster.log_tail(30)),
            }
        }
        let output = Command::new(cluster.bin.join("createdb"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &cluster.port.to_string(),
                "-U",
                "postgres",
            ])
            .arg("pylon")
            .stdin(Stdio::null())
            .output()
            .context("running createdb")?;
        if !output.status.success() {
            bail!(
                "createdb failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(cluster)
    }

    /// A streaming standby of `primary`, as a second site would hold: a base backup
    /// (`pg_basebackup -R`, so it follows the primary), started read-only on its own free
    /// port on `host`, replaying what the primary writes. `SELECT pg_promote()` makes it a
    /// primary.
    pub fn start_standby_of(
        primary: &PostgresCluster,
        host: std::net::Ipv4Addr,
    ) -> anyhow::Result<PostgresCluster> {
        let bin = bin_dir()?;
        let dir = tempfile::Builder::new()
            .prefix("pylon-pg-standby-")
            .tempdir()
            .context("creating a directory for the standby")?;
        let owner = owner()?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .context("giving the standby's directory to the postgres user")?;
        }
        let data = dir.path().join("data");
        let output = command(&bin.join("pg_basebackup"), owner, dir.path())
            .args([
                "-h",
                &primary.host.to_string(),
                "-p",
                &primary.port.to_string(),
                "-U",
                "postgres",
            ])
            .arg("-D")
            .arg(&data)
            .args(["-R", "-X", "stream", "-c", "fast", "--no-sync"])
            .stdin(Stdio::null())
            .output()
            .context("running pg_basebackup")?;
        if !output.status.success() {
            bail!(
                "pg_basebackup failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let mut standby = PostgresCluster {
            bin,
            host,
            port: 0,
            server: None,
            log: dir.path().join("server.log"),
            ca: None,
            settings: Vec::new(),
            dir,
        };
        let mut tries = 0;
        loop {
            tries += 1;
            standby.port = free_port();
            match standby.start_server(owner) {
                Ok(()) => return Ok(standby),
                Err(e) if tries < PORT_TRIES && standby.log_tail(20).contains("in use") => {
                    eprintln!("postgres standby: port {} was taken: {e:#}", standby.port);
                }
                Err(e) => bail!("{e:#}\n{}", standby.log_tail(30)),
            }
        }
    }

    fn start_server(&mut self, owner: Option<(u32, u32)>) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .context("opening the PostgreSQL log")?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&self.log, Some(uid), Some(gid))
                .context("giving the PostgreSQL log to the postgres user")?;
        }
        let mut server = command(&self.bin.join("postgres"), owner, self.dir.path());
        server
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-p", &self.port.to_string()])
            .arg("-k")
            .arg(self.dir.path())
            .args(["-c", &format!("listen_addresses={}", self.host)])
            .args(["-c", "max_connections=100"])
            .args(["-c", "shared_buffers=32MB"])
            .args(
                self.settings
                    .iter()
                    .flat_map(|(k, v)| ["-c".to_owned(), format!("{k}={v}")]),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("PostgreSQL log handle")?)
            .stderr(log);
        // SIGQUIT (PostgreSQL's immediate shutdown) when the test process dies.
        let server = spawn_dying_with_us(server, libc::SIGQUIT).context("starting postgres")?;
        self.server = Some(server);
        let start = Instant::now();
        loop {
            if let Some(status) = self
                .server
                .as_mut()
                .and_then(|s| s.try_wait().ok().flatten())
            {
                self.server = None;
                bail!("postgres exited with {status} while starting");
            }
            let ready = Command::new(self.bin.join("pg_isready"))
                .args([
                    "-q",
                    "-h",
                    &self.host.to_string(),
                    "-p",
                    &self.port.to_string(),
                ])
                .args(["-U", "postgres", "-d", "postgres", "-t", "1"])
                .status()
                .context("running pg_isready")?;
            if ready.success() {
                return Ok(());
            }
            if start.elapsed() > START_LIMIT {
                self.stop();
                bail!("postgres did not accept connections within {START_LIMIT:?}");
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// `postgres://postgres@HOST:PORT/pylon`
    pub fn url(&self) -> String {
        self.url_for("pylon")
    }

    /// The URL of another database on this server.
    pub fn url_for(&self, database: &str) -> String {
        format!("postgres://postgres@{}:{}/{database}", self.host, self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The data folder.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The folder of the server's unix socket (and of the cluster's other files).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// (uid, gid) the server runs as when the tests run as root.
    pub fn owner(&self) -> anyhow::Result<Option<(u32, u32)>> {
        owner()
    }

    /// Starts the server again on its port (after [`PostgresCluster::stop`]), on whatever
    /// its data folder holds now (e.g. a restore).
    pub fn start_again(&mut self) -> anyhow::Result<()> {
        if self.server.is_some() {
            return Ok(());
        }
        let owner = owner()?;
        self.start_server(owner)
            .map_err(|e| anyhow::anyhow!("{e:#}\n{}", self.log_tail(30)))
    }

    /// Stops the server at once (immediate shutdown, like a crash: the next start would
    /// recover from the WAL). No-op if it is stopped.
    pub fn stop(&mut self) {
        if let Some(mut server) = self.server.take() {
            unsafe {
                libc::kill(server.id() as libc::pid_t, libc::SIGQUIT);
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                match server.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() > deadline => {
                        let _ = server.kill();
                        let _ = server.wait();
                        break;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        }
    }

    /// The last `lines` lines of the server log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        let tail = &all[all.len().saturating_sub(lines)..];
        format!(
            "--- postgres log ({}), last {} lines:\n{}",
            self.log.display(),
            tail.len(),
            tail.join("\n")
        )
    }
}

impl Drop for PostgresCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.log_tail(15));
        }
        self.stop();
        // The TempDir removes the data directory after this (we are root or its owner).
    }
}

/// The newest `/usr/lib/postgresql/<version>/bin` with initdb, or the directory of an
/// `initdb` on PATH.
pub(crate) fn bin_dir() -> anyhow::Result<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    if let Some((_, bin)) = found.pop() {
        return Ok(bin);
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.join("initdb").exists() && dir.join("postgres").exists() {
                return Ok(dir);
            }
        }
    }
    bail!(
        "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb, no initdb on PATH); \
         `cargo xtask test` installs it (Debian package postgresql)"
    )
}

/// (uid, gid) to run PostgreSQL as when we are root; None to run it as ourselves.
pub(crate) fn owner() -> anyhow::Result<Option<(u32, u32)>> {
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    // getpwnam_r: tests start clusters from several threads at once.
    let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    let rc = unsafe {
        libc::getpwnam_r(
            c"postgres".as_ptr(),
            &mut entry,
            buf.as_mut_ptr(),
            buf.len(),
            &mut found,
        )
    };
    if rc != 0 || found.is_null() {
        bail!(
            "PostgreSQL refuses to run as root and there is no `postgres` user to run it as \
             (the Debian package postgresql creates it)"
        );
    }
    Ok(Some((entry.pw_uid, entry.pw_gid)))
}

/// `program` run as `owner` (if any) from `dir`.
/// Makes a CA and a server certificate in `dir/tls`, turns TLS on and requires it of every
/// TCP login; returns the CA's file.
fn serve_tls_only(dir: &Path, data: &Path, owner: Option<(u32, u32)>) -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let tls = dir.join("tls");
    let ca = crate::certs::TestCa::new(&tls, "Pylon test PostgreSQL CA")?;
    let server = ca.issue("server", &["127.0.0.1", "localhost"], None)?;
    // PostgreSQL wants its key readable by its own user only.
    std::fs::set_permissions(&server.key, std::fs::Permissions::from_mode(0o600))?;
    if let Some((uid, gid)) = owner {
        for path in [&tls, &server.cert, &server.key] {
            std::os::unix::fs::chown(path, Some(uid), Some(gid))
                .context("giving the TLS files to the postgres user")?;
        }
    }
    let conf = data.join("postgresql.conf");
    let mut text = std::fs::read_to_string(&conf).context("reading postgresql.conf")?;
    text.push_str(&format!(
        "\nssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\n",
        server.cert.display(),
        server.key.display()
    ));
    std::fs::write(&conf, text).context("writing postgresql.conf")?;
    let hba = data.join("pg_hba.conf");
    let rules: String = std::fs::read_to_string(&hba)
        .context("reading pg_hba.conf")?
        .lines()
        .map(|line| match line.strip_prefix("host ") {
            Some(rest) => format!("hostssl {rest}\n"),
            None => format!("{line}\n"),
        })
        .collect();
    std::fs::write(&hba, rules).context("writing pg_hba.conf")?;
    Ok(ca.ca_pem.clone())
}

pub(crate) fn command(program: &Path, owner: Option<(u32, u32)>, dir: &Path) -> Command {
    let mut command = Command::new(program);
    command.current_dir(dir).env("LC_ALL", "C");
    if let Some((uid, gid)) = owner {
        command.uid(uid).gid(gid);
    }
    command
}

/// Spawns `command` so that it gets `signal` when this process dies, however it dies.
/// The signal is set after the uid change (which would clear it), and follows the death of
/// the spawning *thread*, hence a thread that lasts as long as the process.
pub(crate) fn spawn_dying_with_us(
    mut command: Command,
    signal: libc::c_int,
) -> std::io::Result<Child> {
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, signal) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    spawn_from_lasting_thread(command)
}

type SpawnRequest = (Command, mpsc::Sender<std::io::Result<Child>>);

/// Spawns `command` from a thread that lives as long as the process, so that a
/// parent-death signal fires when the process ends, not when the (test or blocking-pool)
/// thread that asked for the server does.
fn spawn_from_lasting_thread(command: Command) -> std::io::Result<Child> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (requests, queue) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("postgres-spawner".into())
            .spawn(move || {
                for (mut command, reply) in queue {
                    let _ = reply.send(command.spawn());
                }
            })
            .expect("starting the postgres spawner thread");
        Mutex::new(requests)
    });
    let (reply, answer) = mpsc::channel();
    spawner
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .send((command, reply))
        .map_err(|_| std::io::Error::other("the postgres spawner thread is gone"))?;
    answer
        .recv()
        .map_err(|_| std::io::Error::other("the postgres spawner thread is gone"))?
}
