//! TLS between Pylon's own components: one cluster CA (`pylonctl certs init`) and a
//! certificate per service (`pylonctl certs issue`). gRPC links are mutual TLS (both ends
//! show a certificate of the cluster CA); the HTTP APIs are TLS with the client
//! certificate optional (operators authenticate with tokens).
//!
//! The files are read again when they change (checked every 5 s) or on SIGHUP, so a
//! certificate is rotated without a restart: new connections use the new one, open ones
//! (chargers' sessions are not on these links) go on. A file that does not load keeps
//! the old configuration, and says why.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use arc_swap::ArcSwap;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// Where a service's cluster certificate lives. All three, or none (plaintext, which a
/// service refuses outside `--insecure-dev`... once every deployment has certificates).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct TlsFiles {
    /// The cluster CA's certificate (PEM): peers must show a certificate it signed.
    pub ca: Option<PathBuf>,
    /// This service's certificate chain (PEM).
    pub cert: Option<PathBuf>,
    /// This service's private key (PEM).
    pub key: Option<PathBuf>,
}

impl TlsFiles {
    pub fn is_empty(&self) -> bool {
        self.ca.is_none() && self.cert.is_none() && self.key.is_none()
    }

    /// All three files are given.
    pub fn is_complete(&self) -> bool {
        self.ca.is_some() && self.cert.is_some() && self.key.is_some()
    }

    fn paths(&self) -> anyhow::Result<[&Path; 3]> {
        match (&self.ca, &self.cert, &self.key) {
            (Some(ca), Some(cert), Some(key)) => Ok([ca, cert, key]),
            _ => anyhow::bail!(
                "cluster TLS needs all three of the CA, the certificate and the key \
                 (--cluster-ca, --cluster-cert, --cluster-key)"
            ),
        }
    }
}

/// The command-line flags of [`TlsFiles`], for every service.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct TlsArgs {
    /// The cluster CA certificate (PEM); with --cluster-cert and --cluster-key, every
    /// link between Pylon's services is TLS (gRPC: mutual TLS) and the HTTP API is HTTPS.
    #[arg(long, env = "PYLON_CLUSTER_CA")]
    pub cluster_ca: Option<PathBuf>,
    /// This service's certificate chain (PEM), issued by the cluster CA
    /// (`pylonctl certs issue`).
    #[arg(long, env = "PYLON_CLUSTER_CERT")]
    pub cluster_cert: Option<PathBuf>,
    /// This service's private key (PEM).
    #[arg(long, env = "PYLON_CLUSTER_KEY")]
    pub cluster_key: Option<PathBuf>,
}

impl TlsArgs {
    /// The flags over what the settings file says.
    pub fn overlay(&self, files: &mut TlsFiles) {
        if let Some(p) = &self.cluster_ca {
            files.ca = Some(p.clone());
        }
        if let Some(p) = &self.cluster_cert {
            files.cert = Some(p.clone());
        }
        if let Some(p) = &self.cluster_key {
            files.key = Some(p.clone());
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: String,
}

/// What one load of the files gave.
struct Loaded {
    stamps: Vec<Option<SystemTime>>,
    /// gRPC: a client certificate of the cluster CA is required.
    mutual: Arc<ServerConfig>,
    /// HTTP: a client certificate is optional.
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
    /// The same, speaking HTTP/1.1 (to the HTTP APIs, which do not offer h2).
    client_http1: Arc<ClientConfig>,
    not_after: i64,
}

/// This process's cluster TLS: its current certificate and the configurations made of it.
pub struct ClusterTls {
    files: TlsFiles,
    loaded: ArcSwap<Loaded>,
    /// Loads of the files after the first, by result (ok, error).
    pub reloads: Family<ResultLabel, Counter>,
    /// Handshakes refused on our listeners (plaintext, wrong CA, no certificate).
    pub refused: Counter,
    /// When this service's certificate expires (Unix seconds).
    pub not_after: Gauge,
}

static INSTALLED: OnceLock<Arc<ClusterTls>> = OnceLock::new();

/// The process's cluster TLS, if it has one (set once at start by [`ClusterTls::install`]).
pub fn cluster() -> Option<Arc<ClusterTls>> {
    INSTALLED.get().cloned()
}

/// Every certificate in a PEM file (at least one).
pub fn read_pem_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let mut reader = io::BufReader::new(
        std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?,
    );
    let certs = rustls_pemfile::certs(&mut reader)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("reading certificates from {}", path.display()))?;
    anyhow::ensure!(!certs.is_empty(), "no certificate in {}", path.display());
    Ok(certs)
}

/// The private key in a PEM file.
pub fn read_pem_key(path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    let mut reader = io::BufReader::new(
        std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?,
    );
    rustls_pemfile::private_key(&mut reader)
        .with_context(|| format!("reading the key in {}", path.display()))?
        .with_context(|| format!("no private key in {}", path.display()))
}

