//! The protocol's body encryption (encryption flag 0x01): 3DES over the body only, with a
//! key per pile provisioned out of band. The spec names 3DES and nothing more, so the
//! mode and padding are per-pile settings: ECB, or CBC with a configured IV; PKCS#7 or
//! zero padding. The default is ECB with PKCS#7 (what most deployed chargers do).
//!
//! With zero padding a body is padded with 0x00 to a multiple of 8 bytes (nothing added
//! when it already is one); on the way in the padding cannot be told from a body that ends
//! in zeros, so the frame decoder takes the body's own length and checks that what
//! follows is zeros (see [`super::decode_with`]).

use cbc::cipher::block_padding::{NoPadding, Pkcs7};
use cbc::cipher::{BlockDecryptMut, BlockEncryptMut, KeyInit, KeyIvInit};
use serde::{Deserialize, Serialize};

/// 3DES block size.
pub const BLOCK: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Ecb,
    Cbc,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Padding {
    #[default]
    Pkcs7,
    Zero,
}

/// One pile's cipher settings (the key is secret: never log a `PileCipher`).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PileCipher {
    /// The 3DES key: 24 bytes (three keys), as hex in JSON.
    #[serde(with = "hex::serde")]
    pub key: [u8; 24],
    #[serde(default)]
    pub mode: Mode,
    /// CBC's initialisation vector (8 bytes; zeros when not set).
    #[serde(default, with = "hex::serde")]
    pub iv: [u8; 8],
    #[serde(default)]
    pub padding: Padding,
}

impl std::fmt::Debug for PileCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PileCipher")
            .field("key", &"[redacted]")
            .field("mode", &self.mode)
            .field("padding", &self.padding)
            .finish()
    }
}

type EcbEnc = ecb::Encryptor<des::TdesEde3>;
type EcbDec = ecb::Decryptor<des::TdesEde3>;
type CbcEnc = cbc::Encryptor<des::TdesEde3>;
type CbcDec = cbc::Decryptor<des::TdesEde3>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CipherError {
    #[error("an encrypted body of {0} bytes is not a whole number of 8-byte blocks")]
    NotBlocks(usize),
    #[error("the decrypted body's padding is wrong (wrong key or settings?)")]
    BadPadding,
}

impl PileCipher {
    /// ECB with PKCS#7 under `key`.
    pub fn ecb(key: [u8; 24]) -> PileCipher {
        PileCipher {
            key,
            mode: Mode::Ecb,
            iv: [0; 8],
            padding: Padding::Pkcs7,
        }
    }

    /// A new random key with these settings.
    pub fn generate(mode: Mode, padding: Padding, iv: [u8; 8]) -> PileCipher {
        let mut key = [0u8; 24];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut key)
            .expect("the system's random source works");
        PileCipher {
            key,
            mode,
            iv,
            padding,
        }
    }

    pub fn encrypt(&self, body: &[u8]) -> Vec<u8> {
        let body = match self.padding {
            Padding::Pkcs7 => return self.encrypt_padded::<Pkcs7>(body),
            Padding::Zero => {
                let mut padded = body.to_vec();
                padded.resize(body.len().div_ceil(BLOCK) * BLOCK, 0);
                padded
            }
        };
        self.encrypt_padded::<NoPadding>(&body)
    }

    fn encrypt_padded<P: cbc::cipher::block_padding::Padding<cbc::cipher::consts::U8>>(
        &self,
        body: &[u8],
    ) -> Vec<u8> {
        match self.mode {
            Mode::Ecb => EcbEnc::new(&self.key.into()).encrypt_padded_vec_mut::<P>(body),
            Mode::Cbc => {
                CbcEnc::new(&self.key.into(), &self.iv.into()).encrypt_padded_vec_mut::<P>(body)
            }
        }
    }

    /// The plain body; with zero padding, still padded (the decoder knows the length).
    pub fn decrypt(&self, body: &[u8]) -> Result<Vec<u8>, CipherError> {
        if body.is_empty() || !body.len().is_multiple_of(BLOCK) {
            return Err(CipherError::NotBlocks(body.len()));
        }
        let plain = match (self.mode, self.padding) {
            (Mode::Ecb, Padding::Pkcs7) => {
                EcbDec::new(&self.key.into()).decrypt_padded_vec_mut::<Pkcs7>(body)
            }
            (Mode::Ecb, Padding::Zero) => {
                EcbDec::new(&self.key.into()).decrypt_padded_vec_mut::<NoPadding>(body)
            }
            (Mode::Cbc, Padding::Pkcs7) => {
                CbcDec::new(&self.key.into(), &self.iv.into()).decrypt_padded_vec_mut::<Pkcs7>(body)
            }
            (Mode::Cbc, Padding::Zero) => CbcDec::new(&self.key.into(), &self.iv.into())
                .decrypt_padded_vec_mut::<NoPadding>(body),
        };
        plain.map_err(|_| CipherError::BadPadding)
    }
}

#[cfg(test)]
mod tests;
