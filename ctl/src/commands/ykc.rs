//! `pylonctl ykc ...`: YKC V1.6 frames from hex to JSON and back, and the list of types
//! (hex and the table are printed by [`crate::render::ykc`]).

use std::io::{Read, Write};

use clap::Subcommand;
use pylon_proto::ykc::frame::{self, START};
use pylon_proto::ykc::{self, CrcOrder, DecodeError, Direction, Frame, FrameType};
use serde::Serialize;
use serde_json::Value;

use crate::cli::Failure;
use crate::render::ykc::{code_text, spaced_hex, types_table};

const DECODE_ABOUT: &str = "\
Decode one YKC frame, given as hex, and print it as JSON.

The hex runs from the 0x68 start byte to the two checksum bytes; spaces are ignored,
so a frame may be pasted as one quoted string or as separate bytes. The output shows
the envelope (length, sequence number, encryption flag, type, checksum byte order) and
the body's fields under \"fields\", in the spec's order.

If the frame is not valid, what is wrong is printed to stderr (for a bad checksum, also
the bytes it should have been) and the exit status is 2.

Examples:
  pylonctl ykc decode '68 0D 00 01 00 03 32 01 02 00 00 00 01 01 00 F1 1A'
  pylonctl ykc decode 680D0001000332010200000001 0100F11A";

const ENCODE_ABOUT: &str = "\
Build one YKC frame from its fields as JSON and print it as hex.

The fields are a JSON object in the form `pylonctl ykc decode` prints under \"fields\":
BCD numbers and ASCII text as strings, BIN bytes as hex strings, scaled values in real
units (225.1 for 225.1 V), times as \"2026-11-24T10:20:30.000\". Every field must be
given; unknown fields and values out of range are refused (exit status 2).

Examples:
  pylonctl ykc encode 0x03 '{\"pile_no\":\"32010200000001\",\"gun_no\":\"01\",\"gun_status\":0}'
  pylonctl ykc encode RemoteStop '{\"pile_no\":\"32010200000001\",\"gun_no\":\"01\"}' --seq 3
  pylonctl ykc decode 680D... | jq .fields | pylonctl ykc encode Heartbeat -";

/// `pylonctl ykc ...`
#[derive(Debug, Subcommand)]
pub enum YkcCommand {
    /// Decode one frame given as hex and print it as JSON.
    #[command(long_about = DECODE_ABOUT)]
    Decode {
        /// The frame in hex, from 0x68 to the checksum; spaces are ignored.
        #[arg(required = true, num_args = 1.., value_name = "HEX")]
        hex: Vec<String>,
    },
    /// Build a frame from its fields as JSON and print it as hex.
    #[command(long_about = ENCODE_ABOUT)]
    Encode {
        /// The frame type: its code (0x13) or name (RealtimeData); see `pylonctl ykc types`.
        #[arg(value_name = "TYPE")]
        frame_type: String,
        /// The body's fields as a JSON object, or `-` to read it from stdin.
        json: String,
        /// The sequence number (a reply carries the sequence number of its request).
        #[arg(long, default_value_t = 0)]
        seq: u16,
    },
    /// List every frame type: code, direction, name and the spec's (Chinese) name.
    Types,
}

/// Runs one `ykc` command.
pub fn run(cmd: YkcCommand, out: &mut dyn Write) -> Result<(), Failure> {
    let text = match cmd {
        YkcCommand::Decode { hex } => decode(&hex.concat())?,
        YkcCommand::Encode {
            frame_type,
            json,
            seq,
        } => {
            let json = if json == "-" {
                let mut buf = String::new();
                std::io::stdin().read_to_string(&mut buf)?;
                buf
            } else {
                json
            };
            encode(&frame_type, &json, seq)?
        }
        YkcCommand::Types => types_table(),
    };
    writeln!(out, "{text}")?;
    Ok(())
}

fn bad(msg: impl Into<String>) -> Failure {
    Failure::BadInput(msg.into())
}

/// What `decode` prints, in this order.
#[derive(Serialize)]
struct Decoded<'a> {
    start: String,
    length: u8,
    seq: u16,
    encryption: u8,
    #[serde(rename = "type")]
    frame_type: String,
    name: &'static str,
    spec_name: &'static str,
    direction: Direction,
    crc: &'static str,
    fields: &'a Frame,
}

