//! `cargo xtask bench`: the edge and the reference server, each under the same simulated
//! fleet in the same run, and their figures side by side.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use pylon_bench::stats::{self, FleetReport, Latency};
use serde::Serialize;

use crate::procs::{self, Proc};

#[derive(clap::Args, Clone)]
pub struct BenchArgs {
    /// Concurrent charger sessions to hold.
    #[arg(long, default_value_t = 10_000)]
    pub(crate) sessions: u64,
    /// Seconds to hold them after the ramp.
    #[arg(long, default_value_t = 60)]
    pub(crate) duration: u64,
    /// Plain TCP chargers.
    #[arg(long, conflicts_with = "tls")]
    pub(crate) tcp: bool,
    /// TLS chargers (the default).
    #[arg(long)]
    pub(crate) tls: bool,
    /// The chargers offer TLS 1.2 only (as many deployed chargers do).
    #[arg(long, conflicts_with = "tcp")]
    pub(crate) tls12: bool,
    /// New sessions per second during the ramp (all fleet processes together).
    #[arg(long, default_value_t = 2_000)]
    pub(crate) ramp: u64,
    /// Heartbeat interval of the simulated chargers, in seconds.
    #[arg(long, default_value_t = 10.0)]
    pub(crate) heartbeat_secs: f64,
    /// Sessions per process (this machine allows 20,000 open files per process).
    #[arg(long, default_value_t = 18_000)]
    pub(crate) per_process: u64,
    /// Measure only the edge (no reference run).
    #[arg(long)]
    pub(crate) edge_only: bool,
    /// Measure the unit costs the capacity planner uses (the edge over TLS and TCP at
    /// --sessions, the app on PostgreSQL) and write them to capacity/calibration.json.
    #[arg(long)]
    pub(crate) calibrate: bool,
    /// With --calibrate: also run the edge over TLS at this many sessions and compare
    /// what the calibration predicts with what is measured.
    #[arg(long, value_name = "SESSIONS", requires = "calibrate")]
    pub(crate) check_at: Option<u64>,
}

/// What one server kind achieved.
#[derive(Debug, Serialize)]
pub(crate) struct ServerResult {
    pub(crate) server: String,
    pub(crate) processes: usize,
    pub(crate) sessions_held: i64,
    pub(crate) setup_rate_per_sec: f64,
    pub(crate) setup_latency: Latency,
    pub(crate) heartbeat_rtt: Latency,
    pub(crate) heartbeats_in_hold: u64,
    pub(crate) cpu_seconds_in_hold: f64,
    pub(crate) cpu_ms_per_1000_heartbeats: f64,
    /// CPU per 1,000 heartbeats beyond what idle processes spend.
    pub(crate) marginal_cpu_ms_per_1000_heartbeats: f64,
    /// CPU seconds per second of a server process with nobody connected.
    pub(crate) idle_cpu_per_process_sec: f64,
    /// The hold as it lasted.
    pub(crate) hold_secs: f64,
    /// CPU per session set up during the ramp, less the ramp's heartbeats: a full
    /// handshake over TLS.
    pub(crate) cpu_ms_per_setup: f64,
    /// Over TLS: the reconnect wave after the hold, every charger resuming its session.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reconnect_wave: Option<Wave>,
    /// Resident memory growth of the server processes over the run.
    pub(crate) rss_bytes: f64,
    pub(crate) kernel_bytes: f64,
    pub(crate) rss_bytes_per_session: f64,
    pub(crate) kernel_bytes_per_session_estimate: f64,
    pub(crate) total_bytes_per_session: f64,
    pub(crate) errors: std::collections::BTreeMap<String, u64>,
    /// The edge's CPU profile during the hold (perf), when perf is installed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) profile: Option<crate::profile::Profile>,
}

