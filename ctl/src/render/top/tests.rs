use serde_json::json;

use super::*;
use crate::commands::top::tests::{two_samples, PLAIN};
use crate::commands::top::{edge_stats, parse_metrics, EdgeStats};

fn ok(edge: &str, stats: EdgeStats) -> EdgeReport {
    EdgeReport {
        edge: edge.into(),
        status: EdgeStatus::Ok,
        error: None,
        stats: Some(stats),
    }
}

#[test]
fn an_edge_renders_as_a_block() {
    assert_eq!(
        render_edge(&ok("http://10.0.0.3:9100", two_samples())),
        "\
EDGE http://10.0.0.3:9100
  sessions         924  (tcp 914, tls 10)
  connections      943  (tcp 922, tls 21)
  executors        3, connections min 307, max 321
                   0: 315  1: 307  10: 321
  heartbeats/s     41.5
  frames in/s      43.5
  kernel (eBPF)
    placed/s       by cpu 5.5  fallback 0.5
    tcp entries/s  established 6.0  close_wait 1.0  syn_recv 6.5
    retransmits/s  0.5
    syn guard/s    passed 12.5  dropped 2.0
"
    );
    assert_eq!(
        render_edge(&ok(
            "http://e:9100",
            edge_stats(&parse_metrics(PLAIN), None)
        )),
        "\
EDGE http://e:9100
  sessions      -
  connections   3  (tcp 3)
  executors     1, connections min 3, max 3
                0: 3
  heartbeats/s  -
  frames in/s   -
"
    );
    // Many executors wrap.
    let many: String = (0..10)
        .map(|i| format!("pylon_edge_connections{{executor=\"{i}\",transport=\"tcp\"}} {i}\n"))
        .collect();
    let text = render_edge(&ok(
        "http://e:9100",
        edge_stats(&parse_metrics(&many), None),
    ));
    assert!(
        text.contains(
            "  executors     10, connections min 0, max 9\n\
                 \x20               0: 0  1: 1  2: 2  3: 3  4: 4  5: 5  6: 6  7: 7\n\
                 \x20               8: 8  9: 9\n"
        ),
        "{text}"
    );
    // Only the edge's metrics, none of these: every figure is "-".
    let text = render_edge(&ok(
        "http://e:9100",
        edge_stats(&parse_metrics("pylon_edge_other 1\n"), None),
    ));
    assert!(text.contains("  executors     -\n"), "{text}");

    let unreachable = EdgeReport {
        edge: "http://10.0.0.4:9100".into(),
        status: EdgeStatus::Unreachable,
        error: Some("connection refused".into()),
        stats: None,
    };
    assert_eq!(
        render_edge(&unreachable),
        "EDGE http://10.0.0.4:9100\n  unreachable (connection refused)\n"
    );
    let failed = EdgeReport {
        status: EdgeStatus::Error,
        error: Some("GET /metrics failed with HTTP 404".into()),
        ..unreachable.clone()
    };
    assert_eq!(
        render_edge(&failed),
        "EDGE http://10.0.0.4:9100\n  error: GET /metrics failed with HTTP 404\n"
    );

    let refresh = Refresh {
        time: "2024-05-01T08:00:00Z".into(),
        refresh: 1,
        interval_secs: 0.5,
        edges: vec![unreachable],
        count: Some(3),
    };
    assert_eq!(
        render_refresh(&refresh, Duration::from_millis(500)),
        "pylonctl top  2024-05-01T08:00:00Z  every 0.5s  refresh 1 of 3  \
             (rates from the next refresh on)\n\n\
             EDGE http://10.0.0.4:9100\n  unreachable (connection refused)\n\n"
    );
    let json = serde_json::to_value(&refresh).unwrap();
    assert_eq!(
        json,
        json!({
            "time": "2024-05-01T08:00:00Z",
            "refresh": 1,
            "interval_secs": 0.5,
            "edges": [{
                "edge": "http://10.0.0.4:9100",
                "status": "unreachable",
                "error": "connection refused",
            }],
        })
    );
}
