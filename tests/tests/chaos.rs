//! The chaos bench (`cargo xtask chaos`; ignored by `cargo xtask test`): the whole system —
//! three etcd members, two control replicas, three PostgreSQL servers under Patroni, two
//! app instances, three edges, and charging fleets over TCP and TLS — loses one process
//! at a time, killed (SIGKILL) or frozen (SIGSTOP), with recovery in between; then the
//! restore drill (a backup under load, the store's tables dropped, the backup restored to
//! the moment before, charging resumed). For each fault it measures how long until every charger is online and charging again, the
//! longest stretch with no control replica answering dispatch, frames resent, orders
//! stuck, and records lost or stored twice (every record a fleet saw confirmed, compared
//! with the store). Markdown and JSON under `target/chaos/` (or `PYLON_CHAOS_OUT`).
//!
//! Processes run under a supervisor that starts them again when they exit (systemd's
//! `Restart=always`); etcd and PostgreSQL members are started again by the bench after
//! their fault is measured. A frozen process is thawed after `FREEZE`.
//!
//! Settings: `PYLON_CHAOS_SESSIONS` (chargers in all, a quarter over TLS; default 400);
//! `PYLON_CHAOS_ONLY` (comma-separated words: only the faults whose names hold one, such
//! as `edge` or `restore`).
//! The run fails when a record is lost or stored twice; the time targets are reported.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pylon_bench::patroni::PatroniCluster;
use pylon_tests::certs::TestCerts;
use pylon_tests::control::{app_login_edge_flags, Backend, ADMIN_TOKEN, CLUSTER_TOKEN};
use pylon_tests::etcd::EtcdCluster;
use pylon_tests::fleet::{ChargingFleet, FleetOptions, Reach};
use pylon_tests::platform::runtime;
use pylon_tests::supervised::Supervised;
use pylon_tests::{binary, free_port, http, local, pylonctl, wait_for};
use serde_json::{json, Value};

const FIRST_PILE: u64 = 32_010_740_000_000;
/// How long a frozen process stays frozen.
const FREEZE: Duration = Duration::from_secs(10);
/// How long a fault's recovery is watched before it counts as not recovered.
const WATCH: Duration = Duration::from_secs(90);
const CHARGE_SECS: u32 = 3;
const CONFIRM_TIMEOUT_SECS: u32 = 5;
/// Charges started a second by all the fleets together, about: what this 2-core machine's
/// Patroni cluster keeps up with.
const CHARGES_PER_SEC: f64 = 250.0;

