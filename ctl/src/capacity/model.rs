//! The capacity model: from a fleet's size and habits and the measured unit costs
//! ([`Calibration`]), the machines it needs, with the headroom to lose one host (and,
//! with two sites, a whole site). Pure arithmetic: every figure is a rate times a
//! measured cost; the assumptions are the [`Demand`] fields.

use pylon_proto::api::capacity::{Calibration, TransportCosts};
use serde::Serialize;

/// The fleet and its habits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Demand {
    pub piles: u64,
    /// Share of piles on TLS (0..=1).
    pub tls_share: f64,
    /// Share of piles charging at the busy hour (0..=1).
    pub charging_share: f64,
    /// Seconds between a pile's heartbeats.
    pub heartbeat_secs: f64,
    /// Seconds between an idle pile's real-time status frames (0x13).
    pub idle_status_secs: f64,
    /// Seconds between a charging gun's frames (0x13, 0x23 and 0x25 each).
    pub charging_frame_secs: f64,
    /// Mean length of a charge, in minutes (a record at each end).
    pub charge_minutes: f64,
}

impl Default for Demand {
    fn default() -> Self {
        Demand {
            piles: 100_000,
            tls_share: 0.8,
            charging_share: 0.15,
            heartbeat_secs: 10.0,
            idle_status_secs: 300.0,
            charging_frame_secs: 15.0,
            charge_minutes: 60.0,
        }
    }
}

/// The machines and the margins to keep.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hardware {
    pub edge_cores: u32,
    pub edge_memory_gib: f64,
    pub app_cores: u32,
    /// Busy share of a core (or of memory) not to exceed in normal running (0..1).
    pub utilization: f64,
    /// 1, or 2 for a standby site that must carry everything on its own.
    pub sites: u32,
    /// Seconds within which a lost host's chargers must be set up again on the others.
    pub reconnect_secs: f64,
    /// Sessions one edge host may hold (its open-file limit: the unit's LimitNOFILE).
    pub max_sessions_per_host: u64,
}

