//! The edge as chargers and operators see it: real `pylon-edge` processes, real TCP and
//! TLS chargers on loopback.

use std::sync::Arc;
use std::time::Duration;

use pylon_bench::charger::{self, ChargerConn, ChargerError, Target};
use pylon_bench::tls::{client_config, TlsVersions};
use pylon_proto::ykc::frames::{Heartbeat, RealtimeData, RemoteStop};
use pylon_proto::ykc::{self, Frame, PileNo};
use pylon_tests::certs::{TestCerts, SERVER_NAME};
use pylon_tests::edge::{EdgeOptions, EdgeProcess};
use pylon_tests::{http, local, wait_for};
use rustls::pki_types::ServerName;
use tempfile::TempDir;

struct World {
    certs: TestCerts,
    edge: EdgeProcess,
    _dir: TempDir,
}

fn world_with(extra: &[&str], with_rsa: bool) -> World {
    let dir = tempfile::tempdir().expect("temp dir");
    let certs = TestCerts::generate(dir.path()).expect("test certificates");
    let mut flags: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    if !extra.iter().any(|f| f.starts_with("--allowlist")) {
        flags.push("--allow-all".into());
    }
    let edge = EdgeProcess::start(EdgeOptions {
        certs: &certs,
        dir: dir.path(),
        executors: 2,
        extra: flags,
        with_rsa,
        tls_only: false,
        log_filter_from_file: false,
    });
    World {
        certs,
        edge,
        _dir: dir,
    }
}

fn world(extra: &[&str]) -> World {
    world_with(extra, false)
}

impl World {
    fn tcp(&self) -> Target {
        Target {
            addr: self.edge.tcp,
            tls: None,
        }
    }

    fn tls(&self, versions: TlsVersions) -> Target {
        let config = client_config(&self.certs.ca, None, versions).expect("client config");
        Target {
            addr: self.edge.tls,
            tls: Some((config, name())),
        }
    }
}

fn name() -> ServerName<'static> {
    ServerName::try_from(SERVER_NAME.to_string()).expect("valid name")
}

fn pile(n: u64) -> PileNo {
    charger::pile_number(32_010_600_000_000, n)
}

async fn logged_in(target: &Target, p: PileNo) -> ChargerConn {
    let mut c = ChargerConn::connect(target, None).await.expect("connect");
    c.login(p).await.expect("login");
    c
}

/// Sends a heartbeat and expects its answer (same sequence number, same pile).
async fn heartbeat_ok(c: &mut ChargerConn, p: PileNo) {
    let seq = c
        .send(&charger::heartbeat_frame(p))
        .await
        .expect("send heartbeat");
    loop {
        match c
            .recv_timeout("heartbeat reply", Duration::from_secs(5))
            .await
            .expect("heartbeat reply")
        {
            (s, Frame::HeartbeatReply(r)) if s == seq => {
                assert_eq!(r.pile_no, p);
                return;
            }
            _ => continue,
        }
    }
}

/// Expects the edge to close the connection.
async fn closed_by_edge(c: &mut ChargerConn) {
    loop {
        match c
            .recv_timeout("the edge to close", Duration::from_secs(10))
            .await
        {
            Err(ChargerError::Closed) | Err(ChargerError::Io(_)) => return,
            Err(e) => panic!("expected a close, got {e}"),
            Ok(_) => continue,
        }
    }
}

#[tokio::test]
async fn login_and_heartbeats_over_tcp_tls12_and_tls13() {
    let w = world(&[]);
    for (i, target) in [
        w.tcp(),
        w.tls(TlsVersions::Only12),
        w.tls(TlsVersions::Only13),
    ]
    .iter()
    .enumerate()
    {
        let p = pile(i as u64);
        let mut c = logged_in(target, p).await;
        heartbeat_ok(&mut c, p).await;
        heartbeat_ok(&mut c, p).await;
    }
    assert!(w.edge.metric("pylon_edge_heartbeats_total", &[]) >= 6.0);
    assert!(
        w.edge.metric(
            "pylon_edge_handshakes_total",
            &["transport=\"tls\"", "result=\"ok\""]
        ) >= 2.0
    );
    assert!(
        w.edge
            .metric("pylon_edge_frames_out_total", &["frame_type=\"0x04\""])
            >= 6.0
    );
}

#[tokio::test]
async fn ecdsa_and_rsa_certificates_are_served_side_by_side() {
    let w = world_with(&[], true);
    // A TLS 1.2 client that only offers RSA key exchange can only finish the handshake
    // if the edge picks the RSA certificate; a TLS 1.3 client gets the ECDSA one.
    let provider = rustls::crypto::CryptoProvider {
        cipher_suites: vec![
            rustls::crypto::ring::cipher_suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        ],
        ..rustls::crypto::ring::default_provider()
    };
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::pem::PemObject::pem_file_iter(&w.certs.ca).expect("ca") {
        roots.add(c.expect("ca cert")).expect("add ca");
    }
    let rsa_only = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS12])
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let targets = [
        w.tls(TlsVersions::Only13),
        Target {
            addr: w.edge.tls,
            tls: Some((Arc::new(rsa_only), name())),
        },
    ];
    for (i, target) in targets.iter().enumerate() {
        let p = pile(100 + i as u64);
        let mut c = logged_in(target, p).await;
        heartbeat_ok(&mut c, p).await;
    }
}

