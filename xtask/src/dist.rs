//! `cargo xtask dist`: Debian packages of Pylon's binaries, with hardened systemd units,
//! settings under `/etc/pylon` and state under `/var/lib/pylon`.
//!
//! The files each package installs live in `deploy/debian/<package>/`; the maintainer
//! scripts (`deploy/debian/{postinst,prerm,postrm}`) are shared by the service packages.
//! Packages are built with `dpkg-deb`, so nothing beyond dpkg and binutils is needed.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;

use crate::procs;

#[derive(clap::Args)]
pub struct DistArgs {
    /// Where the packages are written.
    #[arg(long, default_value = "target/dist")]
    out: PathBuf,
    /// Package the binaries in this directory (e.g. target/debug) instead of building
    /// release ones.
    #[arg(long, value_name = "DIR")]
    binaries: Option<PathBuf>,
    /// How the packages are compressed (none is the fastest, for tests).
    #[arg(long, value_enum, default_value_t = Compression::Xz)]
    compress: Compression,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Compression {
    Xz,
    Gzip,
    None,
}

impl Compression {
    fn flag(self) -> &'static str {
        match self {
            Compression::Xz => "-Zxz",
            Compression::Gzip => "-Zgzip",
            Compression::None => "-Znone",
        }
    }
}

/// One file a package installs: from `deploy/debian/<package>/<source>` (or the repository
/// root for `README.md`) to `target`, with its mode.
struct Installed {
    source: &'static str,
    target: &'static str,
    mode: u32,
}

const fn file(source: &'static str, target: &'static str, mode: u32) -> Installed {
    Installed {
        source,
        target,
        mode,
    }
}

struct Package {
    name: &'static str,
    binary: &'static str,
    /// Runs as a systemd service (gets the shared maintainer scripts).
    service: bool,
    summary: &'static str,
    description: &'static str,
    files: &'static [Installed],
}

const PACKAGES: &[Package] = &[
    Package {
        name: "pylon-control",
        binary: "pylon-control",
        service: true,
        summary: "Pylon control plane for EV charger networks",
        description: "The registry of edges and app instances, dispatch (which edge a \
            charger connects to), shard assignment, route push, and the operator's single \
            entry point: the operator API and the web console.",
        files: &[
            file(
                "pylon-control.service",
                "lib/systemd/system/pylon-control.service",
                0o644,
            ),
            file("control.toml", "etc/pylon/control.toml", 0o644),
        ],
    },
    Package {
        name: "pylon-app",
        binary: "pylon-app",
        service: true,
        summary: "Pylon app service: the charging business",
        description: "Logins against the pile registry, live status, remote start and \
            stop, tariffs, accounts and settlement, alarms, and transaction records, on \
            SQLite or PostgreSQL.",
        files: &[
            file(
                "pylon-app.service",
                "lib/systemd/system/pylon-app.service",
                0o644,
            ),
            file("app.toml", "etc/pylon/app.toml", 0o644),
        ],
    },
    Package {
        name: "pylon-edge",
        binary: "pylon-edge",
        service: true,
        summary: "Pylon edge: holds EV chargers' TCP and TLS connections",
        description: "A thread-per-core server for chargers speaking YKC V1.6 over TCP or \
            TLS: logins, heartbeats answered locally, business frames routed to the app \
            service. Ships the kernel settings an edge host needs for a million sessions.",
        files: &[
            file(
                "pylon-edge.service",
                "lib/systemd/system/pylon-edge.service",
                0o644,
            ),
            file("edge.toml", "etc/pylon/edge.toml", 0o644),
            file(
                "60-pylon-edge.conf",
                "usr/lib/sysctl.d/60-pylon-edge.conf",
                0o644,
            ),
            file("ebpf.conf", "usr/share/pylon-edge/ebpf.conf", 0o644),
        ],
    },
    Package {
        name: "pylon-balancer",
        binary: "pylon-balancer",
        service: true,
        summary: "Pylon XDP balancer for a charger VIP",
        description: "Spreads chargers connecting to one virtual address over the edge \
            hosts with XDP and consistent hashing, following the control plane's edge list \
            and drains.",
        files: &[
            file(
                "pylon-balancer.service",
                "lib/systemd/system/pylon-balancer.service",
                0o644,
            ),
            file(
                "balancer.toml.example",
                "usr/share/pylon-balancer/balancer.toml.example",
                0o644,
            ),
        ],
    },
    Package {
        name: "pylon-backup",
        binary: "pylon-backup",
        service: true,
        summary: "Pylon backups on a schedule",
        description: "Backs up the registry, the store and the key files of a Pylon \
            host on a schedule, encrypted, checksummed and copied to several \
            repositories; verifies each backup and reports the age of the newest verified \
            one. Starts once /etc/pylon/backup.toml exists.",
        files: &[
            file(
                "pylon-backup.service",
                "lib/systemd/system/pylon-backup.service",
                0o644,
            ),
            file(
                "backup.toml.example",
                "usr/share/pylon-backup/backup.toml.example",
                0o644,
            ),
        ],
    },
    Package {
        name: "pylonctl",
        binary: "pylonctl",
        service: false,
        summary: "Pylon's command-line tool for operators",
        description: "Status, edges, routes, piles, charging, records, tariffs, accounts, \
            alarms, users and certificates of a Pylon cluster, through its control plane.",
        files: &[],
    },
];

