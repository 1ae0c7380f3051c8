//! `cargo xtask bench-app`: the charging business under load, on SQLite and on PostgreSQL
//! in the same run: transaction records stored and confirmed per second, and the round
//! trip of an operator command (API -> app -> edge -> pile -> back) with many sessions.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use pylon_bench::postgres::PostgresCluster;
use serde_json::{json, Value};

use crate::procs::{self, Proc};

#[derive(clap::Args)]
pub struct BenchAppArgs {
    /// Sessions connected while commands are timed.
    #[arg(long, default_value_t = 10_000)]
    sessions: u64,
    /// Operator commands timed.
    #[arg(long, default_value_t = 500)]
    commands: u32,
    /// Charging sessions for the records phase (each charges ~1 s, then starts again).
    #[arg(long, default_value_t = 6_000)]
    charging: u64,
    /// Seconds the records rate is measured over.
    #[arg(long, default_value_t = 20)]
    hold: u64,
    /// Real-time status frames (0x13) per second the `--sessions` piles offer together
    /// in the ingestion phase (0: skip it).
    #[arg(long, default_value_t = 30_000)]
    ingest_rate: u64,
    /// Also measure the unit costs (`bench --calibrate`): a window with no pile connected
    /// and one with every pile idle, `hold` seconds each.
    #[arg(skip)]
    unit_costs: bool,
}

const ADMIN: &str = "bench-admin-token";
const CLUSTER: &str = "bench-cluster-token";
const PILE_BASE: u64 = 30_000_000_000_000;

fn port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn get(url: &str) -> Value {
    ureq::get(url)
        .set("authorization", &format!("Bearer {ADMIN}"))
        .call()
        .ok()
        .and_then(|r| r.into_json().ok())
        .unwrap_or_default()
}

