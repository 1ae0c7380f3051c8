//! A real `pylon-control` replica for a test.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::{binary, free_port, http, local_on, wait_for};

pub const ADMIN_TOKEN: &str = "test-admin-token";
pub const CLUSTER_TOKEN: &str = "test-cluster-token";

pub enum Backend {
    /// The embedded registry, kept in this file.
    Embedded(PathBuf),
    /// etcd at these client URLs.
    Etcd(Vec<String>),
}

pub struct ControlOptions<'a> {
    pub dir: &'a Path,
    pub replica: &'a str,
    pub backend: Backend,
    pub extra: Vec<String>,
}

/// A replica's command line as the harness runs it: its addresses, the harness's tokens,
/// a 2 s leader TTL and its registry (for processes started other ways, e.g. supervised).
pub fn args(replica: &str, http: SocketAddr, grpc: SocketAddr, backend: &Backend) -> Vec<String> {
    let mut args: Vec<String> = [
        "--replica-id",
        replica,
        "--http-listen",
        &http.to_string(),
        "--grpc-listen",
        &grpc.to_string(),
        "--admin-token",
        ADMIN_TOKEN,
        "--cluster-token",
        CLUSTER_TOKEN,
        "--leader-ttl",
        "2",
    ]
    .map(str::to_owned)
    .to_vec();
    match backend {
        Backend::Embedded(path) => {
            args.extend(["--registry", "embedded", "--registry-file"].map(str::to_owned));
            args.push(path.display().to_string());
        }
        Backend::Etcd(endpoints) => {
            args.extend(["--registry", "etcd", "--etcd"].map(str::to_owned));
            args.push(endpoints.join(","));
        }
    }
    args
}

pub struct ControlProcess {
    child: Child,
    pub replica: String,
    pub http: SocketAddr,
    pub grpc: SocketAddr,
    pub log: PathBuf,
}

impl ControlProcess {
    pub fn start(opts: ControlOptions<'_>) -> ControlProcess {
        Self::start_on(opts, std::net::Ipv4Addr::LOCALHOST)
    }

    /// As [`ControlProcess::start`], listening on the loopback address `host`.
    pub fn start_on(opts: ControlOptions<'_>, host: std::net::Ipv4Addr) -> ControlProcess {
        let (http_addr, grpc) = (local_on(host, free_port()), local_on(host, free_port()));
        let log = opts.dir.join(format!("control-{}.log", opts.replica));
        let log_file = std::fs::File::create(&log).expect("creating the control log");
        let mut cmd = Command::new(binary("pylon-control"));
        cmd.args(args(opts.replica, http_addr, grpc, &opts.backend))
            .args(&opts.extra)
            .env("RUST_LOG", "pylon_control=debug,info")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log file handle"))
            .stderr(log_file);
        let child = cmd.spawn().expect("starting pylon-control");
        let mut control = ControlProcess {
            child,
            replica: opts.replica.to_owned(),
            http: http_addr,
            grpc,
            log,
        };
        let ready = (0..300).any(|_| {
            if let Ok(Some(_)) = control.child.try_wait() {
                return true;
            }
            let up = http::get(control.http, "/readyz").0 == 200;
            if !up {
                std::thread::sleep(Duration::from_millis(50));
            }
            up
        });
        let running = matches!(control.child.try_wait(), Ok(None));
        assert!(
            ready && running,
            "pylon-control did not become ready; log:\n{}",
            control.log_text()
        );
        control
    }

