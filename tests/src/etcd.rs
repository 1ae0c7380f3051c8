//! Real `etcd` processes for a test: an N-member cluster on free loopback ports, with data
//! and logs in a temporary directory, killed and removed on drop even when a test fails.
//!
//! [`EtcdCluster::start_secure`] makes the cluster a production one: clients reach it over
//! TLS and must show a certificate of the test CA (`--client-cert-auth`), and etcd's auth is
//! on, with a `pylon` user whose role may read and write only under `/pylon`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use etcd_client::{Client, ConnectOptions, Permission};
use pylon_bench::certs::{PemPair, TestCa};
use pylon_service::tls::{ClusterTls, TlsFiles};

use crate::free_port;

/// The etcd user Pylon logs in as on a secure cluster, and its role.
pub const PYLON_USER: &str = "pylon";
/// Its password.
pub const PYLON_PASSWORD: &str = "pylon-etcd-test-password";

/// The certificates of a secure cluster, in its directory.
pub struct EtcdCerts {
    /// The CA that signed the members' and the clients' certificates.
    pub ca: PathBuf,
    server: PemPair,
    /// CN `root`: etcd's root user, for the harness.
    root: PemPair,
    /// CN `pylon`: the [`PYLON_USER`], by certificate.
    pub pylon: PemPair,
    /// CN `root` too, but from another CA: etcd must refuse it.
    pub stranger: PemPair,
    /// The other CA's certificate.
    pub stranger_ca: PathBuf,
}

impl EtcdCerts {
    /// Client TLS files: `pair` with the cluster's CA.
    pub fn files(&self, pair: &PemPair) -> TlsFiles {
        TlsFiles {
            ca: Some(self.ca.clone()),
            cert: Some(pair.cert.clone()),
            key: Some(pair.key.clone()),
        }
    }

    fn generate(dir: &std::path::Path) -> anyhow::Result<EtcdCerts> {
        let ca = TestCa::new(dir, "Pylon test etcd CA")?;
        let other = TestCa::new(&dir.join("stranger"), "Someone else's CA")?;
        Ok(EtcdCerts {
            server: ca.issue_named("etcd-server", "etcd", &["127.0.0.1", "localhost"])?,
            root: ca.issue_named("etcd-root", "root", &["root"])?,
            pylon: ca.issue_named("etcd-pylon", PYLON_USER, &["pylon-control"])?,
            stranger: other.issue_named("stranger", "root", &["root"])?,
            stranger_ca: other.ca_pem.clone(),
            ca: ca.ca_pem.clone(),
        })
    }
}

/// How long a new cluster gets to elect a leader and answer.
const START_LIMIT: Duration = Duration::from_secs(20);

pub struct EtcdCluster {
    members: Vec<Member>,
    dir: tempfile::TempDir,
    /// A secure cluster's certificates, and the harness's TLS (as root).
    secure: Option<(EtcdCerts, Arc<ClusterTls>)>,
}

struct Member {
    name: String,
    scheme: &'static str,
    client_port: u16,
    log: PathBuf,
    /// None once killed.
    child: Option<Child>,
    /// etcd's id for the member, learnt once the cluster answered.
    id: u64,
    /// Its command line, to start it again on its data.
    args: Vec<std::ffi::OsString>,
}

impl EtcdCluster {
    /// Starts `members` etcd processes forming one new cluster, and waits until every member
    /// answers and knows the leader. Short heartbeat and election timeouts (50/500 ms) keep
    /// leader fail-over fast.
    pub async fn start(members: usize) -> anyhow::Result<EtcdCluster> {
        EtcdCluster::start_with(members, false).await
    }

    /// As [`EtcdCluster::start`], with client TLS, client certificates and etcd's auth on
    /// (see the module documentation).
    pub async fn start_secure(members: usize) -> anyhow::Result<EtcdCluster> {
        EtcdCluster::start_with(members, true).await
    }

