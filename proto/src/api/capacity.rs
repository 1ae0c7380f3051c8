//! `capacity/calibration.json`: what one unit of work costs, measured by
//! `cargo xtask bench --calibrate` and read by `pylonctl capacity plan`.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// When it was measured (Unix seconds).
    pub measured_at: u64,
    pub machine: Machine,
    /// The sessions held while measuring the edge.
    pub sessions: u64,
    /// The chargers' heartbeat interval while measuring, in seconds.
    pub heartbeat_secs: f64,
    pub edge: EdgeCosts,
    pub app: AppCosts,
    /// The model checked at another size, when `--check-at` was given.
    #[serde(default)]
    pub check: Option<ModelCheck>,
}

/// The machine the costs were measured on: costs scale with its cores' speed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: u32,
    pub memory_gib: f64,
    pub kernel: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EdgeCosts {
    pub tls: TransportCosts,
    pub tcp: TransportCosts,
}

/// One edge process's costs for one transport.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransportCosts {
    /// CPU milliseconds per 1,000 heartbeats answered, beyond what an idle process
    /// spends (frames of any kind cost about the same: decode, a table lookup, encode).
    pub cpu_ms_per_1000_heartbeats: f64,
    /// CPU seconds per second an edge executor spends with nobody connected (timers).
    #[serde(default)]
    pub idle_cpu_per_executor: f64,
    /// CPU milliseconds per session set up (TCP accept, TLS handshake, login).
    pub cpu_ms_per_setup: f64,
    /// Edge process memory per idle session.
    pub user_bytes_per_session: f64,
    /// Kernel memory per session (socket, buffers), estimated.
    pub kernel_bytes_per_session: f64,
}

impl TransportCosts {
    /// What these costs predict for an edge bench run: `sessions` held for `hold_secs`
    /// by `executors` single-executor processes, each session heartbeating every
    /// `heartbeat_secs` (the model: a fixed cost per executor plus costs per unit).
    pub fn predict_bench(
        &self,
        sessions: u64,
        executors: u32,
        heartbeat_secs: f64,
        hold_secs: f64,
    ) -> Figures {
        let heartbeats = sessions as f64 / heartbeat_secs.max(0.1) * hold_secs;
        Figures {
            cpu_seconds: heartbeats / 1000.0 * self.cpu_ms_per_1000_heartbeats / 1000.0
                + f64::from(executors) * self.idle_cpu_per_executor * hold_secs,
            user_bytes: sessions as f64 * self.user_bytes_per_session,
            kernel_bytes: sessions as f64 * self.kernel_bytes_per_session,
        }
    }
}

/// The app service's costs, measured on PostgreSQL. Frames are every business frame a
/// charging pile sends (real-time status, charging data, the record at the end), so the
/// records' settlement is spread over them; `frames_per_record` says how many a charge
/// sent where it was measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppCosts {
    pub backend: String,
    /// CPU milliseconds per second per connected pile (presence, periodic checks).
    pub cpu_ms_per_pile_sec: f64,
    /// CPU milliseconds per business frame.
    pub cpu_ms_per_frame: f64,
    /// Store rows written (inserted, updated, deleted) per business frame.
    pub row_writes_per_frame: f64,
    /// Store transactions committed per business frame.
    pub transactions_per_frame: f64,
    /// Business frames per transaction record in the measurement.
    pub frames_per_record: f64,
}

/// Calibrated at one size, the model's prediction at another against the measurement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelCheck {
    pub sessions: u64,
    pub transport: String,
    pub predicted: Figures,
    pub measured: Figures,
}

/// The edge's load at one size, over the same hold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    /// CPU seconds over the hold.
    pub cpu_seconds: f64,
    pub user_bytes: f64,
    pub kernel_bytes: f64,
}
