use std::sync::Arc;

use pylon_proto::api::identity::{TokenInput, UserChange, UserInput};
use pylon_proto::auth::{token_digest, token_id, Role};

use super::*;
use crate::registry::embedded::EmbeddedRegistry;

fn identity(dir: &tempfile::TempDir, bootstrap: Option<&str>) -> Identity {
    let registry: Arc<dyn Registry> =
        EmbeddedRegistry::open(&dir.path().join("r.json")).expect("registry");
    Identity::new(registry, bootstrap)
}

async fn who(identity: &Identity, token: &str) -> Option<Principal> {
    identity
        .authenticate(token_id(token).unwrap_or_default(), &token_digest(token))
        .await
        .expect("registry")
}

fn user(name: &str, role: Role) -> UserInput {
    UserInput {
        name: name.into(),
        role,
        password: "a long enough password".into(),
    }
}

fn token_for(user: &str, role: Option<Role>) -> TokenInput {
    TokenInput {
        user: user.into(),
        name: "tests".into(),
        role,
        expires_in_days: None,
    }
}

#[tokio::test]
async fn the_bootstrap_token_retires_when_an_admin_exists() {
    let dir = tempfile::tempdir().expect("tempdir");
    let id = identity(&dir, Some("boot"));
    assert_eq!(who(&id, "boot").await, Some(Principal::bootstrap()));
    id.create_user(&user("vera", Role::Viewer))
        .await
        .expect("viewer");
    assert!(who(&id, "boot").await.is_some(), "a viewer is not an admin");
    id.create_user(&user("ada", Role::Admin))
        .await
        .expect("admin");
    assert_eq!(who(&id, "boot").await, None);
    // Disabling the last admin brings it back (the way in after a lock-out).
    let off = UserChange {
        disabled: Some(true),
        ..Default::default()
    };
    id.change_user("ada", &off).await.expect("disable");
    assert!(who(&id, "boot").await.is_some());
}

#[tokio::test]
async fn tokens_carry_a_role_no_larger_than_their_users() {
    let dir = tempfile::tempdir().expect("tempdir");
    let id = identity(&dir, None);
    id.create_user(&user("otto", Role::Operator))
        .await
        .expect("user");
    let issued = id
        .create_token(&token_for("otto", None))
        .await
        .expect("token");
    let p = who(&id, &issued.token).await.expect("valid");
    assert_eq!((p.user.as_str(), p.role), ("otto", Role::Operator));
    assert_eq!(p.token_id.as_deref(), Some(issued.info.id.as_str()));
    let viewer = id
        .create_token(&token_for("otto", Some(Role::Viewer)))
        .await
        .expect("smaller token");
    assert_eq!(
        who(&id, &viewer.token).await.map(|p| p.role),
        Some(Role::Viewer)
    );
    assert!(matches!(
        id.create_token(&token_for("otto", Some(Role::Finance)))
            .await,
        Err(IdentityError::Invalid(_))
    ));
    // A wrong secret with a right id is nobody.
    let forged = format!("pylon_{}_{}", issued.info.id, "00".repeat(32));
    assert_eq!(who(&id, &forged).await, None);
    // Demoting the user stops the token carrying more than the user now has.
    let demote = UserChange {
        role: Some(Role::Viewer),
        ..Default::default()
    };
    id.change_user("otto", &demote).await.expect("demote");
    assert_eq!(who(&id, &issued.token).await, None);
    assert!(who(&id, &viewer.token).await.is_some());
}

#[tokio::test]
async fn revoked_and_expired_tokens_and_removed_users_let_no_one_in() {
    let dir = tempfile::tempdir().expect("tempdir");
    let id = identity(&dir, None);
    id.create_user(&user("fay", Role::Finance))
        .await
        .expect("user");
    let a = id.create_token(&token_for("fay", None)).await.expect("a");
    let b = id.create_token(&token_for("fay", None)).await.expect("b");
    id.revoke(&a.info.id).await.expect("revoke");
    assert_eq!(who(&id, &a.token).await, None);
    assert!(who(&id, &b.token).await.is_some());
    // Expired: rewrite its record with a past expiry.
    let key = format!("{TOKENS}{}", b.info.id);
    let mut record: TokenRecord = id.read(&key).await.expect("read").expect("record");
    record.info.expires_at = Some(now_secs() - 1);
    id.write(&key, &record).await.expect("write");
    assert_eq!(who(&id, &b.token).await, None);
    let c = id.create_token(&token_for("fay", None)).await.expect("c");
    id.delete_user("fay").await.expect("delete");
    assert_eq!(who(&id, &c.token).await, None);
    let tokens = id.tokens(Some("fay")).await.expect("tokens");
    assert!(tokens.iter().all(|t| t.revoked_at.is_some()));
}

#[tokio::test]
async fn login_needs_the_right_password_of_an_enabled_user() {
    let dir = tempfile::tempdir().expect("tempdir");
    let id = identity(&dir, None);
    id.create_user(&user("otto", Role::Operator))
        .await
        .expect("user");
    let session = id
        .login("otto", "a long enough password")
        .await
        .expect("login");
    assert_eq!(session.info.kind, TokenKind::Session);
    assert!(session.info.expires_at.is_some());
    assert!(who(&id, &session.token).await.is_some());
    assert!(matches!(
        id.login("otto", "a wrong password!!").await,
        Err(IdentityError::BadLogin)
    ));
    assert!(matches!(
        id.login("nobody", "a long enough password").await,
        Err(IdentityError::BadLogin)
    ));
    assert!(matches!(
        id.create_user(&UserInput {
            password: "short".into(),
            ..user("sam", Role::Viewer)
        })
        .await,
        Err(IdentityError::Invalid(_))
    ));
    assert!(matches!(
        id.create_user(&user("otto", Role::Viewer)).await,
        Err(IdentityError::Exists(_))
    ));
    assert!(matches!(
        id.create_user(&user("bootstrap", Role::Admin)).await,
        Err(IdentityError::Invalid(_))
    ));
}

#[tokio::test]
async fn five_wrong_passwords_lock_the_user_even_against_the_right_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let id = identity(&dir, None);
    id.create_user(&user("otto", Role::Operator))
        .await
        .expect("user");
    for _ in 0..5 {
        assert!(matches!(
            id.login("otto", "a wrong password!!").await,
            Err(IdentityError::BadLogin)
        ));
    }
    match id.login("otto", "a long enough password").await {
        Err(IdentityError::Locked(wait)) => assert!(wait > 800 && wait <= 900, "{wait}"),
        other => panic!("expected a lock, got {:?}", other.map(|t| t.info)),
    }
    // Another user, and an unknown name, are locked the same way and separately.
    id.create_user(&user("ada", Role::Viewer))
        .await
        .expect("user");
    id.login("ada", "a long enough password")
        .await
        .expect("ada is not locked");
    for _ in 0..5 {
        let _ = id.login("nobody", "a wrong password!!").await;
    }
    assert!(matches!(
        id.login("nobody", "anything at all!").await,
        Err(IdentityError::Locked(_))
    ));
}
