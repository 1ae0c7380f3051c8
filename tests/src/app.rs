//! A real `pylon-app` instance for a test.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::control::{ADMIN_TOKEN, CLUSTER_TOKEN};
use crate::{binary, free_port, http, local};

#[derive(Clone)]
pub enum Store {
    Sqlite(PathBuf),
    Postgres(String),
}

pub struct AppOptions<'a> {
    pub dir: &'a Path,
    pub id: &'a str,
    /// Control-plane gRPC endpoints to register with.
    pub control: Vec<String>,
    pub store: Store,
    /// Environment for the process (e.g. fault injection).
    pub env: Vec<(String, String)>,
}

pub struct AppProcess {
    child: Child,
    pub id: String,
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    pub log: PathBuf,
}

impl AppProcess {
    pub fn start(opts: AppOptions<'_>) -> AppProcess {
        Self::start_on(opts, local(free_port()), local(free_port()))
    }

    /// Starts on given addresses (to restart an instance where it was).
    pub fn start_on(opts: AppOptions<'_>, grpc: SocketAddr, http_addr: SocketAddr) -> AppProcess {
        let mut app = Self::spawn_on(opts, grpc, http_addr, &[]);
        app.wait_ready(Duration::from_secs(15));
        app
    }

    /// Starts with `extra` flags, without waiting for it to be ready (e.g. an instance
    /// waiting for its store to be promoted).
    pub fn spawn(opts: AppOptions<'_>, extra: &[&str]) -> AppProcess {
        Self::spawn_on(opts, local(free_port()), local(free_port()), extra)
    }

    /// As [`AppProcess::spawn`], listening on the loopback address `host`.
    pub fn spawn_at(opts: AppOptions<'_>, host: std::net::Ipv4Addr, extra: &[&str]) -> AppProcess {
        let at = || crate::local_on(host, free_port());
        Self::spawn_on(opts, at(), at(), extra)
    }

    fn spawn_on(
        opts: AppOptions<'_>,
        grpc: SocketAddr,
        http_addr: SocketAddr,
        extra: &[&str],
    ) -> AppProcess {
        let log = opts
            .dir
            .join(format!("app-{}-{}.log", opts.id, grpc.port()));
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("creating the app log");
        let mut cmd = Command::new(binary("pylon-app"));
        cmd.args(["--app-id", opts.id])
            .args(["--grpc-listen", &grpc.to_string()])
            .args(["--http-listen", &http_addr.to_string()])
            .args([
                "--admin-token",
                ADMIN_TOKEN,
                "--cluster-token",
                CLUSTER_TOKEN,
            ])
            .args(["--lease-ttl", "4"]);
        // One card key file per test directory, shared by restarts of the instance.
        let keys = opts.dir.join("card-keys.toml");
        if !keys.exists() {
            pylon_app::revenue::vault::Vault::create_file(&keys).expect("card key file");
        }
        cmd.arg("--card-keys").arg(&keys);
        if !opts.control.is_empty() {
            cmd.args(["--control", &opts.control.join(",")]);
        }
        match &opts.store {
            Store::Sqlite(path) => {
                cmd.args(["--store", "sqlite", "--sqlite"]).arg(path);
            }
            Store::Postgres(url) => {
                cmd.args(["--store", "postgres", "--postgres-url", url]);
            }
        }
        cmd.args(extra)
            .envs(opts.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("RUST_LOG", "pylon_app=debug,info")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log file handle"))
            .stderr(log_file);
        let child = cmd.spawn().expect("starting pylon-app");
        AppProcess {
            child,
            id: opts.id.to_owned(),
            grpc,
            http: http_addr,
            log,
        }
    }

    /// Waits until `/readyz` answers 200; panics, with the log, if it does not in time or
    /// the process exits.
    pub fn wait_ready(&mut self, limit: Duration) {
        let start = std::time::Instant::now();
        let ready = loop {
            if let Ok(Some(_)) = self.child.try_wait() {
                break false;
            }
            if http::get(self.http, "/readyz").0 == 200 {
                break true;
            }
            if start.elapsed() > limit {
                break false;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(
            ready && self.is_running(),
            "pylon-app did not become ready; log:\n{}",
            self.log_text()
        );
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits for the process to exit by itself.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let start = std::time::Instant::now();
        while start.elapsed() < limit {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// An operator API call with the admin token; returns (status, body).
    pub fn api(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        crate::http::call_as(self.http, method, path, body, Some(ADMIN_TOKEN))
    }

    /// Registers piles `first..first+count` (enabled, billing model 1).
    pub fn add_piles(&self, first: u64, count: u64) {
        let piles: Vec<Value> = (first..first + count)
            .map(|n| serde_json::json!({"pile_no": format!("{n:014}")}))
            .collect();
        let (code, body) = self.api("POST", "/v1/piles", Some(Value::Array(piles)));
        assert_eq!(code, 200, "adding piles: {body}");
    }

    pub fn metric(&self, name: &str, labels: &[&str]) -> f64 {
        http::metric(&http::get(self.http, "/metrics").1, name, labels)
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn terminate(&mut self) {
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let _ = self.wait_exit(Duration::from_secs(10));
    }
}

impl Drop for AppProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
