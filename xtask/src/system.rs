//! System packages the tests and tools need, installed with apt when we are root.

use std::process::Command;

/// (command that must exist, Debian package that provides it). A command with a `/` is a
/// path instead, and may hold shell glob characters: PostgreSQL's programs live in
/// `/usr/lib/postgresql/<version>/bin`, which is not on PATH.
///
/// Building the workspace: protoc compiles the gRPC services (etcd's and ours).
pub const BUILD_PACKAGES: &[(&str, &str)] = &[("protoc", "protobuf-compiler")];
/// Running the tests: certificates are made with openssl, the registry tests start
/// real etcd members, the store tests a throwaway PostgreSQL cluster; clang and libbpf
/// rebuild the kernel programs to check the committed objects.
pub const TEST_PACKAGES: &[(&str, &str)] = &[
    ("protoc", "protobuf-compiler"),
    ("openssl", "openssl"),
    ("etcd", "etcd-server"),
    ("/usr/lib/postgresql/*/bin/initdb", "postgresql"),
    // The committed eBPF objects are checked against their sources.
    ("clang", "clang"),
    ("/usr/include/bpf/bpf_helpers.h", "libbpf-dev"),
    // The XDP tests build network namespaces and veth pairs.
    ("ip", "iproute2"),
    ("ethtool", "ethtool"),
];

fn have(command: &str) -> bool {
    let check = if command.contains('/') {
        format!("for f in {command}; do [ -e \"$f\" ] && exit 0; done; exit 1")
    } else {
        format!("command -v {command}")
    };
    Command::new("sh")
        .args(["-c", &check])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Installs missing packages with apt as root; otherwise says exactly what to run.
pub fn ensure_packages(needed: &[(&str, &str)]) -> anyhow::Result<()> {
    let missing: Vec<&str> = needed
        .iter()
        .filter(|(cmd, _)| !have(cmd))
        .map(|(_, pkg)| *pkg)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let is_root = unsafe { libc::geteuid() } == 0;
    if !is_root || !have("apt-get") {
        anyhow::bail!(
            "missing system packages: {0}\ninstall them with:\n  sudo apt-get update && sudo apt-get install -y {0}",
            missing.join(" ")
        );
    }
    eprintln!("xtask: installing {}", missing.join(" "));
    let status = Command::new("apt-get").arg("update").status()?;
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
    Ok(())
}
