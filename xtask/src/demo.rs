//! `cargo xtask demo`: the control plane (embedded registry), two edges that register and
//! follow routes, one app instance on SQLite, and simulated fleets (TCP and TLS) that ask
//! dispatch where to connect and charge continuously (start, real-time data, stop, record).

use std::path::Path;
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
    /// First edge's plain TCP port; its TLS port is the next one, and the second edge
    /// uses the two after those.
    #[arg(long, default_value_t = 8768)]
    tcp_port: u16,
    /// First edge's admin/metrics port; the second edge uses the next one.
    #[arg(long, default_value_t = 9100)]
    admin_port: u16,
    /// Control-plane HTTP port (dispatch, admin API, metrics); gRPC is the next one.
    #[arg(long, default_value_t = 7400)]
    control_port: u16,
    /// App-service gRPC port (business streams); its operator API is at +10.
    #[arg(long, default_value_t = 7500)]
    app_port: u16,
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

const ADMIN_TOKEN: &str = "demo-admin-token";
const CLUSTER_TOKEN: &str = "demo-cluster-token";
/// The console's demo login (an operator: it may drain edges and handle alarms; an
/// admin user would retire the bootstrap token the demo prints).
const CONSOLE_USER: &str = "demo";
const CONSOLE_PASSWORD: &str = "demo-password-1";
/// Every this-many-th demo pile misbehaves (faults, silences, flapping, abnormal stops,
/// unconfirmed starts, lost records).
const TROUBLED_EVERY: u64 = 8;
/// How often the demo starts and stops a troubled pile's charge from the platform.
const TROUBLE_EVERY: Duration = Duration::from_secs(40);

pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    crate::system::prepare("demo", crate::system::FOR_BUILD)?;
    procs::build_release()?;
    let dir = procs::root().join("target/demo");
    // Every run starts afresh: a store or registry left by an earlier run would refuse
    // the demo's set-up (its station and tariff exist already).
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(anyhow::anyhow!("clearing {}: {e}", dir.display())),
    }
    let (ca, certs) = procs::edge_certs(&dir.join("certs"))?;
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    let control_http = format!("127.0.0.1:{}", args.control_port);
    let control_grpc = format!("127.0.0.1:{}", args.control_port + 1);
    let start_control = |append: bool| -> anyhow::Result<Proc> {
        let log = dir.join("control.log");
        let mut proc = Proc::spawn_logging(
            "pylon-control",
            Command::new(procs::release_binary("pylon-control"))
                .args(["--replica-id", "demo-control", "--registry", "embedded"])
                .arg("--registry-file")
                .arg(dir.join("registry.json"))
                .args([
                    "--http-listen",
                    &control_http,
                    "--grpc-listen",
                    &control_grpc,
                ])
                .args([
                    "--admin-token",
                    ADMIN_TOKEN,
                    "--cluster-token",
                    CLUSTER_TOKEN,
                ]),
            &log,
            append,
        )?;
        wait_ready(&mut proc, &format!("http://{control_http}/readyz"), &log)?;
        Ok(proc)
    };
    let first_control = start_control(false)?;
    ureq::post(&format!("http://{control_http}/v1/admin/users"))
        .set("authorization", &format!("Bearer {ADMIN_TOKEN}"))
        .send_json(serde_json::json!({
            "name": CONSOLE_USER, "role": "operator", "password": CONSOLE_PASSWORD
        }))
        .map_err(|e| anyhow::anyhow!("creating the console's demo user: {e}"))?;
    println!(
        "Console: http://{control_http}/console/  (user {CONSOLE_USER}, password {CONSOLE_PASSWORD})"
    );

    let app_grpc = format!("127.0.0.1:{}", args.app_port);
    let app_http = format!("127.0.0.1:{}", args.app_port + 10);
    // A record overdue after 2 minutes (30 in production): the demo shows the alarm soon.
    let app_config = dir.join("app.toml");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(&app_config, "[alarms]\nrecord_wait_minutes = 2\n")?;
    let start_app = |append: bool| -> anyhow::Result<Proc> {
        let log = dir.join("app.log");
        let mut proc = Proc::spawn_logging(
            "pylon-app",
            Command::new(procs::release_binary("pylon-app"))
                .args(["--app-id", "demo-app", "--store", "sqlite"])
                .arg("--config")
                .arg(&app_config)
                .arg("--sqlite")
                .arg(dir.join("app.db"))
                .args(["--grpc-listen", &app_grpc, "--http-listen", &app_http])
                .args(["--control", &format!("http://{control_grpc}")])
                .args([
                    "--admin-token",
                    ADMIN_TOKEN,
                    "--cluster-token",
                    CLUSTER_TOKEN,
                ])
                .arg("--card-keys")
                .arg(dir.join("card-keys.toml"))
                .arg("--init-card-keys"),
            &log,
            append,
        )?;
        wait_ready(&mut proc, &format!("http://{app_http}/readyz"), &log)?;
        Ok(proc)
    };
    let first_app = start_app(false)?;
    // The misbehaving piles whose starts the demo asks for, and their drivers' accounts.
    let mut troubled: Vec<(String, i64)> = Vec::new();
    // The pile registry: the fleets' piles may log in.
    for base in [10_000_000_000_000u64, 20_000_000_000_000] {
        let piles: Vec<serde_json::Value> = (0..args.chargers)
            .map(|i| serde_json::json!({"pile_no": format!("{:014}", base + i)}))
            .collect();
        ureq::post(&format!("http://{app_http}/v1/piles"))
            .set("authorization", &format!("Bearer {ADMIN_TOKEN}"))
            .send_json(serde_json::Value::Array(piles))
            .map_err(|e| anyhow::anyhow!("registering the demo piles: {e}"))?;
        // A station with a time-of-use tariff, and a driver with a card and money for
        // each pile: starts are authorised and records settled against real wallets.
        let api = format!("http://{app_http}");
        let piles = base..base + args.chargers;
        let name = format!("Demo {base}");
        let station = pylon_bench::accounts::station_with_tariff(&api, ADMIN_TOKEN, &name, piles)?;
        // On the console's map: one station in Shanghai, the other in Hangzhou.
        let (address, latitude, longitude) = if base == 10_000_000_000_000 {
            ("1 Century Avenue, Shanghai", 31.2304, 121.4737)
        } else {
            ("18 West Lake Road, Hangzhou", 30.2741, 120.1551)
        };
        ureq::put(&format!("{api}/v1/stations/{station}"))
            .set("authorization", &format!("Bearer {ADMIN_TOKEN}"))
            .send_json(serde_json::json!({
                "name": name, "address": address, "latitude": latitude, "longitude": longitude
            }))
            .map_err(|e| anyhow::anyhow!("placing the demo station: {e}"))?;
        let accounts =
            pylon_bench::accounts::provision(&api, ADMIN_TOKEN, base, args.chargers, 100_000)?;
        // Half the troubled piles get remote starts they never confirm; the other half
        // have their charges stopped and lose the record (which then blocks their gun:
        // the platform starts no charge on a gun with an unsettled one).
        troubled.extend(
            accounts
                .into_iter()
                .enumerate()
                .filter(|(i, _)| *i as u64 % (2 * TROUBLED_EVERY) == TROUBLED_EVERY)
                .map(|(i, account)| (format!("{:014}", base + i as u64), account)),
        );
    }

    let start_edge = |i: usize, append: bool| -> anyhow::Result<Proc> {
        let id = format!("demo-edge-{}", i + 1);
        let tcp = format!("127.0.0.1:{}", args.tcp_port + 2 * i as u16);
        let tls = format!("127.0.0.1:{}", args.tcp_port + 2 * i as u16 + 1);
        let admin = format!("127.0.0.1:{}", args.admin_port + i as u16);
        let log = dir.join(format!("{id}.log"));
        let mut cmd = Command::new(procs::release_binary("pylon-edge"));
        cmd.args(["--edge-id", &id, "--executors", "1", "--app-login"])
            .args(["--drain-grace", "2", "--drain-period", "10"])
            .args([
                "--tcp-listen",
                &tcp,
                "--tls-listen",
                &tls,
                "--admin-listen",
                &admin,
            ])
            .arg("--tls-cert")
            .arg(&certs.cert)
            .arg("--tls-key")
            .arg(&certs.key)
            .args(["--control", &format!("http://{control_grpc}")])
            .args(["--control-token", CLUSTER_TOKEN]);
        let mut edge = Proc::spawn_logging(&id, &mut cmd, &log, append)?;
        wait_ready(&mut edge, &format!("http://{admin}/readyz"), &log)?;
        Ok(edge)
    };
    let mut edges = Vec::new();
    for i in 0..2 {
        let id = format!("demo-edge-{}", i + 1);
        let first = start_edge(i, false)?;
        edges.push((
            format!("127.0.0.1:{}", args.admin_port + i as u16),
            Service::new(
                &id,
                "its chargers reconnect through dispatch to the other edge",
                first,
                Box::new(move |append| start_edge(i, append)),
            ),
        ));
    }
    let mut control = Service::new(
        "pylon-control",
        "chargers keep charging (edges and the app keep their routes and streams); dispatch, the console and the operator API wait",
        first_control,
        Box::new(start_control),
    );
    let mut app = Service::new(
        "pylon-app",
        "chargers stay connected to their edges, which answer heartbeats and hold business frames (records) unacknowledged until it is back",
        first_app,
        Box::new(start_app),
    );

    let dispatch = format!("http://{control_http}");
    let fleet = |name: &str, tls: bool, base: u64, sources: &str| -> anyhow::Result<Proc> {
        let mut cmd = Command::new(procs::release_binary("pylon-fleet"));
        cmd.args(["--dispatch", &dispatch])
            .args(["--sessions", &args.chargers.to_string(), "--ramp", "100"])
            .args(["--pile-base", &base.to_string(), "--source-ips", sources])
            .args(["--progress-secs", "0"])
            // Every charger charges now and then: a card start, 30 s of charging with
            // real-time data, the transaction record, confirmed once stored.
            .args(["--charge", "--card-start-secs", "60", "--charge-secs", "30"])
            // Some piles fault, go silent, flap and end charges abnormally: every kind
            // of pile alarm shows up within a few minutes.
            .args(["--troubled-every", &TROUBLED_EVERY.to_string()])
            .args(["--trouble-calm-secs", "20"]);
        if tls {
            cmd.arg("--tls-ca").arg(&ca);
        }
        Proc::spawn(name, &mut cmd, &dir.join(format!("{name}.log")))
    };
    let _tcp = fleet(
        "fleet-tcp",
        false,
        10_000_000_000_000,
        "127.2.0.1-127.2.0.10",
    )?;
    let _tls = fleet(
        "fleet-tls",
        true,
        20_000_000_000_000,
        "127.3.0.1-127.3.0.10",
    )?;

    println!("Pylon demo");
    println!("  console: http://{control_http}/console/ (user {CONSOLE_USER}, password {CONSOLE_PASSWORD})");
    println!("  control plane: http://{control_http} (dispatch: /v1/entry?pile=..., metrics: /metrics), gRPC {control_grpc}");
    for (admin, edge) in &edges {
        println!("  {}: metrics at http://{admin}/metrics", edge.name);
    }
    println!(
        "  {} simulated chargers per transport ask dispatch for their edge; logs in {}",
        args.chargers,
        dir.display()
    );
    println!("Try, in another shell:");
    println!("  export PYLON_ENDPOINT=http://{control_http} PYLON_TOKEN={ADMIN_TOKEN}");
    println!("  cargo run -q -p pylon-ctl --bin pylonctl -- status");
    println!("  cargo run -q -p pylon-ctl --bin pylonctl -- edges drain demo-edge-1   # watch the chargers move");
    println!("  cargo run -q -p pylon-ctl --bin pylonctl -- charge open        # the app's API, through the control plane");
    println!("  app operator API: http://{app_http}/v1/stats, /v1/piles/10000000000000 (bearer {ADMIN_TOKEN})");
    let pids = |services: &[&Service]| {
        services
            .iter()
            .map(|s| {
                format!(
                    "{} {}",
                    s.name,
                    s.pid().map_or("-".into(), |p| p.to_string())
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "  kill -9 any of them ({}) and watch what happens; the demo starts it again after {} s",
        pids(&[&control, &app, &edges[0].1, &edges[1].1]),
        RESTART_AFTER.as_secs()
    );
    println!("Ctrl-C stops.");
    let start = Instant::now();
    let mut trouble_at = Instant::now() + Duration::from_secs(30);
    let mut next_troubled = 0usize;
    while !STOP.load(Ordering::Relaxed)
        && (args.duration == 0 || start.elapsed().as_secs() < args.duration)
    {
        std::thread::sleep(Duration::from_secs(2));
        // Ctrl-C reaches the whole process group: the services may be stopping already.
        if STOP.load(Ordering::Relaxed) {
            break;
        }
        let status = get_json_with_token(&format!("http://{control_http}/v1/admin/status"));
        let stats = get_json_with_token(&format!("http://{app_http}/v1/stats"));
        let records = stats["records"].as_u64();
        // Each service that died is started again after a while, and said to have
        // recovered once what it does is seen working.
        control.tend(|| {
            (status["edges_live"] == 2 && status["apps_live"] == 1).then(|| {
                "registry reloaded from its snapshot and journal; both edges and the app registered again; dispatch and the console answer".to_owned()
            })
        });
        // The app's records when it first answered after its restart: it has recovered
        // once more are stored.
        if app.recovering.is_some() && app.records_at_restart.is_none() {
            app.records_at_restart = records;
        }
        let baseline = app.records_at_restart;
        app.tend(|| {
            (records? > baseline?).then(|| {
                format!(
                    "{} piles online again, records confirmed again ({} stored)",
                    stats["piles_online"],
                    records.unwrap_or(0)
                )
            })
        });
        let mut line = format!("[{:>4}s]", start.elapsed().as_secs());
        for (admin, edge) in edges.iter_mut() {
            let live = status["edges_live"] == 2;
            edge.tend(|| live.then(|| "registered again; it takes new chargers".to_owned()));
            if !edge.is_up() {
                line.push_str(&format!(" | {} DOWN", edge.name));
                continue;
            }
            let s = get_json_with_token(&format!("http://{admin}/v1/status"));
            line.push_str(&format!(
                " | {} {}: tcp {} tls {} (routes v{})",
                edge.name,
                s["state"].as_str().unwrap_or("?"),
                s["sessions"]["tcp"],
                s["sessions"]["tls"],
                s["route_version"]
            ));
        }
        if Instant::now() >= trouble_at && !troubled.is_empty() && app.is_up() {
            trouble_at = Instant::now() + TROUBLE_EVERY;
            let (pile, account) = &troubled[next_troubled % troubled.len()];
            next_troubled += 1;
            make_trouble(&app_http, pile, *account);
        }
        if control.is_up() {
            line.push_str(&format!(
                " | control: {} edges live, {} draining",
                status["edges_live"], status["edges_draining"]
            ));
        } else {
            line.push_str(" | control DOWN");
        }
        if app.is_up() {
            line.push_str(&format!(
                " | app: {} piles online, {} records stored",
                stats["piles_online"], stats["records"]
            ));
        } else {
            line.push_str(" | app DOWN");
        }
        println!("{line}");
    }
    println!("stopping");
    for (_, edge) in &mut edges {
        edge.stop();
    }
    app.stop();
    control.stop();
    Ok(())
}

/// How long a dead service stays down before the demo starts it again.
const RESTART_AFTER: Duration = Duration::from_secs(5);

/// One of the demo's processes, which may die (a visitor's `kill -9`) and is started again
/// after [`RESTART_AFTER`], as systemd would; the demo says what its death means and when
/// what it does works again.
struct Service<'a> {
    name: String,
    /// What its death means for the chargers.
    when_down: &'static str,
    start: Box<dyn Fn(bool) -> anyhow::Result<Proc> + 'a>,
    /// None while it is down.
    proc: Option<Proc>,
    down_since: Option<Instant>,
    /// Restarted then, and not yet seen working.
    recovering: Option<Instant>,
    /// The app's stored records when it was restarted (its recovery is more of them).
    records_at_restart: Option<u64>,
}

impl<'a> Service<'a> {
    fn new(
        name: &str,
        when_down: &'static str,
        first: Proc,
        start: Box<dyn Fn(bool) -> anyhow::Result<Proc> + 'a>,
    ) -> Service<'a> {
        Service {
            name: name.to_owned(),
            when_down,
            start,
            proc: Some(first),
            down_since: None,
            recovering: None,
            records_at_restart: None,
        }
    }

    fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(Proc::pid)
    }

    fn is_up(&self) -> bool {
        self.proc.is_some()
    }

    /// Notices a death, restarts when it is time, and says when `working` (what the
    /// service does, seen from outside) reports it recovered.
    fn tend(&mut self, working: impl FnOnce() -> Option<String>) {
        if let Some(proc) = self.proc.as_mut() {
            if let Ok(Some(status)) = proc.child.try_wait() {
                println!(
                    ">>> {} is DOWN ({status}): {}; restarting it in {} s",
                    self.name,
                    self.when_down,
                    RESTART_AFTER.as_secs()
                );
                self.proc = None;
                self.down_since = Some(Instant::now());
                self.recovering = None;
                return;
            }
        }
        if self
            .down_since
            .is_some_and(|t| t.elapsed() >= RESTART_AFTER)
        {
            match (self.start)(true) {
                Ok(p) => {
                    println!(">>> {} restarted (pid {})", self.name, p.pid());
                    self.proc = Some(p);
                    self.down_since = None;
                    self.recovering = Some(Instant::now());
                    self.records_at_restart = None;
                }
                Err(e) => {
                    println!(">>> {} did not restart: {e:#}; trying again", self.name);
                    self.down_since = Some(Instant::now());
                }
            }
            return;
        }
        if let Some(since) = self.recovering {
            if let Some(what) = working() {
                println!(
                    ">>> {} recovered {:.1} s after its restart: {what}",
                    self.name,
                    since.elapsed().as_secs_f64()
                );
                self.recovering = None;
            }
        }
    }

    fn stop(&mut self) {
        if let Some(p) = self.proc.as_mut() {
            p.terminate(Duration::from_secs(5));
        }
    }
}

