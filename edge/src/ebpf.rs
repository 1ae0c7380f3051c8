//! Kernel help for spreading connections (`pylon-ebpf`): an SK_REUSEPORT program per
//! listening port hands each new connection to the executor whose CPU received the SYN.
//!
//! `--ebpf off` (the default) uses plain SO_REUSEPORT hashing; `auto` uses the program
//! when it loads and says so in the log when it does not (no privileges, old kernel);
//! `on` refuses to start without it.

use std::net::TcpListener;
use std::sync::Mutex;

use pylon_ebpf::reuseport::{CpuListenerSelector, Selections};
use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
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
    pub fn load(mode: EbpfMode, listeners: [bool; 2]) -> anyhow::Result<Option<Self>> {
        if mode == EbpfMode::Off {
            return Ok(None);
        }
        let mut slots = Vec::new();
        for wanted in listeners {
            if !wanted {
                slots.push(None);
                continue;
            }
            match CpuListenerSelector::load() {
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
