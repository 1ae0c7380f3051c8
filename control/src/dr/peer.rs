//! The other site's control plane, reached over its operator API with an admin token.

use std::path::{Path, PathBuf};
use std::time::Duration;

use pylon_proto::api::dr::{DrStatus, RegistryExport};

/// How long a call to the other site may take: it is often the one that is down.
const TIMEOUT: Duration = Duration::from_secs(3);

pub(crate) struct Peer {
    pub(crate) url: String,
    /// Read at each call, so that a rotated token is taken without a restart.
    token_file: PathBuf,
    client: Result<reqwest::Client, String>,
}

impl Peer {
    pub(crate) fn new(url: &str, token_file: PathBuf, ca: Option<&Path>) -> Self {
        Peer {
            url: url.trim_end_matches('/').to_owned(),
            token_file,
            client: client(ca),
        }
    }

    async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, PeerError> {
        let client = self
            .client
            .as_ref()
            .map_err(|e| PeerError::Failed(e.clone()))?;
        let token = std::fs::read_to_string(&self.token_file).map_err(|e| {
            PeerError::Failed(format!(
                "[dr] peer_token_file {}: {e}",
                self.token_file.display()
            ))
        })?;
        let url = format!("{}{path}", self.url);
        let response = client
            .get(&url)
            .bearer_auth(token.trim())
            .send()
            .await
            .map_err(|e| {
                let text = format!("{url}: {}", pylon_service::errors::with_causes(&e));
                // Only a site that cannot be reached at all counts as gone; a TLS failure
                // or a refused token means it is there, and we cannot tell what it does.
                if e.is_connect() || e.is_timeout() {
                    PeerError::Unreachable(text)
                } else {
                    PeerError::Failed(text)
                }
            })?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            return Err(PeerError::Failed(format!(
                "{url} answered {status}: {}",
                body.trim()
            )));
        }
        response
            .json::<T>()
            .await
            .map_err(|e| PeerError::Failed(format!("unreadable answer from {url}: {e}")))
    }

    /// The other site's own state (it does not ask us back, nor its store).
    pub(crate) async fn status(&self) -> Result<DrStatus, PeerError> {
        self.get("/v1/admin/dr/status?peer=false").await
    }

    pub(crate) async fn export(&self) -> Result<RegistryExport, PeerError> {
        self.get("/v1/admin/dr/export").await
    }
}

/// Why the other site did not answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PeerError {
    /// No connection could be made, or it did not answer in time: it may be gone.
    Unreachable(String),
    /// It is there but the call failed (a refused token, TLS, an error answer).
    Failed(String),
}

impl std::fmt::Display for PeerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PeerError::Unreachable(e) => write!(f, "unreachable: {e}"),
            PeerError::Failed(e) => f.write_str(e),
        }
    }
}

/// A client that trusts only `ca` (no CA: plain HTTP only, as no certificate verifies).
fn client(ca: Option<&Path>) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .connect_timeout(TIMEOUT)
        .use_rustls_tls()
        .tls_built_in_root_certs(false);
    if let Some(ca) = ca {
        let pem = std::fs::read(ca).map_err(|e| format!("[dr] peer CA {}: {e}", ca.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("[dr] peer CA {}: {e}", ca.display()))?;
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder
        .build()
        .map_err(|e| format!("building the HTTP client for [dr] peer: {e}"))
}
