//! `pylon-balancer` following a real control plane: etcd, two control replicas and the
//! balancer run in the balancer's namespace (the balancer must see that namespace's
//! interfaces), three edge namespaces hold the VIP, and draining an edge through the
//! admin API takes it out of the Maglev table while its established flows keep working.
//! When the replica the balancer follows is frozen (SIGSTOP), it goes on through the
//! other one.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pylon_ebpf::netns::{
    build_topology, connect_vip, counts, echo_servers, in_netns, mac, ping, LB_EDGES,
};
use pylon_proto::control::membership_client::MembershipClient;
use pylon_proto::control::{KeepAliveRequest, Member, MemberKind, RegisterRequest};
use pylon_tests::control::{ADMIN_TOKEN, CLUSTER_TOKEN};
use pylon_tests::Killed;
use pylon_tests::{binary, wait_for};

/// Stops or continues a process (`ip netns exec` execs the program, so the child is it).
fn freeze(process: &Killed, signal: libc::c_int) {
    // SAFETY: a plain kill(2) on our own child.
    unsafe {
        libc::kill(process.0.id() as libc::pid_t, signal);
    }
}

/// Runs `program` (one of ours by name, or a path such as `etcd` on PATH) in `ns`.
fn spawn_in(
    ns: &str,
    program: impl AsRef<std::ffi::OsStr>,
    args: &[String],
    log: &std::path::Path,
) -> Killed {
    let log = std::fs::File::create(log).expect("log");
    let child = Command::new("ip")
        .args(["netns", "exec", ns])
        .arg(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("spawning in the namespace");
    Killed(child)
}

fn auth<T>(message: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    r.metadata_mut().insert(
        "authorization",
        format!("Bearer {CLUSTER_TOKEN}").parse().expect("ascii"),
    );
    r
}

/// Registers the edges and keeps their leases alive from inside `ns` until `stop`.
fn keep_edges_registered(
    ns: String,
    grpc: String,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        in_netns(&ns.clone(), move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let mut client = loop {
                    match MembershipClient::connect(grpc.clone()).await {
                        Ok(c) => break c,
                        Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                    }
                };
                let mut leases = Vec::new();
                for i in 0..LB_EDGES {
                    let member = Member {
                        id: format!("edge-{i}"),
                        kind: MemberKind::Edge.into(),
                        tcp_address: "10.90.0.1:9000".into(),
                        capacity: 1000,
                        ..Default::default()
                    };
                    let reply = client
                        .register(auth(RegisterRequest {
                            member: Some(member),
                            ttl_seconds: 10,
                        }))
                        .await
                        .expect("register");
                    leases.push((format!("edge-{i}"), reply.into_inner().lease_id));
                }
                while !stop.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    for (id, lease) in &leases {
                        let _ = client
                            .keep_alive(auth(KeepAliveRequest {
                                member_id: id.clone(),
                                lease_id: *lease,
                                load: None,
                                telemetry: None,
                            }))
                            .await;
                    }
                }
            })
        })
    })
}

/// The two control replicas' HTTP and gRPC ports inside the balancer's namespace.
const REPLICAS: [(&str, u16, u16); 2] = [("ca", 17400, 17401), ("cb", 17410, 17411)];
const ETCD: &str = "http://127.0.0.1:12379";

fn admin(ns: &str, port: u16, method: &'static str, path: String) -> (u16, serde_json::Value) {
    in_netns(ns, move || {
        let url = format!("http://127.0.0.1:{port}{path}");
        match pylon_tests::http::agent()
            .request(method, &url)
            .set("authorization", &format!("Bearer {ADMIN_TOKEN}"))
            .call()
        {
            Ok(r) => (r.status(), r.into_json().unwrap_or_default()),
            Err(ureq::Error::Status(c, r)) => (c, r.into_json().unwrap_or_default()),
            Err(_) => (0, serde_json::Value::Null),
        }
    })
}

