//! Per-CPU listener selection (`src/bpf/reuseport.bpf.c`).

use std::os::fd::{AsFd, AsRawFd};

use aya::maps::{MapData, PerCpuArray, ReusePortSockArray};
use aya::programs::SkReuseport;
use aya::Ebpf;

use crate::EbpfError;

/// The compiled program (see `obj/`).
static OBJECT: &[u8] = aya::include_bytes_aligned!("../obj/reuseport.bpf.o");

/// The most CPUs the listener array covers (`MAX_CPUS` in the C source).
pub const MAX_CPUS: u32 = 256;

/// Selections by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Selections {
    /// Handed to the listener of the CPU that received the SYN.
    pub by_cpu: u64,
    /// No listener for that CPU: the kernel's hash chose.
    pub fallback: u64,
}

/// The loaded program and its maps. Dropping it does not detach the program from the
/// reuseport group (the group ends with its sockets).
pub struct CpuListenerSelector {
    ebpf: Ebpf,
    listeners: ReusePortSockArray<MapData>,
    selections: PerCpuArray<MapData, u64>,
}

impl CpuListenerSelector {
    /// Loads the program into the kernel.
    pub fn load() -> Result<Self, EbpfError> {
        Self::load_shared(None)
    }

    /// Loads the program with its listener array pinned at `pin` (on a bpffs mount), so
    /// that several processes serving one port share it: each fills the slots of its own
    /// CPUs, and whichever attached last selects for all of them.
    pub fn load_shared(pin: Option<&std::path::Path>) -> Result<Self, EbpfError> {
        let mut loader = aya::EbpfLoader::new();
        if let Some(path) = pin {
            loader.map_pin_path("listeners", path);
        }
        let mut ebpf = loader.load(OBJECT)?;
        let listeners = ReusePortSockArray::try_from(
            ebpf.take_map("listeners")
                .ok_or(EbpfError::Missing("map `listeners`"))?,
        )?;
        let selections = PerCpuArray::try_from(
            ebpf.take_map("selections")
                .ok_or(EbpfError::Missing("map `selections`"))?,
        )?;
        let program: &mut SkReuseport = ebpf
            .program_mut("select_by_cpu")
            .ok_or(EbpfError::Missing("program `select_by_cpu`"))?
            .try_into()?;
        program.load()?;
        Ok(CpuListenerSelector {
            ebpf,
            listeners,
            selections,
        })
    }

    /// Makes `listener` the one for connections whose SYN arrives on `cpu`.
    pub fn add_listener<L: AsRawFd>(&mut self, cpu: u32, listener: &L) -> Result<(), EbpfError> {
        self.listeners.set(cpu, listener, 0)?;
        Ok(())
    }

    /// Attaches the program to the reuseport group `listener` belongs to (once is enough
    /// for the whole group).
    pub fn attach<L: AsFd>(&mut self, listener: L) -> Result<(), EbpfError> {
        let program: &mut SkReuseport = self
            .ebpf
            .program_mut("select_by_cpu")
            .ok_or(EbpfError::Missing("program `select_by_cpu`"))?
            .try_into()?;
        program.attach(listener)?;
        Ok(())
    }

    /// Selections so far, summed over CPUs.
    pub fn selections(&self) -> Selections {
        let sum = |index: u32| crate::per_cpu_sum(&self.selections, index);
        Selections {
            by_cpu: sum(0),
            fallback: sum(1),
        }
    }
}
