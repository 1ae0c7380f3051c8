//! The revenue side of the store, written once over the portable [`Db`] and run by each
//! backend inside one of its transactions: stations and tariffs, accounts with their
//! cards and VINs, the ledger and wallets, starts (authorise and hold in one step) and
//! settlements (price, charge, release, close in the same transaction as the record).

mod accounts;
mod ciphers;
mod privacy;
mod reports;
mod settle;
mod start;
mod stations;
mod tariffs;

pub(crate) use accounts::*;
pub use ciphers::SealedCipher;
pub(crate) use ciphers::{pile_cipher, set_pile_cipher};
pub(crate) use privacy::{dormant_accounts, erase_account, personal_data, purge_history};
pub use privacy::{EraseRefusal, PersonalData};
pub(crate) use reports::*;
pub(crate) use settle::*;
pub(crate) use start::*;
pub(crate) use stations::*;
pub(crate) use tariffs::*;

use async_trait::async_trait;
use pylon_proto::api::revenue::{
    Account, AccountInput, AccountState, Discrepancy, LedgerEntry, QuarantinedRecord,
    Reconciliation, Station, StationDay, StationInput, Tariff as TariffView,
};

use crate::revenue::authorize::{Refusal, StartPolicy};
use crate::revenue::ledger::Posting;
use crate::revenue::tariff::{MeteredEnergy, Tariff};
use crate::store::{OrderOrigin, OrderState, Result, TransactionRecord};

/// The revenue side of a store; each backend runs the shared logic of this module in its
/// own transactions.
#[async_trait]
pub trait RevenueStore: Send + Sync {
    async fn create_station(&self, input: &StationInput, at: i64) -> Result<Station>;
    async fn update_station(
        &self,
        id: i64,
        input: &StationInput,
        at: i64,
    ) -> Result<Option<Station>>;
    /// A station with its piles and the tariff in force at `now`.
    async fn station(&self, id: i64, now: i64) -> Result<Option<Station>>;
    /// Stations with an id above `after`, by id, `limit` at most.
    async fn stations(&self, now: i64, after: i64, limit: u32) -> Result<Vec<Station>>;
    /// False if the pile or the station does not exist.
    async fn set_pile_station(&self, pile_no: &str, station: i64) -> Result<bool>;

    /// [`crate::store::StoreError::Conflict`] if the name is taken.
    async fn create_tariff(&self, name: &str, tariff: &Tariff, at: i64) -> Result<TariffView>;
    async fn revise_tariff(
        &self,
        id: i64,
        name: &str,
        tariff: &Tariff,
        at: i64,
    ) -> Result<Option<TariffView>>;
    async fn tariff(&self, id: i64) -> Result<Option<TariffView>>;
    async fn tariffs(&self) -> Result<Vec<TariffView>>;
    /// Stations whose assigned tariff takes effect in `(after, until]`.
    async fn tariffs_taking_effect(&self, after: i64, until: i64) -> Result<Vec<i64>>;
    /// False if the station or the tariff does not exist.
    async fn assign_tariff(&self, station: i64, tariff: i64, valid_from: i64) -> Result<bool>;
    /// The tariff revision pricing a charge that starts at `at` on the pile.
    async fn priced_by(&self, pile_no: &str, at: i64) -> Result<Option<PricedBy>>;

    async fn create_account(&self, input: &AccountInput, at: i64) -> Result<Account>;
    async fn account(&self, id: i64) -> Result<Option<Account>>;
    async fn accounts(&self, after: i64, limit: u32) -> Result<Vec<Account>>;
    async fn set_account_state(
        &self,
        id: i64,
        state: AccountState,
        at: i64,
    ) -> Result<Option<Account>>;
    /// False if there is no such account; a conflict if the card is taken.
    async fn add_card(&self, id: i64, card: &SealedCard, at: i64) -> Result<bool>;
    async fn remove_card(&self, id: i64, card_index: &str) -> Result<bool>;
    async fn add_vin(&self, id: i64, vin: &SealedVin, at: i64) -> Result<bool>;
    async fn remove_vin(&self, id: i64, vin_index: &str) -> Result<bool>;
    /// Renames and sets the allowed stations; `None` if there is no such account.
    async fn update_account(
        &self,
        id: i64,
        input: &AccountInput,
        at: i64,
    ) -> Result<Option<Account>>;
    /// Moves money; `None` if there is no such account.
    async fn post(
        &self,
        id: i64,
        postings: &[Posting],
        meta: &EntryMeta,
    ) -> Result<Option<Account>>;
    /// Newest first.
    async fn ledger(&self, id: i64, limit: u32) -> Result<Vec<LedgerEntry>>;

    /// Authorises a start and, if allowed, opens its order and hold, all at once.
    async fn start_charge(&self, request: &StartRequest) -> Result<StartOutcome>;
    /// After money came in: raise the holds of the account's charges under way, up to
    /// `max_hold` each; returns those raised.
    async fn raise_holds(&self, account: i64, max_hold: i64, at: i64) -> Result<Vec<RaisedHold>>;
    /// Gives back the open hold of a charge that did not happen.
    async fn release_hold(&self, trade_no: &str, reason: &str, at: i64) -> Result<()>;
    /// Stores a record and settles it, exactly once; `Err(repeat)` for a record the store
    /// had (the same one, or another under its trade number, now in quarantine).
    async fn settle_record(
        &self,
        input: &SettleInput,
    ) -> Result<std::result::Result<Settled, Repeat>>;

