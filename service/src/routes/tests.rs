use std::sync::Arc;

use axum::body::Body;
use axum::extract::Extension;
use axum::http::{header, Request, StatusCode};
use pylon_proto::auth::{Permission, Principal, Role};
use tower::ServiceExt;

use super::*;
use crate::auth::{Authenticator, TokenVerifier, Verdict};

/// A token store that knows one token per role: `<role>-token`.
struct PerRole;

impl TokenVerifier for PerRole {
    fn verify<'a>(
        &'a self,
        token: &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Verdict> + Send + 'a>> {
        Box::pin(async move {
            Ok(token
                .strip_suffix("-token")
                .and_then(|r| r.parse::<Role>().ok())
                .map(|role| Principal {
                    user: format!("{}-user", role.as_str()),
                    role,
                    token_id: None,
                }))
        })
    }
}

async fn whoami(Extension(caller): Extension<Caller>) -> String {
    caller.principal.user
}

fn routes() -> Routes<()> {
    Routes::new()
        .get("/healthz", Access::Public, || async { "ok" })
        .get("/v1/piles", Access::Needs(Permission::Read), whoami)
        .post("/v1/piles", Access::Needs(Permission::Command), whoami)
        .post("/v1/refunds", Access::Needs(Permission::Finance), whoami)
}

async fn call(method: &str, path: &str, token: Option<&str>) -> (StatusCode, String) {
    let auth = Arc::new(Authenticator::new(
        Some("boot".into()),
        Some(Arc::new(PerRole)),
        false,
    ));
    let mut request = Request::builder().method(method).uri(path);
    if let Some(t) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let response = routes()
        .into_router(auth, None)
        .oneshot(request.body(Body::empty()).expect("request"))
        .await
        .expect("infallible");
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 1 << 16)
        .await
        .expect("body");
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn every_route_answers_by_its_declared_permission() {
    for declared in routes().declared() {
        let path = declared.path;
        let method = declared.method.as_str();
        for role in Role::ALL {
            let token = format!("{}-token", role.as_str());
            let (status, body) = call(method, path, Some(&token)).await;
            let allowed = match declared.access {
                Access::Public => true,
                Access::Needs(p) => role.allows(p),
            };
            if allowed {
                assert_eq!(status, StatusCode::OK, "{role:?} {method} {path}");
                if declared.access != Access::Public {
                    assert_eq!(body, format!("{}-user", role.as_str()));
                }
            } else {
                assert_eq!(status, StatusCode::FORBIDDEN, "{role:?} {method} {path}");
            }
        }
        let (status, _) = call(method, path, None).await;
        let expected = match declared.access {
            Access::Public => StatusCode::OK,
            Access::Needs(_) => StatusCode::UNAUTHORIZED,
        };
        assert_eq!(status, expected, "no token: {method} {path}");
        let (status, _) = call(method, path, Some("made-up")).await;
        if declared.access != Access::Public {
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "bad token: {method} {path}"
            );
        }
    }
}

#[tokio::test]
async fn two_methods_share_a_path_each_with_its_permission() {
    assert_eq!(
        call("GET", "/v1/piles", Some("viewer-token")).await.0,
        StatusCode::OK
    );
    assert_eq!(
        call("POST", "/v1/piles", Some("viewer-token")).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        call("DELETE", "/v1/piles", Some("admin-token")).await.0,
        StatusCode::METHOD_NOT_ALLOWED
    );
    assert_eq!(
        call("GET", "/v1/undeclared", Some("admin-token")).await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn the_bootstrap_token_is_an_admin() {
    let (status, body) = call("POST", "/v1/refunds", Some("boot")).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "bootstrap"));
}

/// An audit sink that keeps what it is given.
#[derive(Default)]
struct Kept(std::sync::Mutex<Vec<pylon_proto::api::audit::AuditRecord>>);

impl crate::audit::AuditSink for Kept {
    fn append(
        &self,
        record: pylon_proto::api::audit::AuditRecord,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<u64, crate::audit::AppendError>> + Send + '_>,
    > {
        Box::pin(async move {
            let mut kept = self.0.lock().expect("lock");
            kept.push(record);
            Ok(kept.len() as u64)
        })
    }
}

#[tokio::test]
async fn successful_changes_are_audited_with_card_data_redacted() {
    let kept = Arc::new(Kept::default());
    let auditor = Arc::new(crate::audit::Auditor::new(
        "app:a1",
        Some(kept.clone() as Arc<dyn crate::audit::AuditSink>),
    ));
    let auth = Arc::new(Authenticator::new(None, Some(Arc::new(PerRole)), false));
    let router = Routes::<()>::new()
        .get(
            "/v1/accounts/{id}",
            Access::Needs(Permission::Read),
            || async { "{}" },
        )
        .post(
            "/v1/accounts/{id}/cards",
            Access::Needs(Permission::Finance),
            |body: String| async move { body },
        )
        .into_router(auth, Some(auditor.clone()));
    let call = |method: &str, path: &str, token: &str, body: &str| {
        Request::builder()
            .method(method)
            .uri(path)
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::from(body.to_owned()))
            .expect("request")
    };
    let card = r#"{"card_no":"1234567812345678","label":"fleet"}"#;
    let answer = router
        .clone()
        .oneshot(call("POST", "/v1/accounts/a7/cards", "finance-token", card))
        .await
        .expect("infallible");
    assert_eq!(answer.status(), StatusCode::OK);
    let echoed = axum::body::to_bytes(answer.into_body(), 1 << 16)
        .await
        .expect("body");
    assert_eq!(echoed, card, "the handler saw the whole body");
    // Refused and read-only calls are not recorded.
    for (method, token) in [("POST", "viewer-token"), ("GET", "finance-token")] {
        let _ = router
            .clone()
            .oneshot(call(method, "/v1/accounts/a7/cards", token, card))
            .await;
    }
    let kept = kept.0.lock().expect("lock");
    assert_eq!(kept.len(), 1);
    let record = &kept[0];
    assert_eq!(record.action, "POST /v1/accounts/{id}/cards");
    assert_eq!(record.target, "/v1/accounts/a7/cards");
    assert_eq!(
        (record.actor.as_str(), record.role),
        ("finance-user", Role::Finance)
    );
    let after = record.after.as_ref().expect("after").to_string();
    assert!(!after.contains("1234567812345678"), "{after}");
    assert!(after.contains("fleet"), "{after}");
    assert_eq!(auditor.appended.get(), 1);
}
