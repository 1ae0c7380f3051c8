//! The revenue side on SQLite: the shared logic of `store::revenue`, writes on the writer
//! thread (one savepoint each), reads on the reader pool.

use async_trait::async_trait;
use pylon_proto::api::revenue::{
    Account, AccountInput, AccountState, Discrepancy, LedgerEntry, QuarantinedRecord,
    Reconciliation, Station, StationDay, StationInput, Tariff as TariffView,
};

use super::db::on;
use super::SqliteStore;
use crate::revenue::ledger::Posting;
use crate::revenue::tariff::Tariff;
use crate::store::revenue::{
    self as logic, EntryMeta, PricedBy, RaisedHold, Repeat, RevenueStore, SealedCard, SealedVin,
    SettleInput, Settled, StartOutcome, StartRequest,
};
use crate::store::Result;

#[async_trait]
impl RevenueStore for SqliteStore {
    async fn create_station(&self, input: &StationInput, at: i64) -> Result<Station> {
        let input = input.clone();
        on!(self, write, |db| logic::create_station(db, &input, at))
    }

    async fn update_station(
        &self,
        id: i64,
        input: &StationInput,
        at: i64,
    ) -> Result<Option<Station>> {
        let input = input.clone();
        on!(self, write, |db| logic::update_station(db, id, &input, at))
    }

    async fn station(&self, id: i64, now: i64) -> Result<Option<Station>> {
        on!(self, read, |db| logic::station_by_id(db, id, now))
    }

    async fn stations(&self, now: i64, after: i64, limit: u32) -> Result<Vec<Station>> {
        on!(self, read, |db| logic::stations(db, now, after, limit))
    }

    async fn set_pile_station(&self, pile_no: &str, station: i64) -> Result<bool> {
        let pile_no = pile_no.to_owned();
        on!(self, write, |db| logic::set_pile_station(
            db, &pile_no, station
        ))
    }

    async fn create_tariff(&self, name: &str, tariff: &Tariff, at: i64) -> Result<TariffView> {
        let (name, tariff) = (name.to_owned(), tariff.clone());
        on!(self, write, |db| logic::create_tariff(
            db, &name, &tariff, at
        ))
    }

    async fn revise_tariff(
        &self,
        id: i64,
        name: &str,
        tariff: &Tariff,
        at: i64,
    ) -> Result<Option<TariffView>> {
        let (name, tariff) = (name.to_owned(), tariff.clone());
        on!(self, write, |db| logic::revise_tariff(
            db, id, &name, &tariff, at
        ))
    }

    async fn tariff(&self, id: i64) -> Result<Option<TariffView>> {
        on!(self, read, |db| logic::tariff_view(db, id))
    }

    async fn tariffs(&self) -> Result<Vec<TariffView>> {
        on!(self, read, |db| logic::tariffs(db))
    }

    async fn tariffs_taking_effect(&self, after: i64, until: i64) -> Result<Vec<i64>> {
        on!(self, read, |db| logic::tariffs_taking_effect(
            db, after, until
        ))
    }

    async fn assign_tariff(&self, station: i64, tariff: i64, valid_from: i64) -> Result<bool> {
        on!(self, write, |db| logic::assign_tariff(
            db, station, tariff, valid_from
        ))
    }

    async fn priced_by(&self, pile_no: &str, at: i64) -> Result<Option<PricedBy>> {
        let pile_no = pile_no.to_owned();
        on!(self, read, |db| logic::priced_by(db, &pile_no, at))
    }

    async fn create_account(&self, input: &AccountInput, at: i64) -> Result<Account> {
        let input = input.clone();
        on!(self, write, |db| logic::create_account(db, &input, at))
    }

    async fn account(&self, id: i64) -> Result<Option<Account>> {
        on!(self, read, |db| logic::account(db, id))
    }

    async fn accounts(&self, after: i64, limit: u32) -> Result<Vec<Account>> {
        on!(self, read, |db| logic::accounts(db, after, limit))
    }

    async fn set_account_state(
        &self,
        id: i64,
        state: AccountState,
        at: i64,
    ) -> Result<Option<Account>> {
        on!(self, write, |db| logic::set_account_state(
            db, id, state, at
        ))
    }

    async fn add_card(&self, id: i64, card: &SealedCard, at: i64) -> Result<bool> {
        let card = card.clone();
        on!(self, write, |db| logic::add_card(db, id, &card, at))
    }

    async fn remove_card(&self, id: i64, card_index: &str) -> Result<bool> {
        let card_index = card_index.to_owned();
        on!(self, write, |db| logic::remove_card(db, id, &card_index))
    }

