//! The edge with its eBPF listener selection (`--ebpf on`): a connection is served by the
//! executor on the CPU that received its SYN. On loopback that is the connecting
//! thread's CPU, so pinned client threads decide it.

use std::net::TcpStream;
use std::time::Duration;

use pylon_ebpf::netns::pin_to;

use pylon_tests::certs::TestCerts;
use pylon_tests::edge::{EdgeOptions, EdgeProcess};
use pylon_tests::wait_for;

fn connect_from(cpu: usize, addr: std::net::SocketAddr, n: usize) -> Vec<TcpStream> {
    std::thread::spawn(move || {
        pin_to(cpu);
        (0..n)
            .map(|_| TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect"))
            .collect::<Vec<_>>()
    })
    .join()
    .expect("client thread")
}

#[test]
fn each_executor_serves_the_connections_of_its_cpu() {
    if !pylon_ebpf::netns::kernel_test_can_run(2) {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let certs = TestCerts::generate(dir.path()).expect("certs");
    let edge = EdgeProcess::start(EdgeOptions {
        certs: &certs,
        dir: dir.path(),
        executors: 2,
        extra: vec![
            "--allow-all".into(),
            "--pin-cpus".into(),
            "--ebpf".into(),
            "on".into(),
        ],
        with_rsa: false,
        tls_only: false,
        log_filter_from_file: false,
    });
    let on = |executor: &str| {
        edge.metric(
            "pylon_edge_connections",
            &[&format!("executor=\"{executor}\""), "transport=\"tcp\""],
        )
    };
    // Every connection from CPU 1 to executor 1 (plain SO_REUSEPORT would split them).
    let held = connect_from(1, edge.tcp, 300);
    wait_for(
        "300 connections on executor 1",
        Duration::from_secs(10),
        || (on("1") == 300.0).then_some(()),
    );
    assert_eq!(on("0"), 0.0);
    drop(held);
    wait_for("the connections to close", Duration::from_secs(10), || {
        (on("0") + on("1") == 0.0).then_some(())
    });
    // Clients alternating CPUs: an even spread (the bar is max/min <= 1.1).
    let mut held = Vec::new();
    for round in 0..10 {
        held.extend(connect_from(round % 2, edge.tcp, 200));
    }
    wait_for("2,000 connections", Duration::from_secs(15), || {
        (on("0") + on("1") == 2000.0).then_some(())
    });
    let (a, b) = (on("0"), on("1"));
    assert!(a.max(b) / a.min(b).max(1.0) <= 1.1, "spread {a} / {b}");
    let by_cpu = edge.metric(
        "pylon_edge_ebpf_selections",
        &["transport=\"tcp\"", "outcome=\"by_cpu\""],
    );
    // (The harness's readiness probe connected too.)
    assert!(by_cpu >= 2300.0, "{by_cpu}");
    let fallback = edge.metric(
        "pylon_edge_ebpf_selections",
        &["transport=\"tcp\"", "outcome=\"fallback\""],
    );
    // Only the harness's unpinned readiness probe may have landed on a CPU without an
    // executor (hosts with more than two CPUs).
    assert!(fallback <= 1.0, "{fallback}");
    // The kernel's own view of those connections (tp_btf), on the edge's /metrics.
    let established = edge.metric("pylon_edge_tcp_state_entries", &["state=\"established\""]);
    assert!(established >= 2300.0, "{established}");
    drop(held);
}

/// Mounts a bpffs on a temporary directory; unmounted on drop.
struct Bpffs(tempfile::TempDir);

impl Bpffs {
    fn mount() -> Bpffs {
        let dir = tempfile::tempdir().expect("temp dir");
        let status = std::process::Command::new("mount")
            .args(["-t", "bpf", "bpf"])
            .arg(dir.path())
            .status()
            .expect("mount");
        assert!(status.success(), "mounting a bpffs");
        Bpffs(dir)
    }
}

impl Drop for Bpffs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.0.path())
            .status();
    }
}

#[test]
fn two_edge_processes_share_one_listener_array() {
    if !pylon_ebpf::netns::kernel_test_can_run(2) {
        return;
    }
    let bpffs = Bpffs::mount();
    let dir = tempfile::tempdir().expect("temp dir");
    let certs = TestCerts::generate(dir.path()).expect("certs");
    let port = pylon_tests::free_port();
    let addr = pylon_tests::local(port);
    // One executor each, on CPU 0 and CPU 1, one port, one shared array (this machine's
    // file limit is why production-sized hosts here run several processes).
    let start = |cpu: usize| {
        EdgeProcess::start(EdgeOptions {
            certs: &certs,
            dir: dir.path(),
            executors: 1,
            extra: vec![
                "--allow-all".into(),
                "--pin-cpus".into(),
                "--first-cpu".into(),
                cpu.to_string(),
                "--ebpf".into(),
                "on".into(),
                "--ebpf-pin-dir".into(),
                bpffs.0.path().display().to_string(),
                "--tcp-listen".into(),
                addr.to_string(),
            ],
            with_rsa: false,
            tls_only: false,
            log_filter_from_file: false,
        })
    };
    let a = start(0);
    let b = start(1);
    let on = |edge: &EdgeProcess| {
        edge.metric(
            "pylon_edge_connections",
            &["executor=\"0\"", "transport=\"tcp\""],
        )
    };
    let held = connect_from(1, addr, 200);
    wait_for(
        "CPU 1's connections on the second process",
        Duration::from_secs(10),
        || (on(&b) == 200.0).then_some(()),
    );
    assert_eq!(on(&a), 0.0);
    drop(held);
    wait_for("the connections to close", Duration::from_secs(10), || {
        (on(&a) + on(&b) == 0.0).then_some(())
    });
    let held = connect_from(0, addr, 200);
    wait_for(
        "CPU 0's connections on the first process",
        Duration::from_secs(10),
        || (on(&a) == 200.0).then_some(()),
    );
    assert_eq!(on(&b), 0.0);
    drop(held);
}
