//! How `pylonctl users`, `tokens`, `login`, `logout` and `whoami` print the control
//! plane's replies for people. Times in UTC; a token's text only in the one reply that
//! carries it.

use std::fmt::Write as _;

use pylon_proto::api::identity::{IssuedToken, TokenInfo, TokenKind, User};
use pylon_proto::auth::Principal;

use super::control::{fields, table};
use crate::units::format_time;

/// Unix seconds as `2024-05-01T08:00:00Z`.
pub fn secs_time(secs: u64) -> String {
    format_time(i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX))
}

fn kind(k: TokenKind) -> &'static str {
    match k {
        TokenKind::Api => "api",
        TokenKind::Session => "session",
    }
}

fn expiry(t: &TokenInfo) -> String {
    t.expires_at.map_or_else(|| "never".into(), secs_time)
}

/// `users list`.
pub fn users(list: &[User]) -> String {
    if list.is_empty() {
        return "No users: add one with `pylonctl users create NAME --role ROLE`.\n".into();
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|u| {
            vec![
                u.name.clone(),
                u.role.as_str().to_owned(),
                if u.disabled { "yes" } else { "no" }.into(),
                secs_time(u.created_at),
            ]
        })
        .collect();
    table(&["NAME", "ROLE", "DISABLED", "CREATED"], &rows)
}

/// The confirmation of `users create`.
pub fn user_created(u: &User) -> String {
    format!(
        "User {name} added with the {role} role. They log in with:\n  pylonctl login --user \
         {name}\nor use a token made for them:\n  pylonctl tokens create --user {name} --name \
         WHAT-FOR\n",
        name = u.name,
        role = u.role.as_str()
    )
}

/// The confirmation of `users set`: what changed.
pub fn user_changed(u: &User, role: bool, password: bool) -> String {
    let mut changes = Vec::new();
    if role {
        changes.push(format!(
            "role is now {} (their tokens that carry more than it stop working)",
            u.role.as_str()
        ));
    }
    if password {
        changes.push("password changed (their tokens keep working)".to_owned());
    }
    format!("User {}: {}.\n", u.name, changes.join("; "))
}

/// The confirmation of `users disable` / `users enable`.
pub fn user_disabled(u: &User) -> String {
    if u.disabled {
        format!(
            "User {name} is disabled: they cannot log in, and none of their tokens work. \
             `pylonctl users enable {name}` undoes it.\n",
            name = u.name
        )
    } else {
        format!(
            "User {} is enabled: they can log in, and their tokens that are neither revoked \
             nor expired work again.\n",
            u.name
        )
    }
}

/// The confirmation of `users remove`.
pub fn user_removed(name: &str) -> String {
    format!("User {name} removed, and every token of theirs revoked.\n")
}

/// `tokens list`. `user`: the `--user` asked for.
pub fn tokens(list: &[TokenInfo], user: Option<&str>) -> String {
    if list.is_empty() {
        return match user {
            Some(u) => format!("{u} has no tokens.\n"),
            None => "No tokens: make one with `pylonctl tokens create --user NAME --name \
                     WHAT-FOR`.\n"
                .into(),
        };
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|t| {
            vec![
                t.id.clone(),
                t.name.clone(),
                t.user.clone(),
                t.role.as_str().to_owned(),
                kind(t.kind).to_owned(),
                secs_time(t.created_at),
                expiry(t),
                t.revoked_at.map_or_else(|| "-".into(), secs_time),
            ]
        })
        .collect();
    table(
        &[
            "ID", "NAME", "USER", "ROLE", "KIND", "CREATED", "EXPIRES", "REVOKED",
        ],
        &rows,
    )
}

/// A new token, from `tokens create` or `login`: its text, once.
fn issued(t: &IssuedToken, title: String) -> String {
    let expires = match t.info.expires_at {
        Some(at) => format!("it expires at {}", secs_time(at)),
        None => "it never expires".into(),
    };
    format!(
        "{title} ({expires}):\n\n  {token}\n\nCopy it now: it is not shown again (lists show \
         only its id, {id}). Use it with:\n  export PYLON_TOKEN={token}\nor put token = \
         \"...\" in the config file (~/.config/pylon/pylonctl.toml).\n",
        token = t.token,
        id = t.info.id
    )
}

/// The reply of `tokens create`.
pub fn token_created(t: &IssuedToken) -> String {
    let title = format!(
        "Token {} ({}) made for {}, with the {} role",
        t.info.id,
        t.info.name,
        t.info.user,
        t.info.role.as_str()
    );
    let mut out = issued(t, title);
    let _ = writeln!(
        out,
        "Revoke it with `pylonctl tokens revoke {}` when it is no longer needed.",
        t.info.id
    );
    out
}

/// The reply of `login`: the session token.
pub fn logged_in(t: &IssuedToken) -> String {
    let title = format!(
        "Logged in as {} ({}). Your session token",
        t.info.user,
        t.info.role.as_str()
    );
    let mut out = issued(t, title);
    out.push_str("`pylonctl logout` ends the session.\n");
    out
}

/// The confirmation of `logout`.
pub fn logged_out() -> String {
    "Logged out: the session token no longer works (an API token from `pylonctl tokens \
     create` is not revoked by logging out: use `pylonctl tokens revoke ID`). Unset \
     PYLON_TOKEN, or remove the token from the config file.\n"
        .into()
}

