//! Recording operator actions in the cluster's audit log. Each service holds an
//! [`Auditor`]; the control plane appends to its registry directly, edges and app
//! instances through the control plane's `Audit` gRPC service. A service without a
//! control plane (a standalone edge or app) can only write its actions to its log,
//! and says so at start.
//!
//! An action is recorded after it succeeded. When the control plane cannot take the entry
//! (it is restarting, or out of reach), the entry waits in a backlog, in order, and a task
//! keeps offering it with growing pauses until it is in the chain: an outage of the
//! control plane delays entries but does not lose them, unless the process ends first or
//! the backlog ([`BACKLOG_MAX`]) is full, which is logged and counted. A retried append
//! whose first try reached the chain but whose answer was lost appears twice.

use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use pylon_proto::api::audit::AuditRecord;
use serde_json::Value;

use crate::routes::Caller;

/// Why an entry did not go in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppendError {
    /// The audit log is out of reach or busy: the entry may go in later.
    #[error("{0}")]
    Retry(String),
    /// The audit log will not take this entry, however often it is offered.
    #[error("refused: {0}")]
    Refused(String),
}

/// Where entries go: `Ok(seq)` once the entry is in the chain.
pub trait AuditSink: Send + Sync + 'static {
    fn append(
        &self,
        record: AuditRecord,
    ) -> Pin<Box<dyn Future<Output = Result<u64, AppendError>> + Send + '_>>;
}

/// One action to record: what, to what, and the state before and after.
pub struct Action<'a> {
    pub action: &'a str,
    pub target: &'a str,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

/// Entries kept while the sink cannot take them; beyond, the oldest are lost.
pub const BACKLOG_MAX: usize = 10_000;
/// Pauses between offers of the backlog's first entry: from this, doubling...
const RETRY_FIRST: Duration = Duration::from_millis(500);
/// ...up to this.
const RETRY_MAX: Duration = Duration::from_secs(30);

pub struct Auditor {
    /// `control`, `app:<id>`, `edge:<id>`.
    service: String,
    sink: Option<Arc<dyn AuditSink>>,
    backlog: Arc<Mutex<Backlog>>,
    /// Entries appended to the chain.
    pub appended: Counter,
    /// Actions lost to the audit log: there is none, or the backlog was full.
    pub failures: Counter,
    /// Entries waiting for the audit log to take them.
    pub waiting: Gauge,
    retry_first: Duration,
    /// Cuts the draining task's pause short (on the way out).
    wake: Arc<tokio::sync::Notify>,
}

/// Entries the sink has not taken yet, oldest first, and whether a task is offering them.
#[derive(Default)]
struct Backlog {
    records: VecDeque<AuditRecord>,
    draining: bool,
    /// An entry is out of `records`, being offered.
    in_flight: bool,
}

fn lock(backlog: &Mutex<Backlog>) -> MutexGuard<'_, Backlog> {
    backlog.lock().unwrap_or_else(|p| p.into_inner())
}

impl Auditor {
    pub fn new(service: impl Into<String>, sink: Option<Arc<dyn AuditSink>>) -> Auditor {
        Auditor {
            service: service.into(),
            sink,
            backlog: Arc::default(),
            appended: Counter::default(),
            failures: Counter::default(),
            waiting: Gauge::default(),
            retry_first: RETRY_FIRST,
            wake: Arc::default(),
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
            "Operator actions lost to the audit log (there is none, or its backlog was full)",
            self.failures.clone(),
        );
        let configured = Gauge::<i64>::default();
        configured.set(i64::from(self.sink.is_some()));
        registry.register(
            "pylon_audit_sink",
            "1 when this service has an audit log to append to (a control plane)",
            configured,
        );
        registry.register(
            "pylon_audit_backlog",
            "Operator actions waiting for the audit log to take them",
            self.waiting.clone(),
        );
    }

