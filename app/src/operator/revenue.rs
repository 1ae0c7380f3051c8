//! The revenue side of the operator API: stations, tariffs, accounts with their cards,
//! VINs and wallets, the ledger, starts for an account, and reports. Routes and types are
//! listed in `pylon_proto::api::revenue`.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use pylon_proto::api::revenue::{
    AccountCharge, AccountInput, AccountState, AssignTariff, CardInput, CardRemove, KeyRotation,
    MoneyInput, PileStation, Reconciliation, StationDay, StationInput, TariffAssignment,
    TariffInput, VinInput,
};
use pylon_service::http::error;
use pylon_service::routes::{Access, Routes};

use super::{command_error, number, pile_no, store_error, Api, ApiResult};
use crate::business::{normalise_card, password_index, password_md5};
use crate::revenue::ledger::{self, Posting};
use crate::revenue::tariff::Tariff;
use crate::revenue::vault::{mask, Vault};
use crate::store::revenue::{EntryMeta, SealedCard, SealedVin};

/// The revenue routes, with who may call them: money needs `finance`; acting on piles
/// and stations `command`; the card keys `admin`. Driver accounts (personal data) are
/// read with `finance` only.
pub(super) fn routes(routes: Routes<Api>) -> Routes<Api> {
    use pylon_proto::auth::Permission::{Admin, Command, Finance, Read};
    routes
        .get("/v1/stations", Access::Needs(Read), list_stations)
        .post("/v1/stations", Access::Needs(Command), create_station)
        .get("/v1/stations/{id}", Access::Needs(Read), get_station)
        .put("/v1/stations/{id}", Access::Needs(Command), update_station)
        .post(
            "/v1/stations/{id}/tariff",
            Access::Needs(Finance),
            assign_tariff,
        )
        .post(
            "/v1/stations/{id}/offline-cards",
            Access::Needs(Command),
            sync_offline_cards,
        )
        .put(
            "/v1/piles/{pile}/station",
            Access::Needs(Command),
            set_pile_station,
        )
        .get("/v1/tariffs", Access::Needs(Read), list_tariffs)
        .post("/v1/tariffs", Access::Needs(Finance), create_tariff)
        .get("/v1/tariffs/{id}", Access::Needs(Read), get_tariff)
        .put("/v1/tariffs/{id}", Access::Needs(Finance), revise_tariff)
        .get("/v1/accounts", Access::Needs(Finance), list_accounts)
        .post("/v1/accounts", Access::Needs(Finance), create_account)
        .get("/v1/accounts/{id}", Access::Needs(Finance), get_account)
        .put("/v1/accounts/{id}", Access::Needs(Finance), update_account)
        .post("/v1/accounts/{id}/cards", Access::Needs(Finance), add_card)
        .post(
            "/v1/accounts/{id}/cards/remove",
            Access::Needs(Finance),
            remove_card,
        )
        .post("/v1/accounts/{id}/vins", Access::Needs(Finance), add_vin)
        .post(
            "/v1/accounts/{id}/vins/remove",
            Access::Needs(Finance),
            remove_vin,
        )
        .post("/v1/accounts/{id}/top-up", Access::Needs(Finance), top_up)
        .post("/v1/accounts/{id}/refund", Access::Needs(Finance), refund)
        .post("/v1/accounts/{id}/adjust", Access::Needs(Finance), adjust)
        .post("/v1/accounts/{id}/freeze", Access::Needs(Finance), freeze)
        .post(
            "/v1/accounts/{id}/unfreeze",
            Access::Needs(Finance),
            unfreeze,
        )
        .get(
            "/v1/accounts/{id}/ledger",
            Access::Needs(Finance),
            account_ledger,
        )
        .post(
            "/v1/accounts/{id}/charge",
            Access::Needs(Command),
            charge_account,
        )
        .get("/v1/reports/daily", Access::Needs(Finance), daily_report)
        .get(
            "/v1/reports/reconciliation",
            Access::Needs(Finance),
            reconciliation,
        )
        .get("/v1/discrepancies", Access::Needs(Finance), discrepancies)
        .get("/v1/quarantine", Access::Needs(Finance), quarantine)
        .post(
            "/v1/card-keys/rotate",
            Access::Needs(Admin),
            rotate_card_keys,
        )
}

