//! Spreading SYNs over CPUs (`src/bpf/cpuspread.bpf.c`): XDP with a CPUMAP, for NICs that
//! deliver every SYN to the same CPU.

use aya::maps::{Array, CpuMap, MapData, PerCpuArray};
use aya::programs::{Xdp, XdpMode};
use aya::Ebpf;

use crate::EbpfError;

static OBJECT: &[u8] = aya::include_bytes_aligned!("../obj/cpuspread.bpf.o");

/// Packets queued per CPU before the redirect drops (the kernel's usual size).
const QUEUE_SIZE: u32 = 2048;

pub struct CpuSpreader {
    ebpf: Ebpf,
    sent: PerCpuArray<MapData, u64>,
    first: u32,
    cpus: u32,
}

impl CpuSpreader {
    /// Loads the program to spread SYNs over CPUs `0..cpus`.
    pub fn load(cpus: u32) -> Result<Self, EbpfError> {
        Self::load_range(0, cpus)
    }

    /// Loads the program to spread SYNs over CPUs `first..first + cpus` (an edge process
    /// started with `--first-cpu`).
    pub fn load_range(first: u32, cpus: u32) -> Result<Self, EbpfError> {
        let mut ebpf = Ebpf::load(OBJECT)?;
        let mut cpu_map = CpuMap::try_from(
            ebpf.take_map("cpus")
                .ok_or(EbpfError::Missing("map `cpus`"))?,
        )?;
        for cpu in first..first + cpus {
            cpu_map
                .set(cpu, QUEUE_SIZE, None, 0)
                .map_err(|e| EbpfError::Xdp(e.to_string()))?;
        }
        let mut spread: Array<MapData, u32> = Array::try_from(
            ebpf.take_map("spread")
                .ok_or(EbpfError::Missing("map `spread`"))?,
        )?;
        spread.set(0, cpus, 0)?;
        spread.set(1, first, 0)?;
        let sent = PerCpuArray::try_from(
            ebpf.take_map("sent")
                .ok_or(EbpfError::Missing("map `sent`"))?,
        )?;
        let program = crate::xdp_mut(&mut ebpf, "spread_syns")?;
        program.load()?;
        // The maps stay referenced by the program; only `sent` is read from here.
        drop((cpu_map, spread));
        Ok(CpuSpreader {
            ebpf,
            sent,
            first,
            cpus,
        })
    }

    /// Mean time of one run on `packet` in the kernel, and the verdict (see [`crate::cost`]).
    pub fn cost(
        &self,
        packet: &[u8],
        repeat: u32,
    ) -> Result<(u32, std::time::Duration), EbpfError> {
        let program = crate::xdp(&self.ebpf, "spread_syns")?;
        crate::cost::xdp_cost(program, packet, repeat)
    }

    /// Attaches to `interface` (in the calling thread's network namespace).
    pub fn attach(&mut self, interface: &str, mode: XdpMode) -> Result<(), EbpfError> {
        let program: &mut Xdp = self
            .ebpf
            .program_mut("spread_syns")
            .ok_or(EbpfError::Missing("program `spread_syns`"))?
            .try_into()?;
        program.attach(interface, mode)?;
        Ok(())
    }

    /// SYNs sent to each CPU so far (from the first one).
    pub fn sent(&self) -> Vec<u64> {
        (self.first..self.first + self.cpus)
            .map(|cpu| crate::per_cpu_sum(&self.sent, cpu))
            .collect()
    }
}
