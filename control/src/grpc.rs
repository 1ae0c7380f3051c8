//! The gRPC services: membership (register, keep alive, leave) and route push.

use std::sync::Arc;
use std::time::Duration;

use pylon_proto::auth::bearer_matches;
use pylon_proto::control::membership_server::Membership;
use pylon_proto::control::routes_server::Routes;
use pylon_proto::control::{
    AppliedReply, AppliedReport, KeepAliveReply, KeepAliveRequest, LeaveReply, LeaveRequest,
    Member, MemberKind as ProtoKind, PlatformMember, PlatformReply, PlatformRequest, RegisterReply,
    RegisterRequest, RouteUpdate, SubscribeRequest, SubscriberLag,
};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::cluster::{load_key, member_key, LoadRecord, MemberKind, MemberRecord};
use crate::metrics::{result, KindLabel};
use crate::node::ControlNode;
use crate::publisher::delta_update;
use crate::registry::RegistryError;

const MIN_TTL_SECS: u32 = 2;
const MAX_TTL_SECS: u32 = 300;

/// A call that presented the cluster token (set by [`authenticate`]).
#[derive(Clone, Copy)]
struct ClusterMember;

/// Checks the bearer token of every gRPC call. The cluster token marks the call as a
/// member's; any other token passes on to the services that also take operators (the
/// route stream, for `pylonctl routes watch`), which check it against the token store.
/// Without a cluster token (`--insecure-dev`) every call is a member's.
pub fn authenticate(
    node: Arc<ControlNode>,
) -> impl Fn(Request<()>) -> Result<Request<()>, Status> + Clone {
    move |mut req: Request<()>| {
        let header = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        let member = match node.config.cluster_token.as_deref() {
            None => true,
            Some(cluster) => bearer_matches(header, cluster),
        };
        if member {
            req.extensions_mut().insert(ClusterMember);
            return Ok(req);
        }
        if pylon_proto::auth::bearer_token(header).is_some() {
            return Ok(req);
        }
        node.metrics.bad_member_requests.inc();
        Err(Status::unauthenticated(
            "missing token: send `authorization: Bearer <cluster token>` (or an operator token \
             to watch routes)",
        ))
    }
}

fn unauthenticated(node: &ControlNode) -> Status {
    node.metrics.bad_member_requests.inc();
    Status::unauthenticated("wrong token: this call needs the cluster token")
}

/// Members only: the call must carry the cluster token.
fn require_member<T>(node: &ControlNode, request: &Request<T>) -> Result<(), Status> {
    match request.extensions().get::<ClusterMember>() {
        Some(_) => Ok(()),
        None => Err(unauthenticated(node)),
    }
}

/// A member, or an operator whose token holds `permission`.
async fn require_member_or<T>(
    node: &ControlNode,
    request: &Request<T>,
    permission: pylon_proto::auth::Permission,
) -> Result<(), Status> {
    if request.extensions().get::<ClusterMember>().is_some() {
        return Ok(());
    }
    let token = pylon_proto::auth::bearer_token(
        request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok()),
    )
    .unwrap_or_default();
    let id = pylon_proto::auth::token_id(token).unwrap_or_default();
    match node
        .identity
        .authenticate(id, &pylon_proto::auth::token_digest(token))
        .await
    {
        Ok(Some(p)) if p.role.allows(permission) => Ok(()),
        Ok(Some(_)) => Err(Status::permission_denied(format!(
            "this token's role lacks the {} permission",
            permission.as_str()
        ))),
        Ok(None) => Err(unauthenticated(node)),
        Err(e) => Err(Status::unavailable(format!("cannot check the token: {e}"))),
    }
}

fn registry_status(e: RegistryError) -> Status {
    match e {
        RegistryError::LeaseNotFound(_) => Status::not_found(format!("{e}: register again")),
        RegistryError::Unavailable(_) => Status::unavailable(e.to_string()),
        _ => Status::internal(e.to_string()),
    }
}

pub struct MembershipService {
    pub node: Arc<ControlNode>,
}

