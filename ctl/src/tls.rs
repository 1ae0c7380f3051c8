//! TLS to Pylon's services: the cluster CA that `pylonctl` trusts (`--ca`, `PYLON_CA`,
//! `ca` in the config file), the client certificate it shows (`--cert`/`--key`), and what
//! a failed handshake means to an operator.
//!
//! A service started with `--cluster-ca/--cluster-cert/--cluster-key` serves its HTTP API
//! over HTTPS with a certificate of the cluster CA (`pylonctl certs`), and its gRPC over
//! mutual TLS. pylonctl checks the server's certificate against the CA, and against the
//! host name or IP address of the URL. Over HTTPS the client certificate is optional
//! (operators prove who they are with tokens): pylonctl shows one only when given. The
//! gRPC route stream (`routes watch`) needs one: [`GrpcConnector`] dials it with the CA,
//! the client certificate and ALPN h2, from this command's settings alone (no
//! process-wide state). Only the cluster CA is trusted: the system's roots never are,
//! since no public CA issues the services' certificates.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{AlertDescription, CertificateError, ClientConfig, RootCertStore};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tonic::transport::Uri;

use crate::cli::Failure;
use crate::config::{ENV_CA, ENV_CERT, ENV_KEY};

/// The command that makes an operator's client certificate, for messages and help.
pub const ISSUE_CLIENT_CERT: &str =
    "pylonctl certs issue --dir DIR operator-NAME --dns operator-NAME";

/// A client certificate (PEM chain: the certificate, then the CA's) and its private key
/// (PEM), issued by the cluster CA: shown to servers that ask for one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCert {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// What a TLS client trusts (the cluster CA, and the file it came from, for messages),
/// and the client certificate it shows, if any.
#[derive(Clone)]
pub struct Trust {
    /// For HTTPS (HTTP/1.1): the CA as the only root, the client certificate if given.
    pub config: Arc<ClientConfig>,
    pub ca: PathBuf,
    pub client_cert: Option<ClientCert>,
}

impl std::fmt::Debug for Trust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trust")
            .field("ca", &self.ca)
            .field("client_cert", &self.client_cert)
            .finish()
    }
}

impl Trust {
    /// The same trust and client certificate for gRPC: ALPN h2, as the services' gRPC
    /// listeners require.
    pub fn grpc_config(&self) -> Arc<ClientConfig> {
        let mut config = (*self.config).clone();
        config.alpn_protocols = vec![b"h2".to_vec()];
        Arc::new(config)
    }
}

/// Where the client certificate can be given, for messages.
pub fn cert_hint(config_file: Option<&Path>) -> String {
    let file = config_file.map_or_else(
        || "~/.config/pylon/pylonctl.toml".to_owned(),
        |p| p.display().to_string(),
    );
    format!(
        "pass --cert FILE and --key FILE, set {ENV_CERT} and {ENV_KEY}, or put cert = \
         \"/path/to/operator.pem\" and key = \"/path/to/operator.key\" in {file} (a \
         certificate and key issued by the cluster CA, e.g. with `{ISSUE_CLIENT_CERT}`)"
    )
}

/// Where the CA can be given, for messages.
pub fn ca_hint(config_file: Option<&Path>) -> String {
    let file = config_file.map_or_else(
        || "~/.config/pylon/pylonctl.toml".to_owned(),
        |p| p.display().to_string(),
    );
    format!(
        "pass --ca FILE, set {ENV_CA}, or put ca = \"/path/to/ca.pem\" in {file} (the \
         cluster CA's certificate, ca.pem from `pylonctl certs init`)"
    )
}

/// Reads the certificates of a PEM file (every `CERTIFICATE` block, in order).
pub fn read_pem_certs(path: &Path) -> io::Result<Vec<CertificateDer<'static>>> {
    let text = std::fs::read(path)?;
    rustls_pemfile::certs(&mut text.as_slice()).collect()
}

/// A client configuration that trusts the certificates in `ca` (PEM) and nothing else,
/// and shows no client certificate.
pub fn trust(ca: &Path) -> Result<Trust, Failure> {
    trust_with(ca, None)
}