/// When each of the CA, certificate and key files last changed.
fn stamps(files: &TlsFiles) -> Vec<Option<SystemTime>> {
    [&files.ca, &files.cert, &files.key]
        .iter()
        .map(|p| {
            p.as_deref()
                .and_then(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        })
        .collect()
}

/// The expiry of a certificate, in Unix seconds (0 when it cannot be read).
pub fn not_after(cert: &CertificateDer<'_>) -> i64 {
    x509_parser::parse_x509_certificate(cert.as_ref())
        .map(|(_, c)| c.validity().not_after.timestamp())
        .unwrap_or(0)
}

fn load(files: &TlsFiles) -> anyhow::Result<Loaded> {
    let [ca, cert, key] = files.paths()?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for c in read_pem_certs(ca)? {
        roots
            .add(c)
            .with_context(|| format!("a bad CA certificate in {}", ca.display()))?;
    }
    let roots = Arc::new(roots);
    let chain = read_pem_certs(cert)?;
    let expires = not_after(&chain[0]);
    let key = read_pem_key(key)?;
    let server = |required: bool| -> anyhow::Result<Arc<ServerConfig>> {
        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone());
        let verifier = if required {
            verifier.build()
        } else {
            verifier.allow_unauthenticated().build()
        }
        .context("the cluster CA cannot verify clients")?;
        let mut config = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .context("TLS versions")?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .context("the certificate does not go with the key")?;
        config.alpn_protocols = if required {
            vec![b"h2".to_vec()]
        } else {
            vec![b"http/1.1".to_vec()]
        };
        Ok(Arc::new(config))
    };
    let mut client = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .context("TLS versions")?
        .with_root_certificates(roots.clone())
        .with_client_auth_cert(chain.clone(), key.clone_key())
        .context("the certificate does not go with the key")?;
    let mut client_http1 = client.clone();
    client_http1.alpn_protocols = vec![b"http/1.1".to_vec()];
    client.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Loaded {
        client_http1: Arc::new(client_http1),
        stamps: stamps(files),
        mutual: server(true)?,
        server: server(false)?,
        client: Arc::new(client),
        not_after: expires,
    })
}

/// A client connection to another service, for hyper.
pub type TlsIo = hyper_util::rt::TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;
/// A connection being made.
pub type Connecting = Pin<Box<dyn std::future::Future<Output = io::Result<TlsIo>> + Send>>;

/// How often the files are checked for changes.
const WATCH_EVERY: Duration = Duration::from_secs(5);
/// A TLS handshake on our listeners must finish within this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

impl ClusterTls {
    /// Loads the files; `None` when none is configured.
    pub fn load(files: &TlsFiles) -> anyhow::Result<Option<Arc<ClusterTls>>> {
        if files.is_empty() {
            return Ok(None);
        }
        let loaded = load(files).context("loading the cluster TLS files")?;
        let tls = ClusterTls {
            files: files.clone(),
            not_after: Gauge::default(),
            reloads: Family::default(),
            refused: Counter::default(),
            loaded: ArcSwap::from_pointee(loaded),
        };
        tls.not_after.set(tls.loaded.load().not_after);
        Ok(Some(Arc::new(tls)))
    }

    /// Loads another set of files than the cluster's (e.g. the client certificate for etcd,
    /// which may come from another CA) and watches them for changes as [`ClusterTls::install`]
    /// does, without making them the process's cluster TLS. Call from within the tokio
    /// runtime. `None` when none is configured.
    pub fn load_and_watch(files: &TlsFiles) -> anyhow::Result<Option<Arc<ClusterTls>>> {
        let Some(tls) = ClusterTls::load(files)? else {
            return Ok(None);
        };
        tokio::spawn(tls.clone().watch());
        Ok(Some(tls))
    }

