//! Sealing a part of a backup: AES-256-GCM over chunks, so a part of any size is sealed and
//! opened in constant memory, and any change, reordering or truncation is detected.
//!
//! The backup key (32 bytes, a key file) never encrypts directly: each part gets a random
//! 32-byte salt, and its own key is HKDF-SHA256(backup key, salt). Under that key, chunk
//! `i` has the nonce `i` (96 bits, big-endian), so no nonce repeats under a key. The last
//! chunk is marked in its associated data, so a part cut at a chunk boundary does not open.
//!
//! ```text
//! part   = MAGIC (8) | salt (32) | chunk*
//! chunk  = length of sealed (u32 BE) | sealed (ciphertext + 16-byte tag)
//! aad    = MAGIC | 0x00 (more chunks follow) or 0x01 (the last chunk)
//! ```

use std::io::{self, Read, Write};

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::digest::{Context as Digest, SHA256};
use ring::hkdf;
use ring::rand::{SecureRandom, SystemRandom};

const MAGIC: &[u8; 8] = b"PYLBAK01";
/// Plaintext per chunk.
pub const CHUNK: usize = 64 * 1024;
const TAG: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("not a sealed backup part (wrong header)")]
    NotSealed,
    #[error("the part does not open with this key, or was changed (chunk {0})")]
    Tampered(u64),
    #[error("the part ends early (after chunk {0}): it was cut short")]
    Truncated(u64),
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("the system's random source failed")]
    Random,
}

/// The backup key: 32 bytes, kept in a key file as 64 hex digits.
pub struct BackupKey([u8; 32]);

impl BackupKey {
    /// A new random key.
    pub fn generate() -> Result<BackupKey, SealError> {
        let mut key = [0u8; 32];
        SystemRandom::new()
            .fill(&mut key)
            .map_err(|_| SealError::Random)?;
        Ok(BackupKey(key))
    }

    /// The key from a key file's text (64 hex digits, surrounding whitespace ignored).
    pub fn from_text(text: &str) -> Result<BackupKey, String> {
        let bytes = hex::decode(text.trim())
            .map_err(|_| "the key file does not hold hex digits".to_owned())?;
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| "the key file must hold 32 bytes (64 hex digits)".to_owned())?;
        Ok(BackupKey(key))
    }

    /// The key file's text.
    pub fn to_text(&self) -> String {
        format!("{}\n", hex::encode(self.0))
    }

    /// A key for another purpose (`label`), so the manifest's MAC key is not a part key.
    pub(crate) fn derive(&self, salt: &[u8], label: &[u8]) -> [u8; 32] {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(&self.0);
        let mut out = [0u8; 32];
        // 32 bytes from HKDF-SHA256 is within its limit: expand and fill cannot fail.
        if let Ok(okm) = prk.expand(&[label], hkdf::HKDF_SHA256) {
            let _ = okm.fill(&mut out);
        }
        out
    }
}

impl std::fmt::Debug for BackupKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BackupKey(..)")
    }
}

/// SHA-256 of everything written through it, and the byte count.
pub struct Hashing<W> {
    inner: W,
    digest: Digest,
    bytes: u64,
}

impl<W> Hashing<W> {
    pub fn new(inner: W) -> Self {
        Hashing {
            inner,
            digest: Digest::new(&SHA256),
            bytes: 0,
        }
    }

    /// (hex SHA-256, bytes) and the inner writer.
    pub fn finish(self) -> (String, u64, W) {
        (
            hex::encode(self.digest.finish().as_ref()),
            self.bytes,
            self.inner,
        )
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.digest.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// SHA-256 (hex) and size of everything `reader` yields.
pub fn checksum(mut reader: impl Read) -> io::Result<(String, u64)> {
    let mut sink = Hashing::new(io::sink());
    io::copy(&mut reader, &mut sink)?;
    let (sum, bytes, _) = sink.finish();
    Ok((sum, bytes))
}

fn part_key(key: &BackupKey, salt: &[u8]) -> LessSafeKey {
    let bytes = key.derive(salt, b"pylon backup part v1");
    // A 32-byte key is what AES-256-GCM takes: this cannot fail.
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &bytes).expect("a 32-byte AES-256 key"))
}

fn nonce(index: u64) -> Nonce {
    let mut n = [0u8; NONCE_LEN];
    n[NONCE_LEN - 8..].copy_from_slice(&index.to_be_bytes());
    Nonce::assume_unique_for_key(n)
}

fn aad(last: bool) -> [u8; 9] {
    let mut a = [0u8; 9];
    a[..8].copy_from_slice(MAGIC);
    a[8] = u8::from(last);
    a
}

