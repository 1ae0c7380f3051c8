//! Tiny HTTP helpers for admin endpoints.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use crate::control::ADMIN_TOKEN;

/// GET with the harness's admin token; returns (status, body). Connection errors come
/// back as status 0.
pub fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    get_as(addr, path, Some(ADMIN_TOKEN))
}

/// GET with `token` (or none).
pub fn get_as(addr: SocketAddr, path: &str, token: Option<&str>) -> (u16, String) {
    let mut request = agent().get(&format!("http://{addr}{path}"));
    if let Some(t) = token {
        request = request.set("authorization", &format!("Bearer {t}"));
    }
    match answer(request.call()) {
        (0, _) => (0, String::new()),
        answer => answer,
    }
}

/// The harness's HTTP client. Nothing it asks may hang a test: every call has a deadline,
/// and connections are not pooled, so a restarted service is met on a fresh one.
pub fn agent() -> &'static ureq::Agent {
    static AGENT: OnceLock<ureq::Agent> = OnceLock::new();
    AGENT.get_or_init(|| {
        ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(5))
            .timeout(Duration::from_secs(60))
            .max_idle_connections(0)
            .build()
    })
}

/// A call's status and body; a transport error is status 0 with its text. An event
/// stream (`text/event-stream`) never ends, so only its status is kept.
pub fn answer(result: Result<ureq::Response, ureq::Error>) -> (u16, String) {
    let response = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => return (0, e.to_string()),
    };
    let status = response.status();
    if response.content_type() == "text/event-stream" {
        return (status, String::new());
    }
    (status, response.into_string().unwrap_or_default())
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
    let mut request = agent().request(method, &format!("http://{addr}{path}"));
    if let Some(t) = token {
        request = request.set("authorization", &format!("Bearer {t}"));
    }
    let (code, text) = answer(match body {
        Some(body) => request
            .set("content-type", "application/json")
            .send_string(&body.to_string()),
        None => request.call(),
    });
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

/// An HTTPS call (HTTP/1.1, one connection) verified against the CA in `ca` (PEM), with an
/// optional JSON body and token; returns (status, parsed body). A refused handshake or a
/// connection error comes back as status 0.
pub fn https_call(
    addr: SocketAddr,
    ca: &std::path::Path,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
    token: Option<&str>,
) -> (u16, serde_json::Value) {
    use std::io::{Read, Write};
    let answer = (|| -> anyhow::Result<(u16, String)> {
        let mut roots = rustls::RootCertStore::empty();
        let pem = std::fs::read(ca)?;
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            roots.add(cert?)?;
        }
        let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let name = rustls::pki_types::ServerName::from(addr.ip());
        let conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name)?;
        let tcp = std::net::TcpStream::connect(addr)?;
        tcp.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
            body.len()
        );
        if let Some(t) = token {
            request.push_str(&format!("authorization: Bearer {t}\r\n"));
        }
        request.push_str("\r\n");
        request.push_str(&body);
        tls.write_all(request.as_bytes())?;
        let mut raw = Vec::new();
        // The server may close without close_notify; what was read is the answer.
        let _ = tls.read_to_end(&mut raw);
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((text.as_str(), ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let chunked = head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked");
        Ok((
            status,
            if chunked {
                dechunk(rest)
            } else {
                rest.to_owned()
            },
        ))
    })();
    match answer {
        Ok((code, text)) => (
            code,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
        ),
        Err(e) => (0, serde_json::Value::String(e.to_string())),
    }
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || tail.len() < n {
            break;
        }
        out.push_str(&tail[..n]);
        rest = tail[n..].trim_start_matches("\r\n");
    }
    out
}
