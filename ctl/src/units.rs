//! Money, energy and time as the operator types and reads them, for the app service's
//! commands (`piles`, `records`, `charge`, `stations`, `tariffs`, `accounts`, `reports`).
//! The app service's API speaks integers: wallets and money movements in fen (0.01 yuan),
//! record amounts in 0.0001 yuan, prices in 0.00001 yuan per kWh, energies in 0.0001 kWh,
//! times in Unix milliseconds. Nothing here goes through a float.

/// The most one money movement (`accounts top-up|refund|adjust`) may move: 1,000,000,000
/// yuan, in fen. Far above any real top-up; it keeps a typo from reaching the ledger and
/// sums of many amounts far from overflowing.
const MAX_AMOUNT: i64 = 100_000_000_000;

/// The highest price per kWh the app service takes: 10,000 yuan, in 0.00001 yuan.
const MAX_PRICE: u32 = 1_000_000_000;

/// `t`, unsigned decimal text with at most `decimals` digits after the point, as a count
/// of 10^-decimals units. `example` ends the error messages; `unit` names the smallest
/// step (for "has 3 decimals: ... counted in fen").
fn parse_decimal(t: &str, decimals: usize, unit: &str, example: &str) -> Result<u128, String> {
    let (whole, fraction) = t.split_once('.').unwrap_or((t, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits(whole) || !digits(fraction) || t.ends_with('.') {
        return Err(format!("{t:?} is not an amount: {example}"));
    }
    if fraction.len() > decimals {
        return Err(format!(
            "{t:?} has {} decimals: it is counted in {unit}; {example}",
            fraction.len()
        ));
    }
    let too_large = || format!("{t:?} is too large: {example}");
    let whole: u128 = whole.parse().map_err(|_| too_large())?;
    let fraction: u128 = if fraction.is_empty() {
        0
    } else {
        format!("{fraction:0<decimals$}")
            .parse()
            .map_err(|_| too_large())?
    };
    whole
        .checked_mul(10u128.pow(decimals as u32))
        .and_then(|w| w.checked_add(fraction))
        .ok_or_else(too_large)
}

/// An amount of money in yuan (`50`, `50.5`, `0.01`) -> fen, exactly: at most two
/// decimals, more than zero, at most 1,000,000,000 yuan.
pub fn parse_yuan(text: &str) -> Result<i64, String> {
    let t = text.trim();
    let example = "give yuan with at most two decimals, e.g. 50 or 50.00 or 12.5";
    if t.starts_with('-') {
        return Err(format!("{t:?} is negative: {example}"));
    }
    let fen = parse_decimal(t, 2, "fen (0.01 yuan)", example)?;
    let fen = i64::try_from(fen)
        .ok()
        .filter(|f| *f <= MAX_AMOUNT)
        .ok_or_else(|| {
            format!(
                "{t:?} is more than pylonctl moves at once ({} yuan)",
                format_fen(MAX_AMOUNT)
            )
        })?;
    if fen == 0 {
        return Err(format!("{t:?} is zero: the least amount is 0.01 yuan"));
    }
    Ok(fen)
}

/// [`parse_yuan`], but a leading `-` makes it negative (an adjustment that takes money
/// out of a wallet): `-12.50` -> -1250. Never zero.
pub fn parse_signed_yuan(text: &str) -> Result<i64, String> {
    let t = text.trim();
    match t.strip_prefix('-') {
        Some(rest) if !rest.starts_with(['-', '+', ' ']) => parse_yuan(rest)
            .map(|fen| -fen)
            .map_err(|e| e.replacen(&format!("{rest:?}"), &format!("{t:?}"), 1)),
        _ => parse_yuan(t),
    }
}

/// A price per kWh in yuan (`1.2`, `0.35`, `0.12345`) -> 0.00001 yuan, exactly: at most
/// five decimals, zero allowed (a free service fee), at most 10,000 yuan.
pub fn parse_price(text: &str) -> Result<u32, String> {
    let t = text.trim();
    let example = "give yuan per kWh with at most five decimals, e.g. 1.2 or 0.35 or 0.12345";
    if t.starts_with('-') {
        return Err(format!("{t:?} is negative: {example}"));
    }
    let raw = parse_decimal(t, 5, "0.00001 yuan", example)?;
    u32::try_from(raw)
        .ok()
        .filter(|p| *p <= MAX_PRICE)
        .ok_or_else(|| format!("{t:?} is above 10000 yuan per kWh, the most a price may be"))
}

/// 0.00001 yuan per kWh -> yuan with five decimals (`1.20000`).
pub fn format_price(raw: u32) -> String {
    scaled(i64::from(raw), 5, 5)
}

/// 0.01 yuan -> `50.00`.
pub fn format_fen(fen: i64) -> String {
    scaled(fen, 2, 2)
}

/// 0.0001 yuan -> yuan with two decimals, rounded half away from zero (`12.35`).
pub fn format_amount(raw: i64) -> String {
    scaled(raw, 4, 2)
}

/// 0.0001 kWh -> kWh with four decimals, exactly (`12.3456`).
pub fn format_energy(raw: i64) -> String {
    scaled(raw, 4, 4)
}

/// `raw / 10^scale` shown with `shown` decimals (`shown <= scale`), rounded half away from
/// zero.
fn scaled(raw: i64, scale: u32, shown: u32) -> String {
    let sign = if raw < 0 { "-" } else { "" };
    let raw = i128::from(raw).unsigned_abs();
    let dropped = 10u128.pow(scale - shown);
    let rounded = (raw + dropped / 2) / dropped;
    let unit = 10u128.pow(shown);
    if shown == 0 {
        return format!("{sign}{rounded}");
    }
    format!(
        "{sign}{}.{:0width$}",
        rounded / unit,
        rounded % unit,
        width = shown as usize
    )
}

/// Unix milliseconds -> `2024-05-01T08:00:00Z` (UTC, whole seconds).
pub fn format_time(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// [`format_time`], or `never` for `None`.
pub fn format_time_or(ms: Option<i64>, none: &str) -> String {
    ms.map_or_else(|| none.to_owned(), format_time)
}

/// A time as the operator gives it -> Unix milliseconds. Accepted:
/// - Unix milliseconds: `1714550400000`;
/// - RFC 3339: `2024-05-01T08:00:00Z`, `2024-05-01T16:00:00+08:00`, with optional
///   fractional seconds, `T` or a space between date and time, seconds optional;
/// - a date alone, meaning its midnight UTC: `2024-05-01`.
pub fn parse_time(text: &str) -> Result<i64, String> {
    let t = text.trim();
    let help = "give Unix milliseconds (1714550400000), an RFC 3339 time \
                (2024-05-01T08:00:00Z or 2024-05-01T16:00:00+08:00) or a date (2024-05-01, \
                midnight UTC)";
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        return t
            .parse::<i64>()
            .map_err(|_| format!("{t:?} is too large for milliseconds"));
    }
    parse_rfc3339(t).map_err(|why| format!("{t:?} is not a time: {why}; {help}"))
}

fn parse_rfc3339(t: &str) -> Result<i64, String> {
    let bytes = t.as_bytes();
    let num = |range: std::ops::Range<usize>, what: &str| -> Result<i64, String> {
        match bytes.get(range.clone()) {
            Some(b) if b.iter().all(u8::is_ascii_digit) => {
                Ok(b.iter().fold(0i64, |n, d| n * 10 + i64::from(d - b'0')))
            }
            _ => Err(format!(
                "expected the {what} at character {}",
                range.start + 1
            )),
        }
    };
    let sep = |i: usize, c: u8| -> Result<(), String> {
        match bytes.get(i) {
            Some(&b) if b == c => Ok(()),
            _ => Err(format!(
                "expected {:?} at character {}",
                char::from(c),
                i + 1
            )),
        }
    };
    let year = num(0..4, "year (4 digits)")?;
    sep(4, b'-')?;
    let month = num(5..7, "month (2 digits)")?;
    sep(7, b'-')?;
    let day = num(8..10, "day (2 digits)")?;
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return Err(format!("there is no day {year:04}-{month:02}-{day:02}"));
    }
    let days = days_from_civil(year, month, day);
    if bytes.len() == 10 {
        return Ok(days * 86_400_000);
    }
    if !matches!(bytes.get(10), Some(b'T' | b't' | b' ')) {
        return Err("expected T between the date and the time".into());
    }
    let hour = num(11..13, "hour (2 digits)")?;
    sep(13, b':')?;
    let minute = num(14..16, "minute (2 digits)")?;
    let mut i = 16;
    let mut second = 0;
    let mut millis = 0;
    if bytes.get(i) == Some(&b':') {
        second = num(17..19, "second (2 digits)")?;
        i = 19;
        if bytes.get(i) == Some(&b'.') {
            i += 1;
            let start = i;
            while bytes.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            if i == start {
                return Err("expected digits after the decimal point".into());
            }
            // Milliseconds: the first three digits, the rest dropped.
            let digits = &t[start..i.min(start + 3)];
            millis = format!("{digits:0<3}").parse::<i64>().unwrap_or(0);
        }
    }
    if hour > 23 || minute > 59 || second > 60 {
        return Err(format!(
            "there is no time of day {hour:02}:{minute:02}:{second:02}"
        ));
    }
    let offset_secs = match &t[i..] {
        "Z" | "z" => 0,
        "" => {
            return Err(
                "the time has no zone: end it with Z (UTC) or an offset such as \
                        +08:00"
                    .into(),
            )
        }
        zone => {
            let zb = zone.as_bytes();
            let sign = match zb.first() {
                Some(b'+') => 1,
                Some(b'-') => -1,
                _ => return Err(format!("{zone:?} is not a zone (Z, +08:00, -05:00)")),
            };
            let digits: String = zone[1..].chars().filter(|c| *c != ':').collect();
            let valid_shape = matches!(zone.len(), 5 | 6)
                && (zone.len() == 5 || zb[3] == b':')
                && digits.len() == 4
                && digits.bytes().all(|b| b.is_ascii_digit());
            if !valid_shape {
                return Err(format!("{zone:?} is not a zone (Z, +08:00, -05:00)"));
            }
            let hh: i64 = digits[..2].parse().unwrap_or(0);
            let mm: i64 = digits[2..].parse().unwrap_or(0);
            if hh > 23 || mm > 59 {
                return Err(format!("{zone:?} is not a zone (Z, +08:00, -05:00)"));
            }
            sign * (hh * 3600 + mm * 60)
        }
    };
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_secs;
    Ok(secs * 1000 + millis)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// A size for people: `512 B`, `3.4 KiB`, `1.2 GiB`.
pub fn format_bytes(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_parsed_exactly() {
        assert_eq!(parse_yuan("50"), Ok(5000));
        assert_eq!(parse_yuan("50.5"), Ok(5050));
        assert_eq!(parse_yuan("50.50"), Ok(5050));
        assert_eq!(parse_yuan("0.01"), Ok(1));
        assert_eq!(parse_yuan(" 12.34 "), Ok(1234));
        assert_eq!(parse_yuan("1000000000"), Ok(MAX_AMOUNT));
        for bad in [
            "1.234",
            "-1",
            "0",
            "0.00",
            "",
            ".5",
            "5.",
            "1e3",
            "1,5",
            "50 yuan",
            "1000000000.01",
            "99999999999999999999999999999999999999999",
            "+5",
        ] {
            assert!(parse_yuan(bad).is_err(), "{bad:?} parsed");
        }
        let err = parse_yuan("1.234").unwrap_err();
        assert!(err.contains("3 decimals"), "{err}");
        assert!(parse_yuan("-1").unwrap_err().contains("negative"));
        assert!(parse_yuan("0").unwrap_err().contains("zero"));
    }

    #[test]
    fn signed_amounts_may_be_negative_but_not_zero() {
        assert_eq!(parse_signed_yuan("-12.5"), Ok(-1250));
        assert_eq!(parse_signed_yuan("12.5"), Ok(1250));
        assert_eq!(parse_signed_yuan(" -0.01 "), Ok(-1));
        for bad in ["-0", "--5", "- 5", "-+5", "-", "-1.234", "0"] {
            assert!(parse_signed_yuan(bad).is_err(), "{bad:?} parsed");
        }
        let err = parse_signed_yuan("-1.234").unwrap_err();
        assert!(err.starts_with("\"-1.234\" has 3 decimals"), "{err}");
    }

    #[test]
    fn prices_have_five_decimals() {
        assert_eq!(parse_price("1.2"), Ok(120_000));
        assert_eq!(parse_price("0.12345"), Ok(12_345));
        assert_eq!(parse_price("0"), Ok(0));
        assert_eq!(parse_price("10000"), Ok(MAX_PRICE));
        for bad in ["0.123456", "-1", "10000.00001", "1.2.3", "", "abc"] {
            assert!(parse_price(bad).is_err(), "{bad:?} parsed");
        }
        assert_eq!(format_price(120_000), "1.20000");
        assert_eq!(format_price(5), "0.00005");
        for text in ["1.20000", "0.00005", "10000.00000"] {
            assert_eq!(format_price(parse_price(text).unwrap()), text);
        }
    }

    #[test]
    fn amounts_and_energies_are_scaled_without_floats() {
        assert_eq!(format_fen(5000), "50.00");
        assert_eq!(format_fen(1), "0.01");
        assert_eq!(format_fen(-250), "-2.50");
        assert_eq!(format_energy(123_456), "12.3456");
        assert_eq!(format_energy(5), "0.0005");
        assert_eq!(format_energy(0), "0.0000");
        assert_eq!(format_amount(123_456), "12.35");
        assert_eq!(format_amount(123_449), "12.34");
        assert_eq!(format_amount(50), "0.01");
        assert_eq!(format_amount(49), "0.00");
        assert_eq!(format_amount(-123_456), "-12.35");
        assert_eq!(format_amount(i64::MIN), "-922337203685477.58");
    }

    #[test]
    fn times_format_as_utc() {
        assert_eq!(format_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_time(1_714_550_400_000), "2024-05-01T08:00:00Z");
        assert_eq!(format_time(1_714_550_400_999), "2024-05-01T08:00:00Z");
        assert_eq!(format_time(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(format_time(-1), "1969-12-31T23:59:59Z");
        assert_eq!(format_time_or(None, "never"), "never");
    }

    #[test]
    fn times_parse_from_milliseconds_rfc3339_or_a_date() {
        assert_eq!(parse_time("1714550400000"), Ok(1_714_550_400_000));
        assert_eq!(parse_time("2024-05-01T08:00:00Z"), Ok(1_714_550_400_000));
        assert_eq!(parse_time("2024-05-01t08:00:00z"), Ok(1_714_550_400_000));
        assert_eq!(
            parse_time("2024-05-01T16:00:00+08:00"),
            Ok(1_714_550_400_000)
        );
        assert_eq!(
            parse_time("2024-05-01T03:00:00-0500"),
            Ok(1_714_550_400_000)
        );
        assert_eq!(parse_time("2024-05-01 08:00Z"), Ok(1_714_550_400_000));
        assert_eq!(
            parse_time("2024-05-01T08:00:00.123456Z"),
            Ok(1_714_550_400_123)
        );
        assert_eq!(parse_time("2024-05-01T08:00:00.5Z"), Ok(1_714_550_400_500));
        assert_eq!(parse_time("2024-05-01"), Ok(1_714_521_600_000));
        assert_eq!(parse_time("2000-02-29"), Ok(951_782_400_000));
        for bad in [
            "",
            "yesterday",
            "2024-05-01T08:00:00",
            "2024-02-30",
            "2023-02-29",
            "2024-13-01",
            "2024-05-01T24:00:00Z",
            "2024-05-01T08:00:00+8",
            "2024-05-01T08:00:00.Z",
            "2024-5-1",
            "-1",
            "99999999999999999999",
        ] {
            assert!(parse_time(bad).is_err(), "{bad:?} parsed");
        }
        assert!(parse_time("2024-05-01T08:00:00")
            .unwrap_err()
            .contains("no zone"));
    }

    #[test]
    fn formatting_and_parsing_agree() {
        for ms in [0, 951_782_400_000, 1_714_550_400_000, 4_102_444_799_000] {
            assert_eq!(parse_time(&format_time(ms)), Ok(ms));
        }
    }
}
