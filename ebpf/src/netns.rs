//! Network namespaces and veth pairs for the XDP tests and benchmarks, removed on drop.
//! (Root only; never touches the machine's own interfaces.)

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Runs `ip` with `args`; panics with its error output when it fails (test set-up).
pub fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running ip (is iproute2 installed?): {e}"));
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two namespaces joined by a veth pair (`vs` at 10.77.0.1 in `server`, `vc` at
/// 10.77.0.2 and 10.77.0.3 in `client`); removed on drop.
pub struct Pair {
    pub server: String,
    pub client: String,
}

impl Pair {
    /// `tag` keeps the names of concurrent tests apart.
    pub fn new(tag: &str) -> Pair {
        let id = std::process::id() % 100_000;
        let pair = Pair {
            server: format!("pylon-{tag}s-{id}"),
            client: format!("pylon-{tag}c-{id}"),
        };
        let (vs, vc) = (format!("{tag}s{id}"), format!("{tag}c{id}"));
        ip(&["netns", "add", &pair.server]);
        ip(&["netns", "add", &pair.client]);
        ip(&["link", "add", &vs, "type", "veth", "peer", "name", &vc]);
        ip(&["link", "set", &vs, "netns", &pair.server, "name", "vs"]);
        ip(&["link", "set", &vc, "netns", &pair.client, "name", "vc"]);
        ip(&[
            "-n",
            &pair.server,
            "addr",
            "add",
            "10.77.0.1/24",
            "dev",
            "vs",
        ]);
        ip(&[
            "-n",
            &pair.client,
            "addr",
            "add",
            "10.77.0.2/24",
            "dev",
            "vc",
        ]);
        ip(&[
            "-n",
            &pair.client,
            "addr",
            "add",
            "10.77.0.3/24",
            "dev",
            "vc",
        ]);
        for (ns, dev) in [(&pair.server, "vs"), (&pair.client, "vc")] {
            ip(&["-n", ns, "link", "set", dev, "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        // Known veth quirk: without this, packets sent over veth into native XDP carry
        // partial checksums the receiver drops.
        let _ = Command::new("ip")
            .args([
                "netns",
                "exec",
                &pair.client,
                "ethtool",
                "-K",
                "vc",
                "tx",
                "off",
            ])
            .output();
        pair
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        for ns in [&self.server, &self.client] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// Runs `work` on a thread inside namespace `ns`.
pub fn in_netns<T: Send + 'static>(ns: &str, work: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = File::open(&path).expect("namespace file");
        assert_eq!(
            unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) },
            0,
            "setns"
        );
        work()
    })
    .join()
    .expect("namespace thread")
}

/// Pins the calling thread to `cpu`.
pub fn pin_to(cpu: usize) {
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        assert_eq!(
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set),
            0,
            "pinning to CPU {cpu}"
        );
    }
}

/// Whether a kernel test can run here: as root (eBPF, XDP and network namespaces need it)
/// with at least `min_cpus` CPUs. When it cannot, the skip is printed and recorded for the
/// summary `cargo xtask test` prints at the end (file named by `PYLON_SKIP_REPORT`), so a
/// skip is never silent. `PYLON_REQUIRE_ROOT=1` turns "not root" into a failure.
pub fn kernel_test_can_run(min_cpus: usize) -> bool {
    let root = unsafe { libc::geteuid() == 0 };
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let reason = if !root {
        if std::env::var("PYLON_REQUIRE_ROOT").is_ok_and(|v| v == "1") {
            panic!("PYLON_REQUIRE_ROOT=1 but the tests are not running as root");
        }
        "not root: eBPF, XDP and network namespaces need root (or CAP_BPF + CAP_NET_ADMIN + CAP_SYS_ADMIN)".to_owned()
    } else if cpus < min_cpus {
        format!("{cpus} CPU(s): this test needs {min_cpus}")
    } else {
        return true;
    };
    record_skip(&reason);
    false
}

