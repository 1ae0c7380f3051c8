//! Money in the charging flows: a driver's start at the pile (0x31, 0xA1) authorised
//! against their account with a hold, a remote start for an account, and the settlement
//! of each transaction record (0x3B). The rules are `crate::revenue`; the transactions
//! are the store's.

use std::sync::Arc;

use std::time::Duration;

use pylon_proto::ykc::frames::{BalanceUpdate, RemoteStart, TransactionRecord as RecordFrame};
use pylon_proto::ykc::{Ascii, Bcd, Bytes, Frame, PileNo, Scaled};
use serde_json::Value;

use super::{digits, gun_text, Business, BusinessError, CommandError};
use crate::directory::SendError;
use crate::revenue::authorize::Refusal;
use crate::revenue::tariff::MeteredEnergy;
use crate::revenue::vault::{mask, Vault};
use crate::store::revenue::{Credential, StartOutcome, StartRequest};
use crate::store::{Order, OrderOrigin, OrderState};

/// A card number as piles send it (8 bytes) in the form operators type: upper-case hex
/// without the zero padding (`D14B0A54`).
pub fn card_number(bytes: &[u8]) -> String {
    normalise_card(&hex::encode_upper(bytes)).unwrap_or_else(|| "0".into())
}

/// The 8 bytes piles use for a card number in operator form (`D14B0A54`).
pub fn card_bytes(text: &str) -> Option<[u8; 8]> {
    let padded = format!("{:0>16}", normalise_card(text)?);
    hex::decode(padded).ok()?.try_into().ok()
}

/// An operator's card number (up to 16 hex digits) in the same form; `None` if it is not one.
pub fn normalise_card(text: &str) -> Option<String> {
    let t = text.trim();
    if t.is_empty() || t.len() > 16 || !t.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let upper = t.to_ascii_uppercase();
    let trimmed = upper.trim_start_matches('0');
    Some(if trimmed.is_empty() {
        "0".into()
    } else {
        trimmed.to_owned()
    })
}

/// A VIN from 0x31 (sent in reverse order, zero-padded).
pub fn vin_from_pile(vin: &Ascii<17>) -> String {
    vin.0
        .iter()
        .rev()
        .filter(|b| **b != 0)
        .map(|b| char::from(*b))
        .collect::<String>()
        .trim()
        .to_owned()
}

/// The keyed index of a card's password, from the MD5 digest the pile sends.
pub fn password_index(vault: &Vault, md5: &[u8]) -> String {
    vault.index("password", &hex::encode(md5))
}

/// The MD5 digest (lower-case hex) of a password, as a pile would send it.
pub fn password_md5(password: &str) -> Vec<u8> {
    use md5::Digest;
    md5::Md5::digest(password.as_bytes()).to_vec()
}

/// A frame's fields with card numbers, passwords and VINs masked, for whatever is stored
/// or logged.
pub fn redacted(mut fields: Value) -> Value {
    let Value::Object(map) = &mut fields else {
        return fields;
    };
    for key in [
        "physical_card_no",
        "account_or_card_no",
        "logical_card_no",
        "vin",
    ] {
        if let Some(Value::String(s)) = map.get_mut(key) {
            let shown = if key == "physical_card_no" || key == "account_or_card_no" {
                hex::decode(s.as_str())
                    .map(|b| card_number(&b))
                    .unwrap_or_default()
            } else {
                s.trim_start_matches('0').to_owned()
            };
            if !shown.is_empty() && shown != "0" {
                *s = mask(&shown);
            }
        }
    }
    if let Some(v) = map.get_mut("password_md5") {
        *v = Value::String("****".into());
    }
    fields
}

/// What a start at the pile came to: the values of the 0x32 / 0xA2 reply.
pub(super) struct PileStartReply {
    /// The order's trade number when the request repeats one already answered.
    pub again: Option<String>,
    pub logical_card_no: Bcd<8>,
    /// Fen: what the pile may spend.
    pub balance: u32,
    pub auth_result: u8,
    pub failure_reason: u8,
}

/// What a 0x31 / 0xA1 asks.
pub(super) struct PileStartAsk<'a> {
    pub pile: &'a str,
    pub gun_no: Bcd<1>,
    pub trade_no: String,
    pub start_mode: u8,
    pub password_required: u8,
    pub card: &'a Bytes<8>,
    pub password: &'a Bytes<16>,
    pub vin: &'a Ascii<17>,
    pub origin: OrderOrigin,
}

