//! Kubernetes resources per pod, from a [`Plan`]: what `deploy/k8s` asks for.
//!
//! - An edge pod runs one per edge host (a DaemonSet). It requests the memory of the
//!   sessions it holds with one host down (user and kernel: socket buffers are charged
//!   to the pod's cgroup) plus the process's own, and the cores that load and the lost
//!   host's reconnect storm take; its limit leaves half as much again for a burst of
//!   handshakes. No CPU limit: throttling would show as heartbeat latency.
//! - An app pod requests its share of the app tier's cores with one instance down. Its
//!   memory is not calibrated, so the plan says nothing of it.

use pylon_proto::api::capacity::Calibration;
use serde::Serialize;

use super::model::{mix, per_session_bytes, Demand, Hardware, Plan};

/// An allowance for an edge process's memory besides its sessions (code, TLS
/// configuration, each executor's I/O memory and tables). Not calibrated: the benches
/// measure memory per session, not the process's own.
const EDGE_BASE_MIB: f64 = 64.0;
/// Memory is requested in steps of this.
const MEMORY_STEP_MIB: f64 = 64.0;
/// CPU is requested in steps of this (millicores).
const CPU_STEP_MILLI: f64 = 100.0;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PodResources {
    /// Kubernetes quantities: `2500m`, `1536Mi`.
    pub cpu_request: String,
    pub memory_request: Option<String>,
    pub memory_limit: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pods {
    pub edge: PodResources,
    pub app: PodResources,
}

fn millicores(cores: f64) -> String {
    let milli = ((cores * 1000.0 / CPU_STEP_MILLI).ceil() * CPU_STEP_MILLI).max(CPU_STEP_MILLI);
    format!("{milli:.0}m")
}

fn mebibytes(mib: f64) -> String {
    let mib = ((mib / MEMORY_STEP_MIB).ceil() * MEMORY_STEP_MIB).max(MEMORY_STEP_MIB);
    format!("{mib:.0}Mi")
}

pub fn pods(cal: &Calibration, demand: &Demand, hw: &Hardware, plan: &Plan) -> Pods {
    let tls = demand.tls_share.clamp(0.0, 1.0);
    let (etls, etcp) = (&cal.edge.tls, &cal.edge.tcp);
    let serving = f64::from(plan.edge_hosts_per_site.saturating_sub(1).max(1));
    let session_bytes = mix(tls, per_session_bytes(etls), per_session_bytes(etcp));
    let sessions_mib = plan.sessions_per_host_after_loss as f64 * session_bytes / 1048576.0;
    let edge_mib = EDGE_BASE_MIB + sessions_mib;
    let idle = mix(tls, etls.idle_cpu_per_executor, etcp.idle_cpu_per_executor)
        * f64::from(hw.edge_cores.max(1));
    let edge_cores = (plan.edge_cpu_cores + plan.reconnect_cpu_cores) / serving + idle;
    let app_serving = f64::from(plan.app_instances_per_site.saturating_sub(1).max(1));
    Pods {
        edge: PodResources {
            cpu_request: millicores(edge_cores),
            memory_request: Some(mebibytes(edge_mib)),
            memory_limit: Some(mebibytes(edge_mib * 1.5)),
        },
        app: PodResources {
            cpu_request: millicores(plan.app_cpu_cores / app_serving),
            memory_request: None,
            memory_limit: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_round_up_to_their_steps() {
        assert_eq!(millicores(0.0), "100m");
        assert_eq!(millicores(2.01), "2100m");
        assert_eq!(millicores(2.5), "2500m");
        assert_eq!(mebibytes(1.0), "64Mi");
        assert_eq!(mebibytes(1537.0), "1600Mi");
    }

    #[test]
    fn an_edge_pod_holds_its_share_with_a_host_down() {
        let cal: Calibration =
            serde_json::from_str(include_str!("../../../capacity/calibration.json")).unwrap();
        let demand = Demand {
            piles: 300_000,
            ..Demand::default()
        };
        let hw = Hardware {
            edge_cores: 8,
            edge_memory_gib: 16.0,
            ..Hardware::default()
        };
        let p = super::super::model::plan(&cal, &demand, &hw);
        let pods = pods(&cal, &demand, &hw, &p);
        let mib = |q: &Option<String>| -> f64 {
            q.as_deref()
                .and_then(|q| q.strip_suffix("Mi"))
                .and_then(|n| n.parse().ok())
                .unwrap()
        };
        let request = mib(&pods.edge.memory_request);
        let per_session = mix(
            demand.tls_share,
            per_session_bytes(&cal.edge.tls),
            per_session_bytes(&cal.edge.tcp),
        );
        let needed = p.sessions_per_host_after_loss as f64 * per_session / 1048576.0;
        assert!(request >= needed && request <= needed + EDGE_BASE_MIB + 64.0);
        assert!(mib(&pods.edge.memory_limit) >= request * 1.5 - 64.0);
        // Twice the piles: more hosts or bigger pods, never smaller ones.
        let bigger = Demand {
            piles: 600_000,
            ..demand
        };
        let p2 = super::super::model::plan(&cal, &bigger, &hw);
        let pods2 = super::pods(&cal, &bigger, &hw, &p2);
        assert!(
            p2.edge_hosts_per_site > p.edge_hosts_per_site
                || mib(&pods2.edge.memory_request) > request
        );
        assert_eq!(
            pods.app.memory_request, None,
            "app memory is not calibrated"
        );
    }
}