/// Whether a test that changes the machine (installs packages, ...) can run: it needs
/// root. A skip is recorded like [`kernel_test_can_run`]'s, and `PYLON_REQUIRE_ROOT=1`
/// turns it into a failure.
pub fn root_test_can_run(needs: &str) -> bool {
    if unsafe { libc::geteuid() == 0 } {
        return true;
    }
    if std::env::var("PYLON_REQUIRE_ROOT").is_ok_and(|v| v == "1") {
        panic!("PYLON_REQUIRE_ROOT=1 but the tests are not running as root");
    }
    record_skip(&format!("not root: {needs}"));
    false
}

/// Prints a skip and appends it to the run's skip report, if there is one.
fn record_skip(reason: &str) {
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("a test");
    let binary = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .map(|s| {
            s.rsplit_once('-')
                .map_or(s.clone(), |(name, _hash)| name.to_owned())
        })
        .unwrap_or_default();
    eprintln!("SKIPPED {binary}::{test}: {reason}");
    if let Some(path) = std::env::var_os("PYLON_SKIP_REPORT") {
        use std::io::Write;
        // One short line in one append: lines of parallel tests do not interleave.
        let line = format!("{binary}::{test}\t{reason}\n");
        let written = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = written {
            eprintln!("could not record the skip: {e}");
        }
    }
}

/// Edge namespaces of [`build_topology`].
pub const LB_EDGES: usize = 3;

/// A client namespace, a balancer namespace and `EDGES` edge namespaces holding the
/// VIP 10.90.0.1 on loopback, joined by veth pairs: `vc` (client, 10.80.0.2) to `vl`
/// (balancer, 10.80.0.1); `vb<i>` (balancer, 10.8<i+1>.0.1) to `vk` (edge i,
/// 10.8<i+1>.0.2). The balancer forwards; every namespace is removed on drop.
pub struct Topology {
    pub client: String,
    pub balancer: String,
    pub edges: Vec<String>,
}

