//! A throwaway highly available PostgreSQL for a test or the chaos bench: `members`
//! PostgreSQL servers kept by Patroni (Debian `patroni`) on an etcd the caller runs, on
//! free loopback ports, with synchronous replication (a commit returns once it is on a
//! second server). One database `pylon`, trust authentication on loopback.
//!
//! Each member is a `patroni` process that starts its own `postgres`; [`PatroniCluster::kill`]
//! kills both at once, as a machine dying would, and [`PatroniCluster::restart`] brings the
//! member back (it rejoins as a replica, rewound if it must be). Dropping the cluster stops
//! every member and removes everything, also when a test panics; Patroni also stops (and
//! stops its server) when the process that started it dies.
//!
//! [`PatroniCluster::start_archiving`] also archives the primary's WAL with pgBackRest
//! into two encrypted repositories (the [`archive`] module), and the cluster can be
//! destroyed and started again from a restored backup, as an operator restores one.

pub mod archive;

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::Value;

use crate::postgres::{bin_dir, command, owner, spawn_dying_with_us};

/// How long a new cluster gets to elect a leader and bring its replicas in sync.
const START_LIMIT: Duration = Duration::from_secs(90);
/// The leader key's lifetime in etcd: a dead leader is replaced within this (plus a loop).
pub const LEADER_TTL_SECS: u64 = 10;

/// The Patroni program (Debian keeps it on PATH).
const PATRONI: &str = "/usr/bin/patroni";

struct Member {
    name: String,
    pg_port: u16,
    rest_port: u16,
    config: PathBuf,
    data: PathBuf,
    log: PathBuf,
    /// None while killed.
    patroni: Option<Child>,
}

pub struct PatroniCluster {
    members: Vec<Member>,
    scope: String,
    owner: Option<(u32, u32)>,
    bin: PathBuf,
    /// The etcd hosts (`host:port`) Patroni keeps the cluster's state in.
    etcd_hosts: Vec<String>,
    /// With WAL archiving: pgBackRest's folder.
    archive: Option<PathBuf>,
    dir: tempfile::TempDir,
}

