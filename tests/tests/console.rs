//! The operator's eyes, whole: alarms raised by real chargers through a real edge, stored,
//! signed to a webhook and posted to a real Alertmanager, handled through the control
//! plane (API and `pylonctl`); and the console driven in headless Chromium: the overview
//! matches the API, an alarm is acknowledged from the page, a pile page shows its live
//! status, an edge is drained from the page. Screenshots go to `target/console/`.

use std::time::Duration;

use pylon_bench::charger::{heartbeat_frame, idle_realtime_frame, realtime_with_faults};
use pylon_tests::browser::Browser;
use pylon_tests::control::ADMIN_TOKEN;
use pylon_tests::http::call_as;
use pylon_tests::monitoring::{Alertmanager, Webhook};
use pylon_tests::platform::{connect, pile, pile_text, runtime, Platform};
use serde_json::{json, Value};

const SECRET: &str = "a-webhook-secret-for-tests";

/// An operator call through the control plane, with the admin token.
fn op(platform: &Platform, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    call_as(platform.control.http, method, path, body, Some(ADMIN_TOKEN))
}

fn alarms(platform: &Platform, query: &str) -> Vec<Value> {
    let (code, page) = op(platform, "GET", &format!("/v1/alarms?{query}"), None);
    assert_eq!(code, 200, "{page}");
    page["alarms"].as_array().cloned().unwrap_or_default()
}

/// Waits (30 s at most) until `check` gives something.
fn wait<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    for _ in 0..300 {
        if let Some(v) = check() {
            return v;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}

fn verify_signature(signature: &str, body: &[u8]) -> bool {
    let Some((t, v1)) = signature
        .split_once(',')
        .and_then(|(t, v)| Some((t.strip_prefix("t=")?, v.strip_prefix("v1=")?)))
    else {
        return false;
    };
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET.as_bytes());
    let mut signed = format!("{t}.").into_bytes();
    signed.extend_from_slice(body);
    hex::decode(v1).is_ok_and(|mac| ring::hmac::verify(&key, &signed, &mac).is_ok())
}

