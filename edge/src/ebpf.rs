//! Kernel help for spreading connections (`pylon-ebpf`): an SK_REUSEPORT program per
//! listening port hands each new connection to the executor whose CPU received the SYN.
//!
//! `--ebpf off` (the default) uses plain SO_REUSEPORT hashing; `auto` uses the program
//! when it loads and says so in the log when it does not (no privileges, old kernel);
//! `on` refuses to start without it.

use std::net::TcpListener;
use std::sync::Mutex;

use pylon_ebpf::reuseport::{CpuListenerSelector, Selections};
use pylon_ebpf::synguard::{GuardConfig, SynGuard};
use serde::Deserialize;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum EbpfMode {
    /// Plain SO_REUSEPORT spreading.
    #[default]
    Off,
    /// Use the kernel programs when they load; otherwise plain spreading, with a log line.
    Auto,
    /// Refuse to start without the kernel programs.
    On,
}

/// One selector per listener slot (TCP, TLS): each port is its own reuseport group.
pub struct ListenerSelectors {
    slots: Vec<Option<Mutex<CpuListenerSelector>>>,
}

impl ListenerSelectors {
    /// Loads a selector for each configured listener; `None` when eBPF is off or (auto)
    /// unavailable.
    /// `pin_dir`: a bpffs directory where the listener arrays are shared with the other
    /// edge processes serving the same ports (one array per port).
    pub fn load(
        mode: EbpfMode,
        listeners: [Option<std::net::SocketAddr>; 2],
        pin_dir: Option<&std::path::Path>,
    ) -> anyhow::Result<Option<Self>> {
        if mode == EbpfMode::Off {
            return Ok(None);
        }
        let mut slots = Vec::new();
        for addr in listeners {
            let Some(addr) = addr else {
                slots.push(None);
                continue;
            };
            // One array per reuseport group: address, port and network namespace.
            let netns = std::fs::metadata("/proc/self/ns/net")
                .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
                .unwrap_or(0);
            let name = format!("pylon-listeners-{}-{}-{netns}", addr.ip(), addr.port())
                .replace([':', '.'], "_");
            let pin = pin_dir.map(|d| d.join(name));
            match CpuListenerSelector::load_shared(pin.as_deref()) {
                Ok(selector) => slots.push(Some(Mutex::new(selector))),
                Err(e) if mode == EbpfMode::Auto => {
                    tracing::warn!("eBPF listener selection unavailable, using plain SO_REUSEPORT spreading: {e}");
                    return Ok(None);
                }
                Err(e) => {
                    anyhow::bail!("--ebpf on: cannot load the listener selection program: {e}")
                }
            }
        }
        tracing::info!("eBPF: connections go to the executor of the CPU that received the SYN");
        Ok(Some(ListenerSelectors { slots }))
    }

    /// Makes `listener` (of executor `index`) the one for SYNs on CPU `index`, and attaches
    /// the program to its group (again after a drain re-created the group).
    pub fn register(
        &self,
        slot: usize,
        index: u32,
        listener: &TcpListener,
    ) -> Result<(), pylon_ebpf::EbpfError> {
        let Some(Some(selector)) = self.slots.get(slot) else {
            return Ok(());
        };
        let mut selector = selector.lock().unwrap_or_else(|p| p.into_inner());
        selector.add_listener(index, listener)?;
        selector.attach(listener)
    }

    /// Selections so far for each slot.
    pub fn selections(&self) -> Vec<Option<Selections>> {
        self.slots
            .iter()
            .map(|s| {
                s.as_ref()
                    .map(|m| m.lock().unwrap_or_else(|p| p.into_inner()).selections())
            })
            .collect()
    }
}

/// The SYN-flood guard on the edge's interface (`[syn_guard]` / `--syn-guard <iface>`).
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SynGuardConfig {
    /// The interface chargers' SYNs arrive on; empty: no guard.
    pub interface: String,
    /// SYNs per second each source address may send to the edge's ports.
    pub rate_per_sec: u64,
    /// SYNs a source may send at once.
    pub burst: u64,
    /// Run the XDP programs (this guard and `xdp_spread`) in the driver (native) or in
    /// the stack (generic).
    pub native: bool,
}

impl Default for SynGuardConfig {
    fn default() -> Self {
        SynGuardConfig {
            interface: String::new(),
            rate_per_sec: 20,
            burst: 40,
            native: false,
        }
    }
}

/// Loads and attaches the guard for the edge's ports.
pub fn start_syn_guard(config: &SynGuardConfig, ports: &[u16]) -> anyhow::Result<SynGuard> {
    let mut guard = SynGuard::load()?;
    guard.set_limit(GuardConfig {
        rate_per_sec: config.rate_per_sec,
        burst: config.burst.max(1),
    })?;
    for &port in ports {
        guard.watch_port(port)?;
    }
    let mode = if config.native {
        aya::programs::XdpMode::Driver
    } else {
        aya::programs::XdpMode::Skb
    };
    guard.attach(&config.interface, mode)?;
    tracing::info!(
        interface = %config.interface, rate = config.rate_per_sec, burst = config.burst,
        native = config.native, ?ports, "SYN-flood guard attached"
    );
    Ok(guard)
}

/// Loads the SYN spreader (XDP + CPUMAP) on `interface` over CPUs `0..cpus` (the
/// executors' CPUs when pinned): for NICs that deliver every SYN to one CPU.
pub fn start_cpu_spreader(
    interface: &str,
    first_cpu: u32,
    cpus: u32,
    native: bool,
) -> anyhow::Result<pylon_ebpf::cpuspread::CpuSpreader> {
    let mut spreader = pylon_ebpf::cpuspread::CpuSpreader::load_range(first_cpu, cpus)?;
    let mode = if native {
        aya::programs::XdpMode::Driver
    } else {
        aya::programs::XdpMode::Skb
    };
    spreader.attach(interface, mode)?;
    tracing::info!(
        interface,
        cpus,
        native,
        "XDP spreads SYNs over the executors' CPUs"
    );
    Ok(spreader)
}
