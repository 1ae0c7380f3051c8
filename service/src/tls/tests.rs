use std::path::Path;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tower::ServiceExt;

use super::*;

struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

fn ca(dir: &Path, name: &str) -> Ca {
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let cert = params.self_signed(&key).expect("self-signed");
    std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).expect("write");
    Ca { cert, key }
}

/// A certificate for 127.0.0.1 from `ca`, valid until `year`; returns the files.
fn issue(dir: &Path, ca_name: &str, ca: &Ca, file: &str, year: i32) -> TlsFiles {
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned()]).expect("params");
    params.not_after = rcgen::date_time_ymd(year, 1, 1);
    let cert = params.signed_by(&key, &ca.cert, &ca.key).expect("signed");
    let (cert_path, key_path) = (
        dir.join(format!("{file}.pem")),
        dir.join(format!("{file}.key")),
    );
    std::fs::write(&cert_path, cert.pem()).expect("write");
    std::fs::write(&key_path, key.serialize_pem()).expect("write");
    TlsFiles {
        ca: Some(dir.join(format!("{ca_name}.pem"))),
        cert: Some(cert_path),
        key: Some(key_path),
    }
}

async fn listen(tls: &Arc<ClusterTls>, mutual: bool) -> (SocketAddr, TlsIncoming) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    (addr, tls.incoming(listener, mutual))
}

async fn dial(
    client: &Arc<ClusterTls>,
    addr: SocketAddr,
) -> io::Result<hyper_util::rt::TokioIo<tokio_rustls::client::TlsStream<TcpStream>>> {
    let uri: axum::http::Uri = format!("https://{addr}").parse().expect("uri");
    client.connector().oneshot(uri).await
}

#[tokio::test]
async fn mutual_tls_between_two_holders_of_the_cluster_ca() {
    let dir = tempfile::tempdir().expect("dir");
    let authority = ca(dir.path(), "cluster");
    let server = ClusterTls::load(&issue(dir.path(), "cluster", &authority, "server", 2040))
        .expect("load")
        .expect("configured");
    let client = ClusterTls::load(&issue(dir.path(), "cluster", &authority, "client", 2040))
        .expect("load")
        .expect("configured");
    let (addr, mut incoming) = listen(&server, true).await;
    let mut stream = dial(&client, addr).await.expect("handshake").into_inner();
    stream.write_all(b"ping").await.expect("write");
    let (mut conn, peer) = axum::serve::Listener::accept(&mut incoming).await;
    assert_eq!(peer.ip(), addr.ip());
    let mut got = [0u8; 4];
    conn.read_exact(&mut got).await.expect("read");
    assert_eq!(&got, b"ping");
    assert_eq!(server.refused.get(), 0);
}

#[tokio::test]
async fn plaintext_and_strangers_are_refused() {
    let dir = tempfile::tempdir().expect("dir");
    let authority = ca(dir.path(), "cluster");
    let stranger_ca = ca(dir.path(), "other");
    let server = ClusterTls::load(&issue(dir.path(), "cluster", &authority, "server", 2040))
        .expect("load")
        .expect("configured");
    let (addr, _incoming) = listen(&server, true).await;

    // Plaintext: an HTTP/1 request gets no answer but a closed connection.
    let mut plain = TcpStream::connect(addr).await.expect("connect");
    plain
        .write_all(b"GET /v1/admin/status HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("write");
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer).await;
    assert!(!answer.starts_with(b"HTTP/"), "plaintext was answered");

    // A certificate of another CA (trusting ours, so only the server can refuse it).
    let mut files = issue(dir.path(), "other", &stranger_ca, "stranger", 2040);
    files.ca = Some(dir.path().join("cluster.pem"));
    let stranger = ClusterTls::load(&files).expect("load").expect("configured");
    let refused = async {
        let mut s = dial(&stranger, addr).await?.into_inner();
        // TLS 1.3: the client's side completes first; the server's verdict comes after.
        s.write_all(b"x").await?;
        let mut b = [0u8; 1];
        s.read_exact(&mut b).await.map(|_| ())
    };
    assert!(refused.await.is_err());
    for _ in 0..50 {
        if server.refused.get() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(server.refused.get(), 2);
}

#[tokio::test]
async fn a_changed_certificate_is_reloaded_and_a_broken_one_kept_out() {
    let dir = tempfile::tempdir().expect("dir");
    let authority = ca(dir.path(), "cluster");
    let files = issue(dir.path(), "cluster", &authority, "server", 2040);
    let tls = ClusterTls::load(&files).expect("load").expect("configured");
    let first = tls.not_after.get();
    tls.reload(false);
    assert_eq!(
        tls.reloads
            .get_or_create(&ResultLabel {
                result: "ok".into()
            })
            .get(),
        0,
        "nothing changed"
    );

    // Rotated: a new certificate and key in the same files.
    std::thread::sleep(Duration::from_millis(20));
    issue(dir.path(), "cluster", &authority, "server", 2041);
    tls.reload(false);
    assert_eq!(
        tls.reloads
            .get_or_create(&ResultLabel {
                result: "ok".into()
            })
            .get(),
        1
    );
    assert!(tls.not_after.get() > first);

    // A half-written key: the old configuration stays.
    let rotated = tls.not_after.get();
    std::fs::write(files.key.as_ref().expect("key"), "not a key").expect("write");
    tls.reload(true);
    assert_eq!(
        tls.reloads
            .get_or_create(&ResultLabel {
                result: "error".into()
            })
            .get(),
        1
    );
    assert_eq!(tls.not_after.get(), rotated);

    assert!(ClusterTls::load(&TlsFiles::default())
        .expect("none")
        .is_none());
    let partial = TlsFiles {
        cert: files.cert.clone(),
        ..Default::default()
    };
    assert!(ClusterTls::load(&partial).is_err());
}
