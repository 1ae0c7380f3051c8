//! Bit-packed fields of the GB/T 27930 frames (0x1B, 0x23, 0x25).
//!
//! Each struct names its sub-fields in the spec's order; on the wire the first one sits
//! in the lowest bits of a little-endian word. Reserved bits are kept in a `reserved`
//! field (at their wire positions, normally 0) so that re-encoding a decoded value gives
//! back the same bytes.

use serde::{Deserialize, Serialize};

use super::error::{DecodeError, EncodeError};
use super::field::{Field, Gen, Reader, Scaled};

/// `width` bits of `word` starting at bit `offset`.
fn bits(word: u32, offset: u32, width: u32) -> u8 {
    ((word >> offset) & ((1 << width) - 1)) as u8
}

/// Builds a word from sub-fields, checking that each value fits its width.
struct Packer {
    field: &'static str,
    word: u32,
}

impl Packer {
    fn new(field: &'static str) -> Self {
        Packer { field, word: 0 }
    }

    fn put(&mut self, part: &str, value: u8, offset: u32, width: u32) -> Result<(), EncodeError> {
        if u32::from(value) >> width != 0 {
            return Err(EncodeError::InvalidField {
                field: self.field,
                reason: format!(
                    "`{part}` is {value}, but it has only {width} bits (max {})",
                    (1u32 << width) - 1
                ),
            });
        }
        self.word |= u32::from(value) << offset;
        Ok(())
    }

    /// Adds the reserved bits, which must lie within `mask`.
    fn reserved(&mut self, value: u32, mask: u32) -> Result<(), EncodeError> {
        if value & !mask != 0 {
            return Err(EncodeError::InvalidField {
                field: self.field,
                reason: format!("`reserved` is {value:#x}, but only bits {mask:#x} are reserved"),
            });
        }
        self.word |= value;
        Ok(())
    }
}

/// A 2-bit GB/T status as sampled for tests: only the defined values 0, 1 and 2.
fn status(g: &mut Gen) -> u8 {
    g.below(3) as u8
}

/// Declares `put` calls for named sub-fields: `pack!(packer, self, name @ offset / width, ...)`.
macro_rules! pack {
    ($p:ident, $s:ident, $( $part:ident @ $offset:literal / $width:literal ),* $(,)?) => {
        $( $p.put(stringify!($part), $s.$part, $offset, $width)?; )*
    };
}

/// Rows 4-14 of 0x1B: the BMS's timeouts waiting for charger messages (GB/T BEM).
/// Each timeout: 0 normal, 1 timed out, 2 not trustworthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BmsTimeouts {
    /// 接收SPN2560=0x00的充电机辨识报文超时 (bits 1-2)
    pub charger_id_00_timeout: u8,
    /// 接收SPN2560=0xAA的充电机辨识报文超时 (bits 3-4)
    pub charger_id_aa_timeout: u8,
    /// 接收充电机的时间同步和充电机最大输出能力报文超时 (bits 9-10)
    pub charger_sync_and_max_output_timeout: u8,
    /// 接收充电机完成充电准备报文超时 (bits 11-12)
    pub charger_ready_timeout: u8,
    /// 接收充电机充电状态报文超时 (bits 17-18)
    pub charger_status_timeout: u8,
    /// 接收充电机中止充电报文超时 (bits 19-20)
    pub charger_stop_timeout: u8,
    /// 接收充电机充电统计报文超时 (bits 25-26)
    pub charger_statistics_timeout: u8,
    /// BMS其他 (bits 27-32, 0..=63)
    pub bms_other: u8,
    /// 预留位 (bits 5-8, 13-16, 21-24 at their wire positions; normally 0)
    pub reserved: u32,
}

impl BmsTimeouts {
    const RESERVED: u32 = 0x00F0_F0F0;
}

