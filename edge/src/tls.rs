//! TLS termination with rustls's unbuffered API.
//!
//! An idle session holds no TLS buffers: received bytes are decrypted in place in the
//! executor's read buffer, and only the tail of an incomplete record is kept per
//! connection (and freed as soon as the record completes).

use std::fmt;
use std::sync::{Arc, OnceLock};

use anyhow::Context;
use rustls::pki_types::CertificateDer;
use rustls::server::{
    ClientHello, ResolvesServerCert, UnbufferedServerConnection, WebPkiClientVerifier,
};
use rustls::sign::CertifiedKey;
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError, InsufficientSizeError};
use rustls::{CipherSuite, RootCertStore, ServerConfig, SignatureAlgorithm, SignatureScheme};

use crate::config::TlsConfig;

mod tickets;

/// Builds the server configuration: TLS 1.3 (and 1.2 unless disabled), every configured
/// certificate (chosen per client by the signature schemes it offers), session
/// resumption by cache and tickets, and optional client-certificate authentication.
/// `previous` (a reload) hands on its ticket key and session cache, so sessions made
/// before the reload still resume.
pub fn server_config(
    cfg: &TlsConfig,
    previous: Option<&ServerConfig>,
) -> anyhow::Result<Arc<ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut keys = Vec::new();
    for (cert, key) in cfg.certs.iter().zip(&cfg.keys) {
        let chain = pylon_service::tls::read_pem_certs(cert)?;
        let key_der = pylon_service::tls::read_pem_key(key)?;
        let signing = provider
            .key_provider
            .load_private_key(key_der)
            .with_context(|| format!("unsupported private key in {}", key.display()))?;
        keys.push(Arc::new(CertifiedKey::new(chain, signing)));
    }
    if keys.is_empty() {
        anyhow::bail!("no TLS certificate configured");
    }
    let versions: &[&rustls::SupportedProtocolVersion] = if cfg.enable_tls12 {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13]
    };
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .context("choosing TLS versions")?;
    let builder = match &cfg.client_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in pylon_service::tls::read_pem_certs(ca)? {
                roots
                    .add(cert)
                    .with_context(|| format!("bad CA certificate in {}", ca.display()))?;
            }
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .context("building the client-certificate verifier")?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(Arc::new(CertChooser { keys }));
    match previous {
        Some(previous) => {
            config.session_storage = previous.session_storage.clone();
            config.ticketer = previous.ticketer.clone();
        }
        None => {
            config.session_storage =
                rustls::server::ServerSessionMemoryCache::new(cfg.session_cache.max(1));
            config.ticketer =
                rustls::crypto::ring::Ticketer::new().context("creating the ticket key")?;
        }
    }
    // The site's shared keys, read afresh on every load (a reload rotates them).
    if let Some(path) = &cfg.ticket_key {
        config.ticketer = Arc::new(tickets::SharedTicketer::load(path)?);
    }
    // One ticket is enough for a charger that reconnects to resume.
    config.send_tls13_tickets = 1;
    Ok(Arc::new(config))
}

/// Serves the first certificate whose key the client can verify (e.g. ECDSA for modern
/// chargers, RSA for old ones).
#[derive(Debug)]
struct CertChooser {
    keys: Vec<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for CertChooser {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let offered: &[SignatureScheme] = hello.signature_schemes();
        let suites = hello.cipher_suites();
        self.keys
            .iter()
            .find(|k| {
                k.key.choose_scheme(offered).is_some() && suites_allow(suites, k.key.algorithm())
            })
            .or_else(|| self.keys.first())
            .cloned()
    }
}

/// TLS 1.3 suites work with any key; a TLS 1.2-only client names the key type in its suites.
fn suites_allow(suites: &[CipherSuite], key: SignatureAlgorithm) -> bool {
    use CipherSuite::*;
    suites.iter().any(|s| match s {
        TLS13_AES_128_GCM_SHA256 | TLS13_AES_256_GCM_SHA384 | TLS13_CHACHA20_POLY1305_SHA256 => {
            true
        }
        TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
        | TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
        | TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 => key == SignatureAlgorithm::ECDSA,
        TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
        | TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384
        | TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 => key == SignatureAlgorithm::RSA,
        _ => false,
    })
}

