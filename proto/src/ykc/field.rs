//! Field types of YKC frame bodies and how each one is read and written.
//!
//! BCD fields are packed decimal, BIN fields little-endian unsigned integers (often
//! scaled), ASCII fields zero-padded text, and times CP56Time2a.

use std::fmt;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::error::{DecodeError, EncodeError};

/// A cursor over a frame body.
pub struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, pos: 0 }
    }

    pub fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], DecodeError> {
        let rest = &self.bytes[self.pos..];
        if rest.len() < n {
            return Err(DecodeError::InvalidField {
                field,
                reason: format!("needs {n} bytes, body has {} left", rest.len()),
            });
        }
        self.pos += n;
        Ok(&rest[..n])
    }

    pub fn take_array<const N: usize>(
        &mut self,
        field: &'static str,
    ) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, field)?);
        Ok(out)
    }

    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }
}

/// A small deterministic generator, used to build sample values for round-trip tests,
/// fuzzing seeds and the demo fleet.
pub struct Gen(u64);

impl Gen {
    pub fn new(seed: u64) -> Self {
        Gen(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    pub fn next_u64(&mut self) -> u64 {
        // splitmix64
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }
}

/// One field of a frame body: how it is read, written and sampled.
pub trait Field: Sized {
    fn decode(r: &mut Reader<'_>, name: &'static str) -> Result<Self, DecodeError>;
    fn encode(&self, w: &mut Vec<u8>, name: &'static str) -> Result<(), EncodeError>;
    fn sample(g: &mut Gen) -> Self;
}

macro_rules! bin_int {
    ($($t:ty),*) => {$(
        impl Field for $t {
            fn decode(r: &mut Reader<'_>, name: &'static str) -> Result<Self, DecodeError> {
                Ok(<$t>::from_le_bytes(r.take_array(name)?))
            }
            fn encode(&self, w: &mut Vec<u8>, _: &'static str) -> Result<(), EncodeError> {
                w.extend_from_slice(&self.to_le_bytes());
                Ok(())
            }
            fn sample(g: &mut Gen) -> Self {
                g.next_u64() as $t
            }
        }
    )*};
}
bin_int!(u8, u16, u32);

/// A 5-byte little-endian unsigned integer (meter readings in transaction records).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct U40(pub u64);

impl U40 {
    pub const MAX: u64 = (1 << 40) - 1;
}

impl Field for U40 {
    fn decode(r: &mut Reader<'_>, name: &'static str) -> Result<Self, DecodeError> {
        let b: [u8; 5] = r.take_array(name)?;
        let mut wide = [0u8; 8];
        wide[..5].copy_from_slice(&b);
        Ok(U40(u64::from_le_bytes(wide)))
    }
    fn encode(&self, w: &mut Vec<u8>, name: &'static str) -> Result<(), EncodeError> {
        if self.0 > Self::MAX {
            return Err(EncodeError::InvalidField {
                field: name,
                reason: format!("{} does not fit in 5 bytes", self.0),
            });
        }
        w.extend_from_slice(&self.0.to_le_bytes()[..5]);
        Ok(())
    }
    fn sample(g: &mut Gen) -> Self {
        U40(g.next_u64() & Self::MAX)
    }
}

/// A 3-byte little-endian unsigned integer (e.g. a battery pack's charge count).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct U24(pub u32);

impl U24 {
    pub const MAX: u32 = (1 << 24) - 1;
}

impl Field for U24 {
    fn decode(r: &mut Reader<'_>, name: &'static str) -> Result<Self, DecodeError> {
        let b: [u8; 3] = r.take_array(name)?;
        Ok(U24(u32::from_le_bytes([b[0], b[1], b[2], 0])))
    }
    fn encode(&self, w: &mut Vec<u8>, name: &'static str) -> Result<(), EncodeError> {
        if self.0 > Self::MAX {
            return Err(EncodeError::InvalidField {
                field: name,
                reason: format!("{} does not fit in 3 bytes", self.0),
            });
        }
        w.extend_from_slice(&self.0.to_le_bytes()[..3]);
        Ok(())
    }
    fn sample(g: &mut Gen) -> Self {
        U24(g.next_u64() as u32 & Self::MAX)
    }
}

impl Serialize for U24 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(self.0)
    }
}

impl<'de> Deserialize<'de> for U24 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = u32::deserialize(d)?;
        if v > Self::MAX {
            return Err(D::Error::custom(format!(
                "{v} does not fit in 3 bytes (max {})",
                Self::MAX
            )));
        }
        Ok(U24(v))
    }
}