impl Field for BmsTimeouts {
    fn decode(r: &mut Reader<'_>, name: &'static str) -> Result<Self, DecodeError> {
        let w = u32::decode(r, name)?;
        Ok(BmsTimeouts {
            charger_id_00_timeout: bits(w, 0, 2),
            charger_id_aa_timeout: bits(w, 2, 2),
            charger_sync_and_max_output_timeout: bits(w, 8, 2),
            charger_ready_timeout: bits(w, 10, 2),
            charger_status_timeout: bits(w, 16, 2),
            charger_stop_timeout: bits(w, 18, 2),
            charger_statistics_timeout: bits(w, 24, 2),
            bms_other: bits(w, 26, 6),
            reserved: w & Self::RESERVED,
        })
    }
    fn encode(&self, w: &mut Vec<u8>, name: &'static str) -> Result<(), EncodeError> {
        let mut p = Packer::new(name);
        pack!(p, self,
            charger_id_00_timeout @ 0 / 2,
            charger_id_aa_timeout @ 2 / 2,
            charger_sync_and_max_output_timeout @ 8 / 2,
            charger_ready_timeout @ 10 / 2,
            charger_status_timeout @ 16 / 2,
            charger_stop_timeout @ 18 / 2,
            charger_statistics_timeout @ 24 / 2,
            bms_other @ 26 / 6,
        );
        p.reserved(self.reserved, Self::RESERVED)?;
        p.word.encode(w, name)
    }
    fn sample(g: &mut Gen) -> Self {
        BmsTimeouts {
            charger_id_00_timeout: status(g),
            charger_id_aa_timeout: status(g),
            charger_sync_and_max_output_timeout: status(g),
            charger_ready_timeout: status(g),
            charger_status_timeout: status(g),
            charger_stop_timeout: status(g),
            charger_statistics_timeout: status(g),
            bms_other: g.below(64) as u8,
            reserved: 0,
        }
    }
}

/// Rows 15-25 of 0x1B: the charger's timeouts waiting for BMS messages (GB/T CEM).
/// Each timeout: 0 normal, 1 timed out, 2 not trustworthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChargerTimeouts {
    /// 接收BMS和车辆的辨识报文超时 (bits 1-2)
    pub bms_vehicle_id_timeout: u8,
    /// 接收电池充电参数报文超时 (bits 9-10)
    pub battery_parameters_timeout: u8,
    /// 接收BMS完成充电准备报文超时 (bits 11-12)
    pub bms_ready_timeout: u8,
    /// 接收电池充电总状态报文超时 (bits 17-18)
    pub battery_status_timeout: u8,
    /// 接收电池充电要求报文超时 (bits 19-20)
    pub battery_demand_timeout: u8,
    /// 接收BMS中止充电报文超时 (bits 21-22)
    pub bms_stop_timeout: u8,
    /// 接收BMS充电统计报文超时 (bits 25-26)
    pub bms_statistics_timeout: u8,
    /// 充电机其他 (bits 27-32, 0..=63)
    pub charger_other: u8,
    /// 预留位 (bits 3-8, 13-16, 23-24 at their wire positions; normally 0)
    pub reserved: u32,
}

impl ChargerTimeouts {
    const RESERVED: u32 = 0x00C0_F0FC;
}

