//! Every frame type of YKC V1.6 (section 4's table), one typed struct each.
//!
//! Field names are English renderings of the spec's parameter names, in the spec's order;
//! the doc comment on each field gives the spec's name and unit.

use serde_json::Value;

use super::error::{DecodeError, EncodeError};
use super::field::{
    Ascii, Bcd, ByteArray, Bytes, Counted, Cp56Time2a, Field, Gen, HasPileNo, PileNo, Reader, Rest,
    Scaled, TradeNo, U24, U40,
};
use super::packed::{BatteryStatus, BmsTimeouts, CellVoltageGroup, ChargerTimeouts};
use crate::ykc_record;

/// Who sends a frame type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Charger -> platform (odd type codes).
    Up,
    /// Platform -> charger (even type codes).
    Down,
}

/// One row of section 4's table.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct FrameType {
    pub code: u8,
    pub name: &'static str,
    pub spec_name: &'static str,
    pub direction: Direction,
}

impl FrameType {
    pub fn by_code(code: u8) -> Option<&'static FrameType> {
        FRAME_TYPES.iter().find(|t| t.code == code)
    }

    /// Looks a type up by its hex code (`0x13`) or name (`RealtimeData`, case-insensitive).
    pub fn lookup(text: &str) -> Option<&'static FrameType> {
        let t = text.trim();
        let by_code = if let Some(hex) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
            u8::from_str_radix(hex, 16).ok()
        } else {
            None
        };
        by_code.and_then(Self::by_code).or_else(|| {
            FRAME_TYPES
                .iter()
                .find(|ft| ft.name.eq_ignore_ascii_case(t))
        })
    }
}

macro_rules! frames {
    ($( $code:literal => $name:ident, $dir:ident, $spec:literal; )*) => {
        /// A decoded frame body of any type.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum Frame { $( $name($name), )* }

        /// Section 4's table: every frame type, its code, name and direction.
        pub const FRAME_TYPES: &[FrameType] = &[
            $( FrameType { code: $code, name: stringify!($name), spec_name: $spec, direction: Direction::$dir }, )*
        ];

        /// A frame serialises as its body's fields, in wire order (no envelope); unlike
        /// [`Frame::fields_json`], whose `Value` sorts the keys, this keeps the spec's order.
        impl serde::Serialize for Frame {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                match self { $( Frame::$name(b) => b.serialize(s), )* }
            }
        }

        $( impl From<$name> for Frame {
            fn from(body: $name) -> Self { Frame::$name(body) }
        } )*

        impl Frame {
            pub fn frame_type(&self) -> u8 {
                match self { $( Frame::$name(_) => $code, )* }
            }

            pub fn name(&self) -> &'static str {
                match self { $( Frame::$name(_) => stringify!($name), )* }
            }

            /// Decodes a plain body; the whole body must be used.
            pub fn decode_body(frame_type: u8, body: &[u8]) -> Result<Self, DecodeError> {
                Self::decode_body_padded(frame_type, body, false)
            }

            /// Decodes a plain body that may end in up to 7 zero bytes of padding when
            /// `zero_padded` (a body decrypted with zero padding).
            pub fn decode_body_padded(
                frame_type: u8,
                body: &[u8],
                zero_padded: bool,
            ) -> Result<Self, DecodeError> {
                let mut r = Reader::new(body);
                let frame = match frame_type {
                    $( $code => Frame::$name(Field::decode(&mut r, stringify!($name))?), )*
                    other => return Err(DecodeError::UnknownType { frame_type: other }),
                };
                let tail = &body[body.len() - r.remaining()..];
                let padding = zero_padded && tail.len() < 8 && tail.iter().all(|&b| b == 0);
                if !tail.is_empty() && !padding {
                    let mut expected = Vec::new();
                    frame.encode_body(&mut expected).map_err(|e| DecodeError::InvalidField {
                        field: "body",
                        reason: e.to_string(),
                    })?;
                    return Err(DecodeError::BodyLength {
                        frame_type,
                        expected: format!("{} bytes", expected.len()),
                        actual: body.len(),
                    });
                }
                Ok(frame)
            }

            pub fn encode_body(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
                match self { $( Frame::$name(b) => b.encode(out, stringify!($name)), )* }
            }

            /// The body's fields as JSON, with the field names of this module.
            pub fn fields_json(&self) -> Value {
                let value = serde_json::to_value(self);
                // Serialising these plain structs cannot fail; keep the error visible anyway.
                value.unwrap_or_else(|e| Value::String(format!("unserialisable: {e}")))
            }

            /// Builds a frame of `frame_type` from its fields as JSON.
            pub fn from_fields_json(frame_type: u8, fields: Value) -> Result<Self, String> {
                match frame_type {
                    $( $code => serde_json::from_value::<$name>(fields)
                        .map(Frame::$name)
                        .map_err(|e| e.to_string()), )*
                    other => Err(format!("unknown frame type {other:#04x}")),
                }
            }

            /// The pile the frame came from or goes to (every type names one).
            pub fn pile_no(&self) -> Option<PileNo> {
                match self { $( Frame::$name(b) => HasPileNo::pile_no(b), )* }
            }

            /// A random but valid frame of `frame_type` (for round-trip tests and fuzz seeds).
            pub fn sample(frame_type: u8, g: &mut Gen) -> Option<Self> {
                match frame_type {
                    $( $code => Some(Frame::$name(Field::sample(g))), )*
                    _ => None,
                }
            }
        }
    };
}

impl Frame {
    /// Login and heartbeat frames belong to the link and are handled by the edge itself;
    /// everything else is business traffic.
    pub fn is_link_level(&self) -> bool {
        matches!(self.frame_type(), 0x01..=0x04)
    }
}

