//! A small blocking HTTP client for the control plane's JSON API (see [`pylon_proto::api::control`]),
//! the app service's operator API (`pylon-app`, same error body and admin token) and
//! the edge's admin API (`pylon-edge`, same error body, no token), whose errors say
//! what an operator should do about them. An https:// endpoint is checked against the
//! cluster CA ([`Client::with_trust`], see [`crate::tls`]).

use std::fmt;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use pylon_proto::api::control::ApiError;

use crate::tls::Trust;

/// How long to wait for a TCP connection to the control plane.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a whole request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The server a [`Client`] talks to, for its error messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Service {
    #[default]
    ControlPlane,
    /// The app service's operator API.
    App,
    /// An edge's admin API (`pylon-edge --admin-listen`), which takes no token.
    EdgeAdmin,
}

impl Service {
    /// "the control plane" / "the app service".
    pub fn name(self) -> &'static str {
        match self {
            Service::ControlPlane => "the control plane",
            Service::App => "the app service",
            Service::EdgeAdmin => "the edge",
        }
    }

    /// Which program to check, and where its address is set.
    fn unreachable_hint(self) -> &'static str {
        match self {
            Service::ControlPlane => "is pylon-control running? set --endpoint or PYLON_ENDPOINT",
            Service::App => {
                "is pylon-app running, with its operator API on that address? set \
                 --app-endpoint, PYLON_APP_ENDPOINT or app_endpoint in the config file"
            }
            Service::EdgeAdmin => {
                "is pylon-edge running, with its admin server on that address? set \
                 --edge-admin, PYLON_EDGE_ADMIN or edge_admin in the config file"
            }
        }
    }

    /// What the endpoint should be, for replies that are not the API's.
    fn endpoint_hint(self) -> &'static str {
        match self {
            Service::ControlPlane => {
                "is --endpoint the control plane's HTTP port, 7400 by default, and the same \
                 version as pylonctl?"
            }
            Service::App => {
                "is --app-endpoint the app service's HTTP port (7510 by default), or, without \
                 one, --endpoint a control plane that forwards to the app, of the same \
                 version as pylonctl?"
            }
            Service::EdgeAdmin => {
                "is --edge-admin the edge's admin port, 9100 by default, and the same \
                 version as pylonctl?"
            }
        }
    }
}

/// Talks to one control plane, app service or edge.
pub struct Client {
    endpoint: String,
    token: Option<String>,
    token_hint: String,
    service: Service,
    /// The TCP connection's and the whole request's time limits.
    timeouts: (Duration, Duration),
    /// The cluster CA, for an https endpoint.
    trust: Option<Trust>,
    agent: ureq::Agent,
}

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientError {
    /// No HTTP conversation took place: refused, timed out, unknown host.
    Unreachable {
        service: Service,
        endpoint: String,
        reason: String,
    },
    /// The server answered with an error status.
    Api {
        service: Service,
        method: &'static str,
        path: String,
        status: u16,
        /// The [`ApiError`] body, if the body was one.
        error: Option<ApiError>,
        /// Whether a token was sent.
        token_sent: bool,
        /// Where the operator can put a token.
        token_hint: String,
    },
    /// The TLS handshake with an https endpoint failed: the server's certificate was
    /// refused, or the server does not speak TLS there.
    Tls {
        service: Service,
        endpoint: String,
        /// What it means and what to do (see [`crate::tls::explain`]).
        reason: String,
    },
    /// Something answered, but not with what the API promises.
    BadReply {
        service: Service,
        endpoint: String,
        method: &'static str,
        path: String,
        reason: String,
    },
}

