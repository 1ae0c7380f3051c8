//! The TLS session against a real rustls client, and against whatever the network may
//! send: garbage, truncation, bad lengths, alerts, plaintext, bytes cut anywhere.

use std::sync::{Arc, OnceLock};

use proptest::prelude::*;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig};

use super::*;
use crate::config::TlsConfig;

const NAME: &str = pylon_bench::certs::SERVER_NAME;

/// A server configuration (ECDSA certificate from a throwaway CA, TLS 1.2 and 1.3) and
/// the CA clients trust; made once per test binary.
fn fixture() -> &'static (Arc<ServerConfig>, RootCertStore) {
    static FIXTURE: OnceLock<(Arc<ServerConfig>, RootCertStore)> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let ca = pylon_bench::certs::TestCa::new(dir.path(), "TLS test CA").expect("CA");
        let pair = ca.issue("edge", &[NAME], None).expect("certificate");
        let server = server_config(
            &TlsConfig {
                certs: vec![pair.cert],
                keys: vec![pair.key],
                client_ca: None,
                enable_tls12: true,
                session_cache: 16,
                ticket_key: None,
            },
            None,
        )
        .expect("server config");
        let mut roots = RootCertStore::empty();
        for cert in pylon_service::tls::read_pem_certs(&ca.ca_pem).expect("CA certificate") {
            roots.add(cert).expect("CA into the root store");
        }
        (server, roots)
    })
}

#[derive(Debug, Clone, Copy)]
enum Version {
    Tls12,
    Tls13,
}

