//! What both store backends share about the schema: the check of a database's migration
//! history, and the column lists rows are read in (each backend decodes them its way).

use super::{Result, StoreError};

/// (version, name, SQL) of one migration, applied in order. Never edit one that shipped;
/// add a new one.
pub type Migration = (i64, &'static str, &'static str);

/// Refuses a database migrated by a newer build, or one whose history differs from ours.
pub fn check_applied(applied: &[(i64, String)], known: &[Migration]) -> Result<()> {
    for (version, name) in applied {
        match known.iter().find(|(v, _, _)| v == version) {
            Some((_, ours, _)) if ours == name => {}
            Some((_, ours, _)) => {
                return Err(StoreError::Corrupt(format!(
                    "schema migration {version} is recorded as {name:?}, this build calls it {ours:?}"
                )))
            }
            None => {
                return Err(StoreError::Backend(format!(
                    "the store has schema migration {version} ({name}), which this build does not know; \
                     it was written by a newer version"
                )))
            }
        }
    }
    Ok(())
}

pub const PILE_COLUMNS: &str = "pile_no, enabled, billing_model, name, last_login_at";
pub const GUN_COLUMNS: &str = "pile_no, gun_no, status, data, updated_at";
pub const ORDER_COLUMNS: &str =
    "trade_no, pile_no, gun_no, state, origin, balance, created_at, updated_at, failure";
pub const RECORD_COLUMNS: &str = "trade_no, pile_no, gun_no, start_time, end_time, total_energy, \
                                  total_amount, stop_reason, fields, received_at";

#[cfg(test)]
mod tests {
    use super::*;

    const KNOWN: &[Migration] = &[(1, "init", ""), (2, "orders", "")];

    #[test]
    fn a_history_is_checked_against_this_builds_migrations() {
        assert!(check_applied(&[(1, "init".into())], KNOWN).is_ok());
        assert!(matches!(
            check_applied(&[(1, "other".into())], KNOWN),
            Err(StoreError::Corrupt(_))
        ));
        assert!(matches!(
            check_applied(&[(3, "newer".into())], KNOWN),
            Err(StoreError::Backend(_))
        ));
    }
}
