//! How the control plane reaches etcd safely: TLS with client certificates, etcd's own
//! users, and the rule that the registry never crosses the network in the clear.

use std::path::{Path, PathBuf};

use anyhow::Context;
use pylon_service::tls::TlsFiles;
use serde::{Deserialize, Serialize};

/// A password that never shows in `Debug` output or logs.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Password(pub String);

impl std::str::FromStr for Password {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Password, Self::Err> {
        Ok(Password(s.to_owned()))
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(***)")
    }
}

/// etcd's security settings (`[registry.etcd]`).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct EtcdSecurity {
    /// The CA that signed etcd's certificates, and the client certificate and key shown to
    /// etcd (`[registry.etcd.tls]`). Empty with `https://` endpoints: the cluster
    /// certificate (`[cluster_tls]`).
    pub tls: TlsFiles,
    /// etcd user, when etcd's auth is on (`etcdctl auth enable`). Without one, etcd takes
    /// the user from the client certificate's common name.
    pub user: Option<String>,
    /// A file holding the etcd user's password (else `PYLON_ETCD_PASSWORD`).
    pub password_file: Option<PathBuf>,
    /// The password from the command line or the environment; never read from the file.
    #[serde(skip)]
    pub password: Option<Password>,
}

/// Whether the endpoints are reached over TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tls,
    Plain,
}

/// The scheme of every endpoint (all the same), or why not.
pub fn transport(endpoints: &[String]) -> anyhow::Result<Transport> {
    let tls = endpoints
        .iter()
        .filter(|e| e.starts_with("https://"))
        .count();
    match tls {
        0 => Ok(Transport::Plain),
        n if n == endpoints.len() => Ok(Transport::Tls),
        _ => anyhow::bail!(
            "the etcd endpoints mix https:// and http:// ({}): give them all the same scheme",
            endpoints.join(",")
        ),
    }
}

/// Whether `endpoint` (`http://host:port`, or `host:port`) is on this machine.
pub fn is_local(endpoint: &str) -> bool {
    let Ok(uri) = endpoint.parse::<axum::http::Uri>() else {
        return false;
    };
    let Some(host) = uri.host() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl EtcdSecurity {
    /// The TLS files for the etcd link: etcd's own, else the cluster's; `None` over
    /// `http://`.
    pub fn tls_files<'a>(
        &'a self,
        endpoints: &[String],
        cluster: &'a TlsFiles,
    ) -> anyhow::Result<Option<&'a TlsFiles>> {
        match transport(endpoints)? {
            Transport::Plain => Ok(None),
            Transport::Tls if !self.tls.is_empty() => Ok(Some(&self.tls)),
            Transport::Tls => Ok(Some(cluster)),
        }
    }

    /// Refuses settings that would not work, or would send the registry (users' password
    /// hashes, the audit log) across the network in the clear.
    pub fn validate(
        &self,
        endpoints: &[String],
        cluster: &TlsFiles,
        insecure_dev: bool,
    ) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.tls.is_empty() || self.tls.is_complete(),
            "etcd TLS needs all three of --etcd-ca, --etcd-cert and --etcd-key"
        );
        match self.tls_files(endpoints, cluster)? {
            Some(files) => {
                anyhow::ensure!(
                    files.is_complete(),
                    "etcd at https:// needs the CA of etcd's certificates and a client \
                     certificate: --etcd-ca, --etcd-cert and --etcd-key, or the cluster \
                     certificate (--cluster-ca, --cluster-cert, --cluster-key)"
                );
            }
            None => {
                anyhow::ensure!(
                    self.tls.is_empty(),
                    "--etcd-ca/--etcd-cert/--etcd-key are given but the etcd endpoints are \
                     http://: use https:// endpoints"
                );
                let remote: Vec<&str> = endpoints
                    .iter()
                    .filter(|e| !is_local(e))
                    .map(String::as_str)
                    .collect();
                anyhow::ensure!(
                    insecure_dev || remote.is_empty(),
                    "etcd at {} is on another machine and reached over http://: the registry \
                     (password hashes, the audit log) would cross the network in the clear. \
                     Use https:// endpoints with a client certificate (--etcd-ca, --etcd-cert, \
                     --etcd-key), or run with --insecure-dev on a developer's machine",
                    remote.join(",")
                );
            }
        }
        match (&self.user, self.has_password()) {
            (Some(user), false) => anyhow::bail!(
                "etcd user {user} has no password: set PYLON_ETCD_PASSWORD or \
                 --etcd-password-file"
            ),
            (None, true) => anyhow::bail!("an etcd password is given without --etcd-user"),
            _ => Ok(()),
        }
    }

    fn has_password(&self) -> bool {
        self.password.is_some() || self.password_file.is_some()
    }

    /// The etcd user and its password, reading the password file if that is where it is.
    pub fn credentials(&self) -> anyhow::Result<Option<(String, String)>> {
        let Some(user) = &self.user else {
            return Ok(None);
        };
        let password = match (&self.password, &self.password_file) {
            (Some(Password(p)), _) => p.clone(),
            (None, Some(file)) => read_password(file)?,
            (None, None) => anyhow::bail!("etcd user {user} has no password"),
        };
        Ok(Some((user.clone(), password)))
    }
}

fn read_password(file: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("reading the etcd password from {}", file.display()))?;
    let password = text.trim_end_matches(['\r', '\n']);
    anyhow::ensure!(
        !password.is_empty(),
        "the etcd password file {} is empty",
        file.display()
    );
    Ok(password.to_owned())
}

#[cfg(test)]
mod tests;
