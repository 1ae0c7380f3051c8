//! HTTP answers every service gives the same way.

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use pylon_proto::api::ApiError;

/// An error answer: `status` with the one error body, `{"error": {"code", "message"}}`.
pub fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (status, Json(ApiError::new(code, message))).into_response()
}

// The error is the ready-made answer, sent at once; its size does not matter.
#[allow(clippy::result_large_err)]
/// The operator token check of every HTTP API: `Authorization: Bearer <token>`, compared
/// in constant time. `Err` is the answer: 403 `off_code` when no token is configured (the
/// API is off: fail closed), 401 `unauthorized` when the token is missing or wrong.
pub fn require_bearer(
    headers: &HeaderMap,
    expected: Option<&str>,
    off_code: &str,
    off_message: &str,
) -> Result<(), Response> {
    let Some(expected) = expected else {
        return Err(error(StatusCode::FORBIDDEN, off_code, off_message));
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if pylon_proto::auth::bearer_matches(presented, expected) {
        Ok(())
    } else {
        Err(error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong admin token (send Authorization: Bearer <admin token>)",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(token: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            format!("Bearer {token}").parse().expect("ascii"),
        );
        h
    }

    #[test]
    fn only_the_configured_token_passes_and_no_token_means_off() {
        assert!(require_bearer(&with("s3cret"), Some("s3cret"), "off", "off").is_ok());
        let wrong = require_bearer(&with("guess"), Some("s3cret"), "off", "off");
        assert_eq!(wrong.map_err(|r| r.status()), Err(StatusCode::UNAUTHORIZED));
        let none = require_bearer(&HeaderMap::new(), Some("s3cret"), "off", "off");
        assert_eq!(none.map_err(|r| r.status()), Err(StatusCode::UNAUTHORIZED));
        let off = require_bearer(&with("s3cret"), None, "off", "off");
        assert_eq!(off.map_err(|r| r.status()), Err(StatusCode::FORBIDDEN));
    }
}
