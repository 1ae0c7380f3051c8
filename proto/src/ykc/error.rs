//! Typed errors for everything that can be wrong with bytes from a charger.

use thiserror::Error;

/// Why a frame (or a byte stream) could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    #[error("frame does not start with 0x68 (found {found:#04x})")]
    BadStart { found: u8 },
    #[error("length byte {len} is below the minimum of 4 (sequence + encryption flag + type)")]
    LengthTooSmall { len: u8 },
    #[error("length byte {len} exceeds the maximum of {max}")]
    LengthTooLarge { len: u8, max: usize },
    #[error("frame is truncated: need {needed} bytes, have {have}")]
    Truncated { needed: usize, have: usize },
    #[error("checksum mismatch: frame carries {wire:02x?}, computed {computed:#06x}")]
    BadCrc { wire: [u8; 2], computed: u16 },
    #[error("unknown frame type {frame_type:#04x}")]
    UnknownType { frame_type: u8 },
    #[error("unknown encryption flag {flag:#04x} (0x00 plain, 0x01 3DES)")]
    UnknownEncryption { flag: u8 },
    #[error(
        "frame {frame_type:#04x} is encrypted; its body cannot be decoded without the pile's key"
    )]
    Encrypted { frame_type: u8 },
    #[error("frame {frame_type:#04x} is plain, but this pile must encrypt its frames")]
    Unencrypted { frame_type: u8 },
    #[error("frame {frame_type:#04x} does not decrypt: {reason}")]
    Decrypt { frame_type: u8, reason: String },
    #[error("frame {frame_type:#04x}: body is {actual} bytes, expected {expected}")]
    BodyLength {
        frame_type: u8,
        expected: String,
        actual: usize,
    },
    #[error("field `{field}`: {reason}")]
    InvalidField { field: &'static str, reason: String },
}

impl DecodeError {
    /// A short, stable label for metrics (`decode_errors_total{kind=...}`).
    pub fn kind(&self) -> &'static str {
        match self {
            DecodeError::BadStart { .. } => "bad_start",
            DecodeError::LengthTooSmall { .. } | DecodeError::LengthTooLarge { .. } => "bad_length",
            DecodeError::Truncated { .. } => "truncated",
            DecodeError::BadCrc { .. } => "bad_crc",
            DecodeError::UnknownType { .. } => "unknown_type",
            DecodeError::UnknownEncryption { .. } => "unknown_encryption",
            DecodeError::Encrypted { .. } => "encrypted",
            DecodeError::Unencrypted { .. } => "unencrypted",
            DecodeError::Decrypt { .. } => "decrypt",
            DecodeError::BodyLength { .. } => "body_length",
            DecodeError::InvalidField { .. } => "invalid_field",
        }
    }
}

/// Why a value could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EncodeError {
    #[error("field `{field}`: {reason}")]
    InvalidField { field: &'static str, reason: String },
    #[error("body of {len} bytes exceeds the maximum of {max}")]
    BodyTooLarge { len: usize, max: usize },
}
