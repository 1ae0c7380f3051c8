//! The L4 balancer in the real kernel: a client namespace, a balancer namespace and three
//! edge namespaces holding the VIP, joined by veth pairs this test creates and removes.
//! New flows spread over the edges by Maglev; taking an edge out of the table keeps its
//! established flows working and sends it nothing new.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use aya::programs::XdpMode;
use pylon_ebpf::balancer::{Backend, Balancer};
use pylon_ebpf::netns::{
    build_topology, connect_vip, counts, echo_servers, in_netns, link, mac, ping, LB_EDGES, VIP,
    VIP_PORT,
};

const EDGES: usize = LB_EDGES;

fn balance(mode: XdpMode, tag: &str) {
    let t = build_topology(tag);
    let stop = Arc::new(AtomicBool::new(false));
    let accepted = echo_servers(&t, &stop);
    let backends: Vec<Backend> = (0..EDGES)
        .map(|i| {
            let dev = format!("vb{i}");
            Backend {
                name: format!("edge-{i}"),
                ifindex: link(&t.balancer, &dev)["ifindex"].as_u64().unwrap_or(0) as u32,
                mac: mac(&t.edges[i], "vk"),
                src_mac: mac(&t.balancer, &dev),
                active: true,
            }
        })
        .collect();
    let set = backends.clone();
    let mut lb = in_netns(&t.balancer, move || {
        let mut lb = Balancer::load(VIP, VIP_PORT).expect("loading the balancer");
        lb.set_backends(&set).expect("backends");
        lb.attach("vl", mode).expect("attaching XDP");
        lb
    });
    let client = t.client.clone();
    // New flows spread over the three edges.
    in_netns(&client, || {
        for _ in 0..300 {
            let mut s = connect_vip();
            assert!(ping(&mut s));
        }
    });
    let spread = counts(&accepted);
    assert_eq!(spread.iter().sum::<usize>(), 300, "{mode:?}");
    assert!(
        spread.iter().all(|&n| (60..=140).contains(&n)),
        "{mode:?}: {spread:?}"
    );

    // Established flows, then edge-2 leaves the table.
    let mut held = in_netns(&client, || {
        (0..30).map(|_| connect_vip()).collect::<Vec<_>>()
    });
    for s in &mut held {
        assert!(ping(s));
    }
    let on_edge2 = counts(&accepted)[2];
    let mut without = backends.clone();
    without[2].active = false;
    // (Maps are not in a namespace: no need to enter the balancer's.)
    lb.set_backends(&without).expect("backends");
    // Every established flow still works, those on edge-2 included.
    let mut held = in_netns(&client, move || {
        for s in &mut held {
            assert!(
                ping(s),
                "an established flow broke when an edge left the table"
            );
        }
        held
    });
    // New flows avoid edge-2.
    in_netns(&client, || {
        for _ in 0..90 {
            let mut s = connect_vip();
            assert!(ping(&mut s));
        }
    });
    assert_eq!(
        counts(&accepted)[2],
        on_edge2,
        "{mode:?}: edge-2 got new flows"
    );
    let stats = lb.stats();
    assert_eq!(stats.no_backend, 0, "{stats:?}");
    assert!(
        stats.known_flow_packets > 0 && stats.new_flows >= 420,
        "{stats:?}"
    );
    held.clear();
    stop.store(true, Ordering::Relaxed);
    drop(lb);
}

#[test]
fn maglev_spreads_new_flows_and_keeps_established_ones() {
    if !pylon_ebpf::netns::kernel_test_can_run(1) {
        return;
    }
    balance(XdpMode::Skb, "lg");
    balance(XdpMode::Driver, "ln");
}