/// How long an idle charger waits before its next charge, so that `sessions` chargers
/// start about `CHARGES_PER_SEC` charges a second (a charger's cycle: idle, charging,
/// its record confirmed), and 1 s at least.
fn idle_secs(sessions: u64) -> f64 {
    let cycle = sessions as f64 / CHARGES_PER_SEC;
    (cycle - f64::from(CHARGE_SECS)).max(1.0)
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Target {
    Edge,
    App,
    ControlLeader,
    EtcdLeader,
    PostgresPrimary,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum How {
    Kill,
    Freeze,
}

struct Platform {
    etcd: EtcdCluster,
    pg: PatroniCluster,
    controls: Vec<(Supervised, SocketAddr)>,
    apps: Vec<Supervised>,
    /// Each edge and its admin API.
    edges: Vec<(Supervised, SocketAddr)>,
    fleets: Vec<ChargingFleet>,
    sessions: u64,
    /// The run's folder (settings, logs, backup repositories).
    dir: PathBuf,
    _certs: TestCerts,
}

fn supervise(dir: &Path, name: &str, program: &str, args: Vec<String>, log: &str) -> Supervised {
    let env = [("RUST_LOG", log)];
    Supervised::start(dir, name, &binary(program), &args, &env)
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| (*a).to_owned()).collect()
}

impl Platform {
    fn start(dir: &Path, sessions: u64) -> Platform {
        let etcd = runtime().block_on(EtcdCluster::start(3)).expect("etcd");
        let pg = PatroniCluster::start_archiving(&etcd.endpoints(), 3).expect("Patroni");
        let certs = TestCerts::generate(dir).expect("certs");
        let mut controls = Vec::new();
        let mut grpc = Vec::new();
        for id in ["c1", "c2"] {
            let (http_addr, grpc_addr) = (local(free_port()), local(free_port()));
            let args = pylon_tests::control::args(
                id,
                http_addr,
                grpc_addr,
                &Backend::Etcd(etcd.endpoints()),
            );
            let s = supervise(dir, id, "pylon-control", args, "info");
            controls.push((s, http_addr));
            grpc.push(format!("http://{grpc_addr}"));
        }
        let keys = dir.join("card-keys.toml");
        pylon_app::revenue::vault::Vault::create_file(&keys).expect("card keys");
        let apps = ["app-1", "app-2"]
            .iter()
            .map(|id| {
                let args = strings(&[
                    "--app-id",
                    id,
                    "--grpc-listen",
                    &local(free_port()).to_string(),
                    "--http-listen",
                    &local(free_port()).to_string(),
                    "--admin-token",
                    ADMIN_TOKEN,
                    "--cluster-token",
                    CLUSTER_TOKEN,
                    "--lease-ttl",
                    "4",
                    "--control",
                    &grpc.join(","),
                    "--store",
                    "postgres",
                    "--postgres-url",
                    &pg.url(),
                    "--card-keys",
                    &keys.display().to_string(),
                ]);
                supervise(dir, id, "pylon-app", args, "info")
            })
            .collect();
        let edges = ["e1", "e2", "e3"]
            .iter()
            .map(|id| {
                let admin = local(free_port());
                let mut args = strings(&[
                    "--tcp-listen",
                    &local(free_port()).to_string(),
                    "--tls-listen",
                    &local(free_port()).to_string(),
                    "--admin-listen",
                    &admin.to_string(),
                    "--executors",
                    "1",
                    "--tls-cert",
                    &certs.ecdsa.cert.display().to_string(),
                    "--tls-key",
                    &certs.ecdsa.key.display().to_string(),
                ]);
                args.extend(app_login_edge_flags(id, &grpc));
                (supervise(dir, id, "pylon-edge", args, "info"), admin)
            })
            .collect();
        let mut platform = Platform {
            etcd,
            pg,
            controls,
            apps,
            edges,
            fleets: Vec::new(),
            sessions,
            dir: dir.to_owned(),
            _certs: certs,
        };
        wait_for(
            "3 edges and 2 app instances",
            Duration::from_secs(60),
            || {
                let s = platform.status()?;
                (s["edges_live"] == 3 && s["apps_live"] == 2 && s["shards_unowned"] == 0)
                    .then_some(())
            },
        );
        let control_url = format!("http://{}", platform.controls[0].1);
        let piles: Vec<Value> = (0..sessions)
            .map(|n| json!({"pile_no": format!("{:014}", FIRST_PILE + n)}))
            .collect();
        let (code, body) =
            http::post_json(platform.controls[0].1, "/v1/piles", Value::Array(piles));
        assert_eq!(code, 200, "{body}");
        pylon_bench::accounts::provision(
            &control_url,
            ADMIN_TOKEN,
            FIRST_PILE,
            sessions,
            1_000_000_000,
        )
        .expect("accounts for the fleets");
        let dispatch: Vec<String> = platform
            .controls
            .iter()
            .map(|(_, a)| format!("http://{a}"))
            .collect();
        let dispatch = dispatch.join(",");
        let tls = sessions / 4;
        let ca = platform._certs.ca.clone();
        for (name, first, count, ca) in [
            ("fleet-tcp", FIRST_PILE, sessions - tls, None),
            (
                "fleet-tls",
                FIRST_PILE + sessions - tls,
                tls,
                Some(ca.as_path()),
            ),
        ] {
            platform.fleets.push(ChargingFleet::start_with(
                dir,
                FleetOptions {
                    name,
                    reach: Reach::Dispatch(&dispatch),
                    tls_ca: ca,
                    first_pile: first,
                    sessions: count,
                    charge_secs: CHARGE_SECS,
                    idle_secs: idle_secs(sessions),
                    confirm_timeout_secs: CONFIRM_TIMEOUT_SECS,
                    ramp: 200,
                },
            ));
        }
        platform.wait_online(Duration::from_secs(120));
        platform
    }

    /// The control plane's status from the first replica that answers.
    fn status(&self) -> Option<Value> {
        self.controls.iter().find_map(|(_, addr)| {
            let (code, body) =
                http::call_as(*addr, "GET", "/v1/admin/status", None, Some(ADMIN_TOKEN));
            (code == 200).then_some(body)
        })
    }

    /// Whether any replica answers dispatch within 300 ms.
    fn dispatch_answers(&self) -> bool {
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_millis(300))
            .build();
        self.controls.iter().any(|(_, addr)| {
            agent
                .get(&format!(
                    "http://{addr}/v1/entry?pile={FIRST_PILE:014}&transport=tcp"
                ))
                .call()
                .is_ok()
        })
    }

    fn reports(&self) -> Vec<Value> {
        self.fleets.iter().map(ChargingFleet::report).collect()
    }

    fn sum(&self, field: &str) -> u64 {
        self.reports()
            .iter()
            .map(|r| r[field].as_u64().unwrap_or(0))
            .sum()
    }

    fn connected(&self) -> i64 {
        self.reports()
            .iter()
            .map(|r| r["connected"].as_i64().unwrap_or(0))
            .sum()
    }

    fn wait_online(&self, limit: Duration) {
        let start = Instant::now();
        while self.connected() != self.sessions as i64 {
            if start.elapsed() > limit {
                let fleets: Vec<String> = self
                    .reports()
                    .iter()
                    .map(|r| {
                        format!(
                            "connected {} of {} set-ups, errors {}",
                            r["connected"], r["setups"], r["errors"]
                        )
                    })
                    .collect();
                panic!(
                    "not every charger online within {limit:?}: {}\nedges: {:?}\n{}",
                    fleets.join("; "),
                    (0..self.edges.len())
                        .map(|i| self.edge_sessions(i))
                        .collect::<Vec<_>>(),
                    self.status().unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The pid of the control replica that leads.
    fn control_leader(&self) -> Option<usize> {
        let status = self.status()?;
        let leader = status["leader"].as_str()?.to_owned();
        ["c1", "c2"].iter().position(|id| *id == leader)
    }

    /// The edge holding the most chargers now, by its own count (chargers stay where
    /// they reconnected).
    fn busiest_edge(&self) -> usize {
        (0..self.edges.len())
            .max_by_key(|&i| self.edge_sessions(i))
            .unwrap_or(0)
    }

    /// The chargers edge `i` holds, by its own count.
    fn edge_sessions(&self, i: usize) -> u64 {
        let (_, s) = http::call_as(
            self.edges[i].1,
            "GET",
            "/v1/status",
            None,
            Some(ADMIN_TOKEN),
        );
        s["sessions"]["tcp"].as_u64().unwrap_or(0) + s["sessions"]["tls"].as_u64().unwrap_or(0)
    }

    fn supervised(&self, target: Target) -> Option<&Supervised> {
        match target {
            Target::Edge => self.edges.get(self.busiest_edge()).map(|(s, _)| s),
            Target::App => self.apps.first(),
            Target::ControlLeader => self.control_leader().map(|i| &self.controls[i].0),
            _ => None,
        }
    }

    /// Every record a fleet saw confirmed, and what the store holds.
    fn records(&self) -> (Vec<String>, pylon_tests::records::StoredRecords) {
        let confirmed: Vec<String> = self
            .fleets
            .iter()
            .flat_map(ChargingFleet::confirmed_trades)
            .collect();
        (confirmed, pylon_tests::records::postgres(&self.pg.url()))
    }

    /// Pylon's backup settings for the platform (written afresh: pgBackRest backs up from
    /// the member that leads now): the registry from etcd, the store through pgBackRest,
    /// the card key file, two repositories.
    fn backup_config(&self) -> PathBuf {
        let dir = &self.dir;
        let key = dir.join("backup.key");
        if !key.exists() {
            let (ok, text) = pylonctl(&["backup", "keygen", "--out", &key.display().to_string()]);
            assert!(ok, "backup keygen: {text}");
        }
        for repo in ["repo-a", "repo-b"] {
            std::fs::create_dir_all(dir.join(repo)).expect("a repository folder");
        }
        let leader = self.pg.leader().expect("a PostgreSQL primary");
        let pgbackrest = self
            .pg
            .pgbackrest_config(leader)
            .expect("the cluster archives");
        let endpoints: Vec<String> = self
            .etcd
            .endpoints()
            .iter()
            .map(|e| format!("{e:?}"))
            .collect();
        // As root, pgBackRest runs as PostgreSQL's user, who owns its repositories.
        let user = if self.pg.owner().is_some() {
            "user = \"postgres\"\n"
        } else {
            ""
        };
        let path = dir.join("backup.toml");
        std::fs::write(
            &path,
            format!(
                "key_file = \"{key}\"\nfiles = [\"{keys}\"]\n\n[registry]\netcd = [{endpoints}]\n\n\
                 [store.pgbackrest]\nstanza = \"{stanza}\"\nconfig = \"{pgbackrest}\"\nrepos = [1, 2]\n{user}\n\
                 [[repository]]\nname = \"repo-a\"\npath = \"{a}\"\n\n\
                 [[repository]]\nname = \"repo-b\"\npath = \"{b}\"\n",
                key = key.display(),
                keys = dir.join("card-keys.toml").display(),
                endpoints = endpoints.join(", "),
                stanza = pylon_bench::patroni::archive::STANZA,
                pgbackrest = pgbackrest.display(),
                a = dir.join("repo-a").display(),
                b = dir.join("repo-b").display(),
            ),
        )
        .expect("backup.toml");
        path
    }

    /// Open orders not touched for a minute: charges the platform lost track of.
    fn stuck_orders(&self) -> i64 {
        let url = self.pg.url();
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        runtime().block_on(async {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .expect("connecting to the store");
            tokio::spawn(connection);
            client
                .query_one(
                    "SELECT count(*) FROM orders
                     WHERE state IN ('starting', 'charging', 'stopping') AND updated_at < $1",
                    &[&(now_ms - 60_000)],
                )
                .await
                .map(|r| r.get::<_, i64>(0))
                .unwrap_or(-1)
        })
    }
}

fn signal(pid: Option<i32>, sig: libc::c_int) {
    if let Some(pid) = pid {
        // SAFETY: kill(2) has no memory effects.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// What ends a fault: thawing a frozen process, or starting a killed member again.
type Undo = Box<dyn Fn(&mut Platform)>;

/// A fault as injected: what was hit, and what ends it.
struct Injected {
    what: String,
    /// Thaws a frozen process, `FREEZE` after the fault.
    thaw: Option<Undo>,
    /// Starts a killed member again, once recovery is measured.
    revive: Option<Undo>,
}

/// One fault: injected, watched until the platform is whole again, and measured.
fn fault(p: &mut Platform, target: Target, how: How) -> Value {
    let name = format!("{how:?} {target:?}").to_lowercase();
    measure(p, &name, |p| inject(p, target, how))
}

/// Kills or freezes `target`.
fn inject(p: &mut Platform, target: Target, how: How) -> Injected {
    let mut thaw: Option<Undo> = None;
    let mut revive: Option<Undo> = None;
    let what = match target {
        Target::Edge | Target::App | Target::ControlLeader => {
            let held = (target == Target::Edge).then(|| {
                let i = p.busiest_edge();
                format!("e{} with {} chargers, ", i + 1, p.edge_sessions(i))
            });
            let s = p.supervised(target).expect("the target process");
            let pid = s.pid();
            match how {
                How::Kill => signal(pid, libc::SIGKILL),
                How::Freeze => {
                    signal(pid, libc::SIGSTOP);
                    thaw = Some(Box::new(move |_| signal(pid, libc::SIGCONT)));
                }
            }
            format!("{}pid {}", held.unwrap_or_default(), pid.unwrap_or(0))
        }
        Target::EtcdLeader => {
            let i = runtime().block_on(p.etcd.leader_index()).unwrap_or(0);
            match how {
                How::Kill => {
                    p.etcd.kill(i);
                    revive = Some(Box::new(move |p| p.etcd.restart(i).expect("etcd restart")));
                }
                How::Freeze => {
                    p.etcd.signal(i, libc::SIGSTOP);
                    thaw = Some(Box::new(move |p| p.etcd.signal(i, libc::SIGCONT)));
                }
            }
            format!("member {i}")
        }
        Target::PostgresPrimary => {
            let i = p.pg.leader().expect("a PostgreSQL primary");
            match how {
                How::Kill => {
                    p.pg.kill(i);
                    revive = Some(Box::new(move |p| p.pg.restart(i).expect("Patroni restart")));
                }
                How::Freeze => {
                    p.pg.freeze(i, true);
                    thaw = Some(Box::new(move |p| p.pg.freeze(i, false)));
                }
            }
            p.pg.name(i).to_owned()
        }
    };
    Injected { what, thaw, revive }
}

/// The restore drill: a backup taken while the fleets charge; later the store's tables
/// dropped (an operator's mistake, or an attack); then what an operator does: the app
/// instances stopped, the PostgreSQL cluster stopped and emptied, the backup restored to
/// the moment before the drop (point-in-time recovery from the WAL archive), the cluster
/// and the app instances started again. Measured from the drop.
fn restore_drill(p: &mut Platform) -> Value {
    eprintln!("chaos: restore drill: a backup under load");
    let config = p.backup_config();
    let config_arg = config.display().to_string();
    let started = Instant::now();
    let (ok, text) = pylonctl(&["backup", "create", "--config", &config_arg]);
    assert!(ok, "backup create under load: {text}");
    let backup_secs = started.elapsed().as_secs_f64();
    // Charging goes on after the backup before the loss.
    std::thread::sleep(Duration::from_secs(5));
    measure(p, "restore drill", |p| {
        let dropped_at = pylon_tests::mishap::drop_tables(&p.pg.url());
        let started = Instant::now();
        pylon_tests::mishap::wait_archived(&p.pg.url());
        for app in &p.apps {
            app.stop_service();
        }
        p.pg.stop();
        p.pg.forget()
            .expect("forgetting the Patroni cluster in etcd");
        for i in 0..p.pg.len() {
            p.pg.empty_data(i).expect("an emptied data folder");
        }
        let data = p.pg.data_dir(0).display().to_string();
        let (ok, text) = pylonctl(&[
            "backup",
            "restore",
            "latest",
            "--config",
            &config_arg,
            "--only",
            "store",
            "--pg-data",
            &data,
            "--force",
            "--until",
            &dropped_at,
        ]);
        assert!(ok, "backup restore --until {dropped_at}: {text}");
        p.pg.recover_alone(0)
            .expect("PostgreSQL recovering the restored backup");
        p.pg.start_from(0).expect("the Patroni cluster restored");
        for app in &p.apps {
            app.start_service();
        }
        Injected {
            what: format!(
                "backup taken in {backup_secs:.1} s under load; tables dropped at {dropped_at}; \
                 restored to that moment and the cluster whole in {:.1} s",
                started.elapsed().as_secs_f64()
            ),
            thaw: None,
            revive: None,
        }
    })
}

/// Injects a fault with `inject`, watches until the platform is whole again, and
/// measures.
fn measure(p: &mut Platform, name: &str, inject: impl FnOnce(&mut Platform) -> Injected) -> Value {
    eprintln!("chaos: {name}");
    // The pace of confirmations before the fault.
    let before = p.sum("records_confirmed");
    std::thread::sleep(Duration::from_secs(4));
    let confirmed = p.sum("records_confirmed");
    let baseline = (confirmed - before) as f64 / 4.0;
    let retransmits = p.sum("record_retransmits");
    let abandoned = p.sum("records_abandoned");
    let setups = p.sum("setups");
    let mut pace: std::collections::VecDeque<(Instant, u64)> = Default::default();
    let start = Instant::now();
    let Injected { what, thaw, revive } = inject(p);
    let watch_until = start.elapsed() + WATCH;
    // Watch: dispatch answering, chargers online and charging again.
    let mut outage = Duration::ZERO;
    let mut down_since: Option<Instant> = None;
    let mut recovered: Option<Duration> = None;
    let mut thawed = false;
    while start.elapsed() < watch_until {
        let now = Instant::now();
        if p.dispatch_answers() {
            if let Some(since) = down_since.take() {
                outage = outage.max(now - since);
            }
        } else if down_since.is_none() {
            down_since = Some(now);
        }
        if !thawed && start.elapsed() >= FREEZE {
            if let Some(thaw) = &thaw {
                thaw(p);
            }
            thawed = true;
        }
        // Online again: every charger connected, and records confirmed at three
        // quarters of the pace before the fault over the last 2 s (a frozen edge's
        // chargers stay connected but confirm nothing). Seen at least 2 s in: the fleets
        // report once a second.
        let now_confirmed = p.sum("records_confirmed");
        pace.push_back((now, now_confirmed));
        while pace
            .front()
            .is_some_and(|(t, _)| now - *t > Duration::from_secs(2))
        {
            pace.pop_front();
        }
        let recent = pace.front().map_or(0.0, |(t, c)| {
            let secs = (now - *t).as_secs_f64();
            if secs < 1.5 {
                0.0
            } else {
                (now_confirmed - c) as f64 / secs
            }
        });
        if recovered.is_none()
            && start.elapsed() > Duration::from_secs(2)
            && p.connected() == p.sessions as i64
            && now_confirmed > confirmed
            && recent >= 0.75 * baseline
        {
            recovered = Some(start.elapsed());
        }
        if recovered.is_some() && down_since.is_none() && start.elapsed() > Duration::from_secs(5) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if let Some(since) = down_since {
        outage = outage.max(since.elapsed());
    }
    if !thawed {
        if let Some(thaw) = &thaw {
            thaw(p);
        }
    }
    if let Some(revive) = &revive {
        revive(p);
    }
    // Whole again before the next fault.
    p.pg.wait_healthy(Duration::from_secs(120))
        .expect("Patroni healthy");
    p.wait_online(Duration::from_secs(120));
    std::thread::sleep(Duration::from_secs(3));
    let (confirmed_trades, stored) = p.records();
    let lost = stored.missing(&confirmed_trades).len();
    let row = json!({
        "fault": name,
        "target": what,
        "back_online_secs": recovered.map(|d| (d.as_secs_f64() * 10.0).round() / 10.0),
        "records_per_sec_before": (baseline * 10.0).round() / 10.0,
        "control_outage_secs": (outage.as_secs_f64() * 10.0).round() / 10.0,
        "reconnects": p.sum("setups") - setups,
        "records_resent": p.sum("record_retransmits") - retransmits,
        // Given up by a charger after 10 tries, 5 s apart.
        "records_abandoned": p.sum("records_abandoned") - abandoned,
        "orders_stuck": p.stuck_orders(),
        "records_confirmed_so_far": confirmed_trades.len(),
        // Both over the whole run so far.
        "records_lost": lost,
        "records_duplicated": stored.duplicated(),
    });
    eprintln!("chaos: {row}");
    row
}

fn markdown(rows: &[Value], sessions: u64) -> String {
    let edge_target = 10.0 * sessions as f64 / 10_000.0;
    let mut md = format!(
        "# Chaos run: {sessions} chargers ({} over TLS), each charging {CHARGE_SECS} s, then idle \
         {idle:.0} s (about {CHARGES_PER_SEC} charges a second in all)\n\n\
         Targets: 0 records lost and 0 duplicated for every fault; every charger back within \
         {edge_target:.1} s after an edge dies (10 s per 10,000); no control-plane outage over \
         3 s when an etcd or control member dies.\n\n\
         *Back online*: every charger connected and records confirmed, over 2 s, at three \
         quarters of the pace before the fault (measured from the fleets' reports, written \
         once a second: 2 s at least). *Control outage*: the longest stretch with no control \
         replica answering dispatch within 300 ms. Frozen processes are thawed after \
         {freeze} s; killed ones are started again by their supervisor at once (etcd and \
         PostgreSQL members by the bench, after the fault is measured). *Restore drill*: a \
         backup taken under load; 5 s later the store's tables dropped; the app instances \
         stopped, the PostgreSQL cluster stopped and emptied, the backup restored to the \
         moment before the drop (`pylonctl backup restore --until`), the cluster and the apps \
         started again (its control outage is measured after the restore only). *Abandoned*: \
         records a charger gave up on after 10 tries, 5 s apart. Lost and duplicated count \
         over the whole run so far.\n\n\
         | fault | target | back online (s) | control outage (s) | reconnects | records resent | records abandoned | orders stuck | records lost | records duplicated |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
        sessions / 4,
        idle = idle_secs(sessions),
        freeze = FREEZE.as_secs()
    );
    for r in rows {
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r["fault"].as_str().unwrap_or(""),
            r["target"].as_str().unwrap_or(""),
            r["back_online_secs"]
                .as_f64()
                .map_or("not within 90".to_owned(), |s| format!("{s:.1}")),
            r["control_outage_secs"],
            r["reconnects"],
            r["records_resent"],
            r["records_abandoned"],
            r["orders_stuck"],
            r["records_lost"],
            r["records_duplicated"],
        ));
    }
    md
}

/// On a failed run, copies the run's logs and the fleets' reports to `<out>/failed-run/`
/// before the run's folder is removed.
struct KeepLogsOnFailure {
    dir: PathBuf,
    out: PathBuf,
}

impl Drop for KeepLogsOnFailure {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let keep = self.out.join("failed-run");
        let _ = std::fs::remove_dir_all(&keep);
        let _ = std::fs::create_dir_all(&keep);
        for entry in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if matches!(
                path.extension().and_then(|x| x.to_str()),
                Some("log" | "json" | "txt")
            ) {
                let _ = std::fs::copy(&path, keep.join(entry.file_name()));
            }
        }
        eprintln!("chaos: the failed run's logs are in {}", keep.display());
    }
}

#[test]
#[ignore = "the chaos bench: cargo xtask chaos"]
fn chaos() {
    let sessions: u64 = std::env::var("PYLON_CHAOS_SESSIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(400);
    let out = std::env::var_os("PYLON_CHAOS_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/chaos"));
    let dir = tempfile::tempdir().expect("temp dir");
    let _keep = KeepLogsOnFailure {
        dir: dir.path().to_owned(),
        out: out.clone(),
    };
    let mut platform = Platform::start(dir.path(), sessions);
    eprintln!("chaos: {sessions} chargers online; faults begin");
    // PYLON_CHAOS_ONLY: run only the faults whose names contain one of these words.
    let only: Vec<String> = std::env::var("PYLON_CHAOS_ONLY")
        .unwrap_or_default()
        .split(',')
        .map(|w| w.trim().to_lowercase())
        .filter(|w| !w.is_empty())
        .collect();
    let wanted = |name: &str| only.is_empty() || only.iter().any(|w| name.contains(w.as_str()));
    let mut rows = Vec::new();
    for target in [
        Target::Edge,
        Target::App,
        Target::ControlLeader,
        Target::EtcdLeader,
        Target::PostgresPrimary,
    ] {
        for how in [How::Kill, How::Freeze] {
            if wanted(&format!("{how:?} {target:?}").to_lowercase()) {
                rows.push(fault(&mut platform, target, how));
            }
        }
    }
    if wanted("restore drill") {
        rows.push(restore_drill(&mut platform));
    }
    let md = markdown(&rows, sessions);
    std::fs::create_dir_all(&out).expect("the output folder");
    std::fs::write(out.join("chaos.md"), &md).expect("chaos.md");
    std::fs::write(
        out.join("chaos.json"),
        serde_json::to_vec_pretty(&json!({"sessions": sessions, "faults": rows}))
            .unwrap_or_default(),
    )
    .expect("chaos.json");
    println!("{md}");
    let reports = platform.reports();
    drop(
        platform
            .fleets
            .drain(..)
            .map(ChargingFleet::stop)
            .collect::<Vec<_>>(),
    );
    // Each row counts over the whole run so far: the worst row is the run's.
    let worst = |field: &str| {
        rows.iter()
            .filter_map(|r| r[field].as_u64())
            .max()
            .unwrap_or(0)
    };
    assert_eq!(
        (worst("records_lost"), worst("records_duplicated")),
        (0, 0),
        "records lost or stored twice:\n{md}\n{reports:?}"
    );
}