/// The raw integer types a [`Scaled`] value can be carried in.
pub trait RawUint: Field + Copy {
    const MAX: u64;
    fn to_u64(self) -> u64;
    fn from_u64(v: u64) -> Self;
}

macro_rules! raw_uint {
    ($($t:ty => $max:expr, |$v:ident| $to:expr, |$w:ident| $from:expr;)*) => {$(
        impl RawUint for $t {
            const MAX: u64 = $max;
            fn to_u64(self) -> u64 { let $v = self; $to }
            fn from_u64($w: u64) -> Self { $from }
        }
    )*};
}
raw_uint! {
    u8 => u8::MAX as u64, |v| v as u64, |w| w as u8;
    u16 => u16::MAX as u64, |v| v as u64, |w| w as u16;
    u32 => u32::MAX as u64, |v| v as u64, |w| w as u32;
    U24 => U24::MAX as u64, |v| v.0 as u64, |w| U24(w as u32);
    U40 => U40::MAX, |v| v.0, |w| U40(w);
}

/// A BIN field carrying `real = raw / 10^DEC + OFFSET` (e.g. voltage ×10, temperature
/// with a −50 °C offset). It keeps the raw integer, so encoding is exact; JSON shows the
/// real value.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Scaled<R, const DEC: u32, const OFFSET: i64 = 0>(pub R);

impl<R: RawUint, const DEC: u32, const OFFSET: i64> Scaled<R, DEC, OFFSET> {
    pub fn raw(&self) -> u64 {
        self.0.to_u64()
    }

    pub fn value(&self) -> f64 {
        self.raw() as f64 / 10f64.powi(DEC as i32) + OFFSET as f64
    }

    /// The raw integer for a real value, or None when it is out of the field's range.
    pub fn from_value(value: f64) -> Option<Self> {
        let raw = ((value - OFFSET as f64) * 10f64.powi(DEC as i32)).round();
        if !raw.is_finite() || raw < 0.0 || raw > R::MAX as f64 {
            return None;
        }
        Some(Scaled(R::from_u64(raw as u64)))
    }
}

impl<R: RawUint, const DEC: u32, const OFFSET: i64> fmt::Debug for Scaled<R, DEC, OFFSET> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.value())
    }
}

impl<R: RawUint, const DEC: u32, const OFFSET: i64> Field for Scaled<R, DEC, OFFSET> {
    fn decode(r: &mut Reader<'_>, name: &'static str) -> Result<Self, DecodeError> {
        Ok(Scaled(R::decode(r, name)?))
    }
    fn encode(&self, w: &mut Vec<u8>, name: &'static str) -> Result<(), EncodeError> {
        self.0.encode(w, name)
    }
    fn sample(g: &mut Gen) -> Self {
        Scaled(R::sample(g))
    }
}

impl<R: RawUint, const DEC: u32, const OFFSET: i64> Serialize for Scaled<R, DEC, OFFSET> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if DEC == 0 {
            s.serialize_i64(self.raw() as i64 + OFFSET)
        } else {
            s.serialize_f64(self.value())
        }
    }
}

impl<'de, R: RawUint, const DEC: u32, const OFFSET: i64> Deserialize<'de>
    for Scaled<R, DEC, OFFSET>
{
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = f64::deserialize(d)?;
        Scaled::from_value(v).ok_or_else(|| {
            D::Error::custom(format!(
                "{v} is out of range (0..={} raw, {DEC} decimals, offset {OFFSET})",
                R::MAX
            ))
        })
    }
}

/// Packed BCD of `N` bytes (2·N decimal digits, left-padded with zeros).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Bcd<const N: usize>(pub [u8; N]);

/// A pile number: 7 bytes of BCD (14 digits).
pub type PileNo = Bcd<7>;
/// A transaction serial number: 16 bytes of BCD (32 digits).
pub type TradeNo = Bcd<16>;

impl<const N: usize> Default for Bcd<N> {
    fn default() -> Self {
        Bcd([0; N])
    }
}

