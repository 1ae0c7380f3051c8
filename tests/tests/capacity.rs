//! `pylonctl capacity` as an operator runs it: `plan` from the built-in calibration, and
//! `forecast` from a running platform's fleet history (sampled every second here).

use std::time::Duration;

use pylon_bench::charger::{ChargerConn, Target};
use pylon_tests::control::ADMIN_TOKEN;
use pylon_tests::platform::{pile, runtime, Platform, FIRST_PILE};
use pylon_tests::{pylonctl, wait_for};
use serde_json::Value;

#[test]
fn plan_sizes_a_fleet_from_the_calibration() {
    let (ok, text) = pylonctl(&[
        "capacity",
        "plan",
        "--piles",
        "1500000",
        "--tls-share",
        "0.8",
        "--charging-share",
        "0.15",
        "--heartbeat",
        "10",
    ]);
    assert!(ok, "{text}");
    for line in [
        "edge hosts",
        "app instances",
        "store",
        "registry (etcd)",
        "network",
    ] {
        assert!(text.contains(line), "{line}: {text}");
    }
    let hosts = |piles: &str, sites: &str| -> Value {
        let (ok, text) = pylonctl(&[
            "capacity", "plan", "--piles", piles, "--sites", sites, "-o", "json",
        ]);
        assert!(ok, "{text}");
        serde_json::from_str::<Value>(&text).expect("JSON")["plan"].clone()
    };
    let small = hosts("100000", "1");
    let large = hosts("1500000", "1");
    let two_sites = hosts("1500000", "2");
    let n = |v: &Value, k: &str| v[k].as_f64().unwrap_or(-1.0);
    assert!(
        n(&small, "edge_hosts_per_site") >= 2.0,
        "one host to spare: {small}"
    );
    assert!(n(&large, "edge_hosts_per_site") > n(&small, "edge_hosts_per_site"));
    assert!(n(&large, "heartbeats_per_sec") == 150_000.0, "{large}");
    assert_eq!(
        n(&two_sites, "registry_members"),
        2.0 * n(&large, "registry_members")
    );
    let (ok, text) = pylonctl(&["capacity", "plan", "--piles", "10", "--tls-share", "2"]);
    assert!(!ok && text.contains("between 0 and 1"), "{text}");
}

#[test]
fn forecast_fits_the_fleets_history_and_finds_when_the_edges_run_out() {
    let platform = Platform::start(1, vec![("PYLON_HISTORY_SAMPLE_SECS".into(), "1".into())]);
    platform.app.add_piles(FIRST_PILE, 12);
    let rt = runtime();
    let target = Target {
        addr: platform.edges[0].tcp,
        tls: None,
    };
    // Piles come online a few at a time, a second or more apart.
    let mut chargers = Vec::new();
    for step in 0..4u64 {
        for n in step * 3..step * 3 + 3 {
            let c = rt.block_on(async {
                let mut c = ChargerConn::connect(&target, None).await.expect("connect");
                c.login(pile(n)).await.expect("login");
                c
            });
            chargers.push(c);
        }
        std::thread::sleep(Duration::from_millis(1500));
    }
    let control = format!("http://{}", platform.control.http);
    let forecast_as = |output: &str| {
        pylonctl(&[
            "capacity",
            "forecast",
            "--endpoint",
            &control,
            "--token",
            ADMIN_TOKEN,
            "-o",
            output,
        ])
    };
    let forecast = wait_for("a forecast", Duration::from_secs(20), || {
        let (ok, text) = forecast_as("json");
        let v: Value = serde_json::from_str(&text).ok()?;
        (ok && v["forecast"]["online_now"] == 12.0).then_some(v)
    });
    let f = &forecast["forecast"];
    assert!(f["samples"].as_u64().unwrap_or(0) >= 4, "{forecast}");
    assert!(
        f["per_day"].as_f64().unwrap_or(0.0) > 0.0,
        "growing: {forecast}"
    );
    assert_eq!(forecast["edges"], 1);
    assert!(f["runs_out_in_days"].as_f64().is_some(), "{forecast}");
    let (ok, text) = forecast_as("table");
    assert!(
        ok && text.contains("piles online now") && text.contains("runs out"),
        "{text}"
    );
    drop(chargers);
}
