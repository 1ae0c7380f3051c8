//! `pylonctl certs init|issue|rotate|show`: the cluster CA and the services' certificates
//! (`--cluster-ca`, `--cluster-cert`, `--cluster-key` of pylon-control, pylon-app and
//! pylon-edge; see `service/src/tls.rs`), as files, offline.
//!
//! The CA is an ECDSA P-256 key and a self-signed certificate (`ca.key`, `ca.pem`). A
//! service's certificate (`NAME.pem`: the certificate, then the CA's) carries its DNS
//! names and IP addresses as subject alternative names, and is for both ends of a TLS
//! link (serverAuth and clientAuth), since services call each other over mutual TLS.
//! Files are written to a temporary file in the same folder and renamed into place, so
//! a service that reloads them (every 5 s) never reads half a file; keys are mode 0600.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime, UtcOffset};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

use crate::cli::Failure;

/// The CA's files in the certificate folder.
pub const CA_CERT: &str = "ca.pem";
pub const CA_KEY: &str = "ca.key";

/// How far back a new certificate's validity starts, for hosts whose clocks are a little
/// behind the one that issued it.
const BACKDATE: Duration = Duration::hours(1);

pub const CERTS_ABOUT: &str = "\
Make and rotate the cluster's certificates, as files; no server is needed.

With cluster TLS, every link between Pylon's services is TLS (gRPC: mutual TLS, each end
shows a certificate) and their HTTP APIs are HTTPS. It takes one cluster CA and one
certificate per service, all in PEM files:
  ca.pem      the CA's certificate: give it to every service (--cluster-ca) and to
              pylonctl (--ca, for https:// endpoints)
  ca.key      the CA's private key: keep it on the host where you run `certs` only
  NAME.pem    a service's certificate (--cluster-cert), then the CA's
  NAME.key    that service's private key (--cluster-key)
An operator's certificate is issued the same way (pylonctl --cert NAME.pem --key
NAME.key): `pylonctl routes watch` needs one with cluster TLS on.
A service checks the certificates of the others, and pylonctl the server's, against the
CA and against the host name or IP address it connects to: give each service's
certificate every DNS name and IP address it is reached at.

Steps:
  1. pylonctl certs init --dir /etc/pylon/certs
  2. once per service (each instance of pylon-control, pylon-app and pylon-edge):
     pylonctl certs issue --dir /etc/pylon/certs control-1 --dns ctl1.pylon.internal --ip 10.0.0.5
  3. start it with --cluster-ca /etc/pylon/certs/ca.pem
       --cluster-cert /etc/pylon/certs/control-1.pem --cluster-key /etc/pylon/certs/control-1.key
     (copy the three files to its host; the key with mode 0600)
  4. before a certificate expires (`pylonctl certs show FILE` says when):
     pylonctl certs rotate --dir /etc/pylon/certs control-1
     The service loads the new files by itself within 5 s.

Examples:
  pylonctl certs init --dir ./certs
  pylonctl certs issue --dir ./certs app-1 --dns app1.pylon.internal --ip 10.0.0.7
  pylonctl certs rotate --dir ./certs app-1
  pylonctl certs show ./certs/app-1.pem";

const INIT_ABOUT: &str = "\
Make a new cluster CA: an ECDSA P-256 key, DIR/ca.key (mode 0600), and its self-signed
certificate, DIR/ca.pem, valid for --days (10 years by default). DIR is made if it does
not exist.

ca.pem goes to every service (--cluster-ca) and to pylonctl (--ca). ca.key signs the
services' certificates (`pylonctl certs issue` and `rotate` read it from DIR): keep it
on this host only, readable by you alone, and back it up offline. Whoever has it can
make certificates every service trusts.

Existing files are not overwritten unless --force is given. A new CA is a new trust: the
services stop trusting each other's certificates until every one of them has ca.pem and
a certificate issued by the new CA.

Examples:
  pylonctl certs init --dir /etc/pylon/certs
  pylonctl certs init --dir ./certs --name 'Pylon staging CA' --days 1825";

const ISSUE_ABOUT: &str = "\
Issue a certificate for the service NAME, signed by the cluster CA in DIR (ca.pem and
ca.key, from `pylonctl certs init`): a new ECDSA P-256 key, DIR/NAME.key (mode 0600),
and DIR/NAME.pem, which holds the certificate, then the CA's.

The certificate's common name is NAME. It carries every --dns and --ip given (at least
one) as subject alternative names: the names and addresses the other services and
pylonctl reach this service at, which they check the certificate against. It is for both
a server and a client (extended key usage serverAuth and clientAuth), since services
call each other over mutual TLS; it cannot sign other certificates. It is valid from an
hour ago (for clocks a little behind) for --days (397 by default), and never past the
CA's own expiry.

Existing files are not overwritten unless --force is given. Then start the service with
  --cluster-ca DIR/ca.pem --cluster-cert DIR/NAME.pem --cluster-key DIR/NAME.key

