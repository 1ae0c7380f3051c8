//! What ships under `deploy/` for monitoring, against the real tools: the alert rules and
//! configurations pass `promtool` and `amtool` (and the rules' unit tests); a real
//! Prometheus scrapes a running platform with chargers charging and every dashboard query
//! returns data; killing an edge fires its alert, which reaches a webhook through a real
//! Alertmanager.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use pylon_tests::control::ADMIN_TOKEN;
use pylon_tests::monitoring::{deploy_dir, tool, Alertmanager, Job, Prometheus, Webhook};
use pylon_tests::platform::{Platform, FIRST_PILE};
use pylon_tests::Killed;
use pylon_tests::{binary, wait_for};
use serde_json::Value;

fn run(tool_path: &Path, args: &[&str], cwd: &Path) -> String {
    let out = Command::new(tool_path)
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", tool_path.display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{} {args:?} failed:\n{text}",
        tool_path.display()
    );
    text
}

#[test]
fn the_shipped_rules_and_configurations_pass_their_checkers() {
    let deploy = deploy_dir();
    let promtool = tool("promtool", "prometheus");
    let rules = deploy.join("prometheus/rules");
    let out = run(&promtool, &["check", "rules", "pylon.rules.yml"], &rules);
    assert!(out.contains("SUCCESS"), "{out}");
    run(
        &promtool,
        &["test", "rules", "pylon.rules.test.yml"],
        &rules,
    );
    run(
        &promtool,
        &["check", "config", "prometheus.yml"],
        &deploy.join("prometheus"),
    );
    let amtool = tool("amtool", "prometheus-alertmanager");
    run(
        &amtool,
        &["check-config", "alertmanager.yml"],
        &deploy.join("alertmanager"),
    );
    // Every alert has a severity and a summary.
    let text = std::fs::read_to_string(rules.join("pylon.rules.yml")).expect("rules");
    let alerts = text.matches("- alert: ").count();
    assert!(alerts >= 20, "{alerts} alerts");
    assert_eq!(text.matches("severity: ").count(), alerts);
    assert_eq!(text.matches("summary: ").count(), alerts);
    // The dashboards are Grafana JSON with unique ids and a query in every panel.
    let mut uids = Vec::new();
    for (path, dashboard) in dashboards() {
        let uid = dashboard["uid"].as_str().expect("uid").to_owned();
        assert!(!uids.contains(&uid), "{} repeats uid {uid}", path.display());
        uids.push(uid);
        assert!(dashboard["title"]
            .as_str()
            .is_some_and(|t| t.starts_with("Pylon")));
        for panel in dashboard["panels"].as_array().expect("panels") {
            if panel["type"] == "row" {
                continue;
            }
            let targets = panel["targets"].as_array().expect("targets");
            assert!(
                !targets.is_empty(),
                "{}: {}",
                path.display(),
                panel["title"]
            );
        }
    }
    assert_eq!(uids.len(), 5, "fleet, edge, app, control, kernel: {uids:?}");
}

fn dashboards() -> Vec<(PathBuf, Value)> {
    let dir = deploy_dir().join("grafana/dashboards");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("dashboards folder") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(&path).expect("dashboard");
            let value: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
            out.push((path, value));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Every (dashboard, panel, expression) of the shipped dashboards, with Grafana's
/// variables replaced as Grafana would for "all instances".
fn dashboard_queries() -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for (path, dashboard) in dashboards() {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        for panel in dashboard["panels"].as_array().into_iter().flatten() {
            for target in panel["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = target["expr"].as_str() {
                    out.push((
                        name.clone(),
                        panel["title"].as_str().unwrap_or_default().to_owned(),
                        expr.replace("$instance", ".+"),
                    ));
                }
            }
        }
    }
    out
}

/// Metrics of the XDP programs (the SYN guard, the spreader, the balancer), which need an
/// interface of their own in a network namespace (the eBPF tests cover them): their
/// queries must run, but may find nothing here.
const XDP_ONLY: &[&str] = &[
    "pylon_edge_syn_guard",
    "pylon_edge_xdp_spread_syns",
    "pylon_balancer_",
];

/// Only with `--ebpf on`, which needs root.
const EBPF_ONLY: &[&str] = &["pylon_edge_tcp_state_entries", "pylon_edge_ebpf_selections"];

/// Counted only when something fails that this healthy platform cannot be made to fail
/// from outside (a registry operation, a business frame the store rejects): their
/// queries must run, and find nothing.
const FAILURES_ONLY: &[&str] = &[
    "pylon_control_registry_errors_total",
    "pylon_app_frame_errors_total",
];

/// Runs simulated chargers through dispatch: TCP ones with accounts that start charging by
/// card, TLS ones without (their starts are refused), all with 1 s heartbeats.
fn fleets(platform: &Platform) -> Vec<Killed> {
    let dispatch = format!("http://{}", platform.control.http);
    let fleet = |name: &str, base: u64, tls: bool| {
        let mut cmd = Command::new(binary("pylon-fleet"));
        cmd.args(["--dispatch", &dispatch, "--sessions", "5", "--ramp", "50"])
            .args(["--pile-base", &base.to_string(), "--heartbeat-secs", "1"])
            .args(["--progress-secs", "0", "--charge"])
            .args(["--card-start-secs", "3", "--charge-secs", "2"]);
        if tls {
            cmd.arg("--tls-ca").arg(&platform.certs.ca);
        }
        let log = std::fs::File::create(platform.dir.path().join(format!("{name}.log")))
            .expect("fleet log");
        Killed(
            cmd.stdout(log.try_clone().expect("log handle"))
                .stderr(log)
                .spawn()
                .expect("starting pylon-fleet"),
        )
    };
    vec![
        fleet("fleet-tcp", FIRST_PILE, false),
        fleet("fleet-tls", FIRST_PILE + 10, true),
    ]
}

