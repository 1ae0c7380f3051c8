//! The revenue side on PostgreSQL: the shared logic of `store::revenue`, each call in its
//! own transaction on a pooled connection.

use async_trait::async_trait;
use pylon_proto::api::revenue::{
    Account, AccountInput, AccountState, Discrepancy, LedgerEntry, QuarantinedRecord,
    Reconciliation, Station, StationDay, StationInput, Tariff as TariffView,
};

use super::db::in_transaction;
use super::PostgresStore;
use crate::revenue::ledger::Posting;
use crate::revenue::tariff::Tariff;
use crate::store::revenue::{
    self as logic, EntryMeta, PricedBy, RaisedHold, Repeat, RevenueStore, SealedCard, SealedVin,
    SettleInput, Settled, StartOutcome, StartRequest,
};
use crate::store::Result;

#[async_trait]
impl RevenueStore for PostgresStore {
    async fn create_station(&self, input: &StationInput, at: i64) -> Result<Station> {
        let input = input.clone();
        in_transaction!(self, |db| logic::create_station(&mut db, &input, at))
    }

    async fn update_station(
        &self,
        id: i64,
        input: &StationInput,
        at: i64,
    ) -> Result<Option<Station>> {
        let input = input.clone();
        in_transaction!(self, |db| logic::update_station(&mut db, id, &input, at))
    }

    async fn station(&self, id: i64, now: i64) -> Result<Option<Station>> {
        in_transaction!(self, |db| logic::station_by_id(&mut db, id, now))
    }

    async fn stations(&self, now: i64, after: i64, limit: u32) -> Result<Vec<Station>> {
        in_transaction!(self, |db| logic::stations(&mut db, now, after, limit))
    }

    async fn set_pile_station(&self, pile_no: &str, station: i64) -> Result<bool> {
        let pile_no = pile_no.to_owned();
        in_transaction!(self, |db| logic::set_pile_station(
            &mut db, &pile_no, station
        ))
    }

    async fn create_tariff(&self, name: &str, tariff: &Tariff, at: i64) -> Result<TariffView> {
        let (name, tariff) = (name.to_owned(), tariff.clone());
        in_transaction!(self, |db| logic::create_tariff(&mut db, &name, &tariff, at))
    }

    async fn revise_tariff(
        &self,
        id: i64,
        name: &str,
        tariff: &Tariff,
        at: i64,
    ) -> Result<Option<TariffView>> {
        let (name, tariff) = (name.to_owned(), tariff.clone());
        in_transaction!(self, |db| logic::revise_tariff(
            &mut db, id, &name, &tariff, at
        ))
    }

    async fn tariff(&self, id: i64) -> Result<Option<TariffView>> {
        in_transaction!(self, |db| logic::tariff_view(&mut db, id))
    }

    async fn tariffs(&self) -> Result<Vec<TariffView>> {
        in_transaction!(self, |db| logic::tariffs(&mut db))
    }

    async fn tariffs_taking_effect(&self, after: i64, until: i64) -> Result<Vec<i64>> {
        in_transaction!(self, |db| logic::tariffs_taking_effect(
            &mut db, after, until
        ))
    }

    async fn assign_tariff(&self, station: i64, tariff: i64, valid_from: i64) -> Result<bool> {
        in_transaction!(self, |db| logic::assign_tariff(
            &mut db, station, tariff, valid_from
        ))
    }

    async fn priced_by(&self, pile_no: &str, at: i64) -> Result<Option<PricedBy>> {
        let pile_no = pile_no.to_owned();
        in_transaction!(self, |db| logic::priced_by(&mut db, &pile_no, at))
    }

    async fn create_account(&self, input: &AccountInput, at: i64) -> Result<Account> {
        let input = input.clone();
        in_transaction!(self, |db| logic::create_account(&mut db, &input, at))
    }

    async fn account(&self, id: i64) -> Result<Option<Account>> {
        in_transaction!(self, |db| logic::account(&mut db, id))
    }

    async fn accounts(&self, after: i64, limit: u32) -> Result<Vec<Account>> {
        in_transaction!(self, |db| logic::accounts(&mut db, after, limit))
    }

    async fn set_account_state(
        &self,
        id: i64,
        state: AccountState,
        at: i64,
    ) -> Result<Option<Account>> {
        in_transaction!(self, |db| logic::set_account_state(&mut db, id, state, at))
    }

    async fn add_card(&self, id: i64, card: &SealedCard, at: i64) -> Result<bool> {
        let card = card.clone();
        in_transaction!(self, |db| logic::add_card(&mut db, id, &card, at))
    }

    async fn remove_card(&self, id: i64, card_index: &str) -> Result<bool> {
        let card_index = card_index.to_owned();
        in_transaction!(self, |db| logic::remove_card(&mut db, id, &card_index))
    }

