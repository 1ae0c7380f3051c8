//! A tariff as an operator gives it: `--rates` and `--schedule` in compact form, or a JSON
//! file holding a [`TariffInput`]; checked here as the app service checks it (the schedule
//! on half hours from 00:00, increasing; prices at most 10,000 yuan per kWh; a loss ratio
//! in percent), so that a mistake is found before any request.

use std::path::Path;

use pylon_proto::api::revenue::{Period, Rate, Rates, ScheduleChange, TariffInput};
use serde::Deserialize;
use serde_json::Value;

use crate::cli::Failure;
use crate::units::parse_price;

/// The highest price the app service takes, in 0.00001 yuan per kWh (10,000 yuan).
const MAX_PRICE: u32 = 1_000_000_000;

/// A day schedule given with `--schedule`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule(pub Vec<ScheduleChange>);

fn period_named(name: &str) -> Option<Period> {
    Period::ALL.into_iter().find(|p| p.as_str() == name)
}

/// `sharp=1.2/0.4,peak=1.0/0.4,flat=0.8/0.4,valley=0.4/0.4` (yuan per kWh, electricity /
/// service) -> the four rates in 0.00001 yuan. Every period exactly once.
pub fn parse_rates(text: &str) -> Result<Rates, String> {
    let mut rates = Rates::default();
    let mut seen: Vec<Period> = Vec::new();
    for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let shape = || format!("{item:?} is not PERIOD=ELECTRICITY/SERVICE, e.g. peak=1.0/0.4");
        let (name, prices) = item.split_once('=').ok_or_else(shape)?;
        let (electricity, service) = prices.split_once('/').ok_or_else(shape)?;
        let period = period_named(&name.trim().to_ascii_lowercase())
            .ok_or_else(|| format!("{name:?} is not a period: sharp, peak, flat or valley"))?;
        if seen.contains(&period) {
            return Err(format!("{} is given twice", period.as_str()));
        }
        seen.push(period);
        let rate = Rate {
            electricity: parse_price(electricity)?,
            service: parse_price(service)?,
        };
        match period {
            Period::Sharp => rates.sharp = rate,
            Period::Peak => rates.peak = rate,
            Period::Flat => rates.flat = rate,
            Period::Valley => rates.valley = rate,
        }
    }
    let missing: Vec<&str> = Period::ALL
        .into_iter()
        .filter(|p| !seen.contains(p))
        .map(Period::as_str)
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "give all four periods; missing: {} (e.g. sharp=1.2/0.4,peak=1.0/0.4,\
             flat=0.8/0.4,valley=0.4/0.4)",
            missing.join(", ")
        ));
    }
    Ok(rates)
}

/// `00:00=valley,08:00=flat,...` -> the schedule, checked as the app service checks it.
pub fn parse_schedule(text: &str) -> Result<Schedule, String> {
    let mut changes = Vec::new();
    for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (from, name) = item
            .split_once('=')
            .ok_or_else(|| format!("{item:?} is not HH:MM=PERIOD, e.g. 08:00=flat"))?;
        let period = period_named(&name.trim().to_ascii_lowercase())
            .ok_or_else(|| format!("{name:?} is not a period: sharp, peak, flat or valley"))?;
        changes.push(ScheduleChange {
            from: from.trim().to_owned(),
            period,
        });
    }
    check_schedule(&changes)?;
    Ok(Schedule(changes))
}

/// The half hour (0 to 47) a `HH:MM` boundary starts.
pub fn slot_of(text: &str) -> Option<usize> {
    let (h, m) = text.split_once(':')?;
    let digits = |s: &str| s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(h) || !digits(m) {
        return None;
    }
    let (h, m): (usize, usize) = (h.parse().ok()?, m.parse().ok()?);
    (h <= 23 && (m == 0 || m == 30)).then_some(h * 2 + m / 30)
}

/// A schedule's rules: not empty, starting at 00:00, on half hours, times increasing.
pub fn check_schedule(changes: &[ScheduleChange]) -> Result<(), String> {
    let Some(first) = changes.first() else {
        return Err("the schedule is empty: it starts with 00:00=PERIOD".into());
    };
    let mut last: Option<(usize, &str)> = None;
    for change in changes {
        let slot = slot_of(&change.from).ok_or_else(|| {
            format!(
                "{:?} is not a half-hour boundary (HH:00 or HH:30, 00:00 to 23:30)",
                change.from
            )
        })?;
        if let Some((before, text)) = last {
            if slot <= before {
                return Err(format!(
                    "the schedule's times must increase: {} comes after {text}",
                    change.from
                ));
            }
        }
        last = Some((slot, &change.from));
    }
    if slot_of(&first.from) != Some(0) {
        return Err(format!(
            "the schedule must start at 00:00, not {}",
            first.from
        ));
    }
    Ok(())
}

/// What the app service would refuse in a tariff, found before sending it.
pub fn check_tariff(t: &TariffInput) -> Result<(), String> {
    if t.name.trim().is_empty() {
        return Err("a tariff needs a name: give --name (or \"name\" in the file)".into());
    }
    check_prices_and_schedule(t)
}

/// [`check_tariff`] but the name, which `revise` may take from the current revision.
pub(super) fn check_prices_and_schedule(t: &TariffInput) -> Result<(), String> {
    if t.loss_ratio > 100 {
        return Err(format!(
            "the loss ratio is a percentage (0 to 100), not {}",
            t.loss_ratio
        ));
    }
    for period in Period::ALL {
        let rate = t.rates.of(period);
        if rate.electricity.max(rate.service) > MAX_PRICE {
            return Err(format!(
                "a {} price is above 10000 yuan per kWh (the file's prices are in 0.00001 \
                 yuan: 120000 is 1.2 yuan)",
                period.as_str()
            ));
        }
    }
    check_schedule(&t.schedule)
}

/// A tariff file: JSON holding a [`TariffInput`] whose `name` may be left out (`name`
/// then wins, else the file's; empty if neither). `-` is standard input.
pub(super) fn read_file(path: &Path, name: Option<&str>) -> Result<TariffInput, Failure> {
    let shown = path.display();
    let text = if path.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())
    } else {
        std::fs::read_to_string(path)
    }
    .map_err(|e| Failure::BadInput(format!("cannot read the tariff file {shown}: {e}")))?;
    let bad = |why: String| {
        Failure::BadInput(format!(
            "{shown} is not a tariff: {why} (`pylonctl tariffs add --help` shows the form)"
        ))
    };
    let mut value: Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let object = value
        .as_object_mut()
        .ok_or_else(|| bad("it is not a JSON object".into()))?;
    match name {
        Some(name) => {
            object.insert("name".into(), name.into());
        }
        None if object.get("name").is_none_or(Value::is_null) => {
            object.insert("name".into(), "".into());
        }
        None => {}
    }
    let input = TariffInput::deserialize(&value).map_err(|e| bad(e.to_string()))?;
    check_prices_and_schedule(&input).map_err(bad)?;
    Ok(input)
}