impl Drop for Topology {
    fn drop(&mut self) {
        for ns in [&self.client, &self.balancer]
            .into_iter()
            .chain(&self.edges)
        {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

pub fn exec(ns: &str, args: &[&str]) {
    let _ = Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .output();
}

pub fn link(ns: &str, dev: &str) -> serde_json::Value {
    let out = Command::new("ip")
        .args(["-n", ns, "-j", "link", "show", "dev", dev])
        .output()
        .expect("ip link show");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ip -j output");
    v[0].clone()
}

pub fn mac(ns: &str, dev: &str) -> [u8; 6] {
    let text = link(ns, dev)["address"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let mut mac = [0u8; 6];
    for (i, part) in text.split(':').enumerate().take(6) {
        mac[i] = u8::from_str_radix(part, 16).expect("hex");
    }
    mac
}

pub fn build_topology(tag: &str) -> Topology {
    let id = std::process::id() % 100_000;
    let t = Topology {
        client: format!("pylon-{tag}c-{id}"),
        balancer: format!("pylon-{tag}l-{id}"),
        edges: (0..LB_EDGES)
            .map(|i| format!("pylon-{tag}{i}-{id}"))
            .collect(),
    };
    for ns in [&t.client, &t.balancer].into_iter().chain(&t.edges) {
        ip(&["netns", "add", ns]);
        ip(&["-n", ns, "link", "set", "lo", "up"]);
        exec(ns, &["sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0"]);
        exec(ns, &["sysctl", "-qw", "net.ipv4.conf.default.rp_filter=0"]);
    }
    let (c, l) = (format!("{tag}c{id}"), format!("{tag}l{id}"));
    ip(&["link", "add", &c, "type", "veth", "peer", "name", &l]);
    ip(&["link", "set", &c, "netns", &t.client, "name", "vc"]);
    ip(&["link", "set", &l, "netns", &t.balancer, "name", "vl"]);
    ip(&["-n", &t.client, "addr", "add", "10.80.0.2/24", "dev", "vc"]);
    ip(&["-n", &t.client, "link", "set", "vc", "up"]);
    ip(&[
        "-n",
        &t.client,
        "route",
        "add",
        "default",
        "via",
        "10.80.0.1",
    ]);
    exec(&t.client, &["ethtool", "-K", "vc", "tx", "off"]);
    ip(&[
        "-n",
        &t.balancer,
        "addr",
        "add",
        "10.80.0.1/24",
        "dev",
        "vl",
    ]);
    ip(&["-n", &t.balancer, "link", "set", "vl", "up"]);
    exec(&t.balancer, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    for (i, edge) in t.edges.iter().enumerate() {
        let (b, k) = (format!("{tag}b{i}{id}"), format!("{tag}k{i}{id}"));
        let dev = format!("vb{i}");
        ip(&["link", "add", &b, "type", "veth", "peer", "name", &k]);
        ip(&["link", "set", &b, "netns", &t.balancer, "name", &dev]);
        ip(&["link", "set", &k, "netns", edge, "name", "vk"]);
        ip(&[
            "-n",
            &t.balancer,
            "addr",
            "add",
            &format!("10.8{}.0.1/24", i + 1),
            "dev",
            &dev,
        ]);
        ip(&["-n", &t.balancer, "link", "set", &dev, "up"]);
        exec(&t.balancer, &["ethtool", "-K", &dev, "tx", "off"]);
        ip(&[
            "-n",
            edge,
            "addr",
            "add",
            &format!("10.8{}.0.2/24", i + 1),
            "dev",
            "vk",
        ]);
        ip(&["-n", edge, "link", "set", "vk", "up"]);
        ip(&["-n", edge, "addr", "add", "10.90.0.1/32", "dev", "lo"]);
        ip(&[
            "-n",
            edge,
            "route",
            "add",
            "default",
            "via",
            &format!("10.8{}.0.1", i + 1),
        ]);
        // Native redirects into a veth need GRO (or XDP) on the receiving end.
        exec(edge, &["ethtool", "-K", "vk", "gro", "on"]);
        exec(edge, &["ethtool", "-K", "vk", "tx", "off"]);
    }
    t
}

/// The VIP of [`build_topology`] and the port its echo servers listen on.
pub const VIP: Ipv4Addr = Ipv4Addr::new(10, 90, 0, 1);
pub const VIP_PORT: u16 = 9000;

/// An echo server on the VIP in each edge namespace, counting connections.
pub fn echo_servers(t: &Topology, stop: &Arc<AtomicBool>) -> Vec<Arc<AtomicUsize>> {
    t.edges
        .iter()
        .map(|ns| {
            let accepted = Arc::new(AtomicUsize::new(0));
            let listener = in_netns(ns, || {
                let l = TcpListener::bind((VIP, VIP_PORT)).expect("bind VIP");
                l.set_nonblocking(true).expect("nonblocking");
                l
            });
            let (count, stop) = (accepted.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((mut s, _)) => {
                            count.fetch_add(1, Ordering::Relaxed);
                            let stop = stop.clone();
                            std::thread::spawn(move || {
                                let _ = s.set_nonblocking(false);
                                let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
                                let mut buf = [0u8; 64];
                                while !stop.load(Ordering::Relaxed) {
                                    match s.read(&mut buf) {
                                        Ok(0) => return,
                                        Ok(n) => {
                                            if s.write_all(&buf[..n]).is_err() {
                                                return;
                                            }
                                        }
                                        Err(e)
                                            if e.kind() == std::io::ErrorKind::WouldBlock
                                                || e.kind() == std::io::ErrorKind::TimedOut => {}
                                        Err(_) => return,
                                    }
                                }
                            });
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(2)),
                    }
                }
            });
            accepted
        })
        .collect()
}

pub fn ping(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 4];
    s.write_all(b"ping").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"ping"
}

pub fn connect_vip() -> TcpStream {
    let s = TcpStream::connect_timeout(
        &SocketAddr::V4(SocketAddrV4::new(VIP, VIP_PORT)),
        Duration::from_secs(3),
    )
    .expect("connect to the VIP");
    s.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    s
}

pub fn counts(accepted: &[Arc<AtomicUsize>]) -> Vec<usize> {
    accepted.iter().map(|a| a.load(Ordering::Relaxed)).collect()
}