/// A client configuration that trusts the certificates in `ca` (PEM) and nothing else,
/// and shows `client` (when given) to servers that ask for a certificate. The client
/// certificate is checked here against the CA (issuer, expiry, client use), since a
/// server would refuse it anyway, with less to say why.
pub fn trust_with(ca: &Path, client: Option<&ClientCert>) -> Result<Trust, Failure> {
    let bad = |why: String| {
        Failure::BadInput(format!(
            "the cluster CA file {} (--ca / {ENV_CA} / ca in the config file) {why}",
            ca.display()
        ))
    };
    let certs = read_pem_certs(ca).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => bad("does not exist".into()),
        io::ErrorKind::InvalidData => bad(format!("is not PEM: {e}")),
        _ => bad(format!("cannot be read: {e}")),
    })?;
    if certs.is_empty() {
        return Err(bad(
            "holds no certificate (it should hold -----BEGIN CERTIFICATE----- blocks: the \
             cluster CA's ca.pem)"
                .into(),
        ));
    }
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots
            .add(cert)
            .map_err(|e| bad(format!("holds a certificate that cannot be used: {e}")))?;
    }
    let roots = Arc::new(roots);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| Failure::Other(anyhow::anyhow!("cannot set up TLS: {e}")))?
        .with_root_certificates(roots.clone());
    let config = match client {
        None => builder.with_no_client_auth(),
        Some(client) => {
            let (chain, key) = load_client_cert(client)?;
            check_client_cert(client, &chain, ca, roots, provider)?;
            builder.with_client_auth_cert(chain, key).map_err(|e| {
                Failure::BadInput(format!(
                    "the client certificate {} does not go with the key {} (--cert and \
                     --key must be the NAME.pem and NAME.key written together by `pylonctl \
                     certs issue`): {e}",
                    client.cert.display(),
                    client.key.display()
                ))
            })?
        }
    };
    Ok(Trust {
        config: Arc::new(config),
        ca: ca.to_owned(),
        client_cert: client.cloned(),
    })
}

/// The client certificate's two settings, for messages.
#[derive(Clone, Copy)]
enum ClientFile {
    Cert,
    Key,
}

impl ClientFile {
    /// "the client certificate file F (--cert / PYLON_CERT / cert in the config file) `why`".
    fn error(self, path: &Path, why: impl std::fmt::Display) -> Failure {
        let (what, key, var) = match self {
            ClientFile::Cert => ("certificate", "cert", ENV_CERT),
            ClientFile::Key => ("key", "key", ENV_KEY),
        };
        Failure::BadInput(format!(
            "the client {what} file {} (--{key} / {var} / {key} in the config file) {why}",
            path.display()
        ))
    }

    fn unreadable(self, path: &Path, e: &io::Error) -> Failure {
        match e.kind() {
            io::ErrorKind::NotFound => self.error(path, "does not exist"),
            io::ErrorKind::InvalidData => self.error(path, format_args!("is not PEM: {e}")),
            _ => self.error(path, format_args!("cannot be read: {e}")),
        }
    }
}

/// Reads the client certificate chain and its key, each error naming its file.
fn load_client_cert(
    client: &ClientCert,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), Failure> {
    let (cert, key) = (ClientFile::Cert, ClientFile::Key);
    let chain = read_pem_certs(&client.cert).map_err(|e| cert.unreadable(&client.cert, &e))?;
    if chain.is_empty() {
        return Err(cert.error(
            &client.cert,
            format_args!(
                "holds no certificate (it should hold -----BEGIN CERTIFICATE----- blocks: \
                 a NAME.pem from `{ISSUE_CLIENT_CERT}`)"
            ),
        ));
    }
    let text = std::fs::read(&client.key).map_err(|e| key.unreadable(&client.key, &e))?;
    let private = rustls_pemfile::private_key(&mut text.as_slice())
        .map_err(|e| key.unreadable(&client.key, &e))?
        .ok_or_else(|| {
            key.error(
                &client.key,
                "holds no private key (it should hold a -----BEGIN PRIVATE KEY----- block: \
                 the NAME.key written beside NAME.pem)",
            )
        })?;
    Ok((chain, private))
}