impl<const N: usize> Bcd<N> {
    /// Parses a string of at most 2·N decimal digits, left-padding it with zeros.
    pub fn parse(digits: &str) -> Result<Self, String> {
        if digits.len() > 2 * N {
            return Err(format!(
                "{} digits is more than the {} this field holds",
                digits.len(),
                2 * N
            ));
        }
        if let Some(c) = digits.chars().find(|c| !c.is_ascii_digit()) {
            return Err(format!("{c:?} is not a decimal digit"));
        }
        let padded = format!("{digits:0>width$}", width = 2 * N);
        let mut out = [0u8; N];
        for (i, pair) in padded.as_bytes().chunks(2).enumerate() {
            out[i] = ((pair[0] - b'0') << 4) | (pair[1] - b'0');
        }
        Ok(Bcd(out))
    }

    /// The value as a number (only for fields of up to 9 bytes).
    pub fn to_u64(&self) -> u64 {
        self.0.iter().fold(0u64, |acc, b| {
            acc.wrapping_mul(100)
                .wrapping_add(u64::from(b >> 4) * 10 + u64::from(b & 0x0F))
        })
    }

    pub fn from_u64(mut v: u64) -> Self {
        let mut out = [0u8; N];
        for byte in out.iter_mut().rev() {
            let lo = (v % 10) as u8;
            v /= 10;
            let hi = (v % 10) as u8;
            v /= 10;
            *byte = (hi << 4) | lo;
        }
        Bcd(out)
    }

    fn validate(bytes: &[u8]) -> Result<(), String> {
        match bytes.iter().position(|b| b >> 4 > 9 || b & 0x0F > 9) {
            None => Ok(()),
            Some(i) => Err(format!("byte {i} ({:#04x}) is not packed BCD", bytes[i])),
        }
    }
}

impl<const N: usize> fmt::Display for Bcd<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{}{}", b >> 4, b & 0x0F)?;
        }
        Ok(())
    }
}

impl<const N: usize> fmt::Debug for Bcd<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Bcd({self})")
    }
}

impl<const N: usize> Field for Bcd<N> {
    fn decode(r: &mut Reader<'_>, name: &'static str) -> Result<Self, DecodeError> {
        let bytes: [u8; N] = r.take_array(name)?;
        Self::validate(&bytes).map_err(|reason| DecodeError::InvalidField {
            field: name,
            reason,
        })?;
        Ok(Bcd(bytes))
    }
    fn encode(&self, w: &mut Vec<u8>, name: &'static str) -> Result<(), EncodeError> {
        Self::validate(&self.0).map_err(|reason| EncodeError::InvalidField {
            field: name,
            reason,
        })?;
        w.extend_from_slice(&self.0);
        Ok(())
    }
    fn sample(g: &mut Gen) -> Self {
        let mut out = [0u8; N];
        for b in out.iter_mut() {
            *b = ((g.below(10) as u8) << 4) | g.below(10) as u8;
        }
        Bcd(out)
    }
}

impl<const N: usize> Serialize for Bcd<N> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de, const N: usize> Deserialize<'de> for Bcd<N> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Bcd::parse(&s).map_err(D::Error::custom)
    }
}

/// Zero-padded ASCII text of `N` bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Ascii<const N: usize>(pub [u8; N]);

impl<const N: usize> Default for Ascii<N> {
    fn default() -> Self {
        Ascii([0; N])
    }
}

impl<const N: usize> Ascii<N> {
    pub fn parse(text: &str) -> Result<Self, String> {
        if !text.is_ascii() {
            return Err(format!("{text:?} is not ASCII"));
        }
        if text.len() > N {
            return Err(format!(
                "{} characters is more than the {N} this field holds",
                text.len()
            ));
        }
        let mut out = [0u8; N];
        out[..text.len()].copy_from_slice(text.as_bytes());
        Ok(Ascii(out))
    }

    /// The text without its zero padding; bytes that are not ASCII show as U+FFFD.
    pub fn text(&self) -> String {
        let end = self.0.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        String::from_utf8_lossy(&self.0[..end]).into_owned()
    }
}

impl<const N: usize> fmt::Debug for Ascii<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.text())
    }
}

