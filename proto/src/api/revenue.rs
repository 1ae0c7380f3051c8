//! The revenue side of the app service's operator API: stations, tariffs, accounts with
//! their cards, VINs and wallets, the ledger, and the reports (`pylon-app`, HTTP/JSON,
//! same token and error body as [`super::app`]).
//!
//! - `GET|POST /v1/stations`, `GET|PUT /v1/stations/{id}` ([`StationInput`] -> [`Station`])
//! - `PUT /v1/piles/{pile}/station` with [`PileStation`]
//! - `GET|POST /v1/tariffs`, `GET|PUT /v1/tariffs/{id}` ([`TariffInput`] -> [`Tariff`]; a
//!   PUT adds a revision, records keep the revision they started under)
//! - `POST /v1/stations/{id}/tariff` with [`AssignTariff`] -> [`TariffAssignment`]
//! - `GET|POST /v1/accounts`, `GET|PUT /v1/accounts/{id}` ([`AccountInput`] -> [`Account`];
//!   a PUT renames the account and sets its stations)
//! - `POST /v1/accounts/{id}/cards` ([`CardInput`]), `POST /v1/accounts/{id}/cards/remove`
//!   ([`CardRemove`]: the number travels in the body, never in a URL)
//! - `POST /v1/accounts/{id}/vins` and `POST /v1/accounts/{id}/vins/remove` ([`VinInput`])
//! - `POST /v1/accounts/{id}/top-up|refund|adjust` with [`MoneyInput`] -> [`Account`]
//! - `POST /v1/accounts/{id}/freeze|unfreeze` -> [`Account`]
//! - `GET /v1/accounts/{id}/ledger?limit=` -> `Vec<LedgerEntry>` (newest first)
//! - `POST /v1/accounts/{id}/charge` with [`AccountCharge`] -> 201 `Order`
//! - `GET /v1/reports/daily?from=&to=` -> `Vec<StationDay>` (`&format=csv` for CSV)
//! - `GET /v1/reports/reconciliation` -> [`Reconciliation`] (`?format=csv` for CSV)
//! - `GET /v1/discrepancies`, `GET /v1/quarantine`
//! - `POST /v1/stations/{id}/offline-cards` -> `Vec<OfflineSync>`: the cards of the
//!   accounts allowed at the station, sent to its connected piles (0x44, answered 0x43)
//! - `POST /v1/card-keys/rotate` -> [`KeyRotation`]: a new sealing key in the app's key
//!   file, and every stored card number and VIN sealed again under it
//!
//! Money is in fen (0.01 yuan) unless a field says otherwise; prices are 0.00001 yuan per
//! kWh and energy 0.0001 kWh, as on the wire. Card numbers and VINs are never sent back
//! in clear: replies carry them masked (`D14B****`).

use serde::{Deserialize, Serialize};

/// A charging station: a site with piles, a time zone and a power cap.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Station {
    pub id: i64,
    pub name: String,
    pub address: String,
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
    /// The station's local time, minutes east of UTC (China: 480); tariff slots are in it.
    pub utc_offset_minutes: i32,
    /// The operator's power cap for the whole station, kW.
    pub power_cap_kw: Option<u32>,
    /// Piles at the station.
    #[serde(default)]
    pub piles: Vec<String>,
    /// The tariff in force now, if one is assigned.
    #[serde(default)]
    pub tariff_id: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StationInput {
    pub name: String,
    #[serde(default)]
    pub address: String,
    #[serde(default)]
    pub latitude: Option<f64>,
    #[serde(default)]
    pub longitude: Option<f64>,
    #[serde(default = "china")]
    pub utc_offset_minutes: i32,
    #[serde(default)]
    pub power_cap_kw: Option<u32>,
}

fn china() -> i32 {
    480
}

/// `PUT /v1/piles/{pile}/station`: the station a pile belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PileStation {
    pub station_id: i64,
}

/// The four YKC periods, numbered as a billing model's 48 slots number them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    Sharp = 0,
    Peak = 1,
    Flat = 2,
    Valley = 3,
}

impl Period {
    pub const ALL: [Period; 4] = [Period::Sharp, Period::Peak, Period::Flat, Period::Valley];

    pub fn from_code(code: u8) -> Option<Period> {
        Period::ALL.get(usize::from(code)).copied()
    }

    pub fn code(self) -> u8 {
        self as u8
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Period::Sharp => "sharp",
            Period::Peak => "peak",
            Period::Flat => "flat",
            Period::Valley => "valley",
        }
    }
}