/// Checks the client certificate as a server of the cluster would: issued by the CA,
/// valid now, meant for a client.
fn check_client_cert(
    client: &ClientCert,
    chain: &[CertificateDer<'static>],
    ca: &Path,
    roots: Arc<RootCertStore>,
    provider: Arc<rustls::crypto::CryptoProvider>,
) -> Result<(), Failure> {
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider)
        .build()
        .map_err(|e| Failure::Other(anyhow::anyhow!("cannot set up TLS: {e}")))?;
    let Some((end_entity, intermediates)) = chain.split_first() else {
        return Ok(());
    };
    let Err(e) = verifier.verify_client_cert(end_entity, intermediates, UnixTime::now()) else {
        return Ok(());
    };
    let why = match &e {
        rustls::Error::InvalidCertificate(cert) => match cert {
            CertificateError::UnknownIssuer | CertificateError::BadSignature => format!(
                "was not issued by the cluster CA in {}: the services would refuse it. \
                 Issue one with that CA: {ISSUE_CLIENT_CERT}",
                ca.display()
            ),
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "has expired. Give it a new one: pylonctl certs rotate --dir DIR NAME".into()
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "is not valid yet: is this host's clock (or the issuing host's) wrong?".into()
            }
            CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
                format!(
                    "is not meant for a client (no clientAuth extended key usage); issue \
                     one with `{ISSUE_CLIENT_CERT}`"
                )
            }
            other => format!("cannot be used: {other:?}"),
        },
        other => format!("cannot be used: {other}"),
    };
    Err(Failure::BadInput(format!(
        "the client certificate {} (--cert / {ENV_CERT} / cert in the config file) {why}",
        client.cert.display()
    )))
}

/// A connector for tonic's channel: TCP, then TLS with `config` (the cluster CA, the
/// client certificate, ALPN h2), checking the server's certificate against the URI's
/// host name or IP address. It keeps the first TLS error met on its connections
/// ([`GrpcConnector::tls_error`]): HTTP/2 above it reports a connection that a server's
/// alert closed only as closed.
#[derive(Clone)]
pub struct GrpcConnector {
    config: Arc<ClientConfig>,
    seen: Seen,
}

/// The first TLS error met, shared by a connector and its connections.
type Seen = Arc<Mutex<Option<rustls::Error>>>;

fn record(seen: &Seen, e: &io::Error) {
    let tls = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    if let (Some(tls), Ok(mut slot)) = (tls, seen.lock()) {
        slot.get_or_insert_with(|| tls.clone());
    }
}

impl GrpcConnector {
    pub fn new(config: Arc<ClientConfig>) -> Self {
        GrpcConnector {
            config,
            seen: Seen::default(),
        }
    }

    /// The first TLS error met by a connection of this connector (or its handshake): a
    /// certificate refused either way, or an alert from the server, such as its
    /// refusal of the client certificate, which TLS 1.3 sends after the handshake.
    pub fn tls_error(&self) -> Option<rustls::Error> {
        self.seen.lock().ok().and_then(|slot| slot.clone())
    }

    /// Why the server at `uri` drops this connector's connections, when no TLS error
    /// was seen on them: under TLS 1.3 a server that refuses the client certificate says
    /// so only after the client's side of the handshake, and closes, and HTTP/2 writing
    /// its first request meets the closed connection, not the alert. A new connection
    /// that sends nothing after its handshake reads the server's first words instead
    /// (for up to `wait`): an alert is the TLS error returned.
    pub async fn probe(&self, uri: Uri, wait: std::time::Duration) -> Option<rustls::Error> {
        use tokio::io::AsyncReadExt;
        if let Ok(io) = tonic::codegen::Service::call(&mut self.clone(), uri).await {
            let mut stream = io.into_inner();
            let mut first = [0u8; 64];
            let _ = tokio::time::timeout(wait, stream.read(&mut first)).await;
        }
        self.tls_error()
    }
}

/// The connection [`GrpcConnector`] makes.
pub type GrpcIo = TokioIo<Recorded>;