fn client(version: Version) -> ClientConnection {
    let (_, roots) = fixture();
    let versions: &[&rustls::SupportedProtocolVersion] = match version {
        Version::Tls12 => &[&rustls::version::TLS12],
        Version::Tls13 => &[&rustls::version::TLS13],
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .expect("versions")
        .with_root_certificates(roots.clone())
        .with_no_client_auth();
    ClientConnection::new(Arc::new(config), ServerName::try_from(NAME).expect("name"))
        .expect("client")
}

fn server() -> TlsSession {
    TlsSession::new(fixture().0.clone()).expect("server session")
}

/// Everything the client wants to send now.
fn client_output(c: &mut ClientConnection) -> Vec<u8> {
    let mut wire = Vec::new();
    while c.wants_write() {
        c.write_tls(&mut wire).expect("client write_tls");
    }
    wire
}

/// What the server made of one batch of bytes.
#[derive(Debug, Default)]
struct Fed {
    out: Vec<u8>,
    plain: Vec<u8>,
    result: Option<Result<Received, String>>,
}

fn feed(server: &mut TlsSession, bytes: &[u8]) -> Fed {
    let mut fed = Fed::default();
    let mut data = bytes.to_vec();
    let plain = &mut fed.plain;
    let result = server.receive(&mut data, &mut fed.out, &mut |p| plain.extend_from_slice(p));
    fed.result = Some(result.map_err(|e| e.detail().to_owned()));
    fed
}

fn error_of(fed: &Fed) -> Option<&str> {
    match &fed.result {
        Some(Err(detail)) => Some(detail),
        _ => None,
    }
}

/// Runs a whole handshake, the client's bytes cut into `chunk`-byte writes.
fn handshake(version: Version, chunk: usize) -> (ClientConnection, TlsSession) {
    let mut c = client(version);
    let mut s = server();
    handshake_between(&mut c, &mut s, chunk);
    (c, s)
}

/// Runs a whole handshake between `c` and `s` (TLS 1.3 tickets delivered too).
fn handshake_between(c: &mut ClientConnection, s: &mut TlsSession, chunk: usize) {
    for _ in 0..20 {
        let wire = client_output(c);
        for piece in wire.chunks(chunk.max(1)) {
            let fed = feed(s, piece);
            assert_eq!(error_of(&fed), None, "handshake error");
            if !fed.out.is_empty() {
                c.read_tls(&mut &fed.out[..]).expect("client read_tls");
                c.process_new_packets()
                    .expect("client accepts the server's flight");
            }
        }
        if !c.is_handshaking() && !s.is_handshaking() {
            // TLS 1.3 tickets and the like still in flight are drained above.
            return;
        }
    }
    panic!("handshake did not finish");
}

#[test]
fn edges_sharing_ticket_keys_resume_each_others_sessions() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = pylon_bench::certs::TestCa::new(dir.path(), "ticket test CA").expect("CA");
    let pair = ca.issue("edge", &[NAME], None).expect("certificate");
    let key = dir.path().join("ticket.key");
    std::fs::write(&key, format!("{}\n", "5a".repeat(32))).expect("key file");
    let settings = |ticket_key: Option<std::path::PathBuf>| TlsConfig {
        certs: vec![pair.cert.clone()],
        keys: vec![pair.key.clone()],
        client_ca: None,
        enable_tls12: true,
        session_cache: 16,
        ticket_key,
    };
    let mut roots = RootCertStore::empty();
    for cert in pylon_service::tls::read_pem_certs(&ca.ca_pem).expect("CA certificate") {
        roots.add(cert).expect("CA into the root store");
    }
    for version in [Version::Tls12, Version::Tls13] {
        for shared in [true, false] {
            let cfg = settings(shared.then(|| key.clone()));
            // Two edge processes: each builds its own configuration.
            let edges = [
                server_config(&cfg, None).expect("edge one"),
                server_config(&cfg, None).expect("edge two"),
            ];
            let versions: &[&rustls::SupportedProtocolVersion] = match version {
                Version::Tls12 => &[&rustls::version::TLS12],
                Version::Tls13 => &[&rustls::version::TLS13],
            };
            // One charger: one client configuration, holding its session.
            let charger = Arc::new(
                ClientConfig::builder_with_provider(Arc::new(
                    rustls::crypto::ring::default_provider(),
                ))
                .with_protocol_versions(versions)
                .expect("versions")
                .with_root_certificates(roots.clone())
                .with_no_client_auth(),
            );
            let mut kinds = Vec::new();
            for edge in &edges {
                let mut c = ClientConnection::new(
                    charger.clone(),
                    ServerName::try_from(NAME).expect("name"),
                )
                .expect("client");
                let mut s = TlsSession::new(edge.clone()).expect("server session");
                handshake_between(&mut c, &mut s, 4096);
                kinds.push(c.handshake_kind());
            }
            let expected = if shared {
                rustls::HandshakeKind::Resumed
            } else {
                rustls::HandshakeKind::Full
            };
            assert_eq!(
                kinds,
                vec![Some(rustls::HandshakeKind::Full), Some(expected)],
                "{version:?}, shared keys: {shared}"
            );
        }
    }
}

/// Sends `text` from the client and returns what the server decrypted.
fn client_says(c: &mut ClientConnection, s: &mut TlsSession, text: &[u8], chunk: usize) -> Vec<u8> {
    std::io::Write::write_all(&mut c.writer(), text).expect("client write");
    let mut plain = Vec::new();
    for piece in client_output(c).chunks(chunk.max(1)) {
        let fed = feed(s, piece);
        assert_eq!(error_of(&fed), None);
        plain.extend_from_slice(&fed.plain);
    }
    plain
}

/// Sends `text` from the server and returns what the client decrypted.
fn server_says(c: &mut ClientConnection, s: &mut TlsSession, text: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    s.send(text, &mut out).expect("server send");
    c.read_tls(&mut &out[..]).expect("client read_tls");
    c.process_new_packets().expect("client decrypts");
    let mut plain = vec![0u8; text.len()];
    std::io::Read::read_exact(&mut c.reader(), &mut plain).expect("client read");
    plain
}

/// A failed session refuses every further call without touching rustls.
fn assert_failed_for_good(s: &mut TlsSession) {
    assert!(matches!(
        s.receive(&mut [0x17, 3, 3, 0, 1, 0], &mut Vec::new(), &mut |_| {}),
        Err(TlsError::Failed)
    ));
    assert!(matches!(
        s.send(b"x", &mut Vec::new()),
        Err(TlsError::Failed)
    ));
    assert_eq!(s.buffered(), 0);
}

