//! The L4 balancer across edge hosts (`src/bpf/balancer.bpf.c`): XDP on the VIP's
//! interface, Maglev consistent hashing for new flows, an LRU connection table for
//! established ones, L2 direct server return.
//!
//! The backend list comes from the control plane's edges (live, not draining); an edge
//! taken out of the table keeps its established flows (they are in the connection
//! table) and gets no new ones. Only the flows that hashed to it move.

use std::net::Ipv4Addr;

use aya::maps::{Array, MapData, PerCpuArray};
use aya::programs::{Xdp, XdpMode};
use aya::{Ebpf, Pod};

use crate::EbpfError;

static OBJECT: &[u8] = aya::include_bytes_aligned!("../obj/balancer.bpf.o");

/// Slots of the Maglev table (`TABLE_SIZE` in the C source; a prime).
pub const TABLE_SIZE: usize = 65_537;
/// Backends the balancer can hold (`MAX_BACKENDS`).
pub const MAX_BACKENDS: usize = 256;
/// A table slot no backend owns.
pub const NO_BACKEND: u32 = u32::MAX;

#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct Vip {
    addr: u32,
    port: u16,
    pad: u16,
}

// SAFETY: plain integers laid out as `struct vip`; any bit pattern is valid.
unsafe impl Pod for Vip {}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct BackendEntry {
    ifindex: u32,
    mac: [u8; 6],
    src_mac: [u8; 6],
    active: u32,
}

// SAFETY: as `struct backend`: integers and byte arrays, no padding.
unsafe impl Pod for BackendEntry {}

/// One edge host as the balancer forwards to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    /// Its id (the control plane's edge id): what Maglev hashes.
    pub name: String,
    /// Our interface towards it, its MAC, and ours on that link.
    pub ifindex: u32,
    pub mac: [u8; 6],
    pub src_mac: [u8; 6],
    /// Takes new flows (live and not draining).
    pub active: bool,
}

fn fnv1a(seed: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(seed, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The Maglev lookup table (Eisenbud et al., NSDI 2016) over `names`: each slot holds the
/// index of its backend in `names`. Every name fills slots in its own permutation order,
/// taking turns, so each gets `size / n` slots (±1) and changing the set moves few slots
/// besides those of the backend added or removed.
pub fn maglev_table(names: &[&str], size: usize) -> Vec<u32> {
    let mut table = vec![NO_BACKEND; size];
    if names.is_empty() || size == 0 {
        return table;
    }
    let m = size as u64;
    let perms: Vec<(u64, u64)> = names
        .iter()
        .map(|n| {
            let offset = fnv1a(0xcbf2_9ce4_8422_2325, n.as_bytes()) % m;
            let skip = fnv1a(0x8422_2325_cbf2_9ce4, n.as_bytes()) % (m - 1).max(1) + 1;
            (offset, skip)
        })
        .collect();
    let mut next = vec![0u64; names.len()];
    let mut filled = 0;
    'fill: loop {
        for (i, (offset, skip)) in perms.iter().enumerate() {
            let mut slot = ((offset + next[i] * skip) % m) as usize;
            while table[slot] != NO_BACKEND {
                next[i] += 1;
                slot = ((offset + next[i] * skip) % m) as usize;
            }
            table[slot] = i as u32;
            next[i] += 1;
            filled += 1;
            if filled == size {
                break 'fill;
            }
        }
    }
    table
}

/// Counters since loading.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BalancerStats {
    pub new_flows: u64,
    pub known_flow_packets: u64,
    pub forwarded: u64,
    pub no_backend: u64,
}

pub struct Balancer {
    ebpf: Ebpf,
    table: Array<MapData, u32>,
    backends: Array<MapData, BackendEntry>,
    stats: PerCpuArray<MapData, u64>,
}

