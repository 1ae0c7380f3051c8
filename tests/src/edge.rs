//! A real `pylon-edge` process for a test.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::certs::TestCerts;
use crate::{binary, free_port, http, local_on, wait_for};

pub struct EdgeProcess {
    child: Child,
    pub tcp: SocketAddr,
    pub tls: SocketAddr,
    pub admin: SocketAddr,
    pub log: std::path::PathBuf,
}

/// How to start an edge; `extra` flags are appended as given.
pub struct EdgeOptions<'a> {
    pub certs: &'a TestCerts,
    pub dir: &'a Path,
    pub executors: usize,
    pub extra: Vec<String>,
    /// Serve the RSA certificate beside the ECDSA one.
    pub with_rsa: bool,
    /// Listen for TLS only (`--no-tcp`); `tcp` is then an address nothing listens on.
    pub tls_only: bool,
    /// Leave `RUST_LOG` unset, so the settings file's `log` key sets the log filter.
    pub log_filter_from_file: bool,
}

impl EdgeProcess {
    pub fn start(opts: EdgeOptions<'_>) -> EdgeProcess {
        Self::start_on(opts, std::net::Ipv4Addr::LOCALHOST)
    }

    /// As [`EdgeProcess::start`], listening on the loopback address `host`.
    pub fn start_on(opts: EdgeOptions<'_>, host: std::net::Ipv4Addr) -> EdgeProcess {
        let at = || local_on(host, free_port());
        let (mut tcp, tls, admin) = (at(), at(), at());
        // A TCP address given in `extra` (several processes sharing one port) wins.
        let given_tcp = opts
            .extra
            .iter()
            .position(|a| a == "--tcp-listen")
            .and_then(|i| opts.extra.get(i + 1))
            .and_then(|a| a.parse().ok());
        if let Some(addr) = given_tcp {
            tcp = addr;
        }
        let log = opts.dir.join(format!("edge-{}.log", tcp.port()));
        let log_file = std::fs::File::create(&log).expect("creating the edge log");
        let mut cmd = Command::new(binary("pylon-edge"));
        if opts.tls_only {
            cmd.arg("--no-tcp");
        } else if given_tcp.is_none() {
            cmd.arg("--tcp-listen").arg(tcp.to_string());
        }
        cmd.arg("--tls-listen")
            .arg(tls.to_string())
            .arg("--admin-listen")
            .arg(admin.to_string())
            .arg("--executors")
            .arg(opts.executors.to_string())
            .arg("--tls-cert")
            .arg(&opts.certs.ecdsa.cert)
            .arg("--tls-key")
            .arg(&opts.certs.ecdsa.key);
        if opts.with_rsa {
            cmd.arg("--tls-cert")
                .arg(&opts.certs.rsa.cert)
                .arg("--tls-key")
                .arg(&opts.certs.rsa.key);
        }
        // Every edge takes the harness's operator token for its admin API.
        cmd.args(["--admin-token", crate::control::ADMIN_TOKEN]);
        if opts.log_filter_from_file {
            cmd.env_remove("RUST_LOG");
        } else {
            cmd.env("RUST_LOG", "pylon_edge=debug,info");
        }
        cmd.args(&opts.extra)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log file handle"))
            .stderr(log_file);
        let child = cmd.spawn().expect("starting pylon-edge");
        let mut edge = EdgeProcess {
            child,
            tcp,
            tls,
            admin,
            log,
        };
        let ready = wait_for_ready(&mut edge, !opts.tls_only);
        assert!(
            ready,
            "pylon-edge did not become ready; log:\n{}",
            edge.log_text()
        );
        edge
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn metrics(&self) -> String {
        http::get(self.admin, "/metrics").1
    }

    pub fn metric(&self, name: &str, labels: &[&str]) -> f64 {
        http::metric(&self.metrics(), name, labels)
    }

    /// Waits until the metric reaches at least `value`.
    pub fn wait_metric(&self, name: &str, labels: &[&str], value: f64) {
        wait_for(
            &format!("{name}{labels:?} >= {value}"),
            Duration::from_secs(15),
            || (self.metric(name, labels) >= value).then_some(()),
        );
    }

    /// `/v1/status` as JSON.
    pub fn status(&self) -> serde_json::Value {
        serde_json::from_str(&http::get(self.admin, "/v1/status").1).unwrap_or_default()
    }

    /// Logged-in sessions over both transports.
    pub fn sessions(&self) -> i64 {
        let s = self.status();
        s["sessions"]["tcp"].as_i64().unwrap_or(0) + s["sessions"]["tls"].as_i64().unwrap_or(0)
    }

    /// SIGKILL: the edge vanishes without leaving the cluster.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn signal(&self, signal: libc::c_int) {
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, signal);
        }
    }

    /// Waits for the process to exit; None if it is still running after `limit`.
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
}

fn wait_for_ready(edge: &mut EdgeProcess, tcp: bool) -> bool {
    for _ in 0..200 {
        if let Ok(Some(_)) = edge.child.try_wait() {
            return false;
        }
        if http::get(edge.admin, "/readyz").0 == 200
            && (!tcp || std::net::TcpStream::connect(edge.tcp).is_ok())
            && std::net::TcpStream::connect(edge.tls).is_ok()
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

impl Drop for EdgeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