    async fn start_with(members: usize, secure: bool) -> anyhow::Result<EtcdCluster> {
        if members == 0 {
            bail!("an etcd cluster needs at least one member");
        }
        let dir = tempfile::Builder::new()
            .prefix("pylon-etcd-")
            .tempdir()
            .context("creating a directory for etcd")?;
        let ports = distinct_ports(2 * members);
        let ports: Vec<(u16, u16)> = ports.chunks(2).map(|p| (p[0], p[1])).collect();
        let initial_cluster = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}"))
            .collect::<Vec<_>>()
            .join(",");
        let token = format!(
            "pylon-test-{}-{}",
            std::process::id(),
            dir.path()
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("x")
        );
        let secure = if secure {
            let certs = EtcdCerts::generate(&dir.path().join("certs"))?;
            let tls = ClusterTls::load(&certs.files(&certs.root))?
                .context("the harness's etcd TLS files")?;
            Some((certs, tls))
        } else {
            None
        };
        let scheme = if secure.is_some() { "https" } else { "http" };
        let mut cluster = EtcdCluster {
            members: Vec::with_capacity(members),
            dir,
            secure,
        };
        for (i, (client_port, peer_port)) in ports.into_iter().enumerate() {
            let name = format!("m{i}");
            let log = cluster.dir.path().join(format!("{name}.log"));
            let log_file = std::fs::File::create(&log).context("creating an etcd log file")?;
            let client_url = format!("{scheme}://127.0.0.1:{client_port}");
            let peer_url = format!("http://127.0.0.1:{peer_port}");
            let mut command = Command::new("etcd");
            command.stdin(Stdio::null());
            if let Some((certs, _)) = &cluster.secure {
                command
                    .arg("--cert-file")
                    .arg(&certs.server.cert)
                    .arg("--key-file")
                    .arg(&certs.server.key)
                    .arg("--trusted-ca-file")
                    .arg(&certs.ca)
                    .arg("--client-cert-auth");
            }
            command
                .arg("--name")
                .arg(&name)
                .arg("--data-dir")
                .arg(cluster.dir.path().join(format!("{name}.data")))
                .args(["--listen-client-urls", &client_url])
                .args(["--advertise-client-urls", &client_url])
                .args(["--listen-peer-urls", &peer_url])
                .args(["--initial-advertise-peer-urls", &peer_url])
                .args(["--initial-cluster", &initial_cluster])
                .args(["--initial-cluster-state", "new"])
                .args(["--initial-cluster-token", &token])
                .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
                .args(["--logger", "zap", "--log-outputs", "stderr"]);
            let args: Vec<std::ffi::OsString> = command.get_args().map(|a| a.to_owned()).collect();
            let child = command
                .stdout(log_file.try_clone().context("etcd log file handle")?)
                .stderr(log_file)
                .spawn();
            let child = match child {
                Ok(child) => child,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
                    "etcd is not installed (no `etcd` on PATH); `cargo xtask test` installs it \
                     (Debian package etcd-server)"
                ),
                Err(e) => return Err(e).context("starting etcd"),
            };
            cluster.members.push(Member {
                name,
                scheme,
                client_port,
                log,
                child: Some(child),
                id: 0,
                args,
            });
        }
        if let Err(e) = cluster.wait_ready().await {
            bail!("{e:#}\n{}", cluster.log_tails(30));
        }
        if cluster.secure.is_some() {
            if let Err(e) = cluster.enable_auth().await {
                bail!("turning etcd's auth on: {e:#}\n{}", cluster.log_tails(30));
            }
        }
        Ok(cluster)
    }

    /// A root client (by the harness's certificate) of the first live member.
    pub async fn root_client(&self) -> anyhow::Result<Client> {
        let member = self
            .members
            .iter()
            .find(|m| m.child.is_some())
            .context("no live etcd member")?;
        client(&member.endpoint(), self.harness_tls()).await
    }

    /// The certificates of a secure cluster.
    pub fn certs(&self) -> Option<&EtcdCerts> {
        self.secure.as_ref().map(|(certs, _)| certs)
    }

    fn harness_tls(&self) -> Option<&Arc<ClusterTls>> {
        self.secure.as_ref().map(|(_, tls)| tls)
    }

    /// The root user and role, the `pylon` user with read and write under `/pylon` only,
    /// then `auth enable`.
    async fn enable_auth(&self) -> anyhow::Result<()> {
        let mut root = self.root_client().await?;
        root.user_add("root", "root-etcd-test-password", None)
            .await
            .context("adding root")?;
        root.user_grant_role("root", "root").await?;
        root.role_add(PYLON_USER).await?;
        root.role_grant_permission(PYLON_USER, Permission::read_write("/pylon").with_prefix())
            .await?;
        root.user_add(PYLON_USER, PYLON_PASSWORD, None).await?;
        root.user_grant_role(PYLON_USER, PYLON_USER).await?;
        root.auth_enable().await.context("auth enable")?;
        Ok(())
    }

    /// Polls every member until each reports the same leader.
    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let start = Instant::now();
        let mut last_error;
        loop {
            for (i, member) in self.members.iter_mut().enumerate() {
                if let Some(child) = member.child.as_mut() {
                    if let Ok(Some(status)) = child.try_wait() {
                        bail!("etcd member {i} ({}) exited with {status}", member.name);
                    }
                }
            }
            match self.statuses().await {
                Ok(statuses) if statuses.iter().all(|(_, _, leader)| *leader != 0) => {
                    let leader = statuses[0].2;
                    if statuses.iter().all(|(_, _, l)| *l == leader) {
                        for (i, id, _) in statuses {
                            self.members[i].id = id;
                        }
                        return Ok(());
                    }
                    last_error = "the members do not agree on a leader yet".into();
                }
                Ok(_) => last_error = "no leader yet".into(),
                Err(e) => last_error = format!("{e:#}"),
            }
            if start.elapsed() > START_LIMIT {
                bail!("the etcd cluster did not become ready within {START_LIMIT:?}: {last_error}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// (index, member id, leader id) of every live member; an error if one does not answer.
    async fn statuses(&self) -> anyhow::Result<Vec<(usize, u64, u64)>> {
        let mut out = Vec::new();
        for (i, member) in self.members.iter().enumerate() {
            if member.child.is_none() {
                continue;
            }
            let status = status(&member.endpoint(), self.harness_tls())
                .await
                .with_context(|| format!("asking member {i} for its status"))?;
            out.push((i, status.0, status.1));
        }
        Ok(out)
    }

    /// `http(s)://127.0.0.1:<port>` of every member, dead or alive, in member order.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(Member::endpoint).collect()
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// SIGKILLs member `i` (no-op if it is already dead).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a killed member `i` again on its data (it rejoins the cluster).
    pub fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        let member = &mut self.members[i];
        if member.child.is_some() {
            return Ok(());
        }
        let log = std::fs::OpenOptions::new()
            .append(true)
            .open(&member.log)
            .context("opening the etcd log")?;
        let child = Command::new("etcd")
            .args(&member.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting etcd again")?;
        member.child = Some(child);
        Ok(())
    }

    /// Sends `signal` (e.g. SIGSTOP, SIGCONT) to member `i`, if it runs.
    pub fn signal(&self, i: usize, signal: libc::c_int) {
        if let Some(child) = &self.members[i].child {
            // SAFETY: kill(2) has no memory effects.
            unsafe {
                libc::kill(child.id() as libc::pid_t, signal);
            }
        }
    }

    /// The index of the current leader, as the live members see it; None if they know none
    /// (or still name a member that was killed).
    pub async fn leader_index(&self) -> Option<usize> {
        for member in self.members.iter().filter(|m| m.child.is_some()) {
            let Ok((_, leader)) = status(&member.endpoint(), self.harness_tls()).await else {
                continue;
            };
            if leader == 0 {
                continue;
            }
            return self
                .members
                .iter()
                .position(|m| m.id == leader && m.child.is_some());
        }
        None
    }

    /// The last `lines` lines of every member's log, for failure messages.
    pub fn log_tails(&self, lines: usize) -> String {
        let mut out = String::new();
        for member in &self.members {
            let text = std::fs::read_to_string(&member.log).unwrap_or_default();
            let all: Vec<&str> = text.lines().collect();
            let tail = &all[all.len().saturating_sub(lines)..];
            out.push_str(&format!(
                "--- etcd {} ({}), last {} lines of {}:\n{}\n",
                member.name,
                member.endpoint(),
                tail.len(),
                member.log.display(),
                tail.join("\n")
            ));
        }
        out
    }
}

/// `n` ports, each free a moment ago and none twice.
fn distinct_ports(n: usize) -> Vec<u16> {
    let mut ports = Vec::with_capacity(n);
    while ports.len() < n {
        let port = free_port();
        if !ports.contains(&port) {
            ports.push(port);
        }
    }
    ports
}

impl Member {
    fn endpoint(&self) -> String {
        format!("{}://127.0.0.1:{}", self.scheme, self.client_port)
    }
}

/// A client of one member: plain, or over TLS with the harness's certificate (CN root).
async fn client(endpoint: &str, tls: Option<&Arc<ClusterTls>>) -> anyhow::Result<Client> {
    let options = ConnectOptions::new()
        .with_connect_timeout(Duration::from_millis(500))
        .with_timeout(Duration::from_secs(1));
    Ok(match tls {
        Some(tls) => {
            let channel = tonic::transport::Endpoint::from_shared(endpoint.to_owned())?
                .connect_timeout(Duration::from_millis(500))
                .timeout(Duration::from_secs(1))
                .connect_with_connector_lazy(tls.connector());
            Client::from_channel(etcd_client::Channel::Tonic(channel), Some(options)).await?
        }
        None => Client::connect([endpoint], Some(options)).await?,
    })
}

/// (member id, leader id) from one member, within a second.
async fn status(endpoint: &str, tls: Option<&Arc<ClusterTls>>) -> anyhow::Result<(u64, u64)> {
    let ask = async {
        let mut client = client(endpoint, tls).await?;
        let status = client.status().await?;
        let member = status.header().map(|h| h.member_id()).unwrap_or_default();
        Ok::<_, anyhow::Error>((member, status.leader()))
    };
    match tokio::time::timeout(Duration::from_secs(1), ask).await {
        Ok(result) => Ok(result?),
        Err(_) => bail!("{endpoint} did not answer within 1s"),
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
        // The TempDir removes the data directories and logs after this.
        if std::thread::panicking() {
            eprintln!("{}", self.log_tails(15));
        }
    }
}