#[tokio::test]
async fn tls_sessions_resume() {
    let w = world(&[]);
    let target = w.tls(TlsVersions::Only13);
    for round in 0..2 {
        let c = logged_in(&target, pile(7)).await;
        let charger::Stream::Tls(tls) = &c.stream else {
            panic!("expected TLS")
        };
        let kind = tls.get_ref().1.handshake_kind();
        if round == 1 {
            assert_eq!(
                kind,
                Some(rustls::HandshakeKind::Resumed),
                "second connection should resume"
            );
        }
    }
}

#[tokio::test]
async fn client_certificates_are_required_when_configured() {
    let dir = tempfile::tempdir().expect("temp dir");
    let certs = TestCerts::generate(dir.path()).expect("certs");
    let ca = certs.ca.to_string_lossy().to_string();
    let edge = EdgeProcess::start(EdgeOptions {
        certs: &certs,
        dir: dir.path(),
        executors: 1,
        extra: vec!["--allow-all".into(), "--tls-client-ca".into(), ca],
        with_rsa: false,
        tls_only: false,
        log_filter_from_file: false,
    });
    let without = client_config(&certs.ca, None, TlsVersions::Only13).expect("config");
    let mut c = ChargerConn::connect(
        &Target {
            addr: edge.tls,
            tls: Some((without, name())),
        },
        None,
    )
    .await
    .expect("TLS 1.3 client finishes its side before the server checks");
    assert!(
        c.login(pile(1)).await.is_err(),
        "a charger without a certificate must be refused"
    );
    // A certificate of the CA that names the pile logs in as that pile, and only as it.
    let own = certs
        .issue("pile-2", &[&pile(2).to_string()])
        .expect("certificate");
    let target = |pair: &pylon_bench::certs::PemPair| Target {
        addr: edge.tls,
        tls: Some((
            client_config(&certs.ca, Some((&pair.cert, &pair.key)), TlsVersions::Both)
                .expect("config"),
            name(),
        )),
    };
    let mut c = logged_in(&target(&own), pile(2)).await;
    heartbeat_ok(&mut c, pile(2)).await;
    let mut other = ChargerConn::connect(&target(&own), None)
        .await
        .expect("connect");
    assert!(matches!(
        other.login(pile(3)).await,
        Err(ChargerError::LoginRefused)
    ));
    let mut unnamed = ChargerConn::connect(&target(&certs.client), None)
        .await
        .expect("connect");
    assert!(matches!(
        unnamed.login(pile(2)).await,
        Err(ChargerError::LoginRefused)
    ));
    assert_eq!(
        edge.metric(
            "pylon_edge_logins_total",
            &["result=\"certificate_mismatch\""]
        ),
        2.0
    );

    // A live certificate-bound session is taken over only with the same certificate:
    // another certificate naming the same pile (say, a copy re-issued) is refused...
    let reissued = certs
        .issue("pile-2-again", &[&pile(2).to_string()])
        .expect("certificate");
    let mut thief = ChargerConn::connect(&target(&reissued), None)
        .await
        .expect("connect");
    assert!(matches!(
        thief.login(pile(2)).await,
        Err(ChargerError::LoginRefused)
    ));
    heartbeat_ok(&mut c, pile(2)).await;
    assert_eq!(
        edge.metric("pylon_edge_logins_total", &["result=\"takeover_refused\""]),
        1.0
    );
    // ...and the pile itself, reconnecting with its certificate, replaces its session.
    let mut again = logged_in(&target(&own), pile(2)).await;
    closed_by_edge(&mut c).await;
    heartbeat_ok(&mut again, pile(2)).await;
    assert!(
        edge.metric(
            "pylon_edge_handshakes_total",
            &["result=\"tls_no_certificate\""]
        ) >= 1.0
    );
}

#[tokio::test]
async fn plain_tcp_takeovers_are_limited_and_tls_only_piles_refused_on_tcp() {
    let dir = tempfile::tempdir().expect("temp dir");
    let list = dir.path().join("tls-only.txt");
    std::fs::write(&list, format!("{}\n", pile(9))).expect("tls-only list");
    let w = world(&["--tls-only-piles", &list.to_string_lossy()]);
    let p = pile(1);
    let mut current = logged_in(&w.tcp(), p).await;
    // Three takeovers in the window replace the session; the fourth is refused and the
    // live session goes on.
    for _ in 0..3 {
        let next = logged_in(&w.tcp(), p).await;
        closed_by_edge(&mut current).await;
        current = next;
    }
    let mut fourth = ChargerConn::connect(&w.tcp(), None).await.expect("connect");
    assert!(matches!(
        fourth.login(p).await,
        Err(ChargerError::LoginRefused)
    ));
    heartbeat_ok(&mut current, p).await;
    assert_eq!(
        w.edge
            .metric("pylon_edge_logins_total", &["result=\"takeover_refused\""]),
        1.0
    );
    // A TLS-only pile: refused on TCP, welcome over TLS.
    let mut tcp = ChargerConn::connect(&w.tcp(), None).await.expect("connect");
    assert!(matches!(
        tcp.login(pile(9)).await,
        Err(ChargerError::LoginRefused)
    ));
    let mut tls = logged_in(&w.tls(TlsVersions::Both), pile(9)).await;
    heartbeat_ok(&mut tls, pile(9)).await;
    assert_eq!(
        w.edge
            .metric("pylon_edge_logins_total", &["result=\"tls_required\""]),
        1.0
    );
}

