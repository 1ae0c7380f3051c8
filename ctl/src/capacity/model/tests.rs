use super::*;
use pylon_proto::api::capacity::{AppCosts, EdgeCosts, Machine};

fn calibration() -> Calibration {
    let costs = |hb: f64, setup: f64, user: f64, kernel: f64| TransportCosts {
        cpu_ms_per_1000_heartbeats: hb,
        cpu_ms_per_setup: setup,
        idle_cpu_per_executor: 0.0,
        user_bytes_per_session: user,
        kernel_bytes_per_session: kernel,
    };
    Calibration {
        measured_at: 0,
        machine: Machine {
            cpu: "test".into(),
            cores: 2,
            memory_gib: 24.0,
            kernel: "6".into(),
        },
        sessions: 10_000,
        heartbeat_secs: 10.0,
        edge: EdgeCosts {
            tls: costs(40.0, 1.0, 10_000.0, 6_000.0),
            tcp: costs(30.0, 0.1, 4_000.0, 6_000.0),
        },
        app: AppCosts {
            backend: "postgres".into(),
            cpu_ms_per_pile_sec: 0.001,
            cpu_ms_per_frame: 0.1,
            row_writes_per_frame: 2.0,
            transactions_per_frame: 1.5,
            frames_per_record: 300.0,
        },
        check: None,
    }
}

#[test]
fn rates_follow_the_fleets_habits() {
    let demand = Demand {
        piles: 1_000_000,
        ..Demand::default()
    };
    let p = plan(&calibration(), &demand, &Hardware::default());
    assert_eq!(p.heartbeats_per_sec, 100_000.0);
    // 850,000 idle piles every 300 s, 150,000 charging guns 3 frames per 15 s, and the
    // charges' own frames.
    let records = 150_000.0 / 3600.0;
    let frames = 850_000.0 / 300.0 + 150_000.0 * 3.0 / 15.0 + records * 4.0;
    assert!((p.business_frames_per_sec - frames).abs() < 1e-6);
    assert!((p.records_per_sec - records).abs() < 1e-9);
    // Edge CPU: every frame at the mixed heartbeat cost (0.8 x 40 + 0.2 x 30 ms per 1000).
    let edge = (100_000.0 + frames) * 0.038 / 1000.0;
    assert!(
        (p.edge_cpu_cores - edge).abs() < 1e-9,
        "{}",
        p.edge_cpu_cores
    );
    // Memory: 0.8 x 16 KB + 0.2 x 10 KB per session.
    let gib = 1_000_000.0 * 14_800.0 / f64::from(1u32 << 30);
    assert!((p.edge_memory_gib - gib).abs() < 1e-9);
    assert!((p.store_row_writes_per_sec - frames * 2.0).abs() < 1e-6);
    assert!((p.store_transactions_per_sec - frames * 1.5).abs() < 1e-6);
    // App: upkeep of a million connected piles plus the frames.
    let app = (1_000_000.0 * 0.001 + frames * 0.1) / 1000.0;
    assert!((p.app_cpu_cores - app).abs() < 1e-9);
}

#[test]
fn hosts_survive_losing_one_and_the_bound_is_named() {
    let cal = calibration();
    let small = Hardware {
        edge_cores: 4,
        edge_memory_gib: 6.0,
        ..Hardware::default()
    };
    let demand = Demand {
        piles: 1_000_000,
        ..Demand::default()
    };
    let p = plan(&cal, &demand, &small);
    // 13.8 GiB at 60 % of 6 GiB per host is 4 hosts' worth; one more to lose one.
    assert_eq!((p.edge_hosts_per_site, p.edge_bound_by), (5, "memory"));
    let survivors = f64::from(p.edge_hosts_per_site - 1);
    assert!(p.edge_memory_gib / survivors <= 6.0 * 0.6);
    assert!(p.edge_cpu_cores / survivors <= 4.0 * 0.6);
    assert_eq!(
        p.sessions_per_host_after_loss,
        (1_000_000.0f64 / survivors).ceil() as u64
    );
    // Setting sessions up is expensive: reconnecting a lost host's share in 5 s bounds it.
    let mut slow = cal.clone();
    slow.edge.tls.cpu_ms_per_setup = 20.0;
    let hurried = Hardware {
        reconnect_secs: 5.0,
        ..small
    };
    let p = plan(&slow, &demand, &hurried);
    assert_eq!(p.edge_bound_by, "reconnect");
    let hosts = f64::from(p.edge_hosts_per_site);
    assert!((p.edge_cpu_cores + p.reconnect_cpu_cores) / (hosts - 1.0) <= 4.0);
}

#[test]
fn more_piles_never_need_fewer_machines_and_two_sites_double_the_registry() {
    let cal = calibration();
    let hw = Hardware::default();
    let mut last = (0, 0);
    for piles in [10_000, 100_000, 500_000, 1_500_000, 5_000_000] {
        let p = plan(
            &cal,
            &Demand {
                piles,
                ..Demand::default()
            },
            &hw,
        );
        assert!(p.edge_hosts_per_site >= last.0 && p.app_instances_per_site >= last.1);
        assert!(p.app_instances_per_site >= 2, "one instance to spare");
        last = (p.edge_hosts_per_site, p.app_instances_per_site);
    }
    let one = plan(&cal, &Demand::default(), &hw);
    let two = plan(&cal, &Demand::default(), &Hardware { sites: 2, ..hw });
    assert_eq!(two.registry_members, 2 * one.registry_members);
    assert_eq!(two.edge_hosts_per_site, one.edge_hosts_per_site);
}

#[test]
fn a_bench_is_predicted_from_its_unit_costs() {
    let cal = calibration();
    let f = cal.edge.tls.predict_bench(100_000, 6, 10.0, 30.0);
    // 300,000 heartbeats at 40 ms per 1,000, and no idle cost.
    assert!((f.cpu_seconds - 12.0).abs() < 1e-9);
    let mut busy = cal.edge.tls.clone();
    busy.idle_cpu_per_executor = 0.01;
    let f = busy.predict_bench(100_000, 6, 10.0, 30.0);
    assert!((f.cpu_seconds - 13.8).abs() < 1e-9);
    assert_eq!(f.user_bytes, 1e9);
}

#[test]
fn a_host_holds_no_more_sessions_than_its_open_file_limit() {
    let demand = Demand {
        piles: 1_500_000,
        ..Demand::default()
    };
    let p = plan(&calibration(), &demand, &Hardware::default());
    assert!(p.sessions_per_host_after_loss <= 1_000_000, "{p:?}");
    let roomy = Hardware {
        max_sessions_per_host: 10_000_000,
        edge_cores: 64,
        edge_memory_gib: 512.0,
        ..Hardware::default()
    };
    assert_eq!(plan(&calibration(), &demand, &roomy).edge_hosts_per_site, 2);
}
