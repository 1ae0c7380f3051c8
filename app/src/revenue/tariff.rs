//! Time-of-use tariffs in the YKC model, and pricing a transaction record with one.
//!
//! A day has 48 half-hour slots (local time); each is one of four periods (sharp, peak,
//! flat, valley), and each period has an electricity price and a service fee per kWh. The
//! pile gets this as its billing model (0x0A, 0x58) and reports energy per period in its
//! transaction record (0x3B); the platform prices that energy with the tariff that was in
//! force when the charge started.
//!
//! Units are the wire's, as integers: prices in 0.00001 yuan per kWh, energy in
//! 0.0001 kWh, amounts in 0.0001 yuan; wallets hold fen (0.01 yuan).

pub use pylon_proto::api::revenue::{Period, Rate, Rates, ScheduleChange, TariffSpec};
use serde::{Deserialize, Serialize};

/// Slots in a day.
pub const SLOTS: usize = 48;

/// A checked tariff: the prices and the period of each of the 48 slots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tariff {
    pub rates: Rates,
    pub loss_ratio: u8,
    pub slots: [Period; SLOTS],
}

/// Why a tariff is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TariffError {
    #[error("the schedule is empty: give at least {{\"from\": \"00:00\", \"period\": ...}}")]
    EmptySchedule,
    #[error("the schedule must start at 00:00, not {0}")]
    FirstNotMidnight(String),
    #[error("{0:?} is not a half-hour boundary (HH:00 or HH:30, 00:00 to 23:30)")]
    BadTime(String),
    #[error("the schedule's times must increase: {0} comes after {1}")]
    NotIncreasing(String, String),
    #[error("the loss ratio is a percentage (0 to 100), not {0}")]
    LossRatio(u8),
    #[error(
        "a price of {0} (0.00001 yuan per kWh) is above the 10,000 yuan per kWh that makes sense"
    )]
    Price(u32),
}

/// At most 10,000 yuan per kWh: anything above is a typing mistake.
const MAX_PRICE: u32 = 1_000_000_000;

/// The slot a "HH:MM" boundary starts.
fn slot_of(text: &str) -> Result<usize, TariffError> {
    let bad = || TariffError::BadTime(text.to_owned());
    let (h, m) = text.split_once(':').ok_or_else(bad)?;
    let (h, m): (usize, usize) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if h > 23 || !(m == 0 || m == 30) || text.len() != 5 {
        return Err(bad());
    }
    Ok(h * 2 + m / 30)
}

fn slot_text(slot: usize) -> String {
    format!("{:02}:{:02}", slot / 2, (slot % 2) * 30)
}

impl TryFrom<&TariffSpec> for Tariff {
    type Error = TariffError;

    fn try_from(spec: &TariffSpec) -> Result<Self, TariffError> {
        if spec.loss_ratio > 100 {
            return Err(TariffError::LossRatio(spec.loss_ratio));
        }
        for period in Period::ALL {
            let rate = spec.rates.of(period);
            for price in [rate.electricity, rate.service] {
                if price > MAX_PRICE {
                    return Err(TariffError::Price(price));
                }
            }
        }
        let first = spec.schedule.first().ok_or(TariffError::EmptySchedule)?;
        if slot_of(&first.from)? != 0 {
            return Err(TariffError::FirstNotMidnight(first.from.clone()));
        }
        let mut slots = [first.period; SLOTS];
        for pair in spec.schedule.windows(2) {
            let (a, b) = (slot_of(&pair[0].from)?, slot_of(&pair[1].from)?);
            if b <= a {
                return Err(TariffError::NotIncreasing(
                    pair[1].from.clone(),
                    pair[0].from.clone(),
                ));
            }
        }
        for (i, change) in spec.schedule.iter().enumerate() {
            let start = slot_of(&change.from)?;
            let end = match spec.schedule.get(i + 1) {
                Some(next) => slot_of(&next.from)?,
                None => SLOTS,
            };
            slots[start..end].fill(change.period);
        }
        Ok(Tariff {
            rates: spec.rates,
            loss_ratio: spec.loss_ratio,
            slots,
        })
    }
}

impl Tariff {
    /// The operator's form back: one change point wherever the period changes.
    pub fn spec(&self) -> TariffSpec {
        let mut schedule: Vec<ScheduleChange> = Vec::new();
        for (slot, period) in self.slots.iter().enumerate() {
            if schedule.last().is_none_or(|c| c.period != *period) {
                schedule.push(ScheduleChange {
                    from: slot_text(slot),
                    period: *period,
                });
            }
        }
        TariffSpec {
            rates: self.rates,
            loss_ratio: self.loss_ratio,
            schedule,
        }
    }

    /// The slots as the billing model carries them (0 sharp .. 3 valley).
    pub fn slot_codes(&self) -> [u8; SLOTS] {
        self.slots.map(Period::code)
    }

    /// Rebuilds a tariff from stored slot codes.
    pub fn from_codes(rates: Rates, loss_ratio: u8, codes: &[u8]) -> Option<Tariff> {
        if codes.len() != SLOTS {
            return None;
        }
        let mut slots = [Period::Flat; SLOTS];
        for (slot, code) in slots.iter_mut().zip(codes) {
            *slot = Period::from_code(*code)?;
        }
        Some(Tariff {
            rates,
            loss_ratio,
            slots,
        })
    }
}