/// A reconnect wave: every charger closes its connection and connects again at the ramp's
/// pace, resuming its TLS session with the ticket it was given.
#[derive(Debug, Serialize)]
pub(crate) struct Wave {
    pub(crate) setups: u64,
    /// Of those, handshakes that resumed a session.
    pub(crate) resumed: u64,
    pub(crate) secs: f64,
    /// Server CPU per set-up in the wave, less its heartbeats and idle cost.
    pub(crate) cpu_ms_per_setup: f64,
    pub(crate) setup_latency: Latency,
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    crate::system::prepare("bench", crate::system::FOR_ALL)?;
    procs::build_release()?;
    let out = procs::root().join("target/bench");
    std::fs::create_dir_all(&out)?;
    let certs = procs::edge_certs(&out.join("certs"))?;
    if args.calibrate {
        return crate::calibrate::run(&args, &certs, &out);
    }
    let tls = !args.tcp;
    let mut results = Vec::new();
    let kinds: &[&str] = if args.edge_only {
        &["edge"]
    } else {
        &["edge", "reference"]
    };
    for kind in kinds {
        eprintln!(
            "== {kind}: {} {} sessions, hold {} s",
            args.sessions,
            if tls { "TLS" } else { "TCP" },
            args.duration
        );
        results.push(run_one(kind, &args, tls, &certs, &out)?);
    }
    let report = serde_json::json!({
        "sessions": args.sessions,
        "transport": if tls { "tls" } else { "tcp" },
        "duration_secs": args.duration,
        "heartbeat_secs": args.heartbeat_secs,
        "results": results,
    });
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let json_path = out.join(format!("bench-{stamp}.json"));
    std::fs::write(&json_path, serde_json::to_string_pretty(&report)?)?;
    let md = markdown(&args, tls, &results);
    let md_path = out.join(format!("bench-{stamp}.md"));
    std::fs::write(&md_path, &md)?;
    std::fs::write(out.join("latest.md"), &md)?;
    println!("{md}");
    println!("written: {} and {}", json_path.display(), md_path.display());
    Ok(())
}