    /// Loads the files, makes them this process's cluster TLS for every link it opens
    /// (see [`cluster`]) and watches them for changes. Call from within the tokio runtime.
    pub fn install(files: &TlsFiles) -> anyhow::Result<Option<Arc<ClusterTls>>> {
        let Some(tls) = ClusterTls::load(files)? else {
            return Ok(None);
        };
        let tls = INSTALLED.get_or_init(|| tls).clone();
        tokio::spawn(tls.clone().watch());
        tracing::info!(
            cert = ?files.cert,
            expires = tls.loaded.load().not_after,
            "cluster TLS on: gRPC links are mutual TLS, the HTTP API is HTTPS"
        );
        Ok(Some(tls))
    }

    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register(
            "pylon_tls_reloads",
            "Loads of the cluster certificate after the first, by result",
            self.reloads.clone(),
        );
        registry.register(
            "pylon_tls_handshakes_refused",
            "Connections to this service's TLS listeners that did not complete a handshake (plaintext, unknown CA, no certificate)",
            self.refused.clone(),
        );
        registry.register(
            "pylon_tls_certificate_expiry_seconds",
            "When this service's cluster certificate expires (Unix time)",
            self.not_after.clone(),
        );
    }

    /// The metrics of a client-only configuration ([`ClusterTls::load_and_watch`]) as
    /// `<prefix>_reloads_total` and `<prefix>_certificate_expiry_seconds`.
    pub fn register_client(
        &self,
        registry: &mut prometheus_client::registry::Registry,
        prefix: &str,
    ) {
        registry.register(
            format!("{prefix}_reloads"),
            "Loads of this client certificate after the first, by result",
            self.reloads.clone(),
        );
        registry.register(
            format!("{prefix}_certificate_expiry_seconds"),
            "When this client certificate expires (Unix time)",
            self.not_after.clone(),
        );
    }

    /// Loads the files again if any changed (or `force`); keeps the old ones on failure.
    pub fn reload(&self, force: bool) {
        let changed = stamps(&self.files) != self.loaded.load().stamps;
        if !changed && !force {
            return;
        }
        let outcome = match load(&self.files) {
            Ok(loaded) => {
                self.not_after.set(loaded.not_after);
                self.loaded.store(Arc::new(loaded));
                tracing::info!(cert = ?self.files.cert, "certificate reloaded");
                "ok"
            }
            Err(e) => {
                tracing::error!(
                    cert = ?self.files.cert,
                    "certificate not reloaded, keeping the old one: {e:#}"
                );
                "error"
            }
        };
        self.reloads
            .get_or_create(&ResultLabel {
                result: outcome.into(),
            })
            .inc();
    }

    async fn watch(self: Arc<Self>) {
        let mut hangups =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let mut tick = tokio::time::interval(WATCH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let forced = tokio::select! {
                _ = tick.tick() => false,
                Some(()) = async {
                    match hangups.as_mut() {
                        Some(h) => h.recv().await,
                        None => std::future::pending().await,
                    }
                } => true,
            };
            self.reload(forced);
        }
    }

    /// A connector for gRPC channels to other services (`https://host:port`).
    pub fn connector(
        self: &Arc<Self>,
    ) -> impl tower::Service<axum::http::Uri, Response = TlsIo, Error = io::Error, Future = Connecting>
           + Clone
           + Send
           + 'static {
        let tls = self.clone();
        tower::service_fn(move |uri: axum::http::Uri| {
            let tls = tls.clone();
            Box::pin(async move {
                let host = uri
                    .host()
                    .ok_or_else(|| io::Error::other(format!("no host in {uri}")))?
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_owned();
                let port = uri.port_u16().unwrap_or(443);
                let config = tls.loaded.load().client.clone();
                Ok(hyper_util::rt::TokioIo::new(
                    connect(config, &host, port).await?,
                ))
            }) as Pin<Box<dyn std::future::Future<Output = io::Result<_>> + Send>>
        })
    }

    /// A TLS connection to another service's HTTP API (HTTP/1.1) at `host:port`, the
    /// server checked against the cluster CA and our certificate shown.
    pub async fn connect_http1(
        &self,
        host: &str,
        port: u16,
    ) -> io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        connect(self.loaded.load().client_http1.clone(), host, port).await
    }

    /// Accepts TLS connections on `listener`: mutual TLS (`mutual`, for gRPC) or with the
    /// client certificate optional (HTTP). Handshakes run beside each other, so a slow
    /// or silent client holds up nobody; one that fails is counted and dropped.
    pub fn incoming(self: &Arc<Self>, listener: TcpListener, mutual: bool) -> TlsIncoming {
        let local = listener.local_addr().ok();
        let (tx, rx) = mpsc::channel(64);
        let tls = self.clone();
        tokio::spawn(async move {
            loop {
                let (tcp, peer) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::warn!("accepting a connection: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                let loaded = tls.loaded.load();
                let config = if mutual {
                    loaded.mutual.clone()
                } else {
                    loaded.server.clone()
                };
                let (sender, tls) = (tx.clone(), tls.clone());
                tokio::spawn(async move {
                    let handshake = TlsAcceptor::from(config).accept(tcp);
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
                        Ok(Ok(stream)) => {
                            let _ = sender.send(TlsConn { stream, peer }).await;
                        }
                        Ok(Err(e)) => {
                            tls.refused.inc();
                            tracing::debug!(%peer, "TLS handshake refused: {e}");
                        }
                        Err(_) => {
                            tls.refused.inc();
                            tracing::debug!(%peer, "TLS handshake timed out");
                        }
                    }
                });
                if tx.is_closed() {
                    return;
                }
            }
        });
        TlsIncoming { rx, local }
    }
}

