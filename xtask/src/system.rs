//! What Pylon needs from the machine, in one table that drives `cargo xtask doctor`, the
//! check every task makes first, and the install (apt, as root).
//!
//! A requirement is a command on PATH or a *file*: a build can fail on a missing header or
//! `.proto` include while every binary is present (protoc without libprotobuf-dev's
//! well-known types is how a fresh machine once failed).

use std::fmt;
use std::path::Path;
use std::process::Command;

/// What a requirement is for; each task asks for the uses it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    /// Compiling the workspace.
    Build,
    /// Running the tests (servers they start, tools they call).
    Test,
    /// Compiling the kernel programs (`build-ebpf`, and the object check in `test`).
    Ebpf,
    /// The kernel tests: network namespaces, veth, offloads.
    Kernel,
    /// Benchmarks only.
    Bench,
    /// Building Debian packages (`dist`, and the package test).
    Dist,
}

impl Use {
    fn label(self) -> &'static str {
        match self {
            Use::Build => "build",
            Use::Test => "test",
            Use::Ebpf => "ebpf",
            Use::Kernel => "kernel",
            Use::Bench => "bench",
            Use::Dist => "dist",
        }
    }
}

/// How a requirement is found.
#[derive(Debug, Clone, Copy)]
pub enum Probe {
    /// A command on PATH.
    Command(&'static str),
    /// A file; may hold a `*` for one path component (version or architecture).
    File(&'static str),
}

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Probe::Command(c) => f.write_str(c),
            Probe::File(p) => f.write_str(p),
        }
    }
}

pub struct Requirement {
    pub probe: Probe,
    /// The Debian package that provides it.
    pub package: &'static str,
    pub used_for: Use,
    pub why: &'static str,
}

const fn req(probe: Probe, package: &'static str, used_for: Use, why: &'static str) -> Requirement {
    Requirement {
        probe,
        package,
        used_for,
        why,
    }
}

use Probe::{Command as Cmd, File};