/// A looked-up value as the reply, or 404 with `code` when there is none.
fn found<T: serde::Serialize>(
    value: Result<Option<T>, crate::store::StoreError>,
    code: &'static str,
    message: impl FnOnce() -> String,
) -> ApiResult {
    match value.map_err(store_error)? {
        Some(v) => Ok(Json(v).into_response()),
        None => Err(not_found(code, message())),
    }
}

fn not_found(code: &'static str, message: String) -> Response {
    error(StatusCode::NOT_FOUND, code, message)
}

fn bad(code: &'static str, message: impl Into<String>) -> Response {
    error(StatusCode::BAD_REQUEST, code, message.into())
}

fn id(text: &str, what: &str) -> Result<i64, Response> {
    text.parse()
        .map_err(|_| bad("bad_id", format!("{text:?} is not a {what} id")))
}

fn vault(api: &Api) -> Result<&std::sync::Arc<Vault>, Response> {
    api.business.vault.as_ref().ok_or_else(|| {
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            "card_keys_missing",
            "no card key file is configured (start pylon-app with --card-keys): card numbers and VINs cannot be stored",
        )
    })
}

fn check_station(input: &StationInput) -> Result<(), Response> {
    if input.name.trim().is_empty() {
        return Err(bad("bad_station", "a station needs a name"));
    }
    if !(-720..=840).contains(&input.utc_offset_minutes) {
        return Err(bad(
            "bad_station",
            "utc_offset_minutes must be within -720..=840",
        ));
    }
    let lat_ok = input.latitude.is_none_or(|v| (-90.0..=90.0).contains(&v));
    let lon_ok = input
        .longitude
        .is_none_or(|v| (-180.0..=180.0).contains(&v));
    if !lat_ok || !lon_ok {
        return Err(bad(
            "bad_station",
            "latitude is -90..90 and longitude -180..180",
        ));
    }
    Ok(())
}

