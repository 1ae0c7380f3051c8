use std::sync::Arc;

use clap::Parser;
use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{CertificateError, RootCertStore};

use super::*;
use crate::cli::{Cli, Command};

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn names(dns: &[&str], ips: &[&str]) -> Names {
    let dns: Vec<String> = dns.iter().map(|s| s.to_string()).collect();
    let ips: Vec<IpAddr> = ips.iter().map(|s| s.parse().unwrap()).collect();
    Names::new(&dns, &ips).unwrap()
}

fn certs_of(path: &Path) -> Vec<CertificateDer<'static>> {
    crate::tls::read_pem_certs(path).unwrap()
}

fn roots(ca: &Path) -> Arc<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for c in certs_of(ca) {
        roots.add(c).unwrap();
    }
    Arc::new(roots)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// What rustls (webpki) says of `chain` as a server's, reached as `name`, with `ca` trusted.
fn verify_server(ca: &Path, chain: &Path, name: &str) -> Result<(), rustls::Error> {
    let verifier = WebPkiServerVerifier::builder_with_provider(roots(ca), provider())
        .build()
        .unwrap();
    let chain = certs_of(chain);
    let name = ServerName::try_from(name.to_owned()).unwrap();
    verifier
        .verify_server_cert(&chain[0], &chain[1..], &name, &[], UnixTime::now())
        .map(|_| ())
}

/// What rustls says of `chain` as a client's (mutual TLS), with `ca` trusted.
fn verify_client(ca: &Path, chain: &Path) -> Result<(), rustls::Error> {
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(ca), provider())
        .build()
        .unwrap();
    let chain = certs_of(chain);
    verifier
        .verify_client_cert(&chain[0], &chain[1..], UnixTime::now())
        .map(|_| ())
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// A CA in a new folder and a certificate for `ctl-1` (ctl1.pylon.internal, 127.0.0.1, ::1).
fn ca_and_ctl() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path(), "Test CA", 30, false, now()).unwrap();
    issue(
        dir.path(),
        "ctl-1",
        &names(&["ctl1.pylon.internal"], &["127.0.0.1", "::1"]),
        10,
        false,
        now(),
    )
    .unwrap();
    dir
}

#[test]
fn init_and_issue_make_a_chain_rustls_accepts() {
    let dir = ca_and_ctl();
    let d = dir.path();
    let (ca, pem, key) = (d.join("ca.pem"), d.join("ctl-1.pem"), d.join("ctl-1.key"));
    assert_eq!(mode(&d.join("ca.key")), 0o600);
    assert_eq!(mode(&key), 0o600);
    assert_eq!(mode(&pem), 0o644);

    // As a server, for each SAN; not for a name it does not carry.
    for name in ["127.0.0.1", "::1", "ctl1.pylon.internal"] {
        verify_server(&ca, &pem, name).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let err = verify_server(&ca, &pem, "10.9.9.9").unwrap_err();
    assert!(
        matches!(
            err,
            rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
            )
        ),
        "{err:?}"
    );
    assert!(matches!(
        verify_server(&ca, &pem, "other.example"),
        Err(rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
        ))
    ));
    // As a client of mutual TLS.
    verify_client(&ca, &pem).unwrap();

    // Another CA does not vouch for it.
    let other = tempfile::tempdir().unwrap();
    init(other.path(), "Other CA", 30, false, now()).unwrap();
    assert!(matches!(
        verify_server(&other.path().join("ca.pem"), &pem, "127.0.0.1"),
        Err(rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer
        ))
    ));

    // The chain: the leaf, then the CA's certificate as in ca.pem.
    let chain = certs_of(&pem);
    assert_eq!(chain.len(), 2);
    assert_eq!(chain[1], certs_of(&ca)[0]);
    let (_, leaf) = x509_parser::parse_x509_certificate(&chain[0]).unwrap();
    let (_, ca_cert) = x509_parser::parse_x509_certificate(&chain[1]).unwrap();
    leaf.verify_signature(Some(ca_cert.public_key())).unwrap();

    let info = describe(&chain[0]).unwrap();
    assert_eq!(info.subject, "CN=ctl-1");
    assert_eq!(info.common_name.as_deref(), Some("ctl-1"));
    assert_eq!(info.issuer, "CN=Test CA");
    assert_eq!(info.dns, vec!["ctl1.pylon.internal".to_owned()]);
    assert_eq!(
        info.ips,
        vec![
            "127.0.0.1".parse::<IpAddr>().unwrap(),
            "::1".parse().unwrap()
        ]
    );
    assert!(!info.is_ca && info.has_eku && info.server_auth && info.client_auth);
    let ku = leaf.key_usage().unwrap().unwrap().value;
    assert!(ku.digital_signature() && !ku.key_cert_sign());
    assert!(!leaf.basic_constraints().unwrap().unwrap().value.ca);
    let ca_info = describe(&chain[1]).unwrap();
    assert!(ca_info.is_ca);
    assert_eq!(ca_info.subject, "CN=Test CA");

    // The key goes with the certificate: rustls takes them as a server's.
    let key = rustls_pemfile::private_key(&mut fs::read(&key).unwrap().as_slice())
        .unwrap()
        .unwrap();
    rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();

    // No temporary file is left behind.
    let mut files: Vec<String> = fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files, ["ca.key", "ca.pem", "ctl-1.key", "ctl-1.pem"]);
}