/// One period's prices per kWh, in 0.00001 yuan.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    pub electricity: u32,
    pub service: u32,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rates {
    pub sharp: Rate,
    pub peak: Rate,
    pub flat: Rate,
    pub valley: Rate,
}

impl Rates {
    pub fn of(&self, period: Period) -> Rate {
        match period {
            Period::Sharp => self.sharp,
            Period::Peak => self.peak,
            Period::Flat => self.flat,
            Period::Valley => self.valley,
        }
    }
}

/// From `from` ("HH:MM", a half-hour boundary of local time) until the next change,
/// `period` applies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleChange {
    pub from: String,
    pub period: Period,
}

/// A tariff's prices, loss ratio and day schedule (the first change at "00:00").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TariffSpec {
    pub rates: Rates,
    /// 计损比例, percent (0 to 100).
    #[serde(default)]
    pub loss_ratio: u8,
    pub schedule: Vec<ScheduleChange>,
}

/// `POST /v1/tariffs` and `PUT /v1/tariffs/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TariffInput {
    pub name: String,
    pub rates: Rates,
    #[serde(default)]
    pub loss_ratio: u8,
    pub schedule: Vec<ScheduleChange>,
}

impl TariffInput {
    pub fn spec(&self) -> TariffSpec {
        TariffSpec {
            rates: self.rates,
            loss_ratio: self.loss_ratio,
            schedule: self.schedule.clone(),
        }
    }
}

/// A tariff at its latest revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tariff {
    pub id: i64,
    pub name: String,
    pub revision: u32,
    pub rates: Rates,
    pub loss_ratio: u8,
    pub schedule: Vec<ScheduleChange>,
    /// When this revision was made.
    pub created_at: i64,
}

/// `POST /v1/stations/{id}/tariff`: from `valid_from` (Unix ms; default now) on, charges
/// starting at the station are priced with the tariff.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssignTariff {
    pub tariff_id: i64,
    #[serde(default)]
    pub valid_from: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TariffAssignment {
    pub station_id: i64,
    pub tariff_id: i64,
    pub valid_from: i64,
    /// Connected piles that took the new billing model (0x58 answered by 0x57).
    #[serde(default)]
    pub pushed_to: Vec<String>,
    /// Connected piles that refused it or did not answer in time; they get it when they
    /// next ask (0x09 at login).
    #[serde(default)]
    pub not_taken: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccountState {
    Active,
    /// No new charge starts; charges under way end and settle.
    Frozen,
    /// The driver's personal data was erased (PIPL): no name, cards or VINs; its ledger
    /// stays. Nothing can start on it again.
    Erased,
}

impl AccountState {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountState::Active => "active",
            AccountState::Frozen => "frozen",
            AccountState::Erased => "erased",
        }
    }

    pub fn parse(s: &str) -> Option<AccountState> {
        match s {
            "active" => Some(AccountState::Active),
            "frozen" => Some(AccountState::Frozen),
            "erased" => Some(AccountState::Erased),
            _ => None,
        }
    }
}

/// A card as replies show it: masked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardView {
    /// The physical card number, masked (`D14B****`). To remove a card, name it by its
    /// whole number ([`CardRemove`]).
    pub card: String,
    /// The number printed on the card, masked.
    pub logical: String,
    pub has_password: bool,
}

/// A driver's account and wallet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub id: i64,
    pub name: String,
    pub state: AccountState,
    /// Spendable fen (below zero when a charge cost more than it held).
    pub balance: i64,
    /// Fen on hold for charges under way.
    pub held: i64,
    /// Stations the account may charge at; empty: all.
    pub stations: Vec<i64>,
    pub cards: Vec<CardView>,
    /// Masked.
    pub vins: Vec<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountInput {
    pub name: String,
    #[serde(default)]
    pub stations: Vec<i64>,
}

/// `POST /v1/accounts/{id}/cards`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CardInput {
    /// The physical card number as the pile reads it: up to 16 hex digits (`D14B0A54`).
    pub physical: String,
    /// The number printed on the card: up to 16 decimal digits.
    pub logical: String,
    /// The driver's card password, if the card has one (piles send its MD5).
    #[serde(default)]
    pub password: Option<String>,
}

/// `POST /v1/accounts/{id}/cards/remove`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CardRemove {
    /// The physical card number, whole (`D14B0A54`).
    pub physical: String,
}

/// `POST /v1/accounts/{id}/vins` and `POST /v1/accounts/{id}/vins/remove`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VinInput {
    /// 17 characters.
    pub vin: String,
}

