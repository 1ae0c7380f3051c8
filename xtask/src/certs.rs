//! Certificates for demos and benchmarks: a CA and an ECDSA server certificate.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

pub const SERVER_NAME: &str = "pylon-edge";

pub struct Certs {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub fn generate(dir: &Path) -> anyhow::Result<Certs> {
    std::fs::create_dir_all(dir)?;
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Pylon demo CA");
    let ca = ca_params.self_signed(&ca_key)?;
    let key = KeyPair::generate()?;
    let cert =
        CertificateParams::new(vec![SERVER_NAME.to_string()])?.signed_by(&key, &ca, &ca_key)?;
    let certs = Certs {
        ca: dir.join("ca.pem"),
        cert: dir.join("edge.pem"),
        key: dir.join("edge.key"),
    };
    std::fs::write(&certs.ca, ca.pem())?;
    std::fs::write(&certs.cert, cert.pem())?;
    std::fs::write(&certs.key, key.serialize_pem())?;
    Ok(certs)
}