#[tokio::test]
async fn allowlist_refuses_unknown_piles_and_login_comes_first() {
    let dir = tempfile::tempdir().expect("temp dir");
    let list = dir.path().join("piles.txt");
    std::fs::write(&list, format!("# allowed\n{}\n", pile(1))).expect("allowlist");
    let w = world(&["--allowlist", &list.to_string_lossy()]);
    let mut ok = logged_in(&w.tcp(), pile(1)).await;
    let mut refused = ChargerConn::connect(&w.tcp(), None).await.expect("connect");
    assert!(matches!(
        refused.login(pile(2)).await,
        Err(ChargerError::LoginRefused)
    ));
    closed_by_edge(&mut refused).await;

    let mut early = ChargerConn::connect(&w.tcp(), None).await.expect("connect");
    early
        .send(
            &RealtimeData {
                pile_no: pile(1),
                ..Default::default()
            }
            .into(),
        )
        .await
        .expect("send");
    closed_by_edge(&mut early).await;
    heartbeat_ok(&mut ok, pile(1)).await;
    w.edge.wait_metric(
        "pylon_edge_closes_total",
        &["reason=\"login_rejected\""],
        1.0,
    );
    w.edge.wait_metric(
        "pylon_edge_closes_total",
        &["reason=\"not_logged_in\""],
        1.0,
    );
}

