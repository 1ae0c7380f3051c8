//! How `pylonctl piles keys` prints the app service's replies for people: a pile's body
//! encryption (YKC flag 0x01, 3DES) and the confirmations of its changes. Only `rotate`
//! ever prints a key: the new one, once.

use pylon_proto::api::app::PileCipherState;
use pylon_proto::ykc::cipher::{Mode, Padding};
use pylon_proto::ykc::PileCipher;

use super::control::fields;
use crate::units::format_time_or;

/// A block mode as the help and the vendors' manuals write it.
pub fn mode(mode: Mode) -> &'static str {
    match mode {
        Mode::Ecb => "ECB",
        Mode::Cbc => "CBC",
    }
}

/// A padding as the help and the vendors' manuals write it.
pub fn padding(padding: Padding) -> &'static str {
    match padding {
        Padding::Pkcs7 => "PKCS#7",
        Padding::Zero => "zero",
    }
}

/// `3DES, CBC, PKCS#7 padding, IV 0001020304050607` (no IV for ECB).
fn settings(c: &PileCipher) -> String {
    let mut text = format!("3DES, {}, {} padding", mode(c.mode), padding(c.padding));
    if c.mode == Mode::Cbc {
        text.push_str(&format!(", IV {}", hex::encode(c.iv)));
    }
    text
}

/// `piles keys show`.
pub fn state(s: &PileCipherState) -> String {
    let pile = &s.pile_no;
    if !s.configured {
        let mut pairs = vec![("pile", pile.clone()), ("key configured", "no".into())];
        if s.updated_at.is_some() {
            pairs.push(("updated", format_time_or(s.updated_at, "-")));
        }
        let mut out = fields(&pairs);
        out.push_str(&format!(
            "\nPile {pile} sends its frames in plain (encryption flag 0x00). `pylonctl piles \
             keys set {pile}` gives it the 3DES key its charger uses; `pylonctl piles keys \
             rotate {pile}` makes a new one.\n"
        ));
        return out;
    }
    let mut pairs = vec![("pile", pile.clone()), ("key configured", "yes".into())];
    pairs.push(("mode", s.mode.map_or("-", mode).to_owned()));
    pairs.push(("padding", s.padding.map_or("-", padding).to_owned()));
    if s.mode == Some(Mode::Cbc) || s.iv.is_some() {
        pairs.push(("IV", s.iv.clone().unwrap_or_else(|| "-".into())));
    }
    pairs.push(("updated", format_time_or(s.updated_at, "-")));
    let mut out = fields(&pairs);
    out.push_str(&format!(
        "\nThe pile encrypts its frames with 3DES (encryption flag 0x01) from its login on. \
         The key itself is never shown; `pylonctl piles keys rotate {pile}` makes a new \
         one, shown once.\n"
    ));
    out
}

/// The confirmation of `piles keys set`.
pub fn set(pile: &str, c: &PileCipher) -> String {
    format!(
        "Pile {pile} has its key: {}.\n\
         It applies from the pile's next login: from then on the pile must encrypt its \
         frames with this key (encryption flag 0x01). A connection open now keeps its old \
         setting until the pile reconnects. The app service keeps the key sealed and never \
         shows it.\n",
        settings(c)
    )
}

/// `piles keys rotate`: the new key, shown this once, and what to do with it.
pub fn rotated(pile: &str, c: &PileCipher) -> String {
    let key = hex::encode(c.key);
    let thirds = [&key[..16], &key[16..32], &key[32..]].join(" ");
    let mut pairs = vec![
        ("key", key.clone()),
        ("as K1 K2 K3", thirds),
        ("mode", mode(c.mode).to_owned()),
        ("padding", padding(c.padding).to_owned()),
    ];
    if c.mode == Mode::Cbc {
        pairs.push(("IV", hex::encode(c.iv)));
    }
    let block: String = fields(&pairs)
        .lines()
        .map(|line| format!("  {line}\n"))
        .collect();
    format!(
        "New 3DES key for pile {pile}, shown this once:\n\n{block}\n\
         It will not be shown again: neither pylonctl nor the app service can show it \
         later. Copy it now, and load it into the charger, with this mode, padding and IV, \
         before the pile's next login: the new key applies from that login on, and a \
         charger still on the old key cannot talk to the platform after it. A connection \
         open now keeps the old key until the pile reconnects.\n"
    )
}