impl Default for Hardware {
    fn default() -> Self {
        Hardware {
            edge_cores: 16,
            edge_memory_gib: 64.0,
            app_cores: 8,
            utilization: 0.6,
            sites: 1,
            reconnect_secs: 60.0,
            max_sessions_per_host: 1_000_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    /// Rates the fleet makes.
    pub heartbeats_per_sec: f64,
    pub business_frames_per_sec: f64,
    pub records_per_sec: f64,
    /// Edge tier, per site.
    pub edge_cpu_cores: f64,
    pub edge_memory_gib: f64,
    /// Cores a lost host's chargers take to set up again within `reconnect_secs`.
    pub reconnect_cpu_cores: f64,
    pub edge_hosts_per_site: u32,
    /// What limits the edge hosts: "cpu", "memory", "reconnect" or "sessions" (the
    /// open-file limit).
    pub edge_bound_by: &'static str,
    /// Sessions per edge host when one host of the site is down.
    pub sessions_per_host_after_loss: u64,
    /// App tier, per site.
    pub app_cpu_cores: f64,
    pub app_instances_per_site: u32,
    pub sites: u32,
    /// The store.
    pub store_row_writes_per_sec: f64,
    pub store_transactions_per_sec: f64,
    /// The registry (etcd): members and their writes.
    pub registry_members: u32,
    pub registry_writes_per_sec: f64,
    /// Between chargers and edges, both directions.
    pub network_mbit_per_sec: f64,
}

/// Bytes on the wire per frame, with TCP/IP headers (52) and, over TLS, a record's
/// framing (22); a heartbeat and its answer are each about 17 bytes of YKC.
const TCP_IP_BYTES: f64 = 52.0;
const TLS_RECORD_BYTES: f64 = 22.0;
const HEARTBEAT_FRAME_BYTES: f64 = 17.0;
const BUSINESS_FRAME_BYTES: f64 = 80.0;
/// Telemetry and load reports each member writes, per second (every 30 s).
const REGISTRY_WRITES_PER_MEMBER: f64 = 1.0 / 30.0;
/// Frames a charge adds besides its real-time ones: start, its answer, record, confirm.
const FRAMES_PER_CHARGE: f64 = 4.0;

pub(crate) fn mix(tls_share: f64, tls: f64, tcp: f64) -> f64 {
    tls_share * tls + (1.0 - tls_share) * tcp
}

pub(crate) fn per_session_bytes(c: &TransportCosts) -> f64 {
    c.user_bytes_per_session + c.kernel_bytes_per_session
}

pub fn plan(cal: &Calibration, demand: &Demand, hw: &Hardware) -> Plan {
    let piles = demand.piles as f64;
    let tls = demand.tls_share.clamp(0.0, 1.0);
    let charging = piles * demand.charging_share.clamp(0.0, 1.0);
    let idle = piles - charging;

    let heartbeats = piles / demand.heartbeat_secs.max(0.1);
    let records = charging / (demand.charge_minutes.max(1.0) * 60.0);
    let frames = idle / demand.idle_status_secs.max(1.0)
        + charging * 3.0 / demand.charging_frame_secs.max(1.0)
        + records * FRAMES_PER_CHARGE;

    let (etls, etcp) = (&cal.edge.tls, &cal.edge.tcp);
    let edge_ms_per_frame = mix(
        tls,
        etls.cpu_ms_per_1000_heartbeats,
        etcp.cpu_ms_per_1000_heartbeats,
    ) / 1000.0;
    let edge_cpu = (heartbeats + frames) * edge_ms_per_frame / 1000.0;
    let memory_bytes = piles * mix(tls, per_session_bytes(etls), per_session_bytes(etcp));
    let memory_gib = memory_bytes / f64::from(1u32 << 30);
    let setup_ms = mix(tls, etls.cpu_ms_per_setup, etcp.cpu_ms_per_setup);

    let utilization = hw.utilization.clamp(0.05, 1.0);
    // Each executor (one per core) spends a little with nobody connected.
    let idle_per_core = mix(tls, etls.idle_cpu_per_executor, etcp.idle_cpu_per_executor);
    let core_budget = f64::from(hw.edge_cores.max(1)) * (utilization - idle_per_core).max(0.01);
    let memory_budget = hw.edge_memory_gib * utilization;
    // Hosts such that, with one host down, the others run the load within the budget
    // (cpu, memory) and set the lost host's chargers up again within reconnect_secs
    // using every core (reconnect).
    let for_cpu = (edge_cpu / core_budget).ceil().max(1.0) as u32 + 1;
    let for_memory = (memory_gib / memory_budget).ceil().max(1.0) as u32 + 1;
    let cores = f64::from(hw.edge_cores.max(1));
    let storm = |hosts: u32| {
        let lost = piles / f64::from(hosts);
        lost * setup_ms / 1000.0 / hw.reconnect_secs.max(1.0)
    };
    let mut for_reconnect = 2u32;
    while (edge_cpu + storm(for_reconnect)) / f64::from(for_reconnect - 1) > cores
        && for_reconnect < 1_000_000
    {
        for_reconnect += 1;
    }
    let for_sessions = (piles / hw.max_sessions_per_host.max(1) as f64)
        .ceil()
        .max(1.0) as u32
        + 1;
    let (hosts, bound) = [
        (for_cpu, "cpu"),
        (for_memory, "memory"),
        (for_reconnect, "reconnect"),
        (for_sessions, "sessions"),
    ]
    .into_iter()
    .fold(
        (0, "cpu"),
        |best, (n, why)| if n > best.0 { (n, why) } else { best },
    );
    let reconnect_cores = storm(hosts);

    let app_cpu =
        (piles * cal.app.cpu_ms_per_pile_sec + frames * cal.app.cpu_ms_per_frame) / 1000.0;
    let app_budget = f64::from(hw.app_cores.max(1)) * utilization;
    // One more than the load needs, so that losing one leaves enough.
    let app_instances = (app_cpu / app_budget).ceil().max(1.0) as u32 + 1;

    let row_writes = frames * cal.app.row_writes_per_frame;
    let transactions = frames * cal.app.transactions_per_frame;

    let members = hosts + app_instances;
    let sites = hw.sites.clamp(1, 2);
    let frame_overhead = TCP_IP_BYTES + tls * TLS_RECORD_BYTES;
    let bytes = heartbeats * 2.0 * (HEARTBEAT_FRAME_BYTES + frame_overhead)
        + frames * (BUSINESS_FRAME_BYTES + frame_overhead + TCP_IP_BYTES);

    Plan {
        heartbeats_per_sec: heartbeats,
        business_frames_per_sec: frames,
        records_per_sec: records,
        edge_cpu_cores: edge_cpu,
        edge_memory_gib: memory_gib,
        reconnect_cpu_cores: reconnect_cores,
        edge_hosts_per_site: hosts,
        edge_bound_by: bound,
        sessions_per_host_after_loss: (piles / f64::from(hosts - 1)).ceil() as u64,
        app_cpu_cores: app_cpu,
        app_instances_per_site: app_instances,
        sites,
        store_row_writes_per_sec: row_writes,
        store_transactions_per_sec: transactions,
        registry_members: members * sites,
        registry_writes_per_sec: f64::from(members * sites) * REGISTRY_WRITES_PER_MEMBER,
        network_mbit_per_sec: bytes * 8.0 / 1e6,
    }
}

#[cfg(test)]
mod tests;
