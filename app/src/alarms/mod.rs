//! The alarm engine: business events in, stored alarms and notifications out.
//!
//! The rules ([`rules`]) say what is an alarm and how it is keyed; the store keeps each
//! alarm with its state (open -> acknowledged -> resolved, with who and when) and
//! deduplicates by key while it is not resolved; [`notify`] tells webhooks and
//! Alertmanager. Alarms never get in the business's way: a failure to store one is
//! logged and counted, and the notification still goes out.

pub mod notify;
pub mod platform;
pub mod rules;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use pylon_proto::api::monitor::{Alarm, AlarmState, RaiseAlarm};

use crate::store::monitor::{Handling, HandlingRefusal, Raised};
use crate::store::{Store, StoreError};
use notify::{Event, Notifier};
use rules::FlapDetector;

/// Who resolves alarms whose condition ended by itself.
pub const SYSTEM: &str = "system";

/// How the engine judges (defaults: the issue's).
#[derive(Debug, Clone, Copy)]
pub struct AlarmSettings {
    /// Logins within `flapping_minutes` that make a pile flapping.
    pub flapping_logins: usize,
    pub flapping_minutes: u32,
    /// Minutes after a stop without a transaction record before it is an alarm.
    pub record_wait_minutes: u32,
}

impl Default for AlarmSettings {
    fn default() -> Self {
        AlarmSettings {
            flapping_logins: 5,
            flapping_minutes: 10,
            record_wait_minutes: 30,
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

pub struct Alarms {
    store: Arc<dyn Store>,
    notifier: Notifier,
    settings: AlarmSettings,
    /// The last fault bits of each connected pile's guns; a gun not here is read back from
    /// its open alarms (after a restart, or a reconnection).
    faults: Mutex<HashMap<String, Vec<(String, u16)>>>,
    /// The store-errors alarm sent while the store could not keep it (resolved by a
    /// notification when the store is back).
    unstored_store_alarm: Mutex<Option<Alarm>>,
    flaps: Mutex<FlapDetector>,
    /// Alarms raised (new ones), by kind.
    pub raised: Family<KindLabel, Counter>,
    /// Alarms that could not be stored (notified anyway).
    pub store_failures: Counter,
}

impl Alarms {
    pub fn new(store: Arc<dyn Store>, notifier: Notifier, settings: AlarmSettings) -> Alarms {
        Alarms {
            store,
            notifier,
            settings,
            faults: Mutex::new(HashMap::new()),
            unstored_store_alarm: Mutex::new(None),
            flaps: Mutex::new(FlapDetector::new(
                settings.flapping_logins,
                i64::from(settings.flapping_minutes) * 60_000,
            )),
            raised: Family::default(),
            store_failures: Counter::default(),
        }
    }

    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "pylon_app_alarms_raised",
            "New alarms, by kind",
            self.raised.clone(),
        );
        registry.register(
            "pylon_app_alarm_store_failures",
            "Alarms that could not be stored (notified anyway)",
            self.store_failures.clone(),
        );
        registry.register(
            "pylon_app_alarm_notifications",
            "Alarm notifications by target (webhook, alertmanager) and result",
            self.notifier.deliveries.clone(),
        );
    }

    pub fn settings(&self) -> AlarmSettings {
        self.settings
    }

    /// Raises a condition; the alarm when it is new (and was notified).
    pub async fn raise(&self, raise: RaiseAlarm, at: i64) -> Result<Option<Alarm>, StoreError> {
        // Two instances raising the same key at once: the second insert conflicts and,
        // tried again, finds the first one's alarm.
        let mut outcome = self.store.raise_alarm(&raise, at).await;
        if matches!(outcome, Err(StoreError::Conflict(_))) {
            outcome = self.store.raise_alarm(&raise, at).await;
        }
        match outcome {
            Ok(Raised::New(alarm)) => {
                self.raised
                    .get_or_create(&KindLabel {
                        kind: alarm.kind.clone(),
                    })
                    .inc();
                tracing::warn!(alarm = alarm.id, kind = %alarm.kind, subject = %alarm.subject, pile = pile_of(&alarm.subject), "alarm: {}", alarm.text);
                self.notifier.notify(Event::Raised, &alarm);
                Ok(Some(alarm))
            }
            Ok(Raised::Again(_)) => Ok(None),
            Err(e) => {
                self.store_failures.inc();
                tracing::error!(kind = %raise.kind, subject = %raise.subject, pile = pile_of(&raise.subject), "an alarm could not be stored ({e}): {}", raise.text);
                self.notifier.notify(Event::Raised, &unstored(raise, at));
                Err(e)
            }
        }
    }

    /// The condition of `key` is over: its alarm, if unresolved, is resolved by the system.
    pub async fn clear(&self, key: &str, at: i64) -> Result<Option<Alarm>, StoreError> {
        let cleared = self.store.clear_alarm(key, SYSTEM, at).await?;
        if let Some(alarm) = &cleared {
            tracing::info!(alarm = alarm.id, kind = %alarm.kind, subject = %alarm.subject, pile = pile_of(&alarm.subject), "alarm resolved");
            self.notifier.notify(Event::Resolved, alarm);
        }
        Ok(cleared)
    }

    /// An operator acknowledges or resolves an alarm.
    pub async fn handle(
        &self,
        id: i64,
        handling: Handling,
        by: &str,
        at: i64,
    ) -> Result<Result<Alarm, HandlingRefusal>, StoreError> {
        let handled = self.store.handle_alarm(id, handling, by, at).await?;
        if let Ok(alarm) = &handled {
            let event = match alarm.state {
                AlarmState::Resolved => Event::Resolved,
                _ => Event::Acknowledged,
            };
            self.notifier.notify(event, alarm);
        }
        Ok(handled)
    }

    /// Best effort: an alarm that cannot be stored is logged, never the caller's failure.
    async fn raise_quietly(&self, raise: RaiseAlarm, at: i64) {
        let _ = self.raise(raise, at).await;
    }

    async fn clear_quietly(&self, key: &str, at: i64) {
        if let Err(e) = self.clear(key, at).await {
            tracing::warn!(key, "cannot resolve an alarm: {e}");
        }
    }

    /// A pile logged in: it is not offline any more; too many logins are flapping.
    pub async fn pile_online(&self, pile: &str, at: i64) {
        self.clear_quietly(&rules::offline_key(pile), at).await;
        let flapping = self
            .flaps
            .lock()
            .ok()
            .and_then(|mut flaps| flaps.login(pile, at).map(|n| (n, flaps.window_minutes())));
        if let Some((logins, minutes)) = flapping {
            self.raise_quietly(rules::pile_flapping(pile, logins, minutes), at)
                .await;
        }
    }

    /// A pile's session ended, for `reason` (as the edge said).
    pub async fn pile_offline(&self, pile: &str, reason: &str, at: i64) {
        if rules::offline_is_abnormal(reason) {
            self.raise_quietly(rules::pile_offline(pile, reason), at)
                .await;
        }
    }

    /// A gun reported its hardware fault bits (0x13): each bit that came up opens its
    /// alarm, each that went down resolves it.
    pub async fn gun_faults(&self, pile: &str, gun: &str, bits: u16, at: i64) {
        let known = self.faults.lock().ok().and_then(|f| {
            f.get(pile)
                .and_then(|guns| guns.iter().find(|(g, _)| g == gun).map(|(_, b)| *b))
        });
        let before = match known {
            Some(before) => before,
            None => match self.store.open_alarm_keys(&fault_keys(pile, gun)).await {
                Ok(keys) => keys
                    .iter()
                    .filter_map(|k| k.rsplit(':').next()?.parse::<u8>().ok())
                    .filter(|bit| (1..=16).contains(bit))
                    .fold(0u16, |acc, bit| acc | 1 << (bit - 1)),
                Err(e) => {
                    tracing::warn!(pile, gun, "cannot read a gun's fault alarms: {e}");
                    return;
                }
            },
        };
        if known == Some(bits) {
            return;
        }
        let (raised, cleared) = rules::fault_changes(before, bits);
        for bit in raised {
            self.raise_quietly(rules::gun_fault(pile, gun, bit), at)
                .await;
        }
        for bit in cleared {
            self.clear_quietly(&rules::fault_key(pile, gun, bit), at)
                .await;
        }
        if let Ok(mut faults) = self.faults.lock() {
            let guns = faults.entry(pile.to_owned()).or_default();
            match guns.iter_mut().find(|(g, _)| g == gun) {
                Some((_, b)) => *b = bits,
                None => guns.push((gun.to_owned(), bits)),
            }
        }
    }

    /// A pile left: what is remembered of its guns goes (read back from the store when it
    /// reports again), so memory follows the connected piles.
    pub fn forget_pile(&self, pile: &str) {
        if let Ok(mut faults) = self.faults.lock() {
            faults.remove(pile);
        }
    }

    /// A transaction record arrived: its stop reason, and what settling it found.
    pub async fn record_arrived(&self, record: RecordFacts<'_>, at: i64) {
        self.clear_quietly(&rules::record_missing_key(record.trade_no), at)
            .await;
        if let Some(raise) =
            rules::charge_abnormal_end(record.pile, record.gun, record.trade_no, record.stop_reason)
        {
            self.raise_quietly(raise, at).await;
        }
        if record.discrepancy {
            self.raise_quietly(
                rules::settlement_discrepancy(record.pile, record.trade_no),
                at,
            )
            .await;
        }
        if record.quarantined {
            self.raise_quietly(rules::record_quarantined(record.pile, record.trade_no), at)
                .await;
        }
    }

    pub async fn start_unconfirmed(&self, pile: &str, gun: &str, trade_no: &str, at: i64) {
        self.raise_quietly(rules::start_unconfirmed(pile, gun, trade_no), at)
            .await;
    }

    /// Stops whose record is overdue (run every minute).
    pub async fn check_overdue_records(&self, now: i64) -> Result<usize, StoreError> {
        let before = now - i64::from(self.settings.record_wait_minutes) * 60_000;
        let overdue = self.store.overdue_stops(before, 1_000).await?;
        for (trade_no, pile, gun) in &overdue {
            let minutes = self.settings.record_wait_minutes;
            self.raise_quietly(rules::record_missing(pile, gun, trade_no, minutes), now)
                .await;
        }
        let calm = match self.flaps.lock() {
            Ok(mut flaps) => flaps.prune(now),
            Err(_) => Vec::new(),
        };
        for pile in calm {
            self.clear_quietly(&rules::flapping_key(&pile), now).await;
        }
        Ok(overdue.len())
    }

    /// This instance's own health: its store answering, its certificate's expiry.
    pub async fn check_instance(&self, instance: &str, store_ok: Result<(), String>, now: i64) {
        let key = format!("{}{instance}", rules::STORE_ERRORS_KEY);
        match store_ok {
            Ok(()) => {
                self.clear_quietly(&key, now).await;
                // The alarm the store could not keep: its receivers learn it is over.
                let unstored = self
                    .unstored_store_alarm
                    .lock()
                    .ok()
                    .and_then(|mut a| a.take());
                if let Some(mut alarm) = unstored {
                    alarm.state = AlarmState::Resolved;
                    alarm.resolved_by = Some(SYSTEM.into());
                    alarm.resolved_at = Some(now);
                    self.notifier.notify(Event::Resolved, &alarm);
                }
            }
            Err(detail) => {
                let raise = rules::store_errors(instance, &detail);
                let already = self
                    .unstored_store_alarm
                    .lock()
                    .map(|a| a.is_some())
                    .unwrap_or(false);
                // While the store is down, one notification, not one per check.
                if !already {
                    if let Err(StoreError::Unavailable(_) | StoreError::Backend(_)) =
                        self.raise(raise.clone(), now).await
                    {
                        if let Ok(mut a) = self.unstored_store_alarm.lock() {
                            *a = Some(unstored(raise, now));
                        }
                    }
                }
            }
        }
        if let Some(tls) = pylon_service::tls::cluster() {
            let days = (tls.not_after.get() - now / 1000) / 86_400;
            let subject = format!("app {instance}");
            if days < platform::CERT_DAYS {
                self.raise_quietly(rules::certificate_expiring(&subject, days), now)
                    .await;
            } else {
                self.clear_quietly(&rules::certificate_key(&subject), now)
                    .await;
            }
        }
    }
}

impl Alarms {
    /// Applies what a platform report changed ([`platform::PlatformWatch`]).
    pub async fn platform(&self, changes: Vec<platform::Change>, now: i64) {
        for change in changes {
            match change {
                platform::Change::Raise(raise) => self.raise_quietly(raise, now).await,
                platform::Change::Clear(key) => self.clear_quietly(&key, now).await,
            }
        }
    }
}

/// The keys of every fault bit of a gun.
fn fault_keys(pile: &str, gun: &str) -> Vec<String> {
    (1..=rules::FAULT_BITS.len() as u8)
        .map(|bit| rules::fault_key(pile, gun, bit))
        .collect()
}

/// What the engine needs of an arrived record.
#[derive(Debug, Clone, Copy)]
pub struct RecordFacts<'a> {
    pub pile: &'a str,
    pub gun: &'a str,
    pub trade_no: &'a str,
    pub stop_reason: u8,
    pub discrepancy: bool,
    pub quarantined: bool,
}

/// An alarm the store could not keep, as notifications carry it (id 0).
fn unstored(raise: RaiseAlarm, at: i64) -> Alarm {
    Alarm {
        id: 0,
        kind: raise.kind,
        severity: raise.severity,
        pile_no: raise.pile_no,
        gun_no: raise.gun_no,
        subject: raise.subject,
        text: raise.text,
        state: AlarmState::Open,
        count: 1,
        first_at: at,
        last_at: at,
        acked_by: None,
        acked_at: None,
        resolved_by: None,
        resolved_at: None,
    }
}

/// The pile an alarm is about, for the `pile` field of its log lines (`pile <number>`).
fn pile_of(subject: &str) -> Option<&str> {
    subject.strip_prefix("pile ")
}
