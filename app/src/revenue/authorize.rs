//! Whether a driver may start a charge, with the spec's failure reasons (0x32 失败原因),
//! and how much is set aside for it.

use serde::{Deserialize, Serialize};

/// Why a start is refused: the codes of 0x32's failure reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    #[error("no such account")]
    NoAccount = 0x01,
    #[error("the account is frozen")]
    Frozen = 0x02,
    #[error("the balance is too low")]
    InsufficientBalance = 0x03,
    #[error("the card has an unsettled charge")]
    CardUnsettled = 0x04,
    #[error("the pile is disabled")]
    PileDisabled = 0x05,
    #[error("the account may not charge at this pile")]
    NotAllowedHere = 0x06,
    #[error("wrong password")]
    WrongPassword = 0x07,
    #[error("the VIN is not known")]
    VinUnknown = 0x09,
    #[error("the gun has an unsettled charge")]
    PileUnsettled = 0x0A,
}

impl Refusal {
    /// The code sent in 0x32.
    pub fn code(self) -> u8 {
        self as u8
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::NoAccount => "no_account",
            Refusal::Frozen => "frozen",
            Refusal::InsufficientBalance => "insufficient_balance",
            Refusal::CardUnsettled => "card_unsettled",
            Refusal::PileDisabled => "pile_disabled",
            Refusal::NotAllowedHere => "not_allowed_here",
            Refusal::WrongPassword => "wrong_password",
            Refusal::VinUnknown => "vin_unknown",
            Refusal::PileUnsettled => "pile_unsettled",
        }
    }
}

/// How a driver identified themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identified {
    /// By card (at the pile) or by account (the operator API).
    Card,
    Vin,
    Account,
}

/// What the store knows when a start is asked for, read in the same transaction that
/// places the hold.
#[derive(Debug, Clone, Default)]
pub struct StartFacts {
    pub pile_enabled: bool,
    /// The gun has an order that is not settled yet.
    pub gun_busy: bool,
    /// The account found for the card, VIN or id; `None`: none is.
    pub account: Option<AccountFacts>,
}

#[derive(Debug, Clone, Default)]
pub struct AccountFacts {
    pub id: i64,
    pub frozen: bool,
    /// Spendable fen (not on hold).
    pub balance: i64,
    /// The card (or account) has an order that is not settled yet.
    pub unsettled: bool,
    /// The account may charge at the pile's station.
    pub allowed_here: bool,
    /// The card has a password and the pile sent a different one (or none).
    pub wrong_password: bool,
}

/// The operator's rules for starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StartPolicy {
    /// Below this spendable balance (fen) no charge starts.
    pub min_balance: i64,
    /// At most this much (fen) is held for one charge; the pile stops there.
    pub max_hold: i64,
}

impl Default for StartPolicy {
    fn default() -> Self {
        StartPolicy {
            min_balance: 100,
            max_hold: 50_000,
        }
    }
}

/// The account and the fen to hold, or why not.
pub fn authorize(
    how: Identified,
    facts: &StartFacts,
    policy: &StartPolicy,
) -> Result<(i64, i64), Refusal> {
    if !facts.pile_enabled {
        return Err(Refusal::PileDisabled);
    }
    if facts.gun_busy {
        return Err(Refusal::PileUnsettled);
    }
    let Some(account) = &facts.account else {
        return Err(match how {
            Identified::Vin => Refusal::VinUnknown,
            Identified::Card | Identified::Account => Refusal::NoAccount,
        });
    };
    if account.frozen {
        return Err(Refusal::Frozen);
    }
    if account.wrong_password {
        return Err(Refusal::WrongPassword);
    }
    if !account.allowed_here {
        return Err(Refusal::NotAllowedHere);
    }
    if account.unsettled {
        return Err(Refusal::CardUnsettled);
    }
    if account.balance < policy.min_balance.max(1) {
        return Err(Refusal::InsufficientBalance);
    }
    Ok((account.id, account.balance.min(policy.max_hold)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> StartFacts {
        StartFacts {
            pile_enabled: true,
            gun_busy: false,
            account: Some(AccountFacts {
                id: 9,
                frozen: false,
                balance: 80_000,
                unsettled: false,
                allowed_here: true,
                wrong_password: false,
            }),
        }
    }

    fn refused(change: impl FnOnce(&mut StartFacts), how: Identified) -> Refusal {
        let mut facts = good();
        change(&mut facts);
        authorize(how, &facts, &StartPolicy::default()).expect_err("refused")
    }

    fn account(facts: &mut StartFacts) -> &mut AccountFacts {
        facts.account.as_mut().expect("account")
    }

    #[test]
    fn a_good_start_holds_up_to_the_cap() {
        let policy = StartPolicy::default();
        assert_eq!(
            authorize(Identified::Card, &good(), &policy),
            Ok((9, 50_000))
        );
        let mut poor = good();
        account(&mut poor).balance = 1_234;
        assert_eq!(authorize(Identified::Vin, &poor, &policy), Ok((9, 1_234)));
    }

    #[test]
    fn each_refusal_has_its_code() {
        assert_eq!(
            refused(|f| f.pile_enabled = false, Identified::Card).code(),
            0x05
        );
        assert_eq!(
            refused(|f| f.gun_busy = true, Identified::Card).code(),
            0x0A
        );
        assert_eq!(refused(|f| f.account = None, Identified::Card).code(), 0x01);
        assert_eq!(refused(|f| f.account = None, Identified::Vin).code(), 0x09);
        assert_eq!(
            refused(|f| account(f).frozen = true, Identified::Card).code(),
            0x02
        );
        assert_eq!(
            refused(|f| account(f).wrong_password = true, Identified::Card).code(),
            0x07
        );
        assert_eq!(
            refused(|f| account(f).allowed_here = false, Identified::Card).code(),
            0x06
        );
        assert_eq!(
            refused(|f| account(f).unsettled = true, Identified::Card).code(),
            0x04
        );
        assert_eq!(
            refused(|f| account(f).balance = 99, Identified::Card).code(),
            0x03
        );
        assert_eq!(
            refused(|f| account(f).balance = -5, Identified::Account).code(),
            0x03
        );
    }

    #[test]
    fn the_pile_is_checked_before_the_driver() {
        let r = refused(
            |f| {
                f.pile_enabled = false;
                f.account = None;
            },
            Identified::Card,
        );
        assert_eq!(r, Refusal::PileDisabled);
    }
}
