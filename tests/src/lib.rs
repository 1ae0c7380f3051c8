//! Test harness for multi-process tests: real binaries, real sockets, real TLS, on free
//! loopback ports, cleaned up on drop even when a test fails.

pub mod app;
pub mod browser;
pub mod certs;
pub mod charging;
pub mod control;
pub mod edge;
pub mod etcd;
pub mod fleet;
pub mod http;
pub mod mishap;
pub mod monitoring;
pub mod platform;
pub mod records;
pub mod supervised;
/// A throwaway PostgreSQL server (shared with the benchmarks).
pub use pylon_bench::postgres;

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A child process killed (and reaped) when this is dropped, even when a test fails.
pub struct Killed(pub std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding an ephemeral loopback port")
}

pub fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// `port` on the loopback address `host` (any of 127.0.0.0/8: a second site's processes
/// run on an address of their own).
pub fn local_on(host: std::net::Ipv4Addr, port: u16) -> SocketAddr {
    SocketAddr::from((host, port))
}

/// Runs `pylonctl ARGS` (the binary built next to the test): (success, stdout and stderr).
pub fn pylonctl(args: &[&str]) -> (bool, String) {
    output(std::process::Command::new(binary("pylonctl")).args(args))
}

/// Path of a workspace binary built next to the running test (`cargo xtask test` builds them).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target directory");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built; run `cargo xtask test` (or `cargo build --bins`) first",
        path.display()
    );
    path
}

/// Polls `check` until it returns Some or `limit` passes.
pub fn wait_for<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs `command` to its end: whether it succeeded, and its stdout then stderr.
pub fn output(command: &mut std::process::Command) -> (bool, String) {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("running {command:?}: {e}"));
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}
