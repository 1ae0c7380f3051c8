//! Operators and their tokens, kept by the control plane.
//!
//! - `POST   /v1/login`                    [`LoginInput`] -> [`IssuedToken`] (a session,
//!   also set as the console's cookie); public
//! - `POST   /v1/logout`                   ends the session used (read)
//! - `GET    /v1/whoami`                   -> `pylon_proto::auth::Principal` (read)
//! - `GET    /v1/admin/users`              -> `Vec<User>` (admin)
//! - `POST   /v1/admin/users`              [`UserInput`] -> [`User`] (admin)
//! - `PUT    /v1/admin/users/{name}`       [`UserChange`] -> [`User`] (admin)
//! - `DELETE /v1/admin/users/{name}`       removes the user and revokes its tokens (admin)
//! - `GET    /v1/admin/tokens[?user=]`     -> `Vec<TokenInfo>` (admin)
//! - `POST   /v1/admin/tokens`             [`TokenInput`] -> [`IssuedToken`] (admin)
//! - `DELETE /v1/admin/tokens/{id}`        revokes it -> [`TokenInfo`] (admin)

use serde::{Deserialize, Serialize};

use crate::auth::Role;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub name: String,
    pub role: Role,
    pub disabled: bool,
    /// Unix seconds.
    pub created_at: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserInput {
    pub name: String,
    pub role: Role,
    /// At least 12 characters; kept only as an argon2id hash.
    pub password: String,
}

/// What to change of a user; absent fields stay.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct UserChange {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenKind {
    /// Made by an admin for a person or a program (`pylonctl tokens create`).
    Api,
    /// Made by logging in with a password (the console, `pylonctl login`).
    Session,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenInfo {
    /// 12 hex digits; the token's text is `pylon_<id>_<secret>`.
    pub id: String,
    /// What it is for ("grafana", "nightly export").
    pub name: String,
    pub user: String,
    /// The role it carries: its user's or a smaller one.
    pub role: Role,
    pub kind: TokenKind,
    pub created_at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenInput {
    pub user: String,
    pub name: String,
    /// Default: the user's role. May not exceed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// Default 90 days; 0: never expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_days: Option<u32>,
}

/// A new token: its text is shown here once and never again.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IssuedToken {
    pub token: String,
    pub info: TokenInfo,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoginInput {
    pub user: String,
    pub password: String,
}
