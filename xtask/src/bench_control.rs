//! `cargo xtask bench-control`: the control plane's figures: dispatch throughput and p99
//! on one core (against `/healthz` on the same server as the reference), route push
//! latency to N subscribers, and the route table's snapshot size and open time.

use std::process::Command;
use std::time::Duration;

use crate::procs::{self, Proc};

#[derive(clap::Args)]
pub struct BenchControlArgs {
    /// Edges registered in the table.
    #[arg(long, default_value_t = 100)]
    edges: u32,
    /// Route subscribers timed for push latency.
    #[arg(long, default_value_t = 20)]
    subscribers: u32,
    /// Route changes timed.
    #[arg(long, default_value_t = 200)]
    changes: u32,
    /// Seconds of each load round (three rounds of dispatch and of the reference).
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Concurrent HTTP connections of the load.
    #[arg(long, default_value_t = 16)]
    connections: usize,
}

const ADMIN_TOKEN: &str = "bench-admin-token";
const CLUSTER_TOKEN: &str = "bench-cluster-token";

pub fn run(args: BenchControlArgs) -> anyhow::Result<()> {
    crate::system::prepare("bench-control", crate::system::FOR_ALL)?;
    procs::build_release()?;
    let out = procs::root().join("target/bench");
    std::fs::create_dir_all(&out)?;
    let registry = out.join("control-bench-registry.json");
    let _ = std::fs::remove_file(&registry);
    let http = format!("127.0.0.1:{}", free_port()?);
    let grpc = format!("127.0.0.1:{}", free_port()?);
    // The control plane on CPU 0 with one worker thread: "one core".
    let mut control = Proc::spawn(
        "pylon-control",
        Command::new("taskset")
            .args(["-c", "0"])
            .arg(procs::release_binary("pylon-control"))
            .args([
                "--replica-id",
                "bench",
                "--worker-threads",
                "1",
                "--log",
                "warn",
            ])
            .arg("--registry-file")
            .arg(&registry)
            .args(["--http-listen", &http, "--grpc-listen", &grpc])
            .args([
                "--admin-token",
                ADMIN_TOKEN,
                "--cluster-token",
                CLUSTER_TOKEN,
            ]),
        &out.join("control-bench-control.log"),
    )?;
    for _ in 0..100 {
        if ureq::get(&format!("http://{http}/readyz")).call().is_ok() {
            break;
        }
        anyhow::ensure!(
            control.is_running(),
            "pylon-control did not start; see target/bench/control-bench-control.log"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let load_cpus = if cpus > 1 {
        "1-".to_string() + &(cpus - 1).to_string()
    } else {
        "0".into()
    };
    let output = Command::new("taskset")
        .args(["-c", &load_cpus])
        .arg(procs::release_binary("pylon-control-bench"))
        .args(["--http", &http, "--grpc", &format!("http://{grpc}")])
        .args([
            "--admin-token",
            ADMIN_TOKEN,
            "--cluster-token",
            CLUSTER_TOKEN,
        ])
        .args(["--edges", &args.edges.to_string()])
        .args(["--subscribers", &args.subscribers.to_string()])
        .args(["--changes", &args.changes.to_string()])
        .args(["--seconds", &args.seconds.to_string()])
        .args(["--connections", &args.connections.to_string()])
        .output()?;
    control.terminate(Duration::from_secs(5));
    anyhow::ensure!(
        output.status.success(),
        "pylon-control-bench failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let path = out.join(format!("control-{stamp}.json"));
    std::fs::write(&path, serde_json::to_string_pretty(&report)?)?;
    let md = markdown(&report);
    std::fs::write(out.join("control-latest.md"), &md)?;
    println!("{md}");
    println!("(JSON: {})", path.display());
    Ok(())
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn markdown(r: &serde_json::Value) -> String {
    let d = &r["dispatch"];
    let h = &r["healthz_reference"];
    let s = &r["snapshot"];
    let p = &r["push"];
    format!(
        "## Control plane ({} edges, {} app instances)\n\n\
         | figure | value |\n|---|---|\n\
         | dispatch requests/s, one core | {:.0} |\n\
         | dispatch latency p50 / p99 / p99.9 (ms) | {} / {} / {} |\n\
         | reference: /healthz requests/s on the same server | {:.0} |\n\
         | dispatch / healthz throughput (median of 3 rounds; all rounds) | {:.2} ({}) |\n\
         | route push to all {} subscribers p50 / p99 / max (ms) | {} / {} / {} |\n\
         | push changes timed (timed out) | {} ({}) |\n\
         | snapshot size ({} shards, {} edges) | {} bytes |\n\
         | snapshot validate + open in place, median | {:.1} µs |\n\
         | snapshot full deserialise, median | {:.1} µs |\n",
        r["edges"],
        r["apps"],
        d["requests_per_sec"].as_f64().unwrap_or(0.0),
        d["latency_ms"]["p50"],
        d["latency_ms"]["p99"],
        d["latency_ms"]["p999"],
        h["requests_per_sec"].as_f64().unwrap_or(0.0),
        r["dispatch_to_healthz_throughput"].as_f64().unwrap_or(0.0),
        r["dispatch_to_healthz_throughput_all_rounds"],
        p["subscribers"],
        p["all_applied_ms"]["p50"],
        p["all_applied_ms"]["p99"],
        p["all_applied_ms"]["max"],
        p["changes"],
        p["timed_out"],
        s["shards"],
        s["edges"],
        s["bytes"],
        s["validate_and_open_in_place_us_median"]
            .as_f64()
            .unwrap_or(0.0),
        s["full_deserialise_us_median"].as_f64().unwrap_or(0.0),
    )
}
