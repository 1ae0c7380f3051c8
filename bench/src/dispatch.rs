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
    /// Base URLs of the control plane's replicas' HTTP API, e.g. `http://127.0.0.1:7400`,
    /// asked in turn until one answers.
    pub urls: Vec<String>,
    /// `tcp` or `tls`.
    pub transport: &'static str,
}

impl Dispatch {
    /// Looks up the entry address of `pile` (14 digits), asking each replica in turn
    /// until one answers. Runs the blocking HTTP calls on tokio's blocking pool.
    pub async fn lookup(&self, pile: String) -> Result<Entry, String> {
        let urls: Vec<String> = self
            .urls
            .iter()
            .map(|base| {
                format!(
                    "{}/v1/entry?pile={pile}&transport={}",
                    base.trim_end_matches('/'),
                    self.transport
                )
            })
            .collect();
        tokio::task::spawn_blocking(move || {
            // A replica that is down refuses at once; one that hangs costs this long.
            let agent = ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(2))
                .build();
            let mut errors = Vec::new();
            for url in urls {
                match agent.get(&url).call() {
                    Ok(response) => {
                        return response
                            .into_json::<Entry>()
                            .map_err(|e| format!("unreadable answer from {url}: {e}"))
                    }
                    Err(ureq::Error::Status(code, response)) => errors.push(format!(
                        "{url} answered {code}: {}",
                        response.into_string().unwrap_or_default().trim()
                    )),
                    Err(e) => errors.push(format!("{url}: {e}")),
                }
            }
            Err(errors.join("; "))
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
