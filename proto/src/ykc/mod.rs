//! The YKC V1.6 charger protocol, sans-io.
//!
//! - [`frame`]: the envelope, CRC checks and a streaming [`FrameSplitter`].
//! - [`field`]: BCD, BIN (scaled), ASCII and CP56Time2a field types.
//! - [`frames`]: every frame type of the spec as a typed struct, and the [`Frame`] enum.
//! - [`packed`]: the bit-packed GB/T 27930 status fields some of those frames carry.

pub mod cipher;
pub mod crc;
mod error;
pub mod field;
pub mod frame;
pub mod frames;
pub mod packed;

pub use cipher::PileCipher;
pub use crc::CrcOrder;
pub use error::{DecodeError, EncodeError};
pub use field::{Ascii, Bcd, Bytes, Cp56Time2a, PileNo, Scaled, TradeNo};
pub use frame::{FrameSplitter, RawFrame, SplitEvent};
pub use frames::{Direction, Frame, FrameType, FRAME_TYPES};

/// Decodes the body of a checked raw frame into its typed form.
pub fn decode(raw: &RawFrame<'_>) -> Result<Frame, DecodeError> {
    decode_with(raw, None)
}

/// Decodes a frame of a pile whose body encryption is `cipher` (`None`: the pile sends
/// plain bodies). A pile set up for encryption must encrypt: a plain frame from it is
/// an error.
pub fn decode_with(raw: &RawFrame<'_>, cipher: Option<&PileCipher>) -> Result<Frame, DecodeError> {
    match (raw.encryption, cipher) {
        (frame::PLAIN, None) => Frame::decode_body(raw.frame_type, raw.body),
        (frame::PLAIN, Some(_)) => Err(DecodeError::Unencrypted {
            frame_type: raw.frame_type,
        }),
        (frame::TRIPLE_DES, None) => Err(DecodeError::Encrypted {
            frame_type: raw.frame_type,
        }),
        (frame::TRIPLE_DES, Some(c)) => {
            let body = c.decrypt(raw.body).map_err(|e| DecodeError::Decrypt {
                frame_type: raw.frame_type,
                reason: e.to_string(),
            })?;
            Frame::decode_body_padded(raw.frame_type, &body, c.padding == cipher::Padding::Zero)
        }
        (flag, _) => Err(DecodeError::UnknownEncryption { flag }),
    }
}

/// Appends one whole frame to `out`, its body encrypted with `cipher` when given.
pub fn encode_into_with(
    out: &mut Vec<u8>,
    seq: u16,
    frame: &Frame,
    cipher: Option<&PileCipher>,
) -> Result<(), EncodeError> {
    let Some(cipher) = cipher else {
        return encode_into(out, seq, frame);
    };
    let mut body = Vec::with_capacity(64);
    frame.encode_body(&mut body)?;
    let sealed = cipher.encrypt(&body);
    frame::write_frame(out, seq, frame::TRIPLE_DES, frame.frame_type(), &sealed)
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
