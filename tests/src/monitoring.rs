//! Real Prometheus and Alertmanager (Debian's `prometheus`, `prometheus-alertmanager`) for
//! a test, on free loopback ports with their data in a temporary directory, killed on drop;
//! and a webhook that keeps what Alertmanager sends it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::{free_port, local, wait_for};

/// The repository's `deploy/` folder.
pub fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// A Debian tool, or a message saying what installs it.
pub fn tool(name: &str, package: &str) -> PathBuf {
    let path = Path::new("/usr/bin").join(name);
    assert!(
        path.exists(),
        "{} is missing: `cargo xtask test` installs it (Debian package {package})",
        path.display()
    );
    path
}

/// A child process with its log, killed on drop.
pub(crate) struct Daemon {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Daemon {
    pub(crate) fn spawn(name: &'static str, command: &mut Command, log: PathBuf) -> Daemon {
        let file = std::fs::File::create(&log).expect("log file");
        let child = command
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log file handle"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        Daemon { name, child, log }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub(crate) fn wait_ready(&mut self, addr: SocketAddr, path: &str) {
        let ready = (0..400).any(|_| {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("{} exited with {status}:\n{}", self.name, self.log_text());
            }
            let up = crate::http::get_as(addr, path, None).0 == 200;
            if !up {
                std::thread::sleep(Duration::from_millis(50));
            }
            up
        });
        assert!(
            ready,
            "{} not ready at {addr}:\n{}",
            self.name,
            self.log_text()
        );
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let text = self.log_text();
            let tail: Vec<&str> = text.lines().rev().take(20).collect();
            eprintln!(
                "--- last lines of {}:\n{}",
                self.name,
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    }
}

/// A scrape job: its name and targets (`host:port`).
pub struct Job {
    pub name: &'static str,
    pub targets: Vec<SocketAddr>,
}

pub struct Prometheus {
    _daemon: Daemon,
    pub addr: SocketAddr,
}

impl Prometheus {
    /// Scrapes `jobs` every second, evaluates `rules` (files) every second and sends alerts
    /// to `alertmanager`.
    pub fn start(
        dir: &Path,
        jobs: &[Job],
        rules: &[PathBuf],
        alertmanager: Option<SocketAddr>,
    ) -> Prometheus {
        let addr = local(free_port());
        let mut config = String::from(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n",
        );
        config.push_str("rule_files:\n");
        for rule in rules {
            config.push_str(&format!("  - {:?}\n", rule.display().to_string()));
        }
        if let Some(am) = alertmanager {
            config.push_str(&format!(
                "alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: [\"{am}\"]\n"
            ));
        }
        config.push_str("scrape_configs:\n");
        for job in jobs {
            let targets: Vec<String> = job.targets.iter().map(|t| format!("\"{t}\"")).collect();
            config.push_str(&format!(
                "  - job_name: {}\n    static_configs:\n      - targets: [{}]\n",
                job.name,
                targets.join(", ")
            ));
        }
        let config_path = dir.join("prometheus.yml");
        std::fs::write(&config_path, config).expect("prometheus.yml");
        let mut daemon = Daemon::spawn(
            "prometheus",
            Command::new(tool("prometheus", "prometheus"))
                .arg(format!("--config.file={}", config_path.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.join("prometheus-data").display()
                ))
                .arg(format!("--web.listen-address={addr}")),
            dir.join("prometheus.log"),
        );
        daemon.wait_ready(addr, "/-/ready");
        Prometheus {
            _daemon: daemon,
            addr,
        }
    }

    /// An instant query's result vector; `Err` with Prometheus' error for a bad query.
    pub fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let url = format!("http://{}/api/v1/query", self.addr);
        let answer = crate::http::agent().get(&url).query("query", expr).call();
        let body: Value = match answer {
            Ok(r) => r.into_json().map_err(|e| e.to_string())?,
            Err(ureq::Error::Status(_, r)) => r.into_json().map_err(|e| e.to_string())?,
            Err(e) => return Err(e.to_string()),
        };
        if body["status"] != "success" {
            return Err(format!("{}: {}", body["errorType"], body["error"]));
        }
        Ok(body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    /// Waits until every target of every job is up.
    pub fn wait_targets_up(&self, expected: usize) {
        wait_for("every scrape target up", Duration::from_secs(30), || {
            let up = self.query("up == 1").ok()?;
            (up.len() >= expected).then_some(())
        });
    }
}

pub struct Alertmanager {
    _daemon: Daemon,
    pub addr: SocketAddr,
}

impl Alertmanager {
    /// Sends every alert to `webhook`, grouped by alert and instance, at once (1 s).
    pub fn start(dir: &Path, webhook: SocketAddr) -> Alertmanager {
        let addr = local(free_port());
        let config = format!(
            "route:\n  receiver: test\n  group_by: [alertname, instance]\n  group_wait: 1s\n  \
             group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: test\n    \
             webhook_configs:\n      - url: http://{webhook}/alerts\n        send_resolved: true\n"
        );
        let config_path = dir.join("alertmanager.yml");
        std::fs::write(&config_path, config).expect("alertmanager.yml");
        let mut daemon = Daemon::spawn(
            "alertmanager",
            Command::new(tool("prometheus-alertmanager", "prometheus-alertmanager"))
                .arg(format!("--config.file={}", config_path.display()))
                .arg(format!(
                    "--storage.path={}",
                    dir.join("alertmanager-data").display()
                ))
                .arg(format!("--web.listen-address={addr}"))
                // One instance: no gossip port.
                .arg("--cluster.listen-address="),
            dir.join("alertmanager.log"),
        );
        daemon.wait_ready(addr, "/-/ready");
        Alertmanager {
            _daemon: daemon,
            addr,
        }
    }
}

/// An HTTP endpoint that keeps the JSON bodies POSTed to it (and each one's raw bytes
/// and `x-pylon-signature` header, to check signatures).
pub struct Webhook {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Post>>>,
}

#[derive(Debug, Clone)]
pub struct Post {
    pub body: Value,
    pub raw: Vec<u8>,
    pub signature: Option<String>,
}

impl Webhook {
    pub fn start() -> Webhook {
        let listener = TcpListener::bind("127.0.0.1:0").expect("webhook listener");
        let addr = listener.local_addr().expect("webhook address");
        let received = Arc::new(Mutex::new(Vec::new()));
        let kept = received.clone();
        // The thread ends with the test process; it only ever answers on loopback.
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                if let Some(post) = read_post(stream) {
                    if let Ok(mut kept) = kept.lock() {
                        kept.push(post);
                    }
                }
            }
        });
        Webhook { addr, received }
    }

    /// Every notification so far.
    pub fn received(&self) -> Vec<Value> {
        self.posts().into_iter().map(|p| p.body).collect()
    }

    /// Every request so far, whole.
    pub fn posts(&self) -> Vec<Post> {
        self.received.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

/// Reads one HTTP request with a JSON body and answers 200.
fn read_post(mut stream: TcpStream) -> Option<Post> {
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut length = 0usize;
    let mut signature = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().ok()?;
            }
            if name.eq_ignore_ascii_case("x-pylon-signature") {
                signature = Some(value.trim().to_owned());
            }
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).ok()?;
    let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
    Some(Post {
        body: serde_json::from_slice(&body).ok()?,
        raw: body,
        signature,
    })
}
