//! Per-pile body encryption (YKC flag 0x01, 3DES): set, rotate, show and remove a pile's
//! key. Keys are sealed by the card-key vault before they reach the store, never shown
//! again after they are set (rotate answers the new key once, to load into the charger),
//! and reach the edge only in the login verdict, on the business stream.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use pylon_proto::api::app::{CipherRotate, PileCipherState};
use pylon_proto::ykc::cipher::{Mode, Padding};
use pylon_proto::ykc::PileCipher;
use pylon_service::http::error;
use pylon_service::routes::{Access, Routes};

use super::{pile_no, store_error, Api, ApiResult};
use crate::clock::now_ms;

pub(super) fn routes(routes: Routes<Api>) -> Routes<Api> {
    use pylon_proto::auth::Permission::{Admin, Read};
    routes
        .get("/v1/piles/{pile}/cipher", Access::Needs(Read), show)
        .put("/v1/piles/{pile}/cipher", Access::Needs(Admin), set)
        .post(
            "/v1/piles/{pile}/cipher/rotate",
            Access::Needs(Admin),
            rotate,
        )
        .delete("/v1/piles/{pile}/cipher", Access::Needs(Admin), remove)
}

fn vault(api: &Api) -> Result<&crate::revenue::vault::Vault, Response> {
    api.business.vault.as_deref().ok_or_else(|| {
        error(
            StatusCode::CONFLICT,
            "card_keys_missing",
            "pile keys are sealed with the card keys: start pylon-app with --card-keys",
        )
    })
}

async fn current(api: &Api, pile: &str) -> Result<Option<PileCipher>, Response> {
    api.business
        .pile_cipher(pile)
        .await
        .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, "cipher_unreadable", e))
}

async fn store(api: &Api, pile: &str, cipher: &PileCipher) -> Result<(), Response> {
    let json = serde_json::to_string(cipher)
        .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, "encode", e.to_string()))?;
    let sealed = vault(api)?.seal(&json);
    let known = api
        .business
        .store
        .set_pile_cipher(pile, Some(&sealed), now_ms())
        .await
        .map_err(store_error)?;
    if known {
        Ok(())
    } else {
        Err(no_pile(pile))
    }
}

fn no_pile(pile: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "no_such_pile",
        format!("pile {pile} is not registered"),
    )
}

async fn show(State(api): State<Api>, Path(pile): Path<String>) -> ApiResult {
    pile_no(&pile)?;
    let sealed = api
        .business
        .store
        .pile_cipher(&pile)
        .await
        .map_err(store_error)?;
    let cipher = sealed
        .as_ref()
        .map(|s| api.business.open_cipher(&s.sealed))
        .transpose()
        .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, "cipher_unreadable", e))?;
    Ok(Json(PileCipherState {
        pile_no: pile,
        configured: cipher.is_some(),
        mode: cipher.as_ref().map(|c| c.mode),
        padding: cipher.as_ref().map(|c| c.padding),
        iv: cipher
            .as_ref()
            .filter(|c| c.mode == Mode::Cbc)
            .map(|c| hex::encode(c.iv)),
        updated_at: sealed.map(|s| s.updated_at),
    })
    .into_response())
}

async fn set(
    State(api): State<Api>,
    Path(pile): Path<String>,
    Json(cipher): Json<PileCipher>,
) -> ApiResult {
    pile_no(&pile)?;
    store(&api, &pile, &cipher).await?;
    tracing::info!(%pile, mode = ?cipher.mode, padding = ?cipher.padding, "pile cipher set");
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn rotate(
    State(api): State<Api>,
    Path(pile): Path<String>,
    Json(input): Json<CipherRotate>,
) -> ApiResult {
    pile_no(&pile)?;
    let old = current(&api, &pile).await?;
    let iv = match &input.iv {
        Some(text) => {
            let bytes = hex::decode(text)
                .ok()
                .and_then(|b| <[u8; 8]>::try_from(b).ok());
            bytes.ok_or_else(|| {
                error(
                    StatusCode::BAD_REQUEST,
                    "bad_iv",
                    "the IV is 16 hex digits (8 bytes)",
                )
            })?
        }
        None => old.as_ref().map(|c| c.iv).unwrap_or_default(),
    };
    let cipher = PileCipher::generate(
        input
            .mode
            .or(old.as_ref().map(|c| c.mode))
            .unwrap_or_default(),
        input
            .padding
            .or(old.as_ref().map(|c| c.padding))
            .unwrap_or(Padding::Pkcs7),
        iv,
    );
    store(&api, &pile, &cipher).await?;
    tracing::info!(%pile, "pile cipher rotated; the new key applies from the pile's next login");
    Ok(Json(cipher).into_response())
}

async fn remove(State(api): State<Api>, Path(pile): Path<String>) -> ApiResult {
    pile_no(&pile)?;
    let known = api
        .business
        .store
        .set_pile_cipher(&pile, None, now_ms())
        .await
        .map_err(store_error)?;
    if !known {
        return Err(no_pile(&pile));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
