//! A throwaway CA with ECDSA and RSA server certificates and a client certificate.

use std::path::{Path, PathBuf};
use std::process::Command;

pub use pylon_bench::certs::SERVER_NAME;
use pylon_bench::certs::{PemPair, TestCa};
use rcgen::KeyPair;

pub struct TestCerts {
    pub ca: PathBuf,
    pub ecdsa: PemPair,
    pub rsa: PemPair,
    pub client: PemPair,
    authority: TestCa,
}

impl TestCerts {
    /// Writes everything into `dir`. The RSA key is made with the `openssl` command
    /// (ring cannot generate RSA keys); `cargo xtask test` installs it.
    pub fn generate(dir: &Path) -> anyhow::Result<TestCerts> {
        let ca = TestCa::new(dir, "Pylon test CA")?;
        let rsa_key_path = dir.join("rsa-source.key");
        let made = Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
            ])
            .arg(&rsa_key_path)
            .output()
            .map_err(|e| anyhow::anyhow!("running openssl to make an RSA key: {e}"))?;
        anyhow::ensure!(
            made.status.success(),
            "openssl genpkey failed: {}",
            String::from_utf8_lossy(&made.stderr)
        );
        let rsa_key = KeyPair::from_pem_and_sign_algo(
            &std::fs::read_to_string(&rsa_key_path)?,
            &rcgen::PKCS_RSA_SHA256,
        )?;
        Ok(TestCerts {
            ecdsa: ca.issue("edge-ecdsa", &[SERVER_NAME], None)?,
            rsa: ca.issue("edge-rsa", &[SERVER_NAME], Some(rsa_key))?,
            client: ca.issue("charger", &["charger-1"], None)?,
            ca: ca.ca_pem.clone(),
            authority: ca,
        })
    }

    /// Another certificate from the same CA, naming `names` (as subject alternative
    /// names), e.g. a charger's pile number.
    pub fn issue(&self, file: &str, names: &[&str]) -> anyhow::Result<PemPair> {
        self.authority.issue(file, names, None)
    }
}
