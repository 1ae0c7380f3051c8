//! The monitoring side of the store, written once over the portable [`Db`]: alarms and
//! their states, which piles are connected, filtered pile lists and counts, and guns'
//! traces (what the console and the alarm engine read and write).
//!
//! [`Db`]: crate::store::sql::Db

mod alarms;
mod fleet;

pub(crate) use alarms::*;
pub use alarms::{AlarmFilter, Handling, HandlingRefusal, Raised};
pub use fleet::PileFilter;
pub(crate) use fleet::*;

use async_trait::async_trait;
use pylon_proto::api::monitor::{
    Alarm, AlarmCounts, FleetSample, GunSample, PerMinute, PileCounts, PileSummary, RaiseAlarm,
    Today,
};

use crate::store::Result;

#[async_trait]
pub trait MonitorStore: Send + Sync {
    /// Raises a condition: a new alarm, or one more count on its unresolved alarm.
    async fn raise_alarm(&self, raise: &RaiseAlarm, at: i64) -> Result<Raised>;
    /// Resolves the unresolved alarm of `key` (if any), by `by`.
    async fn clear_alarm(&self, key: &str, by: &str, at: i64) -> Result<Option<Alarm>>;
    /// Which of `keys` have an unresolved alarm.
    async fn open_alarm_keys(&self, keys: &[String]) -> Result<Vec<String>>;
    /// Deletes alarms resolved before `before`.
    async fn purge_alarms(&self, before: i64) -> Result<u64>;
    async fn handle_alarm(
        &self,
        id: i64,
        handling: Handling,
        by: &str,
        at: i64,
    ) -> Result<std::result::Result<Alarm, HandlingRefusal>>;
    async fn alarm(&self, id: i64) -> Result<Option<Alarm>>;
    /// Newest first.
    async fn alarms(&self, filter: &AlarmFilter, limit: u32) -> Result<Vec<Alarm>>;
    async fn alarm_counts(&self) -> Result<AlarmCounts>;

    /// Marks a pile connected or not (`firmware`: what its login gave, when it logs in).
    async fn set_presence(
        &self,
        pile_no: &str,
        online: bool,
        firmware: Option<&str>,
        at: i64,
    ) -> Result<()>;
    /// Sorted by pile number.
    async fn pile_summaries(&self, filter: &PileFilter, limit: u32) -> Result<Vec<PileSummary>>;
    async fn pile_summary(&self, pile_no: &str) -> Result<Option<PileSummary>>;
    async fn pile_counts(&self) -> Result<PileCounts>;
    /// Records received from `since` on.
    async fn records_since(&self, since: i64) -> Result<Today>;
    async fn per_minute(&self, now: i64) -> Result<PerMinute>;

    async fn append_sample(&self, pile_no: &str, sample: &GunSample) -> Result<()>;
    /// Samples of a pile's guns in `[from, to)`, oldest first.
    async fn samples(
        &self,
        pile_no: &str,
        from: i64,
        to: i64,
        limit: u32,
    ) -> Result<Vec<GunSample>>;
    async fn purge_samples(&self, before: i64) -> Result<u64>;
    /// Orders stopping since before `before`: (trade number, pile, gun).
    async fn overdue_stops(&self, before: i64, limit: u32)
        -> Result<Vec<(String, String, String)>>;
    /// Orders of every pile created before `before` (the open ones only, with `open`),
    /// newest first.
    async fn recent_orders(
        &self,
        before: i64,
        limit: u32,
        open: bool,
    ) -> Result<Vec<crate::store::Order>>;
    /// Writes the fleet's counts for the period starting at `at` (once per period).
    async fn record_history(&self, at: i64) -> Result<()>;
    /// The fleet's counts from `since` on, oldest first.
    async fn history(&self, since: i64, limit: u32) -> Result<Vec<FleetSample>>;
}