impl<const N: usize> Field for Ascii<N> {
    fn decode(r: &mut Reader<'_>, name: &'static str) -> Result<Self, DecodeError> {
        Ok(Ascii(r.take_array(name)?))
    }
    fn encode(&self, w: &mut Vec<u8>, _: &'static str) -> Result<(), EncodeError> {
        w.extend_from_slice(&self.0);
        Ok(())
    }
    fn sample(g: &mut Gen) -> Self {
        let mut out = [0u8; N];
        let len = g.below(N as u64 + 1) as usize;
        for b in out.iter_mut().take(len) {
            *b = b'!' + g.below(94) as u8;
        }
        Ascii(out)
    }
}

impl<const N: usize> Serialize for Ascii<N> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text())
    }
}

impl<'de, const N: usize> Deserialize<'de> for Ascii<N> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ascii::parse(&s).map_err(D::Error::custom)
    }
}

/// `N` opaque BIN bytes (physical card numbers, VINs sent as BIN, MD5 digests); shown as hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Bytes<const N: usize>(pub [u8; N]);

impl<const N: usize> Default for Bytes<N> {
    fn default() -> Self {
        Bytes([0; N])
    }
}

impl<const N: usize> fmt::Debug for Bytes<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", hex::encode(self.0))
    }
}

impl<const N: usize> Field for Bytes<N> {
    fn decode(r: &mut Reader<'_>, name: &'static str) -> Result<Self, DecodeError> {
        Ok(Bytes(r.take_array(name)?))
    }
    fn encode(&self, w: &mut Vec<u8>, _: &'static str) -> Result<(), EncodeError> {
        w.extend_from_slice(&self.0);
        Ok(())
    }
    fn sample(g: &mut Gen) -> Self {
        let mut out = [0u8; N];
        for b in out.iter_mut() {
            *b = g.next_u64() as u8;
        }
        Bytes(out)
    }
}

impl<const N: usize> Serialize for Bytes<N> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(self.0))
    }
}

impl<'de, const N: usize> Deserialize<'de> for Bytes<N> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let bytes = hex::decode(&s).map_err(|e| D::Error::custom(format!("{s:?}: {e}")))?;
        let arr: [u8; N] = bytes
            .try_into()
            .map_err(|b: Vec<u8>| D::Error::custom(format!("{} bytes, expected {N}", b.len())))?;
        Ok(Bytes(arr))
    }
}

/// CP56Time2a: the 7-byte IEC 60870-5 time stamp the spec uses for every date and time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cp56Time2a {
    /// Milliseconds within the minute (0..=59999).
    pub millis: u16,
    pub minute: u8,
    pub hour: u8,
    pub day: u8,
    /// Day of week, 1 = Monday .. 7 = Sunday, 0 = not used.
    pub weekday: u8,
    pub month: u8,
    /// Years since 2000 (0..=99).
    pub year: u8,
    /// IV bit: the time is not valid.
    pub invalid: bool,
    /// SU bit: summer time.
    pub summer: bool,
}

impl Cp56Time2a {
    /// A time from its calendar parts (year as 2000..=2099).
    pub fn new(year: u16, month: u8, day: u8, hour: u8, minute: u8, millis: u16) -> Option<Self> {
        let t = Cp56Time2a {
            millis,
            minute,
            hour,
            day,
            weekday: 0,
            month,
            year: year.checked_sub(2000).and_then(|y| u8::try_from(y).ok())?,
            invalid: false,
            summer: false,
        };
        t.check().ok().map(|_| t)
    }

    fn check(&self) -> Result<(), String> {
        let bad = |what: &str, v: u32| Err(format!("{what} {v} is out of range"));
        if self.millis > 59_999 {
            return bad("milliseconds", self.millis.into());
        }
        if self.minute > 59 {
            return bad("minute", self.minute.into());
        }
        if self.hour > 23 {
            return bad("hour", self.hour.into());
        }
        if !(1..=31).contains(&self.day) {
            return bad("day", self.day.into());
        }
        if self.weekday > 7 {
            return bad("weekday", self.weekday.into());
        }
        if !(1..=12).contains(&self.month) {
            return bad("month", self.month.into());
        }
        if self.year > 99 {
            return bad("year", self.year.into());
        }
        Ok(())
    }
}