pub(crate) fn run_one(
    kind: &str,
    args: &BenchArgs,
    tls: bool,
    certs: &(PathBuf, pylon_bench::certs::PemPair),
    out: &Path,
) -> anyhow::Result<ServerResult> {
    let (ca, certs) = (&certs.0, &certs.1);
    let processes = args.sessions.div_ceil(args.per_process).max(2) as usize;
    let port = pick_port()?;
    let addr = format!("127.0.0.1:{port}");
    let mut servers = Vec::new();
    for i in 0..processes {
        let log = out.join(format!("{kind}-{i}.log"));
        let mut cmd = match kind {
            "edge" => {
                let mut c = Command::new(procs::release_binary("pylon-edge"));
                c.args([
                    "--edge-id",
                    &format!("bench-{i}"),
                    "--executors",
                    "1",
                    "--allow-all",
                    "--drain-grace",
                    "1",
                ])
                .args(["--admin-listen", &format!("127.0.0.1:{}", pick_port()?)])
                // Nothing calls the admin API but /metrics; it still needs a credential.
                .args(["--admin-token", &format!("bench-{}", std::process::id())])
                .args([
                    "--heartbeat-interval",
                    &format!("{}", args.heartbeat_secs.ceil() as u64),
                ]);
                if tls {
                    c.args(["--no-tcp", "--tls-listen", &addr])
                        .arg("--tls-cert")
                        .arg(&certs.cert)
                        .arg("--tls-key")
                        .arg(&certs.key)
                        // The edge processes share their ticket keys, as a site's edges do.
                        .arg("--tls-ticket-key")
                        .arg(ticket_key(out)?);
                } else {
                    c.args(["--tcp-listen", &addr]);
                }
                c
            }
            _ => {
                let mut c = Command::new(procs::release_binary("pylon-refserver"));
                c.args(["--listen", &addr, "--threads", "1"])
                    // Its idle limit is three intervals, as the edge's.
                    .args([
                        "--heartbeat-secs",
                        &format!("{}", args.heartbeat_secs.ceil() as u64),
                    ]);
                if tls {
                    c.arg("--tls-cert")
                        .arg(&certs.cert)
                        .arg("--tls-key")
                        .arg(&certs.key);
                }
                c
            }
        };
        cmd.env("RUST_LOG", "warn");
        servers.push(Proc::spawn(&format!("{kind}-{i}"), &mut cmd, &log)?);
    }
    std::thread::sleep(Duration::from_millis(800));
    for s in servers.iter_mut() {
        anyhow::ensure!(
            s.is_running(),
            "{} did not start; see its log in {}",
            s.name,
            out.display()
        );
    }
    // What the servers cost with nobody connected (timers, the admin server): the part
    // of their CPU that does not grow with heartbeats.
    let server_cpu =
        |servers: &[Proc]| -> f64 { servers.iter().map(|s| procs::cpu_seconds(s.pid())).sum() };
    let (idle_started, idle_cpu_before) = (Instant::now(), server_cpu(&servers));
    std::thread::sleep(Duration::from_secs(5));
    let idle_cpu_per_process_sec = (server_cpu(&servers) - idle_cpu_before)
        / idle_started.elapsed().as_secs_f64()
        / servers.len() as f64;
    let rss_before: u64 = servers.iter().map(|s| procs::rss_bytes(s.pid())).sum();
    let kernel_before = procs::kernel_socket_bytes();
    let cpu_before_ramp = server_cpu(&servers);
    let ramp_started = Instant::now();

    let ramp_secs = (args.sessions as f64 / args.ramp as f64).ceil() as u64 + 5;
    // Over TLS the run ends with a reconnect wave, after the profile.
    let wave_limit = ramp_secs + 30;
    let wave_secs = if tls { wave_limit + 5 } else { 0 };
    // The fleets outlive the hold, the profile and the wave by a wide margin (the bench
    // terminates them): a machine this loaded stalls for seconds, and at a million
    // sessions the hold once overran by 16 s, so the fleets left during it.
    let after_hold = crate::profile::window(args.duration).as_secs() + wave_secs + 5;
    let fleet_secs = ramp_secs + 2 * args.duration + 60 + after_hold;
    let fleets = args.sessions.div_ceil(args.per_process) as usize;
    let mut fleet_procs = Vec::new();
    let mut report_paths = Vec::new();
    for f in 0..fleets {
        let count =
            args.sessions / fleets as u64 + u64::from((f as u64) < args.sessions % fleets as u64);
        let report = out.join(format!("{kind}-fleet-{f}.json"));
        let _ = std::fs::remove_file(&report);
        let mut cmd = Command::new(procs::release_binary("pylon-fleet"));
        cmd.args(["--target", &addr, "--sessions", &count.to_string()])
            .args(["--ramp", &(args.ramp / fleets as u64).max(1).to_string()])
            .args([
                "--pile-base",
                &(10_000_000_000_000u64 + f as u64 * 1_000_000).to_string(),
            ])
            .args([
                "--source-ips",
                &format!("127.{}.0.1-127.{}.0.250", 10 + f, 10 + f),
            ])
            .args(["--heartbeat-secs", &args.heartbeat_secs.to_string()])
            .args(["--duration", &fleet_secs.to_string()])
            .args(["--progress-secs", "1", "--quiet"])
            .arg("--report")
            .arg(&report);
        if tls {
            cmd.arg("--tls-ca").arg(ca);
            if args.tls12 {
                cmd.arg("--tls12-only");
            }
        }
        fleet_procs.push(Proc::spawn(
            &format!("fleet-{f}"),
            &mut cmd,
            &out.join(format!("{kind}-fleet-{f}.log")),
        )?);
        report_paths.push(report);
    }

    // Ramp: wait until every session is up (or the ramp time runs out).
    let start = Instant::now();
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let (total, _, _) = stats::merge(&read_reports(&report_paths));
        eprint!(
            "\r  ramp {:>4}s: connected {:>7}/{} | setups {:>7} | errors {:?}      ",
            start.elapsed().as_secs(),
            total.connected,
            args.sessions,
            total.setups,
            total.errors
        );
        if total.connected as u64 >= args.sessions || start.elapsed().as_secs() >= ramp_secs {
            break;
        }
    }
    eprintln!();
    // Hold: sample CPU and heartbeats at the start and end of the window.
    let hold_start = read_reports(&report_paths);
    let cpu_start: f64 = servers.iter().map(|s| procs::cpu_seconds(s.pid())).sum();
    let hold = Instant::now();
    let hb_start: u64 = hold_start.iter().map(|r| r.heartbeats_ok).sum();
    let at_hold_start = stats::merge(&hold_start).0;
    let rtt_skip = at_hold_start.rtt_us.clone();
    while hold.elapsed().as_secs() < args.duration {
        std::thread::sleep(Duration::from_secs(1));
        let (total, _, _) = stats::merge(&read_reports(&report_paths));
        // The same measure as the final report: round trips of the hold so far, without the
        // ramp's (whose handshakes queue heartbeats behind them).
        let rtt = hold_latency(&total, &rtt_skip);
        eprint!(
            "\r  hold {:>4}s: connected {:>7} | heartbeats {:>9} p99 {:.1} ms | errors {:?}      ",
            hold.elapsed().as_secs(),
            total.connected,
            total.heartbeats_ok,
            rtt.p99_ms,
            total.errors
        );
    }
    eprintln!();
    let cpu_end: f64 = servers.iter().map(|s| procs::cpu_seconds(s.pid())).sum();
    let hold_secs = hold.elapsed().as_secs_f64();
    let rss_after: u64 = servers.iter().map(|s| procs::rss_bytes(s.pid())).sum();
    let kernel_after = procs::kernel_socket_bytes();
    let hold_end = read_reports(&report_paths);
    let (total, _, setup) = stats::merge(&hold_end);
    let heartbeats = total.heartbeats_ok.saturating_sub(hb_start);
    // Round trips measured during the hold only: subtract what was there at its start.
    let rtt = hold_latency(&total, &rtt_skip);
    // With the figures taken, the edge is profiled under the same load (perf's own
    // overhead stays out of them).
    let profile = if kind == "edge" {
        let pids: Vec<u32> = servers.iter().map(|s| s.pid()).collect();
        let transport = if tls { "tls" } else { "tcp" };
        let name = format!("edge-profile-{transport}-{}", args.sessions);
        let title = format!(
            "pylon-edge, {} {} sessions, heartbeat every {} s",
            args.sessions,
            transport.to_uppercase(),
            args.heartbeat_secs
        );
        let secs = crate::profile::window(args.duration).as_secs();
        crate::profile::record(&pids, secs, out, &name, &title).unwrap_or_else(|e| {
            eprintln!("  no CPU profile: {e:#}");
            None
        })
    } else {
        None
    };

    let held = total.connected.max(1);
    let cpu = cpu_end - cpu_start;
    let fixed = |secs: f64| idle_cpu_per_process_sec * processes as f64 * secs;
    // Heartbeats' own cost: the hold's CPU less what the processes spend anyway.
    let cpu_per_heartbeat = if heartbeats > 0 {
        (cpu - fixed(hold_secs)).max(0.0) / heartbeats as f64
    } else {
        0.0
    };
    let reconnect_wave = if tls {
        let costs = WaveCosts {
            per_heartbeat: cpu_per_heartbeat,
            idle_per_sec: idle_cpu_per_process_sec * processes as f64,
        };
        Some(reconnect_wave(
            &servers,
            &fleet_procs,
            &report_paths,
            args.sessions,
            Duration::from_secs(wave_limit),
            costs,
        ))
    } else {
        None
    };
    for f in fleet_procs.iter_mut() {
        f.terminate(Duration::from_secs(3));
    }
    for s in servers.iter_mut() {
        s.terminate(Duration::from_secs(3));
    }
    let ramp_setups = at_hold_start.setups.max(1);
    let ramp_elapsed = ramp_started.elapsed().as_secs_f64() - hold_secs;
    let ramp_cpu =
        (cpu_start - cpu_before_ramp - hb_start as f64 * cpu_per_heartbeat - fixed(ramp_elapsed))
            .max(0.0);
    let rss_per = (rss_after.saturating_sub(rss_before)) as f64 / held as f64;
    // Both ends of every connection live on this machine and their kernel objects are of
    // the same kinds, so half the growth is the server side's.
    let kernel_per = (kernel_after.saturating_sub(kernel_before)) as f64 / 2.0 / held as f64;
    Ok(ServerResult {
        server: kind.to_string(),
        processes,
        sessions_held: total.connected,
        setup_rate_per_sec: total.setups as f64 / total.last_setup_secs.max(0.001),
        setup_latency: setup,
        heartbeat_rtt: rtt,
        heartbeats_in_hold: heartbeats,
        cpu_seconds_in_hold: cpu,
        cpu_ms_per_1000_heartbeats: if heartbeats > 0 {
            cpu * 1000.0 / (heartbeats as f64 / 1000.0)
        } else {
            0.0
        },
        marginal_cpu_ms_per_1000_heartbeats: cpu_per_heartbeat * 1e6,
        idle_cpu_per_process_sec,
        hold_secs,
        cpu_ms_per_setup: ramp_cpu * 1000.0 / ramp_setups as f64,
        reconnect_wave,
        rss_bytes: rss_after.saturating_sub(rss_before) as f64,
        kernel_bytes: kernel_after.saturating_sub(kernel_before) as f64 / 2.0,
        rss_bytes_per_session: rss_per,
        kernel_bytes_per_session_estimate: kernel_per,
        total_bytes_per_session: rss_per + kernel_per,
        errors: total.errors,
        profile,
    })
}

