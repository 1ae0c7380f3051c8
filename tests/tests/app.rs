//! The charging business end to end with real processes: control plane, edges that let the
//! app decide logins, `pylon-app` on SQLite or PostgreSQL, and chargers on real sockets.

use std::time::Duration;

use pylon_bench::charger::{ChargerConn, ChargerError};
use pylon_proto::app::business_client::BusinessClient;
use pylon_proto::app::{app_message, edge_message, EdgeMessage, Hello, Uplink};
use pylon_proto::ykc::frames::{
    RealtimeData, RemoteStartReply, RemoteStopReply, TimeSyncReply, TransactionRecord,
};
use pylon_proto::ykc::{Bcd, Frame, PileNo, Scaled};
use pylon_tests::app::{AppOptions, AppProcess, Store};
use pylon_tests::certs::TestCerts;
use pylon_tests::control::{
    app_login_edge_flags, Backend, ControlOptions, ControlProcess, CLUSTER_TOKEN,
};
use pylon_tests::edge::{EdgeOptions, EdgeProcess};
use pylon_tests::fleet::{ChargingFleet, Reach};
use pylon_tests::platform::{connect, next, pile, pile_text, runtime, Platform, FIRST_PILE};
use pylon_tests::wait_for;
use serde_json::json;

/// A transaction record; a retransmission is the same frame again, so callers keep it.
fn record(n: u64, trade_no: pylon_proto::ykc::TradeNo) -> Frame {
    let now = pylon_bench::charging::cp56_now();
    TransactionRecord {
        trade_no,
        pile_no: pile(n),
        gun_no: Bcd([1]),
        start_time: now,
        end_time: now,
        trade_time: now,
        total_energy: Scaled(123_456),
        total_amount: Scaled(172_838),
        stop_reason: 0x40,
        ..Default::default()
    }
    .into()
}