#[test]
fn handshake_and_data_both_ways_on_tls12_and_tls13() {
    for version in [Version::Tls12, Version::Tls13] {
        let (mut c, mut s) = handshake(version, 4096);
        assert_eq!(
            client_says(&mut c, &mut s, b"heartbeat", 4096),
            b"heartbeat"
        );
        assert_eq!(server_says(&mut c, &mut s, b"reply"), b"reply");
    }
}

#[test]
fn a_client_hello_in_one_byte_writes_completes() {
    for version in [Version::Tls12, Version::Tls13] {
        let (mut c, mut s) = handshake(version, 1);
        assert_eq!(client_says(&mut c, &mut s, b"frame", 1), b"frame");
    }
}

/// The reported crash: a handshake record header, then garbage. rustls keeps offsets into
/// the undiscarded bytes; taking the alert out over an empty buffer panicked.
#[test]
fn a_record_header_then_garbage_fails_cleanly() {
    let mut rng_state = 0x2545_f491_4f6c_dd1d_u64;
    for round in 0..200 {
        let mut bytes = vec![0x16, 0x03, 0x01, 0x02, 0x00];
        bytes.extend((0..512).map(|_| {
            rng_state ^= rng_state << 13;
            rng_state ^= rng_state >> 7;
            rng_state ^= rng_state << 17;
            rng_state as u8
        }));
        // Half the rounds claim a ClientHello, half a random handshake type.
        if round % 2 == 0 {
            bytes[5] = 0x01;
        }
        let mut s = server();
        let fed = feed(&mut s, &bytes);
        if error_of(&fed).is_none() {
            // A message longer than the record: the session waits for more.
            let fed = feed(&mut s, &[0x17, 0x03, 0x03, 0x00, 0x01, 0x00]);
            assert!(
                error_of(&fed).is_some(),
                "round {round}: interleaved record accepted"
            );
        }
        assert_failed_for_good(&mut s);
    }
}

#[test]
fn a_truncated_record_waits_for_the_rest() {
    let mut c = client(Version::Tls13);
    let hello = client_output(&mut c);
    let mut s = server();
    let fed = feed(&mut s, &hello[..hello.len() - 10]);
    assert_eq!(error_of(&fed), None);
    assert!(fed.out.is_empty());
    assert_eq!(s.buffered(), hello.len() - 10);
    // The rest of the record arrives: the hello completes.
    let fed = feed(&mut s, &hello[hello.len() - 10..]);
    assert_eq!(error_of(&fed), None);
    assert!(!fed.out.is_empty(), "the server's first flight");
    assert_eq!(s.buffered(), 0);
}

#[test]
fn a_truncated_record_with_a_bad_continuation_fails() {
    let mut c = client(Version::Tls13);
    let hello = client_output(&mut c);
    let mut s = server();
    assert_eq!(error_of(&feed(&mut s, &hello[..hello.len() - 10])), None);
    // The record's last ten bytes, then a record of another type: the hello's extensions
    // are cut short, or the record interleaves the handshake message. Either way: fatal.
    let mut rest = vec![0u8; 10];
    rest.extend([0x17, 0x03, 0x03, 0x00, 0x01, 0x00]);
    let fed = feed(&mut s, &rest);
    assert!(error_of(&fed).is_some(), "{:?}", fed.result);
    assert_failed_for_good(&mut s);
}

#[test]
fn a_record_with_a_bad_length_fails() {
    for header in [
        [0x16, 0x03, 0x01, 0xff, 0xff],
        [0x16, 0x03, 0x03, 0x48, 0x01],
    ] {
        let mut s = server();
        let mut bytes = header.to_vec();
        bytes.extend([0u8; 64]);
        let fed = feed(&mut s, &bytes);
        // rustls calls a length over the limit a malformed message.
        assert!(
            matches!(error_of(&fed), Some("invalid_message" | "oversized_record")),
            "{:?}",
            fed.result
        );
        assert_eq!(fed.out.first(), Some(&0x15), "an alert goes back");
        assert_failed_for_good(&mut s);
    }
}

