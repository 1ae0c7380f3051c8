//! What a fleet process measured, and how reports from several processes are merged.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Live counters of one fleet process.
pub struct FleetStats {
    pub started: Instant,
    pub connected: AtomicI64,
    pub setups: AtomicU64,
    /// Set-ups whose TLS handshake resumed an earlier session (a ticket).
    pub setups_resumed: AtomicU64,
    pub heartbeats_sent: AtomicU64,
    pub heartbeats_ok: AtomicU64,
    pub realtime_sent: AtomicU64,
    pub downlinks: AtomicU64,
    /// Charges started (remote or card), records sent, confirmed, sent again, given up.
    pub charges: AtomicU64,
    pub records_sent: AtomicU64,
    pub records_confirmed: AtomicU64,
    pub record_retransmits: AtomicU64,
    pub records_abandoned: AtomicU64,
    /// Microseconds since `started` at which the last login succeeded.
    pub last_setup_us: AtomicU64,
    /// Where each confirmed record's trade number is written, one per line, as it is
    /// confirmed (for checks that compare with the store).
    pub confirmed_log: Option<Mutex<std::io::LineWriter<std::fs::File>>>,
    errors: Mutex<BTreeMap<String, u64>>,
    rtt_us: Mutex<Histogram<u64>>,
    setup_us: Mutex<Histogram<u64>>,
}

fn histogram() -> Histogram<u64> {
    // 1 µs .. 1 h at 3 significant digits; the bounds are constants, so this cannot fail.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

impl FleetStats {
    /// Notes a confirmed record in the confirmed log, if there is one.
    pub fn confirmed(&self, trade_no: &pylon_proto::ykc::TradeNo) {
        if let Some(log) = &self.confirmed_log {
            use std::io::Write;
            let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
            if let Err(e) = writeln!(log, "{trade_no}") {
                self.error(&format!("confirmed_log: {}", e.kind()));
            }
        }
    }
}

impl Default for FleetStats {
    fn default() -> Self {
        FleetStats {
            started: Instant::now(),
            connected: AtomicI64::new(0),
            setups: AtomicU64::new(0),
            setups_resumed: AtomicU64::new(0),
            heartbeats_sent: AtomicU64::new(0),
            heartbeats_ok: AtomicU64::new(0),
            realtime_sent: AtomicU64::new(0),
            downlinks: AtomicU64::new(0),
            charges: AtomicU64::new(0),
            records_sent: AtomicU64::new(0),
            records_confirmed: AtomicU64::new(0),
            record_retransmits: AtomicU64::new(0),
            records_abandoned: AtomicU64::new(0),
            last_setup_us: AtomicU64::new(0),
            confirmed_log: None,
            errors: Mutex::new(BTreeMap::new()),
            rtt_us: Mutex::new(histogram()),
            setup_us: Mutex::new(histogram()),
        }
    }
}

impl FleetStats {
    pub fn error(&self, kind: &str) {
        if let Ok(mut e) = self.errors.lock() {
            *e.entry(kind.to_string()).or_default() += 1;
        }
    }

    /// A charger connected and logged in, in `micros`; `resumed`: its TLS handshake
    /// resumed an earlier session.
    pub fn setup(&self, micros: u64, resumed: bool) {
        self.setups.fetch_add(1, Ordering::Relaxed);
        if resumed {
            self.setups_resumed.fetch_add(1, Ordering::Relaxed);
        }
        self.last_setup_us
            .fetch_max(self.started.elapsed().as_micros() as u64, Ordering::Relaxed);
        if let Ok(mut h) = self.setup_us.lock() {
            h.saturating_record(micros.max(1));
        }
    }

    pub fn heartbeat_rtt(&self, micros: u64) {
        self.heartbeats_ok.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut h) = self.rtt_us.lock() {
            h.saturating_record(micros.max(1));
        }
    }

    /// Forgets latencies measured so far (e.g. those of the ramp) but keeps the counts.
    pub fn reset_latencies(&self) {
        if let Ok(mut h) = self.rtt_us.lock() {
            h.reset();
        }
    }

    pub fn report(&self) -> FleetReport {
        let hist = |h: &Mutex<Histogram<u64>>| {
            h.lock()
                .map(|h| HistogramData::from(&*h))
                .unwrap_or_default()
        };
        FleetReport {
            elapsed_secs: self.started.elapsed().as_secs_f64(),
            connected: self.connected.load(Ordering::Relaxed),
            setups: self.setups.load(Ordering::Relaxed),
            setups_resumed: self.setups_resumed.load(Ordering::Relaxed),
            last_setup_secs: self.last_setup_us.load(Ordering::Relaxed) as f64 / 1e6,
            heartbeats_sent: self.heartbeats_sent.load(Ordering::Relaxed),
            heartbeats_ok: self.heartbeats_ok.load(Ordering::Relaxed),
            realtime_sent: self.realtime_sent.load(Ordering::Relaxed),
            downlinks: self.downlinks.load(Ordering::Relaxed),
            charges: self.charges.load(Ordering::Relaxed),
            records_sent: self.records_sent.load(Ordering::Relaxed),
            records_confirmed: self.records_confirmed.load(Ordering::Relaxed),
            record_retransmits: self.record_retransmits.load(Ordering::Relaxed),
            records_abandoned: self.records_abandoned.load(Ordering::Relaxed),
            errors: self.errors.lock().map(|e| e.clone()).unwrap_or_default(),
            rtt_us: hist(&self.rtt_us),
            setup_us: hist(&self.setup_us),
        }
    }
}

