//! The Debian packages as an operator installs them: `cargo xtask dist` builds them, dpkg
//! installs them on this machine, the services start as their units say (user, secrets,
//! settings, working directory) and serve a charger end to end, and purging removes
//! everything they brought. Needs root (dpkg); skipped, and said so, otherwise.
//!
//! systemd does not run as PID 1 here, so the units are checked with `systemd-analyze
//! verify` and their `ExecStart` is run as their `User=` with their `EnvironmentFile=`s,
//! without systemd's sandboxing.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use pylon_bench::charger::{self, ChargerConn, Target};
use pylon_proto::ykc::Frame;
use pylon_tests::{binary, http, wait_for};
use serde_json::json;

const SERVICES: [&str; 4] = ["pylon-control", "pylon-app", "pylon-edge", "pylon-balancer"];
const PACKAGES: [&str; 6] = [
    "pylon-control",
    "pylon-app",
    "pylon-edge",
    "pylon-balancer",
    "pylon-backup",
    "pylonctl",
];
/// The ports of the packaged settings (`deploy/debian/*/*.toml`).
const PORTS: [u16; 6] = [7400, 7401, 7500, 7510, 9100, 8768];

fn sh(program: &str, args: &[&str]) -> (bool, String) {
    pylon_tests::output(Command::new(program).args(args))
}

/// Purges every Pylon package (quietly, whether installed or not).
fn purge_all() {
    let mut args = vec!["--purge"];
    args.extend(PACKAGES);
    let _ = sh("dpkg", &args);
}

/// Stops what the test started and purges the packages, even when the test fails.
struct Installed {
    services: Vec<(String, Child)>,
}

impl Drop for Installed {
    fn drop(&mut self) {
        for (_, child) in &mut self.services {
            let _ = child.kill();
            let _ = child.wait();
        }
        purge_all();
    }
}

/// `Key=value` lines of a unit's `[Service]` section (repeated keys kept in order).
fn unit_service_lines(unit: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(unit).expect("unit file");
    let mut in_service = false;
    let mut lines = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_service = line == "[Service]";
        } else if in_service && !line.starts_with('#') {
            if let Some((k, v)) = line.split_once('=') {
                lines.push((k.trim().to_owned(), v.trim().to_owned()));
            }
        }
    }
    lines
}

/// `VAR=value` lines of an environment file (missing file: none, as `-` allows).
fn environment_file(path: &str) -> HashMap<String, String> {
    let optional = path.starts_with('-');
    let path = path.trim_start_matches('-');
    match std::fs::read_to_string(path) {
        Ok(text) => text
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect(),
        Err(e) if !optional => panic!("{path}: {e}"),
        Err(_) => HashMap::new(),
    }
}

/// Runs a unit's `ExecStart` as its user, with its environment files and working
/// directory; `extra` arguments are appended (e.g. `--check-config FILE`).
fn as_the_unit_says(service: &str, extra: &[&str], log: &Path) -> Child {
    let unit = PathBuf::from(format!("/lib/systemd/system/{service}.service"));
    let lines = unit_service_lines(&unit);
    let value = |key: &str| {
        lines
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("{service}.service has no {key}="))
    };
    let user = value("User");
    let group = value("Group");
    let exec: Vec<String> = value("ExecStart")
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let mut env = HashMap::new();
    for (_, file) in lines.iter().filter(|(k, _)| k == "EnvironmentFile") {
        env.extend(environment_file(file));
    }
    let dir = lines
        .iter()
        .find(|(k, _)| k == "WorkingDirectory")
        .map_or("/".to_owned(), |(_, v)| v.clone());
    let log_file = std::fs::File::create(log).expect("log file");
    Command::new("setpriv")
        .args([
            &format!("--reuid={user}"),
            &format!("--regid={group}"),
            "--init-groups",
            "--no-new-privs",
            "--",
        ])
        .args(&exec)
        .args(extra)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .envs(env)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().expect("log handle"))
        .stderr(log_file)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {service}: {e}"))
}

fn mode_and_group(path: &str) -> (u32, u32) {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    (meta.mode() & 0o7777, meta.gid())
}