/// A port that was free a moment ago on 127.0.0.1.
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl PatroniCluster {
    /// `members` servers (three for a quorum of data: a primary, a synchronous standby and
    /// one more) using the etcd at `etcd` (`http://host:port` each) as their DCS. Returns
    /// once a leader serves the database `pylon` and a synchronous standby follows it.
    pub fn start(etcd: &[String], members: usize) -> anyhow::Result<PatroniCluster> {
        Self::start_with(etcd, members, false)
    }

    /// As [`PatroniCluster::start`], with the primary archiving its WAL through pgBackRest
    /// (stanza [`archive::STANZA`], two repositories, a segment handed over at least every
    /// second) and the stanza created.
    pub fn start_archiving(etcd: &[String], members: usize) -> anyhow::Result<PatroniCluster> {
        Self::start_with(etcd, members, true)
    }

    fn start_with(
        etcd: &[String],
        members: usize,
        archiving: bool,
    ) -> anyhow::Result<PatroniCluster> {
        if !Path::new(PATRONI).exists() {
            bail!("Patroni is not installed ({PATRONI}); `cargo xtask test` installs it (Debian package patroni)");
        }
        let bin = bin_dir()?;
        let owner = owner()?;
        let dir = tempfile::Builder::new()
            .prefix("pylon-patroni-")
            .tempdir()
            .context("creating a directory for Patroni")?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .context("giving the Patroni directory to the postgres user")?;
        }
        let scope = format!("pylon-{:08x}", rand::random::<u32>());
        let hosts: Vec<String> = etcd
            .iter()
            .map(|e| {
                e.trim_start_matches("http://")
                    .trim_end_matches('/')
                    .to_owned()
            })
            .collect();
        let archive = archiving
            .then(|| archive::prepare(dir.path(), owner))
            .transpose()?;
        let mut cluster = PatroniCluster {
            members: Vec::new(),
            scope,
            owner,
            bin,
            etcd_hosts: hosts,
            archive,
            dir,
        };
        for i in 1..=members {
            let name = format!("pg{i}");
            let home = cluster.dir.path().join(&name);
            std::fs::create_dir(&home).context("a member's directory")?;
            if let Some((uid, gid)) = owner {
                std::os::unix::fs::chown(&home, Some(uid), Some(gid))?;
            }
            let member = Member {
                pg_port: free_port()?,
                rest_port: free_port()?,
                config: home.join("patroni.yml"),
                data: home.join("data"),
                log: home.join("patroni.log"),
                name,
                patroni: None,
            };
            std::fs::write(&member.config, member_config(&cluster, &member, &home))
                .context("writing a Patroni configuration")?;
            if let Some(archive) = &cluster.archive {
                archive::write_config(archive, &member, &home)?;
            }
            cluster.members.push(member);
        }
        // The first member bootstraps alone (so it is the one that runs initdb), the
        // others clone it.
        cluster.spawn(0)?;
        cluster.wait_until("a leader", START_LIMIT, |c| c.leader().is_some())?;
        for i in 1..members {
            cluster.spawn(i)?;
        }
        cluster.wait_until("every member streaming, one in sync", START_LIMIT, |c| {
            c.all_streaming(members)
        })?;
        cluster.create_database()?;
        if cluster.archive.is_some() {
            let leader = cluster.leader().context("no leader for stanza-create")?;
            cluster.pgbackrest(leader, &["stanza-create"])?;
        }
        Ok(cluster)
    }

    fn spawn(&mut self, i: usize) -> anyhow::Result<()> {
        let member = &mut self.members[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&member.log)
            .context("opening a Patroni log")?;
        if let Some((uid, gid)) = self.owner {
            std::os::unix::fs::chown(&member.log, Some(uid), Some(gid))?;
        }
        let mut cmd = command(Path::new(PATRONI), self.owner, self.dir.path());
        cmd.arg(&member.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("Patroni log handle")?)
            .stderr(log);
        // SIGTERM (Patroni stops its server, then itself) when the process that started
        // it dies.
        member.patroni = Some(spawn_dying_with_us(cmd, libc::SIGTERM).context("starting patroni")?);
        Ok(())
    }

    fn wait_until(
        &self,
        what: &str,
        limit: Duration,
        done: impl Fn(&Self) -> bool,
    ) -> anyhow::Result<()> {
        let start = Instant::now();
        while !done(self) {
            if start.elapsed() > limit {
                bail!(
                    "the Patroni cluster: no {what} within {limit:?}\n{}",
                    self.log_tails(25)
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(())
    }

    /// Patroni's view of the cluster (`GET /cluster`), from the first member that answers.
    pub fn cluster_state(&self) -> Option<Value> {
        self.members
            .iter()
            .filter(|m| m.patroni.is_some())
            .find_map(|m| {
                ureq::get(&format!("http://127.0.0.1:{}/cluster", m.rest_port))
                    .timeout(Duration::from_secs(2))
                    .call()
                    .ok()?
                    .into_json::<Value>()
                    .ok()
            })
    }

    /// The index of the member that leads (is the primary) and runs, if any.
    pub fn leader(&self) -> Option<usize> {
        let state = self.cluster_state()?;
        let leader = state["members"]
            .as_array()?
            .iter()
            .find(|m| m["role"] == "leader" && m["state"] == "running")?;
        let name = leader["name"].as_str()?;
        self.members.iter().position(|m| m.name == name)
    }

    /// Every one of `members` runs; the others stream from the leader, one synchronously.
    fn all_streaming(&self, members: usize) -> bool {
        let Some(state) = self.cluster_state() else {
            return false;
        };
        let Some(list) = state["members"].as_array() else {
            return false;
        };
        let streaming = list
            .iter()
            .filter(|m| {
                m["role"] != "leader"
                    && matches!(m["state"].as_str(), Some("streaming" | "running"))
            })
            .count();
        let sync = list.iter().any(|m| m["role"] == "sync_standby");
        list.len() == members && self.leader().is_some() && streaming == members - 1 && sync
    }

    fn create_database(&self) -> anyhow::Result<()> {
        let leader = self
            .leader()
            .context("no leader to create the database on")?;
        let output = std::process::Command::new(self.bin.join("createdb"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.members[leader].pg_port.to_string(),
            ])
            .args(["-U", "postgres", "pylon"])
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
        Ok(())
    }

    /// The URL an app uses: every member, the writable one chosen at each connection.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("127.0.0.1:{}", m.pg_port))
            .collect();
        format!(
            "postgres://postgres@{}/pylon?target_session_attrs=read-write",
            hosts.join(",")
        )
    }

    /// One member's own URL (whatever its role).
    pub fn member_url(&self, i: usize) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/pylon",
            self.members[i].pg_port
        )
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// (uid, gid) the servers run as when started by root (PostgreSQL's user).
    pub fn owner(&self) -> Option<(u32, u32)> {
        self.owner
    }

    pub fn name(&self, i: usize) -> &str {
        &self.members[i].name
    }

    /// SIGKILLs member `i`'s Patroni and its PostgreSQL server together (a machine dying).
    pub fn kill(&mut self, i: usize) {
        let member = &mut self.members[i];
        let postmaster = postmaster_pid(&member.data);
        if let Some(mut patroni) = member.patroni.take() {
            let _ = patroni.kill();
            let _ = patroni.wait();
        }
        if let Some(pid) = postmaster {
            // SAFETY: kill(2) has no memory effects.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }

    /// SIGSTOPs (`true`) or SIGCONTs member `i`'s Patroni, its server and every server
    /// process (a machine freezing: stopping the postmaster alone leaves its backends
    /// serving).
    pub fn freeze(&mut self, i: usize, frozen: bool) {
        let signal = if frozen { libc::SIGSTOP } else { libc::SIGCONT };
        let member = &self.members[i];
        let postmaster = postmaster_pid(&member.data);
        let pids: Vec<libc::pid_t> = member
            .patroni
            .as_ref()
            .map(|c| c.id() as libc::pid_t)
            .into_iter()
            .chain(postmaster)
            .chain(postmaster.map(children).unwrap_or_default())
            .collect();
        for pid in pids {
            // SAFETY: kill(2) has no memory effects.
            unsafe {
                libc::kill(pid, signal);
            }
        }
    }

    /// Starts a killed member again; it rejoins as a replica.
    pub fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        if self.members[i].patroni.is_some() {
            return Ok(());
        }
        // A killed server's backends may still be exiting; Patroni waits for its pid file.
        self.spawn(i)
    }

    /// Waits until a leader other than `old` (if given) runs.
    pub fn wait_leader(&self, not: Option<usize>, limit: Duration) -> anyhow::Result<usize> {
        self.wait_until("new leader", limit, |c| {
            c.leader().is_some_and(|l| Some(l) != not)
        })?;
        self.leader().context("the leader went away again")
    }

    /// Waits until every member runs again, streaming, one in sync.
    pub fn wait_healthy(&self, limit: Duration) -> anyhow::Result<()> {
        self.wait_until("healthy cluster", limit, |c| {
            c.all_streaming(c.members.len())
        })
    }

    /// The last `lines` lines of each member's log, for failure messages.
    pub fn log_tails(&self, lines: usize) -> String {
        self.members
            .iter()
            .map(|m| {
                let text = std::fs::read_to_string(&m.log).unwrap_or_default();
                let all: Vec<&str> = text.lines().collect();
                format!(
                    "--- {} ({}):\n{}",
                    m.name,
                    m.log.display(),
                    all[all.len().saturating_sub(lines)..].join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Stops every member: SIGTERM (Patroni stops its server), then SIGKILL for what is
    /// left after a few seconds.
    fn stop_all(&mut self) {
        // A frozen member would never act on its signals.
        for i in 0..self.members.len() {
            self.freeze(i, false);
        }
        for member in &self.members {
            if let Some(p) = &member.patroni {
                // SAFETY: kill(2) has no memory effects.
                unsafe {
                    libc::kill(p.id() as libc::pid_t, libc::SIGTERM);
                }
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        for member in &mut self.members {
            if let Some(mut p) = member.patroni.take() {
                while matches!(p.try_wait(), Ok(None)) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(20));
                }
                let _ = p.kill();
                let _ = p.wait();
            }
            if let Some(pid) = postmaster_pid(&member.data) {
                // SAFETY: kill(2) has no memory effects.
                unsafe {
                    libc::kill(pid, libc::SIGQUIT);
                }
            }
        }
    }
}

impl Drop for PatroniCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.log_tails(20));
        }
        self.stop_all();
    }
}

/// The processes whose parent is `parent` (from /proc).
fn children(parent: libc::pid_t) -> Vec<libc::pid_t> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<libc::pid_t>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                // The fields after the command (which may hold spaces) start after ')'.
                .and_then(|s| s.rsplit_once(')').map(|(_, rest)| rest.to_owned()))
                .and_then(|rest| rest.split_whitespace().nth(1)?.parse::<libc::pid_t>().ok())
                == Some(parent)
        })
        .collect()
}