/// Decodes one frame given as hex into pretty JSON.
pub fn decode(hex_text: &str) -> Result<String, Failure> {
    let digits: String = hex_text.chars().filter(|c| !c.is_whitespace()).collect();
    let bytes = hex::decode(&digits).map_err(|e| bad(format!("the frame is not hex: {e}")))?;
    let raw = frame::parse_exact(&bytes).map_err(|e| bad(explain(&e)))?;
    let frame_type = FrameType::by_code(raw.frame_type).ok_or_else(|| {
        bad(format!(
            "unknown frame type {} (see `pylonctl ykc types`)",
            code_text(raw.frame_type)
        ))
    })?;
    let frame = ykc::decode(&raw).map_err(|e| {
        bad(format!(
            "frame {} ({}): {}",
            code_text(frame_type.code),
            frame_type.name,
            explain(&e)
        ))
    })?;
    let decoded = Decoded {
        start: code_text(START),
        length: bytes[1],
        seq: raw.seq,
        encryption: raw.encryption,
        frame_type: code_text(frame_type.code),
        name: frame_type.name,
        spec_name: frame_type.spec_name,
        direction: frame_type.direction,
        crc: match raw.crc_order {
            CrcOrder::Standard => "standard",
            CrcOrder::Swapped => "swapped",
        },
        fields: &frame,
    };
    serde_json::to_string_pretty(&decoded).map_err(|e| Failure::Other(e.into()))
}

/// A decode error, with the checksum the frame should have carried when that was wrong.
fn explain(e: &DecodeError) -> String {
    match e {
        DecodeError::BadCrc { computed, .. } => {
            let [lo, hi] = computed.to_le_bytes();
            format!(
                "{e}; expected checksum bytes {lo:02X} {hi:02X} \
                 (CRC-16/MODBUS of sequence..body, low byte first)"
            )
        }
        _ => e.to_string(),
    }
}

/// Builds one frame from a type and its fields as JSON; returns it as spaced hex.
pub fn encode(frame_type: &str, json: &str, seq: u16) -> Result<String, Failure> {
    let ft = FrameType::lookup(frame_type).ok_or_else(|| {
        bad(format!(
            "unknown frame type {frame_type:?}: give a code such as 0x13 or a name such as \
             RealtimeData (see `pylonctl ykc types`)"
        ))
    })?;
    let what = format!("{} ({})", ft.name, code_text(ft.code));
    let value: Value = serde_json::from_str(json)
        .map_err(|e| bad(format!("the fields of {what} are not valid JSON: {e}")))?;
    if !value.is_object() {
        return Err(bad(format!(
            "the fields of {what} must be a JSON object, such as {{\"pile_no\": \"32010200000001\", ...}}"
        )));
    }
    let frame = Frame::from_fields_json(ft.code, value)
        .map_err(|e| bad(format!("the fields of {what}: {e}")))?;
    let wire = ykc::encode(seq, &frame).map_err(|e| bad(format!("cannot encode {what}: {e}")))?;
    Ok(spaced_hex(&wire))
}

#[cfg(test)]
mod tests {
    use super::*;
    use pylon_proto::ykc::field::Gen;
    use pylon_proto::ykc::FRAME_TYPES;

    const HEARTBEAT: &str = "68 0D 00 01 00 03 32 01 02 00 00 00 01 01 00 F1 1A";

    fn input_error(r: Result<String, Failure>) -> String {
        match r {
            Err(Failure::BadInput(msg)) => msg,
            other => panic!("expected bad input, got {other:?}"),
        }
    }

    #[test]
    fn decodes_a_heartbeat() {
        let json: Value = serde_json::from_str(&decode(HEARTBEAT).unwrap()).unwrap();
        assert_eq!(json["start"], "0x68");
        assert_eq!(json["length"], 13);
        assert_eq!(json["seq"], 256);
        assert_eq!(json["encryption"], 0);
        assert_eq!(json["type"], "0x03");
        assert_eq!(json["name"], "Heartbeat");
        assert_eq!(json["spec_name"], "充电桩心跳包");
        assert_eq!(json["direction"], "up");
        assert_eq!(json["crc"], "standard");
        assert_eq!(json["fields"]["pile_no"], "32010200000001");
        assert_eq!(json["fields"]["gun_no"], "01");
    }

    #[test]
    fn keeps_the_envelope_and_fields_in_order() {
        let text = decode(HEARTBEAT).unwrap();
        let keys = [
            "\"start\"",
            "\"length\"",
            "\"seq\"",
            "\"type\"",
            "\"crc\"",
            "\"fields\"",
        ];
        let at: Vec<usize> = keys.iter().map(|k| text.find(k).unwrap()).collect();
        assert!(at.windows(2).all(|w| w[0] < w[1]), "{text}");
        assert!(text.find("\"pile_no\"") < text.find("\"gun_status\""));
    }

    #[test]
    fn ignores_spaces_and_reports_a_swapped_checksum() {
        let swapped = HEARTBEAT.replace("F1 1A", "1A F1").replace(' ', "");
        let (a, b) = swapped.split_at(10);
        let json: Value = serde_json::from_str(&decode(&format!("{a} \n {b}")).unwrap()).unwrap();
        assert_eq!(json["crc"], "swapped");
    }