#[tokio::test]
async fn missed_heartbeats_close_the_session() {
    let w = world(&["--heartbeat-interval", "1"]);
    let mut quiet = logged_in(&w.tcp(), pile(1)).await;
    let mut lively = logged_in(&w.tls(TlsVersions::Both), pile(2)).await;
    let beat = async {
        for _ in 0..8 {
            heartbeat_ok(&mut lively, pile(2)).await;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    };
    let (_, ()) = tokio::join!(beat, closed_by_edge(&mut quiet));
    heartbeat_ok(&mut lively, pile(2)).await;
    w.edge.wait_metric(
        "pylon_edge_closes_total",
        &["reason=\"heartbeat_timeout\""],
        1.0,
    );
}

#[tokio::test]
async fn login_must_come_in_time() {
    let w = world(&["--login-timeout", "1"]);
    let mut silent = ChargerConn::connect(&w.tcp(), None).await.expect("connect");
    closed_by_edge(&mut silent).await;
    w.edge.wait_metric(
        "pylon_edge_closes_total",
        &["reason=\"login_timeout\""],
        1.0,
    );
}

#[tokio::test]
async fn a_second_login_replaces_the_first_connection() {
    let w = world(&[]);
    let p = pile(5);
    let mut first = logged_in(&w.tcp(), p).await;
    // The second login may land on the other executor; either way the first must go.
    let mut second = logged_in(&w.tls(TlsVersions::Both), p).await;
    closed_by_edge(&mut first).await;
    heartbeat_ok(&mut second, p).await;
    w.edge
        .wait_metric("pylon_edge_closes_total", &["reason=\"replaced\""], 1.0);
    // And the pile is reachable on its new connection.
    let (code, body) = http::post_json(
        w.edge.admin,
        "/v1/downlink",
        serde_json::json!({"pile": p.to_string(), "type": "RemoteStop", "fields": {"pile_no": p.to_string(), "gun_no": "01"}}),
    );
    assert_eq!(code, 200, "{body}");
    let (_, f) = second
        .recv_timeout("downlink", Duration::from_secs(5))
        .await
        .expect("downlink");
    assert!(matches!(f, Frame::RemoteStop(_)));
}

#[tokio::test]
async fn downlink_reaches_piles_on_any_executor() {
    let w = world(&[]);
    let mut chargers = Vec::new();
    for i in 0..8 {
        let target = if i % 2 == 0 {
            w.tcp()
        } else {
            w.tls(TlsVersions::Both)
        };
        chargers.push((pile(i), logged_in(&target, pile(i)).await));
    }
    for (p, c) in chargers.iter_mut() {
        let stop = RemoteStop {
            pile_no: *p,
            gun_no: ykc::Bcd([1]),
        };
        let fields = Frame::from(stop.clone()).fields_json();
        let (code, body) = http::post_json(
            w.edge.admin,
            "/v1/downlink",
            serde_json::json!({"pile": p.to_string(), "type": "0x36", "fields": fields}),
        );
        assert_eq!(code, 200, "{body}");
        assert_eq!(body["result"], "queued");
        let (_, frame) = c
            .recv_timeout("downlink", Duration::from_secs(5))
            .await
            .expect("downlink frame");
        assert_eq!(frame, Frame::RemoteStop(stop));
    }
    let (code, _) = http::post_json(
        w.edge.admin,
        "/v1/downlink",
        serde_json::json!({"pile": pile(99).to_string(), "type": "0x36", "fields": {"pile_no": pile(99).to_string(), "gun_no": "01"}}),
    );
    assert_eq!(code, 404);
    let (code, body) = http::post_json(
        w.edge.admin,
        "/v1/downlink",
        serde_json::json!({"pile": "12", "type": "0x36", "fields": {}}),
    );
    assert_eq!(code, 400, "{body}");
}

#[tokio::test]
async fn sigterm_drains_then_closes() {
    let mut w = world(&["--drain-grace", "2"]);
    let p = pile(1);
    let mut c = logged_in(&w.tls(TlsVersions::Both), p).await;
    w.edge.signal(libc::SIGTERM);
    wait_for("readyz to report draining", Duration::from_secs(5), || {
        (http::get(w.edge.admin, "/readyz").0 == 503).then_some(())
    });
    // Existing sessions keep being served during the grace period...
    heartbeat_ok(&mut c, p).await;
    // ...new ones are not accepted...
    tokio::time::sleep(Duration::from_millis(200)).await;
    let refused = ChargerConn::connect(&w.tcp(), None).await;
    if let Ok(mut late) = refused {
        assert!(
            late.login(pile(2)).await.is_err(),
            "a connection during drain must not log in"
        );
    }
    // ...and then the rest are closed and the process exits.
    closed_by_edge(&mut c).await;
    let status = w.edge.wait_exit(Duration::from_secs(10));
    assert!(status.is_some(), "edge did not exit after the grace period");
}

#[tokio::test]
async fn a_second_signal_stops_at_once() {
    let mut w = world(&["--drain-grace", "60"]);
    let _c = logged_in(&w.tcp(), pile(1)).await;
    w.edge.signal(libc::SIGTERM);
    tokio::time::sleep(Duration::from_millis(300)).await;
    w.edge.signal(libc::SIGTERM);
    assert!(
        w.edge.wait_exit(Duration::from_secs(5)).is_some(),
        "edge ignored the second signal"
    );
}

/// Each kind of bad input closes only the offending connection, with a counted reason,
/// while a healthy TLS session on the same edge keeps working.
#[tokio::test]
async fn bad_input_closes_only_the_offender() {
    let w = world(&["--max-frames-per-sec", "20", "--tls-handshake-timeout", "1"]);
    let healthy_pile = pile(1000);
    let mut healthy = logged_in(&w.tls(TlsVersions::Both), healthy_pile).await;

    let p = pile(1);
    let good = ykc::encode(
        1,
        &Heartbeat {
            pile_no: p,
            ..Default::default()
        }
        .into(),
    )
    .expect("encode");
    let mut bad_crc = good.clone();
    let n = bad_crc.len();
    bad_crc[n - 1] ^= 0x5A;
    let mut bad_length = good.clone();
    bad_length[1] = 2;
    let mut unknown_type = Vec::new();
    ykc::frame::write_frame(&mut unknown_type, 1, 0, 0x7F, &[0; 9]).expect("frame");
    let mut oversized = vec![0x68, 0xFA];
    oversized.extend([0u8; 260]);
    let flood: Vec<u8> = good
        .iter()
        .copied()
        .cycle()
        .take(good.len() * 400)
        .collect();
    let cases: [(&str, Vec<u8>, &str); 6] = [
        ("bad CRC", bad_crc, "bad_crc"),
        ("bad length", bad_length, "bad_length"),
        ("unknown type", unknown_type, "unknown_type"),
        (
            "garbage",
            b"\x00\x01GET / HTTP/1.1\r\n\r\n".to_vec(),
            "bad_start",
        ),
        ("oversized frame", oversized, "bad_length"),
        ("frame flood", flood, "frame_rate_exceeded"),
    ];
    for (what, bytes, reason) in cases {
        for target in [w.tcp(), w.tls(TlsVersions::Both)] {
            let mut offender = logged_in(&target, p).await;
            offender.send_raw(&bytes).await.expect("send bad input");
            closed_by_edge(&mut offender).await;
            heartbeat_ok(&mut healthy, healthy_pile).await;
        }
        w.edge.wait_metric(
            "pylon_edge_closes_total",
            &[&format!("reason=\"{reason}\"")],
            2.0,
        );
        eprintln!("{what}: closed with reason {reason}");
    }
    assert!(
        w.edge
            .metric("pylon_edge_decode_errors_total", &["kind=\"bad_crc\""])
            >= 2.0
    );

    // A TLS handshake that never finishes is cut off.
    let mut slow = tokio::net::TcpStream::connect(local(w.edge.tls.port()))
        .await
        .expect("connect");
    tokio::io::AsyncWriteExt::write_all(&mut slow, &[0x16, 0x03, 0x01, 0x00, 0x50, 0x01])
        .await
        .expect("partial hello");
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::io::AsyncReadExt::read(&mut slow, &mut buf),
    )
    .await
    .expect("the edge should close a stalled handshake");
    assert!(matches!(n, Ok(0) | Err(_)));
    w.edge.wait_metric(
        "pylon_edge_closes_total",
        &["reason=\"tls_handshake_timeout\""],
        1.0,
    );

    // Plaintext sent to the TLS port fails the handshake with a counted reason.
    // (The edge answers with a TLS alert, then closes.)
    let mut plain = tokio::net::TcpStream::connect(w.edge.tls)
        .await
        .expect("connect");
    let login = ykc::encode(0, &charger::login_frame(p)).expect("encode");
    tokio::io::AsyncWriteExt::write_all(&mut plain, &login)
        .await
        .expect("send");
    let mut seen = Vec::new();
    let read = tokio::io::AsyncReadExt::read_to_end(&mut plain, &mut seen);
    let _ = tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("the edge should close");
    assert_eq!(seen.first(), Some(&0x15), "expected a TLS alert record");
    w.edge.wait_metric(
        "pylon_edge_handshakes_total",
        &["transport=\"tls\"", "result=\"tls_protocol\""],
        1.0,
    );

    heartbeat_ok(&mut healthy, healthy_pile).await;
    assert!(w.edge.log_text().lines().all(|l| !l.contains("panicked")));
}