impl Business {
    fn credential(&self, ask: &PileStartAsk<'_>) -> Option<Credential> {
        let vault = self.vault.as_ref()?;
        match ask.start_mode {
            1 => Some(Credential::Card {
                index: vault.index("card", &card_number(&ask.card.0)),
                password_index: (ask.password_required == 1)
                    .then(|| password_index(vault, &ask.password.0)),
            }),
            3 => Some(Credential::Vin {
                index: vault.index("vin", &vin_from_pile(ask.vin)),
            }),
            // 2 (account and password at the pile) is "not supported yet" in the spec.
            _ => None,
        }
    }

    /// Authorises a driver's start at the pile and opens its order with a hold.
    pub(super) async fn pile_start(
        &self,
        ask: PileStartAsk<'_>,
    ) -> Result<PileStartReply, BusinessError> {
        let refuse = |reason: Refusal| PileStartReply {
            again: None,
            logical_card_no: Bcd::default(),
            balance: 0,
            auth_result: 0,
            failure_reason: reason.code(),
        };
        let Some(credential) = self.credential(&ask) else {
            if self.vault.is_none() {
                tracing::warn!(
                    pile = ask.pile,
                    "a card or VIN start, but no card keys are configured (--card-keys): refused"
                );
            }
            self.metrics.start_refused(Refusal::NoAccount.as_str());
            let reason = if ask.start_mode == 3 {
                Refusal::VinUnknown
            } else {
                Refusal::NoAccount
            };
            return Ok(refuse(reason));
        };
        let outcome = self
            .store
            .start_charge(&StartRequest {
                pile_no: ask.pile.to_owned(),
                gun_no: gun_text(&ask.gun_no),
                trade_no: ask.trade_no,
                credential,
                origin: ask.origin,
                state: OrderState::Charging,
                policy: self.policy,
                at: self.now_ms(),
            })
            .await?;
        Ok(match outcome {
            StartOutcome::Started {
                hold,
                logical_sealed,
                ..
            } => {
                self.metrics.order(ask.origin.as_str());
                PileStartReply {
                    again: None,
                    logical_card_no: self.logical_number(logical_sealed),
                    balance: u32::try_from(hold).unwrap_or(u32::MAX),
                    auth_result: 1,
                    failure_reason: 0,
                }
            }
            StartOutcome::Again {
                trade_no,
                hold,
                logical_sealed,
            } => {
                tracing::info!(pile = ask.pile, %trade_no, "a repeated start request: the same order");
                PileStartReply {
                    again: Some(trade_no),
                    logical_card_no: self.logical_number(logical_sealed),
                    balance: u32::try_from(hold).unwrap_or(u32::MAX),
                    auth_result: 1,
                    failure_reason: 0,
                }
            }
            StartOutcome::Refused(reason) => {
                self.metrics.start_refused(reason.as_str());
                tracing::info!(pile = ask.pile, reason = %reason, "start refused");
                refuse(reason)
            }
        })
    }

    /// The logical card number to show on the pile, from its sealed value.
    fn logical_number(&self, sealed: Option<String>) -> Bcd<8> {
        sealed
            .and_then(|s| self.vault.as_ref().and_then(|v| v.open(&s).ok()))
            .and_then(|digits| digits.parse::<u64>().ok())
            .map(Bcd::<8>::from_u64)
            .unwrap_or_default()
    }