/// The energy a transaction record reports for each period, in 0.0001 kWh, and the
/// amount the pile computed, in 0.0001 yuan.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeteredEnergy {
    /// Loss-adjusted (计损) energy per period, sharp, peak, flat, valley: what is billed.
    pub billed: [u64; 4],
    /// What the pile charged in total (消费金额).
    pub pile_amount: u64,
}

/// What the platform charges for a record, in 0.0001 yuan and in fen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Priced {
    pub electricity: u64,
    pub service: u64,
    /// Electricity and service fee, rounded to fen (half up), each on its own.
    pub electricity_fen: i64,
    pub service_fen: i64,
}

impl Priced {
    pub fn total(&self) -> u64 {
        self.electricity + self.service
    }

    pub fn total_fen(&self) -> i64 {
        self.electricity_fen + self.service_fen
    }
}

/// 0.0001 kWh times 0.00001 yuan/kWh, in 0.0001 yuan (half up).
fn amount(energy: u64, price: u32) -> u64 {
    let exact = u128::from(energy) * u128::from(price);
    u64::try_from((exact + 50_000) / 100_000).unwrap_or(u64::MAX)
}

/// 0.0001 yuan to fen, half up.
pub fn to_fen(amount: u64) -> i64 {
    i64::try_from((amount + 50) / 100).unwrap_or(i64::MAX)
}

/// Prices a record's energy with `tariff`.
pub fn price(tariff: &Tariff, metered: &MeteredEnergy) -> Priced {
    let (mut electricity, mut service) = (0u64, 0u64);
    for (period, energy) in Period::ALL.iter().zip(metered.billed) {
        let rate = tariff.rates.of(*period);
        electricity = electricity.saturating_add(amount(energy, rate.electricity));
        service = service.saturating_add(amount(energy, rate.service));
    }
    Priced {
        electricity,
        service,
        electricity_fen: to_fen(electricity),
        service_fen: to_fen(service),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(schedule: &[(&str, Period)]) -> TariffSpec {
        TariffSpec {
            rates: Rates {
                sharp: Rate {
                    electricity: 150_000,
                    service: 40_000,
                },
                peak: Rate {
                    electricity: 120_000,
                    service: 40_000,
                },
                flat: Rate {
                    electricity: 80_000,
                    service: 40_000,
                },
                valley: Rate {
                    electricity: 40_000,
                    service: 40_000,
                },
            },
            loss_ratio: 0,
            schedule: schedule
                .iter()
                .map(|(from, period)| ScheduleChange {
                    from: (*from).into(),
                    period: *period,
                })
                .collect(),
        }
    }

    #[test]
    fn a_schedule_fills_the_half_hours_until_the_next_change() {
        let t = Tariff::try_from(&spec(&[
            ("00:00", Period::Valley),
            ("08:00", Period::Flat),
            ("10:30", Period::Peak),
            ("23:30", Period::Valley),
        ]))
        .expect("valid");
        assert_eq!(t.slots[15], Period::Valley);
        assert_eq!(t.slots[16], Period::Flat);
        assert_eq!(t.slots[20], Period::Flat);
        assert_eq!(t.slots[21], Period::Peak);
        assert_eq!(t.slots[46], Period::Peak);
        assert_eq!(t.slots[47], Period::Valley);
        // And back to the operator's form, unchanged.
        assert_eq!(Tariff::try_from(&t.spec()), Ok(t.clone()));
        assert_eq!(Tariff::from_codes(t.rates, 0, &t.slot_codes()), Some(t));
    }

    #[test]
    fn bad_schedules_say_what_is_wrong() {
        assert_eq!(
            Tariff::try_from(&spec(&[])),
            Err(TariffError::EmptySchedule)
        );
        assert!(matches!(
            Tariff::try_from(&spec(&[("01:00", Period::Flat)])),
            Err(TariffError::FirstNotMidnight(_))
        ));
        for bad in ["08:15", "24:00", "8:00", "08-00", "xx:00"] {
            assert!(
                matches!(
                    Tariff::try_from(&spec(&[("00:00", Period::Flat), (bad, Period::Peak)])),
                    Err(TariffError::BadTime(_))
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            Tariff::try_from(&spec(&[
                ("00:00", Period::Flat),
                ("10:00", Period::Peak),
                ("09:00", Period::Valley)
            ])),
            Err(TariffError::NotIncreasing(..))
        ));
        let mut s = spec(&[("00:00", Period::Flat)]);
        s.loss_ratio = 101;
        assert_eq!(Tariff::try_from(&s), Err(TariffError::LossRatio(101)));
    }

    #[test]
    fn energy_is_priced_per_period_and_rounded_to_the_fen() {
        let t = Tariff::try_from(&spec(&[("00:00", Period::Flat)])).expect("valid");
        // 10 kWh peak, 2.5 kWh valley, 0.0001 kWh sharp.
        let metered = MeteredEnergy {
            billed: [1, 100_000, 0, 25_000],
            pile_amount: 0,
        };
        let p = price(&t, &metered);
        // 0.0001 kWh * 1.5 = 0.00015 yuan -> 1.5 (0.0001 yuan) -> 2 (half up);
        // 10 * 1.2 = 12 yuan; 2.5 * 0.4 = 1 yuan.
        assert_eq!(p.electricity, 2 + 120_000 + 10_000);
        assert_eq!(p.service, 40_000 + 10_000);
        assert_eq!(p.electricity_fen, 1300);
        assert_eq!(p.service_fen, 500);
        assert_eq!(p.total_fen(), 1800);
        assert_eq!(to_fen(49), 0);
        assert_eq!(to_fen(50), 1);
    }
}
