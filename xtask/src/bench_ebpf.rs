//! `cargo xtask bench-ebpf` (root): the kernel programs' per-packet cost (BPF_PROG_TEST_RUN,
//! 1,000,000 runs on a crafted packet), and how many legitimate connections succeed while
//! one source floods SYNs, with and without the guard, on a veth pair between namespaces.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener};
use std::time::{Duration, Instant};

use pylon_ebpf::cost::tcp_packet;
use pylon_ebpf::cpuspread::CpuSpreader;
use pylon_ebpf::netns::{in_netns, Pair};
use pylon_ebpf::synguard::{GuardConfig, SynGuard};
use socket2::{Domain, Socket, Type};

#[derive(clap::Args)]
pub struct BenchEbpfArgs {
    /// Seconds the SYN flood lasts in each run.
    #[arg(long, default_value_t = 5)]
    flood_secs: u64,
}

const RUNS: u32 = 1_000_000;
const SERVER: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const FLOODER: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
const CHARGER: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 3);
const PORT: u16 = 8768;

fn ns(d: Duration) -> f64 {
    d.as_nanos() as f64
}

pub fn run(args: BenchEbpfArgs) -> anyhow::Result<()> {
    anyhow::ensure!(unsafe { libc::geteuid() } == 0, "bench-ebpf needs root");
    crate::system::ensure(crate::system::FOR_ALL)?;
    let mut md = String::from(
        "## eBPF programs\n\n| program, packet | verdict | ns per packet |\n|---|---|---|\n",
    );
    let syn = tcp_packet(FLOODER, SERVER, 40000, PORT, true, false);
    let ack = tcp_packet(FLOODER, SERVER, 40000, PORT, false, true);
    let other_port = tcp_packet(FLOODER, SERVER, 40000, 22, true, false);
    let mut guard = SynGuard::load()?;
    guard.watch_port(PORT)?;
    let mut row = |name: &str, result: (u32, Duration)| {
        let verdict = match result.0 {
            1 => "drop",
            2 => "pass",
            4 => "redirect",
            v => return md.push_str(&format!("| {name} | {v} | {:.1} |\n", ns(result.1))),
        };
        md.push_str(&format!("| {name} | {verdict} | {:.1} |\n", ns(result.1)));
    };
    row("guard: ACK (not a SYN)", guard.cost(&ack, RUNS)?);
    row("guard: SYN to another port", guard.cost(&other_port, RUNS)?);
    guard.set_limit(GuardConfig {
        rate_per_sec: 0,
        burst: 1,
    })?;
    row("guard: SYN, no limit", guard.cost(&syn, RUNS)?);
    guard.set_limit(GuardConfig {
        rate_per_sec: u64::MAX / 4_000_000_000,
        burst: 1 << 40,
    })?;
    row("guard: SYN within budget", guard.cost(&syn, RUNS)?);
    guard.set_limit(GuardConfig {
        rate_per_sec: 1,
        burst: 1,
    })?;
    row("guard: SYN over budget", guard.cost(&syn, RUNS)?);
    guard.block(FLOODER)?;
    row(
        "guard: SYN from a blocklisted source",
        guard.cost(&syn, RUNS)?,
    );
    drop(guard);
    let spreader = CpuSpreader::load(2)?;
    row("CPU spreader: SYN", spreader.cost(&syn, RUNS)?);
    row("CPU spreader: ACK", spreader.cost(&ack, RUNS)?);
    drop(spreader);

    md.push_str(&format!(
        "\n## Legitimate connections during a {} s SYN flood from one source\n\n| guard | flood SYNs sent | legitimate connects ok | guard passed / dropped |\n|---|---|---|---|\n",
        args.flood_secs
    ));
    for guarded in [false, true] {
        let (sent, ok, total, counts) = flood_run(guarded, Duration::from_secs(args.flood_secs))?;
        md.push_str(&format!(
            "| {} | {sent} | {ok} / {total} ({:.1} %) | {} |\n",
            if guarded {
                "on (20/s, burst 40)"
            } else {
                "off"
            },
            100.0 * ok as f64 / total.max(1) as f64,
            counts.map_or("-".into(), |c| format!(
                "{} / {}",
                c.passed,
                c.dropped_rate + c.dropped_blocked
            )),
        ));
    }
    let out = crate::procs::root().join("target/bench");
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("ebpf-latest.md"), &md)?;
    println!("{md}");
    Ok(())
}

/// One flood: returns (flood SYNs sent, legitimate connects that succeeded, attempted,
/// guard counts).
fn flood_run(
    guarded: bool,
    length: Duration,
) -> anyhow::Result<(u64, usize, usize, Option<pylon_ebpf::synguard::GuardCounts>)> {
    let pair = Pair::new(if guarded { "bg" } else { "bn" });
    let (listener, guard) = in_netns(&pair.server, move || -> anyhow::Result<_> {
        let listener = TcpListener::bind((SERVER, PORT))?;
        listener.set_nonblocking(true)?;
        let guard = if guarded {
            let mut g = SynGuard::load()?;
            g.set_limit(GuardConfig {
                rate_per_sec: 20,
                burst: 40,
            })?;
            g.watch_port(PORT)?;
            g.attach("vs", aya::programs::XdpMode::Skb)?;
            Some(g)
        } else {
            None
        };
        Ok((listener, guard))
    })?;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let accepting = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                while listener.accept().is_ok() {}
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    let server = SocketAddr::V4(SocketAddrV4::new(SERVER, PORT));
    let flood = {
        let client = pair.client.clone();
        std::thread::spawn(move || {
            in_netns(&client, move || {
                let until = Instant::now() + length;
                let mut sent = 0u64;
                while Instant::now() < until {
                    if let Ok(s) = Socket::new(Domain::IPV4, Type::STREAM, None) {
                        let _ = s.bind(&SocketAddr::V4(SocketAddrV4::new(FLOODER, 0)).into());
                        let _ = s.set_nonblocking(true);
                        let _ = s.connect(&server.into());
                        sent += 1;
                    }
                }
                sent
            })
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    let client = pair.client.clone();
    let attempts = 100;
    let ok = in_netns(&client, move || {
        (0..attempts)
            .filter(|_| {
                let Ok(s) = Socket::new(Domain::IPV4, Type::STREAM, None) else {
                    return false;
                };
                let _ = s.bind(&SocketAddr::V4(SocketAddrV4::new(CHARGER, 0)).into());
                let ok = s
                    .connect_timeout(&server.into(), Duration::from_secs(1))
                    .is_ok();
                std::thread::sleep(Duration::from_millis(20));
                ok
            })
            .count()
    });
    let sent = flood.join().map_err(|_| anyhow::anyhow!("flood thread"))?;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = accepting.join();
    Ok((sent, ok, attempts, guard.map(|g| g.counts())))
}