    /// A remote start (0x34) for an account: authorised and held like a start at the
    /// pile; the pile gets the held amount as the balance it may spend.
    pub async fn start_for_account(
        self: &Arc<Self>,
        account: i64,
        pile: &str,
        gun: u8,
    ) -> Result<Order, CommandError> {
        let pile_no = PileNo::parse(pile).map_err(CommandError::Invalid)?;
        if self.store.pile(pile).await?.is_none() {
            return Err(CommandError::UnknownPile(pile.to_owned()));
        }
        if self.store.account(account).await?.is_none() {
            return Err(CommandError::UnknownAccount(account));
        }
        if self.directory.location(pile).is_none() {
            return Err(SendError::NotConnected(pile.to_owned()).into());
        }
        let gun_no = Bcd::<1>::from_u64(u64::from(gun));
        let trade_no = self.next_trade_no(&pile_no, gun);
        let outcome = self
            .store
            .start_charge(&StartRequest {
                pile_no: pile.to_owned(),
                gun_no: gun_text(&gun_no),
                trade_no: digits(&trade_no),
                credential: Credential::Account(account),
                origin: OrderOrigin::Operator,
                state: OrderState::Starting,
                policy: self.policy,
                at: self.now_ms(),
            })
            .await?;
        let hold = match outcome {
            StartOutcome::Started { hold, .. } => hold,
            // Every remote start has a new trade number: it cannot repeat one.
            StartOutcome::Again { trade_no, .. } => {
                return Err(CommandError::Conflict(format!(
                    "order {trade_no} is being started"
                )))
            }
            StartOutcome::Refused(reason) => {
                self.metrics.start_refused(reason.as_str());
                return Err(CommandError::Refused(reason));
            }
        };
        self.metrics.order("operator");
        let command = RemoteStart {
            trade_no,
            pile_no,
            gun_no,
            logical_card_no: Bcd::default(),
            physical_card_no: Default::default(),
            balance: Scaled(u32::try_from(hold).unwrap_or(u32::MAX)),
        };
        let trade = digits(&trade_no);
        let id = self.next_command_id();
        if let Err(e) = self.directory.send(pile, &command.into(), None, id).await {
            self.metrics.command("RemoteStart", "not_connected");
            self.fail_order(&trade, &e.to_string()).await?;
            return Err(e.into());
        }
        self.metrics.command("RemoteStart", "sent");
        self.store
            .order(&trade)
            .await?
            .ok_or(CommandError::UnknownOrder(trade))
    }

    /// After money came into an account: its charges under way may spend more. Raises
    /// their holds (up to the cap) and tells each pile its new balance (0x42), answered
    /// with 0x41 in the background. Returns the trade numbers raised.
    pub async fn push_balances(
        self: &Arc<Self>,
        account: i64,
    ) -> Result<Vec<String>, crate::store::StoreError> {
        let raised = self
            .store
            .raise_holds(account, self.policy.max_hold, self.now_ms())
            .await?;
        let mut trades = Vec::with_capacity(raised.len());
        for charge in raised {
            trades.push(charge.trade_no.clone());
            let Ok(pile_no) = PileNo::parse(&charge.pile_no) else {
                continue;
            };
            let card = charge
                .card_sealed
                .as_deref()
                .and_then(|s| self.vault.as_ref()?.open(s).ok())
                .and_then(|text| card_bytes(&text))
                .unwrap_or_default();
            let frame = BalanceUpdate {
                pile_no,
                gun_no: Bcd::<1>::from_u64(charge.gun_no.parse().unwrap_or(1)),
                physical_card_no: Bytes(card),
                balance: Scaled(u32::try_from(charge.hold).unwrap_or(u32::MAX)),
            };
            let business = self.clone();
            tokio::spawn(async move {
                let answer = business
                    .command(&charge.pile_no, frame.into(), 0x41, Duration::from_secs(10))
                    .await;
                match answer {
                    Ok(Frame::BalanceUpdateReply(r)) if r.result == 0 => {}
                    other => {
                        tracing::warn!(pile = %charge.pile_no, trade_no = %charge.trade_no, ?other, "the pile did not take its new balance (0x42)")
                    }
                }
            });
        }
        Ok(trades)
    }

    /// Closes an order that did not start and gives its hold back.
    pub(super) async fn fail_order(
        &self,
        trade_no: &str,
        why: &str,
    ) -> Result<(), crate::store::StoreError> {
        let now = self.now_ms();
        self.store
            .update_order(trade_no, OrderState::Failed, Some(why), now)
            .await?;
        self.store.release_hold(trade_no, why, now).await
    }

    /// What a record says was consumed, per period, and what the pile charged.
    pub(super) fn metered(t: &RecordFrame) -> MeteredEnergy {
        let billed = |energy: u32, loss: u32| u64::from(if loss > 0 { loss } else { energy });
        MeteredEnergy {
            billed: [
                billed(t.sharp_energy.0, t.sharp_loss_energy.0),
                billed(t.peak_energy.0, t.peak_loss_energy.0),
                billed(t.flat_energy.0, t.flat_loss_energy.0),
                billed(t.valley_energy.0, t.valley_loss_energy.0),
            ],
            pile_amount: u64::from(t.total_amount.0),
        }
    }

    /// The index of the card a record names (for offline-card charges).
    pub(super) fn record_card_index(&self, t: &RecordFrame) -> Option<String> {
        let vault = self.vault.as_ref()?;
        t.physical_card_no
            .0
            .iter()
            .any(|b| *b != 0)
            .then(|| vault.index("card", &card_number(&t.physical_card_no.0)))
    }
}

#[cfg(test)]
mod tests;
