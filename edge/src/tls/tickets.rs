//! Session tickets sealed under keys every edge of a site shares, read from a file, so a
//! charger resumes its TLS session on whichever edge (process or machine) its reconnection
//! reaches. rustls's own ticketer makes a random key per process: with several edge
//! processes behind one address, a reconnection lands on another process about as often
//! as not, and then needs a full handshake.
//!
//! The file holds one key per line, 64 hex digits (32 random bytes: `openssl rand -hex
//! 32`); `#` starts a comment. The first key seals new tickets; every key opens them. To
//! rotate: put a new key first on every edge and reload, then drop the old one a ticket
//! lifetime later. A ticket is `key id (4 bytes) | nonce (12) | AES-256-GCM(state)`; the
//! key id is the start of the key's SHA-256, so a ticket under a key that is gone is
//! refused (a full handshake) rather than tried against every key.

use std::fmt;
use std::path::Path;

use anyhow::{bail, Context};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use rustls::server::ProducesTickets;

/// How long a charger may resume with a ticket, in seconds (rustls's own default).
const LIFETIME_SECS: u32 = 6 * 60 * 60;
const ID_LEN: usize = 4;

struct TicketKey {
    id: [u8; ID_LEN],
    key: LessSafeKey,
}

pub struct SharedTicketer {
    /// The first seals; all open.
    keys: Vec<TicketKey>,
    random: SystemRandom,
}

impl fmt::Debug for SharedTicketer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the keys themselves.
        f.debug_struct("SharedTicketer")
            .field("keys", &self.keys.len())
            .finish()
    }
}

impl SharedTicketer {
    /// Reads the keys from `path`.
    pub fn load(path: &Path) -> anyhow::Result<SharedTicketer> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the ticket key file {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("in the ticket key file {}", path.display()))
    }

    fn parse(text: &str) -> anyhow::Result<SharedTicketer> {
        let mut keys = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let bytes = hex::decode(line)
                .ok()
                .filter(|b| b.len() == 32)
                .with_context(|| format!("line {}: not 64 hex digits (32 bytes)", n + 1))?;
            let digest = ring::digest::digest(&ring::digest::SHA256, &bytes);
            let mut id = [0u8; ID_LEN];
            id.copy_from_slice(&digest.as_ref()[..ID_LEN]);
            let key = UnboundKey::new(&AES_256_GCM, &bytes)
                .map_err(|_| anyhow::anyhow!("line {}: not an AES-256 key", n + 1))?;
            keys.push(TicketKey {
                id,
                key: LessSafeKey::new(key),
            });
        }
        if keys.is_empty() {
            bail!("no key (one per line: 64 hex digits, e.g. from `openssl rand -hex 32`)");
        }
        Ok(SharedTicketer {
            keys,
            random: SystemRandom::new(),
        })
    }
}

impl ProducesTickets for SharedTicketer {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        LIFETIME_SECS
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        let sealing = self.keys.first()?;
        let mut nonce = [0u8; NONCE_LEN];
        self.random.fill(&mut nonce).ok()?;
        let mut ticket = Vec::with_capacity(ID_LEN + NONCE_LEN + plain.len() + 16);
        ticket.extend_from_slice(&sealing.id);
        ticket.extend_from_slice(&nonce);
        let mut sealed = plain.to_vec();
        sealing
            .key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&sealing.id),
                &mut sealed,
            )
            .ok()?;
        ticket.extend_from_slice(&sealed);
        Some(ticket)
    }

    /// Whatever a charger sends: anything short, unknown or forged is refused (`None`:
    /// a full handshake), never an error.
    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        let id = cipher.get(..ID_LEN)?;
        let nonce = cipher.get(ID_LEN..ID_LEN + NONCE_LEN)?;
        let sealed = cipher.get(ID_LEN + NONCE_LEN..)?;
        let key = self.keys.iter().find(|k| k.id == id)?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut opened = sealed.to_vec();
        let plain = key
            .key
            .open_in_place(nonce, Aad::from(&key.id), &mut opened)
            .ok()?;
        Some(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    const B: &str = "ff0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1eff";

    #[test]
    fn edges_sharing_a_key_open_each_others_tickets() {
        let one = SharedTicketer::parse(A).unwrap();
        let other = SharedTicketer::parse(&format!("# site key\n{A}\n")).unwrap();
        let ticket = one.encrypt(b"session state").unwrap();
        assert_eq!(other.decrypt(&ticket).unwrap(), b"session state");
        // A fresh nonce each time: the same state never seals to the same ticket.
        assert_ne!(one.encrypt(b"session state").unwrap(), ticket);
    }

    #[test]
    fn after_a_rotation_old_tickets_still_open_and_new_ones_use_the_new_key() {
        let before = SharedTicketer::parse(A).unwrap();
        let rotated = SharedTicketer::parse(&format!("{B}\n{A}\n")).unwrap();
        let old = before.encrypt(b"old").unwrap();
        assert_eq!(rotated.decrypt(&old).unwrap(), b"old");
        let new = rotated.encrypt(b"new").unwrap();
        assert!(before.decrypt(&new).is_none(), "sealed under the new key");
        let retired = SharedTicketer::parse(B).unwrap();
        assert!(retired.decrypt(&old).is_none(), "the old key is gone");
    }

    #[test]
    fn forged_cut_or_foreign_tickets_are_refused() {
        let t = SharedTicketer::parse(A).unwrap();
        let mut ticket = t.encrypt(b"state").unwrap();
        for len in 0..ticket.len() {
            assert!(t.decrypt(&ticket[..len]).is_none(), "cut to {len}");
        }
        let last = ticket.len() - 1;
        ticket[last] ^= 1;
        assert!(t.decrypt(&ticket).is_none());
        assert!(SharedTicketer::parse(B)
            .unwrap()
            .decrypt(&t.encrypt(b"x").unwrap())
            .is_none());
    }

    #[test]
    fn a_bad_key_file_is_refused() {
        assert!(SharedTicketer::parse("").is_err());
        assert!(SharedTicketer::parse("# only a comment\n").is_err());
        assert!(SharedTicketer::parse("abcd").is_err());
        assert!(SharedTicketer::parse(&A.replace('0', "g")).is_err());
    }
}