/// Why a TLS session failed.
#[derive(Debug)]
pub enum TlsError {
    Protocol(rustls::Error),
    Encode(String),
    /// The session failed earlier; rustls is not called again.
    Failed,
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::Protocol(e) => write!(f, "{e}"),
            TlsError::Encode(e) => write!(f, "encoding TLS data: {e}"),
            TlsError::Failed => f.write_str("the TLS session failed earlier"),
        }
    }
}

impl TlsError {
    /// A short label for the handshake metric (`result`).
    pub fn kind(&self) -> &'static str {
        match self {
            TlsError::Protocol(rustls::Error::InvalidCertificate(_)) => "tls_bad_certificate",
            TlsError::Protocol(rustls::Error::NoCertificatesPresented) => "tls_no_certificate",
            TlsError::Protocol(rustls::Error::PeerIncompatible(_)) => "tls_incompatible",
            TlsError::Protocol(rustls::Error::AlertReceived(_)) => "tls_alert",
            TlsError::Protocol(_) => "tls_protocol",
            TlsError::Encode(_) => "tls_encode",
            TlsError::Failed => "tls_failed",
        }
    }

    /// What went wrong, finer than [`kind`](Self::kind) but from a fixed set (the `kind`
    /// label of `pylon_edge_tls_errors_total`): the error class, or the alert the peer sent.
    pub fn detail(&self) -> &'static str {
        use rustls::Error as E;
        let TlsError::Protocol(e) = self else {
            return self.kind().trim_start_matches("tls_");
        };
        match e {
            E::InvalidMessage(_) => "invalid_message",
            E::PeerSentOversizedRecord => "oversized_record",
            E::DecryptError => "decrypt_error",
            E::InappropriateMessage { .. } | E::InappropriateHandshakeMessage { .. } => {
                "unexpected_message"
            }
            E::PeerMisbehaved(_) => "peer_misbehaved",
            E::PeerIncompatible(_) => "peer_incompatible",
            E::InvalidCertificate(_) => "bad_certificate",
            E::NoCertificatesPresented => "no_certificate",
            E::AlertReceived(alert) => alert_label(*alert),
            E::HandshakeNotComplete => "handshake_not_complete",
            _ => "other",
        }
    }
}

/// `alert_<description>` for the alerts a charger plausibly sends; the rest share a label.
fn alert_label(alert: rustls::AlertDescription) -> &'static str {
    use rustls::AlertDescription as A;
    match alert {
        A::CloseNotify => "alert_close_notify",
        A::UnexpectedMessage => "alert_unexpected_message",
        A::BadRecordMac => "alert_bad_record_mac",
        A::RecordOverflow => "alert_record_overflow",
        A::HandshakeFailure => "alert_handshake_failure",
        A::BadCertificate => "alert_bad_certificate",
        A::UnsupportedCertificate => "alert_unsupported_certificate",
        A::CertificateExpired => "alert_certificate_expired",
        A::CertificateUnknown => "alert_certificate_unknown",
        A::IllegalParameter => "alert_illegal_parameter",
        A::UnknownCA => "alert_unknown_ca",
        A::DecodeError => "alert_decode_error",
        A::DecryptError => "alert_decrypt_error",
        A::ProtocolVersion => "alert_protocol_version",
        A::InsufficientSecurity => "alert_insufficient_security",
        A::InternalError => "alert_internal_error",
        A::UserCanceled => "alert_user_canceled",
        _ => "alert_other",
    }
}

/// Who a client certificate says its holder is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerIdentity {
    /// SHA-256 of the leaf certificate (DER); `None` without a client certificate.
    pub fingerprint: Option<[u8; 32]>,
    /// The subject's common names and the subject alternative names (DNS names, URIs,
    /// e-mail addresses) as text.
    pub names: Vec<String>,
}