#[test]
fn an_alert_instead_of_a_hello_fails_and_is_named() {
    let mut s = server();
    let fed = feed(&mut s, &[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28]);
    assert_eq!(error_of(&fed), Some("alert_handshake_failure"));
    assert_failed_for_good(&mut s);
}

#[test]
fn an_alert_after_the_handshake_ends_the_session() {
    for version in [Version::Tls12, Version::Tls13] {
        let (mut c, mut s) = handshake(version, 4096);
        c.send_close_notify();
        let fed = feed(&mut s, &client_output(&mut c));
        assert_eq!(error_of(&fed), None);
        assert!(matches!(
            fed.result,
            Some(Ok(Received { peer_closed: true }))
        ));
    }
}

#[test]
fn a_plaintext_ykc_frame_gets_an_alert() {
    let frame = [
        0x68, 0x22, 0x00, 0x00, 0x00, 0x01, 0x32, 0x01, 0x06, 0x00, 0x01, 0x92, 0x36, 0x00,
    ];
    let mut s = server();
    let fed = feed(&mut s, &frame);
    assert_eq!(error_of(&fed), Some("invalid_message"));
    assert_eq!(fed.out.first(), Some(&0x15));
    assert_failed_for_good(&mut s);
}

/// Sending while part of a record is held: rustls gets the held bytes, not an empty buffer.
#[test]
fn sending_while_a_record_is_half_received() {
    for version in [Version::Tls12, Version::Tls13] {
        let (mut c, mut s) = handshake(version, 4096);
        std::io::Write::write_all(&mut c.writer(), b"half and half").expect("write");
        let wire = client_output(&mut c);
        let (first, rest) = wire.split_at(wire.len() / 2);
        assert_eq!(error_of(&feed(&mut s, first)), None);
        assert!(s.buffered() > 0);
        assert_eq!(server_says(&mut c, &mut s, b"downlink"), b"downlink");
        let fed = feed(&mut s, rest);
        assert_eq!(error_of(&fed), None);
        assert_eq!(fed.plain, b"half and half");
    }
}

/// Tampered application data fails the record's authentication, and only that session.
#[test]
fn a_tampered_record_fails() {
    let (mut c, mut s) = handshake(Version::Tls13, 4096);
    std::io::Write::write_all(&mut c.writer(), b"tamper with me").expect("write");
    let mut wire = client_output(&mut c);
    let last = wire.len() - 1;
    wire[last] ^= 0x01;
    let fed = feed(&mut s, &wire);
    assert_eq!(error_of(&fed), Some("decrypt_error"));
    assert_failed_for_good(&mut s);
}

/// A cut anywhere, in any number of pieces, changes nothing.
fn pieces(bytes: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    points.push(0);
    points.push(bytes.len());
    points.sort_unstable();
    points.dedup();
    points
        .windows(2)
        .map(|w| bytes[w[0]..w[1]].to_vec())
        .collect()
}

/// Feeds pieces, sending something after each one as a downlink would, and checks the
/// session's promises: no panic, a failure is final, held bytes never exceed what came in.
fn feed_hostile(s: &mut TlsSession, pieces: &[Vec<u8>]) {
    let mut total = 0;
    let mut failed = false;
    for piece in pieces {
        total += piece.len();
        let fed = feed(s, piece);
        match fed.result {
            Some(Err(_)) => failed = true,
            _ => assert!(!failed, "a failed session accepted bytes again"),
        }
        assert!(s.buffered() <= total);
        if !s.is_handshaking() {
            let _ = s.send(b"downlink", &mut Vec::new());
        }
    }
    if failed {
        assert_failed_for_good(s);
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip { at: usize, mask: u8 },
    Insert { at: usize, byte: u8 },
    Remove { at: usize },
    Truncate { at: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1..=255u8).prop_map(|(at, mask)| Mutation::Flip { at, mask }),
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Insert { at, byte }),
        any::<usize>().prop_map(|at| Mutation::Remove { at }),
        any::<usize>().prop_map(|at| Mutation::Truncate { at }),
    ]
}