frames! {
    0x01 => Login, Up, "充电桩登录认证";
    0x02 => LoginReply, Down, "登录认证应答";
    0x03 => Heartbeat, Up, "充电桩心跳包";
    0x04 => HeartbeatReply, Down, "心跳包应答";
    0x05 => BillingModelVerify, Up, "计费模型验证请求";
    0x06 => BillingModelVerifyReply, Down, "计费模型验证请求应答";
    0x09 => BillingModelRequest, Up, "充电桩计费模型请求";
    0x0A => BillingModelReply, Down, "计费模型请求应答";
    0x12 => ReadRealtimeData, Down, "读取实时监测数据";
    0x13 => RealtimeData, Up, "上传实时监测数据";
    0x15 => ChargeHandshake, Up, "充电握手";
    0x17 => ParameterConfig, Up, "参数配置";
    0x19 => ChargeEnd, Up, "充电结束";
    0x1B => ErrorReport, Up, "错误报文";
    0x1D => BmsAbort, Up, "充电阶段BMS中止";
    0x21 => ChargerAbort, Up, "充电阶段充电机中止";
    0x23 => BmsDemandChargerOutput, Up, "充电过程BMS需求、充电机输出";
    0x25 => BmsInfo, Up, "充电过程BMS信息";
    0x31 => CardStartRequest, Up, "充电桩主动申请启动充电";
    0x32 => CardStartReply, Down, "运营平台确认启动充电";
    0x33 => RemoteStartReply, Up, "远程启机命令回复";
    0x34 => RemoteStart, Down, "运营平台远程控制启机";
    0x35 => RemoteStopReply, Up, "远程停机命令回复";
    0x36 => RemoteStop, Down, "运营平台远程停机";
    0x3B => TransactionRecord, Up, "交易记录";
    0x40 => TransactionConfirm, Down, "交易记录确认";
    0x41 => BalanceUpdateReply, Up, "余额更新应答";
    0x42 => BalanceUpdate, Down, "远程账户余额更新";
    0x43 => OfflineCardSyncReply, Up, "离线卡数据同步应答";
    0x44 => OfflineCardSync, Down, "离线卡数据同步";
    0x45 => OfflineCardClearReply, Up, "离线卡数据清除应答";
    0x46 => OfflineCardClear, Down, "离线卡数据清除";
    0x47 => OfflineCardQueryReply, Up, "离线卡数据查询应答";
    0x48 => OfflineCardQuery, Down, "离线卡数据查询";
    0x51 => WorkingParamsReply, Up, "充电桩工作参数设置应答";
    0x52 => WorkingParams, Down, "充电桩工作参数设置";
    0x55 => TimeSyncReply, Up, "对时设置应答";
    0x56 => TimeSync, Down, "对时设置";
    0x57 => BillingModelSetReply, Up, "计费模型应答";
    0x58 => BillingModelSet, Down, "计费模型设置";
    0x61 => ParkingLockStatus, Up, "地锁数据上送(充电桩上送)";
    0x62 => ParkingLockCommand, Down, "遥控地锁升锁与降锁命令(下行)";
    0x63 => ParkingLockReply, Up, "充电桩返回数据(上行)";
    0x91 => RemoteRebootReply, Up, "远程重启应答";
    0x92 => RemoteReboot, Down, "远程重启";
    0x93 => RemoteUpdateReply, Up, "远程更新应答";
    0x94 => RemoteUpdate, Down, "远程更新";
    0xA1 => ParallelStartRequest, Up, "充电桩主动申请并充充电";
    0xA2 => ParallelStartReply, Down, "运营平台确认并充启动充电";
    // The spec's table has 0xA3 and 0xA4 the wrong way round; odd codes go up (errata).
    0xA3 => ParallelRemoteStartReply, Up, "远程并充启机命令回复";
    0xA4 => ParallelRemoteStart, Down, "运营平台远程控制并充启机";
}

// ---- 6 注册心跳 (login, heartbeat, billing model) ----

ykc_record! {
    /// 0x01 充电桩登录认证.
    pub struct Login {
        /// 桩编码
        pile_no: PileNo,
        /// 桩类型: 0 DC, 1 AC
        pile_type: u8,
        /// 充电枪数量
        gun_count: u8,
        /// 通信协议版本 (version ×10: 0x0A is v1.0)
        protocol_version: Scaled<u8, 1>,
        /// 程序版本
        program_version: Ascii<8>,
        /// 网络链接类型: 0 SIM, 1 LAN, 2 WAN, 3 other
        network_type: u8,
        /// Sim卡
        sim: Bcd<10>,
        /// 运营商: 0 China Mobile, 2 China Telecom, 3 China Unicom, 4 other
        carrier: u8,
    }
}

ykc_record! {
    /// 0x02 登录认证应答.
    pub struct LoginReply {
        /// 桩编码
        pile_no: PileNo,
        /// 登陆结果: 0 success, 1 failure
        result: u8,
    }
}

ykc_record! {
    /// 0x03 充电桩心跳包.
    pub struct Heartbeat {
        /// 桩编码
        pile_no: PileNo,
        /// 枪号
        gun_no: Bcd<1>,
        /// 枪状态: 0 normal, 1 fault
        gun_status: u8,
    }
}

ykc_record! {
    /// 0x04 心跳包应答.
    pub struct HeartbeatReply {
        /// 桩编码
        pile_no: PileNo,
        /// 枪号
        gun_no: Bcd<1>,
        /// 心跳应答 (always 0)
        reply: u8,
    }
}

ykc_record! {
    /// 0x05 计费模型验证请求.
    pub struct BillingModelVerify {
        /// 桩编号
        pile_no: PileNo,
        /// 计费模型编号 (0 on first connection)
        billing_model_no: Bcd<2>,
    }
}

ykc_record! {
    /// 0x06 计费模型验证请求应答.
    pub struct BillingModelVerifyReply {
        /// 桩编号
        pile_no: PileNo,
        /// 计费模型编号
        billing_model_no: Bcd<2>,
        /// 验证结果: 0 consistent, 1 inconsistent
        result: u8,
    }
}

ykc_record! {
    /// 0x09 充电桩计费模型请求.
    pub struct BillingModelRequest {
        /// 桩编号
        pile_no: PileNo,
    }
}

