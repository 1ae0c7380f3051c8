//! An HTTP API where every route says who may call it. A service lists its routes with
//! [`Routes`], each public or needing a [`Permission`]; there is no other way to add
//! one, so no route exists without a declaration, and [`Routes::declared`] lists them all
//! (for `pylonctl`, the documentation and the authorisation matrix test).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::handler::Handler;
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{on, MethodFilter, MethodRouter};
use axum::Router;
use pylon_proto::auth::{Permission, Principal};

use crate::audit::{Action, Auditor};
use crate::auth::Authenticator;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone: `/metrics`, `/healthz`, `/readyz`, dispatch, login.
    Public,
    /// A principal whose role holds this permission.
    Needs(Permission),
}

/// One declared route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Declared {
    pub method: Method,
    /// The path as axum writes it (`/v1/piles/{pile}`).
    pub path: &'static str,
    pub access: Access,
}

/// A service's routes, each with its access.
pub struct Routes<S> {
    entries: Vec<(Declared, MethodRouter<S>)>,
}

impl<S: Clone + Send + Sync + 'static> Default for Routes<S> {
    fn default() -> Self {
        Routes {
            entries: Vec::new(),
        }
    }
}

macro_rules! method {
    ($name:ident, $filter:ident, $method:ident) => {
        pub fn $name<H, T>(self, path: &'static str, access: Access, handler: H) -> Self
        where
            H: Handler<T, S>,
            T: 'static,
        {
            self.add(
                Method::$method,
                MethodFilter::$filter,
                path,
                access,
                handler,
            )
        }
    };
}

impl<S: Clone + Send + Sync + 'static> Routes<S> {
    pub fn new() -> Self {
        Self::default()
    }

    method!(get, GET, GET);
    method!(post, POST, POST);
    method!(put, PUT, PUT);
    method!(delete, DELETE, DELETE);

    fn add<H, T>(
        mut self,
        method: Method,
        filter: MethodFilter,
        path: &'static str,
        access: Access,
        handler: H,
    ) -> Self
    where
        H: Handler<T, S>,
        T: 'static,
    {
        self.entries.push((
            Declared {
                method,
                path,
                access,
            },
            on(filter, handler),
        ));
        self
    }

    /// Every route with its access.
    pub fn declared(&self) -> Vec<Declared> {
        self.entries.iter().map(|(d, _)| d.clone()).collect()
    }

    /// The router: each route that needs a permission first authenticates its caller
    /// with `auth` and checks the role, and hands the [`Caller`] to the handler as a
    /// request extension.
    ///
    /// With an `auditor`, every guarded route that changes something (any method but GET
    /// and HEAD) is recorded in the audit log when it succeeds: the route, the path, and
    /// the request and answer bodies with secrets and card data redacted. A service that
    /// records its actions itself (with the state before and after) passes `None`.
    pub fn into_router(self, auth: Arc<Authenticator>, auditor: Option<Arc<Auditor>>) -> Router<S> {
        let mut router = Router::new();
        for (declared, method_router) in self.entries {
            let method_router = match declared.access {
                Access::Public => method_router,
                Access::Needs(permission) => {
                    method_router.route_layer(axum::middleware::from_fn_with_state(
                        Guard {
                            auth: auth.clone(),
                            permission,
                            auditor: auditor.clone(),
                        },
                        guard,
                    ))
                }
            };
            router = router.route(declared.path, method_router);
        }
        router
    }
}

/// The authenticated caller of a guarded route, for its handler (and the audit log).
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    /// The peer address, when the server runs with connect info.
    pub source: Option<SocketAddr>,
}

#[derive(Clone)]
struct Guard {
    auth: Arc<Authenticator>,
    permission: Permission,
    auditor: Option<Arc<Auditor>>,
}

/// Bodies larger than this are not read for the audit log (the call is refused).
const MAX_AUDITED_BODY: usize = 1 << 20;

async fn guard(State(g): State<Guard>, mut request: Request, next: Next) -> Response {
    match g
        .auth
        .authenticate(request.method(), request.headers())
        .await
    {
        Ok(principal) if principal.role.allows(g.permission) => {
            let source = request
                .extensions()
                .get::<ConnectInfo<crate::tls::PeerAddr>>()
                .map(|c| c.0 .0);
            let caller = Caller { principal, source };
            request.extensions_mut().insert(caller.clone());
            match &g.auditor {
                Some(auditor) if !matches!(*request.method(), Method::GET | Method::HEAD) => {
                    audited(auditor, &caller, request, next).await
                }
                _ => next.run(request).await,
            }
        }
        Ok(principal) => g.auth.forbidden(&principal, g.permission),
        Err(refused) => refused,
    }
}

#[cfg(test)]
mod tests;

/// Runs a state-changing call and records it when it succeeds.
async fn audited(auditor: &Auditor, caller: &Caller, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_default();
    let action = format!("{} {route}", request.method());
    let target = request.uri().path().to_owned();
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_AUDITED_BODY).await else {
        return crate::http::error(
            axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            "the request body is too large",
        );
    };
    let asked = crate::redact::json_body(&bytes);
    let response = next
        .run(Request::from_parts(parts, axum::body::Body::from(bytes)))
        .await;
    if !response.status().is_success() {
        return response;
    }
    let (parts, body) = response.into_parts();
    // The whole answer goes to the client whatever its size; the log keeps it if small.
    let answer = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(bytes) => bytes,
        Err(e) => {
            return crate::http::error(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "answer_failed",
                format!("the answer could not be read: {e}"),
            )
        }
    };
    let answered = if answer.len() > MAX_AUDITED_BODY {
        serde_json::Value::String(format!("({} bytes, too large to keep)", answer.len()))
    } else {
        crate::redact::json_body(&answer)
    };
    let record = Action {
        action: &action,
        target: &target,
        before: None,
        after: Some(serde_json::json!({ "request": asked, "answer": answered })),
    };
    auditor.record(caller, record).await;
    Response::from_parts(parts, axum::body::Body::from(answer))
}
