//! What every Pylon client of PostgreSQL (the app's store, the control plane's
//! disaster-recovery checks) does alike: which links may go in the clear, and TLS that
//! trusts only the given CA.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use tokio_postgres::config::Host;

/// Whether every host of `config` is this machine (a unix socket or a loopback address),
/// where the link may go in the clear.
pub fn is_local(config: &tokio_postgres::Config) -> bool {
    let hosts = config.get_hosts();
    !hosts.is_empty()
        && hosts.iter().all(|h| match h {
            Host::Tcp(name) => {
                name == "localhost"
                    || name
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback())
            }
            Host::Unix(_) => true,
        })
}

/// A TLS connector that trusts only `ca` (and checks the URL's host name).
pub fn tls_connector(ca: &Path) -> anyhow::Result<tokio_postgres_rustls::MakeRustlsConnect> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in crate::tls::read_pem_certs(ca)? {
        roots
            .add(cert)
            .with_context(|| format!("{}", ca.display()))?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

#[cfg(test)]
mod tests {
    use super::is_local;

    #[test]
    fn only_this_machine_is_local() {
        let local = |url: &str| is_local(&url.parse().unwrap());
        assert!(local("postgres://u@127.0.0.1:5432/db"));
        assert!(local("postgres://u@localhost/db"));
        assert!(local("host=/run/postgresql user=u"));
        assert!(local("postgres://u@127.0.0.1,localhost/db"));
        assert!(!local("postgres://u@10.0.0.7/db"));
        assert!(!local("postgres://u@127.0.0.1,10.0.0.7/db"));
    }
}
