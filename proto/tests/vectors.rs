//! Test vectors for login (0x01) and heartbeat (0x03), built from the field layouts of the
//! spec's sample frames. The samples' own checksums are wrong (see the errata), so the CRC
//! is checked against an implementation written here, independently of the codec's.

use pylon_proto::ykc::frames::{Heartbeat, Login};
use pylon_proto::ykc::{self, Ascii, Bcd, Frame, PileNo, Scaled};

/// CRC-16/MODBUS, bit by bit: the reflected polynomial 0x8005 (0xA001), init 0xFFFF,
/// processing each byte's bits least significant first.
fn crc16_modbus_bitwise(data: &[u8]) -> u16 {
    let mut crc: u16 = 0xFFFF;
    for &byte in data {
        for bit in 0..8 {
            let feedback = (crc ^ u16::from(byte >> bit)) & 1;
            crc >>= 1;
            if feedback == 1 {
                crc ^= 0xA001;
            }
        }
    }
    crc
}

fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s.replace(' ', "")).expect("hex")
}

/// Checks a whole frame's checksum (low byte first) with the CRC above.
fn assert_crc(wire: &[u8]) {
    let n = wire.len();
    let crc = crc16_modbus_bitwise(&wire[2..n - 2]);
    assert_eq!(
        [wire[n - 2], wire[n - 1]],
        crc.to_le_bytes(),
        "checksum of {}",
        hex::encode(wire)
    );
}

#[test]
fn the_test_crc_matches_the_catalogue() {
    assert_eq!(crc16_modbus_bitwise(b"123456789"), 0x4B37);
}

#[test]
fn login_vector() {
    // 6.1's sample: 68 22 0000 00 01 | 55031412782305 00 02 0F 56342E312E353000 01
    // 01010101010101010101 04 | 675A (that checksum is wrong; ours is 0F32).
    let login = Login {
        pile_no: PileNo::parse("55031412782305").unwrap(),
        pile_type: 0,
        gun_count: 2,
        protocol_version: Scaled(0x0F),
        program_version: Ascii::parse("V4.1.50").unwrap(),
        network_type: 1,
        sim: Bcd::parse("01010101010101010101").unwrap(),
        carrier: 4,
    };
    let frame = Frame::from(login);
    let wire = ykc::encode(0, &frame).unwrap();
    let expected = unhex(
        "68 22 0000 00 01 55031412782305 00 02 0F 56342E312E353000 01 01010101010101010101 04 0F32",
    );
    assert_eq!(hex::encode(&wire), hex::encode(&expected));
    assert_crc(&wire);

    let raw = ykc::frame::parse_exact(&expected).unwrap();
    assert_eq!(ykc::decode(&raw).unwrap(), frame);
    assert_eq!(frame.fields_json()["protocol_version"], 1.5);
    assert_eq!(frame.fields_json()["program_version"], "V4.1.50");
}

#[test]
fn heartbeat_vector() {
    // 6.3's sample: 68 0D 0001 00 03 | 32010200000001 01 00 | 6890 (wrong; ours is F11A).
    // The sequence bytes 00 01 are little-endian 0x0100.
    let hb = Heartbeat {
        pile_no: PileNo::parse("32010200000001").unwrap(),
        gun_no: Bcd([0x01]),
        gun_status: 0,
    };
    let frame = Frame::from(hb);
    let wire = ykc::encode(0x0100, &frame).unwrap();
    let expected = unhex("68 0D 0001 00 03 32010200000001 01 00 F11A");
    assert_eq!(hex::encode(&wire), hex::encode(&expected));
    assert_crc(&wire);

    let raw = ykc::frame::parse_exact(&expected).unwrap();
    assert_eq!(raw.seq, 0x0100);
    assert_eq!(ykc::decode(&raw).unwrap(), frame);
}

#[test]
fn the_spec_sample_checksums_are_rejected() {
    for sample in [
        "68 22 0000 00 01 55031412782305 00 02 0F 56342E312E353000 01 01010101010101010101 04 675A",
        "68 0D 0001 00 03 32010200000001 01 00 6890",
    ] {
        let err = ykc::frame::parse(&unhex(sample)).unwrap_err();
        assert_eq!(err.kind(), "bad_crc");
    }
}