fn mutate(bytes: &mut Vec<u8>, mutations: &[Mutation]) {
    for m in mutations {
        let len = bytes.len().max(1);
        match *m {
            Mutation::Flip { at, mask } => {
                if let Some(b) = bytes.get_mut(at % len) {
                    *b ^= mask;
                }
            }
            Mutation::Insert { at, byte } => bytes.insert(at % (bytes.len() + 1), byte),
            Mutation::Remove { at } => {
                if !bytes.is_empty() {
                    bytes.remove(at % len);
                }
            }
            Mutation::Truncate { at } => bytes.truncate(at % (bytes.len() + 1)),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Arbitrary bytes, cut anywhere.
    #[test]
    fn arbitrary_bytes_never_panic(
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..600), 1..8),
        tls_header in any::<bool>(),
    ) {
        let mut s = server();
        let mut chunks = chunks;
        if tls_header {
            // Mostly garbage behind a plausible record header, as the attack sends it.
            let mut first = vec![0x16, 0x03, 0x01, 0x02, 0x00];
            first.append(&mut chunks[0]);
            chunks[0] = first;
        }
        feed_hostile(&mut s, &chunks);
    }

    /// A real client's first flight, mutated, cut anywhere.
    #[test]
    fn mutated_client_hellos_never_panic(
        tls13 in any::<bool>(),
        mutations in proptest::collection::vec(mutation(), 0..6),
        cuts in proptest::collection::vec(any::<usize>(), 0..6),
    ) {
        let mut c = client(if tls13 { Version::Tls13 } else { Version::Tls12 });
        let mut hello = client_output(&mut c);
        mutate(&mut hello, &mutations);
        let mut s = server();
        feed_hostile(&mut s, &pieces(&hello, &cuts));
    }

    /// Unmutated, any cutting of the client's bytes gives the same conversation, with
    /// downlinks sent between the pieces (while part of a record is held).
    #[test]
    fn any_cutting_of_a_real_conversation_works(
        tls13 in any::<bool>(),
        chunk in 1..200usize,
        text in proptest::collection::vec(any::<u8>(), 1..300),
    ) {
        let (mut c, mut s) = handshake(if tls13 { Version::Tls13 } else { Version::Tls12 }, chunk);
        std::io::Write::write_all(&mut c.writer(), &text).expect("client write");
        let mut up = Vec::new();
        let mut down = Vec::new();
        for (i, piece) in client_output(&mut c).chunks(chunk).enumerate() {
            let fed = feed(&mut s, piece);
            prop_assert_eq!(error_of(&fed), None);
            up.extend_from_slice(&fed.plain);
            let downlink = format!("downlink {i}");
            prop_assert_eq!(server_says(&mut c, &mut s, downlink.as_bytes()), downlink.into_bytes());
            down.push(i);
        }
        prop_assert_eq!(up, text.clone());
        prop_assert!(!down.is_empty());
        prop_assert_eq!(server_says(&mut c, &mut s, &text), text);
    }

    /// A whole conversation whose client side is mutated after the handshake.
    #[test]
    fn mutated_records_after_the_handshake_never_panic(
        tls13 in any::<bool>(),
        text in proptest::collection::vec(any::<u8>(), 1..200),
        mutations in proptest::collection::vec(mutation(), 1..4),
        cuts in proptest::collection::vec(any::<usize>(), 0..6),
    ) {
        let (mut c, mut s) = handshake(if tls13 { Version::Tls13 } else { Version::Tls12 }, 4096);
        std::io::Write::write_all(&mut c.writer(), &text).expect("write");
        let mut wire = client_output(&mut c);
        mutate(&mut wire, &mutations);
        feed_hostile(&mut s, &pieces(&wire, &cuts));
    }
}
