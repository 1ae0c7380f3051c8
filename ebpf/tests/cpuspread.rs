//! Spreading across cores in the real kernel, on a veth pair between two namespaces:
//! every SYN arrives on one CPU (the client is pinned); the per-CPU listener selection
//! alone then gives every connection to that CPU's listener, and with the XDP CPUMAP
//! spreader in front, the two listeners share the connections evenly.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use aya::programs::XdpMode;
use pylon_ebpf::cpuspread::CpuSpreader;
use pylon_ebpf::netns::{in_netns, pin_to, Pair};
use pylon_ebpf::reuseport::CpuListenerSelector;
use socket2::{Domain, Socket, Type};

const SERVER: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const PORT: u16 = 8769;

fn listener() -> TcpListener {
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    s.set_reuse_port(true).expect("SO_REUSEPORT");
    s.bind(&SocketAddr::V4(SocketAddrV4::new(SERVER, PORT)).into())
        .expect("bind");
    s.listen(4096).expect("listen");
    s.set_nonblocking(true).expect("nonblocking");
    s.into()
}

/// Accepts from both listeners until `n` connections came in (or 30 s passed).
fn accept_all(listeners: &[TcpListener; 2], n: usize) -> [usize; 2] {
    let mut counts = [0, 0];
    let deadline = Instant::now() + Duration::from_secs(30);
    while counts.iter().sum::<usize>() < n && Instant::now() < deadline {
        let mut idle = true;
        for (i, l) in listeners.iter().enumerate() {
            while l.accept().is_ok() {
                counts[i] += 1;
                idle = false;
            }
        }
        if idle {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    counts
}

/// `n` connections from a client pinned to CPU 0, accepted as they come.
fn run(pair: &Pair, listeners: &[TcpListener; 2], n: usize) -> [usize; 2] {
    let client = pair.client.clone();
    let connecting = std::thread::spawn(move || {
        in_netns(&client, move || {
            pin_to(0);
            let server = SocketAddr::V4(SocketAddrV4::new(SERVER, PORT));
            for _ in 0..n {
                drop(TcpStream::connect_timeout(&server, Duration::from_secs(3)).expect("connect"));
            }
        })
    });
    let counts = accept_all(listeners, n);
    connecting.join().expect("client");
    counts
}

fn spread(mode: XdpMode) {
    let pair = Pair::new("cs");
    let (listeners, selector, mut spreader) = in_netns(&pair.server, move || {
        let listeners = [listener(), listener()];
        let mut selector = CpuListenerSelector::load().expect("selector");
        selector.add_listener(0, &listeners[0]).expect("listener 0");
        selector.add_listener(1, &listeners[1]).expect("listener 1");
        selector.attach(&listeners[0]).expect("attach selector");
        let spreader = CpuSpreader::load(2).expect("spreader");
        (listeners, selector, spreader)
    });
    // Without the spreader: every SYN on CPU 0, every connection to listener 0.
    assert_eq!(run(&pair, &listeners, 200), [200, 0], "{mode:?}");
    let server = pair.server.clone();
    spreader = in_netns(&server, move || {
        spreader.attach("vs", mode).expect("attaching XDP");
        spreader
    });
    let n = 10_000;
    let [a, b] = run(&pair, &listeners, n);
    assert_eq!(a + b, n, "{mode:?}");
    let ratio = a.max(b) as f64 / a.min(b).max(1) as f64;
    eprintln!(
        "{mode:?}: {a} / {b} (max/min {ratio:.3}), SYNs per CPU {:?}",
        spreader.sent()
    );
    assert!(ratio <= 1.1, "{mode:?}: {a} / {b}");
    drop(selector);
}

#[test]
fn syns_spread_over_cpus_reach_their_cpus_listeners_evenly() {
    if !pylon_ebpf::netns::kernel_test_can_run(2) {
        return;
    }
    spread(XdpMode::Skb);
    spread(XdpMode::Driver);
}