impl MembershipService {
    fn invalid(&self, msg: String) -> Status {
        self.node.metrics.bad_member_requests.inc();
        Status::invalid_argument(msg)
    }

    fn record(&self, member: Member) -> Result<MemberRecord, Status> {
        validate_id(&member.id).map_err(|m| self.invalid(m))?;
        let kind = match ProtoKind::try_from(member.kind) {
            Ok(ProtoKind::Edge) => MemberKind::Edge,
            Ok(ProtoKind::App) => MemberKind::App,
            _ => return Err(self.invalid("member kind must be EDGE or APP".into())),
        };
        for address in [
            &member.tcp_address,
            &member.tls_address,
            &member.grpc_address,
        ] {
            if !address.is_empty() {
                validate_address(address).map_err(|m| self.invalid(m))?;
            }
        }
        if !member.http_address.is_empty() {
            validate_http_url(&member.http_address).map_err(|m| self.invalid(m))?;
            // Operators' tokens go to this address: with cluster TLS, only over TLS.
            if pylon_service::tls::cluster().is_some()
                && !member.http_address.starts_with("https://")
            {
                return Err(self.invalid(format!(
                    "operator API address {:?} is plain http, but this control plane runs \
                     with cluster TLS: operators' tokens are forwarded only over https",
                    member.http_address
                )));
            }
        }
        match kind {
            MemberKind::Edge if member.tcp_address.is_empty() && member.tls_address.is_empty() => {
                return Err(self.invalid("an edge needs a TCP or a TLS address".into()));
            }
            MemberKind::App if member.grpc_address.is_empty() => {
                return Err(self.invalid("an app instance needs a gRPC address".into()));
            }
            _ => {}
        }
        if member.capacity == 0 {
            return Err(self.invalid("capacity must be at least 1".into()));
        }
        Ok(MemberRecord {
            id: member.id,
            kind,
            tcp_address: member.tcp_address,
            tls_address: member.tls_address,
            grpc_address: member.grpc_address,
            http_address: member.http_address,
            capacity: member.capacity,
            version: member.version.chars().take(64).collect(),
            lease: 0,
        })
    }

    async fn write_load(
        &self,
        record: &MemberRecord,
        load: LoadRecord,
    ) -> Result<(), RegistryError> {
        let value = serde_json::to_vec(&load).unwrap_or_default();
        self.node
            .registry
            .put(
                &load_key(record.kind, &record.id),
                value,
                Some(record.lease),
            )
            .await?;
        self.node.load_written(record.kind, &record.id, load);
        Ok(())
    }
}

impl MembershipService {
    /// The member's registration as the registry holds it now (the mirror may lag).
    async fn current(&self, kind: MemberKind, id: &str) -> Result<Option<MemberRecord>, Status> {
        if let Some(m) = self.node.view.load().state.member(kind, id) {
            return Ok(Some(m.record));
        }
        let kv = self
            .node
            .registry
            .get(&member_key(kind, id))
            .await
            .map_err(|e| registry_status(self.node.registry_error("get", e)))?;
        Ok(kv.and_then(|kv| serde_json::from_slice(&kv.value).ok()))
    }

    /// The member `id` as registered under `lease`, of either kind; NOT_FOUND when the
    /// id is registered under another lease (the caller was replaced) or not at all.
    async fn owned(&self, id: &str, lease: i64) -> Result<MemberRecord, Status> {
        for kind in [MemberKind::Edge, MemberKind::App] {
            if let Some(record) = self.current(kind, id).await? {
                if record.lease == lease {
                    return Ok(record);
                }
                return Err(Status::not_found(format!(
                    "member {id:?} is registered under another lease now: register again"
                )));
            }
        }
        Err(Status::not_found(format!(
            "member {id:?} is not registered: register again"
        )))
    }
}

/// Member ids go into registry keys and metrics: keep them plain.
fn validate_id(id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "member id {id:?} must be 1 to 64 characters of letters, digits, '-', '_' or '.'"
        ))
    }
}

