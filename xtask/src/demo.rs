//! `cargo xtask demo`: an edge, a simulated fleet over TCP and TLS, live session counts.

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::procs::{self, Proc};

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Chargers per transport (TCP and TLS).
    #[arg(long, default_value_t = 200)]
    chargers: u64,
    /// Stop after this many seconds (0: until Ctrl-C).
    #[arg(long, default_value_t = 0)]
    duration: u64,
    /// Edge plain TCP port.
    #[arg(long, default_value_t = 8768)]
    tcp_port: u16,
    /// Edge TLS port.
    #[arg(long, default_value_t = 8769)]
    tls_port: u16,
    /// Edge admin/metrics port.
    #[arg(long, default_value_t = 9100)]
    admin_port: u16,
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    procs::build_release()?;
    let dir = procs::root().join("target/demo");
    let (ca, certs) = procs::edge_certs(&dir.join("certs"))?;
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    let admin = format!("127.0.0.1:{}", args.admin_port);
    let mut edge = Proc::spawn(
        "pylon-edge",
        Command::new(procs::release_binary("pylon-edge"))
            .args([
                "--edge-id",
                "demo-edge",
                "--executors",
                "2",
                "--allow-all",
                "--drain-grace",
                "2",
            ])
            .args(["--tcp-listen", &format!("127.0.0.1:{}", args.tcp_port)])
            .args(["--tls-listen", &format!("127.0.0.1:{}", args.tls_port)])
            .args(["--admin-listen", &admin])
            .arg("--tls-cert")
            .arg(&certs.cert)
            .arg("--tls-key")
            .arg(&certs.key),
        &dir.join("edge.log"),
    )?;
    std::thread::sleep(Duration::from_millis(500));
    anyhow::ensure!(
        edge.is_running(),
        "the edge did not start; see {}",
        dir.join("edge.log").display()
    );

    let fleet =
        |name: &str, port: u16, tls: bool, base: u64, sources: &str| -> anyhow::Result<Proc> {
            let mut cmd = Command::new(procs::release_binary("pylon-fleet"));
            cmd.args(["--target", &format!("127.0.0.1:{port}")])
                .args(["--sessions", &args.chargers.to_string(), "--ramp", "100"])
                .args([
                    "--pile-base",
                    &base.to_string(),
                    "--source-ips",
                    sources,
                    "--progress-secs",
                    "0",
                ]);
            if tls {
                cmd.arg("--tls-ca").arg(&ca);
            }
            Proc::spawn(name, &mut cmd, &dir.join(format!("{name}.log")))
        };
    let _tcp = fleet(
        "fleet-tcp",
        args.tcp_port,
        false,
        10_000_000_000_000,
        "127.2.0.1-127.2.0.10",
    )?;
    let _tls = fleet(
        "fleet-tls",
        args.tls_port,
        true,
        20_000_000_000_000,
        "127.3.0.1-127.3.0.10",
    )?;

    println!(
        "Pylon demo: edge on 127.0.0.1:{} (TCP) and :{} (TLS), metrics at http://{admin}/metrics",
        args.tcp_port, args.tls_port
    );
    println!(
        "{} simulated chargers per transport; logs in {}. Ctrl-C stops.",
        args.chargers,
        dir.display()
    );
    let start = Instant::now();
    while !STOP.load(Ordering::Relaxed)
        && (args.duration == 0 || start.elapsed().as_secs() < args.duration)
    {
        std::thread::sleep(Duration::from_secs(2));
        if !edge.is_running() {
            anyhow::bail!("the edge stopped; see {}", dir.join("edge.log").display());
        }
        match ureq::get(&format!("http://{admin}/v1/status")).call() {
            Ok(r) => {
                let s: serde_json::Value = r.into_json().unwrap_or_default();
                println!(
                    "[{:>4}s] sessions: tcp {} tls {} | connections: tcp {} tls {} | heartbeats answered {}",
                    start.elapsed().as_secs(),
                    s["sessions"]["tcp"], s["sessions"]["tls"],
                    s["connections"]["tcp"], s["connections"]["tls"], s["heartbeats"]
                );
            }
            Err(e) => println!("status unavailable: {e}"),
        }
    }
    println!("stopping");
    edge.terminate(Duration::from_secs(5));
    Ok(())
}