It also makes an operator's client certificate for pylonctl, which `routes watch` needs
with cluster TLS on (the control plane's gRPC port is mutual TLS): issue one per
operator, e.g. operator-ana, with any --dns (a label only: servers check a client's
certificate against the CA, not its names), and give pylonctl
  --cert DIR/operator-ana.pem --key DIR/operator-ana.key
(or PYLON_CERT and PYLON_KEY, or `cert` and `key` in its config file).

Examples:
  pylonctl certs issue --dir /etc/pylon/certs control-1 --dns ctl1.pylon.internal --ip 10.0.0.5
  pylonctl certs issue --dir ./certs edge-1 --dns edge1.pylon.internal,edge1 --ip 10.0.0.3 --ip 127.0.0.1
  pylonctl certs issue --dir /etc/pylon/certs operator-ana --dns operator-ana";

const ROTATE_ABOUT: &str = "\
Rotate the certificate of the service NAME: a new key and a new certificate, signed by
the cluster CA in DIR, with the same common name and subject alternative names (DNS
names, IP addresses) as the current DIR/NAME.pem, valid for --days (397 by default).

Both files are replaced atomically (each is written to a temporary file in DIR, then
renamed over the old one, the key first), so a service that reads them never sees half a
file. A running service that uses these files loads them by itself within 5 s, or at
once on SIGHUP; connections already open go on, new ones use the new certificate. A
service on another host needs the two new files copied to it.

To change the names or addresses, issue again instead: pylonctl certs issue --force.

Examples:
  pylonctl certs rotate --dir /etc/pylon/certs control-1
  pylonctl certs rotate --dir ./certs edge-1 --days 90";

const SHOW_ABOUT: &str = "\
Show the certificates in a PEM file: subject, subject alternative names (DNS names and
IP addresses), issuer, validity and the days left, whether it is a CA, and what it may
be used for. For a service's NAME.pem, the service's certificate comes first, then the
CA's.

Examples:
  pylonctl certs show /etc/pylon/certs/control-1.pem
  pylonctl certs show /etc/pylon/certs/ca.pem";

#[derive(Debug, PartialEq, Eq, Subcommand)]
pub enum CertsCommand {
    /// Make a new cluster CA (DIR/ca.pem and DIR/ca.key).
    #[command(long_about = INIT_ABOUT)]
    Init(InitArgs),
    /// Issue a service's certificate and key, signed by the cluster CA.
    #[command(long_about = ISSUE_ABOUT)]
    Issue(IssueArgs),
    /// Give a service a new key and certificate, with the same names.
    #[command(long_about = ROTATE_ABOUT)]
    Rotate(RotateArgs),
    /// Show the certificates in a PEM file: names, issuer, expiry.
    #[command(long_about = SHOW_ABOUT)]
    Show(ShowArgs),
}

#[derive(Debug, PartialEq, Eq, Args)]
pub struct InitArgs {
    /// The folder to write ca.pem and ca.key to (made if missing).
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// The CA's name (its certificate's common name), as `certs show` prints it.
    #[arg(long, value_name = "NAME", default_value = "Pylon cluster CA")]
    pub name: String,
    /// How many days the CA is valid; certificates it issues expire by then too.
    #[arg(long, value_name = "DAYS", default_value_t = 3650,
          value_parser = clap::value_parser!(u32).range(1..=36_500))]
    pub days: u32,
    /// Overwrite an existing CA (every certificate issued by the old one must then be
    /// issued again).
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, PartialEq, Eq, Args)]
pub struct IssueArgs {
    /// The folder with the CA (ca.pem, ca.key); NAME.pem and NAME.key are written to it.
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// The service's name: the certificate's common name and the files' names, e.g.
    /// control-1 (letters, digits, `.`, `_`, `-`).
    #[arg(value_name = "NAME")]
    pub name: String,
    /// A DNS name the service is reached at; repeat the flag, or separate names with
    /// commas.
    #[arg(long = "dns", value_name = "HOST", value_delimiter = ',')]
    pub dns: Vec<String>,
    /// An IP address the service is reached at (IPv4 or IPv6); repeat the flag, or
    /// separate addresses with commas.
    #[arg(long = "ip", value_name = "ADDR", value_delimiter = ',')]
    pub ip: Vec<IpAddr>,
    /// How many days the certificate is valid (never past the CA's expiry).
    #[arg(long, value_name = "DAYS", default_value_t = 397,
          value_parser = clap::value_parser!(u32).range(1..=36_500))]
    pub days: u32,
    /// Overwrite an existing NAME.pem and NAME.key.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, PartialEq, Eq, Args)]
pub struct RotateArgs {
    /// The folder with the CA (ca.pem, ca.key) and the service's NAME.pem and NAME.key.
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// The service's name, as given to `certs issue` (its files are DIR/NAME.pem and
    /// DIR/NAME.key).
    #[arg(value_name = "NAME")]
    pub name: String,
    /// How many days the new certificate is valid (never past the CA's expiry).
    #[arg(long, value_name = "DAYS", default_value_t = 397,
          value_parser = clap::value_parser!(u32).range(1..=36_500))]
    pub days: u32,
}

