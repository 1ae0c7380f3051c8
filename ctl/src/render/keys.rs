//! How `pylonctl keys` prints the app service's replies for people.

use pylon_proto::api::revenue::KeyRotation;

/// The confirmation of `keys rotate`.
pub fn rotated(r: &KeyRotation) -> String {
    let resealed = match r.resealed {
        0 => "there were no stored cards or VINs to seal again".to_owned(),
        1 => "1 stored card/VIN was sealed again".to_owned(),
        n => format!("{n} stored cards/VINs were sealed again"),
    };
    format!(
        "Card keys rotated: new values are sealed with key {}; {resealed}.\n\
         Back up the card key file (pylon-app's --card-keys) now, apart from the database's \
         backups: without key {}, the stored card numbers and VINs cannot be opened. Keep \
         the older keys in it, for the backups taken before.\n",
        r.key, r.key
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rotation_says_what_was_sealed_and_to_back_up() {
        let mut r = KeyRotation {
            key: "k2".into(),
            resealed: 2,
        };
        assert_eq!(
            rotated(&r),
            "Card keys rotated: new values are sealed with key k2; 2 stored cards/VINs were \
             sealed again.\nBack up the card key file (pylon-app's --card-keys) now, apart \
             from the database's backups: without key k2, the stored card numbers and VINs \
             cannot be opened. Keep the older keys in it, for the backups taken before.\n"
        );
        r.resealed = 1;
        assert!(rotated(&r).contains("; 1 stored card/VIN was sealed again.\n"));
        r.resealed = 0;
        assert!(rotated(&r).contains("; there were no stored cards or VINs to seal again.\n"));
    }
}
