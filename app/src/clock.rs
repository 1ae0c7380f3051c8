//! Wall-clock helpers: Unix milliseconds, the piles' CP56Time2a stamps (local time at the
//! piles' UTC offset), and transaction serial numbers.

use pylon_proto::ykc::{Cp56Time2a, PileNo, TradeNo};
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

pub fn now_ms() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// Where the business rules get the time: the system's wall clock in service, a clock a
/// test sets in unit tests.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Unix milliseconds.
    fn now_ms(&self) -> i64;
}

/// The system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        now_ms()
    }
}

/// A clock that only moves when told to (tests).
#[cfg(test)]
#[derive(Debug, Default)]
pub struct ManualClock(std::sync::atomic::AtomicI64);

#[cfg(test)]
impl ManualClock {
    pub fn at(ms: i64) -> Self {
        ManualClock(std::sync::atomic::AtomicI64::new(ms))
    }

    pub fn advance(&self, by: std::time::Duration) {
        self.0
            .fetch_add(by.as_millis() as i64, std::sync::atomic::Ordering::Relaxed);
    }
}

#[cfg(test)]
impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

fn at(ms: i64, offset: UtcOffset) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
        .to_offset(offset)
}

/// A pile's time stamp as Unix milliseconds; `None` when the stamp is marked invalid or
/// is not a real date.
pub fn from_cp56(t: &Cp56Time2a, offset: UtcOffset) -> Option<i64> {
    if t.invalid {
        return None;
    }
    let month = Month::try_from(t.month).ok()?;
    let date = Date::from_calendar_date(2000 + i32::from(t.year), month, t.day).ok()?;
    let time =
        Time::from_hms_milli(t.hour, t.minute, (t.millis / 1000) as u8, t.millis % 1000).ok()?;
    let local = PrimitiveDateTime::new(date, time).assume_offset(offset);
    Some((local.unix_timestamp_nanos() / 1_000_000) as i64)
}

/// Unix milliseconds as a pile's time stamp.
pub fn to_cp56(ms: i64, offset: UtcOffset) -> Cp56Time2a {
    let t = at(ms, offset);
    Cp56Time2a::new(
        t.year().clamp(2000, 2099) as u16,
        t.month() as u8,
        t.day(),
        t.hour(),
        t.minute(),
        u16::from(t.second()) * 1000 + t.millisecond(),
    )
    .unwrap_or_default()
}

/// A transaction serial number as the spec builds it (名词解释 3.3): pile (14 digits),
/// gun (2), local time `yyMMddHHmmss` (12), and a sequence number (4).
pub fn trade_no(pile: &PileNo, gun: u8, ms: i64, offset: UtcOffset, sequence: u16) -> TradeNo {
    let t = at(ms, offset);
    let digits = format!(
        "{pile}{:02}{:02}{:02}{:02}{:02}{:02}{:02}{:04}",
        gun % 100,
        t.year() % 100,
        t.month() as u8,
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        sequence % 10_000
    );
    TradeNo::parse(&digits).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cp56_round_trips_at_an_offset() {
        let china = UtcOffset::from_hms(8, 0, 0).unwrap();
        let ms = 1_795_000_000_123;
        let stamp = to_cp56(ms, china);
        assert_eq!(from_cp56(&stamp, china), Some(ms));
        let invalid = Cp56Time2a {
            invalid: true,
            ..stamp
        };
        assert_eq!(from_cp56(&invalid, china), None);
        let nonsense = Cp56Time2a { month: 13, ..stamp };
        assert_eq!(from_cp56(&nonsense, china), None);
    }

    #[test]
    fn trade_numbers_follow_the_spec() {
        let pile = PileNo::parse("32010200000001").unwrap();
        // 2026-11-24 10:20:30 UTC = 18:20:30 in China.
        let ms = 1_795_515_630_000;
        let no = trade_no(&pile, 1, ms, UtcOffset::from_hms(8, 0, 0).unwrap(), 7);
        assert_eq!(no.to_string(), "32010200000001012611241820300007");
    }
}
