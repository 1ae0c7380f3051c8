//! How `pylonctl ykc` prints for people: frame type codes, a frame's bytes as hex, and
//! the table of frame types (`ykc decode` prints JSON, built in
//! [`crate::commands::ykc`]).

use pylon_proto::ykc::{Direction, FRAME_TYPES};

/// A frame type's code as `0x03`.
pub(crate) fn code_text(code: u8) -> String {
    format!("0x{code:02X}")
}

/// Bytes as upper-case hex pairs separated by spaces: `68 0D 00`.
pub(crate) fn spaced_hex(bytes: &[u8]) -> String {
    let parts: Vec<String> = bytes.iter().map(|b| format!("{b:02X}")).collect();
    parts.join(" ")
}

/// Every frame type as an aligned table (the Chinese name last, as its width varies).
pub(crate) fn types_table() -> String {
    let width = FRAME_TYPES.iter().map(|t| t.name.len()).max().unwrap_or(0);
    let mut lines = vec![format!("CODE  DIR   {:width$}  SPEC NAME", "NAME")];
    for t in FRAME_TYPES {
        let dir = match t.direction {
            Direction::Up => "up",
            Direction::Down => "down",
        };
        lines.push(format!(
            "{}  {dir:<4}  {:width$}  {}",
            code_text(t.code),
            t.name,
            t.spec_name
        ));
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_every_type() {
        let table = types_table();
        assert_eq!(table.lines().count(), FRAME_TYPES.len() + 1);
        assert!(table
            .lines()
            .any(|l| l.starts_with("0xA3  up    ParallelRemoteStartReply")));
        assert!(table.contains("充电桩登录认证"));
    }
}