    #[test]
    fn a_bad_checksum_names_the_expected_bytes() {
        let msg = input_error(decode(&HEARTBEAT.replace("F1 1A", "68 90")));
        assert!(msg.contains("checksum mismatch"), "{msg}");
        assert!(msg.contains("expected checksum bytes F1 1A"), "{msg}");
    }

    #[test]
    fn bad_frames_say_what_is_wrong() {
        assert!(input_error(decode("68 0D 00 01")).contains("truncated"));
        assert!(input_error(decode("67 0D")).contains("does not start with 0x68"));
        assert!(input_error(decode("68 0Z")).contains("not hex"));
        assert!(input_error(decode(&format!("{HEARTBEAT} 00"))).contains("body is 18 bytes"));
        // A well-formed frame of a type the spec does not define.
        let mut wire = Vec::new();
        frame::write_frame(&mut wire, 0, frame::PLAIN, 0x07, &[1, 2]).unwrap();
        assert!(input_error(decode(&hex::encode(&wire))).contains("unknown frame type 0x07"));
        // A body that does not fit its type.
        let mut wire = Vec::new();
        frame::write_frame(&mut wire, 0, frame::PLAIN, 0x03, &[0x1A; 9]).unwrap();
        let msg = input_error(decode(&hex::encode(&wire)));
        assert!(
            msg.contains("0x03 (Heartbeat)") && msg.contains("pile_no"),
            "{msg}"
        );
        // An encrypted one.
        let mut wire = Vec::new();
        frame::write_frame(&mut wire, 0, frame::TRIPLE_DES, 0x03, &[0; 16]).unwrap();
        assert!(input_error(decode(&hex::encode(&wire))).contains("encrypted"));
    }

    #[test]
    fn encodes_a_heartbeat() {
        let json = r#"{"pile_no":"32010200000001","gun_no":"01","gun_status":0}"#;
        assert_eq!(encode("Heartbeat", json, 0x0100).unwrap(), HEARTBEAT);
        assert_eq!(encode("0x03", json, 0x0100).unwrap(), HEARTBEAT);
        assert_eq!(encode("heartbeat", json, 0x0100).unwrap(), HEARTBEAT);
    }

    #[test]
    fn every_type_encodes_from_what_decode_prints() {
        let mut g = Gen::new(11);
        for t in FRAME_TYPES {
            let frame = Frame::sample(t.code, &mut g).unwrap();
            let wire = ykc::encode(9, &frame).unwrap();
            let decoded: Value =
                serde_json::from_str(&decode(&hex::encode(&wire)).unwrap()).unwrap();
            assert_eq!(decoded["type"], code_text(t.code));
            let fields = decoded["fields"].to_string();
            let again = encode(t.name, &fields, 9).unwrap_or_else(|e| panic!("{}: {e}", t.name));
            assert_eq!(again, spaced_hex(&wire), "{}", t.name);
        }
    }

    #[test]
    fn bad_fields_say_which_and_why() {
        let missing = input_error(encode(
            "0x03",
            r#"{"pile_no":"32010200000001","gun_no":"01"}"#,
            0,
        ));
        assert!(missing.contains("missing field `gun_status`"), "{missing}");
        let unknown = input_error(encode(
            "0x03",
            r#"{"pile_no":"32010200000001","gun_no":"01","gun_status":0,"colour":1}"#,
            0,
        ));
        assert!(unknown.contains("unknown field `colour`"), "{unknown}");
        let range = input_error(encode(
            "0x03",
            r#"{"pile_no":"32010200000001","gun_no":"01","gun_status":300}"#,
            0,
        ));
        assert!(range.contains("300"), "{range}");
        let mut fields = Frame::sample(0x13, &mut Gen::new(1)).unwrap().fields_json();
        fields["gun_temperature"] = serde_json::json!(-60);
        let scaled = input_error(encode("RealtimeData", &fields.to_string(), 0));
        assert!(scaled.contains("RealtimeData (0x13)"), "{scaled}");
        assert!(scaled.contains("-60 is out of range"), "{scaled}");
        let digits = input_error(encode(
            "0x36",
            r#"{"pile_no":"3201020000000199","gun_no":"01"}"#,
            0,
        ));
        assert!(digits.contains("16 digits"), "{digits}");
        assert!(input_error(encode("0x36", "[1]", 0)).contains("JSON object"));
        assert!(input_error(encode("0x36", "{", 0)).contains("not valid JSON"));
        assert!(input_error(encode("Nope", "{}", 0)).contains("unknown frame type \"Nope\""));
    }
}