/// Implements [`MonitorStore`] for a backend: `$on` runs the shared logic in one of its
/// transactions (`$on!(self, write|read, |db| body)`).
macro_rules! monitor_store {
    ($store:ty, $on:ident) => {
        #[async_trait::async_trait]
        impl $crate::store::monitor::MonitorStore for $store {
            async fn raise_alarm(
                &self,
                raise: &pylon_proto::api::monitor::RaiseAlarm,
                at: i64,
            ) -> $crate::store::Result<$crate::store::monitor::Raised> {
                let raise = raise.clone();
                $on!(self, write, |db| $crate::store::monitor::raise_alarm(
                    db, &raise, at
                ))
            }

            async fn clear_alarm(
                &self,
                key: &str,
                by: &str,
                at: i64,
            ) -> $crate::store::Result<Option<pylon_proto::api::monitor::Alarm>> {
                let (key, by) = (key.to_owned(), by.to_owned());
                $on!(self, write, |db| $crate::store::monitor::clear_alarm(
                    db, &key, &by, at
                ))
            }

            async fn open_alarm_keys(&self, keys: &[String]) -> $crate::store::Result<Vec<String>> {
                let keys = keys.to_vec();
                $on!(self, read, |db| $crate::store::monitor::open_alarm_keys(
                    db, &keys
                ))
            }

            async fn purge_alarms(&self, before: i64) -> $crate::store::Result<u64> {
                $on!(self, write, |db| $crate::store::monitor::purge_alarms(
                    db, before
                ))
            }

            async fn handle_alarm(
                &self,
                id: i64,
                handling: $crate::store::monitor::Handling,
                by: &str,
                at: i64,
            ) -> $crate::store::Result<
                std::result::Result<
                    pylon_proto::api::monitor::Alarm,
                    $crate::store::monitor::HandlingRefusal,
                >,
            > {
                let by = by.to_owned();
                $on!(self, write, |db| $crate::store::monitor::handle_alarm(
                    db, id, handling, &by, at
                ))
            }

            async fn alarm(
                &self,
                id: i64,
            ) -> $crate::store::Result<Option<pylon_proto::api::monitor::Alarm>> {
                $on!(self, read, |db| $crate::store::monitor::alarm_by_id(db, id))
            }

            async fn alarms(
                &self,
                filter: &$crate::store::monitor::AlarmFilter,
                limit: u32,
            ) -> $crate::store::Result<Vec<pylon_proto::api::monitor::Alarm>> {
                let filter = filter.clone();
                $on!(self, read, |db| $crate::store::monitor::alarms(
                    db, &filter, limit
                ))
            }

            async fn alarm_counts(
                &self,
            ) -> $crate::store::Result<pylon_proto::api::monitor::AlarmCounts> {
                $on!(self, read, |db| $crate::store::monitor::alarm_counts(db))
            }

            async fn set_presence(
                &self,
                pile_no: &str,
                online: bool,
                firmware: Option<&str>,
                at: i64,
            ) -> $crate::store::Result<()> {
                let (pile_no, firmware) = (pile_no.to_owned(), firmware.map(str::to_owned));
                $on!(self, write, |db| $crate::store::monitor::set_presence(
                    db,
                    &pile_no,
                    online,
                    firmware.as_deref(),
                    at
                ))
            }

            async fn pile_summaries(
                &self,
                filter: &$crate::store::monitor::PileFilter,
                limit: u32,
            ) -> $crate::store::Result<Vec<pylon_proto::api::monitor::PileSummary>> {
                let filter = filter.clone();
                $on!(self, read, |db| $crate::store::monitor::pile_summaries(
                    db, &filter, limit
                ))
            }

            async fn pile_summary(
                &self,
                pile_no: &str,
            ) -> $crate::store::Result<Option<pylon_proto::api::monitor::PileSummary>> {
                let pile_no = pile_no.to_owned();
                $on!(self, read, |db| $crate::store::monitor::pile_summary(
                    db, &pile_no
                ))
            }

            async fn pile_counts(
                &self,
            ) -> $crate::store::Result<pylon_proto::api::monitor::PileCounts> {
                $on!(self, read, |db| $crate::store::monitor::pile_counts(db))
            }

            async fn records_since(
                &self,
                since: i64,
            ) -> $crate::store::Result<pylon_proto::api::monitor::Today> {
                $on!(self, read, |db| $crate::store::monitor::records_since(
                    db, since
                ))
            }

            async fn per_minute(
                &self,
                now: i64,
            ) -> $crate::store::Result<pylon_proto::api::monitor::PerMinute> {
                $on!(self, read, |db| $crate::store::monitor::per_minute(db, now))
            }

            async fn append_sample(
                &self,
                pile_no: &str,
                sample: &pylon_proto::api::monitor::GunSample,
            ) -> $crate::store::Result<()> {
                let (pile_no, sample) = (pile_no.to_owned(), sample.clone());
                $on!(self, write, |db| $crate::store::monitor::append_sample(
                    db, &pile_no, &sample
                ))
            }

            async fn samples(
                &self,
                pile_no: &str,
                from: i64,
                to: i64,
                limit: u32,
            ) -> $crate::store::Result<Vec<pylon_proto::api::monitor::GunSample>> {
                let pile_no = pile_no.to_owned();
                $on!(self, read, |db| $crate::store::monitor::samples(
                    db, &pile_no, from, to, limit
                ))
            }

            async fn purge_samples(&self, before: i64) -> $crate::store::Result<u64> {
                $on!(self, write, |db| $crate::store::monitor::purge_samples(
                    db, before
                ))
            }

            async fn overdue_stops(
                &self,
                before: i64,
                limit: u32,
            ) -> $crate::store::Result<Vec<(String, String, String)>> {
                $on!(self, read, |db| $crate::store::monitor::overdue_stops(
                    db, before, limit
                ))
            }

            async fn recent_orders(
                &self,
                before: i64,
                limit: u32,
                open: bool,
            ) -> $crate::store::Result<Vec<$crate::store::Order>> {
                $on!(self, read, |db| $crate::store::monitor::recent_orders(
                    db, before, limit, open
                ))
            }

            async fn record_history(&self, at: i64) -> $crate::store::Result<()> {
                $on!(self, write, |db| $crate::store::monitor::record_history(
                    db, at
                ))
            }

            async fn history(
                &self,
                since: i64,
                limit: u32,
            ) -> $crate::store::Result<Vec<pylon_proto::api::monitor::FleetSample>> {
                $on!(self, read, |db| $crate::store::monitor::history(
                    db, since, limit
                ))
            }
        }
    };
}
pub(crate) use monitor_store;
