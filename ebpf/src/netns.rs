//! Network namespaces and veth pairs for the XDP tests and benchmarks, removed on drop.
//! (Root only; never touches the machine's own interfaces.)

use std::fs::File;
use std::os::fd::AsRawFd;
use std::process::Command;

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

pub fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}