/// Declares a billing model record: 0x0A (reply to a request) and 0x58 (set by the
/// platform) share this layout.
macro_rules! billing_model {
    ($(#[$m:meta])* $name:ident) => {
        ykc_record! {
            $(#[$m])*
            pub struct $name {
                /// 桩编号
                pile_no: PileNo,
                /// 计费模型编号
                billing_model_no: Bcd<2>,
                /// 尖电费费率
                sharp_energy_rate: Scaled<u32, 5>,
                /// 尖服务费费率
                sharp_service_rate: Scaled<u32, 5>,
                /// 峰电费费率
                peak_energy_rate: Scaled<u32, 5>,
                /// 峰服务费费率
                peak_service_rate: Scaled<u32, 5>,
                /// 平电费费率
                flat_energy_rate: Scaled<u32, 5>,
                /// 平服务费费率
                flat_service_rate: Scaled<u32, 5>,
                /// 谷电费费率
                valley_energy_rate: Scaled<u32, 5>,
                /// 谷服务费费率
                valley_service_rate: Scaled<u32, 5>,
                /// 计损比例
                loss_ratio: u8,
                /// 时段费率号 ×48 (0:00-0:30 first): 0 sharp, 1 peak, 2 flat, 3 valley
                period_rates: ByteArray<48>,
            }
        }
    };
}

billing_model! {
    /// 0x0A 计费模型请求应答: four rates (sharp, peak, flat, valley), each an energy and a
    /// service fee per kWh (yuan, five decimals), and the rate of each of the 48 half hours.
    BillingModelReply
}

// ---- 7 实时数据 (real-time data) ----

ykc_record! {
    /// 0x12 读取实时监测数据.
    pub struct ReadRealtimeData {
        /// 桩编号
        pile_no: PileNo,
        /// 枪号
        gun_no: Bcd<1>,
    }
}

ykc_record! {
    /// 0x13 上传实时监测数据.
    pub struct RealtimeData {
        /// 交易流水号
        trade_no: TradeNo,
        /// 桩编号
        pile_no: PileNo,
        /// 枪号
        gun_no: Bcd<1>,
        /// 状态: 0 offline, 1 fault, 2 idle, 3 charging
        status: u8,
        /// 枪是否归位: 0 no, 1 yes, 2 unknown
        gun_homed: u8,
        /// 是否插枪: 0 no, 1 yes
        gun_plugged: u8,
        /// 输出电压 (V)
        output_voltage: Scaled<u16, 1>,
        /// 输出电流 (A)
        output_current: Scaled<u16, 1>,
        /// 枪线温度 (°C)
        gun_temperature: Scaled<u8, 0, -50>,
        /// 枪线编码
        gun_cable_code: Bytes<8>,
        /// SOC (%)
        soc: u8,
        /// 电池组最高温度 (°C)
        battery_max_temperature: Scaled<u8, 0, -50>,
        /// 累计充电时间 (min)
        charging_minutes: u16,
        /// 剩余时间 (min)
        remaining_minutes: u16,
        /// 充电度数 (kWh)
        energy: Scaled<u32, 4>,
        /// 计损充电度数 (kWh)
        loss_energy: Scaled<u32, 4>,
        /// 已充金额 (yuan)
        amount: Scaled<u32, 4>,
        /// 硬件故障 (bit flags, bit 1 emergency stop .. bit 13 door open)
        hardware_faults: u16,
    }
}

// ---- 7.3-7.10 GB/T 27930 BMS messages relayed by the charger ----
//
// Currents carry a −400 A offset and temperatures a −50 °C offset, as in GB/T 27930.

ykc_record! {
    /// 0x15 充电握手 (GB/T BHM/BRM).
    pub struct ChargeHandshake {
        /// 交易流水号
        trade_no: TradeNo,
        /// 桩编号
        pile_no: PileNo,
        /// 枪号
        gun_no: Bcd<1>,
        /// BMS通信协议版本号 (V1.1 is byte3, byte2 = 0x0001, byte1 = 0x01)
        bms_protocol_version: Bytes<3>,
        /// BMS电池类型: 1 lead-acid, 2 nickel-metal hydride, 3 LiFePO4, 4 LiMn2O4,
        /// 5 LiCoO2, 6 ternary, 7 Li-polymer, 8 Li-titanate, 0xFF other
        battery_type: u8,
        /// BMS整车动力蓄电池系统额定容量 (Ah, 0.1 Ah/bit)
        rated_capacity: Scaled<u16, 1>,
        /// BMS整车动力蓄电池系统额定总电压 (V, 0.1 V/bit)
        rated_voltage: Scaled<u16, 1>,
        /// BMS电池生产厂商名称 (standard ASCII, sent as BIN)
        battery_manufacturer: Ascii<4>,
        /// BMS电池组序号 (reserved, defined by the manufacturer)
        battery_pack_serial: Bytes<4>,
        /// BMS电池组生产日期年 (1985 offset: 1985..=2240)
        production_year: Scaled<u8, 0, 1985>,
        /// BMS电池组生产日期月 (1..=12)
        production_month: u8,
        /// BMS电池组生产日期日 (1..=31)
        production_day: u8,
        /// BMS电池组充电次数 (count as kept by the BMS)
        charge_count: U24,
        /// BMS电池组产权标识: 0 leased, 1 owned by the vehicle
        battery_ownership: u8,
        /// 预留位
        reserved: u8,
        /// BMS车辆识别码 (the VIN, BIN per the spec; shown as hex)
        vin: Bytes<17>,
        /// BMS软件版本号 (byte1 build serial, byte2 day, byte3 month, byte4-5 year,
        /// byte6-8 reserved 0xFFFFFF)
        bms_software_version: Bytes<8>,
    }
}

ykc_record! {
    /// 0x17 参数配置 (GB/T BCP/CML).
    pub struct ParameterConfig {
        /// 交易流水号
        trade_no: TradeNo,
        /// 桩编号
        pile_no: PileNo,
        /// 枪号
        gun_no: Bcd<1>,
        /// BMS单体动力蓄电池最高允许充电电压 (V, 0.01 V/bit, 0~24 V)
        max_cell_charge_voltage: Scaled<u16, 2>,
        /// BMS最高允许充电电流 (A, 0.1 A/bit, −400 A offset)
        max_charge_current: Scaled<u16, 1, -400>,
        /// BMS动力蓄电池标称总能量 (kWh, 0.1 kWh/bit, 0~1000 kWh)
        nominal_energy: Scaled<u16, 1>,
        /// BMS最高允许充电总电压 (V, 0.1 V/bit)
        max_charge_voltage: Scaled<u16, 1>,
        /// BMS最高允许温度 (°C, −50 °C offset)
        max_temperature: Scaled<u8, 0, -50>,
        /// BMS整车动力蓄电池荷电状态(soc) (%, 0.1 %/bit)
        soc: Scaled<u16, 1>,
        /// BMS整车动力蓄电池当前电池电压 (V; the spec gives no unit, 0.1 V/bit as in GB/T BCP)
        battery_voltage: Scaled<u16, 1>,
        /// 电桩最高输出电压 (V, 0.1 V/bit)
        max_output_voltage: Scaled<u16, 1>,
        /// 电桩最低输出电压 (V, 0.1 V/bit)
        min_output_voltage: Scaled<u16, 1>,
        /// 电桩最大输出电流 (A, 0.1 A/bit, −400 A offset)
        max_output_current: Scaled<u16, 1, -400>,
        /// 电桩最小输出电流 (A, 0.1 A/bit, −400 A offset)
        min_output_current: Scaled<u16, 1, -400>,
    }
}

ykc_record! {
    /// 0x19 充电结束 (GB/T BSD/CSD).
    pub struct ChargeEnd {
        /// 交易流水号
        trade_no: TradeNo,
        /// 桩编号
        pile_no: PileNo,
        /// 枪号
        gun_no: Bcd<1>,
        /// BMS中止荷电状态SOC (%, 0~100)
        bms_final_soc: u8,
        /// BMS动力蓄电池单体最低电压 (V, 0.01 V/bit, 0~24 V)
        min_cell_voltage: Scaled<u16, 2>,
        /// BMS动力蓄电池单体最高电压 (V, 0.01 V/bit, 0~24 V)
        max_cell_voltage: Scaled<u16, 2>,
        /// BMS动力蓄电池最低温度 (°C, −50 °C offset)
        min_temperature: Scaled<u8, 0, -50>,
        /// BMS动力蓄电池最高温度 (°C, −50 °C offset)
        max_temperature: Scaled<u8, 0, -50>,
        /// 电桩累计充电时间 (min, 0~600)
        charging_minutes: u16,
        /// 电桩输出能量 (kWh, 0.1 kWh/bit, 0~1000)
        output_energy: Scaled<u16, 1>,
        /// 电桩充电机编号 (raw; the spec says "1/bit, offset 1, range 0~0xFFFFFFF")
        charger_no: u32,
    }
}

ykc_record! {
    /// 0x1B 错误报文 (GB/T BEM and CEM): 2-bit timeout statuses, see [`BmsTimeouts`] and
    /// [`ChargerTimeouts`].
    pub struct ErrorReport {
        /// 交易流水号
        trade_no: TradeNo,
        /// 桩编号
        pile_no: PileNo,
        /// 枪号
        gun_no: Bcd<1>,
        /// Rows 4-14: the BMS's timeouts waiting for the charger (4 bytes)
        bms_timeouts: BmsTimeouts,
        /// Rows 15-25: the charger's timeouts waiting for the BMS (4 bytes)
        charger_timeouts: ChargerTimeouts,
    }
}

ykc_record! {
    /// 0x1D 充电阶段BMS中止 (GB/T BST). The reasons are bit fields of 2-bit statuses,
    /// lowest bits first; kept raw.
    pub struct BmsAbort {
        /// 交易流水号
        trade_no: TradeNo,
        /// 桩编号
        pile_no: PileNo,
        /// 枪号
        gun_no: Bcd<1>,
        /// BMS中止充电原因: bits 1-2 SOC target reached, 3-4 total voltage set point reached,
        /// 5-6 cell voltage set point reached, 7-8 stopped by the charger
        bms_stop_reason: u8,
        /// BMS中止充电故障原因: bits 1-2 insulation, 3-4 output connector over-temperature,
        /// 5-6 BMS component / output connector over-temperature, 7-8 charging connector,
        /// 9-10 battery pack over-temperature, 11-12 high-voltage relay, 13-14 detection
        /// point 2 voltage, 15-16 other
        bms_fault_reason: u16,
        /// BMS中止充电错误原因: bits 1-2 over-current, 3-4 abnormal voltage, 5-8 reserved
        bms_error_reason: u8,
    }
}

ykc_record! {
    /// 0x21 充电阶段充电机中止 (GB/T CST). The reasons are bit fields of 2-bit statuses,
    /// lowest bits first; kept raw.
    pub struct ChargerAbort {
        /// 交易流水号
        trade_no: TradeNo,
        /// 桩编号
        pile_no: PileNo,
        /// 枪号
        gun_no: Bcd<1>,
        /// 充电机中止充电原因: bits 1-2 charger's set condition reached, 3-4 stopped by hand,
        /// 5-6 abnormal stop, 7-8 stopped by the BMS
        charger_stop_reason: u8,
        /// 充电机中止充电故障原因: bits 1-2 charger over-temperature, 3-4 charging connector,
        /// 5-6 charger internal over-temperature, 7-8 energy cannot be delivered,
        /// 9-10 emergency stop, 11-12 other, 13-16 reserved
        charger_fault_reason: u16,
        /// 充电机中止充电错误原因: bits 1-2 current mismatch, 3-4 abnormal voltage, 5-8 reserved
        charger_error_reason: u8,
    }
}

ykc_record! {
    /// 0x23 充电过程BMS需求、充电机输出 (GB/T BCL/BCS/CCS), every 15 s.
    pub struct BmsDemandChargerOutput {
        /// 交易流水号
        trade_no: TradeNo,
        /// 桩编号
        pile_no: PileNo,
        /// 枪号
        gun_no: Bcd<1>,
        /// BMS电压需求 (V, 0.1 V/bit)
        bms_voltage_demand: Scaled<u16, 1>,
        /// BMS电流需求 (A, 0.1 A/bit, −400 A offset)
        bms_current_demand: Scaled<u16, 1, -400>,
        /// BMS充电模式: 1 constant voltage, 2 constant current
        bms_charge_mode: u8,
        /// BMS充电电压测量值 (V, 0.1 V/bit)
        bms_measured_voltage: Scaled<u16, 1>,
        /// BMS充电电流测量值 (A, 0.1 A/bit, −400 A offset)
        bms_measured_current: Scaled<u16, 1, -400>,
        /// BMS最高单体动力蓄电池电压及组号 (12 bits voltage at 0.01 V/bit, 4 bits group)
        bms_max_cell_voltage: CellVoltageGroup,
        /// BMS当前荷电状态SOC (%, 0~100)
        bms_soc: u8,
        /// BMS估算剩余充电时间 (min, 0~600)
        bms_remaining_minutes: u16,
        /// 电桩电压输出值 (V, 0.1 V/bit)
        output_voltage: Scaled<u16, 1>,
        /// 电桩电流输出值 (A, 0.1 A/bit, −400 A offset)
        output_current: Scaled<u16, 1, -400>,
        /// 累计充电时间 (min, 0~600)
        charging_minutes: u16,
    }
}

ykc_record! {
    /// 0x25 充电过程BMS信息 (GB/T BSM), every 15 s.
    pub struct BmsInfo {
        /// 交易流水号
        trade_no: TradeNo,
        /// 桩编号
        pile_no: PileNo,
        /// 枪号
        gun_no: Bcd<1>,
        /// BMS最高单体动力蓄电池电压所在编号 (offset 1: 1..=256)
        max_cell_voltage_no: Scaled<u8, 0, 1>,
        /// BMS最高动力蓄电池温度 (°C, −50 °C offset)
        max_temperature: Scaled<u8, 0, -50>,
        /// 最高温度检测点编号 (offset 1: 1..=128)
        max_temperature_point: Scaled<u8, 0, 1>,
        /// 最低动力蓄电池温度 (°C, −50 °C offset)
        min_temperature: Scaled<u8, 0, -50>,
        /// 最低动力蓄电池温度检测点编号 (offset 1: 1..=128)
        min_temperature_point: Scaled<u8, 0, 1>,
        /// Rows 9-16: 2-bit battery statuses (2 bytes)
        status: BatteryStatus,
    }
}

// ---- 8 运营交互 (remote start/stop, transaction records) ----

ykc_record! {
    /// 0x31 充电桩主动申请启动充电 (card, account or VIN start at the pile).
    pub struct CardStartRequest {
        /// 桩编号
        pile_no: PileNo,
        /// 枪号
        gun_no: Bcd<1>,
        /// 启动方式: 1 card, 2 account (not supported yet), 3 VIN
        start_mode: u8,
        /// 是否需要密码: 0 no, 1 yes
        password_required: u8,
        /// 账号或者物理卡号 (zero-padded)
        account_or_card_no: Bytes<8>,
        /// 输入密码 (MD5 digest of the password the user typed)
        password_md5: Bytes<16>,
        /// VIN码 (for a VIN start, in reverse order; zeros otherwise)
        vin: Ascii<17>,
    }
}

ykc_record! {
    /// 0x32 运营平台确认启动充电: the platform's answer to 0x31.
    pub struct CardStartReply {
        /// 交易流水号
        trade_no: TradeNo,
        /// 桩编号
        pile_no: PileNo,
        /// 枪号
        gun_no: Bcd<1>,
        /// 逻辑卡号 (shown on the pile's screen)
        logical_card_no: Bcd<8>,
        /// 账户余额 (yuan, 2 decimals)
        balance: Scaled<u32, 2>,
        /// 鉴权成功标志: 0 failure, 1 success
        auth_result: u8,
        /// 失败原因 (BCD per the spec, but 0x0A/0x0B are not BCD, so raw): 1 no such account,
        /// 2 account frozen, 3 balance too low, 4 card has an unsettled record, 5 pile out of
        /// service, 6 account may not charge here, 7 wrong password, 8 station capacity too
        /// low, 9 VIN unknown, 0x0A pile has an unsettled record, 0x0B pile takes no cards
        failure_reason: u8,
    }
}

ykc_record! {
    /// 0x33 远程启机命令回复.
    pub struct RemoteStartReply {
        /// 交易流水号
        trade_no: TradeNo,
        /// 桩编号
        pile_no: PileNo,
        /// 枪号
        gun_no: Bcd<1>,
        /// 启动结果: 0 failure, 1 success
        result: u8,
        /// 失败原因: 0 none, 1 pile mismatch, 2 gun busy, 3 fault, 4 offline, 5 not plugged
        failure_reason: u8,
    }
}

ykc_record! {
    /// 0x34 运营平台远程控制启机.
    pub struct RemoteStart {
        /// 交易流水号
        trade_no: TradeNo,
        /// 桩编号
        pile_no: PileNo,
        /// 枪号
        gun_no: Bcd<1>,
        /// 逻辑卡号
        logical_card_no: Bcd<8>,
        /// 物理卡号
        physical_card_no: Bytes<8>,
        /// 账户余额 (yuan)
        balance: Scaled<u32, 2>,
    }
}

ykc_record! {
    /// 0x35 远程停机命令回复.
    pub struct RemoteStopReply {
        /// 桩编号
        pile_no: PileNo,
        /// 枪号
        gun_no: Bcd<1>,
        /// 停止结果: 0 failure, 1 success
        result: u8,
        /// 失败原因: 0 none, 1 pile mismatch, 2 gun not charging, 3 other
        failure_reason: u8,
    }
}

ykc_record! {
    /// 0x36 运营平台远程停机.
    pub struct RemoteStop {
        /// 桩编号
        pile_no: PileNo,
        /// 枪号
        gun_no: Bcd<1>,
    }
}

ykc_record! {
    /// 0x3B 交易记录. Energies in kWh (4 decimals), unit prices in yuan/kWh (5 decimals),
    /// amounts in yuan (4 decimals).
    pub struct TransactionRecord {
        /// 交易流水号
        trade_no: TradeNo,
        /// 桩编号
        pile_no: PileNo,
        /// 枪号
        gun_no: Bcd<1>,
        /// 开始时间
        start_time: Cp56Time2a,
        /// 结束时间
        end_time: Cp56Time2a,
        /// 尖单价
        sharp_unit_price: Scaled<u32, 5>,
        /// 尖电量
        sharp_energy: Scaled<u32, 4>,
        /// 计损尖电量
        sharp_loss_energy: Scaled<u32, 4>,
        /// 尖金额
        sharp_amount: Scaled<u32, 4>,
        /// 峰单价
        peak_unit_price: Scaled<u32, 5>,
        /// 峰电量
        peak_energy: Scaled<u32, 4>,
        /// 计损峰电量
        peak_loss_energy: Scaled<u32, 4>,
        /// 峰金额
        peak_amount: Scaled<u32, 4>,
        /// 平单价
        flat_unit_price: Scaled<u32, 5>,
        /// 平电量
        flat_energy: Scaled<u32, 4>,
        /// 计损平电量
        flat_loss_energy: Scaled<u32, 4>,
        /// 平金额
        flat_amount: Scaled<u32, 4>,
        /// 谷单价
        valley_unit_price: Scaled<u32, 5>,
        /// 谷电量
        valley_energy: Scaled<u32, 4>,
        /// 计损谷电量
        valley_loss_energy: Scaled<u32, 4>,
        /// 谷金额
        valley_amount: Scaled<u32, 4>,
        /// 电表总起值
        meter_start: Scaled<U40, 4>,
        /// 电表总止值
        meter_end: Scaled<U40, 4>,
        /// 总电量
        total_energy: Scaled<u32, 4>,
        /// 计损总电量
        total_loss_energy: Scaled<u32, 4>,
        /// 消费金额 (energy and service fees)
        total_amount: Scaled<u32, 4>,
        /// 电动汽车唯一标识 (VIN, in order)
        vin: Ascii<17>,
        /// 交易标识: 1 app, 2 card, 4 offline card, 5 VIN
        trade_kind: u8,
        /// 交易日期、时间
        trade_time: Cp56Time2a,
        /// 停止原因 (appendix 13.1)
        stop_reason: u8,
        /// 物理卡号
        physical_card_no: Bytes<8>,
    }
}

ykc_record! {
    /// 0x40 交易记录确认.
    pub struct TransactionConfirm {
        /// 交易流水号
        trade_no: TradeNo,
        /// 确认结果: 0 stored, 1 invalid record
        result: u8,
    }
}

/// 0x40 has no pile number field; its trade number starts with one (名词解释 3.3:
/// 交易流水号 = pile (7 bytes) + gun (1) + time (6) + sequence (2)).
impl HasPileNo for TransactionConfirm {
    fn pile_no(&self) -> Option<PileNo> {
        let mut pile = [0u8; 7];
        pile.copy_from_slice(&self.trade_no.0[..7]);
        Some(Bcd(pile))
    }
}

ykc_record! {
    /// 0x41 余额更新应答.
    pub struct BalanceUpdateReply {
        /// 桩编号
        pile_no: PileNo,
        /// 物理卡号 (zero-padded; optional)
        physical_card_no: Bytes<8>,
        /// 修改结果: 0 updated, 1 wrong pile number, 2 wrong card number
        result: u8,
    }
}

ykc_record! {
    /// 0x42 远程账户余额更新 (after the user tops up).
    pub struct BalanceUpdate {
        /// 桩编号
        pile_no: PileNo,
        /// 枪号
        gun_no: Bcd<1>,
        /// 物理卡号 (zero-padded; if not zero, the pile checks the session is this card's)
        physical_card_no: Bytes<8>,
        /// 修改后账户金额 (yuan, 2 decimals)
        balance: Scaled<u32, 2>,
    }
}

ykc_record! {
    /// 0x43 离线卡数据同步应答.
    pub struct OfflineCardSyncReply {
        /// 桩编号
        pile_no: PileNo,
        /// 保存结果: 0 failure, 1 success
        result: u8,
        /// 失败原因: 1 bad card number format, 2 storage full
        failure_reason: u8,
    }
}

ykc_record! {
    /// One card of 0x44.
    pub struct OfflineCard {
        /// 逻辑卡号
        logical_card_no: Bcd<8>,
        /// 物理卡号
        physical_card_no: Bytes<8>,
    }
}

ykc_record! {
    /// 0x44 离线卡数据同步: cards the pile may accept while offline.
    pub struct OfflineCardSync {
        /// 桩编号
        pile_no: PileNo,
        /// 下发卡个数 (1 byte) and the cards. The spec allows 15, but only 12 fit in the
        /// 200-byte body limit (7 + 1 + 12 × 16 = 200).
        cards: Counted<OfflineCard, 12>,
    }
}

ykc_record! {
    /// One card's result in 0x45.
    pub struct OfflineCardClearResult {
        /// 物理卡号
        physical_card_no: Bytes<8>,
        /// 清除标记: 0 failure, 1 cleared
        cleared: u8,
        /// 失败原因 (BCD per the spec, kept raw): 0 none, 1 bad card number format
        failure_reason: u8,
    }
}

ykc_record! {
    /// 0x45 离线卡数据清除应答: one result per card, no count (the rest of the body).
    pub struct OfflineCardClearReply {
        /// 桩编号
        pile_no: PileNo,
        /// Per-card results (at most 19 fit in 200 bytes)
        results: Rest<OfflineCardClearResult, 19>,
    }
}

ykc_record! {
    /// 0x46 离线卡数据清除.
    pub struct OfflineCardClear {
        /// 桩编号
        pile_no: PileNo,
        /// 清除离线卡的个数 (1 byte, at most 24) and the physical card numbers
        physical_card_nos: Counted<Bytes<8>, 24>,
    }
}

ykc_record! {
    /// One card's result in 0x47.
    pub struct OfflineCardQueryResult {
        /// 物理卡号
        physical_card_no: Bytes<8>,
        /// 查询结果: 0 not stored, 1 stored
        present: u8,
    }
}

ykc_record! {
    /// 0x47 离线卡数据查询应答: one result per card, no count (the rest of the body).
    pub struct OfflineCardQueryReply {
        /// 桩编号
        pile_no: PileNo,
        /// Per-card results (at most 21 fit in 200 bytes)
        results: Rest<OfflineCardQueryResult, 21>,
    }
}

ykc_record! {
    /// 0x48 离线卡数据查询.
    pub struct OfflineCardQuery {
        /// 桩编号
        pile_no: PileNo,
        /// 查询的离线卡个数 (1 byte) and the physical card numbers. The spec allows 26, but
        /// only 24 fit in the 200-byte body limit (7 + 1 + 24 × 8 = 200).
        physical_card_nos: Counted<Bytes<8>, 24>,
    }
}

// ---- 9 运营平台设置 (platform settings) ----

ykc_record! {
    /// 0x51 充电桩工作参数设置应答.
    pub struct WorkingParamsReply {
        /// 桩编号
        pile_no: PileNo,
        /// 设置结果: 0 failure, 1 success
        result: u8,
    }
}

ykc_record! {
    /// 0x52 充电桩工作参数设置: take the pile out of service, or cap its power.
    pub struct WorkingParams {
        /// 桩编号
        pile_no: PileNo,
        /// 是否允许工作: 0 work normally, 1 out of service (pile locked)
        work_permit: u8,
        /// 充电桩最大允许输出功率 (%, 30..=100)
        max_output_power_percent: u8,
    }
}

ykc_record! {
    /// 0x55 对时设置应答.
    pub struct TimeSyncReply {
        /// 桩编号
        pile_no: PileNo,
        /// 当前时间
        current_time: Cp56Time2a,
    }
}

ykc_record! {
    /// 0x56 对时设置 (daily).
    pub struct TimeSync {
        /// 桩编号
        pile_no: PileNo,
        /// 当前时间
        current_time: Cp56Time2a,
    }
}

ykc_record! {
    /// 0x57 计费模型应答.
    pub struct BillingModelSetReply {
        /// 桩编号
        pile_no: PileNo,
        /// 设置结果: 0 failure, 1 success
        result: u8,
    }
}

billing_model! {
    /// 0x58 计费模型设置: the platform pushes a billing model; same layout as 0x0A.
    BillingModelSet
}

// ---- 10 车位锁 (parking locks) ----

ykc_record! {
    /// 0x61 地锁数据上送: on every change, and every 5 min.
    pub struct ParkingLockStatus {
        /// 桩编号
        pile_no: PileNo,
        /// 枪号 (BIN here, unlike other frames)
        gun_no: u8,
        /// 车位锁状态: 0x00 not in position, 0x55 raised, 0xFF lowered
        lock_state: u8,
        /// 车位状态: 0x00 no vehicle, 0xFF vehicle parked
        parking_state: u8,
        /// 地锁电量状态 (%, 0~100)
        battery_percent: u8,
        /// 报警状态: 0x00 normal, 0xFF arm damaged while idle, 0x55 arm did not reach position
        alarm: u8,
        /// 预留位 (all 0)
        reserved: Bytes<4>,
    }
}

ykc_record! {
    /// 0x62 遥控地锁升锁与降锁命令.
    pub struct ParkingLockCommand {
        /// 桩编号
        pile_no: PileNo,
        /// 枪号 (BIN here, unlike other frames)
        gun_no: u8,
        /// 升/降地锁 (BCD per the spec, but 0xFF is not BCD, so raw): 0x55 raise, 0xFF lower
        action: u8,
        /// 预留位 (all 0)
        reserved: Bytes<4>,
    }
}

ykc_record! {
    /// 0x63 充电桩返回数据: the answer to 0x62.
    pub struct ParkingLockReply {
        /// 桩编号
        pile_no: PileNo,
        /// 枪号 (BIN here, unlike other frames)
        gun_no: u8,
        /// 地锁控制返回标志: 1 success, 0 failure
        result: u8,
        /// 预留位 (all 0)
        reserved: Bytes<4>,
    }
}

// ---- 11 远程维护 (remote maintenance) ----

ykc_record! {
    /// 0x91 远程重启应答.
    pub struct RemoteRebootReply {
        /// 桩编号
        pile_no: PileNo,
        /// 设置结果: 0 failure, 1 success
        result: u8,
    }
}

ykc_record! {
    /// 0x92 远程重启.
    pub struct RemoteReboot {
        /// 桩编号
        pile_no: PileNo,
        /// 执行控制: 1 now, 2 when idle
        execute: u8,
    }
}

ykc_record! {
    /// 0x93 远程更新应答.
    pub struct RemoteUpdateReply {
        /// 桩编号
        pile_no: PileNo,
        /// 升级状态: 0 success, 1 wrong pile number, 2 program does not match the pile model,
        /// 3 download timed out
        status: u8,
    }
}

ykc_record! {
    /// 0x94 远程更新: fetch a firmware file by FTP and install it.
    pub struct RemoteUpdate {
        /// 桩编号
        pile_no: PileNo,
        /// 桩型号: 1 DC, 2 AC
        pile_model: u8,
        /// 桩功率 (kW; the spec gives no unit)
        pile_power: u16,
        /// 升级服务器地址
        server_address: Ascii<16>,
        /// 升级服务器端口
        server_port: u16,
        /// 用户名
        username: Ascii<16>,
        /// 密码
        password: Ascii<16>,
        /// 文件路径 (defined by the platform)
        file_path: Ascii<32>,
        /// 执行控制: 1 now, 2 when idle
        execute: u8,
        /// 下载超时时间 (min)
        download_timeout_minutes: u8,
    }
}

// ---- 12 并充模式 (parallel charging: several guns on one vehicle) ----

ykc_record! {
    /// 0xA1 充电桩主动申请并充充电: 0x31 plus the gun's role and the parallel session;
    /// every gun of the session sends one.
    pub struct ParallelStartRequest {
        /// 桩编号
        pile_no: PileNo,
        /// 枪号
        gun_no: Bcd<1>,
        /// 启动方式: 1 card, 2 account (not supported yet), 3 VIN
        start_mode: u8,
        /// 是否需要密码: 0 no, 1 yes
        password_required: u8,
        /// 账号或者物理卡号 (zero-padded)
        account_or_card_no: Bytes<8>,
        /// 输入密码 (MD5 digest of the password the user typed)
        password_md5: Bytes<16>,
        /// VIN码 (for a VIN start, in reverse order; zeros otherwise)
        vin: Ascii<17>,
        /// 主辅枪标记: 0 main gun, 1 auxiliary gun
        gun_role: u8,
        /// 并充序号 (YYMMDDhhmmss made by the pile; the same on every gun of the session)
        parallel_no: Bcd<6>,
    }
}

ykc_record! {
    /// 0xA2 运营平台确认并充启动充电: 0x32 plus the parallel session.
    pub struct ParallelStartReply {
        /// 交易流水号
        trade_no: TradeNo,
        /// 桩编号
        pile_no: PileNo,
        /// 枪号
        gun_no: Bcd<1>,
        /// 逻辑卡号 (shown on the pile's screen)
        logical_card_no: Bcd<8>,
        /// 账户余额 (yuan, 2 decimals)
        balance: Scaled<u32, 2>,
        /// 鉴权成功标志: 0 failure, 1 success
        auth_result: u8,
        /// 失败原因 (raw; codes as in 0x32)
        failure_reason: u8,
        /// 并充序号 (as sent in 0xA1)
        parallel_no: Bcd<6>,
    }
}

ykc_record! {
    /// 0xA3 远程并充启机命令回复: the answer to 0xA4 (the spec's table has the direction
    /// backwards; odd codes go up).
    pub struct ParallelRemoteStartReply {
        /// 交易流水号
        trade_no: TradeNo,
        /// 桩编号
        pile_no: PileNo,
        /// 枪号
        gun_no: Bcd<1>,
        /// 启动结果: 0 failure, 1 success
        result: u8,
        /// 失败原因: 0 none, 1 pile mismatch, 2 gun busy, 3 fault, 4 offline, 5 not plugged
        failure_reason: u8,
        /// 主辅枪标记: 0 main gun, 1 auxiliary gun
        gun_role: u8,
        /// 并充序号 (as sent in 0xA4)
        parallel_no: Bcd<6>,
    }
}

ykc_record! {
    /// 0xA4 运营平台远程控制并充启机: 0x34 plus the parallel session.
    pub struct ParallelRemoteStart {
        /// 交易流水号
        trade_no: TradeNo,
        /// 桩编号
        pile_no: PileNo,
        /// 枪号
        gun_no: Bcd<1>,
        /// 逻辑卡号
        logical_card_no: Bcd<8>,
        /// 物理卡号
        physical_card_no: Bytes<8>,
        /// 账户余额 (yuan, 2 decimals)
        balance: Scaled<u32, 2>,
        /// 并充序号 (YYMMDDhhmmss made by the platform; the same on every gun of the session)
        parallel_no: Bcd<6>,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_body_has_the_spec_length() {
        let mut body = Vec::new();
        Frame::from(Login::default())
            .encode_body(&mut body)
            .unwrap();
        assert_eq!(body.len() + 4, 0x22);
    }

    /// Body lengths from the spec's field tables (lists empty). Where a sample frame's
    /// length byte disagrees, the table wins: 0x41 (sample 0x13), 0x44/0x46/0x48 (0x2C),
    /// 0x45/0x47 (0x0D), 0x62/0x63 (0x0D).
    #[rustfmt::skip]
    const SPEC_BODY_LENGTHS: &[(u8, usize)] = &[
        (0x01, 30), (0x02, 8), (0x03, 9), (0x04, 9), (0x05, 9), (0x06, 10), (0x09, 7),
        (0x0A, 90), (0x12, 8), (0x13, 60), (0x15, 73), (0x17, 45), (0x19, 39), (0x1B, 32),
        (0x1D, 28), (0x21, 28), (0x23, 44), (0x25, 31), (0x31, 51), (0x32, 38), (0x33, 26),
        (0x34, 44), (0x35, 10), (0x36, 8), (0x3B, 158), (0x40, 17), (0x41, 16), (0x42, 20),
        (0x43, 9), (0x44, 8), (0x45, 7), (0x46, 8), (0x47, 7), (0x48, 8), (0x51, 8),
        (0x52, 9), (0x55, 14), (0x56, 14), (0x57, 8), (0x58, 90), (0x61, 16), (0x62, 13),
        (0x63, 13), (0x91, 8), (0x92, 8), (0x93, 8), (0x94, 94), (0xA1, 58), (0xA2, 44),
        (0xA3, 33), (0xA4, 50),
    ];

    #[test]
    fn bodies_have_the_spec_lengths() {
        assert_eq!(SPEC_BODY_LENGTHS.len(), FRAME_TYPES.len());
        for &(code, len) in SPEC_BODY_LENGTHS {
            // Samples have a fixed length except for the lists, which are emptied here.
            let frame = match Frame::sample(code, &mut Gen::new(1)).unwrap() {
                Frame::OfflineCardSync(_) => OfflineCardSync::default().into(),
                Frame::OfflineCardClearReply(_) => OfflineCardClearReply::default().into(),
                Frame::OfflineCardClear(_) => OfflineCardClear::default().into(),
                Frame::OfflineCardQueryReply(_) => OfflineCardQueryReply::default().into(),
                Frame::OfflineCardQuery(_) => OfflineCardQuery::default().into(),
                other => other,
            };
            let mut body = Vec::new();
            frame.encode_body(&mut body).unwrap();
            assert_eq!(body.len(), len, "{code:#04x} {}", frame.name());
        }
    }

    #[test]
    fn lists_at_their_maximum_fit_the_body_limit() {
        let card = Bytes([0x11; 8]);
        let frames: Vec<Frame> = vec![
            OfflineCardSync {
                cards: Counted(vec![OfflineCard::default(); 12]),
                ..Default::default()
            }
            .into(),
            OfflineCardClearReply {
                results: Rest(vec![OfflineCardClearResult::default(); 19]),
                ..Default::default()
            }
            .into(),
            OfflineCardClear {
                physical_card_nos: Counted(vec![card; 24]),
                ..Default::default()
            }
            .into(),
            OfflineCardQueryReply {
                results: Rest(vec![OfflineCardQueryResult::default(); 21]),
                ..Default::default()
            }
            .into(),
            OfflineCardQuery {
                physical_card_nos: Counted(vec![card; 24]),
                ..Default::default()
            }
            .into(),
        ];
        for frame in frames {
            let mut body = Vec::new();
            frame.encode_body(&mut body).unwrap();
            assert!(
                body.len() <= crate::ykc::frame::MAX_BODY,
                "{}: {}",
                frame.name(),
                body.len()
            );
        }
        let too_many = OfflineCardSync {
            cards: Counted(vec![OfflineCard::default(); 13]),
            ..Default::default()
        };
        assert!(Frame::from(too_many).encode_body(&mut Vec::new()).is_err());
    }

    #[test]
    fn pile_no_without_serialising() {
        let pile = PileNo::parse("32010200000001").unwrap();
        let hb = Heartbeat {
            pile_no: pile,
            ..Default::default()
        };
        assert_eq!(Frame::from(hb).pile_no(), Some(pile));
        let trade = TradeNo::parse("32010200000001012001061803423060").unwrap();
        let confirm = TransactionConfirm {
            trade_no: trade,
            result: 0,
        };
        assert_eq!(Frame::from(confirm).pile_no(), Some(pile));
        // Every type names a pile, and it is the one its JSON shows.
        for ft in FRAME_TYPES {
            let f = Frame::sample(ft.code, &mut Gen::new(7)).unwrap();
            let pile = f.pile_no().unwrap_or_else(|| panic!("{}", ft.name));
            if let Some(json) = f.fields_json().get("pile_no") {
                assert_eq!(
                    json.as_str(),
                    Some(pile.to_string().as_str()),
                    "{}",
                    ft.name
                );
            }
        }
    }

    #[test]
    fn serialising_a_frame_keeps_wire_order() {
        let f = Frame::sample(0x13, &mut Gen::new(1)).unwrap();
        let text = serde_json::to_string(&f).unwrap();
        let at = |key: &str| text.find(&format!("\"{key}\"")).unwrap();
        assert!(at("trade_no") < at("pile_no") && at("pile_no") < at("hardware_faults"));
        let back: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, f.fields_json());
    }

    #[test]
    fn lookup_by_code_and_name() {
        assert_eq!(FrameType::lookup("0x13").unwrap().name, "RealtimeData");
        assert_eq!(FrameType::lookup("realtimedata").unwrap().code, 0x13);
        assert!(FrameType::lookup("0x99").is_none());
    }
}