impl fmt::Display for Cp56Time2a {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}",
            2000 + u16::from(self.year),
            self.month,
            self.day,
            self.hour,
            self.minute,
            self.millis / 1000,
            self.millis % 1000
        )
    }
}

impl Field for Cp56Time2a {
    fn decode(r: &mut Reader<'_>, name: &'static str) -> Result<Self, DecodeError> {
        let b: [u8; 7] = r.take_array(name)?;
        let t = Cp56Time2a {
            millis: u16::from_le_bytes([b[0], b[1]]),
            minute: b[2] & 0x3F,
            invalid: b[2] & 0x80 != 0,
            hour: b[3] & 0x1F,
            summer: b[3] & 0x80 != 0,
            day: b[4] & 0x1F,
            weekday: b[4] >> 5,
            month: b[5] & 0x0F,
            year: b[6] & 0x7F,
        };
        t.check().map_err(|reason| DecodeError::InvalidField {
            field: name,
            reason,
        })?;
        Ok(t)
    }
    fn encode(&self, w: &mut Vec<u8>, name: &'static str) -> Result<(), EncodeError> {
        self.check().map_err(|reason| EncodeError::InvalidField {
            field: name,
            reason,
        })?;
        w.extend_from_slice(&self.millis.to_le_bytes());
        w.push(self.minute | if self.invalid { 0x80 } else { 0 });
        w.push(self.hour | if self.summer { 0x80 } else { 0 });
        w.push(self.day | (self.weekday << 5));
        w.push(self.month);
        w.push(self.year);
        Ok(())
    }
    fn sample(g: &mut Gen) -> Self {
        Cp56Time2a {
            millis: g.below(60_000) as u16,
            minute: g.below(60) as u8,
            hour: g.below(24) as u8,
            day: 1 + g.below(31) as u8,
            weekday: g.below(8) as u8,
            month: 1 + g.below(12) as u8,
            year: g.below(100) as u8,
            invalid: g.below(2) == 1,
            summer: g.below(2) == 1,
        }
    }
}

/// JSON form: `{"time": "2026-11-24T10:20:30.123", "weekday": 2, "invalid": false, "summer": false}`
/// where only `time` is required.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Cp56Json {
    time: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    weekday: u8,
    #[serde(default, skip_serializing_if = "is_false")]
    invalid: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    summer: bool,
}

fn is_zero(v: &u8) -> bool {
    *v == 0
}
fn is_false(v: &bool) -> bool {
    !*v
}

impl Serialize for Cp56Time2a {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.weekday == 0 && !self.invalid && !self.summer {
            return s.collect_str(self);
        }
        Cp56Json {
            time: self.to_string(),
            weekday: self.weekday,
            invalid: self.invalid,
            summer: self.summer,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Cp56Time2a {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Text(String),
            Full(Cp56Json),
        }
        let json = match Form::deserialize(d)? {
            Form::Text(time) => Cp56Json {
                time,
                weekday: 0,
                invalid: false,
                summer: false,
            },
            Form::Full(j) => j,
        };
        parse_time(&json.time)
            .map(|mut t| {
                t.weekday = json.weekday;
                t.invalid = json.invalid;
                t.summer = json.summer;
                t
            })
            .ok_or_else(|| {
                D::Error::custom(format!(
                    "{:?} is not a time of the form 2026-11-24T10:20:30.123 (years 2000-2099)",
                    json.time
                ))
            })
    }
}

fn parse_time(s: &str) -> Option<Cp56Time2a> {
    let (date, time) = s.split_once(['T', ' '])?;
    let mut d = date.split('-').map(|p| p.parse::<u16>().ok());
    let (year, month, day) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.split(':');
    let hour: u8 = t.next()?.parse().ok()?;
    let minute: u8 = t.next()?.parse().ok()?;
    let secs: f64 = t.next().unwrap_or("0").parse().ok()?;
    if !(0.0..60.0).contains(&secs) {
        return None;
    }
    let millis = (secs * 1000.0).round() as u16;
    Cp56Time2a::new(
        year,
        u8::try_from(month).ok()?,
        u8::try_from(day).ok()?,
        hour,
        minute,
        millis,
    )
}

/// A list preceded by a one-byte count.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Counted<T, const MAX: usize>(pub Vec<T>);