impl PeerIdentity {
    pub fn of(chain: Option<&[CertificateDer<'_>]>) -> PeerIdentity {
        let Some(leaf) = chain.and_then(|c| c.first()) else {
            return PeerIdentity::default();
        };
        let digest = ring::digest::digest(&ring::digest::SHA256, leaf.as_ref());
        let mut fingerprint = [0u8; 32];
        fingerprint.copy_from_slice(digest.as_ref());
        PeerIdentity {
            fingerprint: Some(fingerprint),
            names: certificate_names(leaf.as_ref()),
        }
    }

    /// Whether the certificate names `pile` (its 14 digits), as its common name or one of
    /// its alternative names (a URI may end with them, e.g. `urn:pile:32010200000001`).
    pub fn names_pile(&self, pile: &str) -> bool {
        self.names.iter().any(|n| {
            n == pile
                || n.strip_suffix(pile)
                    .is_some_and(|head| head.ends_with(':') || head.ends_with('/'))
        })
    }
}

/// The names in a certificate; none when it cannot be parsed (rustls has verified its
/// signature, not that we understand every extension).
fn certificate_names(der: &[u8]) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return Vec::new();
    };
    let mut names: Vec<String> = cert
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok().map(str::to_owned))
        .collect();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(n) | GeneralName::URI(n) | GeneralName::RFC822Name(n) => {
                    names.push((*n).to_owned())
                }
                _ => {}
            }
        }
    }
    names
}

/// What one batch of received bytes did to the TLS session.
#[derive(Debug, Default, Clone, Copy)]
pub struct Received {
    pub peer_closed: bool,
}

/// One server-side TLS session over rustls's unbuffered API, sans-io: bytes in, bytes out.
///
/// The API's contract, kept here and nowhere else: each `process_tls_records` call gets the
/// bytes the previous calls did not discard, unchanged and at the front of its buffer
/// (rustls remembers offsets into them, e.g. of a handshake message split over records),
/// and `discard` bytes leave the front only after the state they came with is handled.
/// After an error, one further call takes out the alert rustls queued, over the same
/// remaining bytes; then the session is failed and rustls is never called again.
pub struct TlsSession {
    conn: UnbufferedServerConnection,
    /// Who the client certificate says the peer is: set once the handshake is done,
    /// before any application data is handed out.
    peer: Arc<OnceLock<PeerIdentity>>,
    /// Received bytes rustls has not discarded yet (an incomplete record, or handshake
    /// records it holds offsets into); empty (and unallocated) most of the time.
    incoming: Vec<u8>,
    failed: bool,
}

impl TlsSession {
    pub fn new(config: Arc<ServerConfig>) -> Result<Self, TlsError> {
        Ok(TlsSession {
            conn: UnbufferedServerConnection::new(config).map_err(TlsError::Protocol)?,
            peer: Arc::new(OnceLock::new()),
            incoming: Vec::new(),
            failed: false,
        })
    }

    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// The peer's identity as it will be once the handshake is done (empty until then):
    /// a handle the caller keeps, readable while the session hands out data.
    pub fn peer(&self) -> Arc<OnceLock<PeerIdentity>> {
        self.peer.clone()
    }

    /// Received bytes held: an incomplete record, or handshake records rustls is still
    /// reassembling a message from.
    pub fn buffered(&self) -> usize {
        self.incoming.len()
    }

    /// Processes bytes read from the socket. Decrypted application data goes to
    /// `on_plain`; TLS records to send (handshake messages, alerts) are appended to `out`.
    /// `data` may be used as scratch space (records are decrypted in place).
    pub fn receive(
        &mut self,
        data: &mut [u8],
        out: &mut Vec<u8>,
        on_plain: &mut dyn FnMut(&[u8]),
    ) -> Result<Received, TlsError> {
        if self.failed {
            return Err(TlsError::Failed);
        }
        let result = if self.incoming.is_empty() {
            // The common case: whole records, processed in the caller's buffer.
            let (used, result) = process(&mut self.conn, &self.peer, data, out, on_plain);
            if result.is_ok() && used < data.len() {
                self.incoming.extend_from_slice(&data[used..]);
            }
            result
        } else {
            let mut incoming = std::mem::take(&mut self.incoming);
            incoming.extend_from_slice(data);
            let (used, result) = process(&mut self.conn, &self.peer, &mut incoming, out, on_plain);
            if result.is_ok() && used < incoming.len() {
                incoming.drain(..used);
                self.incoming = incoming;
            }
            result
        };
        if result.is_err() {
            self.fail();
        }
        result
    }

