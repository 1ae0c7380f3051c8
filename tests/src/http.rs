//! Tiny HTTP helpers for admin endpoints.

use std::net::SocketAddr;

use crate::control::ADMIN_TOKEN;

/// GET with the harness's admin token; returns (status, body). Connection errors come
/// back as status 0.
pub fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    get_as(addr, path, Some(ADMIN_TOKEN))
}

/// GET with `token` (or none).
pub fn get_as(addr: SocketAddr, path: &str, token: Option<&str>) -> (u16, String) {
    let mut request = ureq::get(&format!("http://{addr}{path}"));
    if let Some(t) = token {
        request = request.set("authorization", &format!("Bearer {t}"));
    }
    match request.call() {
        Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
        Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap_or_default()),
        Err(_) => (0, String::new()),
    }
}

/// POST JSON with the harness's admin token; returns (status, parsed body).
pub fn post_json(
    addr: SocketAddr,
    path: &str,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    call_as(addr, "POST", path, Some(body), Some(ADMIN_TOKEN))
}

/// Any call with an optional JSON body and token; returns (status, parsed body).
pub fn call_as(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
    token: Option<&str>,
) -> (u16, serde_json::Value) {
    let mut request = ureq::request(method, &format!("http://{addr}{path}"));
    if let Some(t) = token {
        request = request.set("authorization", &format!("Bearer {t}"));
    }
    let result = match body {
        Some(body) => request
            .set("content-type", "application/json")
            .send_string(&body.to_string()),
        None => request.call(),
    };
    let (code, text) = match result {
        Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
        Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap_or_default()),
        Err(e) => (0, e.to_string()),
    };
    (
        code,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
    )
}

/// The value of the first Prometheus sample whose line starts with `name` and contains
/// every `label` fragment (e.g. `reason="replaced"`); 0 when absent.
pub fn metric(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| labels.iter().all(|f| l.contains(f)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