/// What the servers spend anyway, to take out of a phase's CPU.
struct WaveCosts {
    per_heartbeat: f64,
    /// All server processes together, per second.
    idle_per_sec: f64,
}

/// Starts a reconnect wave in every fleet (SIGUSR1) and measures it until every charger
/// has set up again and is connected (or `limit` passes).
fn reconnect_wave(
    servers: &[Proc],
    fleets: &[Proc],
    reports: &[PathBuf],
    sessions: u64,
    limit: Duration,
    costs: WaveCosts,
) -> Wave {
    let server_cpu = || -> f64 { servers.iter().map(|s| procs::cpu_seconds(s.pid())).sum() };
    let before = stats::merge(&read_reports(reports)).0;
    let cpu_before = server_cpu();
    let started = Instant::now();
    for fleet in fleets {
        // SAFETY: kill(2) has no memory effects.
        unsafe {
            libc::kill(fleet.pid() as libc::pid_t, libc::SIGUSR1);
        }
    }
    let mut now = before.clone();
    while started.elapsed() < limit {
        std::thread::sleep(Duration::from_secs(1));
        now = stats::merge(&read_reports(reports)).0;
        let setups = now.setups - before.setups;
        eprint!(
            "\r  reconnect wave {:>4}s: set up again {:>7}/{} (resumed {:>7}) | connected {:>7}      ",
            started.elapsed().as_secs(),
            setups,
            sessions,
            now.setups_resumed - before.setups_resumed,
            now.connected
        );
        if setups >= sessions && now.connected as u64 >= sessions {
            break;
        }
    }
    eprintln!();
    let secs = started.elapsed().as_secs_f64();
    let cpu = server_cpu() - cpu_before;
    let setups = now.setups - before.setups;
    let heartbeats = now.heartbeats_ok.saturating_sub(before.heartbeats_ok);
    let own = (cpu - heartbeats as f64 * costs.per_heartbeat - costs.idle_per_sec * secs).max(0.0);
    // The wave's set-up latencies: all of them less those of the ramp.
    let mut latency = now.setup_us.to_histogram();
    let _ = latency.subtract(before.setup_us.to_histogram());
    Wave {
        setups,
        resumed: now.setups_resumed - before.setups_resumed,
        secs,
        cpu_ms_per_setup: own * 1000.0 / setups.max(1) as f64,
        setup_latency: Latency::from(&latency),
    }
}

