//! Which piles are connected (kept in the store, so every instance and the console see
//! it), guns' traces, and what the alarm engine hears of both.

use pylon_proto::api::monitor::GunSample;
use pylon_proto::ykc::frames::RealtimeData;

use super::Business;

/// A charging gun's trace keeps one sample a minute (and every gun one at each change of
/// status): idle guns write nothing.
const SAMPLE_EVERY_MS: i64 = 60_000;
/// The 0x13 status of a charging gun.
const GUN_CHARGING: u8 = 3;

impl Business {
    /// An edge announced a pile connected (after its login, or on a new stream).
    pub async fn pile_connected(&self, pile: &str) {
        if let Err(e) = self
            .store
            .set_presence(pile, true, None, self.now_ms())
            .await
        {
            tracing::warn!(%pile, "cannot mark the pile connected: {e}");
        }
    }

    /// A pile's current session ended, for `reason` (as the edge gave it).
    pub async fn pile_disconnected(&self, pile: &str, reason: &str) {
        let now = self.now_ms();
        self.alarms.forget_pile(pile);
        if let Ok(mut last) = self.last_samples.lock() {
            last.remove(pile);
        }
        if let Err(e) = self.store.set_presence(pile, false, None, now).await {
            tracing::warn!(%pile, "cannot mark the pile offline: {e}");
        }
        self.alarms.pile_offline(pile, reason, now).await;
    }

    /// The stream of an edge ended: its piles are offline here until they are announced
    /// again (by that edge's next stream, or another edge). No pile alarm: the edge's
    /// loss is the platform's alarm.
    pub async fn edge_lost(&self, edge: &str) {
        let now = self.now_ms();
        for pile in self.directory.piles_of(edge) {
            if self
                .directory
                .location(&pile)
                .is_some_and(|l| &*l.edge != edge)
            {
                continue;
            }
            if let Err(e) = self.store.set_presence(&pile, false, None, now).await {
                tracing::warn!(%pile, "cannot mark the pile offline: {e}");
            }
        }
    }

    /// A login was accepted: connected, with the firmware it reports.
    pub(super) async fn logged_in(&self, pile: &str, firmware: &str) {
        let now = self.now_ms();
        if let Err(e) = self
            .store
            .set_presence(pile, true, Some(firmware), now)
            .await
        {
            tracing::warn!(%pile, "cannot mark the pile connected: {e}");
        }
        self.alarms.pile_online(pile, now).await;
    }

    /// Real-time data (0x13): fault bits to the alarm engine, a sample to the trace.
    pub(super) async fn realtime(&self, pile: &str, gun: &str, r: &RealtimeData) {
        let now = self.now_ms();
        self.alarms
            .gun_faults(pile, gun, r.hardware_faults, now)
            .await;
        let due = {
            let mut last = self.last_samples.lock().unwrap_or_else(|p| p.into_inner());
            let guns = last.entry(pile.to_owned()).or_default();
            let slot = guns.iter_mut().find(|(g, _)| g == gun);
            let due = match &slot {
                None => true,
                Some((_, (at, status))) => {
                    *status != r.status || (r.status == GUN_CHARGING && now - at >= SAMPLE_EVERY_MS)
                }
            };
            if due {
                match slot {
                    Some((_, kept)) => *kept = (now, r.status),
                    None => guns.push((gun.to_owned(), (now, r.status))),
                }
            }
            due
        };
        if due {
            let voltage = f64::from(r.output_voltage.0) / 10.0;
            let current = f64::from(r.output_current.0) / 10.0;
            let sample = GunSample {
                gun_no: gun.to_owned(),
                at: now,
                voltage,
                current,
                power_kw: voltage * current / 1000.0,
                soc: i64::from(r.soc),
            };
            if let Err(e) = self.store.append_sample(pile, &sample).await {
                tracing::warn!(%pile, gun, "cannot keep a gun sample: {e}");
            }
        }
    }
}
