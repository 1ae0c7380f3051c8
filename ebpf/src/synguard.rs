//! The SYN-flood guard (`src/bpf/synguard.bpf.c`): an XDP program that lets SYNs to the
//! edge's ports through only within a per-source token bucket, and drops every SYN of a
//! blocklisted source.

use std::net::Ipv4Addr;

use aya::maps::{Array, HashMap, MapData, PerCpuArray};
use aya::programs::{Xdp, XdpMode};
use aya::{Ebpf, Pod};

use crate::EbpfError;

static OBJECT: &[u8] = aya::include_bytes_aligned!("../obj/synguard.bpf.o");

/// `struct guard_config` in the C source: the same layout (checked by the map's value
/// size when loading, and by a test).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuardConfig {
    /// SYNs per second each source may send (refill rate); 0 disables the limit.
    pub rate_per_sec: u64,
    /// How many SYNs a source may send at once.
    pub burst: u64,
}

// SAFETY: plain integers, no padding, any bit pattern is valid.
unsafe impl Pod for GuardConfig {}

/// What the guard did with SYNs to watched ports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GuardCounts {
    pub passed: u64,
    pub dropped_rate: u64,
    pub dropped_blocked: u64,
}

pub struct SynGuard {
    ebpf: Ebpf,
    config: Array<MapData, GuardConfig>,
    ports: HashMap<MapData, u16, u8>,
    blocklist: HashMap<MapData, u32, u8>,
    verdicts: PerCpuArray<MapData, u64>,
}

impl SynGuard {
    pub fn load() -> Result<Self, EbpfError> {
        let mut ebpf = Ebpf::load(OBJECT)?;
        let mut take = |name: &'static str| ebpf.take_map(name).ok_or(EbpfError::Missing(name));
        let config = Array::try_from(take("config")?)?;
        let ports = HashMap::try_from(take("ports")?)?;
        let blocklist = HashMap::try_from(take("blocklist")?)?;
        let verdicts = PerCpuArray::try_from(take("verdicts")?)?;
        let program = crate::xdp_mut(&mut ebpf, "syn_guard")?;
        program.load()?;
        Ok(SynGuard {
            ebpf,
            config,
            ports,
            blocklist,
            verdicts,
        })
    }

    /// Mean time of one run on `packet` in the kernel, and the verdict (see [`crate::cost`]).
    pub fn cost(
        &self,
        packet: &[u8],
        repeat: u32,
    ) -> Result<(u32, std::time::Duration), EbpfError> {
        let program = crate::xdp(&self.ebpf, "syn_guard")?;
        crate::cost::xdp_cost(program, packet, repeat)
    }

    /// Attaches to `interface` (in the calling thread's network namespace). Detached when
    /// the guard is dropped.
    pub fn attach(&mut self, interface: &str, mode: XdpMode) -> Result<(), EbpfError> {
        let program: &mut Xdp = self
            .ebpf
            .program_mut("syn_guard")
            .ok_or(EbpfError::Missing("program `syn_guard`"))?
            .try_into()?;
        program.attach(interface, mode)?;
        Ok(())
    }

    /// Sets the budget; rates above 1e9/s and bursts above 1e12 are capped (the kernel's
    /// arithmetic stays within 64 bits).
    pub fn set_limit(&mut self, mut config: GuardConfig) -> Result<(), EbpfError> {
        config.rate_per_sec = config.rate_per_sec.min(1_000_000_000);
        config.burst = config.burst.min(1_000_000_000_000);
        self.config.set(0, config, 0)?;
        Ok(())
    }

    /// Guards SYNs to `port`.
    pub fn watch_port(&mut self, port: u16) -> Result<(), EbpfError> {
        self.ports.insert(port, 1, 0)?;
        Ok(())
    }

    pub fn block(&mut self, source: Ipv4Addr) -> Result<(), EbpfError> {
        self.blocklist
            .insert(u32::from_ne_bytes(source.octets()), 1, 0)?;
        Ok(())
    }

    pub fn unblock(&mut self, source: Ipv4Addr) -> Result<(), EbpfError> {
        match self.blocklist.remove(&u32::from_ne_bytes(source.octets())) {
            Ok(()) | Err(aya::maps::MapError::KeyNotFound) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// The blocklisted sources.
    pub fn blocked(&self) -> Vec<Ipv4Addr> {
        let mut list: Vec<Ipv4Addr> = self
            .blocklist
            .keys()
            .filter_map(Result::ok)
            .map(|k| Ipv4Addr::from(k.to_ne_bytes()))
            .collect();
        list.sort();
        list
    }

    pub fn counts(&self) -> GuardCounts {
        let sum = |index: u32| crate::per_cpu_sum(&self.verdicts, index);
        GuardCounts {
            passed: sum(0),
            dropped_rate: sum(1),
            dropped_blocked: sum(2),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_layout_matches_the_c_struct() {
        // struct guard_config { __u64 rate_per_sec; __u64 burst; }
        assert_eq!(std::mem::size_of::<GuardConfig>(), 16);
        assert_eq!(std::mem::align_of::<GuardConfig>(), 8);
    }
}