impl Field for ChargerTimeouts {
    fn decode(r: &mut Reader<'_>, name: &'static str) -> Result<Self, DecodeError> {
        let w = u32::decode(r, name)?;
        Ok(ChargerTimeouts {
            bms_vehicle_id_timeout: bits(w, 0, 2),
            battery_parameters_timeout: bits(w, 8, 2),
            bms_ready_timeout: bits(w, 10, 2),
            battery_status_timeout: bits(w, 16, 2),
            battery_demand_timeout: bits(w, 18, 2),
            bms_stop_timeout: bits(w, 20, 2),
            bms_statistics_timeout: bits(w, 24, 2),
            charger_other: bits(w, 26, 6),
            reserved: w & Self::RESERVED,
        })
    }
    fn encode(&self, w: &mut Vec<u8>, name: &'static str) -> Result<(), EncodeError> {
        let mut p = Packer::new(name);
        pack!(p, self,
            bms_vehicle_id_timeout @ 0 / 2,
            battery_parameters_timeout @ 8 / 2,
            bms_ready_timeout @ 10 / 2,
            battery_status_timeout @ 16 / 2,
            battery_demand_timeout @ 18 / 2,
            bms_stop_timeout @ 20 / 2,
            bms_statistics_timeout @ 24 / 2,
            charger_other @ 26 / 6,
        );
        p.reserved(self.reserved, Self::RESERVED)?;
        p.word.encode(w, name)
    }
    fn sample(g: &mut Gen) -> Self {
        ChargerTimeouts {
            bms_vehicle_id_timeout: status(g),
            battery_parameters_timeout: status(g),
            bms_ready_timeout: status(g),
            battery_status_timeout: status(g),
            battery_demand_timeout: status(g),
            bms_stop_timeout: status(g),
            bms_statistics_timeout: status(g),
            charger_other: g.below(64) as u8,
            reserved: 0,
        }
    }
}

/// Rows 9-16 of 0x25: the battery status bits of GB/T BSM (2 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatteryStatus {
    /// BMS单体动力蓄电池电压过高/过低: 0 normal, 1 too high, 2 too low
    pub cell_voltage: u8,
    /// BMS整车动力蓄电池荷电状态SOC过高/过低: 0 normal, 1 too high, 2 too low
    pub soc: u8,
    /// BMS动力蓄电池充电过电流: 0 normal, 1 over-current, 2 not trustworthy
    pub over_current: u8,
    /// BMS动力蓄电池温度过高: 0 normal, 1 too hot, 2 not trustworthy
    pub over_temperature: u8,
    /// BMS动力蓄电池绝缘状态: 0 normal, 1 fault, 2 not trustworthy
    pub insulation: u8,
    /// BMS动力蓄电池组输出连接器连接状态: 0 normal, 1 fault, 2 not trustworthy
    pub output_connector: u8,
    /// 充电禁止: 0 charging forbidden, 1 allowed
    pub charging_allowed: u8,
    /// 预留位 (bits 15-16 at their wire positions; normally 0)
    pub reserved: u16,
}

impl BatteryStatus {
    const RESERVED: u16 = 0xC000;
}

impl Field for BatteryStatus {
    fn decode(r: &mut Reader<'_>, name: &'static str) -> Result<Self, DecodeError> {
        let w = u32::from(u16::decode(r, name)?);
        Ok(BatteryStatus {
            cell_voltage: bits(w, 0, 2),
            soc: bits(w, 2, 2),
            over_current: bits(w, 4, 2),
            over_temperature: bits(w, 6, 2),
            insulation: bits(w, 8, 2),
            output_connector: bits(w, 10, 2),
            charging_allowed: bits(w, 12, 2),
            reserved: w as u16 & Self::RESERVED,
        })
    }
    fn encode(&self, w: &mut Vec<u8>, name: &'static str) -> Result<(), EncodeError> {
        let mut p = Packer::new(name);
        pack!(p, self,
            cell_voltage @ 0 / 2,
            soc @ 2 / 2,
            over_current @ 4 / 2,
            over_temperature @ 6 / 2,
            insulation @ 8 / 2,
            output_connector @ 10 / 2,
            charging_allowed @ 12 / 2,
        );
        p.reserved(u32::from(self.reserved), u32::from(Self::RESERVED))?;
        (p.word as u16).encode(w, name)
    }
    fn sample(g: &mut Gen) -> Self {
        BatteryStatus {
            cell_voltage: status(g),
            soc: status(g),
            over_current: status(g),
            over_temperature: status(g),
            insulation: status(g),
            output_connector: status(g),
            charging_allowed: g.below(2) as u8,
            reserved: 0,
        }
    }
}

/// Row 9 of 0x23 (BMS最高单体动力蓄电池电压及组号): the highest cell voltage in the low
/// 12 bits, the group it is in in the high 4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CellVoltageGroup {
    /// 最高单体动力蓄电池电压 (V, 0.01 V/bit, 0..=40.95; the spec's range is 0~24 V)
    pub voltage: Scaled<u16, 2>,
    /// 最高单体动力蓄电池电压所在组号 (0..=15)
    pub group: u8,
}