/// The confirmation of `piles keys remove`.
pub fn removed(pile: &str) -> String {
    format!(
        "Pile {pile} has no key now: from its next login it must send its frames in plain \
         (encryption flag 0x00), and encrypted frames from it are refused. Turn encryption \
         off in the charger as well. A connection open now keeps its key until the pile \
         reconnects.\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const PILE: &str = "32010200000001";

    fn state_of(mode: Option<Mode>, iv: Option<&str>) -> PileCipherState {
        PileCipherState {
            pile_no: PILE.into(),
            configured: mode.is_some(),
            mode,
            padding: mode.map(|_| Padding::Pkcs7),
            iv: iv.map(str::to_owned),
            updated_at: mode.map(|_| 1_714_550_400_000),
        }
    }

    #[test]
    fn show_says_whether_and_how_a_pile_encrypts() {
        assert_eq!(
            state(&state_of(Some(Mode::Cbc), Some("0001020304050607"))),
            "pile:            32010200000001\n\
             key configured:  yes\n\
             mode:            CBC\n\
             padding:         PKCS#7\n\
             IV:              0001020304050607\n\
             updated:         2024-05-01T08:00:00Z\n\
             \nThe pile encrypts its frames with 3DES (encryption flag 0x01) from its login \
             on. The key itself is never shown; `pylonctl piles keys rotate 32010200000001` \
             makes a new one, shown once.\n"
        );
        let ecb = state(&state_of(Some(Mode::Ecb), None));
        assert!(ecb.contains("mode:            ECB\n"), "{ecb}");
        assert!(!ecb.contains("IV"), "{ecb}");
        let none = state(&state_of(None, None));
        assert!(
            none.starts_with("pile:            32010200000001\nkey configured:  no\n\n"),
            "{none}"
        );
        assert!(none.contains("sends its frames in plain"), "{none}");
        assert!(!none.contains("mode"), "{none}");
    }

    #[test]
    fn rotate_shows_the_key_once_with_its_settings() {
        let mut c = PileCipher::ecb(std::array::from_fn(|i| i as u8));
        let text = rotated(PILE, &c);
        let key = "000102030405060708090a0b0c0d0e0f1011121314151617";
        assert!(text.starts_with("New 3DES key for pile 32010200000001, shown this once:\n\n"));
        assert!(text.contains(&format!("  key:          {key}\n")), "{text}");
        assert!(
            text.contains("  as K1 K2 K3:  0001020304050607 08090a0b0c0d0e0f 1011121314151617\n"),
            "{text}"
        );
        assert!(
            text.contains("  mode:         ECB\n  padding:      PKCS#7\n\n"),
            "{text}"
        );
        assert!(text.contains("It will not be shown again"), "{text}");
        assert!(text.contains("before the pile's next login"), "{text}");
        c.mode = Mode::Cbc;
        c.padding = Padding::Zero;
        c.iv = [0xA0, 1, 2, 3, 4, 5, 6, 7];
        let text = rotated(PILE, &c);
        assert!(
            text.contains(
                "  mode:         CBC\n  padding:      zero\n  IV:           a001020304050607\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn set_and_remove_say_when_they_apply() {
        let mut c = PileCipher::ecb([7; 24]);
        let text = set(PILE, &c);
        assert!(
            text.starts_with("Pile 32010200000001 has its key: 3DES, ECB, PKCS#7 padding.\n"),
            "{text}"
        );
        assert!(!text.contains("0707"), "the key is never printed: {text}");
        c.mode = Mode::Cbc;
        c.iv = [1; 8];
        assert!(set(PILE, &c).contains("3DES, CBC, PKCS#7 padding, IV 0101010101010101.\n"));
        let text = removed(PILE);
        assert!(text.contains("must send its frames in plain"), "{text}");
    }
}
