//! Feeds arbitrary bytes to the frame splitter, decodes every frame it finds and checks
//! that each successful decode re-encodes to the same frame.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pylon_proto::ykc::frame::{self, FrameSplitter, SplitEvent};
use pylon_proto::ykc::{self, Frame, RawFrame};

fuzz_target!(|data: &[u8]| {
    // Split the input in two at a point chosen by its first byte, so that frames
    // straddling two reads (the splitter's carry-over) get exercised too.
    let cut = data.first().map_or(0, |&b| usize::from(b)).min(data.len());
    let mut splitter = FrameSplitter::new();
    for piece in [&data[..cut], &data[cut..]] {
        splitter.feed(piece, |event| {
            if let SplitEvent::Frame(raw) = event {
                check(&raw);
            }
            true
        });
    }
    assert!(splitter.buffered() < frame::MAX_FRAME);
});

fn check(raw: &RawFrame<'_>) {
    let Ok(decoded) = ykc::decode(raw) else {
        return;
    };
    let mut body = Vec::new();
    decoded
        .encode_body(&mut body)
        .expect("a decoded frame re-encodes");
    assert_eq!(body.len(), raw.body.len(), "re-encoded body length");
    // The bytes themselves may differ only where decoding canonicalises (the reserved bits
    // of CP56Time2a times); the value must not, and the canonical form is a fixed point.
    let again = Frame::decode_body(raw.frame_type, &body).expect("re-encoded body decodes");
    assert_eq!(again, decoded, "decode(encode(frame)) == frame");
    let mut canonical = Vec::new();
    again.encode_body(&mut canonical).expect("re-encodes");
    assert_eq!(canonical, body, "encoding is a fixed point after one round");

    // The whole frame, too: what we send parses back to what we decoded.
    let wire = ykc::encode(raw.seq, &decoded).expect("encodes");
    let reparsed = frame::parse_exact(&wire).expect("our own frame parses");
    assert_eq!(reparsed.seq, raw.seq);
    assert_eq!(
        ykc::decode(&reparsed).expect("our own frame decodes"),
        decoded
    );
}
