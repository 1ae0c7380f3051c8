//! Vectors made with OpenSSL 3.0's command line, an implementation independent of ours:
//!
//! ```sh
//! K=0123456789abcdeffedcba987654321089abcdef01234567 IV=1122334455667788
//! printf '\x32\x01\x02\x00\x00\x00\x01\x01\x00' > hb.bin      # a heartbeat's body
//! openssl enc -des-ede3     -K $K         -nosalt -in hb.bin | xxd -p   # ECB, PKCS#7
//! openssl enc -des-ede3-cbc -K $K -iv $IV -nosalt -in hb.bin | xxd -p   # CBC, PKCS#7
//! # zero padding: the body padded with zeros to 16 bytes, then -nopad
//! ```

use super::*;

const KEY: &str = "0123456789abcdeffedcba987654321089abcdef01234567";
const IV: &str = "1122334455667788";
const HEARTBEAT: &str = "320102000000010100";

fn cipher(mode: Mode, padding: Padding) -> PileCipher {
    PileCipher {
        key: hex::decode(KEY).expect("hex").try_into().expect("24 bytes"),
        mode,
        iv: hex::decode(IV).expect("hex").try_into().expect("8 bytes"),
        padding,
    }
}

#[test]
fn matches_openssl_in_every_mode_and_padding() {
    let body = hex::decode(HEARTBEAT).expect("hex");
    for (mode, padding, openssl) in [
        (
            Mode::Ecb,
            Padding::Pkcs7,
            "0db47225d370c94a6332868907bffa78",
        ),
        (
            Mode::Cbc,
            Padding::Pkcs7,
            "f047ac796418d229684e78ef06d54e7b",
        ),
        (Mode::Ecb, Padding::Zero, "0db47225d370c94a3fd539e3abeb8b5b"),
        (Mode::Cbc, Padding::Zero, "f047ac796418d229007f1dd59a488272"),
    ] {
        let c = cipher(mode, padding);
        assert_eq!(
            hex::encode(c.encrypt(&body)),
            openssl,
            "{mode:?} {padding:?}"
        );
        let plain = c
            .decrypt(&hex::decode(openssl).expect("hex"))
            .expect("decrypts");
        assert_eq!(&plain[..body.len()], &body[..], "{mode:?} {padding:?}");
        match padding {
            Padding::Pkcs7 => assert_eq!(plain.len(), body.len()),
            Padding::Zero => assert!(plain[body.len()..].iter().all(|&b| b == 0)),
        }
    }
}

#[test]
fn a_whole_block_gets_a_whole_block_of_pkcs7_padding() {
    let c = cipher(Mode::Ecb, Padding::Pkcs7);
    let body = hex::decode("3201020000000101").expect("hex");
    assert_eq!(
        hex::encode(c.encrypt(&body)),
        "0db47225d370c94a455cf52f367d3b35"
    );
    assert_eq!(cipher(Mode::Ecb, Padding::Zero).encrypt(&body).len(), 8);
}

#[test]
fn wrong_keys_and_torn_bodies_are_errors_not_panics() {
    let c = cipher(Mode::Ecb, Padding::Pkcs7);
    assert_eq!(c.decrypt(&[1, 2, 3]), Err(CipherError::NotBlocks(3)));
    assert_eq!(c.decrypt(&[]), Err(CipherError::NotBlocks(0)));
    let sealed = c.encrypt(b"hello");
    let mut other = c.clone();
    other.key[0] ^= 0xff;
    // A wrong key gives garbage whose padding almost never checks out.
    assert!(other
        .decrypt(&sealed)
        .map(|p| p != b"hello")
        .unwrap_or(true));
    assert!(
        !format!("{c:?}").contains("0123"),
        "the key is never printed"
    );
}

#[test]
fn whole_frames_round_trip_encrypted_and_plain_ones_are_refused() {
    use crate::ykc::{self, frame, Frame};
    let pile = crate::ykc::PileNo::from_u64(32_010_200_000_001);
    // A heartbeat's body ends in a zero byte: zero padding must not eat it.
    let frames = [
        crate::ykc::frames::Heartbeat {
            pile_no: pile,
            gun_no: crate::ykc::Bcd([1]),
            gun_status: 0,
        }
        .into(),
        Frame::from(crate::ykc::frames::HeartbeatReply {
            pile_no: pile,
            gun_no: crate::ykc::Bcd([1]),
            reply: 0,
        }),
    ];
    for mode in [Mode::Ecb, Mode::Cbc] {
        for padding in [Padding::Pkcs7, Padding::Zero] {
            let c = cipher(mode, padding);
            for f in &frames {
                let mut wire = Vec::new();
                ykc::encode_into_with(&mut wire, 7, f, Some(&c)).expect("encode");
                let raw = frame::parse_exact(&wire).expect("parse");
                assert_eq!(raw.encryption, frame::TRIPLE_DES);
                assert!(raw.body.len().is_multiple_of(BLOCK));
                assert_eq!(&ykc::decode_with(&raw, Some(&c)).expect("decode"), f);
                assert!(matches!(
                    ykc::decode(&raw),
                    Err(crate::ykc::DecodeError::Encrypted { .. })
                ));
            }
        }
    }
    let plain = ykc::encode(1, &frames[0]).expect("encode");
    let raw = frame::parse_exact(&plain).expect("parse");
    let refused = ykc::decode_with(&raw, Some(&cipher(Mode::Ecb, Padding::Pkcs7)));
    assert_eq!(refused.map_err(|e| e.kind()), Err("unencrypted"));
}