    /// The gRPC endpoint as members are configured with it.
    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.grpc)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `GET /v1/entry`; returns (status, body).
    pub fn entry(&self, pile: &str, transport: Option<&str>) -> (u16, Value) {
        let mut path = format!("/v1/entry?pile={pile}");
        if let Some(t) = transport {
            path.push_str(&format!("&transport={t}"));
        }
        let (code, body) = http::get(self.http, &path);
        (
            code,
            serde_json::from_str(&body).unwrap_or(Value::String(body)),
        )
    }

    /// The primary edge's id for `pile`, or None when dispatch has none.
    pub fn primary(&self, pile: &str) -> Option<String> {
        let (code, body) = self.entry(pile, Some("tcp"));
        (code == 200).then(|| {
            body["primary"]["edge"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
    }

    pub fn admin(&self, method: &str, path: &str, token: Option<&str>) -> (u16, Value) {
        crate::http::call_as(self.http, method, path, None, token)
    }

    /// An admin GET with the right token; panics on a non-200 answer.
    pub fn get(&self, path: &str) -> Value {
        let (code, body) = self.admin("GET", path, Some(ADMIN_TOKEN));
        assert_eq!(code, 200, "GET {path}: {body}");
        body
    }

    pub fn post(&self, path: &str) -> Value {
        let (code, body) = self.admin("POST", path, Some(ADMIN_TOKEN));
        assert_eq!(code, 200, "POST {path}: {body}");
        body
    }

    pub fn status(&self) -> Value {
        self.get("/v1/admin/status")
    }

    /// Ids of the live edges, sorted.
    pub fn live_edges(&self) -> Vec<String> {
        let edges = self.get("/v1/admin/edges");
        let mut ids: Vec<String> = edges
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["live"] == true)
            .filter_map(|e| e["id"].as_str().map(str::to_owned))
            .collect();
        ids.sort();
        ids
    }

    pub fn wait_live_edges(&self, expected: &[&str]) {
        wait_for(
            &format!("live edges {expected:?} (replica {})", self.replica),
            Duration::from_secs(20),
            || (self.live_edges() == expected).then_some(()),
        );
    }

    pub fn metric(&self, name: &str, labels: &[&str]) -> f64 {
        http::metric(&http::get(self.http, "/metrics").1, name, labels)
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGKILL: no resignation, no goodbyes.
    /// Sends `signal` (SIGSTOP freezes the replica: its sockets stay open, nothing answers).
    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: a plain kill(2) on our own child.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, signal);
        }
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for ControlProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Flags that make an edge register with `endpoints` as `id`, with a short lease and drain.
pub fn edge_flags(id: &str, endpoints: &[String]) -> Vec<String> {
    vec![
        "--edge-id".into(),
        id.into(),
        "--control".into(),
        endpoints.join(","),
        "--control-token".into(),
        CLUSTER_TOKEN.into(),
        // Short enough for tests of expiry, long enough for a busy 2-core machine.
        "--lease-ttl".into(),
        "4".into(),
        "--drain-period".into(),
        "2".into(),
        "--allow-all".into(),
    ]
}

/// [`edge_flags`] for an edge whose logins the app service decides (`--app-login`) instead
/// of letting every pile in (`--allow-all`).
pub fn app_login_edge_flags(id: &str, endpoints: &[String]) -> Vec<String> {
    let mut flags = edge_flags(id, endpoints);
    flags.retain(|f| f != "--allow-all");
    flags.push("--app-login".into());
    flags
}

/// An app-service member as the control plane sees one: it registers through the real
/// membership API and keeps its lease alive, failing over between control replicas.
/// (The business service itself is `pylon-app`; this is only its membership.)
pub struct AppMember {
    runtime: tokio::runtime::Runtime,
    stop: tokio::sync::watch::Sender<bool>,
}

impl AppMember {
    pub fn start(id: &str, endpoints: Vec<String>) -> AppMember {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let (stop, stopped) = tokio::sync::watch::channel(false);
        runtime.spawn(keep_membership(id.to_owned(), endpoints, stopped));
        AppMember { runtime, stop }
    }

    /// Stops keeping the lease alive (the member then expires like a dead process).
    pub fn stop(self) {
        let _ = self.stop.send(true);
        self.runtime.shutdown_timeout(Duration::from_secs(1));
    }
}

async fn keep_membership(
    id: String,
    endpoints: Vec<String>,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    use pylon_proto::control::membership_client::MembershipClient;
    use pylon_proto::control::{KeepAliveRequest, Load, Member, MemberKind, RegisterRequest};
    let mut lease: Option<i64> = None;
    for endpoint in endpoints.iter().cycle() {
        if *stopped.borrow() {
            return;
        }
        let Ok(channel) = tonic::transport::Endpoint::from_shared(endpoint.clone()).map(|e| {
            e.connect_timeout(Duration::from_secs(1))
                .timeout(Duration::from_secs(3))
        }) else {
            return;
        };
        let Ok(channel) = channel.connect().await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let token: tonic::metadata::MetadataValue<_> = format!("Bearer {CLUSTER_TOKEN}")
            .parse()
            .expect("ascii token");
        let mut client =
            MembershipClient::with_interceptor(channel, move |mut r: tonic::Request<()>| {
                r.metadata_mut().insert("authorization", token.clone());
                Ok(r)
            });
        loop {
            let ok = match lease {
                None => match client
                    .register(RegisterRequest {
                        member: Some(Member {
                            id: id.clone(),
                            kind: MemberKind::App.into(),
                            grpc_address: format!("127.0.0.1:{}", 20000 + id.len()),
                            capacity: 100_000,
                            version: "test".into(),
                            ..Default::default()
                        }),
                        ttl_seconds: 4,
                    })
                    .await
                {
                    Ok(reply) => {
                        lease = Some(reply.into_inner().lease_id);
                        true
                    }
                    Err(_) => false,
                },
                Some(l) => match client
                    .keep_alive(KeepAliveRequest {
                        member_id: id.clone(),
                        lease_id: l,
                        load: Some(Load::default()),
                        telemetry: None,
                    })
                    .await
                {
                    Ok(_) => true,
                    Err(s) if s.code() == tonic::Code::NotFound => {
                        lease = None;
                        true
                    }
                    Err(_) => false,
                },
            };
            if !ok {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = stopped.changed() => return,
            }
        }
    }
}
