//! Every frame type of YKC V1.6 (section 4's table), one typed struct each.
//!
//! Field names are English renderings of the spec's parameter names, in the spec's order;
//! the doc comment on each field gives the spec's name and unit.

use serde_json::Value;

use super::error::{DecodeError, EncodeError};
use super::field::{
    Ascii, Bcd, ByteArray, Bytes, Counted, Cp56Time2a, Field, Gen, PileNo, Reader, Rest,
    Scaled, TradeNo, U40,
};
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

    /// Looks a type up by its code (`0x13`, `13`, `19`) or name (`RealtimeData`, case-insensitive).
    pub fn lookup(text: &str) -> Option<&'static FrameType> {
        let t = text.trim();
        let by_code = if let Some(hex) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
            u8::from_str_radix(hex, 16).ok()
        } else {
            None
        };
        by_code
            .and_then(Self::by_code)
            .or_else(|| FRAME_TYPES.iter().find(|ft| ft.name.eq_ignore_ascii_case(t)))
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
                let mut r = Reader::new(body);
                let frame = match frame_type {
                    $( $code => Frame::$name(Field::decode(&mut r, stringify!($name))?), )*
                    other => return Err(DecodeError::UnknownType { frame_type: other }),
                };
                if r.remaining() != 0 {
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
                let value = match self { $( Frame::$name(b) => serde_json::to_value(b), )* };
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

    /// The pile number every frame body carries (all types carry one).
    pub fn pile_no(&self) -> Option<PileNo> {
        match self.fields_json().get("pile_no").and_then(Value::as_str) {
            Some(s) => PileNo::parse(s).ok(),
            None => None,
        }
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
    0x33 => RemoteStartReply, Up, "远程启机命令回复";
    0x34 => RemoteStart, Down, "运营平台远程控制启机";
    0x35 => RemoteStopReply, Up, "远程停机命令回复";
    0x36 => RemoteStop, Down, "运营平台远程停机";
    0x3B => TransactionRecord, Up, "交易记录";
    0x40 => TransactionConfirm, Down, "交易记录确认";
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

ykc_record! {
    /// 0x0A 计费模型请求应答: four rates (sharp, peak, flat, valley), each an energy and a
    /// service fee per kWh with five decimals, and the rate of each of the 48 half hours.
    pub struct BillingModelReply {
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

// ---- 8 运营交互 (remote start/stop, transaction records) ----

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_body_has_the_spec_length() {
        let mut body = Vec::new();
        Frame::from(Login::default()).encode_body(&mut body).unwrap();
        assert_eq!(body.len() + 4, 0x22);
    }

    #[test]
    fn lookup_by_code_and_name() {
        assert_eq!(FrameType::lookup("0x13").unwrap().name, "RealtimeData");
        assert_eq!(FrameType::lookup("realtimedata").unwrap().code, 0x13);
        assert!(FrameType::lookup("0x99").is_none());
    }
}
