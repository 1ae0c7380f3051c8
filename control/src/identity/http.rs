//! The HTTP routes of users, tokens and sessions (`pylon_proto::api::identity`).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use pylon_proto::api::identity::{LoginInput, TokenInput, TokenKind, UserChange, UserInput};
use pylon_service::audit::Action;
use pylon_service::auth::SESSION_COOKIE;
use pylon_service::http::error;
use pylon_service::routes::{Access, Caller, Routes};

use super::{IdentityError, SESSION_TTL};
use crate::node::ControlNode;

type Node = Arc<ControlNode>;

/// Adds the identity routes to the control plane's.
pub fn routes<S>(routes: Routes<S>) -> Routes<S>
where
    S: Clone + Send + Sync + 'static,
    Node: axum::extract::FromRef<S>,
{
    use pylon_proto::auth::Permission::{Admin, Read};
    routes
        .post("/v1/login", Access::Public, login)
        .post("/v1/logout", Access::Needs(Read), logout)
        .get("/v1/whoami", Access::Needs(Read), whoami)
        .get("/v1/admin/users", Access::Needs(Admin), list_users)
        .post("/v1/admin/users", Access::Needs(Admin), create_user)
        .put("/v1/admin/users/{name}", Access::Needs(Admin), change_user)
        .delete("/v1/admin/users/{name}", Access::Needs(Admin), delete_user)
        .get("/v1/admin/tokens", Access::Needs(Admin), list_tokens)
        .post("/v1/admin/tokens", Access::Needs(Admin), create_token)
        .delete("/v1/admin/tokens/{id}", Access::Needs(Admin), revoke_token)
}

fn refused(node: &ControlNode, e: IdentityError) -> Response {
    match e {
        IdentityError::Invalid(m) => error(StatusCode::BAD_REQUEST, "invalid", m),
        IdentityError::NotFound(m) => error(StatusCode::NOT_FOUND, "not_found", m),
        IdentityError::Exists(m) => error(StatusCode::CONFLICT, "exists", m),
        IdentityError::BadLogin => error(StatusCode::UNAUTHORIZED, "bad_login", e.to_string()),
        IdentityError::Locked(wait) => {
            let mut response = error(StatusCode::TOO_MANY_REQUESTS, "locked", e.to_string());
            if let Ok(value) = HeaderValue::from_str(&wait.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            response
        }
        IdentityError::Registry(r) => {
            let r = node.registry_error("identity", r);
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "registry_unavailable",
                r.to_string(),
            )
        }
        IdentityError::Corrupt(..) => {
            error(StatusCode::INTERNAL_SERVER_ERROR, "corrupt", e.to_string())
        }
    }
}

fn json<T: serde::Serialize>(value: &T) -> Option<serde_json::Value> {
    serde_json::to_value(value).ok()
}

async fn login(State(node): State<Node>, Json(input): Json<LoginInput>) -> Response {
    match node.identity.login(&input.user, &input.password).await {
        Ok(issued) => {
            tracing::info!(user = %input.user, token = %issued.info.id, "logged in");
            // The console's cookie: not readable by scripts, not sent by other sites.
            let secure = if pylon_service::tls::cluster().is_some() {
                "; Secure"
            } else {
                ""
            };
            let cookie = format!(
                "{SESSION_COOKIE}={}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{secure}",
                issued.token,
                SESSION_TTL.as_secs()
            );
            let mut response = Json(issued).into_response();
            if let Ok(value) = HeaderValue::from_str(&cookie) {
                response.headers_mut().insert(header::SET_COOKIE, value);
            }
            response
        }
        Err(e) => {
            let shown: String = input.user.chars().take(64).collect();
            tracing::warn!(user = %shown, "login refused: {e}");
            let reason = match e {
                IdentityError::Locked(_) => "locked",
                _ => "bad_login",
            };
            node.auth
                .refusals
                .get_or_create(&pylon_service::auth::ReasonLabel {
                    reason: reason.into(),
                })
                .inc();
            refused(&node, e)
        }
    }
}