fn wait_ready(proc: &mut Proc, url: &str, log: &Path) -> anyhow::Result<()> {
    for _ in 0..100 {
        if !proc.is_running() {
            break;
        }
        if ureq::get(url).call().is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    anyhow::bail!("{} did not start; see {}", proc.name, log.display())
}

/// A remote start a troubled pile never confirms (`start_unconfirmed` after 90 s), and a
/// remote stop of a troubled pile's charge whose record never comes (`record_missing`).
/// Refusals (a busy gun, no charge to stop) change nothing: the demo tries again later.
fn make_trouble(app_http: &str, pile: &str, account: i64) {
    // Answers do not matter here: a refusal is tried again later.
    let post = |path: &str, body: serde_json::Value| {
        let _ = ureq::post(&format!("http://{app_http}{path}"))
            .set("authorization", &format!("Bearer {ADMIN_TOKEN}"))
            .send_json(body);
    };
    post(
        &format!("/v1/accounts/{account}/charge"),
        serde_json::json!({ "pile": pile }),
    );
    let open = get_json_with_token(&format!("http://{app_http}/v1/orders"));
    let charging = open.as_array().and_then(|orders| {
        orders.iter().find(|o| {
            o["state"] == "charging"
                && o["pile_no"]
                    .as_str()
                    .and_then(|p| p.parse::<u64>().ok())
                    .is_some_and(|p| p % (2 * TROUBLED_EVERY) == 0)
        })
    });
    if let Some(trade) = charging.and_then(|o| o["trade_no"].as_str()) {
        post(&format!("/v1/orders/{trade}/stop"), serde_json::json!({}));
    }
}

fn get_json_with_token(url: &str) -> serde_json::Value {
    ureq::get(url)
        .set("authorization", &format!("Bearer {ADMIN_TOKEN}"))
        .call()
        .ok()
        .and_then(|r| r.into_json().ok())
        .unwrap_or_default()
}