impl<T: Field, const MAX: usize> Field for Counted<T, MAX> {
    fn decode(r: &mut Reader<'_>, name: &'static str) -> Result<Self, DecodeError> {
        let count = usize::from(u8::decode(r, name)?);
        if count > MAX {
            return Err(DecodeError::InvalidField {
                field: name,
                reason: format!("count {count} exceeds the maximum of {MAX}"),
            });
        }
        (0..count)
            .map(|_| T::decode(r, name))
            .collect::<Result<_, _>>()
            .map(Counted)
    }
    fn encode(&self, w: &mut Vec<u8>, name: &'static str) -> Result<(), EncodeError> {
        if self.0.len() > MAX {
            return Err(EncodeError::InvalidField {
                field: name,
                reason: format!("{} entries exceed the maximum of {MAX}", self.0.len()),
            });
        }
        w.push(self.0.len() as u8);
        self.0.iter().try_for_each(|item| item.encode(w, name))
    }
    fn sample(g: &mut Gen) -> Self {
        Counted((0..g.below(MAX as u64 + 1)).map(|_| T::sample(g)).collect())
    }
}

/// A list that fills the rest of the body (no count on the wire).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Rest<T, const MAX: usize>(pub Vec<T>);

impl<T: Field, const MAX: usize> Field for Rest<T, MAX> {
    fn decode(r: &mut Reader<'_>, name: &'static str) -> Result<Self, DecodeError> {
        let mut items = Vec::new();
        while r.remaining() > 0 {
            if items.len() == MAX {
                return Err(DecodeError::InvalidField {
                    field: name,
                    reason: format!("more than {MAX} entries"),
                });
            }
            items.push(T::decode(r, name)?);
        }
        Ok(Rest(items))
    }
    fn encode(&self, w: &mut Vec<u8>, name: &'static str) -> Result<(), EncodeError> {
        if self.0.len() > MAX {
            return Err(EncodeError::InvalidField {
                field: name,
                reason: format!("{} entries exceed the maximum of {MAX}", self.0.len()),
            });
        }
        self.0.iter().try_for_each(|item| item.encode(w, name))
    }
    fn sample(g: &mut Gen) -> Self {
        Rest((0..g.below(MAX as u64 + 1)).map(|_| T::sample(g)).collect())
    }
}

/// A fixed run of `N` one-byte values (e.g. the 48 half-hour rate slots); JSON is an array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteArray<const N: usize>(pub [u8; N]);

impl<const N: usize> Default for ByteArray<N> {
    fn default() -> Self {
        ByteArray([0; N])
    }
}

impl<const N: usize> Field for ByteArray<N> {
    fn decode(r: &mut Reader<'_>, name: &'static str) -> Result<Self, DecodeError> {
        Ok(ByteArray(r.take_array(name)?))
    }
    fn encode(&self, w: &mut Vec<u8>, _: &'static str) -> Result<(), EncodeError> {
        w.extend_from_slice(&self.0);
        Ok(())
    }
    fn sample(g: &mut Gen) -> Self {
        let mut out = [0u8; N];
        for b in out.iter_mut() {
            *b = g.below(4) as u8;
        }
        ByteArray(out)
    }
}

impl<const N: usize> Serialize for ByteArray<N> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.as_slice().serialize(s)
    }
}

impl<'de, const N: usize> Deserialize<'de> for ByteArray<N> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Vec::<u8>::deserialize(d)?;
        let len = v.len();
        v.try_into()
            .map(ByteArray)
            .map_err(|_| D::Error::custom(format!("{len} values, expected {N}")))
    }
}

/// A record that can name the pile it came from or goes to, without serialising it.
///
/// [`ykc_record!`] implements it for every record with a field named `pile_no`; the few
/// frame bodies without one implement it by hand.
pub trait HasPileNo {
    fn pile_no(&self) -> Option<PileNo>;
}