#[test]
fn rotate_keeps_the_names_and_changes_the_key() {
    let dir = ca_and_ctl();
    let d = dir.path();
    let (pem, key) = (d.join("ctl-1.pem"), d.join("ctl-1.key"));
    let old_key = fs::read(&key).unwrap();
    let old_chain = certs_of(&pem);
    let old = describe(&old_chain[0]).unwrap();

    let rotated = rotate(d, "ctl-1", 20, now()).unwrap();
    assert_eq!(rotated.names.dns, old.dns);
    assert_eq!(rotated.names.ips, old.ips);
    assert_eq!(rotated.replaced_not_after, Some(old.not_after));

    let new_key = fs::read(&key).unwrap();
    assert_ne!(new_key, old_key);
    assert_eq!(mode(&key), 0o600);
    let new_chain = certs_of(&pem);
    let new = describe(&new_chain[0]).unwrap();
    assert_eq!(
        (&new.subject, &new.dns, &new.ips),
        (&old.subject, &old.dns, &old.ips)
    );
    assert_ne!(new.serial, old.serial);
    assert!(new.not_after > old.not_after);
    let (_, old_x509) = x509_parser::parse_x509_certificate(&old_chain[0]).unwrap();
    let (_, new_x509) = x509_parser::parse_x509_certificate(&new_chain[0]).unwrap();
    assert_ne!(old_x509.public_key().raw, new_x509.public_key().raw);
    // The new key is the new certificate's.
    let pair = KeyPair::from_pem(std::str::from_utf8(&new_key).unwrap()).unwrap();
    assert_eq!(
        pair.public_key_raw(),
        new_x509.public_key().subject_public_key.data.as_ref()
    );
    verify_server(&d.join("ca.pem"), &pem, "::1").unwrap();
    verify_client(&d.join("ca.pem"), &pem).unwrap();
    assert_eq!(fs::read_dir(d).unwrap().count(), 4, "temporary files left");

    // Nothing to rotate.
    let err = rotate(d, "app-1", 20, now()).unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert!(err.to_string().contains("certs issue"), "{err}");
}

