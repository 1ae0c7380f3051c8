//! The tp_btf TCP metrics in the real kernel: connections to a watched port are counted,
//! connections to other ports, or in another network namespace, are not.

use std::net::{TcpListener, TcpStream};

use pylon_ebpf::tcpmetrics::TcpMetrics;

#[test]
fn state_changes_on_watched_ports_are_counted() {
    if !pylon_ebpf::netns::kernel_test_can_run(1) {
        return;
    }
    let watched = TcpListener::bind("127.0.0.1:0").expect("listener");
    let other = TcpListener::bind("127.0.0.1:0").expect("listener");
    let port = watched.local_addr().expect("addr").port();
    let metrics = TcpMetrics::start(&[port]).expect("loading the tp_btf programs");
    let before = metrics.counts();
    for listener in [&watched, &other] {
        let addr = listener.local_addr().expect("addr");
        for _ in 0..10 {
            let client = TcpStream::connect(addr).expect("connect");
            let (mut server, _) = listener.accept().expect("accept");
            drop(client);
            // The client's FIN has arrived (CLOSE_WAIT) before the server closes.
            let mut rest = Vec::new();
            let _ = std::io::Read::read_to_end(&mut server, &mut rest);
            drop(server);
        }
    }
    let entered = |c: &pylon_ebpf::tcpmetrics::TcpCounts, state: &str| {
        c.entered
            .iter()
            .find(|(name, _)| *name == state)
            .map_or(0, |(_, n)| *n)
    };
    let after = metrics.counts();
    let delta = |state: &str| entered(&after, state) - entered(&before, state);
    // The 10 server-side sockets of the watched port (their handshake, and their close
    // after the client's), and none of the other port's.
    for state in ["syn_recv", "established", "close_wait", "last_ack"] {
        assert_eq!(delta(state), 10, "{state}: {after:?}");
    }

    // The same port in another namespace is not ours.
    let pair = pylon_ebpf::netns::Pair::new("tm");
    let before = metrics.counts();
    pylon_ebpf::netns::in_netns(&pair.server, move || {
        let l = TcpListener::bind(("127.0.0.1", port)).expect("listener in the other namespace");
        let ip = std::process::Command::new("ip")
            .args(["link", "set", "lo", "up"])
            .status();
        drop(ip);
        for _ in 0..5 {
            let c = TcpStream::connect(l.local_addr().expect("addr")).expect("connect");
            let (s, _) = l.accept().expect("accept");
            drop((c, s));
        }
    });
    let after = metrics.counts();
    assert_eq!(
        entered(&after, "established"),
        entered(&before, "established"),
        "{after:?}"
    );
}
