//! Feeds arbitrary bytes, cut at points chosen by the input, to the edge's TLS session (the
//! server side of rustls's unbuffered API, as the edge drives it), sending application data
//! between reads as downlinks do. Checks the session's promises: no panic, a failure is
//! final, and it never holds more bytes than it was given.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use pylon_edge::config::TlsConfig;
use pylon_edge::tls::{server_config, TlsError, TlsSession};

fn config() -> Arc<rustls::ServerConfig> {
    static CONFIG: OnceLock<Arc<rustls::ServerConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let dir = std::env::temp_dir().join(format!("pylon-fuzz-tls-{}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("temp dir");
            let key = rcgen::KeyPair::generate().expect("key");
            let cert = rcgen::CertificateParams::new(vec!["pylon-edge".to_owned()])
                .expect("params")
                .self_signed(&key)
                .expect("certificate");
            let (cert_path, key_path) = (dir.join("edge.pem"), dir.join("edge.key"));
            std::fs::write(&cert_path, cert.pem()).expect("write cert");
            std::fs::write(&key_path, key.serialize_pem()).expect("write key");
            server_config(&TlsConfig {
                certs: vec![cert_path],
                keys: vec![key_path],
                client_ca: None,
                enable_tls12: true,
                session_cache: 16,
            })
            .expect("server config")
        })
        .clone()
}

fuzz_target!(|data: &[u8]| {
    let Some((&cuts, rest)) = data.split_first() else {
        return;
    };
    let mut session = TlsSession::new(config()).expect("session");
    // Up to 8 pieces, sized by the bits of the first byte.
    let piece = (rest.len() / (usize::from(cuts % 8) + 1)).max(1);
    let mut given = 0;
    let mut failed = false;
    for chunk in rest.chunks(piece) {
        given += chunk.len();
        let mut bytes = chunk.to_vec();
        let mut out = Vec::new();
        match session.receive(&mut bytes, &mut out, &mut |_| {}) {
            Ok(_) => assert!(!failed, "a failed session accepted bytes again"),
            Err(_) => failed = true,
        }
        assert!(session.buffered() <= given);
        if cuts & 0x80 != 0 && !session.is_handshaking() {
            let _ = session.send(b"downlink", &mut out);
        }
    }
    if failed {
        let mut more = [0x17, 3, 3, 0, 1, 0];
        assert!(matches!(
            session.receive(&mut more, &mut Vec::new(), &mut |_| {}),
            Err(TlsError::Failed)
        ));
    }
});