#[test]
fn prometheus_scrapes_the_platform_every_dashboard_has_data_and_a_dead_edge_is_alerted() {
    let ebpf = pylon_ebpf::netns::kernel_test_can_run(2);
    let mut platform = Platform::start(1, vec![]);
    let second_edge = if ebpf {
        vec!["--ebpf".to_owned(), "on".to_owned()]
    } else {
        vec![]
    };
    platform.add_edge_with("e2", second_edge);
    platform.wait_owned();
    // The TCP fleet's drivers have accounts with cards and money, at a station with a tariff.
    let api = format!("http://{}", platform.app.http);
    pylon_bench::accounts::station_with_tariff(
        &api,
        ADMIN_TOKEN,
        "Monitoring test",
        FIRST_PILE..FIRST_PILE + 20,
    )
    .expect("station");
    pylon_bench::accounts::provision(&api, ADMIN_TOKEN, FIRST_PILE, 5, 100_000).expect("accounts");
    let _fleets = fleets(&platform);

    let dir = platform.dir.path().to_owned();
    let webhook = Webhook::start();
    let alertmanager = Alertmanager::start(&dir, webhook.addr);
    let rules = deploy_dir().join("prometheus/rules/pylon.rules.yml");
    let jobs = [
        Job {
            name: "pylon-control",
            targets: vec![platform.control.http],
        },
        Job {
            name: "pylon-app",
            targets: vec![platform.app.http],
        },
        Job {
            name: "pylon-edge",
            targets: platform.edges.iter().map(|e| e.admin).collect(),
        },
    ];
    let prometheus = Prometheus::start(&dir, &jobs, &[rules], Some(alertmanager.addr));
    prometheus.wait_targets_up(4);

    // Business happens: starts, charging, records; a command to a pile.
    wait_for(
        "transaction records stored",
        Duration::from_secs(60),
        || {
            let records = prometheus
                .query("sum(pylon_app_records_total{result=\"new\"})")
                .ok()?;
            (!records.is_empty()).then_some(())
        },
    );
    let pile = pylon_tests::platform::pile_text(1);
    let (code, body) = pylon_tests::http::call_as(
        platform.app.http,
        "POST",
        &format!("/v1/piles/{pile}/commands"),
        Some(serde_json::json!({"type": "TimeSync"})),
        Some(ADMIN_TOKEN),
    );
    assert_eq!(code, 200, "{body}");
    // What the failure panels count, made to happen: a refused token, a malformed frame.
    let (code, _) = pylon_tests::http::call_as(
        platform.app.http,
        "GET",
        "/v1/piles",
        None,
        Some("not-a-token"),
    );
    assert_eq!(code, 401);
    {
        use std::io::Write;
        let mut garbage = std::net::TcpStream::connect(platform.edges[0].tcp).expect("edge");
        let _ = garbage.write_all(&[0x68, 0x0d, 0, 0, 0, 0x03, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 0]);
        std::thread::sleep(Duration::from_millis(200));
    }

    // Every dashboard query returns data (rates need two samples of the counters' series
    // that appeared last: a few seconds).
    let queries = dashboard_queries();
    assert!(queries.len() > 60, "{} queries", queries.len());
    let empty = |expr: &str| {
        prometheus
            .query(expr)
            .unwrap_or_else(|e| panic!("{expr}: {e}"))
            .is_empty()
    };
    let expect_data = |expr: &str| {
        !XDP_ONLY.iter().any(|m| expr.contains(m))
            && !FAILURES_ONLY.iter().any(|m| expr.contains(m))
            && (ebpf || !EBPF_ONLY.iter().any(|m| expr.contains(m)))
    };
    let missing = wait_for_all(Duration::from_secs(60), || {
        queries
            .iter()
            .filter(|(_, _, expr)| {
                let no_data = empty(expr);
                no_data && expect_data(expr)
            })
            .map(|(d, p, e)| format!("{d} / {p}: {e}"))
            .collect::<Vec<_>>()
    });
    assert!(
        missing.is_empty(),
        "dashboard queries without data:\n{}",
        missing.join("\n")
    );

    // The edge dies: PylonEdgeDown fires after its 30 s and reaches the webhook.
    let dead = platform.edges[1].admin.to_string();
    platform.edges[1].kill();
    let alert = wait_for(
        "PylonEdgeDown at the webhook",
        Duration::from_secs(120),
        || {
            webhook.received().into_iter().find_map(|note| {
                note["alerts"].as_array()?.iter().find_map(|a| {
                    (a["labels"]["alertname"] == "PylonEdgeDown"
                        && a["labels"]["instance"] == dead.as_str()
                        && a["status"] == "firing")
                        .then(|| a.clone())
                })
            })
        },
    );
    assert_eq!(alert["labels"]["severity"], "critical");
    assert!(
        alert["annotations"]["summary"]
            .as_str()
            .is_some_and(|s| s.contains(&dead)),
        "{alert}"
    );
    // Nothing else is alerting about the healthy edge.
    let firing = prometheus
        .query("ALERTS{alertstate=\"firing\"}")
        .expect("alerts");
    for a in &firing {
        assert!(
            a["metric"]["instance"] != platform.edges[0].admin.to_string().as_str(),
            "a healthy edge alerts: {a}"
        );
    }
}

/// Polls `check` (the list of what is still wrong) until it is empty or `limit` passes;
/// returns the last list.
fn wait_for_all(limit: Duration, mut check: impl FnMut() -> Vec<String>) -> Vec<String> {
    let start = std::time::Instant::now();
    loop {
        let wrong = check();
        if wrong.is_empty() || start.elapsed() > limit {
            return wrong;
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}