/// A client TLS stream that keeps the first TLS error met on it.
pub struct Recorded {
    stream: TlsStream<TcpStream>,
    seen: Seen,
}

impl Recorded {
    fn note<T>(&self, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if let Poll::Ready(Err(e)) = &poll {
            record(&self.seen, e);
        }
        poll
    }
}

impl AsyncRead for Recorded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.stream).poll_read(cx, buf);
        self.note(poll)
    }
}

impl AsyncWrite for Recorded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.note(poll)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.stream).poll_flush(cx);
        self.note(poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.stream).poll_shutdown(cx);
        self.note(poll)
    }
}

impl tonic::codegen::Service<Uri> for GrpcConnector {
    type Response = GrpcIo;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<GrpcIo>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let (config, seen) = (self.config.clone(), self.seen.clone());
        Box::pin(async move {
            let host = uri
                .host()
                .ok_or_else(|| io::Error::other(format!("no host in {uri}")))?
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
            let port = uri.port_u16().unwrap_or(443);
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            let name = ServerName::try_from(host.clone())
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{host}: {e}")))?;
            let stream = TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .inspect_err(|e| record(&seen, e))?;
            Ok(TokioIo::new(Recorded { stream, seen }))
        })
    }
}

/// The TLS error in an error's chain of causes, if there is one. (`io::Error` hides what
/// it wraps from `source()`, so it is looked into with `get_ref`.)
pub fn find_tls_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut source: Option<&'a (dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        if let Some(inner) = err
            .downcast_ref::<io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(inner);
        }
        source = err.source();
    }
    None
}

/// What a failed TLS handshake with `endpoint` means, and what to do about it. `ca`: the
/// CA file trusted, if any.
pub fn explain(error: &rustls::Error, endpoint: &str, ca: Option<&Path>) -> String {
    let ca = ca.map_or_else(
        || "the cluster CA".to_owned(),
        |p| format!("the CA in {}", p.display()),
    );
    let host = crate::config::url_host(endpoint).unwrap_or(endpoint);
    match error {
        rustls::Error::InvalidCertificate(cert) => match cert {
            CertificateError::UnknownIssuer | CertificateError::BadSignature => format!(
                "its certificate was not issued by {ca}. Give --ca the cluster CA that issued \
                 the service's certificate (compare the issuer `pylonctl certs show` prints \
                 for the service's certificate with the subject of the CA)"
            ),
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                let presented = match cert {
                    CertificateError::NotValidForNameContext { presented, .. }
                        if !presented.is_empty() =>
                    {
                        format!(" (it names {})", presented.join(", "))
                    }
                    _ => String::new(),
                };
                format!(
                    "its certificate does not name {host}{presented}. Use a host name or \
                     address the certificate carries, or issue the service a certificate \
                     that names it: pylonctl certs issue --dir DIR NAME --dns HOST --ip ADDR \
                     --force"
                )
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "its certificate has expired. Issue it a new one: pylonctl certs rotate \
                 --dir DIR NAME (the service loads it within 5 s); if this host's clock is \
                 wrong, fix the clock"
                    .to_owned()
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "its certificate is not valid yet: is this host's clock (or the issuing \
                 host's) wrong?"
                    .to_owned()
            }
            CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
                "its certificate is not meant for a server (no serverAuth extended key usage); \
                 issue one with `pylonctl certs issue`"
                    .to_owned()
            }
            other => format!("its certificate was refused: {other:?}"),
        },
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => {
            "it does not speak TLS there. Is it started with --cluster-cert? A service \
             without cluster TLS serves plain http: use an http:// URL"
                .to_owned()
        }
        rustls::Error::AlertReceived(alert) => {
            format!("it refused the TLS handshake ({alert:?}); see its log for why")
        }
        other => format!("the TLS handshake failed: {other}"),
    }
}