#[derive(Debug, PartialEq, Eq, Args)]
pub struct ShowArgs {
    /// A PEM file of certificates, such as ca.pem or a service's NAME.pem.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

/// Runs `pylonctl certs ...`.
pub fn run(cmd: CertsCommand, out: &mut dyn Write) -> Result<(), Failure> {
    let now = OffsetDateTime::now_utc();
    match cmd {
        CertsCommand::Init(a) => {
            let made = init(&a.dir, &a.name, a.days, a.force, now)?;
            out.write_all(render_init(&made).as_bytes())?;
        }
        CertsCommand::Issue(a) => {
            let names = Names::new(&a.dns, &a.ip)?;
            let issued = issue(&a.dir, &a.name, &names, a.days, a.force, now)?;
            out.write_all(render_issued(&issued, false).as_bytes())?;
        }
        CertsCommand::Rotate(a) => {
            let issued = rotate(&a.dir, &a.name, a.days, now)?;
            out.write_all(render_issued(&issued, true).as_bytes())?;
        }
        CertsCommand::Show(a) => {
            let certs = show(&a.file)?;
            out.write_all(render_show(&a.file, &certs, now).as_bytes())?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// What the commands do

/// What `init` made.
#[derive(Debug)]
pub struct MadeCa {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub name: String,
    pub not_after: OffsetDateTime,
    pub days: u32,
    pub warnings: Vec<String>,
}

/// Makes a new CA in `dir`.
pub fn init(
    dir: &Path,
    name: &str,
    days: u32,
    force: bool,
    now: OffsetDateTime,
) -> Result<MadeCa, Failure> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
        return Err(Failure::BadInput(format!(
            "--name {name:?} cannot be the CA's name: give 1 to 64 printable characters, \
             e.g. 'Pylon cluster CA'"
        )));
    }
    let cert_path = dir.join(CA_CERT);
    let key_path = dir.join(CA_KEY);
    if !force {
        refuse_existing(&[&cert_path, &key_path], "a CA", "certs init")?;
    }
    make_dir(dir)?;

    let key = KeyPair::generate().map_err(|e| crypto_failure("make the CA's key", e))?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = whole_seconds(now);
    params.not_before = now - BACKDATE;
    params.not_after = now + Duration::days(i64::from(days));
    let not_after = params.not_after;
    let cert = params
        .self_signed(&key)
        .map_err(|e| crypto_failure("sign the CA's certificate", e))?;

    let mut warnings = Vec::new();
    write_pair(
        (&key_path, key.serialize_pem().as_bytes()),
        (&cert_path, cert.pem().as_bytes()),
        &mut warnings,
    )?;
    Ok(MadeCa {
        cert: cert_path,
        key: key_path,
        name: name.to_owned(),
        not_after,
        days,
        warnings,
    })
}

/// The subject alternative names of a service's certificate: DNS names, then IP
/// addresses, each once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Names {
    pub dns: Vec<String>,
    pub ips: Vec<IpAddr>,
}

impl Names {
    /// Checks `--dns` and `--ip`: at least one, DNS names well formed.
    pub fn new(dns: &[String], ips: &[IpAddr]) -> Result<Names, Failure> {
        let mut names = Names::default();
        let mut seen = BTreeSet::new();
        for host in dns {
            let host = parse_dns_name(host)?;
            if seen.insert(host.clone()) {
                names.dns.push(host);
            }
        }
        for ip in ips {
            if !names.ips.contains(ip) {
                names.ips.push(*ip);
            }
        }
        if names.dns.is_empty() && names.ips.is_empty() {
            return Err(Failure::BadInput(
                "give at least one --dns HOST or --ip ADDR: the names and addresses the \
                 service is reached at, which its peers check its certificate against"
                    .into(),
            ));
        }
        Ok(names)
    }

    fn sans(&self) -> Result<Vec<SanType>, Failure> {
        let mut sans = Vec::new();
        for host in &self.dns {
            let ia5 = host
                .as_str()
                .try_into()
                .map_err(|e| Failure::BadInput(format!("--dns {host:?} is not a DNS name: {e}")))?;
            sans.push(SanType::DnsName(ia5));
        }
        sans.extend(self.ips.iter().map(|ip| SanType::IpAddress(*ip)));
        Ok(sans)
    }

    /// `DNS: a, b; IP: 10.0.0.5`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.dns.is_empty() {
            parts.push(format!("DNS: {}", self.dns.join(", ")));
        }
        if !self.ips.is_empty() {
            let ips: Vec<String> = self.ips.iter().map(IpAddr::to_string).collect();
            parts.push(format!("IP: {}", ips.join(", ")));
        }
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join("; ")
        }
    }
}