/// Reads up to `buf.len()` bytes, fewer only at the end.
fn fill(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Seals everything `plain` yields into `sealed`; returns the plaintext's (SHA-256, size).
pub fn seal(
    key: &BackupKey,
    mut plain: impl Read,
    sealed: impl Write,
) -> Result<(String, u64), SealError> {
    let mut salt = [0u8; 32];
    SystemRandom::new()
        .fill(&mut salt)
        .map_err(|_| SealError::Random)?;
    let key = part_key(key, &salt);
    let mut out = io::BufWriter::new(sealed);
    out.write_all(MAGIC)?;
    out.write_all(&salt)?;
    let mut digest = Digest::new(&SHA256);
    let mut size = 0u64;
    // One chunk ahead, so the last one is known to be last when it is sealed.
    let mut current = vec![0u8; CHUNK];
    let mut next = vec![0u8; CHUNK];
    let mut len = fill(&mut plain, &mut current)?;
    let mut index = 0u64;
    loop {
        let next_len = if len == CHUNK {
            fill(&mut plain, &mut next)?
        } else {
            0
        };
        let last = next_len == 0;
        digest.update(&current[..len]);
        size += len as u64;
        let mut chunk = current[..len].to_vec();
        key.seal_in_place_append_tag(nonce(index), Aad::from(aad(last)), &mut chunk)
            .map_err(|_| SealError::Tampered(index))?;
        out.write_all(&(chunk.len() as u32).to_be_bytes())?;
        out.write_all(&chunk)?;
        if last {
            break;
        }
        std::mem::swap(&mut current, &mut next);
        len = next_len;
        index += 1;
    }
    out.flush()?;
    Ok((hex::encode(digest.finish().as_ref()), size))
}

/// Opens a sealed part into `plain`; returns the plaintext's (SHA-256, size). Nothing is
/// trusted before its chunk's tag checked; a part that stops before its last chunk fails.
pub fn open(
    key: &BackupKey,
    sealed: impl Read,
    plain: impl Write,
) -> Result<(String, u64), SealError> {
    let mut input = io::BufReader::new(sealed);
    let mut header = [0u8; 40];
    if fill(&mut input, &mut header)? != header.len() || &header[..8] != MAGIC {
        return Err(SealError::NotSealed);
    }
    let key = part_key(key, &header[8..]);
    let mut out = Hashing::new(io::BufWriter::new(plain));
    let mut index = 0u64;
    let mut chunk = Vec::with_capacity(CHUNK + TAG);
    loop {
        let mut len = [0u8; 4];
        if fill(&mut input, &mut len)? != 4 {
            return Err(SealError::Truncated(index));
        }
        let len = u32::from_be_bytes(len) as usize;
        if !(TAG..=CHUNK + TAG).contains(&len) {
            return Err(SealError::Tampered(index));
        }
        chunk.resize(len, 0);
        if fill(&mut input, &mut chunk)? != len {
            return Err(SealError::Truncated(index));
        }
        // The last chunk says so in its associated data; try "more follow" first.
        let mut copy = chunk.clone();
        let (opened, last) =
            match key.open_in_place(nonce(index), Aad::from(aad(false)), &mut chunk) {
                Ok(p) => (p.len(), false),
                Err(_) => match key.open_in_place(nonce(index), Aad::from(aad(true)), &mut copy) {
                    Ok(p) => {
                        let n = p.len();
                        chunk = copy;
                        (n, true)
                    }
                    Err(_) => return Err(SealError::Tampered(index)),
                },
            };
        out.write_all(&chunk[..opened])?;
        if last {
            let mut extra = [0u8; 1];
            if fill(&mut input, &mut extra)? != 0 {
                return Err(SealError::Tampered(index + 1));
            }
            break;
        }
        index += 1;
    }
    out.flush()?;
    let (sum, size, _) = out.finish();
    Ok((sum, size))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(len: usize) {
        let key = BackupKey::generate().unwrap();
        let plain: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        let mut sealed = Vec::new();
        let (sum, size) = seal(&key, &plain[..], &mut sealed).unwrap();
        assert_eq!(size, len as u64);
        let mut back = Vec::new();
        let (sum2, size2) = open(&key, &sealed[..], &mut back).unwrap();
        assert_eq!((sum2, size2), (sum.clone(), size));
        assert_eq!(back, plain);
        assert_eq!(checksum(&plain[..]).unwrap().0, sum);
    }

    #[test]
    fn parts_of_any_size_open_to_what_was_sealed() {
        for len in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 3 * CHUNK + 17] {
            roundtrip(len);
        }
    }

    fn sealed(len: usize) -> (BackupKey, Vec<u8>) {
        let key = BackupKey::generate().unwrap();
        let plain = vec![9u8; len];
        let mut out = Vec::new();
        seal(&key, &plain[..], &mut out).unwrap();
        (key, out)
    }

    #[test]
    fn a_changed_byte_a_cut_or_another_key_does_not_open() {
        let (key, part) = sealed(2 * CHUNK + 5);
        for at in [40, 44 + 100, part.len() - 1] {
            let mut bad = part.clone();
            bad[at] ^= 1;
            assert!(matches!(
                open(&key, &bad[..], io::sink()),
                Err(SealError::Tampered(_))
            ));
        }
        // Cut after the first chunk, exactly on its boundary.
        let first = 40 + 4 + CHUNK + TAG;
        assert!(matches!(
            open(&key, &part[..first], io::sink()),
            Err(SealError::Truncated(1))
        ));
        assert!(matches!(
            open(&key, &part[..part.len() - 3], io::sink()),
            Err(SealError::Truncated(2))
        ));
        let other = BackupKey::generate().unwrap();
        assert!(matches!(
            open(&other, &part[..], io::sink()),
            Err(SealError::Tampered(0))
        ));
        assert!(matches!(
            open(&key, &b"plain text"[..], io::sink()),
            Err(SealError::NotSealed)
        ));
        let mut longer = part.clone();
        longer.push(0);
        assert!(open(&key, &longer[..], io::sink()).is_err());
    }

    #[test]
    fn key_files_hold_64_hex_digits() {
        let key = BackupKey::generate().unwrap();
        let again = BackupKey::from_text(&key.to_text()).unwrap();
        assert_eq!(key.0, again.0);
        assert!(BackupKey::from_text("abcd").is_err());
        assert!(BackupKey::from_text("zz").is_err());
        assert_eq!(format!("{key:?}"), "BackupKey(..)");
    }
}