/// What a failed TLS exchange with the control plane's gRPC port at `url` means, for
/// `routes watch`: the server's certificate as for HTTPS ([`explain`]), and the alerts
/// a mutual-TLS server sends about the client's.
pub fn explain_grpc(error: &rustls::Error, url: &str, trust: &Trust) -> String {
    let cert = trust.client_cert.as_ref().map_or_else(
        || "none was given".to_owned(),
        |c| c.cert.display().to_string(),
    );
    match error {
        rustls::Error::AlertReceived(AlertDescription::CertificateRequired)
        | rustls::Error::AlertReceived(AlertDescription::HandshakeFailure)
            if trust.client_cert.is_none() =>
        {
            format!(
                "it refused the TLS handshake: its gRPC port is mutual TLS and needs a client \
                 certificate of the cluster CA; {}",
                cert_hint(None)
            )
        }
        rustls::Error::AlertReceived(
            alert @ (AlertDescription::BadCertificate
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateUnknown
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::CertificateRevoked
            | AlertDescription::CertificateRequired
            | AlertDescription::DecryptError
            | AlertDescription::AccessDenied),
        ) => format!(
            "it refused pylonctl's client certificate ({cert}; TLS alert {alert:?}): give \
             --cert and --key a certificate issued by the cluster CA the control plane \
             trusts (its --cluster-ca), e.g. with `{ISSUE_CLIENT_CERT}`"
        ),
        rustls::Error::AlertReceived(AlertDescription::CertificateExpired) => format!(
            "it says pylonctl's client certificate ({cert}) has expired: pylonctl certs \
             rotate --dir DIR NAME (or fix this host's clock)"
        ),
        rustls::Error::AlertReceived(AlertDescription::NoApplicationProtocol) => {
            "it does not speak gRPC (HTTP/2) there: is --grpc-endpoint the control plane's \
             gRPC port, 7401 by default?"
                .to_owned()
        }
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => {
            "it does not speak TLS there: is --grpc-endpoint the control plane's gRPC port \
             (7401 by default), and is the control plane started with --cluster-cert?"
                .to_owned()
        }
        other => explain(other, url, Some(&trust.ca)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_empty_ca_file_is_bad_input() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.pem");
        let err = trust(&missing).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("does not exist"), "{err}");

        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "hello\n").unwrap();
        let err = trust(&empty).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("holds no certificate"), "{err}");
    }

    #[test]
    fn a_client_certificate_is_checked_when_loaded() {
        use crate::commands::certs;
        let files = crate::client::tests::tls_files();
        let d = files.path();
        let ca = d.join("ca.pem");
        let now = time::OffsetDateTime::now_utc();
        let names = certs::Names::new(&["operator-ana".into()], &[]).unwrap();
        certs::issue(d, "operator-ana", &names, 30, false, now).unwrap();
        let pair = |cert: &str, key: &str| ClientCert {
            cert: d.join(cert),
            key: d.join(key),
        };

        // A good pair: shown over HTTPS (no ALPN) and over gRPC (ALPN h2).
        let good = pair("operator-ana.pem", "operator-ana.key");
        let t = trust_with(&ca, Some(&good)).unwrap();
        assert!(t.config.client_auth_cert_resolver.has_certs());
        assert!(t.config.alpn_protocols.is_empty());
        assert_eq!(t.grpc_config().alpn_protocols, vec![b"h2".to_vec()]);
        assert_eq!(t.client_cert, Some(good));
        assert!(!trust(&ca)
            .unwrap()
            .config
            .client_auth_cert_resolver
            .has_certs());

        // A key of another certificate.
        let err = trust_with(&ca, Some(&pair("operator-ana.pem", "server.key"))).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let msg = err.to_string();
        assert!(
            msg.contains("operator-ana.pem does not go with the key") && msg.contains("server.key"),
            "{msg}"
        );
        // Files that hold something else.
        std::fs::write(d.join("junk.txt"), "hello\n").unwrap();
        let msg = trust_with(&ca, Some(&pair("junk.txt", "operator-ana.key")))
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("junk.txt (--cert / PYLON_CERT") && msg.contains("holds no certificate"),
            "{msg}"
        );
        let msg = trust_with(&ca, Some(&pair("operator-ana.pem", "operator-ana.pem")))
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("operator-ana.pem (--key / PYLON_KEY")
                && msg.contains("holds no private key"),
            "{msg}"
        );
        // The CA's own certificate is no client's.
        let msg = trust_with(&ca, Some(&pair("ca.pem", "ca.key")))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("ca.pem (--cert / PYLON_CERT"), "{msg}");
    }

    #[test]
    fn https_shows_the_client_certificate_when_given() {
        use crate::client::tests::{serve_tls, tls_files};
        use crate::commands::certs;
        let files = tls_files();
        let d = files.path();
        let now = time::OffsetDateTime::now_utc();
        let names = certs::Names::new(&["operator-ana".into()], &[]).unwrap();
        certs::issue(d, "operator-ana", &names, 30, false, now).unwrap();
        let (endpoint, requests, server) = serve_tls(
            &d.join("server.pem"),
            &d.join("server.key"),
            vec![(200, "[]".into())],
        );
        let client_cert = ClientCert {
            cert: d.join("operator-ana.pem"),
            key: d.join("operator-ana.key"),
        };
        let t = trust_with(&d.join("ca.pem"), Some(&client_cert)).unwrap();
        let got: Vec<serde_json::Value> =
            crate::client::Client::new(&endpoint, None, "hint".into())
                .with_trust(Some(t))
                .get("/v1/admin/edges", &[])
                .unwrap();
        assert!(got.is_empty());
        assert!(requests.recv().unwrap().is_ok());
        server.join().unwrap();
    }

    #[test]
    fn grpc_handshake_errors_say_what_to_do() {
        let files = crate::client::tests::tls_files();
        let mut t = trust(&files.path().join("ca.pem")).unwrap();
        let url = "https://10.0.0.5:7401";
        let alert = |a| rustls::Error::AlertReceived(a);
        let text = explain_grpc(&alert(AlertDescription::CertificateRequired), url, &t);
        assert!(
            text.contains("mutual TLS") && text.contains("--cert FILE and --key FILE"),
            "{text}"
        );
        t.client_cert = Some(ClientCert {
            cert: "/etc/pylon/op.pem".into(),
            key: "/etc/pylon/op.key".into(),
        });
        for a in [
            AlertDescription::BadCertificate,
            AlertDescription::UnknownCA,
            AlertDescription::DecryptError,
            AlertDescription::CertificateRequired,
        ] {
            let text = explain_grpc(&alert(a), url, &t);
            assert!(
                text.starts_with("it refused pylonctl's client certificate (/etc/pylon/op.pem")
                    && text.contains("--cluster-ca"),
                "{text}"
            );
        }
        let text = explain_grpc(&alert(AlertDescription::CertificateExpired), url, &t);
        assert!(text.contains("certs rotate"), "{text}");
        let text = explain_grpc(&alert(AlertDescription::NoApplicationProtocol), url, &t);
        assert!(text.contains("gRPC port"), "{text}");
        // The server's certificate: as for HTTPS.
        let name = rustls::Error::InvalidCertificate(CertificateError::NotValidForName);
        assert!(explain_grpc(&name, url, &t).contains("does not name 10.0.0.5"));
        let unknown = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
        assert!(explain_grpc(&unknown, url, &t).contains("not issued by the CA in"));
    }

    #[test]
    fn handshake_errors_say_what_to_do() {
        let unknown = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
        let text = explain(
            &unknown,
            "https://10.0.0.5:7400",
            Some(Path::new("/etc/ca.pem")),
        );
        assert!(
            text.contains("/etc/ca.pem") && text.contains("--ca"),
            "{text}"
        );
        let name = rustls::Error::InvalidCertificate(CertificateError::NotValidForName);
        let text = explain(&name, "https://10.0.0.5:7400", None);
        assert!(text.contains("does not name 10.0.0.5"), "{text}");
        let expired = rustls::Error::InvalidCertificate(CertificateError::Expired);
        assert!(explain(&expired, "https://h", None).contains("certs rotate"));

        let wrapped = io::Error::new(io::ErrorKind::InvalidData, unknown.clone());
        assert_eq!(find_tls_error(&wrapped), Some(&unknown));
        assert_eq!(find_tls_error(&io::Error::other("x")), None);
    }
}