/// A DNS name for `--dns`: letters, digits, `-` and `_` in labels of at most 63
/// characters, a leading `*.` allowed; lower-cased, without a trailing dot.
pub fn parse_dns_name(host: &str) -> Result<String, Failure> {
    let given = host;
    let host = host.trim().trim_end_matches('.').to_ascii_lowercase();
    let bad = |why: &str| {
        Failure::BadInput(format!(
            "--dns {given:?} is not a DNS name: {why} (e.g. ctl1.pylon.internal)"
        ))
    };
    if host.parse::<IpAddr>().is_ok()
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok()
    {
        return Err(Failure::BadInput(format!(
            "--dns {given:?} is an IP address: give it with --ip"
        )));
    }
    if host.is_empty() {
        return Err(bad("it is empty"));
    }
    if host.len() > 253 {
        return Err(bad("it is longer than 253 characters"));
    }
    for (i, label) in host.split('.').enumerate() {
        if label == "*" && i == 0 && host.contains('.') {
            continue;
        }
        if label.is_empty() {
            return Err(bad("it has an empty label (two dots in a row?)"));
        }
        if label.len() > 63 {
            return Err(bad("a label is longer than 63 characters"));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(bad(
                "it may hold only letters, digits, '-', '_' and dots (and a leading '*.')",
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(bad("a label starts or ends with '-'"));
        }
    }
    Ok(host)
}

/// A service's name: letters, digits, `.`, `_`, `-`, not starting with `.` or `-`, and
/// not `ca` (the CA's files).
pub fn parse_service_name(name: &str) -> Result<String, Failure> {
    let bad = |why: &str| {
        Failure::BadInput(format!(
            "{name:?} cannot be a service's name: {why} (e.g. control-1; it names the \
             files NAME.pem and NAME.key)"
        ))
    };
    if name.is_empty() || name.len() > 64 {
        return Err(bad("give 1 to 64 characters"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    {
        return Err(bad("it may hold only letters, digits, '.', '_' and '-'"));
    }
    if name.starts_with('.') || name.starts_with('-') {
        return Err(bad("it starts with '.' or '-'"));
    }
    if name.eq_ignore_ascii_case("ca") {
        return Err(bad("ca.pem and ca.key are the CA's files"));
    }
    Ok(name.to_owned())
}

/// What `issue` and `rotate` wrote.
#[derive(Debug)]
pub struct Issued {
    pub name: String,
    pub dir: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub names: Names,
    pub issuer: String,
    pub not_after: OffsetDateTime,
    /// The days asked for, and whether the CA's expiry cut them short.
    pub days: u32,
    pub cut_to_ca: bool,
    /// For `rotate`: the replaced certificate's expiry.
    pub replaced_not_after: Option<OffsetDateTime>,
    pub warnings: Vec<String>,
}

/// Issues a certificate for the service `name` with `names`, signed by the CA in `dir`.
pub fn issue(
    dir: &Path,
    name: &str,
    names: &Names,
    days: u32,
    force: bool,
    now: OffsetDateTime,
) -> Result<Issued, Failure> {
    let name = parse_service_name(name)?;
    let (cert_path, key_path) = service_files(dir, &name);
    if !force {
        refuse_existing(&[&cert_path, &key_path], "a certificate", "certs issue")?;
    }
    let ca = Ca::load(dir, now)?;
    sign_and_write(&ca, dir, &name, names, days, now, None)
}

/// Gives the service `name` a new key and certificate with the names of its current one.
pub fn rotate(dir: &Path, name: &str, days: u32, now: OffsetDateTime) -> Result<Issued, Failure> {
    let name = parse_service_name(name)?;
    let (cert_path, _) = service_files(dir, &name);
    let current = match fs::read(&cert_path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(Failure::BadInput(format!(
                "{} does not exist: there is no certificate of {name} to rotate. Issue one \
                 with pylonctl certs issue --dir {} {name} --dns HOST --ip ADDR",
                cert_path.display(),
                dir.display()
            )))
        }
        Err(e) => return Err(file_failure("read", &cert_path, e)),
    };
    let ders = pem_certs(&current).map_err(|why| {
        Failure::BadInput(format!("{} cannot be read: {why}", cert_path.display()))
    })?;
    let Some(leaf) = ders.first() else {
        return Err(Failure::BadInput(format!(
            "{} holds no certificate",
            cert_path.display()
        )));
    };
    let info = describe(leaf).map_err(|why| {
        Failure::BadInput(format!(
            "the first certificate in {} cannot be read: {why}",
            cert_path.display()
        ))
    })?;
    if info.other_names > 0 {
        return Err(Failure::BadInput(format!(
            "the certificate in {} has subject alternative names other than DNS names and \
             IP addresses, which pylonctl cannot carry over; issue a new one with pylonctl \
             certs issue --force",
            cert_path.display()
        )));
    }
    if info.common_name.as_deref() != Some(name.as_str()) {
        return Err(Failure::BadInput(format!(
            "the certificate in {} is not {name}'s: its common name is {}; issue one with \
             pylonctl certs issue --force",
            cert_path.display(),
            info.common_name.as_deref().unwrap_or("missing")
        )));
    }
    let names = Names {
        dns: info.dns,
        ips: info.ips,
    };
    if names.dns.is_empty() && names.ips.is_empty() {
        return Err(Failure::BadInput(format!(
            "the certificate in {} names no DNS name or IP address; issue one with pylonctl \
             certs issue --force --dns HOST --ip ADDR",
            cert_path.display()
        )));
    }
    let ca = Ca::load(dir, now)?;
    sign_and_write(&ca, dir, &name, &names, days, now, Some(info.not_after))
}

fn sign_and_write(
    ca: &Ca,
    dir: &Path,
    name: &str,
    names: &Names,
    days: u32,
    now: OffsetDateTime,
    replaced_not_after: Option<OffsetDateTime>,
) -> Result<Issued, Failure> {
    let (cert_path, key_path) = service_files(dir, name);
    let key = KeyPair::generate().map_err(|e| crypto_failure("make the key", e))?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    params.subject_alt_names = names.sans()?;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    let now = whole_seconds(now);
    params.not_before = now - BACKDATE;
    let wanted = now + Duration::days(i64::from(days));
    let cut_to_ca = wanted > ca.not_after;
    params.not_after = wanted.min(ca.not_after);
    let not_after = params.not_after;
    let cert = params
        .signed_by(&key, &ca.signer, &ca.key)
        .map_err(|e| crypto_failure("sign the certificate", e))?;

    let chain = format!("{}{}", cert.pem(), ca.pem);
    let mut warnings = Vec::new();
    write_pair(
        (&key_path, key.serialize_pem().as_bytes()),
        (&cert_path, chain.as_bytes()),
        &mut warnings,
    )?;
    Ok(Issued {
        name: name.to_owned(),
        dir: dir.to_owned(),
        cert: cert_path,
        key: key_path,
        names: names.clone(),
        issuer: ca.name.clone(),
        not_after,
        days,
        cut_to_ca,
        replaced_not_after,
        warnings,
    })
}

/// Certificates hold times to the second.
fn whole_seconds(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_nanosecond(0).unwrap_or(t)
}

fn service_files(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    )
}

/// The CA, ready to sign.
struct Ca {
    /// A certificate with the CA's subject and key identifier, for rcgen to sign with
    /// (the CA's certificate re-made from ca.pem; the chain gets the original).
    signer: rcgen::Certificate,
    key: KeyPair,
    /// The CA's certificate as it is in ca.pem, PEM-encoded.
    pem: String,
    name: String,
    not_after: OffsetDateTime,
}

impl Ca {
    fn load(dir: &Path, now: OffsetDateTime) -> Result<Ca, Failure> {
        let cert_path = dir.join(CA_CERT);
        let key_path = dir.join(CA_KEY);
        let read = |path: &Path| match fs::read(path) {
            Ok(bytes) => Ok(bytes),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(Failure::BadInput(format!(
                "there is no cluster CA in {} ({} does not exist): make one with pylonctl \
                 certs init --dir {}",
                dir.display(),
                path.display(),
                dir.display()
            ))),
            Err(e) => Err(file_failure("read", path, e)),
        };
        let cert_bytes = read(&cert_path)?;
        let key_bytes = read(&key_path)?;
        let key_text = String::from_utf8(key_bytes)
            .map_err(|_| Failure::BadInput(format!("{} is not a PEM file", key_path.display())))?;
        let key = KeyPair::from_pem(&key_text).map_err(|e| {
            Failure::BadInput(format!(
                "{} is not a private key pylonctl can use (a PKCS#8 PEM key: ECDSA P-256 or \
                 P-384, or Ed25519): {e}",
                key_path.display()
            ))
        })?;
        let ders = pem_certs(&cert_bytes).map_err(|why| {
            Failure::BadInput(format!("{} cannot be read: {why}", cert_path.display()))
        })?;
        // ca.pem may hold several CAs (e.g. the old and the new one while the CA is
        // changed): the issuer is the one whose key is ca.key.
        let mut found = None;
        for der in &ders {
            let (_, x509) = x509_parser::parse_x509_certificate(der).map_err(|e| {
                Failure::BadInput(format!(
                    "{} holds a certificate that cannot be read: {e}",
                    cert_path.display()
                ))
            })?;
            if x509.public_key().subject_public_key.data.as_ref() == key.public_key_raw() {
                found = Some((der, x509));
                break;
            }
        }
        let Some((der, x509)) = found else {
            return Err(Failure::BadInput(format!(
                "{} is not the key of {} (no certificate there has its public key): are they \
                 of the same `pylonctl certs init`?",
                key_path.display(),
                cert_path.display()
            )));
        };
        if !x509.is_ca() {
            return Err(Failure::BadInput(format!(
                "the certificate of {} in {} is not a CA's (it has no basic constraints with \
                 CA: true)",
                key_path.display(),
                cert_path.display()
            )));
        }
        let not_after = x509.validity().not_after.to_datetime();
        let name = x509.subject().to_string();
        if not_after <= now {
            return Err(Failure::BadInput(format!(
                "the cluster CA in {} ({name}) expired on {}: make a new one (pylonctl certs \
                 init --dir {} --force), then issue every service's certificate again and \
                 give every service the new ca.pem",
                cert_path.display(),
                fmt_time(not_after),
                dir.display()
            )));
        }
        // rcgen reads only names with one attribute per component (and panics on none).
        if x509.subject().iter().any(|rdn| rdn.iter().count() != 1) {
            return Err(Failure::BadInput(format!(
                "the CA's subject in {} has a component with several attributes, which \
                 pylonctl cannot sign with; make a CA with pylonctl certs init",
                cert_path.display()
            )));
        }
        let params = CertificateParams::from_ca_cert_der(&der.as_slice().into()).map_err(|e| {
            Failure::BadInput(format!(
                "the CA's certificate in {} cannot be used to sign: {e}",
                cert_path.display()
            ))
        })?;
        let signer = params
            .self_signed(&key)
            .map_err(|e| crypto_failure("use the CA's key", e))?;
        let pem = pem::encode_config(
            &pem::Pem::new("CERTIFICATE", der.clone()),
            pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
        );
        Ok(Ca {
            signer,
            key,
            pem,
            name,
            not_after,
        })
    }
}

/// The DER of every `CERTIFICATE` block of a PEM file.
fn pem_certs(bytes: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let blocks = pem::parse_many(bytes).map_err(|e| format!("it is not PEM: {e}"))?;
    let certs: Vec<Vec<u8>> = blocks
        .into_iter()
        .filter(|b| b.tag() == "CERTIFICATE")
        .map(pem::Pem::into_contents)
        .collect();
    if certs.is_empty() {
        return Err("it holds no -----BEGIN CERTIFICATE----- block".into());
    }
    Ok(certs)
}

/// What `show` says of one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub subject: String,
    pub common_name: Option<String>,
    pub issuer: String,
    pub serial: String,
    pub dns: Vec<String>,
    pub ips: Vec<IpAddr>,
    /// Subject alternative names of other kinds (e-mail, URI, ...), counted.
    pub other_names: usize,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub is_ca: bool,
    pub server_auth: bool,
    pub client_auth: bool,
    /// Whether a certificate's extended key usage limits what it is for.
    pub has_eku: bool,
}

/// Reads a certificate (DER).
pub fn describe(der: &[u8]) -> Result<CertInfo, String> {
    let (_, x509) = x509_parser::parse_x509_certificate(der).map_err(|e| e.to_string())?;
    describe_x509(&x509)
}

fn describe_x509(x509: &X509Certificate<'_>) -> Result<CertInfo, String> {
    let mut dns = Vec::new();
    let mut ips = Vec::new();
    let mut other_names = 0;
    let san = x509
        .subject_alternative_name()
        .map_err(|e| format!("its subject alternative names cannot be read: {e}"))?;
    if let Some(san) = san {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(host) => dns.push((*host).to_owned()),
                GeneralName::IPAddress(bytes) => match ip_from_bytes(bytes) {
                    Some(ip) => ips.push(ip),
                    None => other_names += 1,
                },
                _ => other_names += 1,
            }
        }
    }
    let eku = x509
        .extended_key_usage()
        .map_err(|e| format!("its extended key usage cannot be read: {e}"))?;
    let (has_eku, server_auth, client_auth) = match eku {
        Some(e) => (
            true,
            e.value.server_auth || e.value.any,
            e.value.client_auth || e.value.any,
        ),
        None => (false, true, true),
    };
    Ok(CertInfo {
        subject: x509.subject().to_string(),
        common_name: x509
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_owned),
        issuer: x509.issuer().to_string(),
        serial: x509.raw_serial_as_string(),
        dns,
        ips,
        other_names,
        not_before: x509.validity().not_before.to_datetime(),
        not_after: x509.validity().not_after.to_datetime(),
        is_ca: x509.is_ca(),
        server_auth,
        client_auth,
        has_eku,
    })
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

