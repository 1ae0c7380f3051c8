use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, HeaderMap, Method, StatusCode};
use pylon_proto::auth::{Principal, Role};

use super::*;

/// A store that knows `good`, counting the questions it is asked, or cannot be reached.
struct Store {
    asked: AtomicUsize,
    down: bool,
}

impl TokenVerifier for Arc<Store> {
    fn verify<'a>(&'a self, token: &'a str) -> Pin<Box<dyn Future<Output = Verdict> + Send + 'a>> {
        Box::pin(async move {
            self.asked.fetch_add(1, Ordering::SeqCst);
            if self.down {
                return Err("unreachable".into());
            }
            Ok((token == "good").then(|| Principal {
                user: "ana".into(),
                role: Role::Operator,
                token_id: Some("0123456789ab".into()),
            }))
        })
    }
}

fn store(down: bool) -> Arc<Store> {
    Arc::new(Store {
        asked: AtomicUsize::new(0),
        down,
    })
}

fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (name, value) in pairs {
        h.append(name.clone(), value.parse().expect("ascii"));
    }
    h
}

fn bearer(token: &str) -> HeaderMap {
    headers(&[(header::AUTHORIZATION, &format!("Bearer {token}"))])
}

#[tokio::test]
async fn tokens_are_checked_by_the_store_and_refusals_counted() {
    let auth = Authenticator::new(None, Some(Arc::new(store(false))), false);
    let who = auth.authenticate(&Method::GET, &bearer("good")).await;
    assert_eq!(who.map(|p| p.user).ok(), Some("ana".to_owned()));
    let refused = auth
        .authenticate(&Method::GET, &bearer("bad"))
        .await
        .expect_err("unknown token");
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let refused = auth
        .authenticate(&Method::GET, &HeaderMap::new())
        .await
        .expect_err("no token");
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let count = |reason: &str| {
        auth.refusals
            .get_or_create(&ReasonLabel {
                reason: reason.into(),
            })
            .get()
    };
    assert_eq!((count("bad_token"), count("no_token")), (1, 1));
}

#[tokio::test]
async fn an_unreachable_store_is_not_a_yes() {
    let auth = Authenticator::new(None, Some(Arc::new(store(true))), false);
    let refused = auth
        .authenticate(&Method::GET, &bearer("good"))
        .await
        .expect_err("cannot tell");
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn only_an_open_service_lets_anyone_in() {
    let closed = Authenticator::new(None, None, false);
    assert!(!closed.has_credentials());
    assert!(closed
        .authenticate(&Method::POST, &HeaderMap::new())
        .await
        .is_err());
    let dev = Authenticator::new(Some(String::new()), None, true);
    assert!(!dev.has_credentials(), "an empty token is none");
    let who = dev.authenticate(&Method::POST, &HeaderMap::new()).await;
    assert_eq!(who.ok(), Some(Principal::insecure_dev()));
    // A token presented to an open service is still checked.
    assert!(dev
        .authenticate(&Method::GET, &bearer("guess"))
        .await
        .is_err());
}

#[tokio::test]
async fn the_session_cookie_needs_the_csrf_header_to_change_things() {
    let auth = Authenticator::new(None, Some(Arc::new(store(false))), false);
    let cookie = (header::COOKIE, "theme=dark; pylon_session=good");
    assert!(auth
        .authenticate(&Method::GET, &headers(std::slice::from_ref(&cookie)))
        .await
        .is_ok());
    let refused = auth
        .authenticate(&Method::POST, &headers(std::slice::from_ref(&cookie)))
        .await
        .expect_err("no csrf header");
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let csrf = (header::HeaderName::from_static(CSRF_HEADER), "1");
    assert!(auth
        .authenticate(&Method::POST, &headers(&[cookie, csrf]))
        .await
        .is_ok());
}

#[tokio::test]
async fn answers_are_cached_for_a_while() {
    let inner = store(false);
    let cached = CachedVerifier::new(
        inner.clone(),
        Duration::from_millis(200),
        Duration::from_millis(50),
    );
    for _ in 0..3 {
        assert!(cached.verify("good").await.expect("up").is_some());
        assert!(cached.verify("bad").await.expect("up").is_none());
    }
    assert_eq!(inner.asked.load(Ordering::SeqCst), 2);
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(cached.verify("good").await.expect("up").is_some());
    assert_eq!(
        inner.asked.load(Ordering::SeqCst),
        3,
        "asked again once stale"
    );
}
