//! The SYN-flood guard in the real kernel, on a veth pair between two network namespaces
//! this test creates (and removes, even when it fails), in generic and native XDP mode.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener};
use std::time::{Duration, Instant};

use pylon_ebpf::netns::{in_netns, Pair};

use aya::programs::XdpMode;
use pylon_ebpf::synguard::{GuardConfig, SynGuard};
use socket2::{Domain, Socket, Type};

const SERVER: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const FLOODER: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
const CHARGER: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 3);
const PORT: u16 = 8768;

/// Starts `n` connections from `source` without waiting for them (each sends a SYN).
fn syns(source: Ipv4Addr, n: usize) -> Vec<Socket> {
    let server = SocketAddr::V4(SocketAddrV4::new(SERVER, PORT));
    (0..n)
        .map(|_| {
            let s = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
            s.bind(&SocketAddr::V4(SocketAddrV4::new(source, 0)).into())
                .expect("bind source");
            s.set_nonblocking(true).expect("nonblocking");
            let _ = s.connect(&server.into());
            s
        })
        .collect()
}

/// Connects from `source`, waiting up to `limit`.
fn connects(source: Ipv4Addr, limit: Duration) -> bool {
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    s.bind(&SocketAddr::V4(SocketAddrV4::new(source, 0)).into())
        .expect("bind source");
    s.connect_timeout(
        &SocketAddr::V4(SocketAddrV4::new(SERVER, PORT)).into(),
        limit,
    )
    .is_ok()
}

fn guard_holds(mode: XdpMode) {
    let pair = Pair::new("sg");
    // The server: a listener and the guard on its side of the veth.
    let (listener, mut guard) = in_netns(&pair.server, move || {
        let listener = TcpListener::bind((SERVER, PORT)).expect("listen");
        let mut guard = SynGuard::load().expect("loading the guard");
        guard
            .set_limit(GuardConfig {
                rate_per_sec: 20,
                burst: 10,
            })
            .expect("limit");
        guard.watch_port(PORT).expect("port");
        guard.attach("vs", mode).expect("attaching XDP");
        (listener, guard)
    });
    // One source floods (500 SYNs at once); a charger on another address connects
    // meanwhile, within its own budget.
    let client = pair.client.clone();
    let (flood, charger_ok) = in_netns(&client, || {
        let flood = syns(FLOODER, 500);
        let ok = (0..8)
            .filter(|_| connects(CHARGER, Duration::from_secs(2)))
            .count();
        (flood, ok)
    });
    let counts = guard.counts();
    assert_eq!(
        charger_ok, 8,
        "{mode:?}: the charger's connections: {counts:?}"
    );
    assert!(counts.dropped_rate >= 450, "{mode:?}: {counts:?}");
    drop(flood);
    // Blocklisted: nothing of that source gets through.
    guard.block(CHARGER).expect("block");
    let blocked = in_netns(&client, || connects(CHARGER, Duration::from_millis(700)));
    assert!(!blocked, "{mode:?}: a blocklisted source connected");
    assert!(guard.counts().dropped_blocked >= 1, "{mode:?}");
    guard.unblock(CHARGER).expect("unblock");
    assert!(in_netns(&client, || connects(
        CHARGER,
        Duration::from_secs(2)
    )));
    drop(listener);
}

#[test]
fn the_guard_limits_syns_per_source_and_drops_blocklisted_ones() {
    if !pylon_ebpf::netns::kernel_test_can_run(1) {
        return;
    }
    let started = Instant::now();
    guard_holds(XdpMode::Skb);
    guard_holds(XdpMode::Driver);
    eprintln!("both modes in {:?}", started.elapsed());
}
