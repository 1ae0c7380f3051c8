//! Operators and their tokens, kept in the registry beside the cluster (so every replica
//! sees the same users, and etcd replicates them):
//!
//! - `/pylon-identity/users/<name>`  -> [`UserRecord`] (the password as an argon2id hash)
//! - `/pylon-identity/tokens/<id>`   -> [`TokenRecord`] (the token as its SHA-256 digest)
//!
//! Outside the cluster's `/pylon/` prefix, so the mirror of members and shards never
//! reads them. The bootstrap admin token (`--admin-token`) is accepted only while no
//! enabled admin user exists: it is there to create the first one.

pub mod http;
pub mod lockout;
pub mod password;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pylon_proto::api::identity::{IssuedToken, TokenInfo, TokenInput, TokenKind, User, UserInput};
use pylon_proto::auth::{new_token, new_token_id, same_digest, token_digest, Principal, Role};
use serde::{Deserialize, Serialize};

use crate::registry::{Registry, RegistryError};

const USERS: &str = "/pylon-identity/users/";
const TOKENS: &str = "/pylon-identity/tokens/";
/// A console or `pylonctl login` session lasts this long.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// A named token's default lifetime.
pub const DEFAULT_TOKEN_DAYS: u32 = 90;

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0} exists already")]
    Exists(String),
    #[error("wrong user name or password")]
    BadLogin,
    #[error("too many wrong passwords for this user: try again in {0} s")]
    Locked(u64),
    #[error("registry: {0}")]
    Registry(#[from] RegistryError),
    #[error("stored identity record {0} is unreadable: {1}")]
    Corrupt(String, String),
}

type Result<T> = std::result::Result<T, IdentityError>;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserRecord {
    pub name: String,
    pub role: Role,
    pub password_hash: String,
    pub disabled: bool,
    pub created_at: u64,
}