/// A histogram as (value, count) pairs, so reports can be merged exactly.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HistogramData(pub Vec<(u64, u64)>);

impl From<&Histogram<u64>> for HistogramData {
    fn from(h: &Histogram<u64>) -> Self {
        HistogramData(
            h.iter_recorded()
                .map(|v| (v.value_iterated_to(), v.count_at_value()))
                .collect(),
        )
    }
}

impl HistogramData {
    pub fn to_histogram(&self) -> Histogram<u64> {
        let mut h = histogram();
        for &(value, count) in &self.0 {
            let _ = h.record_n(value.max(1), count);
        }
        h
    }
}

/// The final (or periodic) report of one fleet process, as JSON.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FleetReport {
    pub elapsed_secs: f64,
    pub connected: i64,
    pub setups: u64,
    #[serde(default)]
    pub setups_resumed: u64,
    pub last_setup_secs: f64,
    pub heartbeats_sent: u64,
    pub heartbeats_ok: u64,
    pub realtime_sent: u64,
    pub downlinks: u64,
    #[serde(default)]
    pub charges: u64,
    #[serde(default)]
    pub records_sent: u64,
    #[serde(default)]
    pub records_confirmed: u64,
    #[serde(default)]
    pub record_retransmits: u64,
    #[serde(default)]
    pub records_abandoned: u64,
    pub errors: BTreeMap<String, u64>,
    pub rtt_us: HistogramData,
    pub setup_us: HistogramData,
}

/// Percentiles of a latency histogram in milliseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Latency {
    pub count: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl From<&Histogram<u64>> for Latency {
    fn from(h: &Histogram<u64>) -> Self {
        let ms = |v: u64| v as f64 / 1000.0;
        Latency {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        }
    }
}

/// Sums reports of several fleet processes.
pub fn merge(reports: &[FleetReport]) -> (FleetReport, Latency, Latency) {
    let mut total = FleetReport::default();
    let mut rtt = histogram();
    let mut setup = histogram();
    for r in reports {
        total.elapsed_secs = total.elapsed_secs.max(r.elapsed_secs);
        total.connected += r.connected;
        total.setups += r.setups;
        total.setups_resumed += r.setups_resumed;
        total.last_setup_secs = total.last_setup_secs.max(r.last_setup_secs);
        total.heartbeats_sent += r.heartbeats_sent;
        total.heartbeats_ok += r.heartbeats_ok;
        total.realtime_sent += r.realtime_sent;
        total.downlinks += r.downlinks;
        total.charges += r.charges;
        total.records_sent += r.records_sent;
        total.records_confirmed += r.records_confirmed;
        total.record_retransmits += r.record_retransmits;
        total.records_abandoned += r.records_abandoned;
        for (k, v) in &r.errors {
            *total.errors.entry(k.clone()).or_default() += v;
        }
        let _ = rtt.add(r.rtt_us.to_histogram());
        let _ = setup.add(r.setup_us.to_histogram());
    }
    let (rtt_l, setup_l) = (Latency::from(&rtt), Latency::from(&setup));
    total.rtt_us = HistogramData::from(&rtt);
    total.setup_us = HistogramData::from(&setup);
    (total, rtt_l, setup_l)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_keeps_every_sample() {
        let a = FleetStats::default();
        let b = FleetStats::default();
        for v in [1000, 2000, 3000] {
            a.heartbeat_rtt(v);
        }
        b.heartbeat_rtt(50_000);
        let (total, rtt, _) = merge(&[a.report(), b.report()]);
        assert_eq!(total.heartbeats_ok, 4);
        assert_eq!(rtt.count, 4);
        assert!(rtt.max_ms >= 49.9);
    }
}
