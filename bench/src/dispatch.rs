//! Asking the control plane for a pile's entry address, as a charger that supports
//! dispatch does before it connects.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct EntryAddress {
    pub edge: String,
    pub address: String,
}

/// The parts of `GET /v1/entry` a charger uses.
#[derive(Debug, Clone, Deserialize)]
pub struct Entry {
    pub primary: EntryAddress,
    pub backups: Vec<EntryAddress>,
}

impl Entry {
    /// Primary first, then the backups.
    pub fn addresses(&self) -> impl Iterator<Item = &EntryAddress> {
        std::iter::once(&self.primary).chain(&self.backups)
    }
}

/// Where to ask, and for which transport.
#[derive(Debug, Clone)]
pub struct Dispatch {
    /// Base URL of the control plane's HTTP API, e.g. `http://127.0.0.1:7400`.
    pub url: String,
    /// `tcp` or `tls`.
    pub transport: &'static str,
}

impl Dispatch {
    /// Looks up the entry address of `pile` (14 digits). Runs the blocking HTTP call on
    /// tokio's blocking pool.
    pub async fn lookup(&self, pile: String) -> Result<Entry, String> {
        let url = format!(
            "{}/v1/entry?pile={pile}&transport={}",
            self.url.trim_end_matches('/'),
            self.transport
        );
        tokio::task::spawn_blocking(move || {
            let agent = ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(5))
                .build();
            match agent.get(&url).call() {
                Ok(response) => response
                    .into_json::<Entry>()
                    .map_err(|e| format!("unreadable answer from {url}: {e}")),
                Err(ureq::Error::Status(code, response)) => Err(format!(
                    "{url} answered {code}: {}",
                    response.into_string().unwrap_or_default().trim()
                )),
                Err(e) => Err(format!("{url}: {e}")),
            }
        })
        .await
        .map_err(|e| format!("dispatch lookup task failed: {e}"))?
    }
}

/// Resolves an entry address (`ip:port`, or `host:port` through DNS).
pub async fn resolve(address: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = address.parse() {
        return Ok(addr);
    }
    tokio::net::lookup_host(address)
        .await
        .map_err(|e| format!("cannot resolve {address}: {e}"))?
        .next()
        .ok_or_else(|| format!("{address} resolves to nothing"))
}
