//! Card numbers, card passwords and VINs at rest: sealed with AES-256-GCM under a key
//! from a file (the key's id is stored with each value, so keys can be rotated), found
//! through a keyed hash (HMAC-SHA256) index, and masked wherever they are shown.
//!
//! The key file is TOML:
//!
//! ```toml
//! current = "k2"               # new values are sealed with this key
//! index = "<64 hex digits>"    # the lookup key; it never rotates
//! [keys]
//! k1 = "<64 hex digits>"
//! k2 = "<64 hex digits>"
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("card key file {path}: {reason}")]
    File { path: String, reason: String },
    #[error("a sealed value names key {0:?}, which the key file does not have")]
    UnknownKey(String),
    #[error("a sealed value is damaged or was sealed with another key")]
    Damaged,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    current: String,
    index: String,
    keys: BTreeMap<String, String>,
}

/// The keys of one key file, as last read.
struct Keys {
    current: String,
    keys: BTreeMap<String, LessSafeKey>,
    index: ring::hmac::Key,
}

pub struct Vault {
    path: std::path::PathBuf,
    keys: std::sync::RwLock<Keys>,
    random: SystemRandom,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys = self.read();
        f.debug_struct("Vault")
            .field("path", &self.path)
            .field("current", &keys.current)
            .field("keys", &keys.keys.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

fn key_bytes(hex_text: &str) -> Option<[u8; 32]> {
    hex::decode(hex_text.trim()).ok()?.try_into().ok()
}

impl Vault {
    /// Reads a key file.
    pub fn from_file(path: &Path) -> Result<Vault, VaultError> {
        Ok(Vault {
            path: path.to_path_buf(),
            keys: std::sync::RwLock::new(Self::read_file(path)?),
            random: SystemRandom::new(),
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Keys> {
        self.keys.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a new key to the file, makes it current and starts sealing with it; values
    /// sealed before still open. Returns the new key's id.
    pub fn rotate(&self) -> Result<String, VaultError> {
        let id = Self::add_key_to_file(&self.path)?;
        let keys = Self::read_file(&self.path)?;
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = keys;
        Ok(id)
    }

    fn read_file(path: &Path) -> Result<Keys, VaultError> {
        let fail = |reason: String| VaultError::File {
            path: path.display().to_string(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
        let file: KeyFile = toml::from_str(&text).map_err(|e| fail(e.to_string()))?;
        let mut keys = BTreeMap::new();
        for (id, secret) in &file.keys {
            if id.is_empty() || id.contains(':') {
                return Err(fail(format!(
                    "key id {id:?} must be non-empty, without ':'"
                )));
            }
            let bytes = key_bytes(secret)
                .ok_or_else(|| fail(format!("key {id:?} is not 64 hex digits")))?;
            let key = UnboundKey::new(&AES_256_GCM, &bytes)
                .map_err(|_| fail(format!("key {id:?} is not an AES-256 key")))?;
            keys.insert(id.clone(), LessSafeKey::new(key));
        }
        if !keys.contains_key(&file.current) {
            return Err(fail(format!(
                "the current key {:?} is not among [keys]",
                file.current
            )));
        }
        let index =
            key_bytes(&file.index).ok_or_else(|| fail("index is not 64 hex digits".into()))?;
        Ok(Keys {
            current: file.current,
            keys,
            index: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &index),
        })
    }

    /// Writes a new key file with one sealing key and an index key (mode 0600).
    pub fn create_file(path: &Path) -> Result<(), VaultError> {
        let file = KeyFile {
            current: "k1".into(),
            index: new_key(path)?,
            keys: BTreeMap::from([("k1".to_owned(), new_key(path)?)]),
        };
        write_key_file(path, &file)
    }

    /// Adds a new key to a key file and makes it current; returns its id.
    pub fn add_key_to_file(path: &Path) -> Result<String, VaultError> {
        let text = std::fs::read_to_string(path).map_err(|e| file_error(path, e))?;
        let mut file: KeyFile = toml::from_str(&text).map_err(|e| file_error(path, e))?;
        let id = (1..)
            .map(|n| format!("k{n}"))
            .find(|id| !file.keys.contains_key(id))
            .unwrap_or_else(|| "k0".into());
        file.keys.insert(id.clone(), new_key(path)?);
        file.current = id.clone();
        write_key_file(path, &file)?;
        Ok(id)
    }

    /// The id of the key new values are sealed with.
    pub fn current_key(&self) -> String {
        self.read().current.clone()
    }

    /// `<key id>:<hex of nonce, ciphertext and tag>`.
    pub fn seal(&self, plain: &str) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        // SystemRandom reads the kernel's getrandom; it does not fail on Linux.
        let _ = self.random.fill(&mut nonce);
        let mut data = plain.as_bytes().to_vec();
        let keys = self.read();
        let sealed = keys.keys.get(&keys.current).and_then(|key| {
            key.seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(keys.current.as_bytes()),
                &mut data,
            )
            .ok()
        });
        match sealed {
            Some(()) => format!(
                "{}:{}{}",
                keys.current,
                hex::encode(nonce),
                hex::encode(&data)
            ),
            // Unreachable (the current key was checked at load); never store clear text.
            None => format!("{}:", keys.current),
        }
    }

    pub fn open(&self, sealed: &str) -> Result<String, VaultError> {
        let (id, body) = sealed.split_once(':').ok_or(VaultError::Damaged)?;
        let keys = self.read();
        let key = keys
            .keys
            .get(id)
            .ok_or_else(|| VaultError::UnknownKey(id.to_owned()))?;
        let mut bytes = hex::decode(body).map_err(|_| VaultError::Damaged)?;
        if bytes.len() < NONCE_LEN {
            return Err(VaultError::Damaged);
        }
        let data = bytes.split_off(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = bytes.try_into().map_err(|_| VaultError::Damaged)?;
        let mut data = data;
        let plain = key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(id.as_bytes()),
                &mut data,
            )
            .map_err(|_| VaultError::Damaged)?;
        String::from_utf8(plain.to_vec()).map_err(|_| VaultError::Damaged)
    }

    /// The key id a sealed value names.
    pub fn key_of(sealed: &str) -> &str {
        sealed.split_once(':').map_or("", |(id, _)| id)
    }

    /// The lookup index of a value of `kind` ("card", "vin"): equal values give equal
    /// indexes, and nothing about the value can be learnt from one without the key.
    pub fn index(&self, kind: &str, plain: &str) -> String {
        let mut input = Vec::with_capacity(kind.len() + 1 + plain.len());
        input.extend_from_slice(kind.as_bytes());
        input.push(0);
        input.extend_from_slice(plain.as_bytes());
        hex::encode(ring::hmac::sign(&self.read().index, &input).as_ref())
    }
}

fn file_error(path: &Path, reason: impl std::fmt::Display) -> VaultError {
    VaultError::File {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// 32 random bytes, as hex.
fn new_key(path: &Path) -> Result<String, VaultError> {
    let mut key = [0u8; 32];
    SystemRandom::new()
        .fill(&mut key)
        .map_err(|_| file_error(path, "no randomness"))?;
    Ok(hex::encode(key))
}

fn write_key_file(path: &Path, file: &KeyFile) -> Result<(), VaultError> {
    let text = toml::to_string(file).map_err(|e| file_error(path, e))?;
    write_private(path, &text).map_err(|e| file_error(path, e))
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// The first four characters and `****` (`D14B****`): enough to tell cards apart on a
/// screen, not enough to use one.
pub fn mask(value: &str) -> String {
    let shown: String = value.chars().take(4).collect();
    format!("{shown}****")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vault(dir: &Path) -> Vault {
        let path = dir.join("keys.toml");
        Vault::create_file(&path).expect("created");
        Vault::from_file(&path).expect("read")
    }

    #[test]
    fn values_are_sealed_opened_and_indexed() {
        let dir = tempfile::tempdir().expect("dir");
        let v = vault(dir.path());
        let sealed = v.seal("00000000D14B0A54");
        assert!(!sealed.contains("D14B0A54"));
        assert!(sealed.starts_with("k1:"));
        assert_ne!(
            sealed,
            v.seal("00000000D14B0A54"),
            "a fresh nonce each time"
        );
        assert_eq!(v.open(&sealed).expect("opens"), "00000000D14B0A54");
        assert_eq!(v.index("card", "D14B0A54"), v.index("card", "D14B0A54"));
        assert_ne!(v.index("card", "D14B0A54"), v.index("vin", "D14B0A54"));
        assert!(!v.index("card", "D14B0A54").contains("D14B"));
    }

    #[test]
    fn a_damaged_or_foreign_value_does_not_open() {
        let dir = tempfile::tempdir().expect("dir");
        let v = vault(dir.path());
        let mut sealed = v.seal("secret");
        let last = sealed.pop().expect("char");
        sealed.push(if last == '0' { '1' } else { '0' });
        assert!(matches!(v.open(&sealed), Err(VaultError::Damaged)));
        assert!(matches!(v.open("k9:00"), Err(VaultError::UnknownKey(_))));
        assert!(matches!(v.open("nonsense"), Err(VaultError::Damaged)));
        assert!(matches!(v.open("k1:zz"), Err(VaultError::Damaged)));
    }

    #[test]
    fn a_vault_rotates_in_place() {
        let dir = tempfile::tempdir().expect("dir");
        let v = vault(dir.path());
        let old = v.seal("D14B0A54");
        let index = v.index("card", "D14B0A54");
        assert_eq!(v.rotate().expect("rotated"), "k2");
        assert_eq!(Vault::key_of(&v.seal("x")), "k2");
        assert_eq!(v.open(&old).expect("old value"), "D14B0A54");
        assert_eq!(
            v.index("card", "D14B0A54"),
            index,
            "the index key never rotates"
        );
    }

    #[test]
    fn a_rotated_file_seals_with_the_new_key_and_opens_old_values() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("keys.toml");
        Vault::create_file(&path).expect("created");
        let old = Vault::from_file(&path).expect("read");
        let sealed = old.seal("VIN123");
        assert_eq!(Vault::add_key_to_file(&path).expect("rotated"), "k2");
        let new = Vault::from_file(&path).expect("read");
        assert_eq!(new.current_key(), "k2");
        assert_eq!(new.open(&sealed).expect("old value"), "VIN123");
        assert_eq!(Vault::key_of(&new.seal("x")), "k2");
        assert_eq!(new.index("vin", "VIN123"), old.index("vin", "VIN123"));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn masks_show_four_characters() {
        assert_eq!(mask("D14B0A54"), "D14B****");
        assert_eq!(mask("ab"), "ab****");
    }

    #[test]
    fn bad_key_files_say_why() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("k.toml");
        std::fs::write(
            &path,
            "current = \"k1\"\nindex = \"00\"\n[keys]\nk1 = \"00\"\n",
        )
        .expect("w");
        let e = Vault::from_file(&path).expect_err("bad");
        assert!(e.to_string().contains("64 hex digits"), "{e}");
    }
}