/// The running postmaster of `data`, from its pid file (first line).
fn postmaster_pid(data: &Path) -> Option<libc::pid_t> {
    let text = std::fs::read_to_string(data.join("postmaster.pid")).ok()?;
    let pid: libc::pid_t = text.lines().next()?.trim().parse().ok()?;
    // SAFETY: signal 0 only checks that the process exists.
    (pid > 0 && unsafe { libc::kill(pid, 0) } == 0).then_some(pid)
}

/// One member's Patroni configuration (YAML; JSON is YAML).
fn member_config(cluster: &PatroniCluster, member: &Member, home: &Path) -> String {
    let (scope, etcd_hosts, bin) = (&cluster.scope, &cluster.etcd_hosts, &cluster.bin);
    let pg = format!("127.0.0.1:{}", member.pg_port);
    let rest = format!("127.0.0.1:{}", member.rest_port);
    let mut parameters = serde_json::json!({"unix_socket_directories": home});
    if cluster.archive.is_some() {
        for (name, value) in archive::settings(home) {
            parameters[name] = Value::String(value);
        }
    }
    let config = serde_json::json!({
        "scope": scope,
        "namespace": "/pylon-patroni/",
        "name": member.name,
        "log": {"level": "INFO"},
        "restapi": {"listen": rest, "connect_address": rest},
        "etcd3": {"hosts": etcd_hosts},
        "bootstrap": {
            "dcs": {
                "ttl": LEADER_TTL_SECS,
                "loop_wait": 1,
                "retry_timeout": 4,
                "maximum_lag_on_failover": 1_048_576,
                // A commit returns once a standby has it; only that standby may be
                // promoted, so a confirmed record survives the primary.
                "synchronous_mode": true,
                "postgresql": {
                    "use_pg_rewind": true,
                    "use_slots": true,
                    "parameters": {
                        "max_connections": 100,
                        "shared_buffers": "32MB",
                        "wal_level": "replica",
                        "hot_standby": "on",
                        "max_wal_senders": 10,
                        "max_replication_slots": 10,
                        "wal_log_hints": "on",
                        "wal_keep_size": "128MB",
                    }
                }
            },
            "initdb": [{"encoding": "UTF8"}, {"locale": "C"}, {"username": "postgres"}, {"auth": "trust"}],
        },
        "postgresql": {
            "listen": pg,
            "connect_address": pg,
            "data_dir": member.data,
            "bin_dir": bin,
            "pgpass": home.join("pgpass"),
            "authentication": {
                "superuser": {"username": "postgres", "password": "postgres"},
                "replication": {"username": "replicator", "password": "replicator"},
                "rewind": {"username": "postgres", "password": "postgres"},
            },
            "parameters": parameters,
            "pg_hba": [
                "local all all trust",
                "host all all 127.0.0.1/32 trust",
                "host replication all 127.0.0.1/32 trust",
            ],
        },
        "tags": {"nofailover": false, "noloadbalance": false, "clonefrom": false},
    });
    config.to_string()
}
