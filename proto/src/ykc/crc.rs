//! CRC-16/MODBUS as the YKC errata prescribe (the table in the spec is garbled).

/// CRC-16/MODBUS: init 0xFFFF, reflected polynomial 0xA001, no final xor.
pub fn crc16_modbus(data: &[u8]) -> u16 {
    let mut crc: u16 = 0xFFFF;
    for &byte in data {
        crc ^= u16::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xA001
            } else {
                crc >> 1
            };
        }
    }
    crc
}

/// Which byte order a received checksum arrived in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrcOrder {
    /// Low byte first (Modbus RTU order): what the errata define and what we send.
    Standard,
    /// High byte first: some deployed chargers send this; accepted and counted.
    Swapped,
}

/// Checks a received checksum (the two bytes as they stood on the wire) against `data`.
pub fn check(data: &[u8], wire: [u8; 2]) -> Option<CrcOrder> {
    let crc = crc16_modbus(data);
    if wire == crc.to_le_bytes() {
        Some(CrcOrder::Standard)
    } else if wire == crc.to_be_bytes() {
        Some(CrcOrder::Swapped)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_catalogue_check_value() {
        // The CRC catalogue's check value for CRC-16/MODBUS over "123456789".
        assert_eq!(crc16_modbus(b"123456789"), 0x4B37);
    }

    #[test]
    fn accepts_both_orders() {
        let data = [0x00, 0x01, 0x00, 0x03];
        let crc = crc16_modbus(&data);
        assert_eq!(check(&data, crc.to_le_bytes()), Some(CrcOrder::Standard));
        assert_eq!(check(&data, crc.to_be_bytes()), Some(CrcOrder::Swapped));
        assert_eq!(check(&data, [crc.to_le_bytes()[0] ^ 1, 0]), None);
    }
}
