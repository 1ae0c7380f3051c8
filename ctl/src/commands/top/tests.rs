use std::collections::HashMap;

use clap::Parser;
use serde_json::{json, Value};

use super::*;
use crate::cli::{Cli, Command};
use crate::client::tests::{refused_endpoint, serve};
use crate::commands::OpsCommand;

/// An edge's `/metrics` as prometheus-client writes it, trimmed.
const SAMPLE_1: &str = r#"# HELP pylon_edge_connections Open charger connections.
# TYPE pylon_edge_connections gauge
pylon_edge_connections{executor="0",transport="tcp"} 300
pylon_edge_connections{executor="0",transport="tls"} 10
pylon_edge_connections{executor="1",transport="tcp"} 295
pylon_edge_connections{executor="1",transport="tls"} 10
pylon_edge_connections{executor="10",transport="tcp"} 320
# HELP pylon_edge_sessions Logged-in charger sessions.
# TYPE pylon_edge_sessions gauge
pylon_edge_sessions{executor="0",transport="tcp"} 298
pylon_edge_sessions{executor="0",transport="tls"} 10
pylon_edge_sessions{executor="1",transport="tcp"} 290
pylon_edge_sessions{executor="10",transport="tcp"} 318
# HELP pylon_edge_frames_in Frames received by type.
# TYPE pylon_edge_frames_in counter
pylon_edge_frames_in_total{frame_type="Heartbeat"} 1000
pylon_edge_frames_in_total{frame_type="Login"} 916
# HELP pylon_edge_heartbeats Heartbeats answered by the edge.
# TYPE pylon_edge_heartbeats counter
pylon_edge_heartbeats_total 1000
# TYPE pylon_edge_ebpf_selections gauge
pylon_edge_ebpf_selections{transport="tcp",outcome="by_cpu"} 900
pylon_edge_ebpf_selections{transport="tcp",outcome="fallback"} 4
pylon_edge_ebpf_selections{transport="tls",outcome="by_cpu"} 20
pylon_edge_ebpf_selections{transport="tls",outcome="fallback"} 0
# TYPE pylon_edge_tcp_state_entries gauge
pylon_edge_tcp_state_entries{state="established"} 930
pylon_edge_tcp_state_entries{state="syn_recv"} 940
pylon_edge_tcp_state_entries{state="close_wait"} 5
pylon_edge_tcp_state_entries{state="last_ack"} 5
# TYPE pylon_edge_tcp_retransmits gauge
pylon_edge_tcp_retransmits 17
# TYPE pylon_edge_syn_guard gauge
pylon_edge_syn_guard{verdict="passed"} 2000
pylon_edge_syn_guard{verdict="dropped_rate"} 50
pylon_edge_syn_guard{verdict="dropped_blocked"} 7
# EOF
"#;

/// [`SAMPLE_1`] two seconds later.
const SAMPLE_2: &str = r#"# TYPE pylon_edge_connections gauge
pylon_edge_connections{executor="0",transport="tcp"} 305
pylon_edge_connections{executor="0",transport="tls"} 10
pylon_edge_connections{executor="1",transport="tcp"} 296
pylon_edge_connections{executor="1",transport="tls"} 11
pylon_edge_connections{executor="10",transport="tcp"} 321
pylon_edge_sessions{executor="0",transport="tcp"} 300
pylon_edge_sessions{executor="0",transport="tls"} 10
pylon_edge_sessions{executor="1",transport="tcp"} 294
pylon_edge_sessions{executor="10",transport="tcp"} 320
pylon_edge_frames_in_total{frame_type="Heartbeat"} 1083
pylon_edge_frames_in_total{frame_type="Login"} 920
pylon_edge_heartbeats_total 1083
pylon_edge_ebpf_selections{transport="tcp",outcome="by_cpu"} 910
pylon_edge_ebpf_selections{transport="tcp",outcome="fallback"} 5
pylon_edge_ebpf_selections{transport="tls",outcome="by_cpu"} 21
pylon_edge_ebpf_selections{transport="tls",outcome="fallback"} 0
pylon_edge_tcp_state_entries{state="established"} 942
pylon_edge_tcp_state_entries{state="syn_recv"} 953
pylon_edge_tcp_state_entries{state="close_wait"} 7
pylon_edge_tcp_state_entries{state="last_ack"} 7
pylon_edge_tcp_retransmits 18
pylon_edge_syn_guard{verdict="passed"} 2025
pylon_edge_syn_guard{verdict="dropped_rate"} 54
pylon_edge_syn_guard{verdict="dropped_blocked"} 7
# EOF
"#;

/// An edge without the kernel programs: the plain retransmits gauge is there anyway.
pub(crate) const PLAIN: &str = "pylon_edge_connections{executor=\"0\",transport=\"tcp\"} 3\n\
                         pylon_edge_tcp_retransmits 0\n";