impl ClientError {
    /// The HTTP status of an error reply.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The API's error code (`no_such_pile`, ...) of an error reply that had one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { error: Some(e), .. } => Some(e.code()),
            _ => None,
        }
    }

    /// The API's message of an error reply that had one.
    pub fn message(&self) -> Option<&str> {
        match self {
            ClientError::Api { error: Some(e), .. } => Some(e.message()),
            _ => None,
        }
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Unreachable {
                service,
                endpoint,
                reason,
            } => write!(
                f,
                "cannot reach {} at {endpoint}: {reason} ({})",
                service.name(),
                service.unreachable_hint()
            ),
            ClientError::Api {
                service,
                method,
                path,
                status,
                error,
                token_sent,
                token_hint,
            } => {
                match error {
                    Some(e) => write!(f, "{} ({}, HTTP {status})", e.message(), e.code())?,
                    None => write!(f, "{method} {path} failed with HTTP {status}")?,
                }
                match (status, token_sent) {
                    (401, false) => write!(
                        f,
                        "\nThis command needs the control plane's admin token{}: {token_hint}.",
                        match service {
                            Service::ControlPlane | Service::EdgeAdmin => "",
                            Service::App => " (the app service uses the same one)",
                        }
                    ),
                    (401, true) => write!(
                        f,
                        "\n{} refused the token; check the token given by --token, \
                         PYLON_TOKEN or the config file{}.",
                        capitalized(service.name()),
                        match service {
                            Service::ControlPlane | Service::EdgeAdmin => "",
                            Service::App => {
                                " (the app service must be started with the control \
                                 plane's admin token)"
                            }
                        }
                    ),
                    // `admin_disabled` / `operator_api_disabled`: the server has no admin
                    // token; its message says how to give it one.
                    (403, _)
                        if error.as_ref().is_some_and(|e| {
                            e.code() == "admin_disabled" || e.code() == "operator_api_disabled"
                        }) =>
                    {
                        Ok(())
                    }
                    (403, _) => write!(
                        f,
                        "\nThe token given is not allowed to do this; use the admin token \
                         ({token_hint})."
                    ),
                    (404, _) if error.is_none() => write!(f, " ({})", service.endpoint_hint()),
                    _ => Ok(()),
                }
            }
            ClientError::Tls {
                service,
                endpoint,
                reason,
            } => write!(
                f,
                "cannot talk to {} at {endpoint}{}: {reason}",
                service.name(),
                if crate::config::is_https(endpoint) {
                    " over https"
                } else {
                    ""
                }
            ),
            ClientError::BadReply {
                service,
                endpoint,
                method,
                path,
                reason,
            } => write!(
                f,
                "{} at {endpoint} gave {method} {path} a reply pylonctl does not \
                 understand: {reason} ({})",
                service.name(),
                service.endpoint_hint()
            ),
        }
    }
}

impl std::error::Error for ClientError {}

