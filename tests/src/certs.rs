//! A throwaway CA with ECDSA and RSA server certificates and a client certificate.

use std::path::{Path, PathBuf};
use std::process::Command;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

pub struct TestCerts {
    pub ca: PathBuf,
    pub ecdsa_cert: PathBuf,
    pub ecdsa_key: PathBuf,
    pub rsa: Option<(PathBuf, PathBuf)>,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

pub const SERVER_NAME: &str = "pylon-edge";

impl TestCerts {
    /// Writes everything into `dir`. The RSA pair needs the `openssl` command (to make
    /// an RSA key, which ring cannot); without it `rsa` is None.
    pub fn generate(dir: &Path) -> anyhow::Result<TestCerts> {
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "Pylon test CA");
        let ca = ca_params.self_signed(&ca_key)?;

        let write = |name: &str, text: String| -> anyhow::Result<PathBuf> {
            let p = dir.join(name);
            std::fs::write(&p, text)?;
            Ok(p)
        };
        let issue = |names: Vec<String>, key: &KeyPair| -> anyhow::Result<String> {
            let params = CertificateParams::new(names)?;
            Ok(params.signed_by(key, &ca, &ca_key)?.pem())
        };

        let server_key = KeyPair::generate()?;
        let ecdsa_cert = write(
            "edge-ecdsa.pem",
            issue(vec![SERVER_NAME.into()], &server_key)?,
        )?;
        let ecdsa_key = write("edge-ecdsa.key", server_key.serialize_pem())?;

        let client_key = KeyPair::generate()?;
        let client_cert = write("charger.pem", issue(vec!["charger-1".into()], &client_key)?)?;
        let client_key_path = write("charger.key", client_key.serialize_pem())?;

        let rsa_key_path = dir.join("edge-rsa.key");
        let made_rsa = Command::new("openssl")
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
            .map(|o| o.status.success())
            .unwrap_or(false);
        let rsa = if made_rsa {
            let rsa_key = KeyPair::from_pem_and_sign_algo(
                &std::fs::read_to_string(&rsa_key_path)?,
                &rcgen::PKCS_RSA_SHA256,
            )?;
            let cert = write("edge-rsa.pem", issue(vec![SERVER_NAME.into()], &rsa_key)?)?;
            Some((cert, rsa_key_path))
        } else {
            None
        };
        Ok(TestCerts {
            ca: write("ca.pem", ca.pem())?,
            ecdsa_cert,
            ecdsa_key,
            rsa,
            client_cert,
            client_key: client_key_path,
        })
    }
}
