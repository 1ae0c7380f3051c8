//! Throwaway certificates for demos, benchmarks and tests: a CA that issues server and
//! client certificates, written as PEM files.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, Certificate, CertificateParams, DnType, IsCa, KeyPair};

/// The name edge certificates carry and simulated chargers verify.
pub const SERVER_NAME: &str = "pylon-edge";

/// A certificate and its key, as PEM files.
#[derive(Debug, Clone)]
pub struct PemPair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A self-signed CA whose certificate is written to `dir/ca.pem`.
pub struct TestCa {
    dir: PathBuf,
    cert: Certificate,
    key: KeyPair,
    pub ca_pem: PathBuf,
}

impl TestCa {
    pub fn new(dir: &Path, common_name: &str) -> anyhow::Result<TestCa> {
        std::fs::create_dir_all(dir)?;
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        let cert = params.self_signed(&key)?;
        let ca_pem = dir.join("ca.pem");
        std::fs::write(&ca_pem, cert.pem())?;
        Ok(TestCa {
            dir: dir.to_path_buf(),
            cert,
            key,
            ca_pem,
        })
    }

    /// Issues a certificate for `names` with `key` (a new ECDSA P-256 key when None),
    /// written to `<file>.pem` and `<file>.key`.
    pub fn issue(
        &self,
        file: &str,
        names: &[&str],
        key: Option<KeyPair>,
    ) -> anyhow::Result<PemPair> {
        self.issue_with(file, None, names, key)
    }

    /// As [`TestCa::issue`], with `common_name` as the subject's CN (etcd takes its user
    /// from it).
    pub fn issue_named(
        &self,
        file: &str,
        common_name: &str,
        names: &[&str],
    ) -> anyhow::Result<PemPair> {
        self.issue_with(file, Some(common_name), names, None)
    }

    fn issue_with(
        &self,
        file: &str,
        common_name: Option<&str>,
        names: &[&str],
        key: Option<KeyPair>,
    ) -> anyhow::Result<PemPair> {
        let key = match key {
            Some(k) => k,
            None => KeyPair::generate()?,
        };
        let names = names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        let mut params = CertificateParams::new(names)?;
        if let Some(cn) = common_name {
            params.distinguished_name.push(DnType::CommonName, cn);
        }
        let cert = params.signed_by(&key, &self.cert, &self.key)?;
        let pair = PemPair {
            cert: self.dir.join(format!("{file}.pem")),
            key: self.dir.join(format!("{file}.key")),
        };
        std::fs::write(&pair.cert, cert.pem())?;
        std::fs::write(&pair.key, key.serialize_pem())?;
        Ok(pair)
    }
}