fn capitalized(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

impl Client {
    /// `endpoint`: `http://host:port` or `https://host:port`, no trailing slash (see
    /// `config::normalize_http_endpoint`); for https, also [`Client::with_trust`].
    /// `token_hint`: where to put a token, for the message when one is needed.
    pub fn new(endpoint: &str, token: Option<String>, token_hint: String) -> Self {
        Self::for_service(Service::ControlPlane, endpoint, token, token_hint)
    }

    /// A client of the app service's operator API (`--app-endpoint`).
    pub fn app(endpoint: &str, token: Option<String>, token_hint: String) -> Self {
        Self::for_service(Service::App, endpoint, token, token_hint)
    }

    /// A client of an edge's admin API (`--edge-admin`): it sends no token.
    pub fn edge_admin(endpoint: &str) -> Self {
        Self::for_service(Service::EdgeAdmin, endpoint, None, String::new())
    }

    fn for_service(
        service: Service,
        endpoint: &str,
        token: Option<String>,
        token_hint: String,
    ) -> Self {
        let timeouts = (CONNECT_TIMEOUT, REQUEST_TIMEOUT);
        Client {
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            token,
            token_hint,
            service,
            timeouts,
            trust: None,
            agent: agent(timeouts, None),
        }
    }

    /// The same client with other time limits: `connect` for the TCP connection, `total`
    /// for a whole request (e.g. shorter than a refresh interval, for `pylonctl top`).
    pub fn with_timeouts(mut self, connect: Duration, total: Duration) -> Self {
        self.timeouts = (connect, total);
        self.agent = agent(self.timeouts, self.trust.as_ref());
        self
    }

    /// The same client, checking an https server's certificate against `trust` (the
    /// cluster CA; see `config::Settings::trust_for`). `None`: plain http.
    pub fn with_trust(mut self, trust: Option<Trust>) -> Self {
        self.trust = trust;
        self.agent = agent(self.timeouts, self.trust.as_ref());
        self
    }

    /// The error for a reply that parsed as JSON but not as what the command expects.
    pub fn bad_reply(&self, method: &'static str, path: &str, reason: String) -> ClientError {
        ClientError::BadReply {
            service: self.service,
            endpoint: self.endpoint.clone(),
            method,
            path: path.to_owned(),
            reason,
        }
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// An admin `GET`, with the token.
    pub fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<T, ClientError> {
        self.call("GET", path, query, true)
    }

    /// A public `GET` (no token is sent).
    pub fn get_public<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<T, ClientError> {
        self.call("GET", path, query, false)
    }

    /// A public `GET` of a text resource such as `/metrics` (no token is sent): the body
    /// as it came.
    pub fn get_text(&self, path: &str) -> Result<String, ClientError> {
        self.text(path, &[], "text/plain, */*", false)
    }

    /// An admin `GET` of a text resource, such as a CSV report (`accept`: the media type
    /// asked for), with the token: the body as it came.
    pub fn get_admin_text(
        &self,
        path: &str,
        query: &[(&str, &str)],
        accept: &str,
    ) -> Result<String, ClientError> {
        self.text(path, query, accept, true)
    }

    fn text(
        &self,
        path: &str,
        query: &[(&str, &str)],
        accept: &str,
        admin: bool,
    ) -> Result<String, ClientError> {
        let mut request = self
            .agent
            .get(&format!("{}{path}", self.endpoint))
            .set("Accept", accept);
        for (k, v) in query {
            request = request.query(k, v);
        }
        let token = self.token.as_deref().filter(|_| admin);
        if let Some(token) = token {
            request = request.set("Authorization", &format!("Bearer {token}"));
        }
        match request.call() {
            Ok(response) => response
                .into_string()
                .map_err(|e| self.bad_reply("GET", path, e.to_string())),
            Err(e) => Err(self.failed("GET", path, e, token.is_some())),
        }
    }

    /// An admin `POST` with an empty body.
    pub fn post<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.call("POST", path, &[], true)
    }

    /// An admin `DELETE` with no body.
    pub fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.call("DELETE", path, &[], true)
    }

    /// An admin `POST` with a JSON body.
    pub fn post_json<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        self.call_with_body("POST", path, body)
    }

    /// An admin `PUT` with a JSON body.
    pub fn put_json<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        self.call_with_body("PUT", path, body)
    }

    /// A public `POST` with a JSON body (no token is sent), such as `/v1/login`.
    pub fn post_json_public<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let body = self.encode("POST", path, body)?;
        self.send("POST", path, &[], false, Some(&body))
    }

    /// An admin `POST` with an empty body whose reply may have none (`204 No Content`):
    /// `None` then.
    pub fn post_optional<T: DeserializeOwned>(&self, path: &str) -> Result<Option<T>, ClientError> {
        self.send_optional("POST", path, None)
    }

    /// An admin `DELETE` whose reply may have no body (`204 No Content`): `None` then.
    pub fn delete_optional<T: DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<Option<T>, ClientError> {
        self.send_optional("DELETE", path, None)
    }

    /// An admin `PUT` with a JSON body whose reply may have none (`204 No Content`): `None`
    /// then.
    pub fn put_json_optional<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<Option<T>, ClientError> {
        let body = self.encode("PUT", path, body)?;
        self.send_optional("PUT", path, Some(&body))
    }

    fn encode<B: Serialize + ?Sized>(
        &self,
        method: &'static str,
        path: &str,
        body: &B,
    ) -> Result<Vec<u8>, ClientError> {
        serde_json::to_vec(body)
            .map_err(|e| self.bad_reply(method, path, format!("cannot encode the request: {e}")))
    }

    fn call_with_body<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: &'static str,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let body = self.encode(method, path, body)?;
        self.send(method, path, &[], true, Some(&body))
    }

    fn call<T: DeserializeOwned>(
        &self,
        method: &'static str,
        path: &str,
        query: &[(&str, &str)],
        admin: bool,
    ) -> Result<T, ClientError> {
        self.send(method, path, query, admin, None)
    }

    /// `body`: JSON to send; `None` sends nothing (an empty body for `POST`).
    fn send<T: DeserializeOwned>(
        &self,
        method: &'static str,
        path: &str,
        query: &[(&str, &str)],
        admin: bool,
        body: Option<&[u8]>,
    ) -> Result<T, ClientError> {
        self.exchange(method, path, query, admin, body)?
            .into_json::<T>()
            .map_err(|e| self.bad_reply(method, path, e.to_string()))
    }

    /// An admin call (with a JSON `body`, or none) whose successful reply may be empty.
    fn send_optional<T: DeserializeOwned>(
        &self,
        method: &'static str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<Option<T>, ClientError> {
        let response = self.exchange(method, path, &[], true, body)?;
        if response.status() == 204 {
            return Ok(None);
        }
        let text = response
            .into_string()
            .map_err(|e| self.bad_reply(method, path, e.to_string()))?;
        if text.trim().is_empty() {
            return Ok(None);
        }
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| self.bad_reply(method, path, e.to_string()))
    }

    /// One request; a reply with an error status, or none, is the error.
    fn exchange(
        &self,
        method: &'static str,
        path: &str,
        query: &[(&str, &str)],
        admin: bool,
        body: Option<&[u8]>,
    ) -> Result<ureq::Response, ClientError> {
        let mut request = self
            .agent
            .request(method, &format!("{}{path}", self.endpoint))
            .set("Accept", "application/json");
        for (k, v) in query {
            request = request.query(k, v);
        }
        let token = self.token.as_deref().filter(|_| admin);
        if let Some(token) = token {
            request = request.set("Authorization", &format!("Bearer {token}"));
        }
        let result = match body {
            Some(body) => request
                .set("Content-Type", "application/json")
                .send_bytes(body),
            None if method == "POST" => request.send_bytes(&[]),
            None => request.call(),
        };
        result.map_err(|e| self.failed(method, path, e, token.is_some()))
    }

    /// What a request that got no successful reply comes to.
    fn failed(
        &self,
        method: &'static str,
        path: &str,
        error: ureq::Error,
        token_sent: bool,
    ) -> ClientError {
        let bad_reply = |reason: String| self.bad_reply(method, path, reason);
        match error {
            ureq::Error::Status(status, response) => {
                let body = response.into_string().unwrap_or_default();
                ClientError::Api {
                    service: self.service,
                    method,
                    path: path.to_owned(),
                    status,
                    error: serde_json::from_str::<ApiError>(&body).ok(),
                    token_sent,
                    token_hint: self.token_hint.clone(),
                }
            }
            ureq::Error::Transport(t) => match (crate::tls::find_tls_error(&t), t.kind()) {
                (Some(tls), _) => ClientError::Tls {
                    service: self.service,
                    endpoint: self.endpoint.clone(),
                    reason: crate::tls::explain(
                        tls,
                        &self.endpoint,
                        self.trust.as_ref().map(|t| t.ca.as_path()),
                    ),
                },
                // Plain http to a TLS server, which answers with a TLS alert record
                // (0x15 0x03 ...): ureq quotes the bytes it could not read as a header.
                _ if !crate::config::is_https(&self.endpoint)
                    && t.to_string().contains("[21, 3, ") =>
                {
                    ClientError::Tls {
                        service: self.service,
                        endpoint: self.endpoint.clone(),
                        reason: "it answered with TLS, so it runs with cluster TLS: use an \
                                 https:// URL, and the cluster CA (--ca)"
                            .into(),
                    }
                }
                (
                    None,
                    ureq::ErrorKind::ConnectionFailed | ureq::ErrorKind::Dns | ureq::ErrorKind::Io,
                ) => ClientError::Unreachable {
                    service: self.service,
                    endpoint: self.endpoint.clone(),
                    reason: transport_reason(&t),
                },
                _ => bad_reply(t.to_string()),
            },
        }
    }
}