/// The confirmation of `tokens revoke`: the token as it now is (`None`: it is gone).
pub fn token_revoked(id: &str, t: Option<&TokenInfo>) -> String {
    match t {
        Some(t) => format!(
            "Token {} ({}, of {}) is revoked{}: it no longer works.\n",
            t.id,
            t.name,
            t.user,
            t.revoked_at
                .map(|at| format!(" since {}", secs_time(at)))
                .unwrap_or_default()
        ),
        None => format!("Token {id} is revoked: it no longer works.\n"),
    }
}

/// `whoami`.
pub fn principal(p: &Principal) -> String {
    let token = match (&p.token_id, p.user.as_str()) {
        (Some(id), _) => id.clone(),
        (None, "bootstrap") => "the bootstrap admin token".into(),
        (None, "insecure-dev") => "none (the control plane runs without credentials)".into(),
        (None, _) => "-".into(),
    };
    fields(&[
        ("user", p.user.clone()),
        ("role", p.role.as_str().to_owned()),
        ("token", token),
    ])
}

#[cfg(test)]
pub(crate) mod tests {
    use pylon_proto::auth::Role;

    use super::*;

    pub(crate) fn token_info() -> TokenInfo {
        TokenInfo {
            id: "0123456789ab".into(),
            name: "grafana".into(),
            user: "ana".into(),
            role: Role::Viewer,
            kind: TokenKind::Api,
            created_at: 1_714_550_400,
            expires_at: Some(1_722_326_400),
            revoked_at: None,
        }
    }

    #[test]
    fn users_are_a_table_with_utc_times() {
        let list = vec![
            User {
                name: "ana".into(),
                role: Role::Admin,
                disabled: false,
                created_at: 1_714_550_400,
            },
            User {
                name: "bo".into(),
                role: Role::Finance,
                disabled: true,
                created_at: 1_714_554_000,
            },
        ];
        assert_eq!(
            users(&list),
            "NAME  ROLE     DISABLED  CREATED\n\
             ana   admin    no        2024-05-01T08:00:00Z\n\
             bo    finance  yes       2024-05-01T09:00:00Z\n"
        );
        assert!(users(&[]).starts_with("No users"));
    }

    #[test]
    fn tokens_are_a_table_with_expiry_and_revocation() {
        let mut revoked = token_info();
        revoked.id = "ba9876543210".into();
        revoked.kind = TokenKind::Session;
        revoked.name = "session".into();
        revoked.expires_at = None;
        revoked.revoked_at = Some(1_714_554_000);
        let text = tokens(&[token_info(), revoked], None);
        assert_eq!(
            text,
            "ID            NAME     USER  ROLE    KIND     CREATED               EXPIRES               REVOKED\n\
             0123456789ab  grafana  ana   viewer  api      2024-05-01T08:00:00Z  2024-07-30T08:00:00Z  -\n\
             ba9876543210  session  ana   viewer  session  2024-05-01T08:00:00Z  never                 2024-05-01T09:00:00Z\n"
        );
        assert_eq!(tokens(&[], Some("ana")), "ana has no tokens.\n");
    }

    #[test]
    fn a_new_token_is_shown_once_with_how_to_use_it() {
        let t = IssuedToken {
            token: "pylon_0123456789ab_secret".into(),
            info: token_info(),
        };
        let text = token_created(&t);
        assert!(
            text.starts_with(
                "Token 0123456789ab (grafana) made for ana, with the viewer role (it expires at \
                 2024-07-30T08:00:00Z):\n\n  pylon_0123456789ab_secret\n\nCopy it now: it is \
                 not shown again"
            ),
            "{text}"
        );
        assert!(text.contains("export PYLON_TOKEN=pylon_0123456789ab_secret\n"));
        assert!(
            text.ends_with("`pylonctl tokens revoke 0123456789ab` when it is no longer needed.\n")
        );
        let text = logged_in(&t);
        assert!(
            text.starts_with("Logged in as ana (viewer). Your session token (it expires"),
            "{text}"
        );
    }

    #[test]
    fn whoami_names_the_token() {
        let p = Principal {
            user: "ana".into(),
            role: Role::Operator,
            token_id: Some("0123456789ab".into()),
        };
        assert_eq!(
            principal(&p),
            "user:   ana\nrole:   operator\ntoken:  0123456789ab\n"
        );
        assert!(principal(&Principal::bootstrap()).contains("the bootstrap admin token"));
    }

    #[test]
    fn confirmations_say_what_follows() {
        let mut u = User {
            name: "ana".into(),
            role: Role::Viewer,
            disabled: true,
            created_at: 0,
        };
        assert!(user_disabled(&u).contains("none of their tokens work"));
        u.disabled = false;
        assert!(user_disabled(&u).starts_with("User ana is enabled"));
        assert_eq!(
            user_changed(&u, true, true),
            "User ana: role is now viewer (their tokens that carry more than it stop working); \
             password changed (their tokens keep working).\n"
        );
        assert!(token_revoked("x", None).starts_with("Token x is revoked"));
        let mut t = token_info();
        t.revoked_at = Some(1_714_554_000);
        assert_eq!(
            token_revoked("0123456789ab", Some(&t)),
            "Token 0123456789ab (grafana, of ana) is revoked since 2024-05-01T09:00:00Z: it no \
             longer works.\n"
        );
    }
}
