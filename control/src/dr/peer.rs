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

    async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, String> {
        let client = self.client.as_ref().map_err(Clone::clone)?;
        let token = std::fs::read_to_string(&self.token_file)
            .map_err(|e| format!("[dr] peer_token_file {}: {e}", self.token_file.display()))?;
        let url = format!("{}{path}", self.url);
        let response = client
            .get(&url)
            .bearer_auth(token.trim())
            .send()
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            return Err(format!("{url} answered {status}: {}", body.trim()));
        }
        response
            .json::<T>()
            .await
            .map_err(|e| format!("unreadable answer from {url}: {e}"))
    }

    pub(crate) async fn status(&self) -> Result<DrStatus, String> {
        self.get("/v1/admin/dr/status?peer=false").await
    }

    pub(crate) async fn export(&self) -> Result<RegistryExport, String> {
        self.get("/v1/admin/dr/export").await
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
