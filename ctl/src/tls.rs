//! HTTPS to Pylon's services: the cluster CA that `pylonctl` trusts (`--ca`, `PYLON_CA`,
//! `ca` in the config file), and what a failed handshake means to an operator.
//!
//! A service started with `--cluster-ca/--cluster-cert/--cluster-key` serves its HTTP API
//! over HTTPS with a certificate of the cluster CA (`pylonctl certs`). pylonctl checks
//! that certificate against the CA, and against the host name or IP address of the URL,
//! and sends no client certificate (operators prove who they are with tokens). Only the
//! cluster CA is trusted: the system's roots never are, since no public CA issues the
//! services' certificates.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::{CertificateError, ClientConfig, RootCertStore};

use crate::cli::Failure;
use crate::config::ENV_CA;

/// What an https client trusts: the cluster CA, and the file it came from (for messages).
#[derive(Clone)]
pub struct Trust {
    pub config: Arc<ClientConfig>,
    pub ca: PathBuf,
}

impl std::fmt::Debug for Trust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trust").field("ca", &self.ca).finish()
    }
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

/// A client configuration that trusts the certificates in `ca` (PEM) and nothing else.
pub fn trust(ca: &Path) -> Result<Trust, Failure> {
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
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| Failure::Other(anyhow::anyhow!("cannot set up TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Trust {
        config: Arc::new(config),
        ca: ca.to_owned(),
    })
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
