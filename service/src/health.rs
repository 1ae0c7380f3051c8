//! The three endpoints every process serves beside its own API: `/metrics` (Prometheus,
//! OpenMetrics text), `/healthz` (the process is alive) and `/readyz` (it should get work).

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use prometheus_client::registry::Registry;

/// `/healthz`: answering at all is the point.
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// `/metrics`: the registry in OpenMetrics text.
pub fn metrics(registry: &Registry) -> Response {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, registry) {
        Ok(()) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// `/readyz`: 200 `ready`, or 503 with why not.
pub fn readiness(ready: Result<(), &str>) -> Response {
    match ready {
        Ok(()) => "ready\n".into_response(),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_says_why_not() {
        assert_eq!(readiness(Ok(())).status(), StatusCode::OK);
        assert_eq!(
            readiness(Err("draining")).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }

    #[test]
    fn metrics_are_openmetrics_text() {
        let registry = Registry::default();
        let response = metrics(&registry);
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.headers()[header::CONTENT_TYPE]
            .to_str()
            .is_ok_and(|v| v.starts_with("application/openmetrics-text")));
    }
}
