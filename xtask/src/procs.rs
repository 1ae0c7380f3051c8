//! Child processes and what /proc says about them.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The workspace root (where the top-level Cargo.toml is).
pub fn root() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.parent().map(Path::to_path_buf).unwrap_or(here)
}

pub fn cargo(args: &[&str]) -> anyhow::Result<()> {
    cargo_with_env(args, &[])
}

/// Runs cargo with extra environment variables.
pub fn cargo_with_env(args: &[&str], env: &[(&str, &Path)]) -> anyhow::Result<()> {
    cargo_within(Duration::MAX, args, env)
}

/// Runs cargo like [`cargo_with_env`], but once `deadline` has passed it kills cargo and
/// every process under it (test binaries, the services they started) and fails.
pub fn cargo_within(
    deadline: Duration,
    args: &[&str],
    env: &[(&str, &Path)],
) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut child = Command::new(cargo)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir(root())
        .spawn()?;
    let start = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            anyhow::ensure!(status.success(), "cargo {} failed", args.join(" "));
            return Ok(());
        }
        if start.elapsed() > deadline {
            kill_tree(child.id());
            let _ = child.wait();
            anyhow::bail!(
                "cargo {} ran past its {} minutes and was stopped: the test that was running \
                 last (named above) hangs",
                args.join(" "),
                deadline.as_secs() / 60
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// SIGKILLs `pid` and its descendants, children before parents (so none is re-parented
/// out of reach first).
fn kill_tree(pid: u32) {
    for child in children(pid) {
        kill_tree(child);
    }
    // SAFETY: kill(2) with a pid we found and a valid signal has no memory effects.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGKILL);
    }
}

/// The processes whose parent is `pid`, from /proc.
fn children(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|candidate| parent_of(*candidate) == Some(pid))
        .collect()
}

/// The parent pid in /proc/<pid>/stat (the field after the parenthesised command name).
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(1)?.parse().ok()
}

/// Builds the release binaries the demo and the bench run. Always the same package set,
/// so switching between tasks does not rebuild dependencies with other features.
pub fn build_release() -> anyhow::Result<()> {
    crate::system::ensure(crate::system::FOR_BUILD)?;
    cargo(&[
        "build",
        "--release",
        "-p",
        "pylon-edge",
        "-p",
        "pylon-bench",
        "-p",
        "pylon-control",
        "-p",
        "pylon-app",
    ])
}

/// Writes a CA and an edge certificate for `pylon-edge` into `dir`.
pub fn edge_certs(dir: &Path) -> anyhow::Result<(PathBuf, pylon_bench::certs::PemPair)> {
    let ca = pylon_bench::certs::TestCa::new(dir, "Pylon demo CA")?;
    let edge = ca.issue("edge", &[pylon_bench::certs::SERVER_NAME], None)?;
    Ok((ca.ca_pem, edge))
}

pub fn release_binary(name: &str) -> PathBuf {
    root().join("target/release").join(name)
}

/// A child process that is killed when dropped.
pub struct Proc {
    pub name: String,
    pub child: Child,
}

impl Proc {
    pub fn spawn(name: &str, cmd: &mut Command, log: &Path) -> anyhow::Result<Proc> {
        Proc::spawn_logging(name, cmd, log, false)
    }

    /// Like [`spawn`](Self::spawn); with `append`, the log keeps what earlier runs wrote.
    pub fn spawn_logging(
        name: &str,
        cmd: &mut Command,
        log: &Path,
        append: bool,
    ) -> anyhow::Result<Proc> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append)
            .open(log)?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .map_err(|e| anyhow::anyhow!("starting {name}: {e}"))?;
        Ok(Proc {
            name: name.to_string(),
            child,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn terminate(&mut self, grace: Duration) {
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let start = std::time::Instant::now();
        while start.elapsed() < grace {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU seconds (user + system) a process has used.
pub fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may contain spaces) start after ')'.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 here.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(11) + ticks(12)) / hz.max(1.0)
}

/// Resident memory of a process in bytes.
pub fn rss_bytes(pid: u32) -> u64 {
    status_kb(&format!("/proc/{pid}/status"), "VmRSS:") * 1024
}

fn status_kb(path: &str, key: &str) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Kernel memory that grows with TCP sockets: slab (socket, inode, file objects) plus
/// TCP buffer pages, in bytes. System-wide: callers take differences.
pub fn kernel_socket_bytes() -> u64 {
    let slab = status_kb("/proc/meminfo", "Slab:") * 1024;
    let tcp_pages = std::fs::read_to_string("/proc/net/sockstat")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("TCP:"))?.to_string();
            let mut it = line.split_whitespace();
            while let Some(w) = it.next() {
                if w == "mem" {
                    return it.next()?.parse::<u64>().ok();
                }
            }
            None
        })
        .unwrap_or(0);
    slab + tcp_pages * 4096
}
