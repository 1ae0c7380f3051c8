//! Kernel-level TCP metrics (`src/bpf/tcpmetrics.bpf.c`): `tp_btf` programs on TCP state
//! changes and retransmissions, counting only sockets on the edge's ports.

use aya::maps::{HashMap, MapData, PerCpuArray};
use aya::programs::BtfTracePoint;
use aya::{Btf, Ebpf};

use crate::EbpfError;

static OBJECT: &[u8] = aya::include_bytes_aligned!("../obj/tcpmetrics.bpf.o");

/// TCP states by their kernel number (`include/net/tcp_states.h`).
pub const STATES: [(u32, &str); 12] = [
    (1, "established"),
    (2, "syn_sent"),
    (3, "syn_recv"),
    (4, "fin_wait1"),
    (5, "fin_wait2"),
    (6, "time_wait"),
    (7, "close"),
    (8, "close_wait"),
    (9, "last_ack"),
    (10, "listen"),
    (11, "closing"),
    (12, "new_syn_recv"),
];

/// Counts since the programs were attached.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TcpCounts {
    pub retransmits: u64,
    /// Entries into each state, by name.
    pub entered: Vec<(&'static str, u64)>,
}

pub struct TcpMetrics {
    _ebpf: Ebpf,
    counters: PerCpuArray<MapData, u64>,
}

impl TcpMetrics {
    /// Loads and attaches the programs, counting sockets on `ports` in this process's
    /// network namespace.
    pub fn start(ports: &[u16]) -> Result<Self, EbpfError> {
        let mut ebpf = Ebpf::load(OBJECT)?;
        let inum = std::fs::metadata("/proc/thread-self/ns/net")
            .map(|m| std::os::unix::fs::MetadataExt::ino(&m) as u32)
            .unwrap_or(0);
        let mut netns: aya::maps::Array<MapData, u32> = aya::maps::Array::try_from(
            ebpf.take_map("netns")
                .ok_or(EbpfError::Missing("map `netns`"))?,
        )?;
        netns.set(0, inum, 0)?;
        let mut watched: HashMap<MapData, u16, u8> = HashMap::try_from(
            ebpf.take_map("ports")
                .ok_or(EbpfError::Missing("map `ports`"))?,
        )?;
        for &port in ports {
            watched.insert(port, 1, 0)?;
        }
        let counters = PerCpuArray::try_from(
            ebpf.take_map("counters")
                .ok_or(EbpfError::Missing("map `counters`"))?,
        )?;
        let btf = Btf::from_sys_fs().map_err(|e| EbpfError::Btf(e.to_string()))?;
        for (program, tracepoint) in [
            ("on_state_change", "inet_sock_set_state"),
            ("on_retransmit", "tcp_retransmit_skb"),
        ] {
            let program: &mut BtfTracePoint = ebpf
                .program_mut(program)
                .ok_or(EbpfError::Missing("a tp_btf program"))?
                .try_into()?;
            program.load(tracepoint, &btf)?;
            program.attach()?;
        }
        // Loaded programs hold the maps; our handles may go now.
        drop((watched, netns));
        Ok(TcpMetrics {
            _ebpf: ebpf,
            counters,
        })
    }

    pub fn counts(&self) -> TcpCounts {
        let sum = |slot: u32| crate::per_cpu_sum(&self.counters, slot);
        TcpCounts {
            retransmits: sum(0),
            entered: STATES.iter().map(|(n, name)| (*name, sum(*n))).collect(),
        }
    }
}