/// The certificates in a PEM file.
pub fn show(file: &Path) -> Result<Vec<CertInfo>, Failure> {
    let bytes = match fs::read(file) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(Failure::BadInput(format!(
                "{} does not exist",
                file.display()
            )))
        }
        Err(e) => return Err(file_failure("read", file, e)),
    };
    let ders = pem_certs(&bytes)
        .map_err(|why| Failure::BadInput(format!("{} cannot be read: {why}", file.display())))?;
    ders.iter()
        .enumerate()
        .map(|(i, der)| {
            describe(der).map_err(|why| {
                Failure::BadInput(format!(
                    "certificate {} in {} cannot be read: {why}",
                    i + 1,
                    file.display()
                ))
            })
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Files

fn make_dir(dir: &Path) -> Result<(), Failure> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| file_failure("make the folder", dir, e))
}

fn refuse_existing(paths: &[&Path], what: &str, command: &str) -> Result<(), Failure> {
    let existing: Vec<String> = paths
        .iter()
        .filter(|p| p.symlink_metadata().is_ok())
        .map(|p| p.display().to_string())
        .collect();
    if existing.is_empty() {
        return Ok(());
    }
    Err(Failure::BadInput(format!(
        "{} already exist{}: not overwriting {what}. Give pylonctl {command} --force to \
         replace {}{}",
        existing.join(" and "),
        if existing.len() == 1 { "s" } else { "" },
        if existing.len() == 1 { "it" } else { "them" },
        if command == "certs issue" {
            ", or use pylonctl certs rotate to renew a certificate with the same names"
        } else {
            ""
        }
    )))
}

