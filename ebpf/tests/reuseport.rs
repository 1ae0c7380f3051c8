//! The SK_REUSEPORT program in the real kernel: connections go to the listener of the
//! CPU that handled their SYN. On loopback the SYN is processed on the connecting
//! thread's CPU, so pinning the client decides the CPU.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use pylon_ebpf::netns::pin_to;

use pylon_ebpf::reuseport::CpuListenerSelector;
use socket2::{Domain, Socket, Type};

fn listener(addr: SocketAddr) -> TcpListener {
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    s.set_reuse_port(true).expect("SO_REUSEPORT");
    s.bind(&addr.into()).expect("bind");
    s.listen(1024).expect("listen");
    s.set_nonblocking(true).expect("nonblocking");
    s.into()
}

fn drain(l: &TcpListener) -> usize {
    let mut n = 0;
    while l.accept().is_ok() {
        n += 1;
    }
    n
}

#[test]
fn connections_go_to_the_listener_of_the_cpu_that_got_the_syn() {
    if !pylon_ebpf::netns::kernel_test_can_run(2) {
        return;
    }
    let probe = TcpListener::bind("127.0.0.1:0").expect("probe");
    let addr = probe.local_addr().expect("addr");
    drop(probe);
    let l0 = listener(addr);
    let l1 = listener(addr);
    let mut selector = CpuListenerSelector::load().expect("loading the program");
    selector.add_listener(0, &l0).expect("listener 0");
    selector.add_listener(1, &l1).expect("listener 1");
    selector.attach(&l0).expect("attach");

    let connect_from = |cpu: usize, n: usize| {
        std::thread::spawn(move || {
            pin_to(cpu);
            (0..n)
                .map(|_| {
                    TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect")
                })
                .collect::<Vec<_>>()
        })
        .join()
        .expect("client thread")
    };
    // All from CPU 0: all to listener 0 (without the program, the hash splits them).
    let held = connect_from(0, 200);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!((drain(&l0), drain(&l1)), (200, 0));
    drop(held);
    // Alternating CPUs: an exact split.
    let mut held = Vec::new();
    for round in 0..10 {
        held.extend(connect_from(round % 2, 100));
    }
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!((drain(&l0), drain(&l1)), (500, 500));
    let s = selector.selections();
    assert_eq!((s.by_cpu, s.fallback), (1200, 0));
}