/// `GET /v1/stations?after=&limit=`: by id, 1000 at most by default (10 000 at most).
async fn list_stations(
    State(api): State<Api>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult {
    let now = api.business.now_ms();
    let after = super::number(&q, "after", 0i64)?;
    let limit = super::number(&q, "limit", 1_000u32)?.clamp(1, 10_000);
    let stations = api
        .business
        .store
        .stations(now, after, limit)
        .await
        .map_err(store_error)?;
    Ok(Json(stations).into_response())
}

async fn create_station(State(api): State<Api>, Json(input): Json<StationInput>) -> ApiResult {
    check_station(&input)?;
    let now = api.business.now_ms();
    let station = api
        .business
        .store
        .create_station(&input, now)
        .await
        .map_err(store_error)?;
    Ok((StatusCode::CREATED, Json(station)).into_response())
}

async fn get_station(State(api): State<Api>, Path(station): Path<String>) -> ApiResult {
    let station = id(&station, "station")?;
    let now = api.business.now_ms();
    found(
        api.business.store.station(station, now).await,
        "no_such_station",
        || format!("no station {station}"),
    )
}

async fn update_station(
    State(api): State<Api>,
    Path(station): Path<String>,
    Json(input): Json<StationInput>,
) -> ApiResult {
    let station = id(&station, "station")?;
    check_station(&input)?;
    let now = api.business.now_ms();
    found(
        api.business
            .store
            .update_station(station, &input, now)
            .await,
        "no_such_station",
        || format!("no station {station}"),
    )
}

async fn set_pile_station(
    State(api): State<Api>,
    Path(pile): Path<String>,
    Json(input): Json<PileStation>,
) -> ApiResult {
    pile_no(&pile)?;
    let done = api
        .business
        .store
        .set_pile_station(&pile, input.station_id)
        .await
        .map_err(store_error)?;
    if !done {
        return Err(not_found(
            "no_such_pile_or_station",
            format!("no pile {pile} or no station {}", input.station_id),
        ));
    }
    // A connected pile gets its new station's tariff at once.
    if api.business.directory.location(&pile).is_some() {
        api.business.push_pile_tariff(&pile).await;
    }
    let now = api.business.now_ms();
    let station = api
        .business
        .store
        .station(input.station_id, now)
        .await
        .map_err(store_error)?;
    Ok(Json(station).into_response())
}

fn checked_tariff(input: &TariffInput) -> Result<Tariff, Response> {
    if input.name.trim().is_empty() {
        return Err(bad("bad_tariff", "a tariff needs a name"));
    }
    Tariff::try_from(&input.spec()).map_err(|e| bad("bad_tariff", e.to_string()))
}

async fn list_tariffs(State(api): State<Api>) -> ApiResult {
    let tariffs = api.business.store.tariffs().await.map_err(store_error)?;
    Ok(Json(tariffs).into_response())
}

async fn create_tariff(State(api): State<Api>, Json(input): Json<TariffInput>) -> ApiResult {
    let tariff = checked_tariff(&input)?;
    let now = api.business.now_ms();
    let created = api
        .business
        .store
        .create_tariff(input.name.trim(), &tariff, now)
        .await
        .map_err(store_error)?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

async fn get_tariff(State(api): State<Api>, Path(tariff): Path<String>) -> ApiResult {
    let tariff = id(&tariff, "tariff")?;
    found(
        api.business.store.tariff(tariff).await,
        "no_such_tariff",
        || format!("no tariff {tariff}"),
    )
}

/// A new revision; stations using the tariff get it pushed to their connected piles.
async fn revise_tariff(
    State(api): State<Api>,
    Path(tariff_id): Path<String>,
    Json(input): Json<TariffInput>,
) -> ApiResult {
    let tariff_id = id(&tariff_id, "tariff")?;
    let tariff = checked_tariff(&input)?;
    let now = api.business.now_ms();
    let Some(revised) = api
        .business
        .store
        .revise_tariff(tariff_id, input.name.trim(), &tariff, now)
        .await
        .map_err(store_error)?
    else {
        return Err(not_found(
            "no_such_tariff",
            format!("no tariff {tariff_id}"),
        ));
    };
    // Every station priced by this tariff, page by page.
    let mut after = 0;
    loop {
        let stations = api
            .business
            .store
            .stations(now, after, 1_000)
            .await
            .map_err(store_error)?;
        for station in stations.iter().filter(|s| s.tariff_id == Some(tariff_id)) {
            if let Err(e) = api.business.push_station_tariff(station.id).await {
                tracing::warn!(station = station.id, "pushing the revised tariff: {e}");
            }
        }
        match stations.last() {
            Some(last) if stations.len() == 1_000 => after = last.id,
            _ => break,
        }
    }
    Ok(Json(revised).into_response())
}

async fn assign_tariff(
    State(api): State<Api>,
    Path(station): Path<String>,
    Json(input): Json<AssignTariff>,
) -> ApiResult {
    let station = id(&station, "station")?;
    let now = api.business.now_ms();
    let valid_from = input.valid_from.unwrap_or(now);
    let done = api
        .business
        .store
        .assign_tariff(station, input.tariff_id, valid_from)
        .await
        .map_err(store_error)?;
    if !done {
        return Err(not_found(
            "no_such_station_or_tariff",
            format!("no station {station} or no tariff {}", input.tariff_id),
        ));
    }
    // In force now: the connected piles get it at once (0x58) and answer (0x57). The
    // assignment stands whatever the push does: piles that miss it ask at login.
    let (pushed_to, not_taken) = if valid_from <= now {
        api.business
            .push_station_tariff(station)
            .await
            .unwrap_or_else(|e| {
                tracing::warn!(station, "pushing the tariff: {e}");
                (Vec::new(), Vec::new())
            })
    } else {
        (Vec::new(), Vec::new())
    };
    Ok(Json(TariffAssignment {
        station_id: station,
        tariff_id: input.tariff_id,
        valid_from,
        pushed_to,
        not_taken,
    })
    .into_response())
}

async fn list_accounts(
    State(api): State<Api>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult {
    let after = number(&q, "after", 0i64)?;
    let limit = number(&q, "limit", 100u32)?.min(10_000);
    let accounts = api
        .business
        .store
        .accounts(after, limit)
        .await
        .map_err(store_error)?;
    Ok(Json(accounts).into_response())
}

async fn create_account(State(api): State<Api>, Json(input): Json<AccountInput>) -> ApiResult {
    if input.name.trim().is_empty() {
        return Err(bad("bad_account", "an account needs a name"));
    }
    let now = api.business.now_ms();
    let account = api
        .business
        .store
        .create_account(&input, now)
        .await
        .map_err(store_error)?;
    Ok((StatusCode::CREATED, Json(account)).into_response())
}

async fn account_reply(api: &Api, account: i64) -> ApiResult {
    found(
        api.business.store.account(account).await,
        "no_such_account",
        || format!("no account {account}"),
    )
}

async fn get_account(State(api): State<Api>, Path(account): Path<String>) -> ApiResult {
    account_reply(&api, id(&account, "account")?).await
}

/// An erased account (PIPL) takes no data and no money again.
async fn not_erased(api: &Api, account: i64) -> Result<(), Response> {
    let current = api
        .business
        .store
        .account(account)
        .await
        .map_err(store_error)?;
    if current.is_some_and(|a| a.state == AccountState::Erased) {
        return Err(error(
            StatusCode::CONFLICT,
            "erased",
            format!("account {account} was erased; it cannot be used again"),
        ));
    }
    Ok(())
}

async fn add_card(
    State(api): State<Api>,
    Path(account): Path<String>,
    Json(input): Json<CardInput>,
) -> ApiResult {
    let account = id(&account, "account")?;
    not_erased(&api, account).await?;
    let vault = vault(&api)?;
    let physical = normalise_card(&input.physical)
        .ok_or_else(|| bad("bad_card", "a physical card number is 1 to 16 hex digits"))?;
    let logical = input.logical.trim();
    if logical.is_empty() || logical.len() > 16 || !logical.chars().all(|c| c.is_ascii_digit()) {
        return Err(bad("bad_card", "a logical card number is 1 to 16 digits"));
    }
    let card = SealedCard {
        index: vault.index("card", &physical),
        sealed: vault.seal(&physical),
        masked: mask(&physical),
        logical_sealed: vault.seal(logical),
        logical_masked: mask(logical.trim_start_matches('0')),
        password_index: input
            .password
            .as_deref()
            .filter(|p| !p.is_empty())
            .map(|p| password_index(vault, &password_md5(p))),
    };
    let now = api.business.now_ms();
    let added = api
        .business
        .store
        .add_card(account, &card, now)
        .await
        .map_err(store_error)?;
    if !added {
        return Err(not_found(
            "no_such_account",
            format!("no account {account}"),
        ));
    }
    tracing::info!(account, card = %card.masked, "card added");
    account_reply(&api, account).await
}

async fn update_account(
    State(api): State<Api>,
    Path(account): Path<String>,
    Json(input): Json<AccountInput>,
) -> ApiResult {
    let account = id(&account, "account")?;
    not_erased(&api, account).await?;
    if input.name.trim().is_empty() {
        return Err(bad("bad_account", "an account needs a name"));
    }
    let now = api.business.now_ms();
    found(
        api.business
            .store
            .update_account(account, &input, now)
            .await,
        "no_such_account",
        || format!("no account {account}"),
    )
}

async fn remove_vin(
    State(api): State<Api>,
    Path(account): Path<String>,
    Json(input): Json<VinInput>,
) -> ApiResult {
    let account = id(&account, "account")?;
    let vault = vault(&api)?;
    let vin = input.vin.trim().to_ascii_uppercase();
    let removed = api
        .business
        .store
        .remove_vin(account, &vault.index("vin", &vin))
        .await
        .map_err(store_error)?;
    if !removed {
        return Err(not_found(
            "no_such_vin",
            format!("account {account} has no VIN {}", mask(&vin)),
        ));
    }
    account_reply(&api, account).await
}

async fn remove_card(
    State(api): State<Api>,
    Path(account): Path<String>,
    Json(input): Json<CardRemove>,
) -> ApiResult {
    let account = id(&account, "account")?;
    let vault = vault(&api)?;
    let physical = normalise_card(&input.physical)
        .ok_or_else(|| bad("bad_card", "a physical card number is 1 to 16 hex digits"))?;
    let removed = api
        .business
        .store
        .remove_card(account, &vault.index("card", &physical))
        .await
        .map_err(store_error)?;
    if !removed {
        return Err(not_found(
            "no_such_card",
            format!("account {account} has no card {}", mask(&physical)),
        ));
    }
    // It is no longer an offline card at the account's stations.
    if let (Some(bytes), Some(a)) = (
        crate::business::card_bytes(&physical),
        api.business
            .store
            .account(account)
            .await
            .map_err(store_error)?,
    ) {
        api.business
            .clear_offline_cards(&a.stations, &[bytes])
            .await;
    }
    account_reply(&api, account).await
}

async fn add_vin(
    State(api): State<Api>,
    Path(account): Path<String>,
    Json(input): Json<VinInput>,
) -> ApiResult {
    let account = id(&account, "account")?;
    not_erased(&api, account).await?;
    let vault = vault(&api)?;
    let vin = input.vin.trim().to_ascii_uppercase();
    if vin.len() != 17 || !vin.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(bad("bad_vin", "a VIN is 17 letters and digits"));
    }
    let sealed = SealedVin {
        index: vault.index("vin", &vin),
        sealed: vault.seal(&vin),
        masked: mask(&vin),
    };
    let now = api.business.now_ms();
    if !api
        .business
        .store
        .add_vin(account, &sealed, now)
        .await
        .map_err(store_error)?
    {
        return Err(not_found(
            "no_such_account",
            format!("no account {account}"),
        ));
    }
    account_reply(&api, account).await
}

/// Posts a money movement an operator asked for.
async fn move_money(
    api: &Api,
    account: &str,
    input: &MoneyInput,
    postings: impl FnOnce(i64) -> Result<Vec<Posting>, Response>,
) -> ApiResult {
    let account = id(account, "account")?;
    not_erased(api, account).await?;
    if input.reason.trim().is_empty() {
        return Err(bad("bad_money", "say why (reason)"));
    }
    let postings = postings(account)?;
    let meta = EntryMeta {
        actor: "operator".into(),
        reason: input.reason.trim().to_owned(),
        trade_no: None,
        at: api.business.now_ms(),
    };
    let Some(mut reply) = api
        .business
        .store
        .post(account, &postings, &meta)
        .await
        .map_err(store_error)?
    else {
        return Err(not_found(
            "no_such_account",
            format!("no account {account}"),
        ));
    };
    // Charges under way may spend what came in (0x42 to their piles).
    if reply.balance > 0 {
        let raised = api
            .business
            .push_balances(account)
            .await
            .map_err(store_error)?;
        if !raised.is_empty() {
            if let Some(now) = api
                .business
                .store
                .account(account)
                .await
                .map_err(store_error)?
            {
                reply = now;
            }
        }
    }
    Ok(Json(reply).into_response())
}

fn positive(amount: i64) -> Result<i64, Response> {
    if amount > 0 {
        Ok(amount)
    } else {
        Err(bad(
            "bad_money",
            "the amount is in fen and must be positive",
        ))
    }
}

async fn top_up(
    State(api): State<Api>,
    Path(account): Path<String>,
    Json(input): Json<MoneyInput>,
) -> ApiResult {
    let amount = positive(input.amount)?;
    move_money(&api, &account, &input, |a| Ok(ledger::top_up(a, amount))).await
}

async fn refund(
    State(api): State<Api>,
    Path(account): Path<String>,
    Json(input): Json<MoneyInput>,
) -> ApiResult {
    let amount = positive(input.amount)?;
    move_money(&api, &account, &input, |a| Ok(ledger::refund(a, amount))).await
}

async fn adjust(
    State(api): State<Api>,
    Path(account): Path<String>,
    Json(input): Json<MoneyInput>,
) -> ApiResult {
    if input.amount == 0 {
        return Err(bad("bad_money", "an adjustment of 0 changes nothing"));
    }
    let amount = input.amount;
    move_money(&api, &account, &input, |a| Ok(ledger::adjust(a, amount))).await
}

async fn set_state(api: &Api, account: &str, state: AccountState) -> ApiResult {
    let account = id(account, "account")?;
    let now = api.business.now_ms();
    not_erased(api, account).await?;
    found(
        api.business
            .store
            .set_account_state(account, state, now)
            .await,
        "no_such_account",
        || format!("no account {account}"),
    )
}

/// A frozen account's cards leave the offline lists of its stations' piles too.
async fn freeze(State(api): State<Api>, Path(account_text): Path<String>) -> ApiResult {
    let reply = set_state(&api, &account_text, AccountState::Frozen).await?;
    let account = id(&account_text, "account")?;
    if let (Some(vault), Some(a)) = (
        api.business.vault.as_ref(),
        api.business
            .store
            .account(account)
            .await
            .map_err(store_error)?,
    ) {
        let cards: Vec<[u8; 8]> = api
            .business
            .store
            .account_card_seals(account)
            .await
            .map_err(store_error)?
            .iter()
            .filter_map(|sealed| crate::business::card_bytes(&vault.open(sealed).ok()?))
            .collect();
        api.business.clear_offline_cards(&a.stations, &cards).await;
    }
    Ok(reply)
}

async fn unfreeze(State(api): State<Api>, Path(account): Path<String>) -> ApiResult {
    set_state(&api, &account, AccountState::Active).await
}

async fn account_ledger(
    State(api): State<Api>,
    Path(account): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult {
    let account = id(&account, "account")?;
    let limit = number(&q, "limit", 100u32)?.min(10_000);
    if api
        .business
        .store
        .account(account)
        .await
        .map_err(store_error)?
        .is_none()
    {
        return Err(not_found(
            "no_such_account",
            format!("no account {account}"),
        ));
    }
    let entries = api
        .business
        .store
        .ledger(account, limit)
        .await
        .map_err(store_error)?;
    Ok(Json(entries).into_response())
}

async fn charge_account(
    State(api): State<Api>,
    Path(account): Path<String>,
    Json(input): Json<AccountCharge>,
) -> ApiResult {
    let account = id(&account, "account")?;
    pile_no(&input.pile)?;
    if !(1..=99).contains(&input.gun) {
        return Err(bad("bad_gun", "gun must be 1 to 99"));
    }
    let order = api
        .business
        .start_for_account(account, &input.pile, input.gun)
        .await
        .map_err(command_error)?;
    Ok((StatusCode::CREATED, Json(order)).into_response())
}

fn wants_csv(q: &HashMap<String, String>) -> bool {
    q.get("format").is_some_and(|f| f == "csv")
}

fn csv(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], body).into_response()
}

/// Per station and local day; `from`/`to` are Unix ms of the charges' starts.
async fn daily_report(
    State(api): State<Api>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult {
    let from = number(&q, "from", 0i64)?;
    let to = number(&q, "to", i64::MAX)?;
    let days = api
        .business
        .store
        .daily(from, to)
        .await
        .map_err(store_error)?;
    if wants_csv(&q) {
        return Ok(csv(daily_csv(&days)));
    }
    Ok(Json(days).into_response())
}

fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

fn yuan(fen: i64) -> String {
    let sign = if fen < 0 { "-" } else { "" };
    format!(
        "{sign}{}.{:02}",
        fen.unsigned_abs() / 100,
        fen.unsigned_abs() % 100
    )
}

pub fn daily_csv(days: &[StationDay]) -> String {
    let mut out = String::from(
        "station_id,station,day,sessions,energy_kwh,electricity_yuan,service_yuan,revenue_yuan\n",
    );
    for d in days {
        out.push_str(&format!(
            "{},{},{},{},{}.{:04},{},{},{}\n",
            d.station_id.map(|i| i.to_string()).unwrap_or_default(),
            csv_field(&d.station),
            d.day,
            d.sessions,
            d.energy / 10_000,
            d.energy % 10_000,
            yuan(d.electricity_fen),
            yuan(d.service_fen),
            yuan(d.revenue_fen),
        ));
    }
    out
}

pub fn reconciliation_csv(r: &Reconciliation) -> String {
    let rows = [
        ("records", r.records.to_string()),
        ("settlements", r.settlements.to_string()),
        ("unsettled_records", r.unsettled_records.len().to_string()),
        ("settled_electricity_yuan", yuan(r.settled_electricity_fen)),
        ("ledger_electricity_yuan", yuan(r.ledger_electricity_fen)),
        ("settled_service_yuan", yuan(r.settled_service_fen)),
        ("ledger_service_yuan", yuan(r.ledger_service_fen)),
        ("refunds_yuan", yuan(r.refunds_fen)),
        ("top_ups_yuan", yuan(r.top_ups_fen)),
        ("open_holds_yuan", yuan(r.open_holds_fen)),
        ("held_in_books_yuan", yuan(r.held_in_books_fen)),
        ("books_sum_fen", r.books_sum.to_string()),
        ("wallet_mismatches", r.wallet_mismatches.len().to_string()),
        ("discrepancies", r.discrepancies.to_string()),
        ("quarantined", r.quarantined.to_string()),
        ("balanced", r.balanced.to_string()),
    ];
    let mut out = String::from("check,value\n");
    for (k, v) in rows {
        out.push_str(&format!("{k},{v}\n"));
    }
    out
}

async fn reconciliation(
    State(api): State<Api>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult {
    let r = api
        .business
        .store
        .reconciliation()
        .await
        .map_err(store_error)?;
    if wants_csv(&q) {
        return Ok(csv(reconciliation_csv(&r)));
    }
    Ok(Json(r).into_response())
}

async fn discrepancies(
    State(api): State<Api>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult {
    let limit = number(&q, "limit", 100u32)?.min(10_000);
    let list = api
        .business
        .store
        .discrepancies(limit)
        .await
        .map_err(store_error)?;
    Ok(Json(list).into_response())
}

async fn quarantine(State(api): State<Api>, Query(q): Query<HashMap<String, String>>) -> ApiResult {
    let limit = number(&q, "limit", 100u32)?.min(10_000);
    let list = api
        .business
        .store
        .quarantined(limit)
        .await
        .map_err(store_error)?;
    Ok(Json(list).into_response())
}

async fn sync_offline_cards(State(api): State<Api>, Path(station): Path<String>) -> ApiResult {
    let station = id(&station, "station")?;
    vault(&api)?;
    let now = api.business.now_ms();
    if api
        .business
        .store
        .station(station, now)
        .await
        .map_err(store_error)?
        .is_none()
    {
        return Err(not_found(
            "no_such_station",
            format!("no station {station}"),
        ));
    }
    let syncs = api
        .business
        .sync_offline_cards(station)
        .await
        .map_err(|e| {
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "sync_failed",
                e.to_string(),
            )
        })?;
    Ok(Json(syncs).into_response())
}

/// A new sealing key, then every stored card number and VIN sealed again under it. Old
/// keys stay in the file so that backups taken before still open.
async fn rotate_card_keys(State(api): State<Api>) -> ApiResult {
    let vault = vault(&api)?.clone();
    let key = vault
        .rotate()
        .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, "key_file", e.to_string()))?;
    let resealed = api
        .business
        .store
        .reseal_all(vault)
        .await
        .map_err(store_error)?;
    tracing::info!(%key, resealed, "card keys rotated");
    Ok(Json(KeyRotation { key, resealed }).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_money_is_in_yuan_with_two_decimals() {
        assert_eq!(yuan(123_456), "1234.56");
        assert_eq!(yuan(-5), "-0.05");
        let days = [StationDay {
            station_id: Some(1),
            station: "North, gate 2".into(),
            day: "2026-11-29".into(),
            sessions: 3,
            energy: 123_456,
            electricity_fen: 1000,
            service_fen: 250,
            revenue_fen: 1250,
        }];
        assert_eq!(
            daily_csv(&days).lines().nth(1),
            Some("1,\"North, gate 2\",2026-11-29,3,12.3456,10.00,2.50,12.50")
        );
    }
}
