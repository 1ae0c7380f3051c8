//! Loader for Pylon's kernel programs. The programs are C (`src/bpf/*.bpf.c`), compiled
//! by clang into `obj/*.bpf.o` (committed, so building Pylon needs no clang; `cargo xtask
//! build-ebpf` regenerates them and CI checks they match the sources).
//!
//! - [`reuseport::CpuListenerSelector`]: an SK_REUSEPORT program that hands each new
//!   connection to the listener of the executor on the CPU that received the SYN.
//! - [`cpuspread::CpuSpreader`]: XDP + CPUMAP spreading SYNs over CPUs by a hash of their
//!   4-tuple, for NICs that spread poorly.
//! - [`balancer::Balancer`]: an XDP L4 balancer for a VIP across edge hosts (Maglev for
//!   new flows, an LRU connection table for established ones, L2 direct server return).
//!   The process that runs it is `pylon-balancer` (`balancer/`).
//! - [`synguard::SynGuard`]: an XDP program that limits SYNs per source and drops those
//!   of blocklisted sources.
//! - [`tcpmetrics::TcpMetrics`]: `tp_btf` programs counting TCP state changes and
//!   retransmissions on the edge's ports.
//!
//! Everything here needs privileges (CAP_BPF or root). The edge runs without eBPF (plain
//! SO_REUSEPORT spreading) when they are missing: see `--ebpf off|auto|on`.

pub mod balancer;
pub mod cost;
pub mod cpuspread;
pub mod netns;
pub mod reuseport;
pub mod synguard;
pub mod tcpmetrics;

/// Why a kernel program could not be used.
#[derive(Debug, thiserror::Error)]
pub enum EbpfError {
    #[error("loading the eBPF object failed (missing privileges or kernel support?): {0}")]
    Load(#[from] aya::EbpfError),
    #[error("the eBPF program could not be loaded or attached: {0}")]
    Program(#[from] aya::programs::ProgramError),
    #[error("an eBPF map operation failed: {0}")]
    Map(#[from] aya::maps::MapError),
    #[error("an XDP map operation failed: {0}")]
    Xdp(String),
    #[error("the kernel's BTF cannot be read (/sys/kernel/btf/vmlinux): {0}")]
    Btf(String),
    #[error("the eBPF object has no {0} (object and loader out of step?)")]
    Missing(&'static str),
}

/// The XDP program `name` of a loaded object.
pub(crate) fn xdp_mut<'a>(
    ebpf: &'a mut aya::Ebpf,
    name: &'static str,
) -> Result<&'a mut aya::programs::Xdp, EbpfError> {
    Ok(ebpf
        .program_mut(name)
        .ok_or(EbpfError::Missing(name))?
        .try_into()?)
}

pub(crate) fn xdp<'a>(
    ebpf: &'a aya::Ebpf,
    name: &'static str,
) -> Result<&'a aya::programs::Xdp, EbpfError> {
    Ok(ebpf
        .program(name)
        .ok_or(EbpfError::Missing(name))?
        .try_into()?)
}

/// Entry `index` of a per-CPU counter array, summed over CPUs (0 when unreadable).
pub(crate) fn per_cpu_sum(
    map: &aya::maps::PerCpuArray<aya::maps::MapData, u64>,
    index: u32,
) -> u64 {
    map.get(&index, 0)
        .map(|values| values.iter().sum())
        .unwrap_or(0)
}