/// TCP to `host:port`, then TLS with `config`, the server's certificate checked for `host`.
async fn connect(
    config: Arc<ClientConfig>,
    host: &str,
    port: u16,
) -> io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect((host, port)).await?;
    tcp.set_nodelay(true)?;
    let name = ServerName::try_from(host.to_owned())
        .map_err(|e| io::Error::other(format!("{host}: {e}")))?;
    TlsConnector::from(config).connect(name, tcp).await
}

/// A gRPC channel to `url`: through the cluster TLS when it is `https://`, plain TCP
/// otherwise. Lazy: it connects on first use and again after failures.
pub fn channel_lazy(
    endpoint: tonic::transport::Endpoint,
) -> Result<tonic::transport::Channel, tonic::transport::Error> {
    match (endpoint.uri().scheme_str(), cluster()) {
        (Some("https"), Some(tls)) => Ok(endpoint.connect_with_connector_lazy(tls.connector())),
        _ => Ok(endpoint.connect_lazy()),
    }
}

/// As [`channel_lazy`], connecting now.
pub async fn channel(
    endpoint: tonic::transport::Endpoint,
) -> Result<tonic::transport::Channel, tonic::transport::Error> {
    match (endpoint.uri().scheme_str(), cluster()) {
        (Some("https"), Some(tls)) => endpoint.connect_with_connector(tls.connector()).await,
        _ => endpoint.connect().await,
    }
}

/// The peer of an HTTP connection, plain or TLS (`ConnectInfo<PeerAddr>` in handlers).
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TcpListener>>
    for PeerAddr
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, TcpListener>) -> Self {
        PeerAddr(*stream.remote_addr())
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TlsIncoming>>
    for PeerAddr
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, TlsIncoming>) -> Self {
        PeerAddr(*stream.remote_addr())
    }
}

/// Serves an HTTP API on `listener` until `stop`: HTTPS with the cluster TLS (client
/// certificate optional), plain HTTP otherwise. Handlers see the peer address
/// (`ConnectInfo<PeerAddr>`).
pub async fn serve_http(
    listener: TcpListener,
    app: axum::Router,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let app = app.into_make_service_with_connect_info::<PeerAddr>();
    match cluster() {
        Some(tls) => {
            axum::serve(tls.incoming(listener, false), app)
                .with_graceful_shutdown(stop)
                .await
        }
        None => {
            axum::serve(listener, app)
                .with_graceful_shutdown(stop)
                .await
        }
    }
}

/// Serves gRPC on `listener` until `stop`: mutual TLS with the cluster TLS, plaintext
/// otherwise; no Nagle delays either way.
pub async fn serve_grpc(
    router: tonic::transport::server::Router,
    listener: TcpListener,
    stop: impl std::future::Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    match cluster() {
        Some(tls) => {
            router
                .serve_with_incoming_shutdown(tls.incoming(listener, true).into_stream(), stop)
                .await
        }
        None => {
            let incoming =
                tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
            router.serve_with_incoming_shutdown(incoming, stop).await
        }
    }
}

/// The scheme this process's gRPC links use: `https` with cluster TLS.
pub fn grpc_scheme() -> &'static str {
    if cluster().is_some() {
        "https"
    } else {
        "http"
    }
}

/// One accepted, handshaken TLS connection.
pub struct TlsConn {
    stream: tokio_rustls::server::TlsStream<TcpStream>,
    peer: SocketAddr,
}

impl AsyncRead for TlsConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

impl tonic::transport::server::Connected for TlsConn {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        tonic::transport::server::TcpConnectInfo {
            local_addr: self.stream.get_ref().0.local_addr().ok(),
            remote_addr: Some(self.peer),
        }
    }
}

/// Handshaken connections of a listener, for axum (as a `Listener`) or tonic (as a
/// stream of connections).
pub struct TlsIncoming {
    rx: mpsc::Receiver<TlsConn>,
    local: Option<SocketAddr>,
}

impl TlsIncoming {
    /// For tonic's `serve_with_incoming`.
    pub fn into_stream(self) -> impl tokio_stream::Stream<Item = io::Result<TlsConn>> {
        use tokio_stream::StreamExt;
        tokio_stream::wrappers::ReceiverStream::new(self.rx).map(Ok)
    }
}

impl axum::serve::Listener for TlsIncoming {
    type Io = TlsConn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(conn) => {
                let peer = conn.peer;
                (conn, peer)
            }
            // The accept loop is gone: nothing more will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.local
            .ok_or_else(|| io::Error::other("the listener's address is unknown"))
    }
}

#[cfg(test)]
mod tests;