fn validate_address(address: &str) -> Result<(), String> {
    let valid = address
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
    if valid {
        Ok(())
    } else {
        Err(format!("address {address:?} is not host:port"))
    }
}

/// An operator API base URL: `http://host:port` or `https://host:port`, nothing more.
fn validate_http_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    match rest {
        Some(address) if url.len() <= 256 && !address.contains('/') => validate_address(address)
            .map_err(|_| format!("operator API address {url:?} is not http(s)://host:port")),
        _ => Err(format!(
            "operator API address {url:?} is not http(s)://host:port"
        )),
    }
}

#[tonic::async_trait]
impl Membership for MembershipService {
    async fn register(
        &self,
        request: Request<RegisterRequest>,
    ) -> Result<Response<RegisterReply>, Status> {
        require_member(&self.node, &request)?;
        let request = request.into_inner();
        let member = request
            .member
            .ok_or_else(|| self.invalid("register without a member".into()))?;
        let mut record = self.record(member)?;
        let ttl = match request.ttl_seconds {
            0 => self.node.config.member_ttl_secs,
            t => t.clamp(MIN_TTL_SECS, MAX_TTL_SECS),
        };
        let node = &self.node;
        let previous = self.current(record.kind, &record.id).await?;
        if let Some(old) = &previous {
            // The same addresses: the process restarted, or re-registers after losing its
            // lease. Other addresses: a second process claims the id; refuse it rather
            // than let the two evict each other forever.
            let same_place = old.tcp_address == record.tcp_address
                && old.tls_address == record.tls_address
                && old.grpc_address == record.grpc_address
                && old.http_address == record.http_address;
            if !same_place {
                node.metrics.bad_member_requests.inc();
                tracing::warn!(member = %record.id, "a second process claims a registered member id: refused");
                return Err(Status::already_exists(format!(
                    "member id {:?} is registered by another process (tcp {:?}, tls {:?}, grpc {:?}); give every {} its own id",
                    record.id, old.tcp_address, old.tls_address, old.grpc_address, record.kind.as_str()
                )));
            }
        }
        let lease = node
            .registry
            .grant_lease(Duration::from_secs(ttl.into()))
            .await
            .map_err(|e| registry_status(node.registry_error("grant_lease", e)))?;
        record.lease = lease;
        let value = serde_json::to_vec(&record).unwrap_or_default();
        // New keys first, then the old lease goes: the member never vanishes in between,
        // and the old lease, now holding no keys, tells a stale process it was replaced.
        let written = async {
            self.write_load(&record, LoadRecord::default()).await?;
            node.registry
                .put(&member_key(record.kind, &record.id), value, Some(lease))
                .await?;
            if let Some(old) = previous.filter(|old| old.lease != lease) {
                node.registry.revoke(old.lease).await?;
            }
            Ok::<_, RegistryError>(())
        }
        .await;
        if let Err(e) = written {
            let _ = node.registry.revoke(lease).await;
            return Err(registry_status(node.registry_error("register", e)));
        }
        node.registry_ok();
        node.metrics
            .registrations
            .get_or_create(&KindLabel {
                kind: record.kind.as_str().into(),
            })
            .inc();
        tracing::info!(
            member = %record.id, kind = record.kind.as_str(), lease, ttl,
            tcp = %record.tcp_address, tls = %record.tls_address, grpc = %record.grpc_address,
            capacity = record.capacity, "member registered"
        );
        Ok(Response::new(RegisterReply {
            lease_id: lease,
            ttl_seconds: ttl,
        }))
    }