fn order_state(app: &AppProcess, trade: &str) -> String {
    app.api("GET", &format!("/v1/orders/{trade}"), None).1["order"]["state"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn a_charging_session_end_to_end_and_downlinks_to_either_edge() {
    let p = Platform::start(2, vec![]);
    let rt = runtime();
    let (mut a, mut b) = rt.block_on(async {
        let a = connect(&p.target(0), 1)
            .await
            .expect("pile 1 logs in on edge 1");
        let b = connect(&p.target(1), 2)
            .await
            .expect("pile 2 logs in on edge 2");
        // Not in the pile registry: refused by the app, closed by the edge.
        let stranger = PileNo::from_u64(32_010_299_999_999);
        let mut s = ChargerConn::connect(&p.target(0), None)
            .await
            .expect("connect");
        assert!(matches!(
            s.login(stranger).await,
            Err(ChargerError::LoginRefused)
        ));
        (a, b)
    });
    assert_eq!(
        p.app
            .metric("pylon_app_logins_total", &["result=\"unknown\""]),
        1.0
    );

    // Remote start for a driver's account: the order waits for the pile, which confirms.
    let (code, account) = p
        .app
        .api("POST", "/v1/accounts", Some(json!({"name": "driver"})));
    assert_eq!(code, 201, "{account}");
    let account = account["id"].as_i64().expect("account id");
    let (code, _) = p.app.api(
        "POST",
        &format!("/v1/accounts/{account}/top-up"),
        Some(json!({"amount": 5000, "reason": "cash at the counter"})),
    );
    assert_eq!(code, 200);
    let (code, order) = p.app.api(
        "POST",
        &format!("/v1/accounts/{account}/charge"),
        Some(json!({"pile": pile_text(1), "gun": 1})),
    );
    assert_eq!(code, 201, "{order}");
    let trade = order["trade_no"].as_str().expect("trade number").to_owned();
    assert_eq!(order["state"], "starting");
    assert_eq!(&trade[..16], &format!("{}01", pile_text(1)));
    let trade_no = rt.block_on(async {
        let (seq, frame) = next(&mut a, "remote start").await;
        let Frame::RemoteStart(start) = frame else {
            panic!("expected 0x34, got {frame:?}");
        };
        assert_eq!(start.trade_no.to_string(), trade);
        assert_eq!(start.balance.0, 5000);
        let reply = RemoteStartReply {
            trade_no: start.trade_no,
            pile_no: pile(1),
            gun_no: Bcd([1]),
            result: 1,
            failure_reason: 0,
        };
        a.reply(seq, &reply.into()).await.expect("reply 0x33");
        let realtime = RealtimeData {
            trade_no: start.trade_no,
            pile_no: pile(1),
            gun_no: Bcd([1]),
            status: 3,
            ..Default::default()
        };
        a.send(&realtime.into()).await.expect("send 0x13");
        start.trade_no
    });
    wait_for("the order to be charging", Duration::from_secs(10), || {
        (order_state(&p.app, &trade) == "charging").then_some(())
    });
    wait_for(
        "the gun status to show charging",
        Duration::from_secs(10),
        || {
            let detail = p
                .app
                .api("GET", &format!("/v1/piles/{}", pile_text(1)), None)
                .1;
            (detail["guns"][0]["status"] == 3).then_some(())
        },
    );

    // Remote stop, then the record: stored before it is confirmed.
    let (code, stopped) = p.app.api("POST", &format!("/v1/orders/{trade}/stop"), None);
    assert_eq!(
        (code, stopped["state"].as_str()),
        (200, Some("stopping")),
        "{stopped}"
    );
    rt.block_on(async {
        let (seq, frame) = next(&mut a, "remote stop").await;
        assert!(matches!(frame, Frame::RemoteStop(_)), "{frame:?}");
        let reply = RemoteStopReply {
            pile_no: pile(1),
            gun_no: Bcd([1]),
            result: 1,
            failure_reason: 0,
        };
        a.reply(seq, &reply.into()).await.expect("reply 0x35");
        let the_record = record(1, trade_no);
        for attempt in 0..2 {
            // The second time is a retransmission: stored once, confirmed again.
            a.send(&the_record).await.expect("send 0x3B");
            let (_, frame) = next(&mut a, "record confirmation").await;
            let Frame::TransactionConfirm(c) = frame else {
                panic!("attempt {attempt}: expected 0x40, got {frame:?}");
            };
            assert_eq!((c.trade_no, c.result), (trade_no, 0));
        }
    });
    assert_eq!(order_state(&p.app, &trade), "finished");
    let (code, stored) = p.app.api("GET", &format!("/v1/records/{trade}"), None);
    assert_eq!(
        (code, stored["total_energy"].as_i64()),
        (200, Some(123_456)),
        "{stored}"
    );
    let records = p
        .app
        .api("GET", &format!("/v1/piles/{}/records", pile_text(1)), None)
        .1;
    assert_eq!(records.as_array().map(Vec::len), Some(1));
    assert_eq!(
        p.app
            .metric("pylon_app_records_total", &["result=\"duplicate\""]),
        1.0
    );
    let detail = p.app.api("GET", &format!("/v1/orders/{trade}"), None).1;
    assert!(
        detail["events"].as_array().is_some_and(|e| !e.is_empty()),
        "{detail}"
    );

    // A command to the pile on the other edge, answered by the pile.
    std::thread::scope(|scope| {
        let pile_b = scope.spawn(|| {
            rt.block_on(async {
                let (seq, frame) = next(&mut b, "time sync").await;
                let Frame::TimeSync(t) = frame else {
                    panic!("expected 0x56, got {frame:?}");
                };
                let reply = TimeSyncReply {
                    pile_no: pile(2),
                    current_time: t.current_time,
                };
                b.reply(seq, &reply.into()).await.expect("reply 0x55");
            })
        });
        let (code, answer) = p.app.api(
            "POST",
            &format!("/v1/piles/{}/commands", pile_text(2)),
            Some(json!({"type": "TimeSync"})),
        );
        assert_eq!(
            (code, answer["reply"].as_str()),
            (200, Some("TimeSyncReply")),
            "{answer}"
        );
        let _ = pile_b.join();
    });
}

#[test]
fn a_record_stored_by_an_instance_killed_before_confirming_exists_once() {
    let fault = vec![(
        "PYLON_APP_FAULT".to_string(),
        "kill_after_store".to_string(),
    )];
    let mut p = Platform::start(1, fault);
    let rt = runtime();
    let mut a = rt.block_on(connect(&p.target(0), 3)).expect("login");
    let trade_no =
        pylon_proto::ykc::TradeNo::parse("32010200000004012611241820300001").expect("trade number");
    let the_record = record(3, trade_no);
    rt.block_on(a.send(&the_record)).expect("send 0x3B");
    assert!(
        p.app.wait_exit(Duration::from_secs(15)).is_some(),
        "the instance should have killed itself after storing"
    );
    // No confirmation came: the instance died between commit and answer.
    let (grpc, http) = (p.app.grpc, p.app.http);
    p.app = AppProcess::start_on(
        AppOptions {
            dir: p.dir.path(),
            id: "app-1",
            control: vec![p.control.grpc_url()],
            store: Store::Sqlite(p.dir.path().join("app.db")),
            env: vec![],
        },
        grpc,
        http,
    );
    // The charger retransmits until confirmed (the edge may also resend its copy).
    rt.block_on(async {
        let mut confirmed = false;
        for _ in 0..10 {
            a.send(&the_record).await.expect("retransmit 0x3B");
            match a.recv_timeout("confirmation", Duration::from_secs(3)).await {
                Ok((_, Frame::TransactionConfirm(c))) if c.trade_no == trade_no => {
                    assert_eq!(c.result, 0);
                    confirmed = true;
                    break;
                }
                Ok(_) | Err(ChargerError::Timeout(_)) => continue,
                Err(e) => panic!("the charger lost its session: {e}"),
            }
        }
        assert!(confirmed, "the record was never confirmed");
    });
    let records = p
        .app
        .api("GET", &format!("/v1/piles/{}/records", pile_text(3)), None)
        .1;
    assert_eq!(records.as_array().map(Vec::len), Some(1), "{records}");
    assert!(
        p.app
            .metric("pylon_app_records_total", &["result=\"duplicate\""])
            >= 1.0
    );
    assert_eq!(
        p.app.metric("pylon_app_records_total", &["result=\"new\""]),
        0.0
    );
}

#[test]
fn bad_business_input_gets_errors_and_metrics_not_crashes() {
    let p = Platform::start(1, vec![]);
    let app = &p.app;
    let (code, _) = app.api("POST", "/v1/accounts", Some(json!({"name": "driver"})));
    assert_eq!(code, 201, "account 1");
    // Operator API mistakes.
    for (method, path, body, code, error) in [
        (
            "POST",
            "/v1/orders/123/stop".to_string(),
            None,
            404,
            "no_such_order",
        ),
        (
            "POST",
            "/v1/accounts/1/charge".to_string(),
            Some(json!({"pile": "32019999999999"})),
            404,
            "no_such_pile",
        ),
        (
            "POST",
            "/v1/accounts/1/charge".to_string(),
            Some(json!({"pile": pile_text(5)})),
            409,
            "not_connected",
        ),
        (
            "POST",
            "/v1/accounts/1/charge".to_string(),
            Some(json!({"pile": "12ab"})),
            400,
            "bad_pile",
        ),
        (
            "POST",
            "/v1/accounts/999/charge".to_string(),
            Some(json!({"pile": pile_text(1)})),
            404,
            "no_such_account",
        ),
        (
            "POST",
            format!("/v1/piles/{}/commands", pile_text(5)),
            Some(json!({"type": "RemoteStart"})),
            400,
            "not_a_command",
        ),
        (
            "PUT",
            "/v1/billing-models/7".to_string(),
            Some(json!({"loss_ratio": "lots"})),
            400,
            "bad_model",
        ),
    ] {
        let (status, answer) = app.api(method, &path, body);
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (code, Some(error)),
            "{method} {path}: {answer}"
        );
    }
    // Garbage on the business stream itself, as a broken edge might send.
    let rt = runtime();
    rt.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", app.grpc))
            .expect("endpoint")
            .connect()
            .await
            .expect("connect");
        let token: tonic::metadata::MetadataValue<_> =
            format!("Bearer {CLUSTER_TOKEN}").parse().expect("ascii");
        let mut client =
            BusinessClient::with_interceptor(channel, move |mut r: tonic::Request<()>| {
                r.metadata_mut().insert("authorization", token.clone());
                Ok(r)
            });
        let uplink = |id: u64, pile: &str, frame_type: u32, body: Vec<u8>| EdgeMessage {
            body: Some(edge_message::Body::Uplink(Uplink {
                id,
                pile: pile.into(),
                session_id: 1,
                executor: 0,
                seq: 1,
                frame_type,
                body,
            })),
        };
        let mut start_reply = Vec::new();
        Frame::from(RemoteStartReply {
            trade_no: pylon_proto::ykc::TradeNo::parse("1").expect("digits"),
            pile_no: pile(5),
            gun_no: Bcd([1]),
            result: 1,
            failure_reason: 0,
        })
        .encode_body(&mut start_reply)
        .expect("encode");
        let messages = vec![
            EdgeMessage {
                body: Some(edge_message::Body::Hello(Hello {
                    edge_id: "rogue".into(),
                })),
            },
            uplink(1, "12", 0x13, vec![]),
            uplink(2, &pile_text(5), 0x3B, vec![1, 2, 3]),
            uplink(3, &pile_text(5), 0x02, vec![0; 8]),
            uplink(4, &pile_text(5), 0x33, start_reply),
        ];
        let mut inbound = client
            .exchange(tokio_stream::iter(messages))
            .await
            .expect("stream accepted")
            .into_inner();
        let mut acked = 0;
        while acked < 4 {
            let message = tokio::time::timeout(Duration::from_secs(10), inbound.message())
                .await
                .expect("an answer in time")
                .expect("stream")
                .expect("message");
            if let Some(app_message::Body::Ack(ack)) = message.body {
                acked = ack.up_to;
            }
        }
    });
    let m = |labels: &[&str]| app.metric("pylon_app_frame_errors_total", labels);
    assert_eq!(m(&["kind=\"bad_pile\""]), 1.0);
    assert_eq!(m(&["kind=\"decode\""]), 1.0, "the short 0x3B");
    assert_eq!(
        m(&["kind=\"rejected\""]),
        1.0,
        "0x02 does not come from piles"
    );
    assert_eq!(
        app.metric("pylon_app_unexpected_total", &["kind=\"unknown_order\""]),
        1.0
    );
    assert_eq!(pylon_tests::http::get(app.http, "/readyz").0, 200);
}