/// Declares a struct whose fields are [`Field`]s laid out on the wire in order.
///
/// A field named `pile_no` (a [`PileNo`]) also gets the record a [`HasPileNo`] impl.
#[macro_export]
macro_rules! ykc_record {
    ($(#[$m:meta])* pub struct $name:ident { $( $(#[$fm:meta])* $field:ident : $ty:ty ),* $(,)? }) => {
        $crate::__ykc_pile_no!($name; $($field)*);

        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name { $( $(#[$fm])* pub $field: $ty, )* }

        impl $crate::ykc::field::Field for $name {
            fn decode(
                _r: &mut $crate::ykc::field::Reader<'_>,
                _name: &'static str,
            ) -> Result<Self, $crate::ykc::DecodeError> {
                Ok(Self { $( $field: $crate::ykc::field::Field::decode(_r, stringify!($field))?, )* })
            }
            fn encode(&self, _w: &mut Vec<u8>, _name: &'static str) -> Result<(), $crate::ykc::EncodeError> {
                $( $crate::ykc::field::Field::encode(&self.$field, _w, stringify!($field))?; )*
                Ok(())
            }
            fn sample(_g: &mut $crate::ykc::field::Gen) -> Self {
                Self { $( $field: $crate::ykc::field::Field::sample(_g), )* }
            }
        }
    };
}

/// Implements [`HasPileNo`] for a record if one of its fields is literally `pile_no`.
#[doc(hidden)]
#[macro_export]
macro_rules! __ykc_pile_no {
    ($name:ident; pile_no $($rest:ident)*) => {
        impl $crate::ykc::field::HasPileNo for $name {
            fn pile_no(&self) -> Option<$crate::ykc::field::PileNo> {
                Some(self.pile_no)
            }
        }
    };
    ($name:ident; $other:ident $($rest:ident)*) => {
        $crate::__ykc_pile_no!($name; $($rest)*);
    };
    ($name:ident;) => {};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bcd_round_trips_digits() {
        let pile = PileNo::parse("32010600019236").unwrap();
        assert_eq!(pile.0, [0x32, 0x01, 0x06, 0x00, 0x01, 0x92, 0x36]);
        assert_eq!(pile.to_string(), "32010600019236");
        assert_eq!(pile.to_u64(), 32010600019236);
        assert_eq!(PileNo::from_u64(32010600019236), pile);
        assert_eq!(Bcd::<2>::parse("1").unwrap().0, [0x00, 0x01]);
        assert!(Bcd::<1>::parse("123").is_err());
        assert!(Bcd::<1>::parse("1a").is_err());
    }

    #[test]
    fn bcd_rejects_non_decimal_nibbles() {
        let mut r = Reader::new(&[0x1A]);
        assert!(matches!(
            Bcd::<1>::decode(&mut r, "gun"),
            Err(DecodeError::InvalidField { field: "gun", .. })
        ));
    }

    #[test]
    fn scaled_shows_real_values() {
        let v: Scaled<u16, 1> = Scaled(2251);
        assert_eq!(serde_json::to_string(&v).unwrap(), "225.1");
        let t: Scaled<u8, 0, -50> = Scaled(10);
        assert_eq!(serde_json::to_string(&t).unwrap(), "-40");
        let back: Scaled<u8, 0, -50> = serde_json::from_str("-40").unwrap();
        assert_eq!(back, t);
        assert!(serde_json::from_str::<Scaled<u8, 0, -50>>("300").is_err());
    }

    #[test]
    fn cp56_round_trips() {
        let t = Cp56Time2a::new(2026, 11, 24, 10, 20, 30_123).unwrap();
        let mut w = Vec::new();
        t.encode(&mut w, "t").unwrap();
        assert_eq!(Cp56Time2a::decode(&mut Reader::new(&w), "t").unwrap(), t);
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, "\"2026-11-24T10:20:30.123\"");
        assert_eq!(serde_json::from_str::<Cp56Time2a>(&json).unwrap(), t);
    }

    #[test]
    fn u24_is_three_bytes_little_endian() {
        let mut w = Vec::new();
        U24(0x01_02_03).encode(&mut w, "n").unwrap();
        assert_eq!(w, [0x03, 0x02, 0x01]);
        assert_eq!(
            U24::decode(&mut Reader::new(&w), "n").unwrap(),
            U24(0x01_02_03)
        );
        assert!(U24(1 << 24).encode(&mut w, "n").is_err());
        assert!(serde_json::from_str::<U24>("16777216").is_err());
    }

    #[test]
    fn cp56_rejects_bad_month() {
        let bytes = [0, 0, 0, 0, 1, 13, 20];
        assert!(Cp56Time2a::decode(&mut Reader::new(&bytes), "t").is_err());
    }
}
