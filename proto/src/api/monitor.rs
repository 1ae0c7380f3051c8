//! What operators watch: the fleet at a glance, piles filtered in the store, guns' traces,
//! and alarms with their states (`pylon-app`, reached through the control plane).
//!
//! - `GET /v1/fleet` -> [`Fleet`]: counts of piles by state, open alarms, today's energy,
//!   revenue and records (answered from the store, so by any instance)
//! - `GET /v1/fleet/piles?q=&state=&station=&firmware=&after=&limit=` -> [`PilePage`]
//! - `GET /v1/piles/{pile}/samples?from=&to=` -> `Vec<GunSample>` (oldest first)
//! - `GET /v1/alarms?state=&pile=&kind=&after=&limit=` -> [`AlarmPage`] (newest first)
//! - `GET /v1/alarms/{id}` -> [`Alarm`]
//! - `POST /v1/alarms/{id}/ack`, `POST /v1/alarms/{id}/resolve` with [`AlarmNote`]
//! - `POST /v1/alarms` with [`RaiseAlarm`] (platform alarms the control plane raises) and
//!   `POST /v1/alarms/clear` with [`ClearAlarm`]
//! - `GET /v1/overview` and the `overview` events of `GET /v1/events` (control plane, SSE)
//!   -> [`Overview`]

use serde::{Deserialize, Serialize};

/// How urgent an alarm is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Someone must act now (a pile down, hardware that stops charging, money at risk).
    Critical,
    /// Needs a look today.
    Warning,
    Info,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }

    pub fn parse(text: &str) -> Option<Severity> {
        match text {
            "critical" => Some(Severity::Critical),
            "warning" => Some(Severity::Warning),
            "info" => Some(Severity::Info),
            _ => None,
        }
    }
}

/// Where an alarm is in its life: open -> acknowledged -> resolved (or open -> resolved).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlarmState {
    Open,
    Acknowledged,
    Resolved,
}

impl AlarmState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlarmState::Open => "open",
            AlarmState::Acknowledged => "acknowledged",
            AlarmState::Resolved => "resolved",
        }
    }

    pub fn parse(text: &str) -> Option<AlarmState> {
        match text {
            "open" => Some(AlarmState::Open),
            "acknowledged" => Some(AlarmState::Acknowledged),
            "resolved" => Some(AlarmState::Resolved),
            _ => None,
        }
    }
}

/// One alarm: a condition that was raised (once, or `count` times while not resolved).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alarm {
    pub id: i64,
    /// What kind of condition: `pile_offline`, `gun_fault`, `charge_abnormal_end`, ...
    pub kind: String,
    pub severity: Severity,
    pub pile_no: Option<String>,
    pub gun_no: Option<String>,
    /// What the alarm is about, as a short name (`pile 32010200000001 gun 1`, `edge-2`).
    pub subject: String,
    /// What happened, for a person.
    pub text: String,
    pub state: AlarmState,
    /// Times the condition was raised while this alarm was not resolved.
    pub count: i64,
    pub first_at: i64,
    pub last_at: i64,
    pub acked_by: Option<String>,
    pub acked_at: Option<i64>,
    pub resolved_by: Option<String>,
    pub resolved_at: Option<i64>,
}

/// `GET /v1/alarms`: a page, and the `after` of the next one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlarmPage {
    pub alarms: Vec<Alarm>,
    pub next: Option<i64>,
}

/// The body of an acknowledgement or a resolution.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlarmNote {
    #[serde(default)]
    pub note: Option<String>,
}

/// A condition to raise (deduplicated by `key` while an alarm with it is not resolved).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RaiseAlarm {
    pub key: String,
    pub kind: String,
    pub severity: Severity,
    pub subject: String,
    pub text: String,
    #[serde(default)]
    pub pile_no: Option<String>,
    #[serde(default)]
    pub gun_no: Option<String>,
}

/// The condition behind `key` is over: its alarm (if any is not resolved) is resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClearAlarm {
    pub key: String,
}

/// A pile's state as lists show and filter it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PileState {
    /// Not connected to any edge.
    Offline,
    /// Connected, no gun charging or faulted.
    Idle,
    /// Connected, a gun charging.
    Charging,
    /// Connected, a gun reports a fault.
    Faulted,
}

impl PileState {
    pub fn parse(text: &str) -> Option<PileState> {
        match text {
            "offline" => Some(PileState::Offline),
            "idle" => Some(PileState::Idle),
            "charging" => Some(PileState::Charging),
            "faulted" => Some(PileState::Faulted),
            _ => None,
        }
    }
}

/// A pile in a list: what an operator filters on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PileSummary {
    pub pile_no: String,
    pub name: String,
    pub enabled: bool,
    pub online: bool,
    pub state: PileState,
    /// The program version the pile gave at its last login.
    pub firmware: String,
    pub station: Option<i64>,
    pub last_login_at: Option<i64>,
    /// When the pile last connected or went offline.
    pub seen_at: Option<i64>,
}

/// `GET /v1/fleet/piles`: a page, and the `after` of the next one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PilePage {
    pub piles: Vec<PileSummary>,
    pub next: Option<String>,
}

/// One point of a gun's trace (kept at most once a minute per gun, and at each change of
/// status).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GunSample {
    pub gun_no: String,
    pub at: i64,
    /// Volts.
    pub voltage: f64,
    /// Amperes.
    pub current: f64,
    /// Kilowatts (voltage x current).
    pub power_kw: f64,
    /// Percent.
    pub soc: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PileCounts {
    pub total: u64,
    pub online: u64,
    pub offline: u64,
    pub charging: u64,
    pub faulted: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlarmCounts {
    /// Not resolved (open or acknowledged).
    pub open: u64,
    /// Of those, critical.
    pub critical: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Today {
    /// Energy of the transaction records received today (the app's time zone).
    pub energy_kwh: f64,
    /// Their amounts.
    pub revenue_yuan: f64,
    pub records: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PerMinute {
    /// Transaction records received in the last minute.
    pub records: u64,
    /// Heartbeats the edges answered in the last minute (summed from their reports).
    #[serde(default)]
    pub heartbeats: u64,
}

/// `GET /v1/fleet`: the whole fleet from the store.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Fleet {
    pub piles: PileCounts,
    pub alarms: AlarmCounts,
    pub today: Today,
    pub per_minute: PerMinute,
}

/// An edge as the overview shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EdgeLoad {
    pub id: String,
    pub sessions: u64,
    /// Sessions on each executor (core), as the edge last reported.
    pub executors: Vec<u64>,
    pub draining: bool,
    pub live: bool,
}

/// An app instance as the overview shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppLoad {
    pub id: String,
    pub shards: u64,
    pub sessions: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteState {
    pub version: u64,
}

/// `GET /v1/overview` (control plane), also pushed as `overview` server-sent events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Overview {
    pub at: i64,
    pub piles: PileCounts,
    pub alarms: AlarmCounts,
    pub today: Today,
    pub per_minute: PerMinute,
    pub edges: Vec<EdgeLoad>,
    pub apps: Vec<AppLoad>,
    pub routes: RouteState,
}

/// The fleet at one sampling time (`GET /v1/fleet/history`), oldest first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetSample {
    /// Start of the sampling period, Unix ms.
    pub at: i64,
    /// Piles registered.
    pub piles: u64,
    pub online: u64,
    pub charging: u64,
}