    /// Records what `caller` did. The action has happened: an entry the audit log cannot
    /// take now waits in the backlog (see the module documentation).
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
        // Behind a backlog, the entry waits its turn: the chain keeps the actions' order.
        let record = {
            let mut backlog = lock(&self.backlog);
            if backlog.draining {
                self.enqueue(&mut backlog, record);
                return;
            }
            record
        };
        match sink.append(record.clone()).await {
            Ok(_) => {
                self.appended.inc();
            }
            Err(AppendError::Refused(e)) => {
                self.failures.inc();
                tracing::error!(
                    action = %record.action,
                    actor = %record.actor,
                    "the audit log refused this entry; it is lost: {e}"
                );
            }
            Err(AppendError::Retry(e)) => {
                tracing::error!(
                    action = %record.action,
                    "audit log append failed, kept to retry: {e}"
                );
                let mut backlog = lock(&self.backlog);
                self.enqueue(&mut backlog, record);
                if !backlog.draining {
                    backlog.draining = true;
                    tokio::spawn(drain(
                        sink.clone(),
                        self.backlog.clone(),
                        [self.appended.clone(), self.failures.clone()],
                        self.waiting.clone(),
                        self.retry_first,
                        self.wake.clone(),
                    ));
                }
            }
        }
    }

    /// On the way out: waits up to `limit` for the backlog to drain, then counts (and
    /// logs) what is still waiting as lost.
    pub async fn flush(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        // Offer the backlog now rather than after the current pause.
        self.wake.notify_one();
        loop {
            let waiting = {
                let b = lock(&self.backlog);
                b.records.len() + usize::from(b.in_flight)
            };
            if waiting == 0 {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                self.failures.inc_by(waiting as u64);
                tracing::error!(
                    waiting,
                    "stopping with operator actions the audit log has not taken: they are lost"
                );
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn enqueue(&self, backlog: &mut Backlog, record: AuditRecord) {
        if backlog.records.len() >= BACKLOG_MAX {
            if let Some(lost) = backlog.records.pop_front() {
                self.failures.inc();
                tracing::error!(
                    action = %lost.action,
                    actor = %lost.actor,
                    "audit backlog full: the oldest waiting entry is lost"
                );
            }
        }
        backlog.records.push_back(record);
        self.waiting.set(backlog.records.len() as i64);
    }
}

/// Offers the backlog's entries to `sink`, oldest first, pausing longer after each
/// failure, until the backlog is empty. The entry on offer is out of the backlog (so a
/// full backlog cannot drop it meanwhile) and goes back to its front if it must wait.
async fn drain(
    sink: Arc<dyn AuditSink>,
    backlog: Arc<Mutex<Backlog>>,
    [appended, failures]: [Counter; 2],
    waiting: Gauge,
    retry_first: Duration,
    wake: Arc<tokio::sync::Notify>,
) {
    let mut pause = retry_first;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = wake.notified() => {}
        }
        loop {
            let next = {
                let mut b = lock(&backlog);
                match b.records.pop_front() {
                    Some(record) => {
                        b.in_flight = true;
                        record
                    }
                    None => {
                        b.draining = false;
                        waiting.set(0);
                        return;
                    }
                }
            };
            let outcome = sink.append(next.clone()).await;
            let mut b = lock(&backlog);
            b.in_flight = false;
            match outcome {
                Ok(_) => {
                    appended.inc();
                    waiting.set(b.records.len() as i64);
                    pause = retry_first;
                }
                Err(AppendError::Refused(e)) => {
                    failures.inc();
                    waiting.set(b.records.len() as i64);
                    drop(b);
                    tracing::error!(
                        action = %next.action,
                        actor = %next.actor,
                        "the audit log refused a waiting entry; it is lost: {e}"
                    );
                }
                Err(AppendError::Retry(e)) => {
                    b.records.push_front(next);
                    waiting.set(b.records.len() as i64);
                    drop(b);
                    tracing::warn!("the audit log still cannot take the waiting entries: {e}");
                    pause = (pause * 2).min(RETRY_MAX);
                    break;
                }
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
    ) -> Pin<Box<dyn Future<Output = Result<u64, AppendError>> + Send + '_>> {
        use pylon_proto::control::audit_client::AuditClient;
        use pylon_proto::control::AuditAppend;
        Box::pin(async move {
            let record_json =
                serde_json::to_string(&record).map_err(|e| AppendError::Refused(e.to_string()))?;
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
                .await;
            // Some refusals say the entry will never go in.
            reply.map(|r| r.seq).map_err(|e| match e.code {
                Some(code) if is_final(code) => AppendError::Refused(e.message),
                _ => AppendError::Retry(e.message),
            })
        })
    }
}

/// Whether a gRPC refusal is about the entry itself (offering it again cannot help).
fn is_final(code: tonic::Code) -> bool {
    use tonic::Code::*;
    matches!(
        code,
        InvalidArgument | FailedPrecondition | OutOfRange | AlreadyExists | Unimplemented
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use pylon_proto::auth::{Principal, Role};
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Refuses the first `refusals` appends, then keeps every entry.
    #[derive(Default)]
    struct Flaky {
        refusals: AtomicU32,
        /// Each append takes this long.
        delay_ms: std::sync::atomic::AtomicU64,
        kept: Mutex<Vec<String>>,
    }

    impl AuditSink for Flaky {
        fn append(
            &self,
            record: AuditRecord,
        ) -> Pin<Box<dyn Future<Output = Result<u64, AppendError>> + Send + '_>> {
            Box::pin(async move {
                let delay = self.delay_ms.load(Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(delay)).await;
                if self.refusals.load(Ordering::SeqCst) > 0 {
                    self.refusals.fetch_sub(1, Ordering::SeqCst);
                    return Err(AppendError::Retry("control plane unavailable".into()));
                }
                if record.target == "unacceptable" {
                    return Err(AppendError::Refused("too large".into()));
                }
                let mut kept = self
                    .kept
                    .lock()
                    .map_err(|e| AppendError::Retry(e.to_string()))?;
                kept.push(record.target);
                Ok(kept.len() as u64)
            })
        }
    }

    fn caller() -> Caller {
        Caller {
            principal: Principal {
                user: "otto".into(),
                role: Role::Operator,
                token_id: None,
            },
            source: None,
        }
    }

    fn action(target: &str) -> Action<'_> {
        Action {
            action: "POST /v1/x",
            target,
            before: None,
            after: None,
        }
    }

    #[tokio::test]
    async fn entries_the_log_refuses_wait_and_arrive_in_order() {
        let sink = Arc::new(Flaky::default());
        sink.refusals.store(3, Ordering::SeqCst);
        let mut auditor = Auditor::new("app:a1", Some(sink.clone() as Arc<dyn AuditSink>));
        auditor.retry_first = Duration::from_millis(5);
        for target in ["a", "unacceptable", "b", "c"] {
            auditor.record(&caller(), action(target)).await;
        }
        assert!(auditor.waiting.get() >= 1);
        let start = std::time::Instant::now();
        while auditor.waiting.get() > 0 || sink.kept.lock().expect("lock").len() < 3 {
            assert!(start.elapsed() < Duration::from_secs(5), "still waiting");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(*sink.kept.lock().expect("lock"), ["a", "b", "c"]);
        assert_eq!(auditor.appended.get(), 3);
        // The entry the log will never take is dropped, counted, and holds up nobody.
        assert_eq!(auditor.failures.get(), 1);
        // Once drained, entries go straight through again.
        auditor.record(&caller(), action("d")).await;
        assert_eq!(sink.kept.lock().expect("lock").len(), 4);
    }

    #[tokio::test]
    async fn stopping_waits_for_the_backlog_then_counts_what_is_left() {
        let sink = Arc::new(Flaky::default());
        sink.refusals.store(1_000_000, Ordering::SeqCst);
        let mut auditor = Auditor::new("app:a1", Some(sink.clone() as Arc<dyn AuditSink>));
        auditor.retry_first = Duration::from_millis(5);
        auditor.record(&caller(), action("a")).await;
        auditor.record(&caller(), action("b")).await;
        auditor.flush(Duration::from_millis(50)).await;
        assert_eq!(auditor.failures.get(), 2, "both entries counted as lost");

        // A log that comes back in time takes everything before the process ends, even
        // an entry still on its way when the backlog is already empty; the drain's long
        // pause is cut short.
        let sink = Arc::new(Flaky::default());
        sink.refusals.store(1, Ordering::SeqCst);
        let mut auditor = Auditor::new("app:a1", Some(sink.clone() as Arc<dyn AuditSink>));
        auditor.retry_first = Duration::from_secs(3600);
        auditor.record(&caller(), action("a")).await;
        sink.delay_ms.store(300, Ordering::SeqCst);
        auditor.flush(Duration::from_secs(5)).await;
        assert_eq!(auditor.failures.get(), 0);
        assert_eq!(*sink.kept.lock().expect("lock"), ["a"]);
    }

    #[tokio::test]
    async fn without_an_audit_log_actions_are_counted_as_lost() {
        let auditor = Auditor::new("edge:e1", None);
        auditor.record(&caller(), action("a")).await;
        assert_eq!(auditor.failures.get(), 1);
    }
}
