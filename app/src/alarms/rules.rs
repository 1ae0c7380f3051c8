//! The alarm rules, sans-io: which conditions are alarms, their keys (what deduplicates
//! them), severities and texts. The engine ([`super::Alarms`]) feeds them events and
//! stores what they raise.

use std::collections::{HashMap, VecDeque};

use pylon_proto::api::monitor::{RaiseAlarm, Severity};

/// The hardware fault bits of frame 0x13, bit 1 (the lowest) first, as the spec names them.
pub const FAULT_BITS: [&str; 13] = [
    "emergency stop pressed (急停按钮动作故障)",
    "no rectifier module available (无可用整流模块)",
    "outlet over-temperature (出风口温度过高)",
    "AC lightning protection fault (交流防雷故障)",
    "AC/DC module DC20 communication lost (交直流模块 DC20 通信中断)",
    "insulation monitor FC08 communication lost (绝缘检测模块 FC08 通信中断)",
    "energy meter communication lost (电度表通信中断)",
    "card reader communication lost (读卡器通信中断)",
    "RC10 communication lost (RC10 通信中断)",
    "fan speed board fault (风扇调速板故障)",
    "DC fuse fault (直流熔断器故障)",
    "high-voltage contactor fault (高压接触器故障)",
    "door open (门打开)",
];

/// Bits 1..=13 that are set in `bits` (bit 1 is the lowest).
pub fn fault_bits(bits: u16) -> impl Iterator<Item = u8> {
    (1..=FAULT_BITS.len() as u8).filter(move |bit| bits & (1 << (bit - 1)) != 0)
}

/// The key of a gun's fault bit alarm.
pub fn fault_key(pile: &str, gun: &str, bit: u8) -> String {
    format!("gun_fault:{pile}:{gun}:{bit}")
}

/// The alarm of one hardware fault bit of a gun. Emergency stops, missing rectifiers,
/// fuses and contactors stop charging: critical; the rest warn.
pub fn gun_fault(pile: &str, gun: &str, bit: u8) -> RaiseAlarm {
    let name = FAULT_BITS
        .get(usize::from(bit).saturating_sub(1))
        .copied()
        .unwrap_or("unknown fault bit");
    let severity = if matches!(bit, 1 | 2 | 11 | 12) {
        Severity::Critical
    } else {
        Severity::Warning
    };
    RaiseAlarm {
        key: fault_key(pile, gun, bit),
        kind: "gun_fault".into(),
        severity,
        subject: format!("pile {pile} gun {gun}"),
        text: format!("hardware fault bit {bit}: {name}"),
        pile_no: Some(pile.into()),
        gun_no: Some(gun.into()),
    }
}

/// What changed between a gun's fault bits before and now: bits raised, bits cleared.
pub fn fault_changes(before: u16, now: u16) -> (Vec<u8>, Vec<u8>) {
    (
        fault_bits(now & !before).collect(),
        fault_bits(before & !now).collect(),
    )
}

pub fn offline_key(pile: &str) -> String {
    format!("pile_offline:{pile}")
}

/// Why an edge closed a pile's session, as it reports it: is that an alarm? A pile that
/// stops heartbeating or whose link breaks is; one that closes its connection, is moved
/// by an operator's drain or replaced by its own new login is not.
pub fn offline_is_abnormal(reason: &str) -> bool {
    matches!(
        reason,
        "heartbeat_timeout" | "io_error" | "tls_error" | "panic" | "buffer_limit"
    )
}

pub fn pile_offline(pile: &str, reason: &str) -> RaiseAlarm {
    let why = match reason {
        "heartbeat_timeout" => "missed three heartbeats",
        "io_error" | "tls_error" => "its connection broke",
        _ => "its session ended abnormally",
    };
    RaiseAlarm {
        key: offline_key(pile),
        kind: "pile_offline".into(),
        severity: Severity::Critical,
        subject: format!("pile {pile}"),
        text: format!("pile {pile} went offline: {why} ({reason})"),
        pile_no: Some(pile.into()),
        gun_no: None,
    }
}

pub fn flapping_key(pile: &str) -> String {
    format!("pile_flapping:{pile}")
}