#[test]
fn the_balancer_follows_the_control_planes_edges_and_drains() {
    if !pylon_ebpf::netns::kernel_test_can_run(1) {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let t = build_topology("pb");
    let stop = Arc::new(AtomicBool::new(false));
    let accepted = echo_servers(&t, &stop);
    let _etcd = spawn_in(
        &t.balancer,
        "etcd",
        &[
            "--data-dir".into(),
            dir.path().join("etcd").display().to_string(),
            "--listen-client-urls".into(),
            ETCD.into(),
            "--advertise-client-urls".into(),
            ETCD.into(),
            "--listen-peer-urls".into(),
            "http://127.0.0.1:12380".into(),
            "--initial-advertise-peer-urls".into(),
            "http://127.0.0.1:12380".into(),
            "--initial-cluster".into(),
            "default=http://127.0.0.1:12380".into(),
        ],
        &dir.path().join("etcd.log"),
    );
    let ns = t.balancer.clone();
    wait_for("etcd", Duration::from_secs(20), || {
        in_netns(&ns, || {
            std::net::TcpStream::connect("127.0.0.1:12379").is_ok()
        })
        .then_some(())
    });
    let controls: Vec<Killed> = REPLICAS
        .iter()
        .map(|(replica, http, grpc)| {
            spawn_in(
                &t.balancer,
                binary("pylon-control"),
                &[
                    "--replica-id".into(),
                    (*replica).into(),
                    "--registry".into(),
                    "etcd".into(),
                    "--etcd".into(),
                    ETCD.into(),
                    "--http-listen".into(),
                    format!("127.0.0.1:{http}"),
                    "--grpc-listen".into(),
                    format!("127.0.0.1:{grpc}"),
                    "--admin-token".into(),
                    ADMIN_TOKEN.into(),
                    "--cluster-token".into(),
                    CLUSTER_TOKEN.into(),
                ],
                &dir.path().join(format!("control-{replica}.log")),
            )
        })
        .collect();
    let (ca, cb) = (REPLICAS[0].1, REPLICAS[1].1);
    // The edges keep their leases through `cb`, which stays up throughout.
    let members = keep_edges_registered(
        t.balancer.clone(),
        "http://127.0.0.1:17411".into(),
        stop.clone(),
    );
    let ns = t.balancer.clone();
    wait_for("three edges registered", Duration::from_secs(20), || {
        let (_, edges) = admin(&ns, ca, "GET", "/v1/admin/edges".into());
        (edges.as_array().map(Vec::len) == Some(LB_EDGES)).then_some(())
    });
    let mut config = String::from(
        "vip = \"10.90.0.1\"\nport = 9000\ninterface = \"vl\"\ncontrol = [\"http://127.0.0.1:17401\", \"http://127.0.0.1:17411\"]\n",
    );
    for (i, edge) in t.edges.iter().enumerate() {
        let m = mac(edge, "vk");
        config.push_str(&format!(
            "[[edges]]\nedge_id = \"edge-{i}\"\ninterface = \"vb{i}\"\nmac = \"{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}\"\n",
            m[0], m[1], m[2], m[3], m[4], m[5]
        ));
    }
    let config_path = dir.path().join("balancer.toml");
    std::fs::write(&config_path, config).expect("config");
    let _balancer = spawn_in(
        &t.balancer,
        binary("pylon-balancer"),
        &[
            "--config".into(),
            config_path.display().to_string(),
            "--admin-listen".into(),
            "127.0.0.1:19200".into(),
            "--token".into(),
            CLUSTER_TOKEN.into(),
        ],
        &dir.path().join("balancer.log"),
    );
    let client = t.client.clone();
    // New flows reach all three edges once the balancer has the table.
    let log = dir.path().join("balancer.log");
    wait_for(
        "connections through the balancer",
        Duration::from_secs(20),
        || {
            let c = client.clone();
            in_netns(&c, || {
                std::net::TcpStream::connect_timeout(
                    &"10.90.0.1:9000".parse().expect("addr"),
                    Duration::from_millis(300),
                )
                .is_ok()
            })
            .then_some(())
        },
    );
    let before = counts(&accepted);
    in_netns(&client, || {
        for _ in 0..150 {
            let mut s = connect_vip();
            assert!(ping(&mut s));
        }
    });
    let spread: Vec<usize> = counts(&accepted)
        .iter()
        .zip(&before)
        .map(|(a, b)| a - b)
        .collect();
    assert!(
        spread.iter().all(|&n| n >= 20),
        "{spread:?}: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );

    // Established flows, then edge-2 is drained through the control plane.
    let mut held = in_netns(&client, || {
        let mut held: Vec<_> = (0..20).map(|_| connect_vip()).collect();
        // Every held flow answered, so every accept has been counted.
        for s in &mut held {
            assert!(ping(s));
        }
        held
    });
    let (code, _) = admin(
        &t.balancer,
        ca,
        "POST",
        "/v1/admin/edges/edge-2/drain".into(),
    );
    assert_eq!(code, 200);
    let on_edge2 = counts(&accepted)[2];
    wait_for(
        "the balancer to take edge-2 out",
        Duration::from_secs(10),
        || {
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .lines()
                .any(|l| {
                    l.contains("edges taking new flows")
                        && l.contains("edge-0")
                        && !l.contains("edge-2")
                })
                .then_some(())
        },
    );
    held = in_netns(&client, move || {
        for s in &mut held {
            assert!(
                ping(s),
                "an established flow broke when its edge was drained"
            );
        }
        held
    });
    in_netns(&client, || {
        for _ in 0..60 {
            let mut s = connect_vip();
            assert!(ping(&mut s));
        }
    });
    assert_eq!(
        counts(&accepted)[2],
        on_edge2,
        "a drained edge got new flows"
    );
    drop(held);

    // The balancer follows `ca` (the first listed). Frozen, `ca` neither answers nor
    // closes; the balancer must notice (HTTP/2 keep-alive) and hear the undrain through
    // `cb`.
    let taking_new_flows = |log: &str| {
        log.lines()
            .filter(|l| l.contains("edges taking new flows"))
            .count()
    };
    let installs = taking_new_flows(&std::fs::read_to_string(&log).unwrap_or_default());
    freeze(&controls[0], libc::SIGSTOP);
    let (code, _) = admin(
        &t.balancer,
        cb,
        "POST",
        "/v1/admin/edges/edge-2/undrain".into(),
    );
    assert_eq!(code, 200);
    wait_for(
        "the balancer to take edge-2 back through the live replica",
        Duration::from_secs(45),
        || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            (taking_new_flows(&text) > installs
                && text
                    .lines()
                    .rev()
                    .find(|l| l.contains("edges taking new flows"))
                    .is_some_and(|l| l.contains("edge-2")))
            .then_some(())
        },
    );
    in_netns(&client, || {
        for _ in 0..60 {
            let mut s = connect_vip();
            assert!(ping(&mut s));
        }
    });
    assert!(
        counts(&accepted)[2] > on_edge2,
        "an undrained edge got no new flows"
    );
    freeze(&controls[0], libc::SIGCONT);
    stop.store(true, Ordering::Relaxed);
    let _ = members.join();
}