#[tokio::test]
async fn swapped_crc_is_accepted_and_counted() {
    let w = world(&[]);
    let p = pile(3);
    let mut c = logged_in(&w.tcp(), p).await;
    let mut hb = ykc::encode(9, &charger::heartbeat_frame(p)).expect("encode");
    let n = hb.len();
    hb.swap(n - 1, n - 2);
    c.send_raw(&hb).await.expect("send");
    let (seq, f) = c
        .recv_timeout("reply", Duration::from_secs(5))
        .await
        .expect("reply");
    assert_eq!(seq, 9);
    assert!(matches!(f, Frame::HeartbeatReply(_)));
    assert!(w.edge.metric("pylon_edge_crc_swapped_total", &[]) >= 1.0);
}

#[tokio::test]
async fn health_and_status_endpoints() {
    let w = world(&[]);
    let _c = logged_in(&w.tcp(), pile(1)).await;
    assert_eq!(http::get(w.edge.admin, "/healthz").0, 200);
    assert_eq!(http::get(w.edge.admin, "/readyz").0, 200);
    let (code, body) = http::get(w.edge.admin, "/v1/status");
    assert_eq!(code, 200);
    let status: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(status["sessions"]["tcp"], 1);
    assert!(w.edge.metrics().contains("pylon_edge_sessions"));
}

#[tokio::test]
async fn a_tls_only_edge_serves_tls() {
    let dir = tempfile::tempdir().expect("temp dir");
    let certs = TestCerts::generate(dir.path()).expect("certs");
    let edge = EdgeProcess::start(EdgeOptions {
        certs: &certs,
        dir: dir.path(),
        executors: 2,
        extra: vec!["--allow-all".into()],
        with_rsa: false,
        tls_only: true,
        log_filter_from_file: false,
    });
    let config = client_config(&certs.ca, None, TlsVersions::Both).expect("config");
    let mut c = logged_in(
        &Target {
            addr: edge.tls,
            tls: Some((config, name())),
        },
        pile(1),
    )
    .await;
    heartbeat_ok(&mut c, pile(1)).await;
    assert!(ChargerConn::connect(
        &Target {
            addr: edge.tcp,
            tls: None
        },
        None
    )
    .await
    .is_err());
}

/// A TLS charger driven by hand over a blocking socket, for what tokio-rustls will not do:
/// send its ClientHello one byte per write, or forge a record after the handshake.
struct HandTls {
    stream: rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>,
    splitter: ykc::FrameSplitter,
}

impl HandTls {
    fn connect(
        addr: std::net::SocketAddr,
        config: Arc<rustls::ClientConfig>,
        trickle: bool,
    ) -> Self {
        use std::io::Write;
        let mut sock = std::net::TcpStream::connect(addr).expect("connect");
        sock.set_nodelay(true).expect("nodelay");
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("read timeout");
        let mut conn = rustls::ClientConnection::new(config, name()).expect("client");
        let mut hello = Vec::new();
        conn.write_tls(&mut hello).expect("client hello");
        if trickle {
            for byte in hello {
                sock.write_all(&[byte]).expect("one byte of the hello");
                std::thread::sleep(Duration::from_millis(1));
            }
        } else {
            sock.write_all(&hello).expect("hello");
        }
        HandTls {
            stream: rustls::StreamOwned::new(conn, sock),
            splitter: ykc::FrameSplitter::new(),
        }
    }

    fn send(&mut self, seq: u16, frame: &Frame) {
        use std::io::Write;
        let bytes = ykc::encode(seq, frame).expect("encode");
        self.stream.write_all(&bytes).expect("send frame");
        self.stream.flush().expect("flush");
    }