#[test]
fn existing_files_are_not_overwritten_without_force() {
    let dir = ca_and_ctl();
    let d = dir.path();
    let ca_before = fs::read(d.join("ca.pem")).unwrap();
    let ca_key_before = fs::read(d.join("ca.key")).unwrap();

    let err = init(d, "Another CA", 30, false, now()).unwrap_err();
    assert_eq!(err.exit_code(), 2);
    let msg = err.to_string();
    assert!(
        msg.contains("already exist") && msg.contains("--force"),
        "{msg}"
    );
    assert_eq!(fs::read(d.join("ca.pem")).unwrap(), ca_before);
    assert_eq!(fs::read(d.join("ca.key")).unwrap(), ca_key_before);

    let pem_before = fs::read(d.join("ctl-1.pem")).unwrap();
    let err = issue(d, "ctl-1", &names(&["x.example"], &[]), 10, false, now()).unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert!(err.to_string().contains("certs rotate"), "{err}");
    assert_eq!(fs::read(d.join("ctl-1.pem")).unwrap(), pem_before);

    // Only one of the two files there is enough to refuse.
    fs::remove_file(d.join("ctl-1.pem")).unwrap();
    assert!(issue(d, "ctl-1", &names(&["x.example"], &[]), 10, false, now()).is_err());

    // With --force: replaced.
    issue(d, "ctl-1", &names(&["x.example"], &[]), 10, true, now()).unwrap();
    let info = describe(&certs_of(&d.join("ctl-1.pem"))[0]).unwrap();
    assert_eq!(info.dns, ["x.example"]);
    init(d, "Another CA", 30, true, now()).unwrap();
    assert_ne!(fs::read(d.join("ca.pem")).unwrap(), ca_before);
    // The old certificate is not the new CA's.
    assert!(verify_server(&d.join("ca.pem"), &d.join("ctl-1.pem"), "x.example").is_err());
}

#[test]
fn bad_names_and_missing_cas_are_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let n = names(&["a.example"], &[]);

    let err = issue(d, "ctl-1", &n, 10, false, now()).unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert!(err.to_string().contains("certs init --dir"), "{err}");

    init(d, "Test CA", 30, false, now()).unwrap();
    for bad in ["ca", "CA", "", "../x", "a/b", ".hidden", "-x", "a b"] {
        let err = issue(d, bad, &n, 10, false, now()).unwrap_err();
        assert_eq!(err.exit_code(), 2, "{bad:?}");
    }
    let err = Names::new(&[], &[]).unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert!(err.to_string().contains("--dns HOST or --ip ADDR"), "{err}");
    for bad in ["10.0.0.5", "[::1]", "a..b", "-a.b", "a b", "x.y/z", ""] {
        let err = Names::new(&[bad.to_owned()], &[]).unwrap_err();
        assert_eq!(err.exit_code(), 2, "{bad:?}");
    }
    assert!(Names::new(&["10.0.0.5".into()], &[])
        .unwrap_err()
        .to_string()
        .contains("--ip"));
    assert_eq!(
        names(
            &[
                "Ctl1.Pylon.Internal.",
                "ctl1.pylon.internal",
                "*.edges.internal"
            ],
            &["10.0.0.5", "10.0.0.5"]
        ),
        Names {
            dns: vec!["ctl1.pylon.internal".into(), "*.edges.internal".into()],
            ips: vec!["10.0.0.5".parse().unwrap()],
        }
    );

    // A key that is not the CA's.
    let other = tempfile::tempdir().unwrap();
    init(other.path(), "Other", 30, false, now()).unwrap();
    fs::copy(other.path().join("ca.key"), d.join("ca.key")).unwrap();
    let err = issue(d, "ctl-1", &n, 10, false, now()).unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert!(err.to_string().contains("is not the key of"), "{err}");
    fs::write(d.join("ca.key"), "not a key").unwrap();
    assert_eq!(
        issue(d, "ctl-1", &n, 10, false, now())
            .unwrap_err()
            .exit_code(),
        2
    );
}

#[test]
fn a_certificate_never_outlives_its_ca() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let made = init(d, "Short CA", 10, false, now()).unwrap();
    let issued = issue(d, "app-1", &names(&[], &["10.0.0.7"]), 397, false, now()).unwrap();
    assert!(issued.cut_to_ca);
    assert_eq!(issued.not_after, made.not_after);
    assert!(render_issued(&issued, false).contains("make a new CA"));

    // An expired CA issues nothing.
    let later = now() + Duration::days(11);
    let err = issue(d, "app-2", &names(&[], &["10.0.0.8"]), 10, false, later).unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert!(err.to_string().contains("expired"), "{err}");
}