async fn logout(State(node): State<Node>, Extension(caller): Extension<Caller>) -> Response {
    let cleared = format!("{SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0");
    // Only a session ends: logging out with a named API token does not revoke it.
    if let Some(id) = &caller.principal.token_id {
        let ended = match node.identity.token(id).await {
            Ok(Some(info)) if info.kind == TokenKind::Session => {
                node.identity.revoke(id).await.map(drop)
            }
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        };
        if let Err(e) = ended {
            return refused(&node, e);
        }
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    if let Ok(value) = HeaderValue::from_str(&cleared) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

async fn whoami(Extension(caller): Extension<Caller>) -> Response {
    Json(caller.principal).into_response()
}

async fn list_users(State(node): State<Node>) -> Response {
    match node.identity.users().await {
        Ok(users) => Json(users).into_response(),
        Err(e) => refused(&node, e),
    }
}

async fn create_user(
    State(node): State<Node>,
    Extension(caller): Extension<Caller>,
    Json(input): Json<UserInput>,
) -> Response {
    match node.identity.create_user(&input).await {
        Ok(user) => {
            let action = Action {
                action: "users.create",
                target: &user.name,
                before: None,
                after: json(&user),
            };
            node.auditor.record(&caller, action).await;
            (StatusCode::CREATED, Json(user)).into_response()
        }
        Err(e) => refused(&node, e),
    }
}

async fn change_user(
    State(node): State<Node>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Json(change): Json<UserChange>,
) -> Response {
    match node.identity.change_user(&name, &change).await {
        Ok((before, after)) => {
            let mut after_json = json(&after);
            if change.password.is_some() {
                if let Some(serde_json::Value::Object(map)) = after_json.as_mut() {
                    // Say that the password changed, never what it is.
                    map.insert("password".into(), "changed".into());
                }
            }
            let action = Action {
                action: "users.change",
                target: &name,
                before: json(&before),
                after: after_json,
            };
            node.auditor.record(&caller, action).await;
            Json(after).into_response()
        }
        Err(e) => refused(&node, e),
    }
}

async fn delete_user(
    State(node): State<Node>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Response {
    match node.identity.delete_user(&name).await {
        Ok(user) => {
            let action = Action {
                action: "users.delete",
                target: &name,
                before: json(&user),
                after: None,
            };
            node.auditor.record(&caller, action).await;
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => refused(&node, e),
    }
}

async fn list_tokens(
    State(node): State<Node>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    match node
        .identity
        .tokens(q.get("user").map(String::as_str))
        .await
    {
        Ok(tokens) => Json(tokens).into_response(),
        Err(e) => refused(&node, e),
    }
}

async fn create_token(
    State(node): State<Node>,
    Extension(caller): Extension<Caller>,
    Json(input): Json<TokenInput>,
) -> Response {
    match node.identity.create_token(&input).await {
        Ok(issued) => {
            let action = Action {
                action: "tokens.create",
                target: &issued.info.id,
                before: None,
                after: json(&issued.info),
            };
            node.auditor.record(&caller, action).await;
            (StatusCode::CREATED, Json(issued)).into_response()
        }
        Err(e) => refused(&node, e),
    }
}

async fn revoke_token(
    State(node): State<Node>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    match node.identity.revoke(&id).await {
        Ok(before) => {
            let action = Action {
                action: "tokens.revoke",
                target: &id,
                before: json(&before),
                after: Some(serde_json::json!({"revoked": true})),
            };
            node.auditor.record(&caller, action).await;
            match node.identity.token(&id).await {
                Ok(Some(now)) => Json(now).into_response(),
                Ok(None) => StatusCode::NO_CONTENT.into_response(),
                Err(e) => refused(&node, e),
            }
        }
        Err(e) => refused(&node, e),
    }
}