    fn recv(&mut self) -> (u16, Frame) {
        use std::io::Read;
        let mut buf = [0u8; 1024];
        loop {
            let n = self.stream.read(&mut buf).expect("read");
            assert!(n > 0, "the edge closed the connection");
            let mut got = None;
            self.splitter.feed(&buf[..n], |event| {
                if let ykc::SplitEvent::Frame(raw) = event {
                    if got.is_none() {
                        got = Some((raw.seq, ykc::decode(&raw).expect("decodable frame")));
                    }
                }
                true
            });
            if let Some(frame) = got {
                return frame;
            }
        }
    }

    /// Logs in and has one heartbeat answered.
    fn login_and_heartbeat(&mut self, p: PileNo) {
        self.send(0, &charger::login_frame(p));
        assert!(matches!(self.recv().1, Frame::LoginReply(_)));
        self.send(1, &charger::heartbeat_frame(p));
        assert!(matches!(self.recv(), (1, Frame::HeartbeatReply(_))));
    }

    /// Writes bytes under TLS, as a forged record, and expects the edge to hang up (its
    /// alert may come first); a read that times out means it did not.
    fn forge_and_expect_close(mut self, record: &[u8]) {
        use std::io::{ErrorKind, Read, Write};
        self.stream.sock.write_all(record).expect("forged record");
        let mut buf = [0u8; 256];
        loop {
            match self.stream.sock.read(&mut buf) {
                Ok(0) => return,
                Ok(_) => continue,
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return,
                Err(e) => panic!("the edge did not close after a forged record: {e}"),
            }
        }
    }
}

/// Sends `bytes` to the TLS port and expects the edge to close; returns what it answered.
async fn raw_tls_attempt(edge: &EdgeProcess, bytes: &[u8], half_close: bool) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(edge.tls)
        .await
        .expect("connect");
    s.write_all(bytes).await.expect("send");
    if half_close {
        s.shutdown().await.expect("half close");
    }
    let mut seen = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut seen)).await;
    assert!(read.is_ok(), "the edge should close the connection");
    seen
}

/// Pseudo-random bytes (xorshift), the same on every run.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Hostile TLS input costs only the connection that sent it: a record header followed by
/// garbage (once an executor-killing panic), a truncated record, a bad length, an alert, a
/// plaintext YKC frame, a forged record after a TLS 1.2 or 1.3 handshake; a ClientHello in
/// one-byte writes simply works. Meanwhile the TCP and TLS chargers around them, spread by
/// SO_REUSEPORT over both executors, keep being answered, and the edge keeps counting right.
#[tokio::test]
async fn hostile_tls_input_costs_only_its_own_connection() {
    let w = world(&["--tls-handshake-timeout", "3"]);
    let mut healthy = Vec::new();
    for i in 0..16 {
        let target = if i % 2 == 0 {
            w.tcp()
        } else {
            w.tls(TlsVersions::Both)
        };
        let p = pile(3000 + i);
        healthy.push((p, logged_in(&target, p).await));
    }
    for executor in ["0", "1"] {
        let held: f64 = ["tcp", "tls"]
            .iter()
            .map(|t| {
                w.edge.metric(
                    "pylon_edge_connections",
                    &[
                        &format!("executor=\"{executor}\""),
                        &format!("transport=\"{t}\""),
                    ],
                )
            })
            .sum();
        assert!(held > 0.0, "executor {executor} holds none of the chargers");
    }
    async fn all_answered(healthy: &mut [(PileNo, ChargerConn)]) {
        for (p, c) in healthy.iter_mut() {
            heartbeat_ok(c, *p).await;
        }
    }

    let hello = {
        let config = client_config(&w.certs.ca, None, TlsVersions::Both).expect("config");
        let mut conn = rustls::ClientConnection::new(config, name()).expect("client");
        let mut hello = Vec::new();
        conn.write_tls(&mut hello).expect("client hello");
        hello
    };
    let mut bad_length = vec![0x16, 0x03, 0x01, 0xff, 0xff];
    bad_length.extend(noise(7, 64));
    let plaintext_login = ykc::encode(0, &charger::login_frame(pile(1))).expect("encode");

    // Eight times: spread by SO_REUSEPORT, they all land on one executor only about
    // once in 128 runs (with one executor, the old crash took every session with it).
    for round in 0..8u64 {
        let mut garbage = vec![0x16, 0x03, 0x01, 0x02, 0x00];
        garbage.extend(noise(round + 1, 512));
        raw_tls_attempt(&w.edge, &garbage, false).await;
        all_answered(&mut healthy).await;
    }
    let cases: [(&str, &[u8], bool, bool); 4] = [
        ("truncated record", &hello[..hello.len() - 10], true, false),
        ("bad record length", &bad_length, false, true),
        (
            "unexpected alert",
            &[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28],
            false,
            false,
        ),
        ("plaintext YKC frame", &plaintext_login, false, true),
    ];
    for (what, bytes, half_close, alert_back) in cases {
        let seen = raw_tls_attempt(&w.edge, bytes, half_close).await;
        if alert_back {
            assert_eq!(seen.first(), Some(&0x15), "{what}: a TLS alert comes back");
        }
        all_answered(&mut healthy).await;
        eprintln!("{what}: closed; the others are answered");
    }

    for (i, versions) in [TlsVersions::Only12, TlsVersions::Only13]
        .into_iter()
        .enumerate()
    {
        let config = client_config(&w.certs.ca, None, versions).expect("config");
        let addr = w.edge.tls;
        let p = pile(3100 + i as u64);
        tokio::task::spawn_blocking(move || {
            // One byte per write: the hello arrives in many reads, and still works.
            let mut slow = HandTls::connect(addr, config.clone(), true);
            slow.login_and_heartbeat(p);
            // A record that does not authenticate, after the handshake: closed.
            let mut forged = vec![0x17, 0x03, 0x03, 0x00, 0x20];
            forged.extend(noise(99, 32));
            slow.forge_and_expect_close(&forged);
        })
        .await
        .expect("hand-driven TLS charger");
        all_answered(&mut healthy).await;
        eprintln!("{versions:?}: one-byte hello served, forged record closed");
    }

    for (kind, at_least) in [
        ("invalid_message", 1.0),
        ("alert_handshake_failure", 1.0),
        ("decrypt_error", 2.0),
    ] {
        w.edge.wait_metric(
            "pylon_edge_tls_errors_total",
            &[&format!("kind=\"{kind}\"")],
            at_least,
        );
    }
    // The truncated record's sender hung up: seen at once, not at a deadline.
    w.edge
        .wait_metric("pylon_edge_closes_total", &["reason=\"peer_closed\""], 1.0);
    // 13 hostile connections: the TLS errors, and a garbage hello whose random length
    // (under 64 KiB) left it waiting for more until the handshake deadline.
    wait_for(
        "every hostile connection closed and counted",
        Duration::from_secs(10),
        || {
            let closed = w
                .edge
                .metric("pylon_edge_closes_total", &["reason=\"tls_error\""])
                + w.edge.metric(
                    "pylon_edge_closes_total",
                    &["reason=\"tls_handshake_timeout\""],
                );
            (closed >= 13.0).then_some(())
        },
    );
    assert_eq!(
        w.edge
            .metric("pylon_edge_closes_total", &["reason=\"panic\""]),
        0.0
    );
    // Exactly the healthy sessions are counted: nothing dead, nothing lost.
    wait_for(
        "the session count to settle",
        Duration::from_secs(10),
        || (w.edge.sessions() == healthy.len() as i64).then_some(()),
    );
    all_answered(&mut healthy).await;
    assert!(w.edge.log_text().lines().all(|l| !l.contains("panicked")));
}