impl Field for CellVoltageGroup {
    fn decode(r: &mut Reader<'_>, name: &'static str) -> Result<Self, DecodeError> {
        let w = u16::decode(r, name)?;
        Ok(CellVoltageGroup {
            voltage: Scaled(w & 0x0FFF),
            group: (w >> 12) as u8,
        })
    }
    fn encode(&self, w: &mut Vec<u8>, name: &'static str) -> Result<(), EncodeError> {
        let raw = self.voltage.0;
        if raw > 0x0FFF {
            return Err(EncodeError::InvalidField {
                field: name,
                reason: format!(
                    "`voltage` {} V exceeds the 12-bit maximum of 40.95 V",
                    self.voltage.value()
                ),
            });
        }
        let mut p = Packer::new(name);
        p.put("group", self.group, 12, 4)?;
        (p.word as u16 | raw).encode(w, name)
    }
    fn sample(g: &mut Gen) -> Self {
        CellVoltageGroup {
            voltage: Scaled(g.below(0x1000) as u16),
            group: g.below(16) as u8,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode<T: Field>(v: &T) -> Vec<u8> {
        let mut w = Vec::new();
        v.encode(&mut w, "t").unwrap();
        w
    }

    #[test]
    fn first_field_sits_in_the_lowest_bits() {
        let s = BmsTimeouts {
            charger_id_00_timeout: 1,
            bms_other: 0x3F,
            ..Default::default()
        };
        assert_eq!(encode(&s), [0x01, 0x00, 0x00, 0xFC]);
        let c = ChargerTimeouts {
            bms_stop_timeout: 2,
            ..Default::default()
        };
        assert_eq!(encode(&c), [0x00, 0x00, 0x20, 0x00]);
        let b = BatteryStatus {
            soc: 2,
            charging_allowed: 1,
            ..Default::default()
        };
        assert_eq!(encode(&b), [0x08, 0x10]);
        let v = CellVoltageGroup {
            voltage: Scaled(345),
            group: 3,
        };
        assert_eq!(encode(&v), [0x59, 0x31]);
    }

    #[test]
    fn reserved_bits_survive_a_round_trip() {
        for bytes in [
            [0xFFu8; 4],
            [0xF0, 0xF0, 0xF0, 0x00],
            [0xA5, 0x5A, 0xC3, 0x3C],
        ] {
            let b = BmsTimeouts::decode(&mut Reader::new(&bytes), "t").unwrap();
            assert_eq!(encode(&b), bytes);
            let c = ChargerTimeouts::decode(&mut Reader::new(&bytes), "t").unwrap();
            assert_eq!(encode(&c), bytes);
            let s = BatteryStatus::decode(&mut Reader::new(&bytes[..2]), "t").unwrap();
            assert_eq!(encode(&s), bytes[..2]);
            let v = CellVoltageGroup::decode(&mut Reader::new(&bytes[..2]), "t").unwrap();
            assert_eq!(encode(&v), bytes[..2]);
        }
    }

    #[test]
    fn values_too_wide_are_refused() {
        let mut w = Vec::new();
        let s = BmsTimeouts {
            charger_ready_timeout: 4,
            ..Default::default()
        };
        let err = s.encode(&mut w, "bms_timeouts").unwrap_err().to_string();
        assert!(err.contains("charger_ready_timeout"), "{err}");
        assert!(BmsTimeouts {
            reserved: 1,
            ..Default::default()
        }
        .encode(&mut w, "t")
        .is_err());
        assert!(CellVoltageGroup {
            voltage: Scaled(0x1000),
            group: 0
        }
        .encode(&mut w, "t")
        .is_err());
        assert!(CellVoltageGroup {
            voltage: Scaled(1),
            group: 16
        }
        .encode(&mut w, "t")
        .is_err());
    }
}