#[test]
fn app_instances_join_and_leave_under_load_without_losing_records() {
    let pg = pylon_tests::postgres::PostgresCluster::start().expect("a PostgreSQL cluster");
    let dir = tempfile::tempdir().expect("temp dir");
    let certs = TestCerts::generate(dir.path()).expect("certs");
    let control = ControlProcess::start(ControlOptions {
        dir: dir.path(),
        replica: "c1",
        backend: Backend::Embedded(dir.path().join("registry.json")),
        extra: vec![],
    });
    let app = |id: &str| {
        AppProcess::start(AppOptions {
            dir: dir.path(),
            id,
            control: vec![control.grpc_url()],
            store: Store::Postgres(pg.url()),
            env: vec![],
        })
    };
    let app1 = app("app-1");
    let flags = app_login_edge_flags("e1", &[control.grpc_url()]);
    let edge = EdgeProcess::start(EdgeOptions {
        certs: &certs,
        dir: dir.path(),
        executors: 2,
        extra: flags,
        with_rsa: false,
        tls_only: false,
        log_filter_from_file: false,
    });
    let per_app = |id: &str| {
        control.get("/v1/admin/shards")["per_app"][id]
            .as_u64()
            .unwrap_or(0)
    };
    wait_for("app-1 to own every shard", Duration::from_secs(20), || {
        (per_app("app-1") == 1024).then_some(())
    });
    app1.add_piles(FIRST_PILE, 100);
    // Each simulated pile's driver has an account with a card and money.
    pylon_bench::accounts::provision(
        &format!("http://{}", app1.http),
        pylon_tests::control::ADMIN_TOKEN,
        FIRST_PILE,
        100,
        1_000_000,
    )
    .expect("accounts for the fleet");
    let fleet = ChargingFleet::start(dir.path(), Reach::Edge(edge.tcp), FIRST_PILE, 100, 1, 2);
    fleet.wait_confirmed(50, Duration::from_secs(30));

    // A second instance joins: half the shards (and their piles) move to it.
    let mut app2 = app("app-2");
    wait_for("the shards to split", Duration::from_secs(20), || {
        (per_app("app-2") == 512).then_some(())
    });
    let before = fleet.confirmed();
    fleet.wait_confirmed(before + 50, Duration::from_secs(30));
    assert!(
        app2.metric("pylon_app_records_total", &["result=\"new\""]) > 0.0,
        "app-2 took records"
    );

    // It leaves again: everything returns to app-1.
    app2.terminate();
    wait_for(
        "app-1 to own every shard again",
        Duration::from_secs(20),
        || (per_app("app-1") == 1024).then_some(()),
    );
    let before = fleet.confirmed();
    fleet.wait_confirmed(before + 50, Duration::from_secs(30));

    // app-1 learnt again where every pile is (it was told to forget those that moved).
    wait_for(
        "app-1 to know all 100 piles online",
        Duration::from_secs(10),
        || (app1.api("GET", "/v1/stats", None).1["piles_online"] == 100).then_some(()),
    );
    // Every pile is still reachable for downlink.
    for n in (0..100).step_by(10) {
        let (code, answer) = app1.api(
            "POST",
            &format!("/v1/piles/{}/commands", pile_text(n)),
            Some(json!({"type": "TimeSync"})),
        );
        assert_eq!(code, 200, "pile {}: {answer}", pile_text(n));
    }
    let report = fleet.stop();
    let stored = app1.api("GET", "/v1/stats", None).1["records"]
        .as_u64()
        .unwrap_or(0);
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
    assert!(
        report["errors"].get("closed").is_none(),
        "chargers lost their sessions: {report}"
    );
}

