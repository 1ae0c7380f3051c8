//! Drivers' personal data (PIPL): export, erasure, and running the retention policy now.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use pylon_service::http::error;
use pylon_service::routes::{Access, Routes};

use super::{store_error, Api, ApiResult};
use crate::store::revenue::EraseRefusal;

pub(super) fn routes(routes: Routes<Api>) -> Routes<Api> {
    use pylon_proto::auth::Permission::{Admin, Finance};
    routes
        .get("/v1/accounts/{id}/export", Access::Needs(Finance), export)
        .post("/v1/accounts/{id}/erase", Access::Needs(Finance), erase)
        .post("/v1/retention/run", Access::Needs(Admin), run_retention)
}

fn account_id(text: &str) -> Result<i64, Response> {
    text.parse().map_err(|_| {
        error(
            StatusCode::BAD_REQUEST,
            "bad_account",
            format!("{text:?} is not an account number"),
        )
    })
}

fn no_account(id: i64) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "no_such_account",
        format!("no account {id}"),
    )
}

async fn export(State(api): State<Api>, Path(id): Path<String>) -> ApiResult {
    let id = account_id(&id)?;
    match api.business.export_account(id).await.map_err(store_error)? {
        Some(export) => {
            tracing::info!(account = id, "driver data exported");
            Ok(Json(export).into_response())
        }
        None => Err(no_account(id)),
    }
}

async fn erase(State(api): State<Api>, Path(id): Path<String>) -> ApiResult {
    let id = account_id(&id)?;
    match api.business.erase_account(id).await.map_err(store_error)? {
        Ok(()) => {
            tracing::info!(account = id, "driver data erased");
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        Err(EraseRefusal::NoSuchAccount) => Err(no_account(id)),
        Err(EraseRefusal::MoneyLeft { balance, held }) => Err(error(
            StatusCode::CONFLICT,
            "money_left",
            format!(
                "account {id} still has {balance} fen ({held} held for a charge): refund or \
                 settle it first, so the books stay balanced"
            ),
        )),
    }
}

async fn run_retention(State(api): State<Api>) -> ApiResult {
    let run = api.business.apply_retention().await.map_err(store_error)?;
    Ok(Json(run).into_response())
}
