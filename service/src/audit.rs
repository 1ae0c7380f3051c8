//! Recording operator actions in the cluster's audit log. Each service holds an
//! [`Auditor`]; the control plane appends to its registry directly, edges and app
//! instances through the control plane's `Audit` gRPC service. A service without a
//! control plane (a standalone edge or app) can only write its actions to its log,
//! and says so at start.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::metrics::counter::Counter;
use pylon_proto::api::audit::AuditRecord;
use serde_json::Value;

use crate::routes::Caller;

/// Where entries go: `Ok(seq)` once the entry is in the chain.
pub trait AuditSink: Send + Sync + 'static {
    fn append(
        &self,
        record: AuditRecord,
    ) -> Pin<Box<dyn Future<Output = Result<u64, String>> + Send + '_>>;
}

/// One action to record: what, to what, and the state before and after.
pub struct Action<'a> {
    pub action: &'a str,
    pub target: &'a str,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

pub struct Auditor {
    /// `control`, `app:<id>`, `edge:<id>`.
    service: String,
    sink: Option<Arc<dyn AuditSink>>,
    /// Entries appended to the chain.
    pub appended: Counter,
    /// Actions that could not be appended (the sink failed, or there is none).
    pub failures: Counter,
}

impl Auditor {
    pub fn new(service: impl Into<String>, sink: Option<Arc<dyn AuditSink>>) -> Auditor {
        Auditor {
            service: service.into(),
            sink,
            appended: Counter::default(),
            failures: Counter::default(),
        }
    }

    /// Appends through the control plane's `Audit` gRPC service.
    pub fn remote(
        service: impl Into<String>,
        endpoints: &[String],
        cluster_token: Option<String>,
    ) -> anyhow::Result<Auditor> {
        let replicas = crate::control_link::Replicas::new(endpoints, cluster_token)?;
        Ok(Auditor::new(
            service,
            Some(Arc::new(RemoteAudit { replicas })),
        ))
    }

    /// The auditor of an edge or app instance: through the control plane if it has one;
    /// without one, actions only reach the service's log (it says so now).
    pub fn for_member(
        service: impl Into<String>,
        control: &[String],
        cluster_token: Option<String>,
    ) -> anyhow::Result<Auditor> {
        if control.is_empty() {
            tracing::warn!(
                "no control plane: operator actions are written to this log only, not to the \
                 cluster's audit log"
            );
            return Ok(Auditor::new(service, None));
        }
        Auditor::remote(service, control, cluster_token)
    }

    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register(
            "pylon_audit_appended",
            "Operator actions appended to the audit log",
            self.appended.clone(),
        );
        registry.register(
            "pylon_audit_failures",
            "Operator actions that could not be appended to the audit log",
            self.failures.clone(),
        );
    }

    /// Records what `caller` did. The action has happened: a failure to record it is
    /// logged and counted, not undone.
    pub async fn record(&self, caller: &Caller, action: Action<'_>) {
        let record = AuditRecord {
            at_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
            service: self.service.clone(),
            actor: caller.principal.user.clone(),
            role: caller.principal.role,
            token_id: caller.principal.token_id.clone(),
            action: action.action.to_owned(),
            target: action.target.to_owned(),
            before: action.before,
            after: action.after,
            source: caller.source.map(|s: SocketAddr| s.to_string()),
        };
        tracing::info!(
            target: "audit",
            actor = %record.actor,
            action = %record.action,
            target_id = %record.target,
            "operator action"
        );
        let Some(sink) = &self.sink else {
            self.failures.inc();
            return;
        };
        match sink.append(record).await {
            Ok(_) => {
                self.appended.inc();
            }
            Err(e) => {
                self.failures.inc();
                tracing::error!(action = action.action, "audit log append failed: {e}");
            }
        }
    }
}

struct RemoteAudit {
    replicas: crate::control_link::Replicas,
}

impl AuditSink for RemoteAudit {
    fn append(
        &self,
        record: AuditRecord,
    ) -> Pin<Box<dyn Future<Output = Result<u64, String>> + Send + '_>> {
        use pylon_proto::control::audit_client::AuditClient;
        use pylon_proto::control::AuditAppend;
        Box::pin(async move {
            let record_json = serde_json::to_string(&record).map_err(|e| e.to_string())?;
            let reply = self
                .replicas
                .first_answer(|channel, bearer| {
                    let request = AuditAppend {
                        record_json: record_json.clone(),
                    };
                    async move {
                        AuditClient::new(channel)
                            .append(pylon_proto::auth::with_bearer(request, bearer.as_deref()))
                            .await
                    }
                })
                .await?;
            Ok(reply.seq)
        })
    }
}