impl Balancer {
    /// Loads the balancer for TCP to `vip:port`.
    pub fn load(vip: Ipv4Addr, port: u16) -> Result<Self, EbpfError> {
        let mut ebpf = Ebpf::load(OBJECT)?;
        let mut take = |name: &'static str| ebpf.take_map(name).ok_or(EbpfError::Missing(name));
        let mut vips: Array<MapData, Vip> = Array::try_from(take("vips")?)?;
        let table = Array::try_from(take("table")?)?;
        let backends = Array::try_from(take("backends")?)?;
        let stats = PerCpuArray::try_from(take("stats")?)?;
        vips.set(
            0,
            Vip {
                addr: u32::from_ne_bytes(vip.octets()),
                port,
                pad: 0,
            },
            0,
        )?;
        let program = crate::xdp_mut(&mut ebpf, "balance")?;
        program.load()?;
        Ok(Balancer {
            ebpf,
            table,
            backends,
            stats,
        })
    }

    /// Attaches to the VIP's interface (in the calling thread's network namespace).
    pub fn attach(&mut self, interface: &str, mode: XdpMode) -> Result<(), EbpfError> {
        let program: &mut Xdp = self
            .ebpf
            .program_mut("balance")
            .ok_or(EbpfError::Missing("program `balance`"))?
            .try_into()?;
        program.attach(interface, mode)?;
        Ok(())
    }

    /// Installs the backends (a backend keeps its index: its position in `backends`) and
    /// a Maglev table over the active ones. Established flows keep their backend.
    pub fn set_backends(&mut self, backends: &[Backend]) -> Result<(), EbpfError> {
        if backends.len() > MAX_BACKENDS {
            return Err(EbpfError::Xdp(format!(
                "{} backends; the balancer holds at most {MAX_BACKENDS}",
                backends.len()
            )));
        }
        for (i, b) in backends.iter().enumerate() {
            self.backends.set(
                i as u32,
                BackendEntry {
                    ifindex: b.ifindex,
                    mac: b.mac,
                    src_mac: b.src_mac,
                    active: u32::from(b.active),
                },
                0,
            )?;
        }
        let active: Vec<(u32, &str)> = backends
            .iter()
            .enumerate()
            .filter(|(_, b)| b.active)
            .map(|(i, b)| (i as u32, b.name.as_str()))
            .collect();
        let names: Vec<&str> = active.iter().map(|(_, n)| *n).collect();
        for (slot, chosen) in maglev_table(&names, TABLE_SIZE).into_iter().enumerate() {
            let index = active.get(chosen as usize).map_or(NO_BACKEND, |(i, _)| *i);
            self.table.set(slot as u32, index, 0)?;
        }
        Ok(())
    }

    pub fn stats(&self) -> BalancerStats {
        let sum = |slot: u32| crate::per_cpu_sum(&self.stats, slot);
        BalancerStats {
            new_flows: sum(0),
            known_flow_packets: sum(1),
            forwarded: sum(2),
            no_backend: sum(3),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maglev_is_even_and_moves_little() {
        let three = maglev_table(&["e1", "e2", "e3"], TABLE_SIZE);
        let mut counts = [0usize; 3];
        for &b in &three {
            counts[b as usize] += 1;
        }
        assert!(
            counts.iter().all(|&c| c.abs_diff(TABLE_SIZE / 3) <= 1),
            "{counts:?}"
        );
        // e3 removed: its slots move, and only a few others (Maglev's small disruption).
        let two = maglev_table(&["e1", "e2"], TABLE_SIZE);
        let others_moved = three
            .iter()
            .zip(&two)
            .filter(|(before, after)| **before != 2 && before != after)
            .count();
        assert!(
            others_moved < TABLE_SIZE / 50,
            "{others_moved} slots of surviving backends moved"
        );
        assert!(maglev_table(&[], 7).iter().all(|&s| s == NO_BACKEND));
    }

    #[test]
    fn entry_layouts_match_the_c_structs() {
        assert_eq!(std::mem::size_of::<Vip>(), 8);
        assert_eq!(std::mem::size_of::<BackendEntry>(), 20);
    }
}
