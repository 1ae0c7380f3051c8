//! `/v1/admin/dr/*`: the site's disaster-recovery state, its promotion and demotion, and
//! the registry export the other site mirrors.

use std::collections::HashMap;
use std::time::Instant;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use std::sync::Arc;

use axum::extract::Request;
use axum::middleware::Next;
use pylon_proto::api::dr::{
    DemoteRequest, DrStatus, MirrorStatus, PeerStatus, PromoteReply, PromoteRequest, SiteRole,
};
use pylon_service::audit::Action;
use pylon_service::http::error;
use pylon_service::routes::{Access, Caller, Routes};

use super::peer::PeerError;
use super::{store, KnownRole};
use crate::http::Http;
use crate::node::ControlNode;

pub fn routes(routes: Routes<Http>) -> Routes<Http> {
    use pylon_proto::auth::Permission::{Admin, Read};
    routes
        .get("/v1/admin/dr/status", Access::Needs(Read), status)
        .post("/v1/admin/dr/promote", Access::Needs(Admin), promote)
        .post("/v1/admin/dr/demote", Access::Needs(Admin), demote)
        // Password hashes and token digests: admin only.
        .get("/v1/admin/dr/export", Access::Needs(Admin), export)
}

/// The site's role, once this replica has read it.
fn role_of(node: &ControlNode) -> Option<SiteRole> {
    match node.dr.role() {
        KnownRole::Known(role) => Some(role),
        KnownRole::Unknown => None,
    }
}

fn role_unknown() -> Response {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "role_unknown",
        "this replica has not read the site's role from the registry yet; retry",
    )
}

async fn status(State(s): State<Http>, Query(q): Query<HashMap<String, String>>) -> Response {
    let node = s.node();
    let Some(role) = role_of(node) else {
        return role_unknown();
    };
    // The other site asks with ?peer=false: its own role only, quickly (two sites never
    // ask each other in turn, and its short timeout is not spent on our store).
    let full = q.get("peer").is_none_or(|v| v != "false");
    Json(site_status(node, role, full).await).into_response()
}

/// This site's state; with `full`, also the other site's and the store's.
async fn site_status(node: &ControlNode, role: SiteRole, full: bool) -> DrStatus {
    let config = &node.config.dr;
    let peer = match (&node.dr.peer, full) {
        (Some(peer), true) => Some(match peer.status().await {
            Ok(theirs) => PeerStatus {
                url: peer.url.clone(),
                reachable: true,
                role: Some(theirs.role),
                error: None,
            },
            Err(e) => PeerStatus {
                url: peer.url.clone(),
                reachable: false,
                role: None,
                error: Some(e.to_string()),
            },
        }),
        (Some(peer), false) => Some(PeerStatus {
            url: peer.url.clone(),
            reachable: false,
            role: None,
            error: Some("not asked".into()),
        }),
        (None, _) => None,
    };
    let store = match &config.store_url {
        Some(_) if full => Some(store::status(config).await),
        _ => None,
    };
    let mirror = (role == SiteRole::Standby).then(|| mirror_now(node));
    DrStatus {
        site: config.site.clone(),
        role,
        role_since_ms: node.dr.since_ms(),
        peer,
        store,
        mirror,
    }
}

/// The mirror's status with its age as of now.
fn mirror_now(node: &ControlNode) -> MirrorStatus {
    let mut mirror = node.dr.mirror.lock().map(|m| m.clone()).unwrap_or_default();
    mirror.age_secs = (mirror.last_ok_ms > 0)
        .then(|| (super::now_ms() - mirror.last_ok_ms).max(0) as f64 / 1000.0);
    mirror
}

async fn promote(
    State(node): State<Arc<ControlNode>>,
    Extension(caller): Extension<Caller>,
    body: Option<Json<PromoteRequest>>,
) -> Response {
    let request = body.map(|Json(b)| b).unwrap_or_default();
    // Once begun, a promotion runs to its end even if the caller goes away: a store
    // promoted without the role written would take no chargers.
    tokio::spawn(async move { promote_site(&node, &caller, request).await })
        .await
        .unwrap_or_else(|e| {
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "promotion_failed",
                format!("the promotion stopped: {e}"),
            )
        })
}