/// The control plane is the operators' one address: a pile's live status comes from the
/// app instance owning its shard whichever instance that is, while an instance asked
/// directly about a pile it does not own does not know it is online.
#[test]
fn operators_reach_every_app_instance_through_the_control_plane() {
    let pg = pylon_tests::postgres::PostgresCluster::start().expect("a PostgreSQL cluster");
    let dir = tempfile::tempdir().expect("temp dir");
    let certs = TestCerts::generate(dir.path()).expect("certs");
    let control = ControlProcess::start(ControlOptions {
        dir: dir.path(),
        replica: "c1",
        backend: Backend::Embedded(dir.path().join("registry.json")),
        extra: vec![],
    });
    let app = |id: &str| {
        AppProcess::start(AppOptions {
            dir: dir.path(),
            id,
            control: vec![control.grpc_url()],
            store: Store::Postgres(pg.url()),
            env: vec![],
        })
    };
    let apps = [app("app-1"), app("app-2")];
    let flags = app_login_edge_flags("e1", &[control.grpc_url()]);
    let edge = EdgeProcess::start(EdgeOptions {
        certs: &certs,
        dir: dir.path(),
        executors: 1,
        extra: flags,
        with_rsa: false,
        tls_only: false,
        log_filter_from_file: false,
    });
    wait_for("the shards to split", Duration::from_secs(20), || {
        let per_app = control.get("/v1/admin/shards")["per_app"].clone();
        (per_app["app-1"] == 512 && per_app["app-2"] == 512).then_some(())
    });
    let version = control.status()["route_version"].as_i64();
    wait_for("the edge to follow", Duration::from_secs(20), || {
        (edge.status()["route_version"].as_i64() >= version).then_some(())
    });
    apps[0].add_piles(FIRST_PILE, 20);
    let rt = runtime();
    let target = pylon_bench::charger::Target {
        addr: edge.tcp,
        tls: None,
    };
    let _chargers: Vec<ChargerConn> = (1..=12)
        .map(|n| rt.block_on(connect(&target, n)).expect("charger logs in"))
        .collect();

    let via =
        |addr, path: &str, token| pylon_tests::http::call_as(addr, "GET", path, None, Some(token));
    let admin = pylon_tests::control::ADMIN_TOKEN;
    let mut owners = std::collections::BTreeSet::new();
    for n in 1..=12 {
        let pile = pile_text(n);
        let owner = control.get(&format!("/v1/admin/shards?pile={pile}"))["owner"]
            .as_str()
            .expect("an owner")
            .to_owned();
        owners.insert(owner.clone());
        let path = format!("/v1/piles/{pile}");
        wait_for("the owner to see the pile", Duration::from_secs(10), || {
            let (code, detail) = via(control.http, &path, admin);
            assert_eq!(code, 200, "{detail}");
            (!detail["online"].is_null()).then_some(())
        });
        // Every call goes to the owner, not one in two (round robin would miss).
        for _ in 0..4 {
            let (_, detail) = via(control.http, &path, admin);
            assert!(
                !detail["online"].is_null(),
                "a call for {pile} missed its owner"
            );
        }
        let other = apps.iter().find(|a| a.id != owner).expect("the other");
        let (code, detail) = via(other.http, &path, admin);
        assert_eq!(code, 200, "{detail}");
        assert!(detail["online"].is_null(), "{} knows {pile}", other.id);
    }
    assert_eq!(owners.len(), 2, "the piles fall in both instances' shards");

    // Lists come from the shared store; the stats of every instance are summed (each
    // knows only its own piles); permissions are checked before forwarding.
    let (code, list) = via(control.http, "/v1/piles", admin);
    assert_eq!(code, 200, "{list}");
    for n in [1, 12] {
        assert!(list.to_string().contains(&pile_text(n)), "{list}");
    }
    let (code, stats) = via(control.http, "/v1/stats", admin);
    assert_eq!(code, 200, "{stats}");
    assert_eq!(stats["piles_online"], 12, "{stats}");
    for app in &apps {
        let (_, own) = via(app.http, "/v1/stats", admin);
        let own = own["piles_online"].as_u64().unwrap_or(99);
        assert!(own > 0 && own < 12, "{} alone knows {own} piles", app.id);
    }
    let call = |method, path: &str, body, token| {
        pylon_tests::http::call_as(control.http, method, path, body, token)
    };
    let command = format!("/v1/piles/{}/commands", pile_text(1));
    let (code, _) = call("POST", &command, Some(json!({"type": "TimeSync"})), None);
    assert_eq!(code, 401);
    // A viewer may read through the control plane, but a command is refused there,
    // before anything reaches an app instance.
    let (code, body) = call(
        "POST",
        "/v1/admin/users",
        Some(json!({"name": "vera", "role": "viewer", "password": "a long enough password"})),
        Some(admin),
    );
    assert_eq!(code, 201, "{body}");
    let (code, issued) = call(
        "POST",
        "/v1/admin/tokens",
        Some(json!({"user": "vera", "name": "test"})),
        Some(admin),
    );
    assert_eq!(code, 201, "{issued}");
    let viewer = issued["token"].as_str().expect("token").to_owned();
    let (code, _) = call("GET", "/v1/piles", None, Some(&viewer));
    assert_eq!(code, 200);
    let forwarded = control.metric("pylon_control_forwards_total", &["result=\"ok\""]);
    let (code, _) = call(
        "POST",
        &command,
        Some(json!({"type": "TimeSync"})),
        Some(&viewer),
    );
    assert_eq!(code, 403);
    assert_eq!(
        control.metric("pylon_control_forwards_total", &["result=\"ok\""]),
        forwarded,
        "the refused command was not forwarded"
    );
    assert!(control.metric("pylon_control_forwards_total", &["result=\"ok\""]) >= 60.0);
}