/// Everything, once. Add a line here when code starts calling or including something new.
pub const REQUIREMENTS: &[Requirement] = &[
    req(
        Cmd("cc"),
        "gcc",
        Use::Build,
        "C parts of ring, SQLite and glommio's liburing",
    ),
    req(
        File("/usr/include/stdio.h"),
        "libc6-dev",
        Use::Build,
        "C library headers for the same",
    ),
    req(
        Cmd("protoc"),
        "protobuf-compiler",
        Use::Build,
        "compiles the gRPC services (ours and etcd's)",
    ),
    req(
        File("/usr/include/google/protobuf/descriptor.proto"),
        "libprotobuf-dev",
        Use::Build,
        "protobuf's well-known types, imported by etcd's API",
    ),
    req(
        File("/usr/include/google/protobuf/struct.proto"),
        "libprotobuf-dev",
        Use::Build,
        "the same (struct.proto)",
    ),
    req(
        Cmd("openssl"),
        "openssl",
        Use::Test,
        "makes the RSA keys of the test certificates",
    ),
    req(
        Cmd("etcd"),
        "etcd-server",
        Use::Test,
        "the registry tests' real etcd members",
    ),
    req(
        File("/usr/lib/postgresql/*/bin/initdb"),
        "postgresql",
        Use::Test,
        "throwaway PostgreSQL clusters (store tests, bench-app)",
    ),
    req(
        File("/usr/lib/postgresql/*/bin/postgres"),
        "postgresql",
        Use::Test,
        "the PostgreSQL server itself",
    ),
    req(
        File("/usr/lib/postgresql/*/bin/pg_basebackup"),
        "postgresql",
        Use::Test,
        "makes the streaming standby of the second-site test",
    ),
    req(
        Cmd("chown"),
        "coreutils",
        Use::Test,
        "gives restored PostgreSQL data to the postgres user in the backup test",
    ),
    req(
        File("/usr/bin/patroni"),
        "patroni",
        Use::Test,
        "keeps the highly available PostgreSQL of the failover test (three servers on etcd)",
    ),
    req(
        File("/usr/bin/patronictl"),
        "patroni",
        Use::Test,
        "forgets a Patroni cluster in etcd before the chaos bench restores it from a backup",
    ),
    req(
        File("/usr/lib/python3/dist-packages/etcd/__init__.py"),
        "python3-etcd",
        Use::Test,
        "Patroni's etcd client (apt may pick another of Patroni's alternatives)",
    ),
    req(
        File("/usr/bin/pgbackrest"),
        "pgbackrest",
        Use::Test,
        "PostgreSQL's backups in the backup and restore-drill tests (WAL archive, two repositories)",
    ),
    req(
        File("/usr/bin/prometheus"),
        "prometheus",
        Use::Test,
        "the monitoring test's Prometheus, scraping a running platform",
    ),
    req(
        File("/usr/bin/promtool"),
        "prometheus",
        Use::Test,
        "checks and unit-tests the shipped alert rules",
    ),
    req(
        File("/usr/bin/prometheus-alertmanager"),
        "prometheus-alertmanager",
        Use::Test,
        "the monitoring test's Alertmanager, delivering alerts to a webhook",
    ),
    req(
        File("/usr/bin/amtool"),
        "prometheus-alertmanager",
        Use::Test,
        "checks the shipped Alertmanager configuration",
    ),
    req(
        File("/usr/bin/chromium"),
        "chromium",
        Use::Test,
        "the console's browser tests (headless Chromium)",
    ),
    req(
        File("/usr/bin/chromedriver"),
        "chromium-driver",
        Use::Test,
        "drives Chromium for the console's browser tests (WebDriver)",
    ),
    req(
        Cmd("mount"),
        "mount",
        Use::Test,
        "a private bpffs for the shared-listener test",
    ),
    req(
        Cmd("clang"),
        "clang",
        Use::Ebpf,
        "compiles the kernel programs (*.bpf.c)",
    ),
    req(
        Cmd("llvm-objcopy"),
        "llvm",
        Use::Ebpf,
        "strips debug info before comparing kernel objects",
    ),
    req(
        File("/usr/include/bpf/bpf_helpers.h"),
        "libbpf-dev",
        Use::Ebpf,
        "libbpf's helper headers for the kernel programs",
    ),
    req(
        File("/usr/include/linux/bpf.h"),
        "linux-libc-dev",
        Use::Ebpf,
        "kernel UAPI headers for the kernel programs",
    ),
    req(
        File("/usr/include/*-linux-gnu/asm/types.h"),
        "linux-libc-dev",
        Use::Ebpf,
        "the architecture's UAPI headers",
    ),
    req(
        Cmd("ip"),
        "iproute2",
        Use::Kernel,
        "network namespaces and veth pairs",
    ),
    req(
        Cmd("ethtool"),
        "ethtool",
        Use::Kernel,
        "turns veth offloads off for XDP",
    ),
    req(
        Cmd("psql"),
        "postgresql-client",
        Use::Bench,
        "reads PostgreSQL's write counters in bench --calibrate",
    ),
    req(
        Cmd("setpriv"),
        "util-linux",
        Use::Test,
        "runs the packaged services as their units' user in the package test",
    ),
    req(
        Cmd("useradd"),
        "passwd",
        Use::Test,
        "the packages' maintainer scripts make the pylon user",
    ),
    req(
        Cmd("dpkg-deb"),
        "dpkg",
        Use::Dist,
        "builds the Debian packages",
    ),
    req(
        Cmd("strip"),
        "binutils",
        Use::Dist,
        "takes debug information out of the packaged binaries",
    ),
    req(
        Cmd("systemd-analyze"),
        "systemd",
        Use::Test,
        "checks the packaged systemd units (systemd-analyze verify)",
    ),
    req(
        Cmd("taskset"),
        "util-linux",
        Use::Bench,
        "pins the control plane in bench-control",
    ),
    req(
        Cmd("perf"),
        "linux-perf",
        Use::Bench,
        "the edge's CPU profile (flame graph) beside each bench report",
    ),
];

/// What the test run needs: everything but the benchmarks' extras.
pub const FOR_TEST: &[Use] = &[Use::Build, Use::Test, Use::Ebpf, Use::Kernel, Use::Dist];
/// What building packages needs.
pub const FOR_DIST: &[Use] = &[Use::Build, Use::Dist];
/// What building needs.
pub const FOR_BUILD: &[Use] = &[Use::Build];
/// What compiling the kernel programs needs.
pub const FOR_EBPF: &[Use] = &[Use::Ebpf];
/// Everything (doctor, benchmarks).
pub const FOR_ALL: &[Use] = &[
    Use::Build,
    Use::Test,
    Use::Ebpf,
    Use::Kernel,
    Use::Bench,
    Use::Dist,
];

impl Requirement {
    pub fn is_met(&self) -> bool {
        match self.probe {
            Probe::Command(c) => on_path(c),
            Probe::File(pattern) => file_exists(pattern),
        }
    }
}

fn on_path(command: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| is_executable(&dir.join(command))))
        .unwrap_or(false)
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Whether a file matching `pattern` (absolute) exists; a `*` matches within one path
/// component (`/usr/lib/postgresql/*/bin`, `/usr/include/*-linux-gnu`).
fn file_exists(pattern: &str) -> bool {
    let mut candidates = vec![std::path::PathBuf::from("/")];
    for part in Path::new(pattern).components().skip(1) {
        let part = part.as_os_str().to_string_lossy();
        candidates = match part.split_once('*') {
            Some((prefix, suffix)) => candidates
                .iter()
                .filter_map(|dir| std::fs::read_dir(dir).ok())
                .flatten()
                .filter_map(Result::ok)
                .filter(|e| {
                    let name = e.file_name();
                    let name = name.to_string_lossy();
                    name.len() >= prefix.len() + suffix.len()
                        && name.starts_with(prefix)
                        && name.ends_with(suffix)
                })
                .map(|e| e.path())
                .collect(),
            None => candidates.iter().map(|dir| dir.join(&*part)).collect(),
        };
    }
    candidates.iter().any(|p| p.exists())
}

