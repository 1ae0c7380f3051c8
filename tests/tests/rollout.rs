//! `pylonctl rollout` as an operator runs it, every member kept running by a supervisor
//! (as systemd would) and restarted one at a time by the restart hook while a fleet
//! charges through dispatch:
//! - three edges and two app instances on PostgreSQL: no record is lost or stored twice,
//!   and every charger is online at the end;
//! - two control-plane replicas on etcd: leadership moves once, and no charger notices.

use std::process::Command;
use std::time::Duration;

use pylon_tests::app::{AppOptions, AppProcess, Store};
use pylon_tests::control::{
    app_login_edge_flags, Backend, ControlOptions, ControlProcess, ADMIN_TOKEN, CLUSTER_TOKEN,
};
use pylon_tests::etcd::EtcdCluster;
use pylon_tests::fleet::{ChargingFleet, Reach};
use pylon_tests::supervised::{restart_hook, Supervised};
use pylon_tests::{binary, free_port, http, local, wait_for};
use serde_json::{json, Value};

const FIRST_PILE: u64 = 32_010_700_000_000;
const CHARGERS: u64 = 60;

/// An edge under supervision, registering with `controls`, with `extra` flags.
fn supervised_edge(
    dir: &std::path::Path,
    id: &str,
    controls: &[String],
    extra: &[&str],
) -> Supervised {
    let mut args: Vec<String> = [
        "--tcp-listen",
        &local(free_port()).to_string(),
        "--admin-listen",
        &local(free_port()).to_string(),
        "--executors",
        "1",
    ]
    .iter()
    .chain(extra)
    .map(|a| a.to_string())
    .collect();
    args.extend(app_login_edge_flags(id, controls));
    let env = [("RUST_LOG", "pylon_edge=debug,info")];
    Supervised::start(dir, id, &binary("pylon-edge"), &args, &env)
}