    /// Encrypts application data into `out`.
    pub fn send(&mut self, plain: &[u8], out: &mut Vec<u8>) -> Result<(), TlsError> {
        if self.failed {
            return Err(TlsError::Failed);
        }
        let result = self.encrypt(plain, out);
        if result.is_err() {
            self.fail();
        }
        result
    }

    fn encrypt(&mut self, plain: &[u8], out: &mut Vec<u8>) -> Result<(), TlsError> {
        // Bounded: each round either hands out queued TLS data or ends.
        for _ in 0..MAX_STATES_PER_CALL {
            // Over the bytes still held: rustls may hold offsets into them.
            let status = self.conn.process_tls_records(&mut self.incoming);
            let discard = status.discard;
            let step = match status.state {
                Err(e) => Err(TlsError::Protocol(e)),
                Ok(ConnectionState::EncodeTlsData(mut e)) => {
                    write_with(out, 1024, |buf| e.encode(buf).map_err(encode_size)).map(|()| false)
                }
                Ok(ConnectionState::TransmitTlsData(t)) => {
                    t.done();
                    Ok(false)
                }
                Ok(ConnectionState::WriteTraffic(mut w)) => {
                    write_with(out, plain.len() + 64, |buf| {
                        w.encrypt(plain, buf).map_err(encrypt_size)
                    })
                    .map(|()| true)
                }
                Ok(other) => Err(TlsError::Encode(format!(
                    "cannot send application data in state {other:?}"
                ))),
            };
            self.incoming.drain(..discard.min(self.incoming.len()));
            if step? {
                return Ok(());
            }
        }
        Err(TlsError::Encode(
            "no state to send application data in".into(),
        ))
    }

    /// Marks the session failed; it holds nothing any more.
    fn fail(&mut self) {
        self.failed = true;
        self.incoming = Vec::new();
    }
}

/// A bound on the states one `send` walks through before it can encrypt (queued handshake
/// records to hand out first), so that no state of rustls makes it spin. `process` needs
/// none: every state it handles consumes input, a queued record or decrypted data.
const MAX_STATES_PER_CALL: usize = 64;

/// Drives the connection over `incoming`; returns how many bytes rustls discarded (also
/// on error, so the caller knows what is left) and what happened.
fn process(
    conn: &mut UnbufferedServerConnection,
    peer: &OnceLock<PeerIdentity>,
    incoming: &mut [u8],
    out: &mut Vec<u8>,
    on_plain: &mut dyn FnMut(&[u8]),
) -> (usize, Result<Received, TlsError>) {
    let mut used = 0;
    let mut received = Received::default();
    loop {
        let status = conn.process_tls_records(&mut incoming[used..]);
        let mut discard = status.discard;
        // rustls may finish the handshake and decrypt the first data in one call, and the
        // certificate can be read only once that state is gone: the first data waits here
        // until the peer's identity is known. (Early data, which would come before the
        // handshake ends, is off: the server config allows none.)
        let mut first_data = None;
        let step = match status.state {
            Err(e) => Err(TlsError::Protocol(e)),
            Ok(state) => {
                let stage = peer.get().is_none().then(|| first_data.insert(Vec::new()));
                handle_incoming_state(state, &mut discard, out, on_plain, stage, &mut received)
            }
        };
        if peer.get().is_none() && !conn.is_handshaking() {
            let _ = peer.set(PeerIdentity::of(conn.peer_certificates()));
        }
        if let Some(data) = first_data.filter(|d| !d.is_empty()) {
            on_plain(&data);
        }
        used += discard;
        match step {
            Ok(true) => return (used, Ok(received)),
            Ok(false) => continue,
            Err(e) => {
                // Let the peer know why, when rustls queued an alert for it: over the same
                // bytes, minus what was discarded, as the contract wants.
                flush_alerts(conn, &mut incoming[used..], out);
                return (used, Err(e));
            }
        }
    }
}