fn parse(args: &[&str]) -> Result<TopArgs, clap::Error> {
    let cli = Cli::try_parse_from(std::iter::once("pylonctl").chain(args.iter().copied()))?;
    match cli.command {
        Command::Ops(OpsCommand::Top(args)) => Ok(args),
        other => panic!("{args:?} parsed as {other:?}"),
    }
}

fn env_of(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Runs `pylonctl <args>` with no config file and `PYLON_EDGE_ADMIN` as given.
fn run(edge_admin_env: Option<&str>, args: &[&str]) -> Result<String, Failure> {
    let mut env = env_of(&[(config::ENV_ENDPOINT, "ftp://not-used")]);
    if let Some(e) = edge_admin_env {
        env.insert(config::ENV_EDGE_ADMIN.into(), e.into());
    }
    let cmd = parse(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
    let mut out = Vec::new();
    run_top(cmd, &|k| env.get(k).cloned(), &mut out)?;
    Ok(String::from_utf8(out).unwrap())
}

pub(crate) fn two_samples() -> EdgeStats {
    edge_stats(
        &parse_metrics(SAMPLE_2),
        Some((&parse_metrics(SAMPLE_1), 2.0)),
    )
}

#[test]
fn top_parses() {
    let a = parse(&["top"]).unwrap();
    assert!(a.edge_admin.is_empty());
    assert_eq!(a.interval, Duration::from_secs(2));
    assert_eq!((a.count, a.output), (None, OutputFormat::Table));

    let a = parse(&[
        "top",
        "--edge-admin",
        "http://10.0.0.3:9100",
        "--edge-admin",
        "10.0.0.4:9100",
        "--interval",
        "0.5",
        "--count",
        "2",
        "-o",
        "json",
        "--config",
        "/c.toml",
    ])
    .unwrap();
    assert_eq!(a.edge_admin, ["http://10.0.0.3:9100", "10.0.0.4:9100"]);
    assert_eq!(a.interval, Duration::from_millis(500));
    assert_eq!(a.count, Some(2));
    assert_eq!(a.output, OutputFormat::Json);
    assert_eq!(a.config, Some(PathBuf::from("/c.toml")));

    for bad in [
        &["top", "--interval", "0"][..],
        &["top", "--interval", "0.01"],
        &["top", "--interval", "-1"],
        &["top", "--interval", "2s"],
        &["top", "--interval", "NaN"],
        &["top", "--count", "0"],
        &["top", "--count", "-1"],
        &["top", "--edge-admin"],
        &["top", "edge-1"],
        // The edge's admin API takes no token.
        &["top", "--token", "t"],
        &["top", "--endpoint", "http://ctl:7400"],
    ] {
        assert!(parse(bad).is_err(), "{bad:?} parsed");
    }
    let err = parse(&["top", "--interval", "0"]).unwrap_err().to_string();
    assert!(err.contains("from 0.1 to 86400"), "{err}");
}

#[test]
fn the_edges_come_from_the_flags_else_the_environment() {
    let env = env_of(&[(config::ENV_EDGE_ADMIN, "10.0.0.9:9100")]);
    let env = |k: &str| env.get(k).cloned();
    let edges = |args: &[&str]| resolve_edges(&parse(args).unwrap(), &env);
    assert_eq!(edges(&["top"]).unwrap(), ["http://10.0.0.9:9100"]);
    assert_eq!(
        edges(&[
            "top",
            "--edge-admin",
            "10.0.0.3:9100/",
            "--edge-admin",
            "http://10.0.0.4:9100",
            "--edge-admin",
            "http://10.0.0.3:9100",
        ])
        .unwrap(),
        ["http://10.0.0.3:9100", "http://10.0.0.4:9100"]
    );
    let nothing = |_: &str| None;
    assert_eq!(
        resolve_edges(&parse(&["top"]).unwrap(), &nothing).unwrap(),
        ["http://127.0.0.1:9100"]
    );
    // https needs the cluster CA.
    assert_eq!(
        edges(&[
            "top",
            "--edge-admin",
            "https://10.0.0.3:9100/",
            "--ca",
            "/etc/pylon/ca.pem"
        ])
        .unwrap(),
        ["https://10.0.0.3:9100"]
    );
    for bad in [
        &["top", "--edge-admin", "https://10.0.0.3:9100"][..],
        &["top", "--edge-admin", "http://a:1", "--edge-admin", " "],
    ] {
        let err = edges(bad).unwrap_err();
        assert_eq!(err.exit_code(), 2, "{bad:?}: {err}");
        assert!(err.to_string().contains("--edge-admin"), "{err}");
    }
}

#[test]
fn metrics_are_parsed_from_the_text_format() {
    let m = parse_metrics(SAMPLE_1);
    assert_eq!(m.samples.len(), 24);
    assert_eq!(
        m.samples[0],
        Sample {
            name: CONNECTIONS.into(),
            labels: vec![
                ("executor".into(), "0".into()),
                ("transport".into(), "tcp".into())
            ],
            value: 300.0,
        }
    );
    assert_eq!(m.sum(HEARTBEATS, &[]), Some(1000.0));
    assert_eq!(m.sum(FRAMES_IN, &[]), Some(1916.0));
    assert_eq!(m.sum(CONNECTIONS, &[("transport", "tls")]), Some(20.0));
    assert_eq!(m.sum(CONNECTIONS, &[("transport", "quic")]), None);
    assert_eq!(m.sum("pylon_edge_nothing", &[]), None);
    assert_eq!(
        m.sum_by(SESSIONS, "transport"),
        BTreeMap::from([("tcp".into(), 906.0), ("tls".into(), 10.0)])
    );
    assert!(m.is_edge());

    // Escapes, spaces, timestamps, other number forms; odd lines are skipped.
    let m = parse_metrics(
        "x{a=\"q\\\"u,o}te\" , b = \"back\\\\slash\\nnl\",} 1.5e3 1714550400000\n\
             \n   # comment\n\
             y 7\n\
             z{} -2\n\
             w +Inf\n\
             broken{a=\"1\" 3\n\
             novalue{a=\"1\"}\n\
             notanumber 12abc\n\
             {a=\"1\"} 4\n",
    );
    let by_name: Vec<(&str, f64)> = m
        .samples
        .iter()
        .map(|s| (s.name.as_str(), s.value))
        .collect();
    assert_eq!(
        by_name,
        [("x", 1500.0), ("y", 7.0), ("z", -2.0), ("w", f64::INFINITY)]
    );
    assert_eq!(m.samples[0].label("a"), Some("q\"u,o}te"));
    assert_eq!(m.samples[0].label("b"), Some("back\\slash\nnl"));
    assert!(!m.is_edge());
    assert_eq!(parse_metrics(""), Metrics::default());
}

#[test]
fn rates_come_from_two_samples() {
    let s = two_samples();
    assert_eq!(
        s.sessions,
        Some(Split {
            total: 924,
            by_transport: BTreeMap::from([("tcp".into(), 914), ("tls".into(), 10)]),
        })
    );
    assert_eq!(s.connections.as_ref().map(|c| c.total), Some(943));
    let executors: Vec<(&str, i64)> = s
        .executors
        .iter()
        .map(|e| (e.executor.as_str(), e.connections))
        .collect();
    assert_eq!(executors, [("0", 315), ("1", 307), ("10", 321)]);
    assert_eq!(s.heartbeats_per_sec, Some(41.5));
    assert_eq!(s.frames_in_per_sec, Some(43.5));
    let k = s.kernel.unwrap();
    assert_eq!(
        k.placed_per_sec,
        Some(Placed {
            by_cpu: Some(5.5),
            fallback: Some(0.5)
        })
    );
    assert_eq!(
        k.tcp_per_sec,
        Some(TcpRates {
            established: Some(6.0),
            close_wait: Some(1.0),
            syn_recv: Some(6.5),
            retransmits: Some(0.5),
        })
    );
    assert_eq!(
        k.syn_guard_per_sec,
        Some(SynGuardRates {
            passed: Some(12.5),
            dropped: Some(2.0),
            dropped_rate: Some(2.0),
            dropped_blocked: Some(0.0),
        })
    );

    // The first sample: figures, but no rates.
    let first = edge_stats(&parse_metrics(SAMPLE_1), None);
    assert_eq!(first.sessions.as_ref().map(|s| s.total), Some(916));
    assert_eq!(first.heartbeats_per_sec, None);
    let k = first.kernel.unwrap();
    assert_eq!(k.placed_per_sec.unwrap().by_cpu, None);
    assert_eq!(k.syn_guard_per_sec.unwrap().dropped, None);

    // Backwards (the edge restarted): no rate rather than a negative one.
    let back = edge_stats(
        &parse_metrics(SAMPLE_1),
        Some((&parse_metrics(SAMPLE_2), 2.0)),
    );
    assert_eq!(back.heartbeats_per_sec, None);
    // No time between the samples: no rate.
    let same = edge_stats(
        &parse_metrics(SAMPLE_2),
        Some((&parse_metrics(SAMPLE_1), 0.0)),
    );
    assert_eq!(same.heartbeats_per_sec, None);

    // Without the kernel programs: no kernel part, and missing metrics are None.
    let plain = edge_stats(&parse_metrics(PLAIN), Some((&parse_metrics(PLAIN), 2.0)));
    assert_eq!(plain.kernel, None);
    assert_eq!(plain.sessions, None);
    assert_eq!(plain.heartbeats_per_sec, None);
    assert_eq!(plain.connections.unwrap().total, 3);
}

fn metrics_replies(bodies: &[&str]) -> Vec<(u16, String)> {
    bodies.iter().map(|b| (200, b.to_string())).collect()
}

#[test]
fn two_refreshes_against_a_live_edge_and_a_dead_one() {
    let (endpoint, requests, server) = serve(metrics_replies(&[SAMPLE_1, SAMPLE_2]));
    let dead = refused_endpoint();
    let text = run(
        None,
        &[
            "top",
            "--edge-admin",
            &endpoint,
            "--edge-admin",
            &dead,
            "--interval",
            "0.1",
            "--count",
            "2",
        ],
    )
    .unwrap();
    server.join().unwrap();
    for _ in 0..2 {
        let head = requests.recv().unwrap();
        assert!(head.starts_with("GET /metrics HTTP/1.1"), "{head}");
        assert!(
            !head.to_ascii_lowercase().contains("authorization"),
            "{head}"
        );
    }
    let refreshes: Vec<&str> = text.split("pylonctl top  ").skip(1).collect();
    assert_eq!(refreshes.len(), 2, "{text}");
    assert!(
        refreshes[0].contains("every 0.1s  refresh 1 of 2  (rates"),
        "{text}"
    );
    assert!(refreshes[1].contains("refresh 2 of 2\n"), "{text}");
    assert!(refreshes[0].contains("  heartbeats/s     -\n"), "{text}");
    assert!(
        refreshes[0].contains("  sessions         916  (tcp 906, tls 10)\n"),
        "{text}"
    );
    // The rates' figures depend on the time between the replies: only their form
    // is checked.
    let line = refreshes[1]
        .lines()
        .find(|l| l.starts_with("  heartbeats/s"))
        .unwrap();
    let rate: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(rate > 0.0, "{line}");
    for refresh in &refreshes {
        assert!(
            refresh.contains(&format!(
                "EDGE {dead}\n  unreachable (connection refused)\n"
            )),
            "{text}"
        );
    }
}

#[test]
fn json_prints_one_object_per_refresh() {
    let (endpoint, _requests, server) = serve(metrics_replies(&[SAMPLE_1, SAMPLE_2]));
    let text = run(
        Some(&endpoint),
        &["top", "--interval", "0.1", "--count", "2", "-o", "json"],
    )
    .unwrap();
    server.join().unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    let edge = &lines[0]["edges"][0];
    assert_eq!(edge["edge"], json!(endpoint));
    assert_eq!(edge["status"], "ok");
    assert_eq!(edge["sessions"]["total"], 916);
    assert_eq!(edge["heartbeats_per_sec"], Value::Null);
    assert_eq!(edge["kernel"]["syn_guard_per_sec"]["passed"], Value::Null);
    assert_eq!(lines[1]["refresh"], 2);
    assert_eq!(lines[1]["interval_secs"], 0.1);
    let edge = &lines[1]["edges"][0];
    assert!(edge["heartbeats_per_sec"].as_f64().unwrap() > 0.0, "{edge}");
    assert_eq!(
        edge["executors"][2],
        json!({"executor": "10", "connections": 321})
    );
    assert!(edge.get("error").is_none(), "{edge}");
}

#[test]
fn no_edge_ever_reached_is_3_and_a_non_edge_is_1() {
    let dead = refused_endpoint();
    let err = run(Some(&dead), &["top", "--interval", "0.1", "--count", "2"]).unwrap_err();
    assert_eq!(err.exit_code(), 3);
    assert!(
        err.to_string().starts_with(&format!(
            "cannot reach the edge at {dead}: connection refused"
        )),
        "{err}"
    );

    // Something that is not an edge's admin server answers: exit status 1, and what
    // it is said at every refresh.
    let (endpoint, _requests, server) = serve(vec![
        (404, "not found".into()),
        (200, "# nothing\ncontrol_up 1\n".into()),
    ]);
    let cmd = parse(&[
        "top",
        "--edge-admin",
        &endpoint,
        "--edge-admin",
        &dead,
        "--interval",
        "0.1",
        "--count",
        "2",
    ])
    .unwrap();
    let mut out = Vec::new();
    let err = run_top(cmd, &|_| None, &mut out).unwrap_err();
    server.join().unwrap();
    assert_eq!(err.exit_code(), 1, "{err}");
    let msg = err.to_string();
    assert!(
        msg.starts_with("no edge gave its metrics; the first: GET /metrics failed with HTTP 404"),
        "{msg}"
    );
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.contains("  error: GET /metrics failed with HTTP 404 (is --edge-admin"),
        "{text}"
    );
    assert!(text.contains("holds no pylon_edge_ metric"), "{text}");
    assert!(text.contains("unreachable (connection refused)"), "{text}");
}