fn metric(url: &str, name: &str, label: &str) -> f64 {
    let text = ureq::get(url)
        .call()
        .ok()
        .and_then(|r| r.into_string().ok())
        .unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn wait(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) -> anyhow::Result<()> {
    let start = Instant::now();
    while !ok() {
        anyhow::ensure!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

struct Fleet {
    /// Kept for its lifetime: dropping it stops the fleet.
    _proc: Proc,
    report: std::path::PathBuf,
}

impl Fleet {
    fn start(
        dir: &Path,
        name: &str,
        edge: &str,
        sessions: u64,
        extra: &[&str],
    ) -> anyhow::Result<Fleet> {
        let report = dir.join(format!("{name}.json"));
        let proc = Proc::spawn(
            name,
            Command::new(procs::release_binary("pylon-fleet"))
                .args(["--target", edge, "--sessions", &sessions.to_string()])
                .args(["--pile-base", &PILE_BASE.to_string(), "--ramp", "2000"])
                .args([
                    "--source-ips",
                    "127.5.0.1-127.5.0.40",
                    "--progress-secs",
                    "1",
                    "--quiet",
                ])
                .arg("--report")
                .arg(&report)
                .args(extra),
            &dir.join(format!("{name}.log")),
        )?;
        Ok(Fleet {
            _proc: proc,
            report,
        })
    }

    fn report(&self) -> Value {
        std::fs::read_to_string(&self.report)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default()
    }
}

/// Rows written (inserted, updated, deleted) and transactions committed so far in the
/// PostgreSQL store's database; zeros on SQLite, which keeps no such counters.
fn store_writes(pg: Option<&PostgresCluster>) -> (f64, f64) {
    let Some(pg) = pg else {
        return (0.0, 0.0);
    };
    // The statistics reach pg_stat_database within a second of each transaction.
    std::thread::sleep(Duration::from_millis(1100));
    let out = Command::new("psql")
        .args([
            &pg.url(),
            "-Atc",
            "SELECT tup_inserted + tup_updated + tup_deleted, xact_commit \
             FROM pg_stat_database WHERE datname = current_database()",
        ])
        .output();
    let text = out
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let mut parts = text
        .trim()
        .split('|')
        .map(|p| p.parse::<f64>().unwrap_or(0.0));
    (parts.next().unwrap_or(0.0), parts.next().unwrap_or(0.0))
}

/// What the app spent, handled and wrote over a window of `secs`, from samples of
/// [CPU seconds, frames, rows written, transactions] at its ends.
fn window_figures(secs: f64, before: [f64; 4], after: [f64; 4]) -> Value {
    let delta = |i: usize| after[i] - before[i];
    json!({
        "secs": secs,
        "cpu_seconds": delta(0),
        "frames": delta(1),
        "rows_written": delta(2),
        "transactions": delta(3),
    })
}

/// The app's unit costs on PostgreSQL, for `cargo xtask bench --calibrate`: idle
/// sessions give the cost of a business frame, charging ones (less their frames) the cost
/// of a record.
pub fn calibrate(out: &Path) -> anyhow::Result<pylon_proto::api::capacity::AppCosts> {
    // Small enough that provisioning stays short: on the embedded registry every
    // operator action appends to the audit log, and the file is written whole each time.
    let args = BenchAppArgs {
        sessions: 3_000,
        commands: 20,
        charging: 500,
        hold: 20,
        ingest_rate: 0,
        unit_costs: true,
    };
    let result = run_backend(&args, "postgres", out)?;
    std::fs::write(
        out.join("calibration-app.json"),
        serde_json::to_string_pretty(&result)?,
    )?;
    let costs = &result["unit_costs"];
    let raw = |phase: &str, key: &str| costs[phase][key].as_f64().unwrap_or(0.0);
    // Each phase's figures less the baseline's (no pile connected) over the same time.
    let base_secs = raw("baseline", "secs").max(1.0);
    let net = |phase: &str, key: &str| {
        (raw(phase, key) - raw("baseline", key) / base_secs * raw(phase, "secs")).max(0.0)
    };
    // Idle piles send few frames: what they cost is mostly their upkeep (presence, checks),
    // per connected pile and second.
    let pile_secs = |phase: &str, piles: u64| piles as f64 * raw(phase, "secs");
    let upkeep = |key: &str| net("idle", key) / pile_secs("idle", args.sessions).max(1.0);
    // Charging piles' frames, the records among them, less their upkeep.
    let frames = raw("charging", "frames").max(1.0);
    let per_frame = |key: &str| {
        (net("charging", key) - upkeep(key) * pile_secs("charging", args.charging)).max(0.0)
            / frames
    };
    let records = (result["records_stored_per_sec"].as_f64().unwrap_or(0.0)
        * raw("charging", "secs"))
    .max(1.0);
    Ok(pylon_proto::api::capacity::AppCosts {
        backend: "postgres".into(),
        cpu_ms_per_pile_sec: upkeep("cpu_seconds") * 1000.0,
        cpu_ms_per_frame: per_frame("cpu_seconds") * 1000.0,
        row_writes_per_frame: per_frame("rows_written"),
        transactions_per_frame: per_frame("transactions"),
        frames_per_record: frames / records,
    })
}

/// Idle piles sending real-time status (0x13) fast: the business frames one instance
/// takes per second, its CPU per frame, and the most frames it held unacknowledged (the
/// edge's window waits on those).
fn ingest_phase(
    args: &BenchAppArgs,
    backend: &str,
    dir: &Path,
    edge_addr: &str,
    metrics: &str,
    app_pid: u32,
) -> anyhow::Result<Value> {
    if args.ingest_rate == 0 || args.sessions == 0 {
        return Ok(Value::Null);
    }
    let every = (args.sessions as f64 / args.ingest_rate as f64).max(0.01);
    eprintln!(
        "== {backend}: {} sessions sending 0x13 every {every:.2} s ({} offered per second), {} s",
        args.sessions, args.ingest_rate, args.hold
    );
    let fleet = Fleet::start(
        dir,
        "fleet-ingest",
        edge_addr,
        args.sessions,
        &["--realtime-secs", &format!("{every}")],
    )?;
    wait(
        "the ingesting sessions to log in",
        Duration::from_secs(120),
        || fleet.report()["connected"].as_u64() == Some(args.sessions),
    )?;
    std::thread::sleep(Duration::from_secs(3));
    let realtime = |m: &str| metric(m, "pylon_app_frames_total", "frame_type=\"0x13\"");
    let in_flight = |m: &str| metric(m, "pylon_app_uplinks_in_flight", "");
    let sent = || fleet.report()["realtime_sent"].as_u64().unwrap_or(0);
    let (f0, sent0, cpu0, t0) = (
        realtime(metrics),
        sent(),
        procs::cpu_seconds(app_pid),
        Instant::now(),
    );
    let mut most_in_flight: f64 = 0.0;
    let mut samples = Vec::new();
    while t0.elapsed() < Duration::from_secs(args.hold) {
        std::thread::sleep(Duration::from_millis(500));
        let now = in_flight(metrics);
        most_in_flight = most_in_flight.max(now);
        samples.push(now);
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let (f1, sent1, cpu1) = (realtime(metrics), sent(), procs::cpu_seconds(app_pid));
    let handled = f1 - f0;
    // The window grows if the second half of the samples holds more than the first.
    let half = samples.len() / 2;
    let mean = |s: &[f64]| s.iter().sum::<f64>() / s.len().max(1) as f64;
    Ok(json!({
        "sessions": args.sessions,
        "offered_per_sec": args.ingest_rate,
        "sent_per_sec": (sent1 - sent0) as f64 / elapsed,
        "frames_per_sec": handled / elapsed,
        "app_cpu_us_per_frame": if handled > 0.0 { (cpu1 - cpu0) * 1e6 / handled } else { 0.0 },
        "in_flight_max": most_in_flight,
        "in_flight_mean_first_half": mean(&samples[..half]),
        "in_flight_mean_second_half": mean(&samples[half..]),
    }))
}

/// One backend's figures.
pub(crate) fn run_backend(args: &BenchAppArgs, backend: &str, out: &Path) -> anyhow::Result<Value> {
    let dir = out.join(format!("app-bench-{backend}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let pg = match backend {
        "postgres" => Some(PostgresCluster::start()?),
        _ => None,
    };
    let (c_http, c_grpc) = (
        format!("127.0.0.1:{}", port()?),
        format!("127.0.0.1:{}", port()?),
    );
    let _control = Proc::spawn(
        "pylon-control",
        Command::new(procs::release_binary("pylon-control"))
            .args(["--replica-id", "bench", "--log", "warn", "--registry-file"])
            .arg(dir.join("registry.json"))
            .args(["--http-listen", &c_http, "--grpc-listen", &c_grpc])
            .args(["--admin-token", ADMIN, "--cluster-token", CLUSTER]),
        &dir.join("control.log"),
    )?;
    wait("the control plane", Duration::from_secs(20), || {
        ureq::get(&format!("http://{c_http}/readyz")).call().is_ok()
    })?;
    let (a_grpc, a_http) = (
        format!("127.0.0.1:{}", port()?),
        format!("127.0.0.1:{}", port()?),
    );
    let mut app_cmd = Command::new(procs::release_binary("pylon-app"));
    app_cmd
        .args(["--app-id", "bench-app", "--log", "warn"])
        .args(["--grpc-listen", &a_grpc, "--http-listen", &a_http])
        .args(["--control", &format!("http://{c_grpc}")])
        .args(["--admin-token", ADMIN, "--cluster-token", CLUSTER])
        .arg("--card-keys")
        .arg(dir.join("card-keys.toml"))
        .arg("--init-card-keys");
    match &pg {
        Some(pg) => app_cmd.args(["--store", "postgres", "--postgres-url", &pg.url()]),
        None => app_cmd
            .args(["--store", "sqlite", "--sqlite"])
            .arg(dir.join("app.db")),
    };
    let app = Proc::spawn("pylon-app", &mut app_cmd, &dir.join("app.log"))?;
    wait("the app service", Duration::from_secs(20), || {
        ureq::get(&format!("http://{a_http}/readyz")).call().is_ok()
    })?;
    let edge_addr = format!("127.0.0.1:{}", port()?);
    let _edge = Proc::spawn(
        "pylon-edge",
        Command::new(procs::release_binary("pylon-edge"))
            .args(["--edge-id", "bench-edge", "--executors", "1", "--app-login"])
            .args([
                "--tcp-listen",
                &edge_addr,
                "--admin-listen",
                &format!("127.0.0.1:{}", port()?),
            ])
            .args([
                "--control",
                &format!("http://{c_grpc}"),
                "--control-token",
                CLUSTER,
            ])
            .env("RUST_LOG", "warn"),
        &dir.join("edge.log"),
    )?;
    wait(
        "the shards to be owned and pushed",
        Duration::from_secs(30),
        || {
            get(&format!("http://{c_http}/v1/admin/status"))["shards_unowned"] == 0
                && std::net::TcpStream::connect(&edge_addr).is_ok()
        },
    )?;
    std::thread::sleep(Duration::from_secs(2));
    let piles = args.sessions.max(args.charging);
    for chunk in (0..piles).collect::<Vec<_>>().chunks(2000) {
        let list: Vec<Value> = chunk
            .iter()
            .map(|i| json!({"pile_no": format!("{:014}", PILE_BASE + i)}))
            .collect();
        ureq::post(&format!("http://{a_http}/v1/piles"))
            .set("authorization", &format!("Bearer {ADMIN}"))
            .send_json(Value::Array(list))
            .map_err(|e| anyhow::anyhow!("registering piles: {e}"))?;
    }
    // The charging piles' drivers and tariff: every record is priced and settled
    // against a wallet (the settlement is what the records phase measures).
    let api = format!("http://{a_http}");
    pylon_bench::accounts::station_with_tariff(
        &api,
        ADMIN,
        "bench",
        PILE_BASE..PILE_BASE + args.charging,
    )?;
    pylon_bench::accounts::provision(&api, ADMIN, PILE_BASE, args.charging, 100_000_000)?;

    // Command round trips with every session connected.
    eprintln!(
        "== {backend}: {} sessions, {} commands",
        args.sessions, args.commands
    );
    // The unit costs' windows (`bench --calibrate` only): each gives its length and what
    // the app spent, handled and wrote in it.
    let metrics = format!("http://{a_http}/metrics");
    let frames = |m: &str| metric(m, "pylon_app_frames_total", "");
    let sample = || {
        let (rows, transactions) = store_writes(pg.as_ref());
        [
            procs::cpu_seconds(app.pid()),
            frames(&metrics),
            rows,
            transactions,
        ]
    };
    let window = || -> Value {
        if !args.unit_costs {
            return Value::Null;
        }
        let (start, before) = (Instant::now(), sample());
        std::thread::sleep(Duration::from_secs(args.hold));
        window_figures(start.elapsed().as_secs_f64(), before, sample())
    };
    // What the app does with no pile connected (its periodic checks).
    let baseline = window();
    let fleet = Fleet::start(&dir, "fleet-idle", &edge_addr, args.sessions, &["--charge"])?;
    wait("every session to log in", Duration::from_secs(120), || {
        fleet.report()["connected"].as_u64() == Some(args.sessions)
    })?;
    // Every session idle: business frames (real-time status) only.
    let idle = window();
    let mut hist = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut failed = 0;
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(15))
        .build();
    for i in 0..u64::from(args.commands) {
        let pile = format!("{:014}", PILE_BASE + (i * 7919) % args.sessions);
        let t0 = Instant::now();
        let ok = agent
            .post(&format!("http://{a_http}/v1/piles/{pile}/commands"))
            .set("authorization", &format!("Bearer {ADMIN}"))
            .send_json(json!({"type": "TimeSync"}))
            .is_ok();
        if ok {
            hist.record(t0.elapsed().as_micros() as u64)?;
        } else {
            failed += 1;
        }
    }
    drop(fleet);
    let ms = |h: &hdrhistogram::Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let ingest = ingest_phase(args, backend, &dir, &edge_addr, &metrics, app.pid())?;

    // Records: every pile charges for a second, sends its record, waits for the
    // confirmation, and starts again a second later.
    eprintln!(
        "== {backend}: {} charging sessions, {} s",
        args.charging, args.hold
    );
    let fleet = Fleet::start(
        &dir,
        "fleet-charging",
        &edge_addr,
        args.charging,
        &[
            "--charge",
            "--card-start-secs",
            "1",
            "--charge-secs",
            "1",
            "--confirm-timeout-secs",
            "10",
        ],
    )?;
    wait(
        "the charging sessions to log in",
        Duration::from_secs(120),
        || fleet.report()["connected"].as_u64() == Some(args.charging),
    )?;
    std::thread::sleep(Duration::from_secs(5));
    let new = |m: &str| metric(m, "pylon_app_records_total", "result=\"new\"");
    let confirm_sum = |m: &str| metric(m, "pylon_app_confirm_seconds_sum", "");
    let confirm_count = |m: &str| metric(m, "pylon_app_confirm_seconds_count", "");
    let (r0, s0, c0) = (
        new(&metrics),
        confirm_sum(&metrics),
        confirm_count(&metrics),
    );
    let cpu0 = procs::cpu_seconds(app.pid());
    let charging0 = args.unit_costs.then(sample);
    let confirmed0 = fleet.report()["records_confirmed"].as_u64().unwrap_or(0);
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(args.hold));
    let elapsed = t0.elapsed().as_secs_f64();
    let (r1, s1, c1) = (
        new(&metrics),
        confirm_sum(&metrics),
        confirm_count(&metrics),
    );
    let cpu1 = procs::cpu_seconds(app.pid());
    let charging = match (charging0, args.unit_costs.then(sample)) {
        (Some(before), Some(after)) => window_figures(elapsed, before, after),
        _ => Value::Null,
    };
    let report = fleet.report();
    let confirmed1 = report["records_confirmed"].as_u64().unwrap_or(0);
    let stored = r1 - r0;
    Ok(json!({
        "backend": backend,
        "sessions_for_commands": args.sessions,
        "command_round_trip_ms": {
            "count": hist.len(), "failed": failed,
            "p50": ms(&hist, 0.5), "p99": ms(&hist, 0.99), "max": hist.max() as f64 / 1000.0,
        },
        "ingest": ingest,
        "charging_sessions": args.charging,
        "records_stored_per_sec": stored / elapsed,
        "records_confirmed_per_sec": (confirmed1 - confirmed0) as f64 / elapsed,
        "store_and_confirm_ms_mean": if c1 > c0 { (s1 - s0) / (c1 - c0) * 1000.0 } else { 0.0 },
        "app_cpu_ms_per_record": if stored > 0.0 { (cpu1 - cpu0) * 1000.0 / stored } else { 0.0 },
        "unit_costs": {
            "baseline": baseline,
            "idle": idle,
            "charging": charging,
        },
        "retransmits": report["record_retransmits"],
        "abandoned": report["records_abandoned"],
        "errors": report["errors"],
    }))
}

pub fn run(args: BenchAppArgs) -> anyhow::Result<()> {
    crate::system::prepare("bench-app", crate::system::FOR_ALL)?;
    procs::build_release()?;
    let out = procs::root().join("target/bench");
    std::fs::create_dir_all(&out)?;
    let mut results = Vec::new();
    for backend in ["sqlite", "postgres"] {
        let result = run_backend(&args, backend, &out)?;
        eprintln!("{result}");
        results.push(result);
    }
    let ratio = results[1]["records_stored_per_sec"].as_f64().unwrap_or(0.0)
        / results[0]["records_stored_per_sec"]
            .as_f64()
            .unwrap_or(1.0)
            .max(1.0);
    let mut md = String::from("## Charging business (records, commands)\n\n| figure | SQLite | PostgreSQL |\n|---|---|---|\n");
    let row = |name: &str, f: &dyn Fn(&Value) -> String| {
        format!("| {name} | {} | {} |\n", f(&results[0]), f(&results[1]))
    };
    md += &row("records stored per second", &|r| {
        format!("{:.0}", r["records_stored_per_sec"].as_f64().unwrap_or(0.0))
    });
    md += &row("records confirmed per second (fleet)", &|r| {
        format!(
            "{:.0}",
            r["records_confirmed_per_sec"].as_f64().unwrap_or(0.0)
        )
    });
    md += &row("store + confirm, mean (ms)", &|r| {
        format!(
            "{:.2}",
            r["store_and_confirm_ms_mean"].as_f64().unwrap_or(0.0)
        )
    });
    md += &row("app CPU per record (ms)", &|r| {
        format!("{:.3}", r["app_cpu_ms_per_record"].as_f64().unwrap_or(0.0))
    });
    md += &row("record retransmits / abandoned", &|r| {
        format!("{} / {}", r["retransmits"], r["abandoned"])
    });
    md += &row(
        &format!(
            "command round trip p50 / p99 / max (ms), {} sessions",
            args.sessions
        ),
        &|r| {
            let c = &r["command_round_trip_ms"];
            format!(
                "{} / {} / {} ({} failed)",
                c["p50"], c["p99"], c["max"], c["failed"]
            )
        },
    );
    if args.ingest_rate > 0 {
        let f = |r: &Value, k: &str| r["ingest"][k].as_f64().unwrap_or(0.0);
        md += &row(
            &format!(
                "real-time frames (0x13) per second, {} offered by {} sessions",
                args.ingest_rate, args.sessions
            ),
            &|r| {
                format!(
                    "{:.0} (the fleet sent {:.0})",
                    f(r, "frames_per_sec"),
                    f(r, "sent_per_sec")
                )
            },
        );
        md += &row("app CPU per real-time frame (µs)", &|r| {
            format!("{:.1}", f(r, "app_cpu_us_per_frame"))
        });
        md += &row(
            "frames unacknowledged by the app: most / mean 1st half / 2nd half",
            &|r| {
                format!(
                    "{:.0} / {:.0} / {:.0}",
                    f(r, "in_flight_max"),
                    f(r, "in_flight_mean_first_half"),
                    f(r, "in_flight_mean_second_half")
                )
            },
        );
    }
    md += &format!("\nPostgreSQL / SQLite records per second: {ratio:.2}\n");
    std::fs::write(out.join("app-latest.md"), &md)?;
    std::fs::write(
        out.join("app-latest.json"),
        serde_json::to_string_pretty(&results)?,
    )?;
    println!("{md}");
    Ok(())
}