/// A session-ticket key file for the run's edges (32 random bytes in hex).
fn ticket_key(out: &Path) -> anyhow::Result<PathBuf> {
    use std::io::Read;
    let path = out.join("ticket.key");
    if !path.exists() {
        let mut key = [0u8; 32];
        std::fs::File::open("/dev/urandom")?.read_exact(&mut key)?;
        let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
        std::fs::write(&path, hex + "\n")?;
    }
    Ok(path)
}

fn hold_latency(total: &FleetReport, before: &stats::HistogramData) -> Latency {
    let mut all = total.rtt_us.to_histogram();
    let earlier = before.to_histogram();
    let _ = all.subtract(&earlier);
    Latency::from(&all)
}

fn read_reports(paths: &[PathBuf]) -> Vec<FleetReport> {
    paths
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .filter_map(|s| serde_json::from_str(&s).ok())
        .collect()
}

fn pick_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn markdown(args: &BenchArgs, tls: bool, results: &[ServerResult]) -> String {
    let mut md = format!(
        "# Pylon bench: {} {} sessions, {} s hold, heartbeat every {} s\n\n",
        args.sessions,
        match (tls, args.tls12) {
            (false, _) => "TCP",
            (true, false) => "TLS",
            (true, true) => "TLS 1.2",
        },
        args.duration,
        args.heartbeat_secs
    );
    md += "Fleet and servers share this machine. Memory: RSS growth of the server processes per session; kernel is half the growth of slab + TCP buffer pages (both ends are local). Set-up CPU: the servers' CPU over the ramp (full handshakes over TLS) or over the reconnect wave at the end of a TLS run (every charger reconnects at the ramp's pace, resuming its session with its ticket), less heartbeats and idle cost, per set-up. The edge processes share their ticket keys (`--tls-ticket-key`); each reference process has its own, so a reference charger resumes only when it reaches the same process again.\n\n";
    md += "| figure | ";
    md += &results
        .iter()
        .map(|r| r.server.as_str())
        .collect::<Vec<_>>()
        .join(" | ");
    if results.len() == 2 {
        md += " | edge / reference";
    }
    md += " |\n|---|";
    md += &"---|".repeat(results.len() + usize::from(results.len() == 2));
    md += "\n";
    type Get = fn(&ServerResult) -> f64;
    let mut rows: Vec<(&str, Get)> = vec![
        ("sessions held", |r| r.sessions_held as f64),
        ("setup rate (TLS+login per s)", |r| r.setup_rate_per_sec),
        ("setup p99 (ms)", |r| r.setup_latency.p99_ms),
        ("heartbeat RTT p50 (ms)", |r| r.heartbeat_rtt.p50_ms),
        ("heartbeat RTT p99 (ms)", |r| r.heartbeat_rtt.p99_ms),
        ("heartbeat RTT p99.9 (ms)", |r| r.heartbeat_rtt.p999_ms),
        ("heartbeat RTT max (ms)", |r| r.heartbeat_rtt.max_ms),
        ("heartbeats in hold", |r| r.heartbeats_in_hold as f64),
        ("CPU ms per 1,000 heartbeats", |r| {
            r.cpu_ms_per_1000_heartbeats
        }),
        ("RSS bytes per session", |r| r.rss_bytes_per_session),
        ("kernel bytes per session (est.)", |r| {
            r.kernel_bytes_per_session_estimate
        }),
        ("total bytes per session", |r| r.total_bytes_per_session),
        ("CPU ms per set-up (ramp)", |r| r.cpu_ms_per_setup),
    ];
    let wave = |r: &ServerResult| {
        r.reconnect_wave
            .as_ref()
            .map_or(0.0, |w| w.cpu_ms_per_setup)
    };
    if results.iter().any(|r| r.reconnect_wave.is_some()) {
        rows.extend([
            ("CPU ms per set-up (reconnect wave)", wave as Get),
            ("reconnects resumed (%)", |r| {
                r.reconnect_wave
                    .as_ref()
                    .map_or(0.0, |w| 100.0 * w.resumed as f64 / w.setups.max(1) as f64)
            }),
            ("reconnect p99 (ms)", |r| {
                r.reconnect_wave
                    .as_ref()
                    .map_or(0.0, |w| w.setup_latency.p99_ms)
            }),
            ("set-ups per CPU second, resumed / full", |r| {
                let w = r
                    .reconnect_wave
                    .as_ref()
                    .map_or(0.0, |w| w.cpu_ms_per_setup);
                if w > 0.0 {
                    r.cpu_ms_per_setup / w
                } else {
                    0.0
                }
            }),
        ]);
    }
    for (name, get) in rows {
        md += &format!("| {name} | ");
        md += &results
            .iter()
            .map(|r| format!("{:.2}", get(r)))
            .collect::<Vec<_>>()
            .join(" | ");
        if results.len() == 2 {
            let (e, r) = (get(&results[0]), get(&results[1]));
            md += &format!(
                " | {}",
                if r != 0.0 {
                    format!("{:.2}", e / r)
                } else {
                    "-".into()
                }
            );
        }
        md += " |\n";
    }
    md += "\nErrors: ";
    md += &results
        .iter()
        .map(|r| format!("{}: {:?}", r.server, r.errors))
        .collect::<Vec<_>>()
        .join("; ");
    md += "\n";
    for r in results {
        if let Some(profile) = &r.profile {
            md += &crate::profile::markdown(profile);
        }
    }
    md
}