#[test]
fn alarms_are_raised_stored_notified_and_handled() {
    let scratch = tempfile::tempdir().expect("temp dir");
    let secret = scratch.path().join("webhook.secret");
    std::fs::write(&secret, SECRET).expect("secret file");
    let hook = Webhook::start();
    let am_hook = Webhook::start();
    let am = Alertmanager::start(scratch.path(), am_hook.addr);
    let mut platform = Platform::start(
        0,
        vec![
            (
                "PYLON_ALARM_WEBHOOKS".into(),
                format!("http://{}/pylon", hook.addr),
            ),
            (
                "PYLON_ALARM_WEBHOOK_SECRET_FILE".into(),
                secret.display().to_string(),
            ),
            ("PYLON_ALERTMANAGERS".into(), format!("http://{}", am.addr)),
            ("PYLON_ALARM_CHECK_SECS".into(), "1".into()),
        ],
    );
    // Heartbeats every 2 s: a silent pile is closed after 6 s.
    platform.add_edge_with("e1", vec!["--heartbeat-interval".into(), "2".into()]);
    platform.wait_owned();
    let target = platform.target(0);
    let faulty = pile_text(1);

    let rt = runtime();
    let mut conn = rt.block_on(connect(&target, 1)).expect("login");
    // Emergency stop and door open: two alarms, one per fault bit.
    rt.block_on(conn.send(&realtime_with_faults(pile(1), 0b1_0000_0000_0001)))
        .expect("send");
    let raised = wait("two gun fault alarms", || {
        let open = alarms(&platform, &format!("pile={faulty}&kind=gun_fault"));
        (open.len() == 2).then_some(open)
    });
    let texts: Vec<&str> = raised.iter().filter_map(|a| a["text"].as_str()).collect();
    assert!(
        texts.iter().any(|t| t.contains("emergency stop")),
        "{texts:?}"
    );
    assert!(texts.iter().any(|t| t.contains("door open")), "{texts:?}");
    assert!(raised.iter().all(|a| a["state"] == "open"));
    // The same bits again: no new alarm.
    rt.block_on(conn.send(&realtime_with_faults(pile(1), 0b1_0000_0000_0001)))
        .expect("send");
    // Healthy again: both resolved by the system.
    rt.block_on(conn.send(&idle_realtime_frame(pile(1))))
        .expect("send");
    wait("the fault alarms resolved", || {
        alarms(&platform, &format!("pile={faulty}&kind=gun_fault"))
            .is_empty()
            .then_some(())
    });
    let resolved = alarms(
        &platform,
        &format!("pile={faulty}&kind=gun_fault&state=resolved"),
    );
    assert_eq!(resolved.len(), 2, "{resolved:?}");
    assert!(resolved.iter().all(|a| a["resolved_by"] == "system"));

    // A pile that stops heartbeating is closed by the edge: offline alarm; back: resolved.
    rt.block_on(conn.send(&realtime_with_faults(pile(1), 0b10)))
        .expect("send");
    let offline = wait("the offline alarm", || {
        alarms(&platform, &format!("pile={faulty}&kind=pile_offline"))
            .into_iter()
            .next()
    });
    assert_eq!(offline["severity"], "critical");
    assert!(
        offline["text"]
            .as_str()
            .is_some_and(|t| t.contains("heartbeat")),
        "{offline}"
    );
    drop(conn);
    let mut conn = rt.block_on(connect(&target, 1)).expect("login again");
    rt.block_on(conn.send(&heartbeat_frame(pile(1))))
        .expect("send");
    wait("the offline alarm resolved", || {
        alarms(&platform, &format!("pile={faulty}&kind=pile_offline"))
            .is_empty()
            .then_some(())
    });

    // The rectifier fault (bit 2) is still open: acknowledged, then resolved, by hand.
    let rectifier = wait("the rectifier alarm", || {
        alarms(&platform, &format!("pile={faulty}&kind=gun_fault"))
            .into_iter()
            .next()
    });
    let id = rectifier["id"].as_i64().expect("alarm id");
    let (code, acked) = op(
        &platform,
        "POST",
        &format!("/v1/alarms/{id}/ack"),
        Some(json!({"note": "crew on the way"})),
    );
    assert_eq!(code, 200, "{acked}");
    assert_eq!(acked["state"], "acknowledged");
    assert_eq!(acked["acked_by"], "bootstrap");
    // A viewer could not; a wrong id is 404; resolving twice is a conflict.
    let (code, _) = op(
        &platform,
        "POST",
        "/v1/alarms/999999/resolve",
        Some(json!({})),
    );
    assert_eq!(code, 404);
    let ctl = |args: &[&str]| {
        let out = std::process::Command::new(pylon_tests::binary("pylonctl"))
            .args(args)
            .env(
                "PYLON_ENDPOINT",
                format!("http://{}", platform.control.http),
            )
            .env("PYLON_TOKEN", ADMIN_TOKEN)
            .env_remove("PYLON_APP_ENDPOINT")
            .env("XDG_CONFIG_HOME", scratch.path())
            .env("HOME", scratch.path())
            .output()
            .expect("running pylonctl");
        assert!(
            out.status.success(),
            "pylonctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let listed = ctl(&["alarms", "list"]);
    assert!(
        listed.contains("gun_fault") && listed.contains("acknowledged"),
        "{listed}"
    );
    let done = ctl(&[
        "alarms",
        "resolve",
        &id.to_string(),
        "--note",
        "replaced the module",
    ]);
    assert!(done.contains("resolved"), "{done}");
    let (code, _) = op(
        &platform,
        "POST",
        &format!("/v1/alarms/{id}/resolve"),
        Some(json!({})),
    );
    assert_eq!(code, 409);

    // Every notification signed; raised, acknowledged and resolved all sent.
    let posts = wait("the webhook notifications", || {
        let posts = hook.posts();
        let events: Vec<String> = posts
            .iter()
            .map(|p| {
                format!(
                    "{}:{}",
                    p.body["event"].as_str().unwrap_or(""),
                    p.body["alarm"]["kind"].as_str().unwrap_or("")
                )
            })
            .collect();
        ([
            "raised:gun_fault",
            "resolved:gun_fault",
            "raised:pile_offline",
            "resolved:pile_offline",
            "acknowledged:gun_fault",
        ]
        .iter()
        .all(|e| events.iter().any(|x| x == e)))
        .then_some(posts)
    });
    for post in &posts {
        let signature = post
            .signature
            .as_deref()
            .expect("every webhook call is signed");
        assert!(
            verify_signature(signature, &post.raw),
            "bad signature {signature}"
        );
        assert!(!verify_signature(signature, b"{\"forged\":true}"));
    }

    // Alertmanager got them through its API and routed them to its receiver.
    wait("Alertmanager's notification", || {
        am_hook
            .received()
            .iter()
            .any(|n| {
                n["alerts"].as_array().is_some_and(|a| {
                    a.iter().any(|a| {
                        a["labels"]["alertname"] == "PylonGunFault"
                            && a["labels"]["pile"] == faulty.as_str()
                    })
                })
            })
            .then_some(())
    });
    drop(conn);

    // An edge killed (its lease lapses, it never said it was leaving): a platform alarm.
    platform.edges[0].kill();
    let gone = wait("the edge_gone alarm", || {
        alarms(&platform, "kind=edge_gone").into_iter().next()
    });
    assert_eq!(gone["subject"], "edge e1");
    assert_eq!(gone["severity"], "critical");
}

#[test]
fn the_console_in_a_real_browser() {
    let platform = Platform::start(1, vec![]);
    let (code, body) = op(
        &platform,
        "POST",
        "/v1/admin/users",
        Some(json!({"name": "ana", "role": "operator", "password": "a-long-password-1"})),
    );
    assert!(code == 200 || code == 201, "{body}");
    let target = platform.target(0);
    let rt = runtime();
    // Three piles online: idle, charging (status 3), faulted (emergency stop).
    let mut idle = rt.block_on(connect(&target, 1)).expect("login");
    let mut charging = rt.block_on(connect(&target, 2)).expect("login");
    let mut faulted = rt.block_on(connect(&target, 3)).expect("login");
    rt.block_on(idle.send(&idle_realtime_frame(pile(1))))
        .expect("send");
    let mut busy = idle_realtime_frame(pile(2));
    if let pylon_proto::ykc::Frame::RealtimeData(r) = &mut busy {
        r.status = 3;
        r.output_voltage = pylon_proto::ykc::Scaled(3_800);
        r.output_current = pylon_proto::ykc::Scaled(200);
        r.soc = 55;
    }
    rt.block_on(charging.send(&busy)).expect("send");
    rt.block_on(faulted.send(&realtime_with_faults(pile(3), 1)))
        .expect("send");
    wait("the faulted pile's alarm", || {
        (!alarms(&platform, &format!("pile={}&kind=gun_fault", pile_text(3))).is_empty())
            .then_some(())
    });
    let overview = wait("three piles online", || {
        let (code, o) = op(&platform, "GET", "/v1/overview", None);
        (code == 200
            && o["piles"]["online"] == 3
            && o["piles"]["charging"] == 1
            && o["piles"]["faulted"] == 1)
            .then_some(o)
    });
    // Sessions per executor, as the edge reports them (two executors, three sessions).
    wait("the edge's sessions per executor", || {
        let (_, o) = op(&platform, "GET", "/v1/overview", None);
        let executors: Vec<u64> = o["edges"][0]["executors"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_u64).collect())
            .unwrap_or_default();
        (executors.len() == 2 && executors.iter().sum::<u64>() == 3).then_some(())
    });

    let log = platform.dir.path().join("chromedriver.log");
    rt.block_on(async {
        let browser = Browser::start(&log).await;
        let base = format!("http://{}", platform.control.http);
        browser
            .client
            .goto(&format!("{base}/console/"))
            .await
            .expect("the console");
        browser.fill("#login-user", "ana").await;
        browser.fill("#login-password", "a-long-password-1").await;
        browser.click("#login-submit").await;

        // Overview: every count as the API gives it (and live over SSE).
        for (key, value) in [
            ("total", &overview["piles"]["total"]),
            ("online", &overview["piles"]["online"]),
            ("offline", &overview["piles"]["offline"]),
            ("charging", &overview["piles"]["charging"]),
            ("faulted", &overview["piles"]["faulted"]),
            ("alarms-open", &overview["alarms"]["open"]),
        ] {
            browser
                .wait_text(&format!("[data-count=\"{key}\"]"), &value.to_string())
                .await;
        }
        browser.wait_text("#live", "live").await;
        browser.screenshot("overview").await;

        // The faulted pile's page: online, its gun in fault.
        browser
            .client
            .goto(&format!("{base}/console/#/piles/{}", pile_text(3)))
            .await
            .expect("pile page");
        browser.wait_text("[data-field=\"online\"]", "online").await;
        browser
            .wait_text("[data-gun=\"01\"] [data-field=\"status\"]", "fault")
            .await;
        browser.screenshot("pile").await;
        browser
            .client
            .goto(&format!("{base}/console/#/piles/{}", pile_text(2)))
            .await
            .expect("pile page");
        browser
            .wait_text("[data-gun=\"01\"] [data-field=\"status\"]", "charging")
            .await;
        browser.screenshot("pile-charging").await;

        // Alarms: the fault is listed and acknowledged from the page.
        let alarm = alarms(&platform, &format!("pile={}&kind=gun_fault", pile_text(3)))
            .into_iter()
            .next()
            .expect("the alarm");
        let id = alarm["id"].as_i64().expect("id");
        browser
            .client
            .goto(&format!("{base}/console/#/alarms"))
            .await
            .expect("alarms page");
        let row = format!("tr[data-alarm=\"{id}\"]");
        browser
            .wait_text(&format!("{row} [data-field=\"state\"]"), "open")
            .await;
        browser.screenshot("alarms").await;

        // A platform alarm whose text is markup shows as text: nothing of it runs.
        let (code, raised) = op(
            &platform,
            "POST",
            "/v1/alarms",
            Some(json!({
                "key": "test:markup", "kind": "test", "severity": "warning",
                "subject": "<b>subject</b>",
                "text": "<img src=x onerror=\"document.title='pwned'\">"
            })),
        );
        assert_eq!(code, 201, "{raised}");
        let markup = raised["id"].as_i64().expect("id");
        browser.client.refresh().await.expect("reload");
        browser
            .wait_text(
                &format!("tr[data-alarm=\"{markup}\"] [data-field=\"state\"]"),
                "open",
            )
            .await;
        let injected = browser
            .client
            .find_all(fantoccini::Locator::Css("img[src='x'], b"))
            .await
            .expect("a query");
        assert!(injected.is_empty(), "markup from an alarm became elements");
        assert_ne!(browser.client.title().await.unwrap_or_default(), "pwned");
        browser
            .click(&format!("{row} button[data-action=\"ack\"]"))
            .await;
        browser
            .wait_text(&format!("{row} [data-field=\"state\"]"), "acknowledged")
            .await;
        let (_, stored) = op(&platform, "GET", &format!("/v1/alarms/{id}"), None);
        assert_eq!(stored["state"], "acknowledged");
        assert_eq!(stored["acked_by"], "ana");

        // Platform: the edge drained from the page drains.
        browser
            .client
            .goto(&format!("{base}/console/#/platform"))
            .await
            .expect("platform page");
        let edge_row = "tr[data-edge=\"e1\"]";
        browser
            .wait_text(&format!("{edge_row} [data-field=\"draining\"]"), "no")
            .await;
        browser
            .click(&format!("{edge_row} button[data-action=\"drain\"]"))
            .await;
        browser
            .wait_text(&format!("{edge_row} [data-field=\"draining\"]"), "yes")
            .await;
        let edges = platform.control.get("/v1/admin/edges");
        assert_eq!(edges[0]["draining"], true, "{edges}");
        browser.screenshot("platform").await;
        browser
            .click(&format!("{edge_row} button[data-action=\"undrain\"]"))
            .await;
        browser
            .wait_text(&format!("{edge_row} [data-field=\"draining\"]"), "no")
            .await;

        // The other pages render (screenshots to look at).
        for (page, name) in [
            ("#/piles?state=online", "piles"),
            ("#/stations", "stations"),
            ("#/orders", "orders"),
        ] {
            browser
                .client
                .goto(&format!("{base}/console/{page}"))
                .await
                .expect("page");
            tokio::time::sleep(Duration::from_millis(1500)).await;
            browser.screenshot(name).await;
        }
        browser.close().await;
    });
    drop((idle, charging, faulted));
}