/// A file written next to where it goes, not yet renamed into place.
struct Staged {
    temp: PathBuf,
    dest: PathBuf,
}

impl Drop for Staged {
    fn drop(&mut self) {
        // Gone already once renamed into place.
        let _ = fs::remove_file(&self.temp);
    }
}

/// Writes `contents` to a new temporary file beside `dest`, with `mode`, flushed to disk;
/// with the owner of an existing `dest` when this process may give it.
fn stage(
    dest: &Path,
    contents: &[u8],
    mode: u32,
    warnings: &mut Vec<String>,
) -> Result<Staged, Failure> {
    let dir = match dest.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let file_name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let nanos = OffsetDateTime::now_utc().unix_timestamp_nanos();
    let temp = dir.join(format!(".{file_name}.{}.{nanos}.tmp", std::process::id()));
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&temp)
        .map_err(|e| file_failure("write", &temp, e))?;
    let staged = Staged {
        temp,
        dest: dest.to_owned(),
    };
    // The umask may have taken bits away; never add any beyond `mode`.
    file.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(|e| file_failure("set the mode of", &staged.temp, e))?;
    if let Ok(old) = fs::metadata(dest) {
        let mine = file
            .metadata()
            .map_err(|e| file_failure("read", &staged.temp, e))?;
        if (old.uid(), old.gid()) != (mine.uid(), mine.gid())
            && std::os::unix::fs::fchown(&file, Some(old.uid()), Some(old.gid())).is_err()
        {
            warnings.push(format!(
                "{} was owned by uid {} (gid {}), and the new one is owned by uid {} (gid \
                 {}): if a service reads it as another user, give it the file (chown {}:{} {})",
                dest.display(),
                old.uid(),
                old.gid(),
                mine.uid(),
                mine.gid(),
                old.uid(),
                old.gid(),
                dest.display()
            ));
        }
    }
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(|e| file_failure("write", &staged.temp, e))?;
    Ok(staged)
}