impl UserRecord {
    fn public(&self) -> User {
        User {
            name: self.name.clone(),
            role: self.role,
            disabled: self.disabled,
            created_at: self.created_at,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenRecord {
    pub info: TokenInfo,
    /// Hex SHA-256 of the token's text.
    pub digest: String,
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A user name: 1 to 64 of letters, digits, `.`, `-`, `_`, `@`.
pub fn check_user_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-@".contains(&b))
        && name != "bootstrap"
        && name != "insecure-dev";
    if ok {
        Ok(())
    } else {
        Err(IdentityError::Invalid(format!(
            "user name {name:?}: 1-64 letters, digits, '.', '-', '_' or '@' (and not a reserved name)"
        )))
    }
}

pub struct Identity {
    registry: Arc<dyn Registry>,
    /// SHA-256 of the bootstrap admin token, if one is configured.
    bootstrap: Option<[u8; 32]>,
    /// Wrong passwords per user name, on this replica.
    lockouts: Mutex<lockout::Lockouts>,
}

impl Identity {
    pub fn new(registry: Arc<dyn Registry>, bootstrap_token: Option<&str>) -> Identity {
        Identity {
            registry,
            bootstrap: bootstrap_token.filter(|t| !t.is_empty()).map(token_digest),
            lockouts: Mutex::new(lockout::Lockouts::new(lockout::Policy::default())),
        }
    }

    async fn read<T: for<'de> Deserialize<'de>>(&self, key: &str) -> Result<Option<T>> {
        match self.registry.get(key).await? {
            None => Ok(None),
            Some(kv) => serde_json::from_slice(&kv.value)
                .map(Some)
                .map_err(|e| IdentityError::Corrupt(key.into(), e.to_string())),
        }
    }

    async fn write<T: Serialize>(&self, key: &str, value: &T) -> Result<()> {
        let bytes = serde_json::to_vec(value).map_err(|e| IdentityError::Invalid(e.to_string()))?;
        self.registry.put(key, bytes, None).await?;
        Ok(())
    }

    async fn all<T: for<'de> Deserialize<'de>>(&self, prefix: &str) -> Result<Vec<T>> {
        let listing = self.registry.list(prefix).await?;
        listing
            .items
            .iter()
            .map(|kv| {
                serde_json::from_slice(&kv.value)
                    .map_err(|e| IdentityError::Corrupt(kv.key.clone(), e.to_string()))
            })
            .collect()
    }

    async fn user_record(&self, name: &str) -> Result<UserRecord> {
        self.read(&format!("{USERS}{name}"))
            .await?
            .ok_or_else(|| IdentityError::NotFound(format!("user {name}")))
    }

    /// Whether an enabled admin user exists (then the bootstrap token is retired).
    pub async fn has_admin(&self) -> Result<bool> {
        Ok(self
            .all::<UserRecord>(USERS)
            .await?
            .iter()
            .any(|u| u.role == Role::Admin && !u.disabled))
    }

    pub async fn users(&self) -> Result<Vec<User>> {
        Ok(self
            .all::<UserRecord>(USERS)
            .await?
            .iter()
            .map(UserRecord::public)
            .collect())
    }

    pub async fn user(&self, name: &str) -> Result<User> {
        Ok(self.user_record(name).await?.public())
    }

    pub async fn create_user(&self, input: &UserInput) -> Result<User> {
        check_user_name(&input.name)?;
        password::check_strength(&input.password).map_err(IdentityError::Invalid)?;
        let record = UserRecord {
            name: input.name.clone(),
            role: input.role,
            password_hash: password::hash(&input.password).map_err(IdentityError::Invalid)?,
            disabled: false,
            created_at: now_secs(),
        };
        let bytes =
            serde_json::to_vec(&record).map_err(|e| IdentityError::Invalid(e.to_string()))?;
        if !self
            .registry
            .create(&format!("{USERS}{}", input.name), bytes, None)
            .await?
        {
            return Err(IdentityError::Exists(format!("user {}", input.name)));
        }
        Ok(record.public())
    }

    /// Changes a user's role, password or state; returns (before, after).
    pub async fn change_user(
        &self,
        name: &str,
        change: &pylon_proto::api::identity::UserChange,
    ) -> Result<(User, User)> {
        let mut record = self.user_record(name).await?;
        let before = record.public();
        if let Some(role) = change.role {
            record.role = role;
        }
        if let Some(disabled) = change.disabled {
            record.disabled = disabled;
        }
        if let Some(new) = &change.password {
            password::check_strength(new).map_err(IdentityError::Invalid)?;
            record.password_hash = password::hash(new).map_err(IdentityError::Invalid)?;
        }
        self.write(&format!("{USERS}{name}"), &record).await?;
        Ok((before, record.public()))
    }

    /// Removes a user and revokes every token of theirs.
    pub async fn delete_user(&self, name: &str) -> Result<User> {
        let record = self.user_record(name).await?;
        for token in self.tokens(Some(name)).await? {
            if token.revoked_at.is_none() {
                self.revoke(&token.id).await?;
            }
        }
        self.registry.delete(&format!("{USERS}{name}")).await?;
        Ok(record.public())
    }

    pub async fn tokens(&self, user: Option<&str>) -> Result<Vec<TokenInfo>> {
        let mut tokens: Vec<TokenInfo> = self
            .all::<TokenRecord>(TOKENS)
            .await?
            .into_iter()
            .map(|r| r.info)
            .filter(|t| user.is_none_or(|u| t.user == u))
            .collect();
        tokens.sort_by_key(|t| t.created_at);
        Ok(tokens)
    }

    pub async fn token(&self, id: &str) -> Result<Option<TokenInfo>> {
        Ok(self
            .read::<TokenRecord>(&format!("{TOKENS}{id}"))
            .await?
            .map(|r| r.info))
    }

    async fn issue(
        &self,
        user: &UserRecord,
        name: &str,
        role: Role,
        kind: TokenKind,
        lifetime: Option<Duration>,
    ) -> Result<IssuedToken> {
        let now = now_secs();
        let id = new_token_id();
        let token = new_token(&id);
        let info = TokenInfo {
            id: id.clone(),
            name: name.to_owned(),
            user: user.name.clone(),
            role,
            kind,
            created_at: now,
            expires_at: lifetime.map(|l| now + l.as_secs()),
            revoked_at: None,
        };
        let record = TokenRecord {
            info: info.clone(),
            digest: hex::encode(token_digest(&token)),
        };
        self.write(&format!("{TOKENS}{id}"), &record).await?;
        Ok(IssuedToken { token, info })
    }

    /// A named API token for a user, carrying the user's role or a smaller one.
    pub async fn create_token(&self, input: &TokenInput) -> Result<IssuedToken> {
        let user = self.user_record(&input.user).await?;
        if input.name.trim().is_empty() || input.name.len() > 100 {
            return Err(IdentityError::Invalid(
                "a token needs a name of 1-100 characters (what it is for)".into(),
            ));
        }
        let role = input.role.unwrap_or(user.role);
        if !user.role.covers(role) {
            return Err(IdentityError::Invalid(format!(
                "a token of {} ({}) cannot carry the {} role",
                user.name,
                user.role.as_str(),
                role.as_str()
            )));
        }
        let days = input.expires_in_days.unwrap_or(DEFAULT_TOKEN_DAYS);
        let lifetime = (days > 0).then(|| Duration::from_secs(u64::from(days) * 86_400));
        self.issue(&user, &input.name, role, TokenKind::Api, lifetime)
            .await
    }

    /// A session token for a user who gives their password.
    pub async fn login(&self, user: &str, password: &str) -> Result<IssuedToken> {
        // A name no user can have is refused at once, and not tracked.
        if check_user_name(user).is_err() {
            return Err(IdentityError::BadLogin);
        }
        let lockouts = || self.lockouts.lock().unwrap_or_else(|p| p.into_inner());
        lockouts()
            .begin(user, now_secs())
            .map_err(IdentityError::Locked)?;
        let outcome = self.check_password(user, password).await;
        match &outcome {
            // The registry did not answer: no verdict on the password.
            Err(_) => lockouts().abandon(user),
            Ok(found) => {
                if let Some(secs) = lockouts().finish(user, found.is_some(), now_secs()) {
                    tracing::warn!(%user, secs, "too many wrong passwords: the user is locked");
                }
            }
        }
        let record = outcome?.ok_or(IdentityError::BadLogin)?;
        self.issue(
            &record,
            "session",
            record.role,
            TokenKind::Session,
            Some(SESSION_TTL),
        )
        .await
    }

    /// The user whose password `password` is, if it is theirs and they are enabled.
    async fn check_password(&self, user: &str, password: &str) -> Result<Option<UserRecord>> {
        let record = self.read::<UserRecord>(&format!("{USERS}{user}")).await?;
        // Every refusal costs one argon2 verification, so the answer's time does not say
        // whether the user exists or is disabled. The work runs off the async workers,
        // a few at a time, so a flood of logins cannot stall membership and leadership.
        let stored = record
            .as_ref()
            .map(|r| r.password_hash.clone())
            .unwrap_or_else(|| password::dummy_hash().to_owned());
        let matches = password::verify_blocking(password.to_owned(), stored).await;
        Ok(record.filter(|r| matches && !r.disabled))
    }

    /// Revokes a token; returns it as it was before.
    pub async fn revoke(&self, id: &str) -> Result<TokenInfo> {
        let key = format!("{TOKENS}{id}");
        let mut record: TokenRecord = self
            .read(&key)
            .await?
            .ok_or_else(|| IdentityError::NotFound(format!("token {id}")))?;
        let before = record.info.clone();
        if record.info.revoked_at.is_none() {
            record.info.revoked_at = Some(now_secs());
            self.write(&key, &record).await?;
        }
        Ok(before)
    }

    /// Who holds a token, given its id (from its text) and digest; `None` for a token
    /// that is unknown, revoked, expired, or whose user is disabled, gone or no longer
    /// holds the token's role.
    pub async fn authenticate(&self, token_id: &str, digest: &[u8]) -> Result<Option<Principal>> {
        if let Some(bootstrap) = &self.bootstrap {
            if same_digest(digest, bootstrap) {
                return Ok((!self.has_admin().await?).then(Principal::bootstrap));
            }
        }
        if token_id.is_empty() || token_id.len() > 32 {
            return Ok(None);
        }
        let Some(record) = self
            .read::<TokenRecord>(&format!("{TOKENS}{token_id}"))
            .await?
        else {
            return Ok(None);
        };
        let stored = hex::decode(&record.digest).unwrap_or_default();
        let info = &record.info;
        let now = now_secs();
        if !same_digest(digest, &stored)
            || info.revoked_at.is_some()
            || info.expires_at.is_some_and(|at| at <= now)
        {
            return Ok(None);
        }
        let Some(user) = self
            .read::<UserRecord>(&format!("{USERS}{}", info.user))
            .await?
        else {
            return Ok(None);
        };
        if user.disabled || !user.role.covers(info.role) {
            return Ok(None);
        }
        Ok(Some(Principal {
            user: user.name,
            role: info.role,
            token_id: Some(info.id.clone()),
        }))
    }

    /// Whether the bootstrap token is configured.
    pub fn has_bootstrap(&self) -> bool {
        self.bootstrap.is_some()
    }
}

/// The control plane checks tokens in its own registry.
impl pylon_service::auth::TokenVerifier for Identity {
    fn verify<'a>(
        &'a self,
        token: &'a str,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = pylon_service::auth::Verdict> + Send + 'a>,
    > {
        Box::pin(async move {
            let id = pylon_proto::auth::token_id(token).unwrap_or_default();
            self.authenticate(id, &token_digest(token))
                .await
                .map_err(|e| e.to_string())
        })
    }
}

#[cfg(test)]
mod tests;
