use serde_json::json;

use super::*;

#[test]
fn a_downlink_reply_is_tagged_by_result_and_round_trips() {
    for (reply, value) in [
        (
            DownlinkReply::Queued {
                executor: 2,
                session: 9,
            },
            json!({"result": "queued", "executor": 2, "session": 9}),
        ),
        (
            DownlinkReply::NotConnected,
            json!({"result": "not_connected"}),
        ),
        (
            DownlinkReply::Failed {
                reason: "edge is shutting down".into(),
            },
            json!({"result": "failed", "reason": "edge is shutting down"}),
        ),
    ] {
        assert_eq!(serde_json::to_value(&reply).unwrap(), value);
        assert_eq!(
            serde_json::from_value::<DownlinkReply>(value).unwrap(),
            reply
        );
    }
}

#[test]
fn the_status_is_the_bytes_the_edge_built_by_hand() {
    let reply = EdgeStatusReply {
        connections: PerTransport { tcp: 5, tls: 1 },
        control_connected: true,
        edge_id: "edge-1".into(),
        executors: 4,
        heartbeats: 100,
        route_version: 3,
        sessions: PerTransport { tcp: 4, tls: 0 },
        state: EdgeState::Draining,
    };
    let old = json!({
        "edge_id": "edge-1",
        "state": "draining",
        "executors": 4usize,
        "sessions": { "tcp": 4i64, "tls": 0i64 },
        "connections": { "tcp": 5i64, "tls": 1i64 },
        "heartbeats": 100u64,
        "route_version": 3i64,
        "control_connected": true,
    });
    assert_eq!(
        serde_json::to_string(&reply).unwrap(),
        serde_json::to_string(&old).unwrap()
    );
}

#[test]
fn guard_replies_keep_their_shape() {
    let status = GuardStatus {
        blocklist: vec!["203.0.113.7".into()],
        dropped_blocked: 1,
        dropped_rate: 2,
        passed: 3,
    };
    let old = json!({
        "passed": 3u64, "dropped_rate": 2u64, "dropped_blocked": 1u64,
        "blocklist": ["203.0.113.7"],
    });
    assert_eq!(
        serde_json::to_string(&status).unwrap(),
        serde_json::to_string(&old).unwrap()
    );
    assert!(serde_json::from_str::<BlockRequest>(r#"{"source": "1.2.3.4", "x": 1}"#).is_err());
    assert!(serde_json::from_str::<DownlinkRequest>(r#"{"pile": "1", "type": "0x36"}"#).is_err());
}
