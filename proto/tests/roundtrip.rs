//! Every frame type survives encode -> split -> decode and JSON, and section 4's table is
//! complete.

use proptest::prelude::*;
use pylon_proto::ykc::field::Gen;
use pylon_proto::ykc::frame::{self, FrameSplitter, SplitEvent, MAX_BODY};
use pylon_proto::ykc::{self, Direction, Frame, FRAME_TYPES};

/// Every code of section 4's table, written out by hand. (The table has 51 rows.)
#[rustfmt::skip]
const SECTION_4_CODES: &[u8] = &[
    0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x09, 0x0A,
    0x12, 0x13, 0x15, 0x17, 0x19, 0x1B, 0x1D, 0x21, 0x23, 0x25,
    0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x3B, 0x40,
    0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48,
    0x51, 0x52, 0x55, 0x56, 0x57, 0x58,
    0x61, 0x62, 0x63,
    0x91, 0x92, 0x93, 0x94,
    0xA1, 0xA2, 0xA3, 0xA4,
];

#[test]
fn every_code_of_section_4_is_present_in_order() {
    let codes: Vec<u8> = FRAME_TYPES.iter().map(|t| t.code).collect();
    assert_eq!(codes, SECTION_4_CODES);
    assert_eq!(SECTION_4_CODES.len(), 51);
}

#[test]
fn odd_codes_go_up_even_codes_go_down() {
    for t in FRAME_TYPES {
        let expected = if t.code % 2 == 1 {
            Direction::Up
        } else {
            Direction::Down
        };
        assert_eq!(t.direction, expected, "{:#04x} {}", t.code, t.name);
    }
}

#[test]
fn names_are_unique() {
    for (i, a) in FRAME_TYPES.iter().enumerate() {
        for b in &FRAME_TYPES[i + 1..] {
            assert_ne!(a.name, b.name);
            assert_ne!(a.spec_name, b.spec_name);
        }
    }
}

/// Decodes every frame of `wire` through the streaming splitter.
fn split_and_decode(wire: &[u8]) -> Vec<(u16, Frame)> {
    let mut out = Vec::new();
    let mut splitter = FrameSplitter::new();
    splitter.feed(wire, |ev| {
        match ev {
            SplitEvent::Frame(raw) => {
                out.push((raw.seq, ykc::decode(&raw).expect("decodes")));
            }
            SplitEvent::Skipped { error, .. } => panic!("skipped: {error}"),
        }
        true
    });
    assert_eq!(splitter.buffered(), 0);
    out
}

proptest! {
    #[test]
    fn every_type_round_trips_through_the_wire(seed in any::<u64>(), seq in any::<u16>()) {
        let mut g = Gen::new(seed);
        for t in FRAME_TYPES {
            let frame = Frame::sample(t.code, &mut g).expect("every listed type has a sample");
            prop_assert_eq!(frame.frame_type(), t.code);
            prop_assert_eq!(frame.name(), t.name);
            let wire = ykc::encode(seq, &frame)
                .map_err(|e| TestCaseError::fail(format!("{}: {e}", t.name)))?;
            prop_assert!(wire.len() - 8 <= MAX_BODY, "{} body is {} bytes", t.name, wire.len() - 8);

            let raw = frame::parse_exact(&wire).expect("parses");
            prop_assert_eq!(raw.seq, seq);
            prop_assert_eq!(raw.frame_type, t.code);
            prop_assert_eq!(&ykc::decode(&raw).expect("decodes"), &frame);

            let split = split_and_decode(&wire);
            prop_assert_eq!(split, vec![(seq, frame)]);
        }
    }

    #[test]
    fn every_type_round_trips_through_json(seed in any::<u64>()) {
        let mut g = Gen::new(seed);
        for t in FRAME_TYPES {
            let frame = Frame::sample(t.code, &mut g).expect("sample");
            let json = frame.fields_json();
            prop_assert!(json.is_object(), "{}: {json}", t.name);
            let back = Frame::from_fields_json(t.code, json.clone())
                .map_err(|e| TestCaseError::fail(format!("{}: {e}\n{json}", t.name)))?;
            prop_assert_eq!(&back, &frame);
            // And through text, as pylonctl does.
            let text = serde_json::to_string(&json).expect("serialises");
            let parsed: serde_json::Value = serde_json::from_str(&text).expect("parses");
            prop_assert_eq!(Frame::from_fields_json(t.code, parsed), Ok(frame));
        }
    }

    #[test]
    fn pile_no_matches_the_json(seed in any::<u64>()) {
        let mut g = Gen::new(seed);
        for t in FRAME_TYPES {
            let frame = Frame::sample(t.code, &mut g).expect("sample");
            let pile = frame.pile_no().expect("every type names a pile");
            let json = frame.fields_json();
            let shown = json
                .get("pile_no")
                .or_else(|| json.get("trade_no"))
                .and_then(|v| v.as_str())
                .expect("pile_no or trade_no");
            prop_assert!(shown.starts_with(&pile.to_string()), "{}", t.name);
        }
    }
}

#[test]
fn a_stream_of_every_type_splits_back() {
    let mut g = Gen::new(42);
    let mut wire = Vec::new();
    let mut expected = Vec::new();
    for (i, t) in FRAME_TYPES.iter().enumerate() {
        let frame = Frame::sample(t.code, &mut g).expect("sample");
        ykc::encode_into(&mut wire, i as u16, &frame).expect("encodes");
        expected.push((i as u16, frame));
    }
    // Fed in awkward pieces.
    for chunk in [1, 7, 64, 1000] {
        let mut splitter = FrameSplitter::new();
        let mut got = Vec::new();
        for piece in wire.chunks(chunk) {
            splitter.feed(piece, |ev| {
                if let SplitEvent::Frame(raw) = ev {
                    got.push((raw.seq, ykc::decode(&raw).expect("decodes")));
                }
                true
            });
        }
        assert_eq!(got, expected, "chunk {chunk}");
    }
}