fn commit(staged: &Staged) -> Result<(), Failure> {
    fs::rename(&staged.temp, &staged.dest).map_err(|e| {
        Failure::Other(anyhow::anyhow!(
            "cannot move {} to {}: {e}",
            staged.temp.display(),
            staged.dest.display()
        ))
    })
}

/// Writes a key (mode 0600) and its certificate (0644): both to temporary files first,
/// then the key renamed into place, then the certificate.
fn write_pair(
    (key_path, key): (&Path, &[u8]),
    (cert_path, cert): (&Path, &[u8]),
    warnings: &mut Vec<String>,
) -> Result<(), Failure> {
    let key = stage(key_path, key, 0o600, warnings)?;
    let cert = stage(cert_path, cert, 0o644, warnings)?;
    commit(&key)?;
    commit(&cert).map_err(|e| {
        Failure::Other(anyhow::anyhow!(
            "{e}. {} is new but {} is not: they do not go together; run the command again",
            key_path.display(),
            cert_path.display()
        ))
    })?;
    if let Some(dir) = key_path.parent().filter(|d| !d.as_os_str().is_empty()) {
        // Best effort: the renames survive a crash.
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

fn file_failure(action: &str, path: &Path, e: io::Error) -> Failure {
    Failure::Other(anyhow::anyhow!("cannot {action} {}: {e}", path.display()))
}

fn crypto_failure(action: &str, e: rcgen::Error) -> Failure {
    Failure::Other(anyhow::anyhow!("cannot {action}: {e}"))
}

// ---------------------------------------------------------------------------------------
// Printing

/// `2025-05-01 12:00:00 UTC`.
pub fn fmt_time(t: OffsetDateTime) -> String {
    let t = t.to_offset(UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// `396`, `0 (less than a day)`, `none: EXPIRED 3 days ago`, `396 (not valid yet ...)`.
pub fn days_left(
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    now: OffsetDateTime,
) -> String {
    if not_after <= now {
        let ago = (now - not_after).whole_days();
        return format!(
            "none: EXPIRED {ago} day{} ago",
            if ago == 1 { "" } else { "s" }
        );
    }
    let left = (not_after - now).whole_days();
    let left = match left {
        0 => "0 (less than a day)".to_owned(),
        n => n.to_string(),
    };
    if now < not_before {
        return format!("{left} (not valid yet: from {})", fmt_time(not_before));
    }
    left
}

fn render_warnings(warnings: &[String]) -> String {
    warnings.iter().map(|w| format!("warning: {w}\n")).collect()
}

fn render_init(made: &MadeCa) -> String {
    let dir = made.cert.parent().unwrap_or(Path::new("."));
    format!(
        "Made the cluster CA \"{name}\", valid until {until} ({days} days).\n\
         \x20 certificate  {cert}\n\
         \x20 private key  {key}  (mode 0600: keep it on this host only, and back it up offline)\n\
         {warnings}\
         Next:\n\
         \x20 Issue a certificate for each service: pylonctl certs issue --dir {dir} NAME --dns HOST --ip ADDR\n\
         \x20 Give every service {cert} (--cluster-ca), and pylonctl too (--ca, for https:// endpoints).\n",
        name = made.name,
        until = fmt_time(made.not_after),
        days = made.days,
        cert = made.cert.display(),
        key = made.key.display(),
        warnings = render_warnings(&made.warnings),
        dir = dir.display(),
    )
}

fn render_issued(issued: &Issued, rotated: bool) -> String {
    let mut text = String::new();
    let cut = if issued.cut_to_ca {
        format!(
            "; {} days were asked for, but the CA expires then: make a new CA before that",
            issued.days
        )
    } else {
        format!(" ({} days)", issued.days)
    };
    if rotated {
        text.push_str(&format!(
            "Rotated the certificate of {}: a new key, and a certificate for {}, valid until \
             {}{cut}, issued by {}.\n",
            issued.name,
            issued.names.describe(),
            fmt_time(issued.not_after),
            issued.issuer
        ));
    } else {
        text.push_str(&format!(
            "Issued a certificate for {} ({}), valid until {}{cut}, issued by {}.\n",
            issued.name,
            issued.names.describe(),
            fmt_time(issued.not_after),
            issued.issuer
        ));
    }
    text.push_str(&format!(
        "  certificate  {}  (the certificate, then the CA's)\n  private key  {}  (mode 0600)\n",
        issued.cert.display(),
        issued.key.display()
    ));
    if let Some(old) = issued.replaced_not_after {
        text.push_str(&format!(
            "  The certificate it replaces was valid until {}.\n",
            fmt_time(old)
        ));
    }
    text.push_str(&render_warnings(&issued.warnings));
    let ca = issued.dir.join(CA_CERT);
    if rotated {
        text.push_str(&format!(
            "Next:\n\
             \x20 A running service that uses these files loads them by itself within 5 s (or at \
             once: kill -HUP <its pid>); its log says \"cluster certificate reloaded\". Open \
             connections go on; new ones use the new certificate.\n\
             \x20 A service on another host needs both files copied to it (the key with mode \
             0600).\n\
             \x20 If a service keeps the old one, its log says why (\"cluster certificate not \
             reloaded\").\n\
             \x20 Check: pylonctl certs show {}\n",
            issued.cert.display()
        ));
    } else {
        text.push_str(&format!(
            "Next: start the service with\n\
             \x20 --cluster-ca {} --cluster-cert {} --cluster-key {}\n\
             (on another host: copy the three files there, the key with mode 0600).\n",
            ca.display(),
            issued.cert.display(),
            issued.key.display()
        ));
    }
    text
}

fn render_show(file: &Path, certs: &[CertInfo], now: OffsetDateTime) -> String {
    let mut text = String::new();
    for (i, c) in certs.iter().enumerate() {
        if certs.len() > 1 {
            if i > 0 {
                text.push('\n');
            }
            text.push_str(&format!(
                "{} certificate {} of {}:\n",
                file.display(),
                i + 1,
                certs.len()
            ));
        }
        let mut sans: Vec<String> = c.dns.iter().map(|d| format!("DNS:{d}")).collect();
        sans.extend(c.ips.iter().map(|ip| format!("IP:{ip}")));
        if c.other_names > 0 {
            sans.push(format!("({} of other kinds)", c.other_names));
        }
        let usage = match (c.has_eku, c.server_auth, c.client_auth) {
            (false, _, _) => "any (no extended key usage)".to_owned(),
            (true, true, true) => "server and client (serverAuth, clientAuth)".to_owned(),
            (true, true, false) => "server only (serverAuth)".to_owned(),
            (true, false, true) => "client only (clientAuth)".to_owned(),
            (true, false, false) => "neither server nor client".to_owned(),
        };
        let rows = [
            ("subject", c.subject.clone()),
            (
                "SANs",
                if sans.is_empty() {
                    "none".into()
                } else {
                    sans.join(", ")
                },
            ),
            ("issuer", c.issuer.clone()),
            ("serial", c.serial.clone()),
            ("not before", fmt_time(c.not_before)),
            ("not after", fmt_time(c.not_after)),
            ("days left", days_left(c.not_before, c.not_after, now)),
            ("CA", if c.is_ca { "yes" } else { "no" }.into()),
            ("usage", usage),
        ];
        for (k, v) in rows {
            text.push_str(&format!("{:<11} {v}\n", format!("{k}:")));
        }
    }
    text
}

#[cfg(test)]
pub(crate) mod tests;