    async fn add_vin(&self, id: i64, vin: &SealedVin, at: i64) -> Result<bool> {
        let vin = vin.clone();
        on!(self, write, |db| logic::add_vin(db, id, &vin, at))
    }

    async fn remove_vin(&self, id: i64, vin_index: &str) -> Result<bool> {
        let vin_index = vin_index.to_owned();
        on!(self, write, |db| logic::remove_vin(db, id, &vin_index))
    }

    async fn update_account(
        &self,
        id: i64,
        input: &AccountInput,
        at: i64,
    ) -> Result<Option<Account>> {
        let input = input.clone();
        on!(self, write, |db| logic::update_account(db, id, &input, at))
    }

    async fn post(
        &self,
        id: i64,
        postings: &[Posting],
        meta: &EntryMeta,
    ) -> Result<Option<Account>> {
        let (postings, meta) = (postings.to_vec(), meta.clone());
        on!(self, write, |db| logic::post(db, id, &postings, &meta))
    }

    async fn ledger(&self, id: i64, limit: u32) -> Result<Vec<LedgerEntry>> {
        on!(self, read, |db| logic::ledger(db, id, limit))
    }

    async fn start_charge(&self, request: &StartRequest) -> Result<StartOutcome> {
        let request = request.clone();
        on!(self, write, |db| logic::start_charge(db, &request))
    }

    async fn raise_holds(&self, account: i64, max_hold: i64, at: i64) -> Result<Vec<RaisedHold>> {
        on!(self, write, |db| logic::raise_holds(
            db, account, max_hold, at
        ))
    }

    async fn release_hold(&self, trade_no: &str, reason: &str, at: i64) -> Result<()> {
        let (trade_no, reason) = (trade_no.to_owned(), reason.to_owned());
        on!(self, write, |db| logic::release_hold(
            db, &trade_no, &reason, at
        ))
    }

    async fn settle_record(
        &self,
        input: &SettleInput,
    ) -> Result<std::result::Result<Settled, Repeat>> {
        let input = input.clone();
        on!(self, write, |db| logic::settle_record(db, &input))
    }

    async fn account_card_seals(&self, account: i64) -> Result<Vec<String>> {
        on!(self, read, |db| logic::account_card_seals(db, account))
    }

    async fn station_cards(&self, station: i64) -> Result<Vec<(String, String)>> {
        on!(self, read, |db| logic::station_cards(db, station))
    }

    async fn reseal_all(&self, vault: std::sync::Arc<crate::revenue::vault::Vault>) -> Result<u64> {
        on!(self, write, |db| logic::reseal_all(db, &vault))
    }

    async fn personal_data(&self, account: i64) -> Result<logic::PersonalData> {
        on!(self, read, |db| logic::personal_data(db, account))
    }

    async fn erase_account(
        &self,
        account: i64,
        at: i64,
    ) -> Result<std::result::Result<(), logic::EraseRefusal>> {
        on!(self, write, |db| logic::erase_account(db, account, at))
    }

    async fn dormant_accounts(&self, before: i64) -> Result<Vec<i64>> {
        on!(self, read, |db| logic::dormant_accounts(db, before))
    }

    async fn purge_history(&self, events_before: i64, status_before: i64) -> Result<(u64, u64)> {
        on!(self, write, |db| logic::purge_history(
            db,
            events_before,
            status_before
        ))
    }

    async fn pile_cipher(&self, pile_no: &str) -> Result<Option<logic::SealedCipher>> {
        let pile_no = pile_no.to_owned();
        on!(self, read, |db| logic::pile_cipher(db, &pile_no))
    }

    async fn set_pile_cipher(&self, pile_no: &str, sealed: Option<&str>, at: i64) -> Result<bool> {
        let (pile_no, sealed) = (pile_no.to_owned(), sealed.map(str::to_owned));
        on!(self, write, |db| logic::set_pile_cipher(
            db,
            &pile_no,
            sealed.as_deref(),
            at
        ))
    }

    async fn daily(&self, from: i64, to: i64) -> Result<Vec<StationDay>> {
        on!(self, read, |db| logic::daily(db, from, to))
    }

    async fn reconciliation(&self) -> Result<Reconciliation> {
        on!(self, read, |db| logic::reconciliation(db))
    }

    async fn discrepancies(&self, limit: u32) -> Result<Vec<Discrepancy>> {
        on!(self, read, |db| logic::discrepancies(db, limit))
    }

    async fn quarantined(&self, limit: u32) -> Result<Vec<QuarantinedRecord>> {
        on!(self, read, |db| logic::quarantined(db, limit))
    }
}