fn wanted(uses: &[Use]) -> impl Iterator<Item = &'static Requirement> + '_ {
    REQUIREMENTS
        .iter()
        .filter(move |r| uses.contains(&r.used_for))
}

/// The packages providing what is missing, each once, in table order.
fn missing_packages(uses: &[Use]) -> Vec<&'static str> {
    let mut packages = Vec::new();
    for r in wanted(uses).filter(|r| !r.is_met()) {
        if !packages.contains(&r.package) {
            packages.push(r.package);
        }
    }
    packages
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The exact command that installs `packages`.
fn install_command(packages: &[&str]) -> String {
    let sudo = if is_root() { "" } else { "sudo " };
    format!(
        "{sudo}apt-get update && {sudo}apt-get install -y --no-install-recommends {}",
        packages.join(" ")
    )
}

/// Prints each requirement of `uses`, found or missing; returns the missing packages.
fn report(uses: &[Use]) -> Vec<&'static str> {
    let width = REQUIREMENTS
        .iter()
        .map(|r| r.probe.to_string().len())
        .max()
        .unwrap_or(0);
    for r in wanted(uses) {
        let state = if r.is_met() { "ok     " } else { "MISSING" };
        println!(
            "  {state}  {:<width$}  {:<6} [{}] {}",
            r.probe.to_string(),
            r.used_for.label(),
            r.package,
            r.why
        );
    }
    missing_packages(uses)
}

/// `cargo xtask doctor`: every requirement, found or missing, and the exact command that
/// installs the rest. Fails when something is missing.
pub fn doctor() -> anyhow::Result<()> {
    println!("What Pylon needs on this machine (use, [Debian package], what for):\n");
    let missing = report(FOR_ALL);
    println!();
    if missing.is_empty() {
        println!("Everything is here.");
        return Ok(());
    }
    println!("Missing packages: {}", missing.join(" "));
    println!("Install them with:\n  {}", install_command(&missing));
    if is_root() {
        println!(
            "(`cargo xtask test`, `demo` and the benches do this themselves when run as root.)"
        );
    }
    anyhow::bail!("{} package(s) missing", missing.len())
}

/// What `test`, `demo` and the benches do first: the doctor's report for `uses`, then [`ensure`].
pub fn prepare(task: &str, uses: &[Use]) -> anyhow::Result<()> {
    println!("xtask {task}: checking the machine (`cargo xtask doctor` explains)");
    let missing = report(uses);
    if !missing.is_empty() {
        ensure(uses)?;
        println!("xtask {task}: installed {}", missing.join(" "));
    }
    Ok(())
}

/// Makes sure what `uses` need is here: as root, installs the missing packages with apt and
/// checks again; otherwise fails with the exact command to run.
pub fn ensure(uses: &[Use]) -> anyhow::Result<()> {
    let missing = missing_packages(uses);
    if missing.is_empty() {
        return Ok(());
    }
    if !is_root() || !on_path("apt-get") {
        anyhow::bail!(
            "missing system packages: {}\ninstall them with:\n  {}\n(`cargo xtask doctor` lists what each is for)",
            missing.join(" "),
            install_command(&missing)
        );
    }
    eprintln!("xtask: installing {}", missing.join(" "));
    let status = Command::new("apt-get")
        .arg("update")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()?;
    anyhow::ensure!(status.success(), "apt-get update failed");
    let status = Command::new("apt-get")
        .args(["install", "-y", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()?;
    anyhow::ensure!(
        status.success(),
        "apt-get install {} failed",
        missing.join(" ")
    );
    // The table must be right: a package that does not provide what it should is a bug here.
    let still: Vec<String> = wanted(uses)
        .filter(|r| !r.is_met())
        .map(|r| format!("{} (expected from {})", r.probe, r.package))
        .collect();
    anyhow::ensure!(
        still.is_empty(),
        "still missing after installing: {}",
        still.join(", ")
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_match_with_one_wildcard_component() {
        assert!(file_exists("/"));
        assert!(file_exists("/*/"));
        assert!(file_exists("/e*c/passwd"));
        assert!(!file_exists("/e*x/passwd"));
        assert!(!file_exists("/*/pylon-no-such-file-here"));
    }

    #[test]
    fn commands_are_found_on_path() {
        assert!(on_path("sh"));
        assert!(!on_path("pylon-no-such-command"));
    }

    #[test]
    fn every_requirement_names_a_package_and_a_reason() {
        for r in REQUIREMENTS {
            assert!(!r.package.is_empty() && !r.why.is_empty(), "{}", r.probe);
        }
    }
}