    async fn keep_alive(
        &self,
        request: Request<KeepAliveRequest>,
    ) -> Result<Response<KeepAliveReply>, Status> {
        require_member(&self.node, &request)?;
        let request = request.into_inner();
        let node = &self.node;
        let record = match self.owned(&request.member_id, request.lease_id).await {
            Ok(record) => record,
            Err(status) => {
                node.metrics
                    .keepalives
                    .get_or_create(&result("expired"))
                    .inc();
                return Err(status);
            }
        };
        let ttl = match node.registry.keep_alive(request.lease_id).await {
            Ok(ttl) => ttl,
            Err(e) => {
                let label = if matches!(e, RegistryError::LeaseNotFound(_)) {
                    "expired"
                } else {
                    "error"
                };
                node.metrics.keepalives.get_or_create(&result(label)).inc();
                return Err(registry_status(node.registry_error("keepalive", e)));
            }
        };
        node.registry_ok();
        node.metrics.keepalives.get_or_create(&result("ok")).inc();
        if let Some(load) = request.load {
            let load = LoadRecord {
                sessions: load.sessions,
                leaving: load.leaving,
            };
            let stored = node
                .view
                .load()
                .state
                .member(record.kind, &record.id)
                .map(|m| m.load);
            if stored != Some(load)
                && node.load_changed(record.kind, &record.id, record.capacity, load)
            {
                if let Err(e) = self.write_load(&record, load).await {
                    tracing::warn!(member = %record.id, "cannot record load: {e}");
                }
            }
        }
        if let Some(telemetry) = &request.telemetry {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            if let Some(due) = node.telemetry_due(record.kind, &record.id, telemetry, now) {
                let value = serde_json::to_vec(&due).unwrap_or_default();
                let key = crate::cluster::telemetry_key(record.kind, &record.id);
                if let Err(e) = node.registry.put(&key, value, Some(record.lease)).await {
                    tracing::warn!(member = %record.id, "cannot record telemetry: {e}");
                }
            }
        }
        Ok(Response::new(KeepAliveReply {
            ttl_seconds: ttl.as_secs() as u32,
        }))
    }

    async fn leave(&self, request: Request<LeaveRequest>) -> Result<Response<LeaveReply>, Status> {
        require_member(&self.node, &request)?;
        let request = request.into_inner();
        self.owned(&request.member_id, request.lease_id).await?;
        self.node
            .registry
            .revoke(request.lease_id)
            .await
            .map_err(|e| registry_status(self.node.registry_error("revoke", e)))?;
        tracing::info!(member = %request.member_id, "member left");
        Ok(Response::new(LeaveReply {}))
    }

    async fn platform(
        &self,
        request: Request<PlatformRequest>,
    ) -> Result<Response<PlatformReply>, Status> {
        require_member(&self.node, &request)?;
        let node = &self.node;
        if !node.ready.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(Status::unavailable(
                "this replica has not read the registry yet; retry shortly",
            ));
        }
        let view = node.view.load();
        let state = &view.state;
        let members = |kind: MemberKind| {
            state
                .members(kind)
                .into_iter()
                .map(|m| PlatformMember {
                    cert_not_after: state
                        .telemetry(kind, &m.record.id)
                        .map_or(0, |t| t.cert_not_after),
                    leaving: m.load.leaving,
                    id: m.record.id,
                })
                .collect()
        };
        Ok(Response::new(PlatformReply {
            replica: node.config.replica_id.clone(),
            edges: members(MemberKind::Edge),
            apps: members(MemberKind::App),
            lags: node
                .publisher
                .lags()
                .into_iter()
                .map(|l| SubscriberLag {
                    id: l.name,
                    lag_seconds: l.seconds,
                })
                .collect(),
            cert_not_after: pylon_service::tls::cluster().map_or(0, |t| t.not_after.get()),
        }))
    }
}

pub struct RoutesService {
    pub node: Arc<ControlNode>,
}

#[tonic::async_trait]
impl Routes for RoutesService {
    type SubscribeStream = ReceiverStream<Result<RouteUpdate, Status>>;