fn agent((connect, total): (Duration, Duration), trust: Option<&Trust>) -> ureq::Agent {
    let builder = ureq::AgentBuilder::new()
        .timeout_connect(connect)
        .timeout(total)
        .user_agent(concat!("pylonctl/", env!("CARGO_PKG_VERSION")));
    match trust {
        Some(trust) => builder.tls_config(trust.config.clone()),
        None => builder,
    }
    .build()
}

/// "connection refused", "timed out", ... from a transport error's chain of causes.
fn transport_reason(t: &ureq::Transport) -> String {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(t);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return io_reason(io);
        }
        source = e.source();
    }
    match t.kind() {
        ureq::ErrorKind::Dns => format!(
            "cannot resolve the host name{}",
            t.message().map(|m| format!(" ({m})")).unwrap_or_default()
        ),
        _ => t.message().map_or_else(|| t.to_string(), str::to_owned),
    }
}

/// A short, lower-case description of a socket error.
pub fn io_reason(e: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    match e.kind() {
        ConnectionRefused => "connection refused".into(),
        TimedOut | WouldBlock => "timed out".into(),
        ConnectionReset => "connection reset".into(),
        ConnectionAborted => "connection aborted".into(),
        UnexpectedEof => "the connection closed before a reply".into(),
        _ => e.to_string(),
    }
}

