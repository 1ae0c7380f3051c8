//! Who is calling an operator API: the bearer token (or the console's session cookie) made
//! into a [`Principal`], through a service's bootstrap token or the control plane's token
//! store. [`crate::routes::Routes`] checks the principal against each route's permission.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use pylon_proto::auth::{bearer_token, same_token, token_digest, Principal};

use crate::http::error;

/// The console's session cookie.
pub const SESSION_COOKIE: &str = "pylon_session";
/// A state-changing request authenticated by the session cookie must carry this header:
/// a page of another site can send the cookie (where SameSite does not stop it) but not
/// a custom header without the browser asking this service first (CORS), which it refuses.
pub const CSRF_HEADER: &str = "x-pylon-csrf";

/// What a token store answers about a token.
pub type Verdict = Result<Option<Principal>, String>;

/// A token store: `Ok(None)` for a token it does not know (or revoked, expired),
/// `Err` when it cannot tell (unreachable).
pub trait TokenVerifier: Send + Sync + 'static {
    fn verify<'a>(&'a self, token: &'a str) -> Pin<Box<dyn Future<Output = Verdict> + Send + 'a>>;
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

/// Turns request headers into a principal, or the refusal to send.
pub struct Authenticator {
    /// This service's own bootstrap admin token, if it has one.
    bootstrap: Option<String>,
    /// The cluster's token store (the control plane's), if this service has one.
    verifier: Option<Arc<dyn TokenVerifier>>,
    /// A call without any token is an admin's: only for a service run with
    /// `--insecure-dev` and no credentials.
    anonymous_is_admin: bool,
    /// Refused calls by reason: no_token, bad_token, forbidden, csrf, unavailable.
    pub refusals: Family<ReasonLabel, Counter>,
}

impl Authenticator {
    pub fn new(
        bootstrap: Option<String>,
        verifier: Option<Arc<dyn TokenVerifier>>,
        anonymous_is_admin: bool,
    ) -> Authenticator {
        Authenticator {
            bootstrap: bootstrap.filter(|t| !t.is_empty()),
            verifier,
            anonymous_is_admin,
            refusals: Family::default(),
        }
    }

    /// The authenticator of a service that takes operator calls beside the control plane
    /// (an app instance, an edge): its own bootstrap token if given, and the control
    /// plane's token store if it has a control plane. Without either it refuses to start,
    /// unless `insecure_dev` (then every caller is an admin).
    pub fn for_member(
        bootstrap: Option<String>,
        control: &[String],
        cluster_token: Option<String>,
        insecure_dev: bool,
    ) -> anyhow::Result<Authenticator> {
        let verifier = if control.is_empty() {
            None
        } else {
            Some(RemoteVerifier::cached(control, cluster_token)?)
        };
        let auth = Authenticator::new(bootstrap, verifier, false);
        if auth.has_credentials() {
            return Ok(auth);
        }
        anyhow::ensure!(
            insecure_dev,
            "nothing can check operators' tokens: give a control plane (--control) to use its \
             users and tokens, or a bootstrap admin token (--admin-token or PYLON_ADMIN_TOKEN); \
             or run with --insecure-dev on a developer's machine"
        );
        tracing::warn!("INSECURE DEV MODE: no credentials, every caller of the API is an admin");
        Ok(Authenticator::new(None, None, true))
    }

    /// Whether anything can authenticate a caller (else the service must refuse to start
    /// unless it runs with `--insecure-dev`).
    pub fn has_credentials(&self) -> bool {
        self.bootstrap.is_some() || self.verifier.is_some()
    }

    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register(
            "pylon_auth_refusals",
            "Operator API calls refused, by reason",
            self.refusals.clone(),
        );
    }

    fn refuse(&self, reason: &str, status: StatusCode, message: &str) -> Response {
        self.refusals
            .get_or_create(&ReasonLabel {
                reason: reason.into(),
            })
            .inc();
        let code = match status {
            StatusCode::UNAUTHORIZED => "unauthorized",
            StatusCode::FORBIDDEN => "forbidden",
            _ => "auth_unavailable",
        };
        error(status, code, message)
    }

    /// The caller of a request, from `Authorization: Bearer` or the session cookie.
    // The error is the ready-made answer, sent at once; its size does not matter.
    #[allow(clippy::result_large_err)]
    pub async fn authenticate(
        &self,
        method: &Method,
        headers: &HeaderMap,
    ) -> Result<Principal, Response> {
        let bearer = bearer_token(
            headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok()),
        );
        let token = match (bearer, session_cookie(headers)) {
            (Some(t), _) => t,
            (None, Some(t)) => {
                let safe = matches!(*method, Method::GET | Method::HEAD);
                if !safe && !headers.contains_key(CSRF_HEADER) {
                    return Err(self.refuse(
                        "csrf",
                        StatusCode::FORBIDDEN,
                        "a change made with the session cookie needs the x-pylon-csrf header",
                    ));
                }
                t
            }
            (None, None) if self.anonymous_is_admin => return Ok(Principal::insecure_dev()),
            (None, None) => {
                return Err(self.refuse(
                    "no_token",
                    StatusCode::UNAUTHORIZED,
                    "no token: send Authorization: Bearer <token> (pylonctl tokens create)",
                ))
            }
        };
        if let Some(bootstrap) = &self.bootstrap {
            if same_token(token, bootstrap) {
                return Ok(Principal::bootstrap());
            }
        }
        let bad = || {
            self.refuse(
                "bad_token",
                StatusCode::UNAUTHORIZED,
                "unknown, expired or revoked token",
            )
        };
        let Some(verifier) = &self.verifier else {
            return Err(bad());
        };
        match verifier.verify(token).await {
            Ok(Some(principal)) => Ok(principal),
            Ok(None) => Err(bad()),
            Err(why) => Err(self.refuse(
                "unavailable",
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("cannot check the token now: {why}"),
            )),
        }
    }

    /// The refusal of a principal whose role lacks `permission`.
    pub fn forbidden(
        &self,
        principal: &Principal,
        permission: pylon_proto::auth::Permission,
    ) -> Response {
        self.refuse(
            "forbidden",
            StatusCode::FORBIDDEN,
            &format!(
                "{} ({}) may not do this: it needs the {} permission",
                principal.user,
                principal.role.as_str(),
                permission.as_str()
            ),
        )
    }
}

fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, value)| *name == SESSION_COOKIE && !value.is_empty())
        .map(|(_, value)| value)
}

/// Remembers a token store's answers for a while, keyed by the token's digest, so that a
/// busy operator does not cost a round trip per call. Unknown tokens are remembered for a
/// shorter time than known ones.
pub struct CachedVerifier<V> {
    inner: V,
    known_for: Duration,
    unknown_for: Duration,
    answers: Mutex<HashMap<[u8; 32], Remembered>>,
}

/// An answer and until when it may be reused.
type Remembered = (Option<Principal>, Instant);

/// The most answers kept; past it, the cache starts over (a flood of made-up tokens
/// cannot grow it without bound).
const MAX_CACHED: usize = 10_000;

impl<V> CachedVerifier<V> {
    pub fn new(inner: V, known_for: Duration, unknown_for: Duration) -> Self {
        CachedVerifier {
            inner,
            known_for,
            unknown_for,
            answers: Mutex::new(HashMap::new()),
        }
    }
}

impl<V: TokenVerifier> TokenVerifier for CachedVerifier<V> {
    fn verify<'a>(&'a self, token: &'a str) -> Pin<Box<dyn Future<Output = Verdict> + Send + 'a>> {
        Box::pin(async move {
            let key = token_digest(token);
            let now = Instant::now();
            if let Ok(answers) = self.answers.lock() {
                if let Some((answer, until)) = answers.get(&key) {
                    if *until > now {
                        return Ok(answer.clone());
                    }
                }
            }
            let answer = self.inner.verify(token).await?;
            let keep = if answer.is_some() {
                self.known_for
            } else {
                self.unknown_for
            };
            if let Ok(mut answers) = self.answers.lock() {
                if answers.len() >= MAX_CACHED {
                    answers.clear();
                }
                answers.insert(key, (answer.clone(), now + keep));
            }
            Ok(answer)
        })
    }
}

#[cfg(test)]
mod tests;

/// The control plane's token store, asked over its `Identity` gRPC service (with the
/// cluster token), trying each replica in turn.
pub struct RemoteVerifier {
    replicas: crate::control_link::Replicas,
}

impl RemoteVerifier {
    /// A cached verifier over the control plane: answers kept 10 s (so a revoked token
    /// stops working everywhere within 10 s), unknown tokens 2 s.
    pub fn cached(
        endpoints: &[String],
        cluster_token: Option<String>,
    ) -> anyhow::Result<Arc<dyn TokenVerifier>> {
        let replicas = crate::control_link::Replicas::new(endpoints, cluster_token)?;
        Ok(Arc::new(CachedVerifier::new(
            RemoteVerifier { replicas },
            Duration::from_secs(10),
            Duration::from_secs(2),
        )))
    }
}

impl TokenVerifier for RemoteVerifier {
    fn verify<'a>(&'a self, token: &'a str) -> Pin<Box<dyn Future<Output = Verdict> + Send + 'a>> {
        use pylon_proto::control::identity_client::IdentityClient;
        use pylon_proto::control::AuthenticateRequest;
        Box::pin(async move {
            let request = AuthenticateRequest {
                token_id: pylon_proto::auth::token_id(token)
                    .unwrap_or_default()
                    .to_owned(),
                digest: token_digest(token).to_vec(),
            };
            let reply = self
                .replicas
                .first_answer(|channel, bearer| {
                    let request = request.clone();
                    async move {
                        IdentityClient::new(channel)
                            .authenticate(pylon_proto::auth::with_bearer(
                                request,
                                bearer.as_deref(),
                            ))
                            .await
                    }
                })
                .await?;
            if !reply.valid {
                return Ok(None);
            }
            let role = reply.role.parse()?;
            Ok(Some(Principal {
                user: reply.user,
                role,
                token_id: Some(reply.token_id).filter(|t| !t.is_empty()),
            }))
        })
    }
}
