//! Who may do what on our HTTP and gRPC APIs: bearer tokens (`Authorization: Bearer
//! <token>`), the roles operators hold and the permission each API route declares.

use serde::{Deserialize, Serialize};

/// What an API route needs. Each route of every service declares one (or is public:
/// `/metrics`, `/healthz`, `/readyz`, dispatch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    /// See anything but secrets: status, piles, orders, records, routes.
    Read,
    /// Act on piles: remote start and stop, downlink frames, settings pushed to piles;
    /// register, edit and enable piles and stations.
    Command,
    /// Take edges in and out of service (drain, undrain) and edit the SYN guard.
    Drain,
    /// Acknowledge and resolve alarms.
    Alarms,
    /// Money: accounts, top-ups, refunds, tariffs, reports.
    Finance,
    /// Users, tokens, keys, configuration and the audit log.
    Admin,
}

impl Permission {
    pub const ALL: [Permission; 6] = [
        Permission::Read,
        Permission::Command,
        Permission::Drain,
        Permission::Alarms,
        Permission::Finance,
        Permission::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Read => "read",
            Permission::Command => "command",
            Permission::Drain => "drain",
            Permission::Alarms => "alarms",
            Permission::Finance => "finance",
            Permission::Admin => "admin",
        }
    }
}

/// An operator's role: a fixed set of permissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Looks, changes nothing.
    Viewer,
    /// Runs the network: commands to piles, drain, alarms.
    Operator,
    /// Runs the money: accounts, refunds, tariffs, reports.
    Finance,
    /// Everything, including users, tokens, keys and configuration.
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Viewer, Role::Operator, Role::Finance, Role::Admin];

    pub fn allows(self, permission: Permission) -> bool {
        use Permission as P;
        match self {
            Role::Admin => true,
            Role::Viewer => permission == P::Read,
            Role::Operator => matches!(permission, P::Read | P::Command | P::Drain | P::Alarms),
            Role::Finance => matches!(permission, P::Read | P::Finance),
        }
    }

    /// Whether this role can do everything `other` can (a token may not carry more
    /// than its user's role).
    pub fn covers(self, other: Role) -> bool {
        Permission::ALL
            .iter()
            .all(|p| !other.allows(*p) || self.allows(*p))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Finance => "finance",
            Role::Admin => "admin",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Role, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown role {s:?} (viewer, operator, finance or admin)"))
    }
}

/// Who is calling, once their token has been checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    /// The user's name; `bootstrap` for a service's bootstrap admin token,
    /// `insecure-dev` when a service runs without credentials on purpose.
    pub user: String,
    pub role: Role,
    /// The named token used, if any (its id, never its secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_id: Option<String>,
}

impl Principal {
    pub fn bootstrap() -> Principal {
        Principal {
            user: "bootstrap".into(),
            role: Role::Admin,
            token_id: None,
        }
    }

    pub fn insecure_dev() -> Principal {
        Principal {
            user: "insecure-dev".into(),
            role: Role::Admin,
            token_id: None,
        }
    }
}

/// Named tokens look like `pylon_<id>_<secret>`: the id (12 hex digits) names the token in
/// lists, logs and the audit log; only the secret's holder can use it.
pub const TOKEN_PREFIX: &str = "pylon_";

/// A new named token's text for `id`, with 32 random bytes as its secret.
pub fn new_token(id: &str) -> String {
    let mut secret = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut secret)
        .expect("the system's random source works");
    format!("{TOKEN_PREFIX}{id}_{}", hex::encode(secret))
}

/// A new token id: 12 random hex digits.
pub fn new_token_id() -> String {
    let mut id = [0u8; 6];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut id)
        .expect("the system's random source works");
    hex::encode(id)
}

/// The id of a named token (`None` for any other text).
pub fn token_id(token: &str) -> Option<&str> {
    let rest = token.strip_prefix(TOKEN_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    (id.len() == 12 && id.bytes().all(|b| b.is_ascii_hexdigit()) && !secret.is_empty())
        .then_some(id)
}

/// SHA-256 of a token: what is stored and what travels, never the token.
pub fn token_digest(token: &str) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Compares two digests in constant time.
pub fn same_digest(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The token of an `Authorization: Bearer <token>` header value.
pub fn bearer_token(header: Option<&str>) -> Option<&str> {
    header
        .and_then(|v| v.strip_prefix("Bearer "))
        .filter(|t| !t.is_empty())
}

/// Whether the `Authorization` header value presents `expected`. The comparison takes
/// the same time wherever the tokens differ, and whatever their lengths.
pub fn bearer_matches(header: Option<&str>, expected: &str) -> bool {
    header
        .and_then(|v| v.strip_prefix("Bearer "))
        // An empty configured token would let anyone in: it matches nothing.
        .is_some_and(|presented| !expected.is_empty() && same_token(presented, expected))
}

/// A gRPC request carrying `token` (if any) as `authorization: Bearer <token>`.
pub fn with_bearer<T>(message: T, token: Option<&str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(value) = token.and_then(|t| format!("Bearer {t}").parse().ok()) {
        request.metadata_mut().insert("authorization", value);
    }
    request
}

/// Compares SHA-256 digests of the two tokens, every byte of them: the time taken tells
/// nothing about where they differ, nor how long the expected token is.
pub fn same_token(presented: &str, expected: &str) -> bool {
    same_digest(&token_digest(presented), &token_digest(expected))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_hold_their_permissions_only() {
        use Permission as P;
        assert!(Role::Viewer.allows(P::Read));
        assert!(!Role::Viewer.allows(P::Command));
        assert!(Role::Operator.allows(P::Drain) && Role::Operator.allows(P::Alarms));
        assert!(!Role::Operator.allows(P::Finance) && !Role::Operator.allows(P::Admin));
        assert!(Role::Finance.allows(P::Finance) && !Role::Finance.allows(P::Command));
        assert!(P::ALL.iter().all(|p| Role::Admin.allows(*p)));
        assert!(Role::Admin.covers(Role::Finance) && Role::Operator.covers(Role::Viewer));
        assert!(!Role::Operator.covers(Role::Finance) && !Role::Viewer.covers(Role::Operator));
        assert_eq!("finance".parse::<Role>(), Ok(Role::Finance));
        assert!("root".parse::<Role>().is_err());
    }

    #[test]
    fn named_tokens_carry_their_id() {
        let id = new_token_id();
        let token = new_token(&id);
        assert_eq!(token_id(&token), Some(id.as_str()));
        assert_ne!(new_token(&id), token, "secrets are random");
        assert_eq!(token_id("pylon_abc_def"), None, "id too short");
        assert_eq!(token_id("pylon_0123456789ab_"), None, "no secret");
        assert_eq!(token_id("s3cret"), None);
        assert!(same_digest(&token_digest("a"), &token_digest("a")));
        assert!(!same_digest(&token_digest("a"), &token_digest("b")));
    }

    #[test]
    fn only_the_whole_token_passes() {
        assert!(bearer_matches(Some("Bearer abc"), "abc"));
        assert!(!bearer_matches(Some("Bearer abd"), "abc"));
        assert!(!bearer_matches(Some("Bearer abcd"), "abc"));
        assert!(!bearer_matches(Some("abc"), "abc"));
        assert!(!bearer_matches(None, "abc"));
        assert!(!bearer_matches(Some("Bearer "), "abc"));
        assert!(!bearer_matches(Some("Bearer abc "), "abc"));
        assert!(
            !bearer_matches(Some("Bearer "), ""),
            "an empty token lets no one in"
        );
    }
}
