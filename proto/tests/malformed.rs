//! Bad input gives typed errors and never a panic.

use proptest::prelude::*;
use pylon_proto::ykc::field::Gen;
use pylon_proto::ykc::frame::{self, FrameSplitter, Parsed};
use pylon_proto::ykc::{self, DecodeError, Frame, RawFrame, FRAME_TYPES};

/// Types whose last field is a list without a count: a shorter body can be valid.
const REST_LISTS: &[u8] = &[0x45, 0x47];

fn body_of(frame: &Frame) -> Vec<u8> {
    let mut body = Vec::new();
    frame.encode_body(&mut body).expect("encodes");
    body
}

#[test]
fn every_truncated_body_is_an_error() {
    for seed in 0..20 {
        let mut g = Gen::new(seed);
        for t in FRAME_TYPES {
            let body = body_of(&Frame::sample(t.code, &mut g).expect("sample"));
            for cut in 0..body.len() {
                match Frame::decode_body(t.code, &body[..cut]) {
                    Err(e) => assert!(
                        matches!(e, DecodeError::InvalidField { .. }),
                        "{} cut at {cut}: {e:?}",
                        t.name
                    ),
                    // Only a cut between two entries of a count-less list leaves a valid body.
                    Ok(f) => {
                        assert!(
                            REST_LISTS.contains(&t.code),
                            "{} cut at {cut} decoded",
                            t.name
                        );
                        assert_eq!(body_of(&f), &body[..cut]);
                    }
                }
            }
        }
    }
}

#[test]
fn every_truncated_frame_is_incomplete() {
    let mut g = Gen::new(3);
    for t in FRAME_TYPES {
        let wire =
            ykc::encode(1, &Frame::sample(t.code, &mut g).expect("sample")).expect("encodes");
        for cut in 0..wire.len() {
            assert!(
                matches!(frame::parse(&wire[..cut]), Ok(Parsed::Incomplete(_))),
                "{} cut at {cut}",
                t.name
            );
            assert!(matches!(
                frame::parse_exact(&wire[..cut]),
                Err(DecodeError::Truncated { .. })
            ));
        }
    }
}

#[test]
fn trailing_bytes_are_a_body_length_error() {
    let mut g = Gen::new(5);
    for t in FRAME_TYPES {
        let mut body = body_of(&Frame::sample(t.code, &mut g).expect("sample"));
        body.push(0);
        let err = Frame::decode_body(t.code, &body).expect_err(t.name);
        if REST_LISTS.contains(&t.code) {
            // The extra byte reads as the start of another entry.
            assert!(
                matches!(err, DecodeError::InvalidField { .. }),
                "{}: {err:?}",
                t.name
            );
        } else {
            assert!(
                matches!(err, DecodeError::BodyLength { frame_type, actual, .. }
                    if frame_type == t.code && actual == body.len()),
                "{}: {err:?}",
                t.name
            );
        }
    }
}

#[test]
fn unknown_types_are_reported() {
    for code in 0..=u8::MAX {
        if FRAME_TYPES.iter().any(|t| t.code == code) {
            continue;
        }
        assert_eq!(
            Frame::decode_body(code, &[0; 8]),
            Err(DecodeError::UnknownType { frame_type: code })
        );
        assert!(Frame::sample(code, &mut Gen::new(0)).is_none());
        assert!(Frame::from_fields_json(code, serde_json::json!({})).is_err());
    }
}

#[test]
fn encrypted_bodies_are_not_decoded() {
    let body = body_of(&Frame::sample(0x03, &mut Gen::new(0)).expect("sample"));
    let mut wire = Vec::new();
    frame::write_frame(&mut wire, 9, frame::TRIPLE_DES, 0x03, &body).expect("writes");
    let raw = frame::parse_exact(&wire).expect("parses");
    assert_eq!(
        ykc::decode(&raw),
        Err(DecodeError::Encrypted { frame_type: 0x03 })
    );

    let raw = RawFrame {
        encryption: 0x02,
        ..raw
    };
    assert_eq!(
        ykc::decode(&raw),
        Err(DecodeError::UnknownEncryption { flag: 0x02 })
    );
}

#[test]
fn out_of_range_counts_are_refused() {
    // 0x44 with a count of 13 cards (more than fit in 200 bytes).
    let mut body = vec![0u8; 7];
    body.push(13);
    body.extend(vec![0u8; 13 * 16]);
    let err = Frame::decode_body(0x44, &body).unwrap_err();
    assert!(err.to_string().contains("exceeds the maximum"), "{err}");
}

/// Decoding must not panic; when it succeeds the value must re-encode to an equal value.
fn decode_never_panics(code: u8, body: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(frame) = Frame::decode_body(code, body) {
        let again = body_of(&frame);
        prop_assert_eq!(again.len(), body.len());
        prop_assert_eq!(Frame::decode_body(code, &again), Ok(frame));
    }
    Ok(())
}

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = frame::parse(&bytes);
        let _ = frame::parse_exact(&bytes);
        let mut splitter = FrameSplitter::new();
        splitter.feed(&bytes, |ev| {
            if let frame::SplitEvent::Frame(raw) = ev {
                let _ = ykc::decode(&raw);
            }
            true
        });
        for t in FRAME_TYPES {
            decode_never_panics(t.code, &bytes)?;
        }
    }

    /// Random bytes rarely get past the first BCD field; mutating valid bodies reaches
    /// every field's decoder.
    #[test]
    fn mutated_bodies_never_panic(
        seed in any::<u64>(),
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4),
    ) {
        let mut g = Gen::new(seed);
        for t in FRAME_TYPES {
            let mut body = body_of(&Frame::sample(t.code, &mut g).expect("sample"));
            if body.is_empty() {
                continue;
            }
            for &(at, value) in &edits {
                let i = at % body.len();
                body[i] = value;
            }
            decode_never_panics(t.code, &body)?;
        }
    }
}