async fn promote_site(node: &ControlNode, caller: &Caller, request: PromoteRequest) -> Response {
    let started = Instant::now();
    match role_of(node) {
        Some(SiteRole::Standby) => {}
        Some(SiteRole::Primary) => {
            return error(
                StatusCode::CONFLICT,
                "already_primary",
                format!("site {:?} is already the primary", node.config.dr.site),
            )
        }
        None => return role_unknown(),
    }
    // Two primaries would take the same chargers and write two diverging stores: the
    // other site must be gone, or the operator must know it is cut off.
    if let (Some(peer), false) = (&node.dr.peer, request.force) {
        match peer.status().await {
            Ok(theirs) if theirs.role == SiteRole::Primary => {
                return error(
                    StatusCode::CONFLICT,
                    "peer_is_primary",
                    format!(
                        "the primary site ({}) answers and is still primary: promoting now \
                         would make two. Stop it (or demote it), or pass --force if it is \
                         cut off from chargers",
                        peer.url
                    ),
                );
            }
            Ok(_) | Err(PeerError::Unreachable(_)) => {}
            Err(PeerError::Failed(e)) => {
                return error(
                    StatusCode::CONFLICT,
                    "peer_unknown",
                    format!(
                        "the other site answers, but its role cannot be read ({e}): it may \
                         still be primary. Pass --force if it is lost or cut off"
                    ),
                );
            }
        }
    }
    let mirror_age_secs = mirror_now(node).age_secs;
    let (store_promoted, store_lsn) = if node.config.dr.store_url.is_some() {
        match store::promote(&node.config.dr).await {
            Ok(done) => done,
            Err(e) => {
                tracing::error!("promotion failed: the store was not promoted: {e:#}");
                return error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_not_promoted",
                    format!("the store was not promoted, so neither is the site: {e:#}"),
                );
            }
        }
    } else {
        (false, None)
    };
    if let Err(e) = super::write_role(node, SiteRole::Primary, &caller.principal.user).await {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "registry_unavailable",
            format!("the store is promoted, but the role was not written (promote again): {e:#}"),
        );
    }
    let reply = PromoteReply {
        site: node.config.dr.site.clone(),
        role: SiteRole::Primary,
        store_promoted,
        store_lsn,
        mirror_age_secs,
        took_secs: started.elapsed().as_secs_f64(),
    };
    tracing::warn!(
        site = %reply.site,
        store_promoted,
        by = %caller.principal.user,
        "this site is now the primary: its dispatch sends chargers to its edges"
    );
    let after = serde_json::to_value(&reply).ok();
    node.auditor
        .record(
            caller,
            Action {
                action: "dr.promote",
                target: &reply.site,
                before: Some(serde_json::json!({ "role": "standby", "force": request.force })),
                after,
            },
        )
        .await;
    Json(reply).into_response()
}

/// Marks this site a standby again (after it was rebuilt as a replica of the new
/// primary): its dispatch turns chargers away and it mirrors the other site.
async fn demote(
    State(s): State<Http>,
    Extension(caller): Extension<Caller>,
    body: Option<Json<DemoteRequest>>,
) -> Response {
    let node = s.node();
    let request = body.map(|Json(b)| b).unwrap_or_default();
    if node.dr.peer.is_none() {
        return error(
            StatusCode::CONFLICT,
            "no_peer",
            "this site has no [dr] peer to follow: it stays primary",
        );
    }
    match role_of(node) {
        Some(SiteRole::Primary) => {}
        Some(SiteRole::Standby) => {
            return error(
                StatusCode::CONFLICT,
                "already_standby",
                format!("site {:?} is already a standby", node.config.dr.site),
            )
        }
        None => return role_unknown(),
    }
    // Demoting the only primary would turn every charger away.
    if !request.force {
        if let Some(why) = demotion_refused(node).await {
            return error(StatusCode::CONFLICT, "demotion_refused", why);
        }
    }
    if let Err(e) = super::write_role(node, SiteRole::Standby, &caller.principal.user).await {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "registry_unavailable",
            format!("{e:#}"),
        );
    }
    tracing::warn!(by = %caller.principal.user, "this site is now a standby: its dispatch turns chargers away");
    node.auditor
        .record(
            &caller,
            Action {
                action: "dr.demote",
                target: &node.config.dr.site,
                before: Some(serde_json::json!({ "role": "primary" })),
                after: Some(serde_json::json!({ "role": "standby" })),
            },
        )
        .await;
    Json(site_status(node, SiteRole::Standby, false).await).into_response()
}

/// Why this site should not be demoted now, if it should not.
async fn demotion_refused(node: &ControlNode) -> Option<String> {
    let peer = node.dr.peer.as_ref()?;
    match peer.status().await {
        Ok(theirs) if theirs.role == SiteRole::Primary => {}
        Ok(_) => {
            return Some(format!(
                "the other site ({}) is not primary: demoting this one would leave none. \
                 Pass --force to demote anyway",
                peer.url
            ))
        }
        Err(e) => {
            return Some(format!(
                "the other site's role cannot be read ({e}): demoting this one may leave no \
                 primary. Pass --force to demote anyway"
            ))
        }
    }
    if node.config.dr.store_url.is_some() {
        let store = store::status(&node.config.dr).await;
        if store.error.is_none() && !store.in_recovery {
            return Some(
                "this site's store still takes writes: rebuild it as a standby of the other \
                 site's first (pg_basebackup or pg_rewind), or pass --force"
                    .into(),
            );
        }
    }
    None
}

/// On a standby, operators and tokens are the primary site's, copied here: a change made
/// here would be undone by the next copy, so it is refused (logging in and out is not).
pub async fn refuse_identity_changes_on_a_standby(
    State(s): State<Http>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    let identity_change = request.method() != axum::http::Method::GET
        && (path.starts_with("/v1/admin/users") || path.starts_with("/v1/admin/tokens"));
    if identity_change && s.node().dr.role() == KnownRole::Known(SiteRole::Standby) {
        return error(
            StatusCode::CONFLICT,
            "standby_site",
            "this site is a disaster-recovery standby: its operators and tokens are copied \
             from the primary site. Change them there",
        );
    }
    next.run(request).await
}

async fn export(State(s): State<Http>) -> Response {
    match super::mirror::export(s.node()).await {
        Ok(export) => Json(export).into_response(),
        Err(e) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "registry_unavailable",
            format!("{e:#}"),
        ),
    }
}
