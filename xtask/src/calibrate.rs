//! `cargo xtask bench --calibrate`: the unit costs the capacity planner multiplies
//! (`pylonctl capacity plan`), measured on this machine and written to the committed
//! `capacity/calibration.json`; with `--check-at N`, the model's prediction at another
//! size against a measurement there.

use std::path::{Path, PathBuf};

use pylon_proto::api::capacity::{
    Calibration, EdgeCosts, Figures, Machine, ModelCheck, TransportCosts,
};

use crate::bench::{run_one, BenchArgs, ServerResult};
use crate::procs;

pub fn run(
    args: &BenchArgs,
    certs: &(PathBuf, pylon_bench::certs::PemPair),
    out: &Path,
) -> anyhow::Result<()> {
    let edge = |tcp: bool, sessions: u64| -> anyhow::Result<ServerResult> {
        let mut a = args.clone();
        a.tcp = tcp;
        a.sessions = sessions;
        eprintln!(
            "== calibrating the edge: {sessions} {} sessions, hold {} s",
            if tcp { "TCP" } else { "TLS" },
            a.duration
        );
        run_one("edge", &a, !tcp, certs, out)
    };
    let tls = edge(false, args.sessions)?;
    let tcp = edge(true, args.sessions)?;
    eprintln!("== calibrating the app service on PostgreSQL");
    let app = crate::bench_app::calibrate(out)?;
    let tls_costs = costs(&tls);
    let check = match args.check_at {
        Some(sessions) => {
            let measured = edge(false, sessions)?;
            Some(ModelCheck {
                sessions,
                transport: "tls".into(),
                predicted: tls_costs.predict_bench(
                    sessions,
                    measured.processes as u32,
                    args.heartbeat_secs,
                    measured.hold_secs,
                ),
                measured: Figures {
                    cpu_seconds: measured.cpu_seconds_in_hold,
                    user_bytes: measured.rss_bytes,
                    kernel_bytes: measured.kernel_bytes,
                },
            })
        }
        None => None,
    };
    let calibration = Calibration {
        measured_at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs(),
        machine: machine(),
        sessions: args.sessions,
        heartbeat_secs: args.heartbeat_secs,
        edge: EdgeCosts {
            tls: tls_costs,
            tcp: costs(&tcp),
        },
        app,
        check,
    };
    let path = procs::root().join("capacity/calibration.json");
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&path, serde_json::to_string_pretty(&calibration)? + "\n")?;
    println!("{}", summary(&calibration));
    println!("written: {}", path.display());
    Ok(())
}

fn costs(r: &ServerResult) -> TransportCosts {
    TransportCosts {
        cpu_ms_per_1000_heartbeats: r.marginal_cpu_ms_per_1000_heartbeats,
        idle_cpu_per_executor: r.idle_cpu_per_process_sec,
        cpu_ms_per_setup: r.cpu_ms_per_setup,
        user_bytes_per_session: r.rss_bytes_per_session,
        kernel_bytes_per_session: r.kernel_bytes_per_session_estimate,
    }
}

/// This machine, as /proc describes it.
fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown".into(), |(_, v)| v.trim().to_owned());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let kib: f64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    Machine {
        cpu,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
        memory_gib: (kib / 1024.0 / 1024.0 * 10.0).round() / 10.0,
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_owned(),
    }
}

fn summary(c: &Calibration) -> String {
    let mut md = format!(
        "# Calibration: {} sessions, heartbeat every {} s, on {} ({} cores, {} GiB)\n\n",
        c.sessions, c.heartbeat_secs, c.machine.cpu, c.machine.cores, c.machine.memory_gib
    );
    md += "| edge cost | TLS | TCP |\n|---|---|---|\n";
    type Get = fn(&TransportCosts) -> f64;
    let rows: [(&str, Get); 5] = [
        ("idle CPU per executor (cores)", |t| t.idle_cpu_per_executor),
        ("CPU ms per 1,000 heartbeats", |t| {
            t.cpu_ms_per_1000_heartbeats
        }),
        ("CPU ms per session set up", |t| t.cpu_ms_per_setup),
        ("user bytes per session", |t| t.user_bytes_per_session),
        ("kernel bytes per session", |t| t.kernel_bytes_per_session),
    ];
    for (name, get) in rows {
        md += &format!(
            "| {name} | {:.3} | {:.3} |\n",
            get(&c.edge.tls),
            get(&c.edge.tcp)
        );
    }
    let a = &c.app;
    md += &format!(
        "\n| app cost (PostgreSQL) | value |\n|---|---|\n\
         | CPU ms per connected pile per second | {:.5} |\n\
         | CPU ms per business frame | {:.4} |\n\
         | rows written per frame | {:.3} |\n| transactions per frame | {:.3} |\n\
         | frames per record (as measured) | {:.1} |\n",
        a.cpu_ms_per_pile_sec,
        a.cpu_ms_per_frame,
        a.row_writes_per_frame,
        a.transactions_per_frame,
        a.frames_per_record
    );
    if let Some(check) = &c.check {
        let ratio = |p: f64, m: f64| if m > 0.0 { p / m } else { 0.0 };
        md += &format!(
            "\n## The model at {} {} sessions (calibrated at {})\n\n\
             | figure | predicted | measured | predicted / measured |\n|---|---|---|---|\n\
             | edge CPU seconds in the hold | {:.2} | {:.2} | {:.2} |\n\
             | edge user memory (MB) | {:.1} | {:.1} | {:.2} |\n\
             | kernel memory (MB) | {:.1} | {:.1} | {:.2} |\n",
            check.sessions,
            check.transport.to_uppercase(),
            c.sessions,
            check.predicted.cpu_seconds,
            check.measured.cpu_seconds,
            ratio(check.predicted.cpu_seconds, check.measured.cpu_seconds),
            check.predicted.user_bytes / 1e6,
            check.measured.user_bytes / 1e6,
            ratio(check.predicted.user_bytes, check.measured.user_bytes),
            check.predicted.kernel_bytes / 1e6,
            check.measured.kernel_bytes / 1e6,
            ratio(check.predicted.kernel_bytes, check.measured.kernel_bytes),
        );
    }
    md
}