/// `POST /v1/accounts/{id}/top-up|refund|adjust`: fen (positive; an adjustment may be
/// negative) and why, which the ledger keeps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MoneyInput {
    pub amount: i64,
    pub reason: String,
}

/// One transfer between two books (double entry), never changed once written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    pub id: i64,
    pub at: i64,
    /// top_up, hold, release, charge, refund, adjustment.
    pub kind: String,
    /// The book debited (`wallet:7`, `hold:7`, `revenue:electricity`, `revenue:service`,
    /// `refunds`, `funding`).
    pub from: String,
    /// The book credited.
    pub to: String,
    /// Fen, positive.
    pub amount: i64,
    pub trade_no: Option<String>,
    /// Who: `operator`, `pile:<number>`, `settlement`.
    pub actor: String,
    pub reason: String,
}

/// `POST /v1/accounts/{id}/charge`: a remote start for the account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountCharge {
    pub pile: String,
    #[serde(default = "gun_one")]
    pub gun: u8,
}

fn gun_one() -> u8 {
    1
}

/// A record the platform priced and charged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settlement {
    pub trade_no: String,
    pub pile_no: String,
    pub account_id: Option<i64>,
    pub tariff_id: Option<i64>,
    pub tariff_revision: Option<u32>,
    /// Billed energy, 0.0001 kWh.
    pub energy: i64,
    pub electricity_fen: i64,
    pub service_fen: i64,
    /// What the platform computed and what the pile reported, 0.0001 yuan.
    pub platform_amount: i64,
    pub pile_amount: i64,
    pub at: i64,
}

/// A record whose amount differs from the platform's by more than the tolerance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Discrepancy {
    pub trade_no: String,
    pub pile_no: String,
    /// 0.0001 yuan.
    pub platform_amount: i64,
    pub pile_amount: i64,
    pub at: i64,
}

/// A record that reused a trade number with other content: kept, never settled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantinedRecord {
    pub id: i64,
    pub trade_no: String,
    pub pile_no: String,
    pub reason: String,
    pub received_at: i64,
}

/// One station's day (station local time).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StationDay {
    pub station_id: Option<i64>,
    pub station: String,
    /// `YYYY-MM-DD`.
    pub day: String,
    pub sessions: u64,
    /// 0.0001 kWh.
    pub energy: i64,
    pub electricity_fen: i64,
    pub service_fen: i64,
    pub revenue_fen: i64,
}

/// Records, orders and the ledger against each other; `balanced` when every check holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reconciliation {
    pub records: u64,
    pub settlements: u64,
    /// Records without a settlement (should be none).
    pub unsettled_records: Vec<String>,
    /// Settlements' electricity and service fees, and the ledger's charges, in fen.
    pub settled_electricity_fen: i64,
    pub settled_service_fen: i64,
    pub ledger_electricity_fen: i64,
    pub ledger_service_fen: i64,
    pub refunds_fen: i64,
    pub top_ups_fen: i64,
    /// The sum of every book: zero in a double-entry ledger.
    pub books_sum: i64,
    /// Wallets whose balance or hold differs from their books.
    pub wallet_mismatches: Vec<i64>,
    /// Open holds, and what the hold books say is held: equal when balanced.
    pub open_holds_fen: i64,
    #[serde(default)]
    pub held_in_books_fen: i64,
    pub discrepancies: u64,
    pub quarantined: u64,
    pub balanced: bool,
}

/// `POST /v1/card-keys/rotate`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRotation {
    /// The id of the new current key.
    pub key: String,
    /// Stored values sealed again under it.
    pub resealed: u64,
}

/// What one pile made of an offline-card sync.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfflineSync {
    pub pile: String,
    /// Cards sent.
    pub cards: u64,
    /// Every 0x44 frame was answered with success (0x43).
    pub stored: bool,
}

/// `GET /v1/accounts/{id}/export`: everything stored about one driver, their card
/// numbers and VINs in clear, for the driver who asks (finance).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountExport {
    pub account: Account,
    pub cards: Vec<ExportedCard>,
    pub vins: Vec<String>,
    pub ledger: Vec<LedgerEntry>,
    pub exported_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportedCard {
    pub physical: String,
    pub logical: String,
    pub added_at: i64,
}

/// `POST /v1/retention/run`: what one pass of the retention policy removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionRun {
    pub events_removed: u64,
    pub status_removed: u64,
    pub accounts_erased: u64,
}