pub fn pile_flapping(pile: &str, logins: usize, minutes: u64) -> RaiseAlarm {
    RaiseAlarm {
        key: flapping_key(pile),
        kind: "pile_flapping".into(),
        severity: Severity::Warning,
        subject: format!("pile {pile}"),
        text: format!("pile {pile} logged in {logins} times within {minutes} minutes"),
        pile_no: Some(pile.into()),
        gun_no: None,
    }
}

/// Counts logins per pile in a sliding window: `threshold` logins within `window_ms`
/// is flapping.
#[derive(Debug)]
pub struct FlapDetector {
    threshold: usize,
    window_ms: i64,
    logins: HashMap<String, VecDeque<i64>>,
    /// Piles found flapping whose window has not ended.
    flapping: std::collections::HashSet<String>,
}

impl FlapDetector {
    pub fn new(threshold: usize, window_ms: i64) -> FlapDetector {
        FlapDetector {
            threshold: threshold.max(2),
            window_ms,
            logins: HashMap::new(),
            flapping: Default::default(),
        }
    }

    pub fn window_minutes(&self) -> u64 {
        (self.window_ms / 60_000).max(1) as u64
    }

    /// Notes a login; the logins in the window when that makes the pile flapping.
    pub fn login(&mut self, pile: &str, at: i64) -> Option<usize> {
        let times = self.logins.entry(pile.to_owned()).or_default();
        times.push_back(at);
        while times
            .front()
            .is_some_and(|first| at.saturating_sub(*first) > self.window_ms)
        {
            times.pop_front();
        }
        // Keep no more than the threshold: memory stays bounded per pile.
        while times.len() > self.threshold {
            times.pop_front();
        }
        let flapping = times.len() >= self.threshold;
        if flapping {
            self.flapping.insert(pile.to_owned());
        }
        flapping.then_some(times.len())
    }

    /// Forgets piles whose last login left the window (bounded memory); the piles that
    /// were flapping and calmed down (their alarm can be resolved).
    pub fn prune(&mut self, now: i64) -> Vec<String> {
        let window = self.window_ms;
        self.logins
            .retain(|_, times| times.back().is_some_and(|last| now - last <= window));
        let calm: Vec<String> = self
            .flapping
            .iter()
            .filter(|p| !self.logins.contains_key(*p))
            .cloned()
            .collect();
        for pile in &calm {
            self.flapping.remove(pile);
        }
        calm
    }
}

/// The stop reasons of the spec's appendix that mean a charge did not end as the user
/// wanted: start failures (0x4A..0x69), abnormal stops (0x6A..0x8F) and 0x90 (unknown).
/// `None` for normal ends (0x40..0x49) and for anything else.
pub fn abnormal_stop(reason: u8) -> Option<&'static str> {
    let named = match reason {
        0x4A => "start failed: control system fault",
        0x4B => "start failed: control pilot disconnected",
        0x4C => "start failed: circuit breaker tripped",
        0x4D => "start failed: energy meter communication lost",
        0x4E => "start failed: balance too low",
        0x4F => "start failed: charging module fault",
        0x50 => "start failed: emergency stop",
        0x51 => "start failed: surge protector fault",
        0x52 => "start failed: BMS not ready",
        0x53 => "start failed: temperature abnormal",
        0x54 => "start failed: battery reversed",
        0x55 => "start failed: electronic lock fault",
        0x56 => "start failed: contactor did not close",
        0x57 => "start failed: insulation fault",
        0x59..=0x5F => "start failed: BMS message timeout",
        0x60..=0x64 => "start failed: GB/T handshake failure",
        0x6A => "stopped abnormally: system locked",
        0x6B => "stopped abnormally: control pilot disconnected",
        0x6C => "stopped abnormally: circuit breaker tripped",
        0x6D => "stopped abnormally: energy meter communication lost",
        0x6E => "stopped abnormally: balance too low",
        0x6F => "stopped abnormally: AC protection",
        0x70 => "stopped abnormally: DC protection",
        0x71 => "stopped abnormally: charging module fault",
        0x72 => "stopped abnormally: emergency stop",
        0x73 => "stopped abnormally: surge protector fault",
        0x74 => "stopped abnormally: temperature abnormal",
        0x75 => "stopped abnormally: output abnormal",
        0x76 => "stopped abnormally: no current",
        0x77 => "stopped abnormally: electronic lock fault",
        0x79..=0x81 => "stopped abnormally: battery voltage or temperature",
        0x82 => "stopped abnormally: the vehicle forbade charging",
        0x83 => "stopped abnormally: the pile lost power",
        0x84..=0x89 => "stopped abnormally: BMS message timeout",
        0x90 => "stopped for an unknown reason",
        _ => "",
    };
    // The reserved codes of each class still belong to it.
    match reason {
        _ if !named.is_empty() => Some(named),
        0x4A..=0x69 => Some("start failed"),
        0x6A..=0x8F => Some("stopped abnormally"),
        _ => None,
    }
}