#[test]
fn the_commands_parse_run_and_print() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("certs");
    let d_str = d.to_str().unwrap();
    let run_args = |args: &[&str]| -> Result<String, Failure> {
        let cli = Cli::try_parse_from(std::iter::once("pylonctl").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("{args:?}: {e}"));
        let Command::Certs(cmd) = cli.command else {
            panic!("{args:?}")
        };
        let mut out = Vec::new();
        run(cmd, &mut out)?;
        Ok(String::from_utf8(out).unwrap())
    };

    let text = run_args(&["certs", "init", "--dir", d_str, "--days", "100"]).unwrap();
    assert!(
        text.contains("Made the cluster CA \"Pylon cluster CA\""),
        "{text}"
    );
    assert!(text.contains("certs issue --dir"), "{text}");
    assert_eq!(mode(&d), 0o700);

    let text = run_args(&[
        "certs",
        "issue",
        "--dir",
        d_str,
        "edge-1",
        "--dns",
        "edge1.internal,edge1",
        "--ip",
        "10.0.0.3",
        "--ip",
        "127.0.0.1",
    ])
    .unwrap();
    assert!(
        text.contains("DNS: edge1.internal, edge1; IP: 10.0.0.3, 127.0.0.1")
            && text.contains("--cluster-cert"),
        "{text}"
    );

    let text = run_args(&["certs", "rotate", "--dir", d_str, "edge-1"]).unwrap();
    assert!(
        text.contains("within 5 s") && text.contains("kill -HUP"),
        "{text}"
    );
    assert!(text.contains("CA expires then"), "{text}");

    let pem = d.join("edge-1.pem");
    let text = run_args(&["certs", "show", pem.to_str().unwrap()]).unwrap();
    for want in [
        "certificate 1 of 2",
        "subject:    CN=edge-1",
        "SANs:       DNS:edge1.internal, DNS:edge1, IP:10.0.0.3, IP:127.0.0.1",
        "issuer:     CN=Pylon cluster CA",
        "days left:  99",
        "usage:      server and client",
        "CA:         yes",
    ] {
        assert!(text.contains(want), "{want:?} in\n{text}");
    }

    let err = run_args(&["certs", "show", d.join("nope.pem").to_str().unwrap()]).unwrap_err();
    assert_eq!(err.exit_code(), 2);
    let err = run_args(&["certs", "show", d.join("edge-1.key").to_str().unwrap()]).unwrap_err();
    assert!(
        err.to_string().contains("no -----BEGIN CERTIFICATE"),
        "{err}"
    );

    assert!(
        Cli::try_parse_from(["pylonctl", "certs", "issue", "--dir", "d", "x", "--ip", "nope"])
            .is_err()
    );
    assert!(
        Cli::try_parse_from(["pylonctl", "certs", "init", "--dir", "d", "--days", "0"]).is_err()
    );
    assert!(Cli::try_parse_from(["pylonctl", "certs", "issue", "x", "--dns", "a"]).is_err());
}

#[test]
fn days_left_reads_well() {
    let now = now();
    let from = now - Duration::days(1);
    assert_eq!(days_left(from, now + Duration::hours(30), now), "1");
    assert_eq!(
        days_left(from, now + Duration::hours(3), now),
        "0 (less than a day)"
    );
    assert_eq!(
        days_left(from, now - Duration::hours(80), now),
        "none: EXPIRED 3 days ago"
    );
    assert!(
        days_left(now + Duration::days(1), now + Duration::days(9), now).contains("not valid yet")
    );
    assert_eq!(
        fmt_time(OffsetDateTime::from_unix_timestamp(1746100984).unwrap()),
        "2025-05-01 12:03:04 UTC"
    );
}