fn gid_of(group: &str) -> u32 {
    let (ok, out) = sh("getent", &["group", group]);
    assert!(ok, "no group {group}");
    out.split(':')
        .nth(2)
        .and_then(|g| g.trim().parse().ok())
        .expect("gid")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_packages_install_start_serve_a_charger_and_purge_cleanly() {
    if !pylon_ebpf::netns::root_test_can_run("dpkg installs the packages") {
        return;
    }
    for port in PORTS {
        assert!(
            TcpListener::bind(("127.0.0.1", port)).is_ok(),
            "port {port}, used by the packaged settings, is busy"
        );
    }
    purge_all();
    let dir = tempfile::tempdir().expect("temp dir");
    let debs = dir.path().join("debs");
    let binaries = binary("pylon-edge")
        .parent()
        .expect("binary dir")
        .to_path_buf();
    let (ok, out) = sh(
        binary("xtask").to_str().expect("utf-8"),
        &[
            "dist",
            "--binaries",
            binaries.to_str().expect("utf-8"),
            "--out",
            debs.to_str().expect("utf-8"),
            "--compress",
            "none",
        ],
    );
    assert!(ok, "cargo xtask dist: {out}");
    let arch = sh("dpkg", &["--print-architecture"]).1.trim().to_owned();
    let files: Vec<String> = PACKAGES
        .iter()
        .map(|p| {
            debs.join(format!("{p}_{}_{arch}.deb", env!("CARGO_PKG_VERSION")))
                .display()
                .to_string()
        })
        .collect();
    let mut installed = Installed {
        services: Vec::new(),
    };
    let mut args = vec!["--install"];
    args.extend(files.iter().map(String::as_str));
    let (ok, out) = sh("dpkg", &args);
    assert!(ok, "dpkg --install: {out}");

    // What the maintainer scripts set up.
    assert!(sh("getent", &["passwd", "pylon"]).0, "the pylon user");
    let pylon = gid_of("pylon");
    for secret in ["/etc/pylon/cluster.env", "/etc/pylon/control.env"] {
        assert_eq!(mode_and_group(secret), (0o640, pylon), "{secret}");
    }
    assert_eq!(mode_and_group("/etc/pylon"), (0o750, pylon));
    assert_eq!(mode_and_group("/var/lib/pylon").0, 0o750);
    for file in [
        "/usr/lib/sysctl.d/60-pylon-edge.conf",
        "/usr/share/pylon-edge/ebpf.conf",
        "/usr/share/pylon-balancer/balancer.toml.example",
        "/usr/share/pylon-backup/backup.toml.example",
        "/usr/bin/pylon-backup",
        "/usr/bin/pylonctl",
    ] {
        assert!(Path::new(file).exists(), "{file}");
    }
    // The backup service is verified with the others; it is not started here (it waits
    // for the operator's /etc/pylon/backup.toml).
    let units: Vec<String> = SERVICES
        .iter()
        .chain(&["pylon-backup"])
        .map(|s| format!("/lib/systemd/system/{s}.service"))
        .collect();
    let mut verify = vec!["verify"];
    verify.extend(units.iter().map(String::as_str));
    let (ok, out) = sh("systemd-analyze", &verify);
    assert!(ok && out.trim().is_empty(), "systemd-analyze verify: {out}");
    for unit in &units {
        let lines = unit_service_lines(Path::new(unit));
        let has = |k: &str, v: &str| lines.iter().any(|(a, b)| a == k && b == v);
        assert!(
            has("User", "pylon") && has("NoNewPrivileges", "yes"),
            "{unit}"
        );
        assert!(has("ProtectSystem", "strict"), "{unit}");
        assert!(
            lines.iter().any(|(k, _)| k == "CapabilityBoundingSet"),
            "{unit}"
        );
    }
    let edge_unit = unit_service_lines(Path::new("/lib/systemd/system/pylon-edge.service"));
    assert!(edge_unit
        .iter()
        .any(|(k, v)| k == "LimitNOFILE" && v.parse::<u64>().is_ok_and(|n| n >= 1_000_000)));

    // The packaged settings are valid as the units run them.
    for service in ["pylon-control", "pylon-app", "pylon-edge"] {
        let file = format!("/etc/pylon/{}.toml", service.trim_start_matches("pylon-"));
        let log = dir.path().join(format!("{service}-check.log"));
        let mut check = as_the_unit_says(service, &["--check-config", &file], &log);
        let status = check.wait().expect("check");
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(status.success(), "{service} --check-config {file}: {text}");
    }

    // Started as their units say, in order.
    for service in ["pylon-control", "pylon-app", "pylon-edge"] {
        let log = dir.path().join(format!("{service}.log"));
        let child = as_the_unit_says(service, &[], &log);
        installed.services.push((service.to_owned(), child));
    }
    let logs = || {
        installed
            .services
            .iter()
            .map(|(s, _)| {
                let text = std::fs::read_to_string(dir.path().join(format!("{s}.log")))
                    .unwrap_or_default();
                format!(
                    "--- {s}:\n{}",
                    text.lines().rev().take(15).collect::<Vec<_>>().join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let control: SocketAddr = "127.0.0.1:7400".parse().expect("address");
    let app: SocketAddr = "127.0.0.1:7510".parse().expect("address");
    let edge_admin: SocketAddr = "127.0.0.1:9100".parse().expect("address");
    for (what, addr) in [("control", control), ("app", app), ("edge", edge_admin)] {
        let ready = (0..300).any(|_| {
            let ok = http::get_as(addr, "/readyz", None).0 == 200;
            if !ok {
                std::thread::sleep(Duration::from_millis(100));
            }
            ok
        });
        assert!(ready, "{what} not ready:\n{}", logs());
        assert_eq!(http::get_as(addr, "/healthz", None).0, 200, "{what}");
    }

    // An operator with the bootstrap token made at install registers a pile, which then
    // logs in through the edge (checked against the app's registry) and is answered.
    let admin = environment_file("/etc/pylon/control.env")["PYLON_ADMIN_TOKEN"].clone();
    let pile = charger::pile_number(32_010_600_000_000, 42);
    let (code, body) = http::call_as(
        control,
        "POST",
        "/v1/piles",
        Some(json!([{"pile_no": pile.to_string()}])),
        Some(&admin),
    );
    assert_eq!(code, 200, "{body}\n{}", logs());
    // Dispatch hands the edge out once it has registered (it may still be retrying its
    // first connection to the control plane, started at the same moment).
    let entry_ok = (0..200).any(|_| {
        let (code, _) = http::call_as(
            control,
            "GET",
            &format!("/v1/entry?pile={pile}"),
            None,
            None,
        );
        if code != 200 {
            std::thread::sleep(Duration::from_millis(100));
        }
        code == 200
    });
    assert!(entry_ok, "dispatch never offered the edge\n{}", logs());
    let target = Target {
        addr: "127.0.0.1:8768".parse().expect("address"),
        tls: None,
    };
    let mut c = wait_for("the pile to log in", Duration::from_secs(20), || {
        let rt = tokio::runtime::Handle::current();
        tokio::task::block_in_place(|| {
            rt.block_on(async {
                let mut c = ChargerConn::connect(&target, None).await.ok()?;
                c.login(pile).await.ok()?;
                Some(c)
            })
        })
    });
    let seq = c
        .send(&charger::heartbeat_frame(pile))
        .await
        .expect("heartbeat");
    loop {
        let (s, frame) = c
            .recv_timeout("heartbeat reply", Duration::from_secs(5))
            .await
            .expect("reply");
        if s == seq && matches!(frame, Frame::HeartbeatReply(_)) {
            break;
        }
    }
    drop(c);

    // Stopped as systemd would (SIGTERM), then purged: nothing of Pylon is left.
    for (_, child) in &mut installed.services {
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
        let stopped = (0..100).any(|_| {
            let done = matches!(child.try_wait(), Ok(Some(_)));
            if !done {
                std::thread::sleep(Duration::from_millis(100));
            }
            done
        });
        if !stopped {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
    installed.services.clear();
    let mut args = vec!["--purge"];
    args.extend(PACKAGES);
    let (ok, out) = sh("dpkg", &args);
    assert!(ok, "dpkg --purge: {out}");
    for gone in [
        "/usr/bin/pylon-edge",
        "/usr/bin/pylonctl",
        "/lib/systemd/system/pylon-edge.service",
        "/usr/lib/sysctl.d/60-pylon-edge.conf",
        "/etc/pylon",
        "/var/lib/pylon",
    ] {
        assert!(!Path::new(gone).exists(), "{gone} is left after purging");
    }
    assert!(
        !sh("getent", &["passwd", "pylon"]).0,
        "the pylon user is left"
    );
}