pub fn charge_abnormal_end(
    pile: &str,
    gun: &str,
    trade_no: &str,
    reason: u8,
) -> Option<RaiseAlarm> {
    let why = abnormal_stop(reason)?;
    Some(RaiseAlarm {
        key: format!("charge_abnormal_end:{trade_no}"),
        kind: "charge_abnormal_end".into(),
        severity: Severity::Warning,
        subject: format!("pile {pile} gun {gun}"),
        text: format!("charge {trade_no} {why} (stop reason {reason:#04x})"),
        pile_no: Some(pile.into()),
        gun_no: Some(gun.into()),
    })
}

pub fn start_unconfirmed(pile: &str, gun: &str, trade_no: &str) -> RaiseAlarm {
    RaiseAlarm {
        key: format!("start_unconfirmed:{trade_no}"),
        kind: "start_unconfirmed".into(),
        severity: Severity::Warning,
        subject: format!("pile {pile} gun {gun}"),
        text: format!("the pile did not confirm the start of {trade_no} within 90 s"),
        pile_no: Some(pile.into()),
        gun_no: Some(gun.into()),
    }
}

pub fn record_missing_key(trade_no: &str) -> String {
    format!("record_missing:{trade_no}")
}

pub fn record_missing(pile: &str, gun: &str, trade_no: &str, minutes: u32) -> RaiseAlarm {
    RaiseAlarm {
        key: record_missing_key(trade_no),
        kind: "record_missing".into(),
        severity: Severity::Critical,
        subject: format!("pile {pile} gun {gun}"),
        text: format!(
            "no transaction record for {trade_no} within {minutes} minutes of its stop: it is not billed"
        ),
        pile_no: Some(pile.into()),
        gun_no: Some(gun.into()),
    }
}

pub fn settlement_discrepancy(pile: &str, trade_no: &str) -> RaiseAlarm {
    RaiseAlarm {
        key: format!("settlement_discrepancy:{trade_no}"),
        kind: "settlement_discrepancy".into(),
        severity: Severity::Warning,
        subject: format!("pile {pile}"),
        text: format!("the pile's amount for {trade_no} differs from the platform's price"),
        pile_no: Some(pile.into()),
        gun_no: None,
    }
}

pub fn record_quarantined(pile: &str, trade_no: &str) -> RaiseAlarm {
    RaiseAlarm {
        key: format!("record_quarantined:{trade_no}"),
        kind: "record_quarantined".into(),
        severity: Severity::Critical,
        subject: format!("pile {pile}"),
        text: format!(
            "a different record arrived under the used trade number {trade_no}: quarantined, not settled"
        ),
        pile_no: Some(pile.into()),
        gun_no: None,
    }
}

pub const STORE_ERRORS_KEY: &str = "store_errors:";

pub fn store_errors(instance: &str, detail: &str) -> RaiseAlarm {
    RaiseAlarm {
        key: format!("{STORE_ERRORS_KEY}{instance}"),
        kind: "store_errors".into(),
        severity: Severity::Critical,
        subject: format!("app {instance}"),
        text: format!("the business store is failing: {detail}"),
        pile_no: None,
        gun_no: None,
    }
}

pub fn certificate_key(instance: &str) -> String {
    format!("certificate_expiring:{instance}")
}

pub fn certificate_expiring(instance: &str, days: i64) -> RaiseAlarm {
    RaiseAlarm {
        key: certificate_key(instance),
        kind: "certificate_expiring".into(),
        severity: if days <= 3 {
            Severity::Critical
        } else {
            Severity::Warning
        },
        subject: instance.into(),
        text: format!("the TLS certificate of {instance} expires in {days} days"),
        pile_no: None,
        gun_no: None,
    }
}

#[cfg(test)]
mod tests;
