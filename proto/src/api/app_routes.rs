//! The app service's operator routes: method, path, the permission each needs, and which
//! app instance can answer it. The app declares exactly these (a test in `app` holds it
//! to that); the control plane forwards operators' calls by them, so an operator needs
//! only the control plane's address.

use crate::auth::Permission::{self, Admin, Command, Finance, Read};

/// Which app instance answers a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// Any live instance: the answer comes from the store they share.
    Any,
    /// The instance owning the shard of the pile in the path's `{pile}`: it holds the
    /// pile's business stream (commands, live status).
    PathPile,
    /// The owner of the pile a trade number starts with (`{trade_no}`: the pile's 14
    /// digits, then the gun and a sequence).
    PathTrade,
    /// The owner of the pile named by the JSON body's `pile` field.
    BodyPile,
    /// Every live instance, the answers merged: what each instance knows only of its
    /// own piles (`/v1/stats`).
    Every,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppRoute {
    pub method: &'static str,
    /// As axum writes it: `/v1/piles/{pile}`.
    pub path: &'static str,
    pub permission: Permission,
    pub owner: Owner,
}

const fn route(
    method: &'static str,
    path: &'static str,
    permission: Permission,
    owner: Owner,
) -> AppRoute {
    AppRoute {
        method,
        path,
        permission,
        owner,
    }
}

use Owner::{Any, BodyPile, Every, PathPile, PathTrade};

/// Every operator route of `pylon-app` (besides `/metrics`, `/healthz`, `/readyz`).
pub const OPERATOR_ROUTES: &[AppRoute] = &[
    route("GET", "/v1/piles", Read, Any),
    route("POST", "/v1/piles", Command, Any),
    route("GET", "/v1/piles/{pile}", Read, PathPile),
    route("PUT", "/v1/piles/{pile}", Command, Any),
    route("GET", "/v1/piles/{pile}/records", Read, Any),
    route("GET", "/v1/piles/{pile}/history", Read, Any),
    route("POST", "/v1/piles/{pile}/commands", Command, PathPile),
    route("GET", "/v1/orders", Read, Any),
    route("GET", "/v1/orders/{trade_no}", Read, Any),
    route("POST", "/v1/orders/{trade_no}/stop", Command, PathTrade),
    route("GET", "/v1/records/{trade_no}", Read, Any),
    route("GET", "/v1/billing-models/{n}", Read, Any),
    route("PUT", "/v1/billing-models/{n}", Finance, Any),
    route("GET", "/v1/stats", Read, Every),
    route("GET", "/v1/stations", Read, Any),
    route("POST", "/v1/stations", Command, Any),
    route("GET", "/v1/stations/{id}", Read, Any),
    route("PUT", "/v1/stations/{id}", Command, Any),
    route("POST", "/v1/stations/{id}/tariff", Finance, Any),
    route("POST", "/v1/stations/{id}/offline-cards", Command, Any),
    route("PUT", "/v1/piles/{pile}/station", Command, PathPile),
    route("GET", "/v1/tariffs", Read, Any),
    route("POST", "/v1/tariffs", Finance, Any),
    route("GET", "/v1/tariffs/{id}", Read, Any),
    route("PUT", "/v1/tariffs/{id}", Finance, Any),
    route("GET", "/v1/accounts", Finance, Any),
    route("POST", "/v1/accounts", Finance, Any),
    route("GET", "/v1/accounts/{id}", Finance, Any),
    route("PUT", "/v1/accounts/{id}", Finance, Any),
    route("POST", "/v1/accounts/{id}/cards", Finance, Any),
    route("POST", "/v1/accounts/{id}/cards/remove", Finance, Any),
    route("POST", "/v1/accounts/{id}/vins", Finance, Any),
    route("POST", "/v1/accounts/{id}/vins/remove", Finance, Any),
    route("POST", "/v1/accounts/{id}/top-up", Finance, Any),
    route("POST", "/v1/accounts/{id}/refund", Finance, Any),
    route("POST", "/v1/accounts/{id}/adjust", Finance, Any),
    route("POST", "/v1/accounts/{id}/freeze", Finance, Any),
    route("POST", "/v1/accounts/{id}/unfreeze", Finance, Any),
    route("GET", "/v1/accounts/{id}/ledger", Finance, Any),
    route("POST", "/v1/accounts/{id}/charge", Command, BodyPile),
    route("GET", "/v1/reports/daily", Finance, Any),
    route("GET", "/v1/reports/reconciliation", Finance, Any),
    route("GET", "/v1/discrepancies", Finance, Any),
    route("GET", "/v1/quarantine", Finance, Any),
    route("POST", "/v1/card-keys/rotate", Admin, Any),
    route("GET", "/v1/piles/{pile}/cipher", Read, Any),
    route("PUT", "/v1/piles/{pile}/cipher", Admin, Any),
    route("POST", "/v1/piles/{pile}/cipher/rotate", Admin, Any),
    route("DELETE", "/v1/piles/{pile}/cipher", Admin, Any),
    route("GET", "/v1/accounts/{id}/export", Finance, Any),
    route("POST", "/v1/accounts/{id}/erase", Finance, Any),
    route("POST", "/v1/retention/run", Admin, Any),
    route("GET", "/v1/fleet", Read, Any),
    route("GET", "/v1/fleet/piles", Read, Any),
    route("GET", "/v1/fleet/history", Read, Any),
    route("GET", "/v1/piles/{pile}/samples", Read, Any),
    route("GET", "/v1/alarms", Read, Any),
    route("POST", "/v1/alarms", Admin, Any),
    route("POST", "/v1/alarms/clear", Admin, Any),
    route("GET", "/v1/alarms/{id}", Read, Any),
    route("POST", "/v1/alarms/{id}/ack", Command, Any),
    route("POST", "/v1/alarms/{id}/resolve", Command, Any),
];