    async fn subscribe(
        &self,
        request: Request<SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        require_member_or(&self.node, &request, pylon_proto::auth::Permission::Read).await?;
        let name = request.into_inner().subscriber_id;
        if !self.node.ready.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(Status::unavailable(
                "this replica has not read the registry yet; retry shortly",
            ));
        }
        if name.is_empty() || name.len() > 128 {
            self.node.metrics.bad_member_requests.inc();
            return Err(Status::invalid_argument(
                "subscriber_id must be 1 to 128 characters",
            ));
        }
        let node = self.node.clone();
        let mut subscription = node.publisher.subscribe(&name);
        let (tx, rx) = mpsc::channel(16);
        tracing::info!(subscriber = %name, version = subscription.first.version, "route subscriber connected");
        tokio::spawn(async move {
            let mut at = subscription.first.version;
            let first = subscription.first.clone();
            node.metrics.snapshots_sent.inc();
            if tx.send(Ok(first)).await.is_err() {
                return;
            }
            loop {
                let update = tokio::select! {
                    r = subscription.updates.recv() => r,
                    _ = tx.closed() => break,
                };
                let update = match update {
                    Ok(p) if p.base_version == at => {
                        node.metrics.deltas_sent.inc();
                        delta_update(&p)
                    }
                    Ok(p) if p.version <= at => continue,
                    // A gap (this stream fell behind the broadcast buffer): resynchronise.
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {
                        node.metrics.snapshots_sent.inc();
                        node.publisher.snapshot()
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                };
                at = update.version;
                if tx.send(Ok(update)).await.is_err() {
                    break;
                }
            }
            tracing::info!(subscriber = %name, "route subscriber gone");
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn report_applied(
        &self,
        request: Request<AppliedReport>,
    ) -> Result<Response<AppliedReply>, Status> {
        // Operators watching routes (`pylonctl routes watch`) report too: their lag shows.
        require_member_or(&self.node, &request, pylon_proto::auth::Permission::Read).await?;
        let report = request.into_inner();
        self.node
            .publisher
            .applied(&report.subscriber_id, report.version);
        Ok(Response::new(AppliedReply {}))
    }
}

/// Token checks for the services that take operator calls (edges, app instances).
pub struct IdentityService {
    pub node: Arc<ControlNode>,
}

#[tonic::async_trait]
impl pylon_proto::control::identity_server::Identity for IdentityService {
    async fn authenticate(
        &self,
        request: Request<pylon_proto::control::AuthenticateRequest>,
    ) -> Result<Response<pylon_proto::control::AuthenticateReply>, Status> {
        require_member(&self.node, &request)?;
        let request = request.into_inner();
        let principal = self
            .node
            .identity
            .authenticate(&request.token_id, &request.digest)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(Response::new(match principal {
            Some(p) => pylon_proto::control::AuthenticateReply {
                valid: true,
                user: p.user,
                role: p.role.as_str().into(),
                token_id: p.token_id.unwrap_or_default(),
                cache_secs: 10,
            },
            None => pylon_proto::control::AuthenticateReply::default(),
        }))
    }
}

/// The audit log's writer for edges and app instances.
pub struct AuditService {
    pub node: Arc<ControlNode>,
}

#[tonic::async_trait]
impl pylon_proto::control::audit_server::Audit for AuditService {
    async fn append(
        &self,
        request: Request<pylon_proto::control::AuditAppend>,
    ) -> Result<Response<pylon_proto::control::AuditAppended>, Status> {
        require_member(&self.node, &request)?;
        let record: pylon_proto::api::audit::AuditRecord =
            serde_json::from_str(&request.into_inner().record_json)
                .map_err(|e| Status::invalid_argument(format!("not an audit record: {e}")))?;
        let seq = self.node.audit.append(record).await.map_err(|e| {
            if e.is_transient() {
                Status::unavailable(e.to_string())
            } else {
                // The member drops the entry (counted there) instead of offering it
                // again forever.
                Status::failed_precondition(e.to_string())
            }
        })?;
        Ok(Response::new(pylon_proto::control::AuditAppended { seq }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_addresses_are_checked() {
        assert!(validate_id("edge-1.a_b").is_ok());
        assert!(validate_id("").is_err());
        assert!(validate_id("a/b").is_err());
        assert!(validate_id(&"x".repeat(65)).is_err());
        assert!(validate_address("10.0.0.1:8768").is_ok());
        assert!(validate_address("[::1]:8768").is_ok());
        assert!(validate_address("host").is_err());
        assert!(validate_address("host:0").is_err());
        assert!(validate_address(":80").is_err());
    }
}