/// A charger that sends its last frame and hangs up in the same breath (data and FIN in
/// one readiness event) is seen gone at once, not at its heartbeat deadline 30 s later.
#[tokio::test]
async fn a_hang_up_right_after_data_closes_the_session_at_once() {
    use tokio::io::AsyncWriteExt;
    let w = world(&[]);
    let p = pile(4000);
    let c = logged_in(&w.tcp(), p).await;
    assert_eq!(w.edge.sessions(), 1);
    let charger::Stream::Tcp(mut tcp) = c.stream else {
        panic!("a TCP charger");
    };
    let hb = ykc::encode(5, &charger::heartbeat_frame(p)).expect("encode");
    tcp.write_all(&hb).await.expect("heartbeat");
    tcp.shutdown().await.expect("hang up");
    wait_for("the session to close", Duration::from_secs(5), || {
        (w.edge.sessions() == 0).then_some(())
    });
    w.edge
        .wait_metric("pylon_edge_closes_total", &["reason=\"peer_closed\""], 1.0);
}

/// The certificate the edge showed on `c` (DER), and whether the session was resumed.
fn served(c: &ChargerConn) -> (Vec<u8>, Option<rustls::HandshakeKind>) {
    let charger::Stream::Tls(tls) = &c.stream else {
        panic!("expected TLS")
    };
    let conn = tls.get_ref().1;
    let cert = conn
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|c| c.as_ref().to_vec())
        .unwrap_or_default();
    (cert, conn.handshake_kind())
}