/// The last lines of each supervised process's log, for a failed assertion.
fn log_tails<'a>(procs: impl Iterator<Item = &'a Supervised>) -> String {
    procs
        .map(|s| {
            let text = s.log_text();
            let tail: Vec<&str> = text.lines().rev().take(12).collect();
            format!("--- {}:\n{}", s.log.display(), tail.join("\n"))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn rollout(control: &str, what: &str, hook: &str, logs: &dyn Fn() -> String) -> String {
    let (ok, text) = pylon_tests::output(
        Command::new(binary("pylonctl"))
            .args(["rollout", what, "--restart", hook])
            .args([
                "--move-timeout",
                "30",
                "--ready-timeout",
                "40",
                "--hook-timeout",
                "60",
            ])
            .args(["--endpoint", control, "--token", ADMIN_TOKEN]),
    );
    assert!(ok, "rollout {what}: {text}\n{}", logs());
    eprintln!("pylonctl rollout {what}:\n{text}");
    text
}

#[test]
fn a_rollout_of_three_edges_and_two_app_instances_under_charging_loses_no_record() {
    let pg = pylon_tests::postgres::PostgresCluster::start().expect("a PostgreSQL cluster");
    let dir = tempfile::tempdir().expect("temp dir");
    let control = ControlProcess::start(ControlOptions {
        dir: dir.path(),
        replica: "c1",
        backend: Backend::Embedded(dir.path().join("registry.json")),
        extra: vec![],
    });
    let control_url = format!("http://{}", control.http);
    let keys = dir.path().join("card-keys.toml");
    pylon_app::revenue::vault::Vault::create_file(&keys).expect("card key file");

    let mut apps = Vec::new();
    for id in ["app-1", "app-2"] {
        let (grpc, http_addr) = (local(free_port()), local(free_port()));
        let args: Vec<String> = [
            "--app-id",
            id,
            "--grpc-listen",
            &grpc.to_string(),
            "--http-listen",
            &http_addr.to_string(),
            "--admin-token",
            ADMIN_TOKEN,
            "--cluster-token",
            CLUSTER_TOKEN,
            "--lease-ttl",
            "4",
            "--control",
            &control.grpc_url(),
            "--store",
            "postgres",
            "--postgres-url",
            &pg.url(),
            "--card-keys",
            &keys.display().to_string(),
        ]
        .map(str::to_owned)
        .to_vec();
        let env = [("RUST_LOG", "pylon_app=debug,info")];
        apps.push(Supervised::start(
            dir.path(),
            id,
            &binary("pylon-app"),
            &args,
            &env,
        ));
    }
    // Load reports move in steps of 1% of capacity: 1 session here.
    let extra = ["--drain-grace", "2", "--capacity", "100"];
    let edges: Vec<Supervised> = ["e1", "e2", "e3"]
        .iter()
        .map(|id| supervised_edge(dir.path(), id, &[control.grpc_url()], &extra))
        .collect();
    let logs = || log_tails(apps.iter().chain(&edges));
    let members =
        |path: &str| -> Vec<Value> { control.get(path).as_array().cloned().unwrap_or_default() };
    let registrations = |path: &str| -> Vec<(String, i64)> {
        members(path)
            .iter()
            .map(|m| {
                (
                    m["id"].as_str().unwrap_or_default().to_owned(),
                    m["registration"].as_i64().unwrap_or(0),
                )
            })
            .collect()
    };
    wait_for(
        "3 edges and 2 app instances",
        Duration::from_secs(30),
        || {
            let status = control.status();
            (status["edges_live"] == 3 && status["apps_live"] == 2 && status["shards_unowned"] == 0)
                .then_some(())
        },
    );

    // Piles and their drivers' accounts, through the control plane.
    let piles: Vec<Value> = (0..CHARGERS)
        .map(|n| json!({"pile_no": format!("{:014}", FIRST_PILE + n)}))
        .collect();
    let (code, body) = http::post_json(control.http, "/v1/piles", Value::Array(piles));
    assert_eq!(code, 200, "{body}");
    pylon_bench::accounts::provision(&control_url, ADMIN_TOKEN, FIRST_PILE, CHARGERS, 1_000_000)
        .expect("accounts for the fleet");
    let fleet = ChargingFleet::start(
        dir.path(),
        Reach::Dispatch(&control_url),
        FIRST_PILE,
        CHARGERS,
        2,
        5,
    );
    let online = || -> u64 {
        members("/v1/admin/edges")
            .iter()
            .map(|e| e["sessions"].as_u64().unwrap_or(0))
            .sum()
    };
    let all_online = |what: &str| {
        let start = std::time::Instant::now();
        while online() != CHARGERS {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "{what}: {} of {CHARGERS} chargers online; fleet: {}\n{}",
                online(),
                fleet.report(),
                logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    all_online("at the start");
    fleet.wait_confirmed(20, Duration::from_secs(60));
    let edges_before = registrations("/v1/admin/edges");
    let apps_before = registrations("/v1/admin/apps");

    let hook = restart_hook(dir.path());
    let text = rollout(&control_url, "edges", &hook, &logs);
    for id in ["e1", "e2", "e3"] {
        assert!(text.contains(&format!("{id}: back")), "{text}");
    }
    let before = fleet.confirmed();
    fleet.wait_confirmed(before + 20, Duration::from_secs(60));
    let text = rollout(&control_url, "apps", &hook, &logs);
    assert!(text.contains("done: 2 app instances restarted"), "{text}");
    let before = fleet.confirmed();
    fleet.wait_confirmed(before + 20, Duration::from_secs(60));

    // Every member runs a new process, no edge is left drained, and every charger is
    // back online.
    for ((id, old), (_, new)) in edges_before.iter().zip(registrations("/v1/admin/edges")) {
        assert_ne!(*old, new, "{id} was not restarted");
    }
    for ((id, old), (_, new)) in apps_before.iter().zip(registrations("/v1/admin/apps")) {
        assert_ne!(*old, new, "{id} was not restarted");
    }
    assert!(members("/v1/admin/edges")
        .iter()
        .all(|e| e["draining"] == false && e["live"] == true));
    all_online("after the rollouts");

    let report = fleet.stop();
    let stats = control.get("/v1/stats");
    let stored = stats["records"].as_u64().unwrap_or(0);
    let confirmed = report["records_confirmed"].as_u64().unwrap_or(0);
    let sent = report["records_sent"].as_u64().unwrap_or(0);
    assert_eq!(report["records_abandoned"], 0, "{report}");
    assert!(
        stored >= confirmed,
        "confirmed {confirmed} but stored {stored}: {report}"
    );
    assert!(
        stored <= sent,
        "stored {stored} of {sent} sent: duplicates? {report}"
    );
}

#[test]
fn a_rollout_of_two_control_replicas_moves_leadership_once_and_no_charger_notices() {
    const FIRST: u64 = 32_010_710_000_000;
    const CHARGERS: u64 = 20;
    let etcd = pylon_tests::platform::runtime()
        .block_on(EtcdCluster::start(1))
        .expect("etcd");
    let dir = tempfile::tempdir().expect("temp dir");
    let mut replicas = Vec::new();
    let mut grpc_urls = Vec::new();
    let mut http_urls = Vec::new();
    for id in ["c1", "c2"] {
        let (http_addr, grpc) = (local(free_port()), local(free_port()));
        let args =
            pylon_tests::control::args(id, http_addr, grpc, &Backend::Etcd(etcd.endpoints()));
        let env = [("RUST_LOG", "pylon_control=debug,info")];
        replicas.push(Supervised::start(
            dir.path(),
            id,
            &binary("pylon-control"),
            &args,
            &env,
        ));
        grpc_urls.push(format!("http://{grpc}"));
        http_urls.push((http_addr, format!("http://{http_addr}")));
    }
    let c1 = http_urls[0].0;
    let status = |addr| http::call_as(addr, "GET", "/v1/admin/status", None, Some(ADMIN_TOKEN));
    wait_for("both replicas registered", Duration::from_secs(30), || {
        let (code, body) = status(c1);
        (code == 200
            && body["replicas"].as_array().map_or(0, Vec::len) == 2
            && body["leader"].is_string())
        .then_some(())
    });

    let app = AppProcess::start(AppOptions {
        dir: dir.path(),
        id: "app-1",
        control: grpc_urls.clone(),
        store: Store::Sqlite(dir.path().join("app.db")),
        env: vec![],
    });
    let edges: Vec<Supervised> = ["e1", "e2"]
        .iter()
        .map(|id| supervised_edge(dir.path(), id, &grpc_urls, &[]))
        .collect();
    let logs = || log_tails(replicas.iter().chain(&edges));
    wait_for(
        "2 edges and the app instance",
        Duration::from_secs(30),
        || {
            let (_, s) = status(c1);
            (s["edges_live"] == 2 && s["apps_live"] == 1 && s["shards_unowned"] == 0).then_some(())
        },
    );
    app.add_piles(FIRST, CHARGERS);
    pylon_bench::accounts::provision(&http_urls[0].1, ADMIN_TOKEN, FIRST, CHARGERS, 1_000_000)
        .expect("accounts for the fleet");
    let fleet = ChargingFleet::start(
        dir.path(),
        Reach::Dispatch(&http_urls[0].1),
        FIRST,
        CHARGERS,
        2,
        5,
    );
    fleet.wait_confirmed(10, Duration::from_secs(60));
    let (_, before) = status(c1);
    let registration = |s: &Value, id: &str| {
        s["replicas"]
            .as_array()
            .and_then(|r| r.iter().find(|r| r["id"] == id))
            .map(|r| r["registration"].as_i64().unwrap_or(0))
    };
    let leader = before["leader"].as_str().unwrap_or_default().to_owned();
    let follower = if leader == "c1" { "c2" } else { "c1" };

    // Through c1, which restarts in the rollout itself: pylonctl asks c2 meanwhile.
    let hook = restart_hook(dir.path());
    let text = rollout(&http_urls[0].1, "control", &hook, &logs);
    assert!(
        text.contains("done: 2 control-plane replicas restarted"),
        "{text}"
    );
    let follower_line = text.find(&format!("{follower}: restarted"));
    let leader_line = text.find(&format!("{leader}: restarted"));
    assert!(
        follower_line.is_some() && follower_line < leader_line,
        "the follower first, the leader last: {text}"
    );
    // Leadership changed hands once, or the restarted leader won the new election
    // (a race with the follower's campaign): either way a new election, not the old key.
    assert!(
        text.contains(&format!("leadership moved from {leader} to {follower}"))
            || text.contains(&format!("{leader} elected leader again")),
        "{text}"
    );
    let confirmed = fleet.confirmed();
    fleet.wait_confirmed(confirmed + 10, Duration::from_secs(60));

    let (_, after) = status(c1);
    for id in ["c1", "c2"] {
        assert_ne!(
            registration(&before, id),
            registration(&after, id),
            "{id} was not restarted: {after}"
        );
    }
    assert_eq!(after["edges_live"], 2, "{after}\n{}", logs());
    assert_eq!(after["apps_live"], 1, "{after}");
    let report = fleet.stop();
    // Every charger logged in once: none lost its session to the rollout.
    assert_eq!(report["setups"], CHARGERS, "{report}\n{}", logs());
    assert_eq!(report["records_abandoned"], 0, "{report}");
    let (_, stats) = app.api("GET", "/v1/stats", None);
    let stored = stats["records"].as_u64().unwrap_or(0);
    let confirmed = report["records_confirmed"].as_u64().unwrap_or(0);
    let sent = report["records_sent"].as_u64().unwrap_or(0);
    assert!(
        stored >= confirmed && stored <= sent,
        "stored {stored}, confirmed {confirmed}, sent {sent}: {report}"
    );
}
