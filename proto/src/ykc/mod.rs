//! The YKC V1.6 charger protocol, sans-io.
//!
//! - [`frame`]: the envelope, CRC checks and a streaming [`FrameSplitter`].
//! - [`field`]: BCD, BIN (scaled), ASCII and CP56Time2a field types.
//! - [`frames`]: every frame type of the spec as a typed struct, and the [`Frame`] enum.
//! - [`packed`]: the bit-packed GB/T 27930 status fields some of those frames carry.

pub mod crc;
mod error;
pub mod field;
pub mod frame;
pub mod frames;
pub mod packed;

pub use crc::CrcOrder;
pub use error::{DecodeError, EncodeError};
pub use field::{Ascii, Bcd, Bytes, Cp56Time2a, PileNo, Scaled, TradeNo};
pub use frame::{FrameSplitter, RawFrame, SplitEvent};
pub use frames::{Direction, Frame, FrameType, FRAME_TYPES};

/// Decodes the body of a checked raw frame into its typed form.
pub fn decode(raw: &RawFrame<'_>) -> Result<Frame, DecodeError> {
    match raw.encryption {
        frame::PLAIN => Frame::decode_body(raw.frame_type, raw.body),
        frame::TRIPLE_DES => Err(DecodeError::Encrypted {
            frame_type: raw.frame_type,
        }),
        flag => Err(DecodeError::UnknownEncryption { flag }),
    }
}

/// Appends one whole, plain frame to `out`.
pub fn encode_into(out: &mut Vec<u8>, seq: u16, frame: &Frame) -> Result<(), EncodeError> {
    let mut body = Vec::with_capacity(64);
    frame.encode_body(&mut body)?;
    frame::write_frame(out, seq, frame::PLAIN, frame.frame_type(), &body)
}

/// Encodes one whole, plain frame.
pub fn encode(seq: u16, frame: &Frame) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(frame::MAX_FRAME);
    encode_into(&mut out, seq, frame)?;
    Ok(out)
}