#[tokio::test]
async fn sighup_reloads_limits_allowlist_certificates_and_log_level_without_dropping_sessions() {
    let dir = tempfile::tempdir().expect("temp dir");
    let certs = TestCerts::generate(dir.path()).expect("test certificates");
    let allowlist = dir.path().join("piles.txt");
    std::fs::write(&allowlist, format!("{}\n", pile(1))).expect("allowlist");
    let settings = dir.path().join("edge.toml");
    let write_settings = |extra: &str| {
        std::fs::write(
            &settings,
            format!(
                "log = \"warn\"\n{extra}\n[auth]\nallowlist = \"{}\"\n",
                allowlist.display()
            ),
        )
        .expect("settings")
    };
    write_settings("");
    let edge = EdgeProcess::start(EdgeOptions {
        certs: &certs,
        dir: dir.path(),
        executors: 2,
        extra: vec!["--config".into(), settings.display().to_string()],
        with_rsa: false,
        tls_only: false,
        log_filter_from_file: true,
    });
    let tcp = Target {
        addr: edge.tcp,
        tls: None,
    };
    let tls_target = || Target {
        addr: edge.tls,
        tls: Some((
            client_config(&certs.ca, None, TlsVersions::Only13).expect("client config"),
            name(),
        )),
    };
    let resuming = tls_target();
    let mut first = ChargerConn::connect(&resuming, None)
        .await
        .expect("connect");
    if let Err(e) = first.login(pile(1)).await {
        panic!("pile 1 refused ({e}); edge log:\n{}", edge.log_text());
    }
    let (old_cert, _) = served(&first);
    let mut refused = ChargerConn::connect(&tcp, None).await.expect("connect");
    assert!(
        refused.login(pile(2)).await.is_err(),
        "pile 2 is not allowed yet"
    );
    assert!(
        !edge.log_text().contains("pylon-edge started"),
        "the file's log level (warn) hides info lines"
    );

    // The operator allows piles 2 and 3, shortens the login timeout, turns logging up, renames
    // the edge (needs a restart) and rotates the certificate files in place.
    let allowed: String = [1, 2, 3].map(|n| format!("{}\n", pile(n))).concat();
    std::fs::write(&allowlist, allowed).expect("allowlist");
    write_settings("edge_id = \"renamed\"\n[limits]\nlogin_timeout_secs = 1");
    std::fs::write(
        &settings,
        std::fs::read_to_string(&settings)
            .expect("settings")
            .replacen("log = \"warn\"", "log = \"info\"", 1),
    )
    .expect("settings");
    let rotated = certs
        .issue("rotated", &[SERVER_NAME])
        .expect("new certificate");
    std::fs::copy(&rotated.key, &certs.ecdsa.key).expect("new key");
    std::fs::copy(&rotated.cert, &certs.ecdsa.cert).expect("new certificate");
    edge.signal(libc::SIGHUP);
    edge.wait_metric("pylon_config_reloads_total", &["result=\"ok\""], 1.0);

    heartbeat_ok(&mut first, pile(1)).await;
    let mut second = logged_in(&tcp, pile(2)).await;
    heartbeat_ok(&mut second, pile(2)).await;
    let fresh = logged_in(&tls_target(), pile(3)).await;
    let (new_cert, _) = served(&fresh);
    assert_ne!(
        new_cert, old_cert,
        "new handshakes show the rotated certificate"
    );
    drop(fresh);
    let again = ChargerConn::connect(&resuming, None)
        .await
        .expect("connect");
    assert_eq!(
        served(&again).1,
        Some(rustls::HandshakeKind::Resumed),
        "a session made before the reload still resumes"
    );
    let mut silent = ChargerConn::connect(&tcp, None).await.expect("connect");
    closed_by_edge(&mut silent).await;
    edge.wait_metric(
        "pylon_edge_closes_total",
        &["reason=\"login_timeout\""],
        1.0,
    );
    let log = edge.log_text();
    assert!(log.contains("configuration reloaded"), "{log}");
    assert!(
        log.contains("take effect only after a restart") && log.contains("edge_id"),
        "{log}"
    );

    // A broken file changes nothing and says where it is broken.
    std::fs::write(
        &settings,
        "log = \"info\"\n[limits]\nlogin_timeout_secs = \"soon\"\n",
    )
    .expect("settings");
    edge.signal(libc::SIGHUP);
    edge.wait_metric("pylon_config_reloads_total", &["result=\"error\""], 1.0);
    let log = edge.log_text();
    assert!(log.contains("configuration not reloaded"), "{log}");
    assert!(
        log.contains("login_timeout_secs") && log.contains("line 3"),
        "{log}"
    );
    heartbeat_ok(&mut first, pile(1)).await;
    heartbeat_ok(&mut second, pile(2)).await;
    let mut stranger = ChargerConn::connect(&tcp, None).await.expect("connect");
    assert!(
        stranger.login(pile(4)).await.is_err(),
        "the allowlist stands"
    );
}

#[tokio::test]
async fn json_logs_name_the_pile_on_every_line_about_one() {
    let w = world(&["--log-format", "json"]);
    let p = pile(8);
    let mut c = logged_in(&w.tcp(), p).await;
    heartbeat_ok(&mut c, p).await;
    drop(c);
    w.edge
        .wait_metric("pylon_edge_closes_total", &["reason=\"peer_closed\""], 1.0);
    let log = w.edge.log_text();
    let mut about_the_pile = 0;
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let event: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        assert!(
            event["timestamp"].is_string() && event["level"].is_string(),
            "{line}"
        );
        assert!(event["message"].is_string(), "{line}");
        if line.contains(&p.to_string()) {
            about_the_pile += 1;
            assert_eq!(event["pile"], p.to_string(), "no pile field: {line}");
        }
    }
    assert!(
        about_the_pile >= 2,
        "login and close lines expected:\n{log}"
    );
}