/// Percent-encodes one path segment (an edge id may hold any character).
pub fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;
    use std::sync::mpsc;
    use std::thread;

    use super::*;
    use pylon_proto::api::control::EdgeInfo;

    /// Serves one canned `(status, body)` per connection, in order, on 127.0.0.1, and
    /// sends each request's head (request line and headers) back over the channel.
    pub(crate) fn serve(
        replies: Vec<(u16, String)>,
    ) -> (String, mpsc::Receiver<String>, thread::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = mpsc::channel();
        let handle = thread::spawn(move || {
            for (status, body) in replies {
                let (stream, _) = listener.accept().unwrap();
                let mut reader = BufReader::new(stream);
                let mut head = String::new();
                loop {
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    if line == "\r\n" || line.is_empty() {
                        break;
                    }
                    head.push_str(&line);
                }
                tx.send(head).unwrap();
                let mut stream = reader.into_inner();
                write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
                .unwrap();
            }
        });
        (endpoint, rx, handle)
    }

    /// A CA and a certificate for 127.0.0.1 (and `localhost`) issued by it, in a new
    /// folder: `ca.pem`, `server.pem`, `server.key`.
    pub(crate) fn tls_files() -> tempfile::TempDir {
        use crate::commands::certs;
        let dir = tempfile::tempdir().unwrap();
        let now = time::OffsetDateTime::now_utc();
        certs::init(dir.path(), "Test CA", 30, false, now).unwrap();
        let names = certs::Names::new(&["localhost".into()], &["127.0.0.1".parse().unwrap()]);
        certs::issue(dir.path(), "server", &names.unwrap(), 30, false, now).unwrap();
        dir
    }

    /// [`serve`] over TLS, with the certificate `chain` and `key` (PEM files), as the
    /// services serve HTTPS (no client certificate asked for). A connection whose
    /// handshake fails uses up its reply, and sends `Err(why)` over the channel.
    pub(crate) fn serve_tls(
        chain: &std::path::Path,
        key: &std::path::Path,
        replies: Vec<(u16, String)>,
    ) -> (
        String,
        mpsc::Receiver<Result<String, String>>,
        thread::JoinHandle<()>,
    ) {
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let chain_path = chain;
        let chain = crate::tls::read_pem_certs(chain_path).unwrap();
        let key = rustls_pemfile::private_key(&mut std::fs::read(key).unwrap().as_slice())
            .unwrap()
            .unwrap();
        // As `service/src/tls.rs` serves HTTP: a client certificate of the cluster CA (the
        // `ca.pem` beside `chain`) is asked for but optional.
        let mut roots = rustls::RootCertStore::empty();
        let ca = chain_path.with_file_name("ca.pem");
        for c in crate::tls::read_pem_certs(&ca).unwrap() {
            roots.add(c).unwrap();
        }
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            std::sync::Arc::new(roots),
            provider.clone(),
        )
        .allow_unauthenticated()
        .build()
        .unwrap();
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .unwrap();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let config = std::sync::Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("https://{}", listener.local_addr().unwrap());
        let (tx, rx) = mpsc::channel();
        let handle = thread::spawn(move || {
            for (status, body) in replies {
                let (mut tcp, _) = listener.accept().unwrap();
                let mut conn = rustls::ServerConnection::new(config.clone()).unwrap();
                if let Err(e) = conn.complete_io(&mut tcp) {
                    tx.send(Err(e.to_string())).unwrap();
                    continue;
                }
                let mut reader = BufReader::new(rustls::StreamOwned::new(conn, tcp));
                let mut head = String::new();
                loop {
                    let mut line = String::new();
                    if let Err(e) = reader.read_line(&mut line) {
                        head = format!("read failed: {e}");
                        break;
                    }
                    if line == "\r\n" || line.is_empty() {
                        break;
                    }
                    head.push_str(&line);
                }
                tx.send(Ok(head)).unwrap();
                let mut stream = reader.into_inner();
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                stream.conn.send_close_notify();
                let _ = stream.flush();
            }
        });
        (endpoint, rx, handle)
    }

    pub(crate) fn sample_edges() -> Vec<EdgeInfo> {
        vec![
            EdgeInfo {
                id: "edge-1".into(),
                tcp_address: "10.0.0.1:7000".into(),
                tls_address: "10.0.0.1:7443".into(),
                capacity: 20000,
                sessions: 1234,
                draining: false,
                leaving: false,
                live: true,
                version: "0.1.0".into(),
                registration: 1,
            },
            EdgeInfo {
                id: "edge-2".into(),
                tcp_address: "10.0.0.2:7000".into(),
                tls_address: String::new(),
                capacity: 20000,
                sessions: 7,
                draining: true,
                leaving: false,
                live: true,
                version: "0.1.0".into(),
                registration: 1,
            },
        ]
    }

    /// A port nothing listens on.
    pub(crate) fn refused_endpoint() -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        format!("http://{addr}")
    }

    fn unauthorized() -> String {
        serde_json::to_string(&ApiError::new(
            "unauthorized",
            "this call needs the admin token",
        ))
        .unwrap()
    }

    #[test]
    fn a_200_reply_is_parsed_and_the_token_is_sent() {
        let edges = sample_edges();
        let (endpoint, requests, server) =
            serve(vec![(200, serde_json::to_string(&edges).unwrap())]);
        let client = Client::new(&endpoint, Some("s3cret".into()), "hint".into());
        let got: Vec<EdgeInfo> = client.get("/v1/admin/edges", &[]).unwrap();
        assert_eq!(got, edges);
        let head = requests.recv().unwrap();
        assert!(head.starts_with("GET /v1/admin/edges HTTP/1.1"), "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("authorization: bearer s3cret"),
            "{head}"
        );
        server.join().unwrap();
    }

    #[test]
    fn public_calls_send_no_token_and_encode_the_query() {
        let (endpoint, requests, server) = serve(vec![(200, "{}".into())]);
        let client = Client::new(&endpoint, Some("s3cret".into()), "hint".into());
        let _: serde_json::Value = client
            .get_public(
                "/v1/entry",
                &[("pile", "32010200000001"), ("transport", "tls")],
            )
            .unwrap();
        let head = requests.recv().unwrap();
        assert!(
            head.starts_with("GET /v1/entry?pile=32010200000001&transport=tls HTTP/1.1"),
            "{head}"
        );
        assert!(
            !head.to_ascii_lowercase().contains("authorization"),
            "{head}"
        );
        server.join().unwrap();
    }

    #[test]
    fn a_401_without_a_token_says_how_to_set_one() {
        let (endpoint, _requests, server) =
            serve(vec![(401, unauthorized()), (401, unauthorized())]);
        let hint = "pass --token, set PYLON_TOKEN, or put token = \"...\" in \
                    ~/.config/pylon/pylonctl.toml";
        let client = Client::new(&endpoint, None, hint.into());
        let err = client
            .get::<Vec<EdgeInfo>>("/v1/admin/edges", &[])
            .unwrap_err();
        assert_eq!(err.status(), Some(401));
        let msg = err.to_string();
        assert!(
            msg.starts_with("this call needs the admin token (unauthorized, HTTP 401)"),
            "{msg}"
        );
        assert!(msg.contains(hint), "{msg}");

        let client = Client::new(&endpoint, Some("wrong".into()), hint.into());
        let msg = client
            .get::<Vec<EdgeInfo>>("/v1/admin/edges", &[])
            .unwrap_err()
            .to_string();
        assert!(msg.contains("refused the token"), "{msg}");
        server.join().unwrap();
    }

    #[test]
    fn connection_refused_names_the_endpoint() {
        let endpoint = refused_endpoint();
        let client = Client::new(&endpoint, None, "hint".into());
        let err = client
            .get::<Vec<EdgeInfo>>("/v1/admin/edges", &[])
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "cannot reach the control plane at {endpoint}: connection refused (is \
                 pylon-control running? set --endpoint or PYLON_ENDPOINT)"
            )
        );
    }

    #[test]
    fn a_reply_of_the_wrong_shape_is_a_bad_reply() {
        let (endpoint, _requests, server) =
            serve(vec![(200, "<html>hi</html>".into()), (404, "nope".into())]);
        let client = Client::new(&endpoint, None, "hint".into());
        let err = client
            .get::<Vec<EdgeInfo>>("/v1/admin/edges", &[])
            .unwrap_err();
        assert!(matches!(err, ClientError::BadReply { .. }), "{err:?}");
        let err = client
            .get::<Vec<EdgeInfo>>("/v1/admin/edges", &[])
            .unwrap_err();
        assert_eq!(err.status(), Some(404));
        assert!(err.to_string().contains("HTTP 404"), "{err}");
        server.join().unwrap();
    }

    #[test]
    fn the_edge_admin_client_deletes_without_a_token() {
        let (endpoint, requests, server) = serve(vec![
            (200, r#"{"unblocked":"203.0.113.7"}"#.into()),
            (
                404,
                r#"{"error":{"code":"no_guard","message":"no guard here"}}"#.into(),
            ),
        ]);
        let client = Client::edge_admin(&endpoint);
        let got: serde_json::Value = client.delete("/v1/guard/blocklist/203.0.113.7").unwrap();
        assert_eq!(got["unblocked"], "203.0.113.7");
        let head = requests.recv().unwrap();
        assert!(
            head.starts_with("DELETE /v1/guard/blocklist/203.0.113.7 HTTP/1.1"),
            "{head}"
        );
        assert!(
            !head.to_ascii_lowercase().contains("authorization"),
            "{head}"
        );
        let err = client
            .get::<serde_json::Value>("/v1/guard", &[])
            .unwrap_err();
        assert_eq!((err.status(), err.code()), (Some(404), Some("no_guard")));
        assert_eq!(err.to_string(), "no guard here (no_guard, HTTP 404)");
        server.join().unwrap();

        let endpoint = refused_endpoint();
        let err = Client::edge_admin(&endpoint)
            .get::<serde_json::Value>("/v1/guard", &[])
            .unwrap_err();
        assert!(matches!(
            err,
            ClientError::Unreachable {
                service: Service::EdgeAdmin,
                ..
            }
        ));
        assert!(
            err.to_string()
                .contains("set --edge-admin, PYLON_EDGE_ADMIN"),
            "{err}"
        );
    }

    #[test]
    fn https_is_checked_against_the_cluster_ca() {
        let dir = tls_files();
        let d = dir.path();
        let trust = crate::tls::trust(&d.join("ca.pem")).unwrap();
        let edges = sample_edges();
        let body = serde_json::to_string(&edges).unwrap();
        let (endpoint, requests, server) = serve_tls(
            &d.join("server.pem"),
            &d.join("server.key"),
            vec![(200, body.clone()), (200, body.clone()), (200, body)],
        );

        // The cluster CA vouches for the server's certificate, which names 127.0.0.1.
        let client = Client::new(&endpoint, Some("s3cret".into()), "hint".into())
            .with_trust(Some(trust.clone()));
        let got: Vec<EdgeInfo> = client.get("/v1/admin/edges", &[]).unwrap();
        assert_eq!(got, edges);
        let head = requests.recv().unwrap().unwrap();
        assert!(head.starts_with("GET /v1/admin/edges HTTP/1.1"), "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("authorization: bearer s3cret"),
            "{head}"
        );

        // The same server, trusted through another CA: refused, before the token is sent.
        let other = tls_files();
        let other_ca = other.path().join("ca.pem");
        let client = Client::app(&endpoint, Some("s3cret".into()), "hint".into())
            .with_trust(Some(crate::tls::trust(&other_ca).unwrap()));
        let err = client
            .get::<Vec<EdgeInfo>>("/v1/admin/edges", &[])
            .unwrap_err();
        assert!(matches!(err, ClientError::Tls { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!(
                "cannot talk to the app service at {endpoint} over https: its certificate was \
                 not issued by the CA in {}",
                other_ca.display()
            )),
            "{msg}"
        );
        assert!(requests.recv().unwrap().is_err());
        let failure = crate::cli::Failure::from(err);
        assert_eq!(failure.exit_code(), 1);

        // Without a CA given, the system's roots do not know the cluster CA either.
        let err = Client::new(&endpoint, None, "hint".into())
            .get::<Vec<EdgeInfo>>("/v1/admin/edges", &[])
            .unwrap_err();
        assert!(err.to_string().contains("not issued by"), "{err}");
        assert!(requests.recv().unwrap().is_err());
        server.join().unwrap();

        // A certificate that does not name the address connected to.
        let now = time::OffsetDateTime::now_utc();
        let names = crate::commands::certs::Names::new(&["ctl.example".into()], &[]).unwrap();
        crate::commands::certs::issue(d, "named", &names, 30, false, now).unwrap();
        let (endpoint, requests, server) = serve_tls(
            &d.join("named.pem"),
            &d.join("named.key"),
            vec![(200, "[]".into())],
        );
        let err = Client::new(&endpoint, None, "hint".into())
            .with_trust(Some(trust.clone()))
            .get::<Vec<EdgeInfo>>("/v1/admin/edges", &[])
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("its certificate does not name 127.0.0.1")
                && msg.contains("ctl.example")
                && msg.contains("certs issue"),
            "{msg}"
        );
        assert!(requests.recv().unwrap().is_err());
        server.join().unwrap();

        // https:// to a server that speaks plain http.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("https://{}", listener.local_addr().unwrap());
        let plain = thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
            let _ = stream.flush();
            std::thread::sleep(Duration::from_millis(200));
        });
        let err = Client::new(&endpoint, None, "hint".into())
            .with_trust(Some(trust))
            .get::<Vec<EdgeInfo>>("/v1/admin/edges", &[])
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("does not speak TLS") && msg.contains("http://"),
            "{msg}"
        );
        plain.join().unwrap();
    }

    #[test]
    fn plain_http_to_an_https_server_says_to_use_https() {
        let dir = tls_files();
        let d = dir.path();
        let (endpoint, requests, server) = serve_tls(
            &d.join("server.pem"),
            &d.join("server.key"),
            vec![(200, "[]".into())],
        );
        let endpoint = endpoint.replace("https://", "http://");
        let err = Client::new(&endpoint, None, "hint".into())
            .get::<Vec<EdgeInfo>>("/v1/admin/edges", &[])
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "cannot talk to the control plane at {endpoint}: it answered with TLS, so it \
                 runs with cluster TLS: use an https:// URL, and the cluster CA (--ca)"
            )
        );
        assert_eq!(crate::cli::Failure::from(err).exit_code(), 1);
        assert!(requests.recv().unwrap().is_err());
        server.join().unwrap();
    }

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(path_segment("edge-1"), "edge-1");
        assert_eq!(path_segment("a/b c"), "a%2Fb%20c");
    }
}