/// Handles one state reached while receiving; true when nothing more can be done now.
fn handle_incoming_state(
    state: ConnectionState<'_, '_, rustls::server::ServerConnectionData>,
    discard: &mut usize,
    out: &mut Vec<u8>,
    on_plain: &mut dyn FnMut(&[u8]),
    mut stage: Option<&mut Vec<u8>>,
    received: &mut Received,
) -> Result<bool, TlsError> {
    let mut deliver = |payload: &[u8]| match stage.as_deref_mut() {
        Some(staged) => staged.extend_from_slice(payload),
        None => on_plain(payload),
    };
    match state {
        ConnectionState::ReadTraffic(mut r) => {
            while let Some(record) = r.next_record() {
                let record = record.map_err(TlsError::Protocol)?;
                *discard += record.discard;
                deliver(record.payload);
            }
            Ok(false)
        }
        ConnectionState::ReadEarlyData(mut r) => {
            while let Some(record) = r.next_record() {
                let record = record.map_err(TlsError::Protocol)?;
                *discard += record.discard;
                deliver(record.payload);
            }
            Ok(false)
        }
        ConnectionState::EncodeTlsData(mut e) => {
            write_with(out, 4096, |buf| e.encode(buf).map_err(encode_size))?;
            Ok(false)
        }
        // Queued bytes in `out` are always written, in order, before anything else.
        ConnectionState::TransmitTlsData(t) => {
            t.done();
            Ok(false)
        }
        ConnectionState::PeerClosed | ConnectionState::Closed => {
            received.peer_closed = true;
            Ok(true)
        }
        // BlockedHandshake and WriteTraffic: waiting for more bytes.
        _ => Ok(true),
    }
}

/// After an error: takes out what rustls queued, with one more call over what the failed
/// call left undiscarded. One call only: rustls hands out queued records before it looks
/// at the input again, and a second call would make it process the same bad bytes again
/// (and send a second fatal alert, which it asserts against). So only the first queued
/// record leaves: normally the alert; if a flight was queued just before the error (a
/// ServerHello, in TLS 1.3), that flight goes and the alert does not, which costs nothing
/// as the connection closes anyway. Errors here change nothing: the session is closing.
fn flush_alerts(conn: &mut UnbufferedServerConnection, incoming: &mut [u8], out: &mut Vec<u8>) {
    let status = conn.process_tls_records(incoming);
    if let Ok(ConnectionState::EncodeTlsData(mut e)) = status.state {
        let _ = write_with(out, 64, |buf| e.encode(buf).map_err(encode_size));
    }
}

/// Lets `f` write into the spare end of `out`, growing it as often as `f` asks.
fn write_with(
    out: &mut Vec<u8>,
    guess: usize,
    mut f: impl FnMut(&mut [u8]) -> Result<usize, Result<usize, String>>,
) -> Result<(), TlsError> {
    let start = out.len();
    let mut room = guess;
    loop {
        out.resize(start + room, 0);
        match f(&mut out[start..]) {
            Ok(n) => {
                out.truncate(start + n);
                return Ok(());
            }
            Err(Ok(required)) if required > room => room = required,
            Err(Ok(_)) => {
                out.truncate(start);
                return Err(TlsError::Encode(
                    "buffer size negotiation did not converge".into(),
                ));
            }
            Err(Err(e)) => {
                out.truncate(start);
                return Err(TlsError::Encode(e));
            }
        }
    }
}

fn encode_size(e: EncodeError) -> Result<usize, String> {
    match e {
        EncodeError::InsufficientSize(InsufficientSizeError { required_size }) => Ok(required_size),
        other => Err(other.to_string()),
    }
}

fn encrypt_size(e: EncryptError) -> Result<usize, String> {
    match e {
        EncryptError::InsufficientSize(InsufficientSizeError { required_size }) => {
            Ok(required_size)
        }
        other => Err(other.to_string()),
    }
}

#[cfg(test)]
mod tests;