pub fn run(args: DistArgs) -> anyhow::Result<()> {
    crate::system::ensure(crate::system::FOR_DIST)?;
    let binaries = match args.binaries {
        Some(dir) => dir,
        None => {
            build_release()?;
            procs::root().join("target/release")
        }
    };
    let out = procs::root().join(&args.out);
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let version = env!("CARGO_PKG_VERSION");
    let arch = command_output("dpkg", &["--print-architecture"])?;
    for package in PACKAGES {
        let deb = build(package, &binaries, &out, version, &arch, args.compress)?;
        println!("{}", deb.display());
    }
    Ok(())
}

fn build_release() -> anyhow::Result<()> {
    let mut args = vec!["build", "--release"];
    for package in PACKAGES {
        args.extend(["--bin", package.binary]);
    }
    procs::cargo(&args)
}

/// Stages one package's tree and builds its `.deb`.
fn build(
    package: &Package,
    binaries: &Path,
    out: &Path,
    version: &str,
    arch: &str,
    compression: Compression,
) -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let stage = tempfile::tempdir()?;
    let root = stage.path();
    // The staged root becomes `/` in the archive: it must carry /'s mode, not 0700.
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755))?;
    let deploy = procs::root().join("deploy/debian");

    let binary = root.join("usr/bin").join(package.binary);
    copy(&binaries.join(package.binary), &binary, 0o755)?;
    // Debug information stays out of the package (symbols stay, for backtraces).
    run_tool("strip", &[Path::new("--strip-debug"), &binary])?;
    for f in package.files {
        copy(
            &deploy.join(package.name).join(f.source),
            &root.join(f.target),
            f.mode,
        )?;
    }
    let doc = root.join("usr/share/doc").join(package.name);
    copy(
        &procs::root().join("README.md"),
        &doc.join("README.md"),
        0o644,
    )?;
    std::fs::write(doc.join("copyright"), copyright())?;

    let debian = root.join("DEBIAN");
    std::fs::create_dir_all(&debian)?;
    std::fs::write(
        debian.join("control"),
        control(package, version, arch, installed_kib(root)?),
    )?;
    let conffiles: Vec<String> = package
        .files
        .iter()
        .filter(|f| f.target.starts_with("etc/"))
        .map(|f| format!("/{}\n", f.target))
        .collect();
    if !conffiles.is_empty() {
        std::fs::write(debian.join("conffiles"), conffiles.concat())?;
    }
    if package.service {
        for script in ["postinst", "prerm", "postrm"] {
            copy(&deploy.join(script), &debian.join(script), 0o755)?;
        }
    }
    let deb = out.join(format!("{}_{version}_{arch}.deb", package.name));
    run_tool(
        "dpkg-deb",
        &[
            Path::new("--root-owner-group"),
            Path::new(compression.flag()),
            Path::new("--build"),
            root,
            &deb,
        ],
    )?;
    Ok(deb)
}

fn control(package: &Package, version: &str, arch: &str, size_kib: u64) -> String {
    // Long descriptions are folded at 72 columns, each line indented by one space.
    let mut long = String::new();
    let mut line = String::new();
    for word in package.description.split_whitespace() {
        if !line.is_empty() && line.len() + word.len() + 1 > 72 {
            long.push_str(&format!(" {line}\n"));
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        long.push_str(&format!(" {line}\n"));
    }
    let depends = if package.service {
        "libc6 (>= 2.34), libgcc-s1, passwd"
    } else {
        "libc6 (>= 2.34), libgcc-s1"
    };
    format!(
        "Package: {name}\nVersion: {version}\nArchitecture: {arch}\n\
         Maintainer: Pylon developers <pylon-dev@lists.invalid>\n\
         Installed-Size: {size_kib}\nDepends: {depends}\nSection: net\nPriority: optional\n\
         Description: {summary}\n{long}",
        name = package.name,
        summary = package.summary,
    )
}

fn copyright() -> String {
    "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\
     Upstream-Name: pylon\n\n\
     Files: *\nCopyright: Pylon developers\nLicense: Apache-2.0\n \
     On Debian systems, the full text of the Apache License 2.0 is in\n \
     /usr/share/common-licenses/Apache-2.0.\n"
        .to_owned()
}

/// The staged tree's size in KiB (the control file's Installed-Size).
fn installed_kib(root: &Path) -> anyhow::Result<u64> {
    fn walk(dir: &Path) -> std::io::Result<u64> {
        let mut total = 0;
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let meta = entry.metadata()?;
            total += if meta.is_dir() {
                walk(&entry.path())?
            } else {
                meta.len()
            };
        }
        Ok(total)
    }
    Ok(walk(root)?.div_ceil(1024))
}

fn copy(from: &Path, to: &Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::copy(from, to)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

fn run_tool(program: &str, args: &[&Path]) -> anyhow::Result<()> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {program}"))?;
    anyhow::ensure!(
        out.status.success(),
        "{program} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

fn command_output(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {program}"))?;
    anyhow::ensure!(out.status.success(), "{program} {} failed", args.join(" "));
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}