    /// The sealed physical numbers of an account's cards.
    async fn account_card_seals(&self, account: i64) -> Result<Vec<String>>;
    /// (logical, physical) sealed numbers of the active cards allowed at a station.
    async fn station_cards(&self, station: i64) -> Result<Vec<(String, String)>>;
    /// Seals every stored card number, VIN and pile cipher again under the vault's
    /// current key.
    async fn reseal_all(&self, vault: std::sync::Arc<crate::revenue::vault::Vault>) -> Result<u64>;

    /// A pile's sealed body-encryption settings.
    async fn pile_cipher(&self, pile_no: &str) -> Result<Option<SealedCipher>>;
    /// Sets (`None`: removes) a pile's sealed cipher; `false` when the pile is unknown.
    async fn set_pile_cipher(&self, pile_no: &str, sealed: Option<&str>, at: i64) -> Result<bool>;

    /// A driver's cards and VINs, sealed (for an export).
    async fn personal_data(&self, account: i64) -> Result<PersonalData>;
    /// Anonymises an account with an empty wallet (PIPL erasure).
    async fn erase_account(
        &self,
        account: i64,
        at: i64,
    ) -> Result<std::result::Result<(), EraseRefusal>>;
    /// Accounts untouched since `before` with an empty wallet, not erased yet.
    async fn dormant_accounts(&self, before: i64) -> Result<Vec<i64>>;
    /// Removes session events and status history older than their cut-offs (0: keep).
    async fn purge_history(&self, events_before: i64, status_before: i64) -> Result<(u64, u64)>;

    async fn daily(&self, from: i64, to: i64) -> Result<Vec<StationDay>>;
    async fn reconciliation(&self) -> Result<Reconciliation>;
    async fn discrepancies(&self, limit: u32) -> Result<Vec<Discrepancy>>;
    async fn quarantined(&self, limit: u32) -> Result<Vec<QuarantinedRecord>>;
}

/// A card as stored: sealed, indexed, masked.
#[derive(Debug, Clone)]
pub struct SealedCard {
    pub index: String,
    pub sealed: String,
    pub masked: String,
    pub logical_sealed: String,
    pub logical_masked: String,
    /// The keyed hash of the password's MD5, when the card has one.
    pub password_index: Option<String>,
}

#[derive(Debug, Clone)]
pub struct SealedVin {
    pub index: String,
    pub sealed: String,
    pub masked: String,
}

/// Who moved money and why, kept with each ledger entry.
#[derive(Debug, Clone)]
pub struct EntryMeta {
    pub actor: String,
    pub reason: String,
    pub trade_no: Option<String>,
    pub at: i64,
}

/// How a driver asks to start.
#[derive(Debug, Clone)]
pub enum Credential {
    /// At the pile with a card: its index, and the index of the password MD5 the pile
    /// sent (when it asked for one).
    Card {
        index: String,
        password_index: Option<String>,
    },
    /// At the pile with the car's VIN.
    Vin { index: String },
    /// Through the operator API, for an account.
    Account(i64),
}

/// A start to authorise and, if allowed, open with a hold.
#[derive(Debug, Clone)]
pub struct StartRequest {
    pub pile_no: String,
    pub gun_no: String,
    pub trade_no: String,
    pub credential: Credential,
    pub origin: OrderOrigin,
    /// The order's first state: charging for a pile's own start (it starts at once when
    /// allowed), starting for a remote start (until the pile confirms).
    pub state: OrderState,
    pub policy: StartPolicy,
    pub at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartOutcome {
    /// The order is open and `hold` fen are held on `account`.
    Started {
        account: i64,
        hold: i64,
        /// The logical card number to show on the pile, sealed.
        logical_sealed: Option<String>,
    },
    /// The same driver asked again for the same gun moments ago (the pile did not hear
    /// our answer): the order already open, unchanged.
    Again {
        trade_no: String,
        hold: i64,
        logical_sealed: Option<String>,
    },
    Refused(Refusal),
}

/// The tariff revision that prices a charge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PricedBy {
    pub station_id: i64,
    pub tariff_id: i64,
    pub revision: u32,
    pub tariff: Tariff,
}

/// What a settlement needs beyond the record itself.
#[derive(Debug, Clone)]
pub struct SettleInput {
    pub record: TransactionRecord,
    pub metered: MeteredEnergy,
    /// The index of the card the record names, for records of charges the platform did
    /// not open (offline cards).
    pub card_index: Option<String>,
    /// Largest difference (0.0001 yuan) between the pile's amount and ours that is not a
    /// discrepancy.
    pub tolerance: i64,
    pub at: i64,
}

/// What a settlement did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    pub account: Option<i64>,
    /// Fen charged.
    pub charged: i64,
    pub discrepancy: bool,
}

/// A charge under way whose hold was raised after its wallet grew.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaisedHold {
    pub trade_no: String,
    pub pile_no: String,
    pub gun_no: String,
    /// What the pile may spend now, fen.
    pub hold: i64,
    /// The card the charge was started with, sealed (none for VIN or account starts).
    pub card_sealed: Option<String>,
}

/// A record the store already had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Repeat {
    /// The same record again (the pile did not hear our 0x40): nothing more to do.
    Same,
    /// Another record under a trade number already used: kept in quarantine.
    Quarantined,
}