    async fn add_vin(&self, id: i64, vin: &SealedVin, at: i64) -> Result<bool> {
        let vin = vin.clone();
        in_transaction!(self, |db| logic::add_vin(&mut db, id, &vin, at))
    }

    async fn remove_vin(&self, id: i64, vin_index: &str) -> Result<bool> {
        in_transaction!(self, |db| logic::remove_vin(&mut db, id, vin_index))
    }

    async fn update_account(
        &self,
        id: i64,
        input: &AccountInput,
        at: i64,
    ) -> Result<Option<Account>> {
        in_transaction!(self, |db| logic::update_account(&mut db, id, input, at))
    }

    async fn post(
        &self,
        id: i64,
        postings: &[Posting],
        meta: &EntryMeta,
    ) -> Result<Option<Account>> {
        let (postings, meta) = (postings.to_vec(), meta.clone());
        in_transaction!(self, |db| logic::post(&mut db, id, &postings, &meta))
    }

    async fn ledger(&self, id: i64, limit: u32) -> Result<Vec<LedgerEntry>> {
        in_transaction!(self, |db| logic::ledger(&mut db, id, limit))
    }

    async fn start_charge(&self, request: &StartRequest) -> Result<StartOutcome> {
        let request = request.clone();
        in_transaction!(self, |db| logic::start_charge(&mut db, &request))
    }

    async fn raise_holds(&self, account: i64, max_hold: i64, at: i64) -> Result<Vec<RaisedHold>> {
        in_transaction!(self, |db| logic::raise_holds(
            &mut db, account, max_hold, at
        ))
    }

    async fn release_hold(&self, trade_no: &str, reason: &str, at: i64) -> Result<()> {
        let (trade_no, reason) = (trade_no.to_owned(), reason.to_owned());
        in_transaction!(self, |db| logic::release_hold(
            &mut db, &trade_no, &reason, at
        ))
    }

    async fn settle_record(
        &self,
        input: &SettleInput,
    ) -> Result<std::result::Result<Settled, Repeat>> {
        let input = input.clone();
        in_transaction!(self, |db| logic::settle_record(&mut db, &input))
    }

    async fn account_card_seals(&self, account: i64) -> Result<Vec<String>> {
        in_transaction!(self, |db| logic::account_card_seals(&mut db, account))
    }

    async fn station_cards(&self, station: i64) -> Result<Vec<(String, String)>> {
        in_transaction!(self, |db| logic::station_cards(&mut db, station))
    }

    async fn reseal_all(&self, vault: std::sync::Arc<crate::revenue::vault::Vault>) -> Result<u64> {
        in_transaction!(self, |db| logic::reseal_all(&mut db, &vault))
    }

    async fn personal_data(&self, account: i64) -> Result<logic::PersonalData> {
        in_transaction!(self, |db| logic::personal_data(&mut db, account))
    }

    async fn erase_account(
        &self,
        account: i64,
        at: i64,
    ) -> Result<std::result::Result<(), logic::EraseRefusal>> {
        in_transaction!(self, |db| logic::erase_account(&mut db, account, at))
    }

    async fn dormant_accounts(&self, before: i64) -> Result<Vec<i64>> {
        in_transaction!(self, |db| logic::dormant_accounts(&mut db, before))
    }

    async fn purge_history(&self, events_before: i64, status_before: i64) -> Result<(u64, u64)> {
        in_transaction!(self, |db| logic::purge_history(
            &mut db,
            events_before,
            status_before
        ))
    }

    async fn pile_cipher(&self, pile_no: &str) -> Result<Option<logic::SealedCipher>> {
        in_transaction!(self, |db| logic::pile_cipher(&mut db, pile_no))
    }

    async fn set_pile_cipher(&self, pile_no: &str, sealed: Option<&str>, at: i64) -> Result<bool> {
        in_transaction!(self, |db| logic::set_pile_cipher(
            &mut db, pile_no, sealed, at
        ))
    }

    async fn daily(&self, from: i64, to: i64) -> Result<Vec<StationDay>> {
        in_transaction!(self, |db| logic::daily(&mut db, from, to))
    }

    async fn reconciliation(&self) -> Result<Reconciliation> {
        in_transaction!(self, |db| logic::reconciliation(&mut db))
    }

    async fn discrepancies(&self, limit: u32) -> Result<Vec<Discrepancy>> {
        in_transaction!(self, |db| logic::discrepancies(&mut db, limit))
    }

    async fn quarantined(&self, limit: u32) -> Result<Vec<QuarantinedRecord>> {
        in_transaction!(self, |db| logic::quarantined(&mut db, limit))
    }
}
