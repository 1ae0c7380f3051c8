//! The etcd registry: an etcd v3 cluster (3 or 5 members) through `etcd-client`.
//!
//! # Fail-over
//!
//! `etcd-client` balances over its endpoints but keeps sending requests to a member that
//! died, and a request to it can hang. So this backend holds one `Client` per endpoint and
//! uses one of them at a time. Each attempt has its own deadline; when an attempt fails in a
//! way another member might not (transport errors, timeouts, `etcdserver: no leader`, ...),
//! the client for that endpoint is rebuilt (dropping whatever state it had) and the request
//! is tried on the next endpoint, each endpoint at most twice, before the caller gets
//! [`RegistryError::Unavailable`]. Clients are built with `require_leader`, so a member cut
//! off from its cluster answers at once with "no leader" instead of holding requests.
//!
//! Retrying means a write may be applied twice when an attempt's outcome is unknown (it
//! timed out after etcd applied it). `put`, `delete` and `revoke` are idempotent; a retried
//! `create` may then answer `false` for the key it created itself, and a retried
//! `put_guarded` may write twice. The control plane tolerates both.
//!
//! # Security
//!
//! With `https://` endpoints the link is TLS through [`EtcdAccess::tls`]: etcd's certificate
//! is checked against a CA, and ours is shown to etcd (`--client-cert-auth`); the files are
//! read again when they change. With etcd's auth on, [`EtcdAccess::user`] logs in with a
//! user and password (the token is renewed when etcd expires it); without a user, etcd
//! takes the user from our certificate's common name.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{
    Channel, Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, PutOptions,
    SortOrder, SortTarget, Txn, TxnOp, WatchOptions,
};
use tokio::sync::mpsc;

use pylon_service::tls::ClusterTls;

use super::{
    KeyValue, LeaseId, Listing, Registry, RegistryError, Result, Revision, WatchEvent, WatchStream,
};

/// Connecting to one endpoint.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// One attempt of one request on one endpoint, including waiting for a connection.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// Pause after every endpoint failed once, before the second round.
const ROUND_BACKOFF: Duration = Duration::from_millis(200);
/// HTTP/2 pings: find a silently dead member under a long-lived watch. etcd refuses pings
/// more often than every 5 s by default.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(5);
/// Events buffered between a watch's task and its receiver.
const WATCH_CHANNEL: usize = 1024;

/// How to reach etcd besides its addresses.
#[derive(Clone, Default)]
pub struct EtcdAccess {
    /// For `https://` endpoints: the CA etcd's certificates come from, and our client
    /// certificate.
    pub tls: Option<Arc<ClusterTls>>,
    /// etcd's own authentication: a user and its password.
    pub user: Option<(String, String)>,
}

impl std::fmt::Debug for EtcdAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdAccess")
            .field("tls", &self.tls.is_some())
            .field("user", &self.user.as_ref().map(|(name, _)| name))
            .finish()
    }
}

pub struct EtcdRegistry {
    endpoints: Vec<String>,
    options: ConnectOptions,
    tls: Option<Arc<ClusterTls>>,
    /// One client per endpoint, replaced after a failure; `None` while it cannot be made
    /// (the member is down and the client must log in).
    clients: Vec<Mutex<Option<Client>>>,
    /// The endpoint requests go to first.
    current: AtomicUsize,
}

/// Why one attempt failed.
enum Failure {
    /// Another member (or this one, later) may succeed.
    Retry(String),
    /// The answer would be the same anywhere.
    Fatal(RegistryError),
}

impl From<etcd_client::Error> for Failure {
    fn from(e: etcd_client::Error) -> Failure {
        use etcd_client::Error as E;
        use tonic::Code;
        match &e {
            E::GRpcStatus(status) => match status.code() {
                // An expired or stale auth token, or etcd's auth store changed under it: a
                // new client logs in again.
                Code::Unauthenticated => Failure::Retry(e.to_string()),
                Code::InvalidArgument
                    if status.message().contains("revision of auth store is old") =>
                {
                    Failure::Retry(e.to_string())
                }
                // Our user is refused (wrong password, a role without our keys): nothing
                // works until an operator fixes it, so the registry counts as down.
                Code::PermissionDenied => {
                    Failure::Fatal(RegistryError::Unavailable(format!("etcd refused: {e}")))
                }
                Code::InvalidArgument if status.message().contains("authentication failed") => {
                    Failure::Fatal(RegistryError::Unavailable(format!("etcd refused: {e}")))
                }
                // "no leader", "leader changed", "request timed out", connection resets, ...
                Code::Unavailable
                | Code::DeadlineExceeded
                | Code::Cancelled
                | Code::Unknown
                | Code::Aborted
                | Code::Internal
                | Code::ResourceExhausted => Failure::Retry(e.to_string()),
                _ => Failure::Fatal(RegistryError::Storage(format!("etcd refused: {e}"))),
            },
            E::InvalidArgs(_) | E::InvalidUri(_) | E::Utf8Error(_) | E::InvalidMetadataValue(_) => {
                Failure::Fatal(RegistryError::Storage(format!("etcd request: {e}")))
            }
            _ => Failure::Retry(e.to_string()),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Retry(e) => f.write_str(e),
            Failure::Fatal(e) => write!(f, "{e}"),
        }
    }
}

/// Maps etcd's "requested lease not found" to [`RegistryError::LeaseNotFound`].
fn lease_failure(lease: LeaseId) -> impl Fn(etcd_client::Error) -> Failure {
    move |e| {
        let not_found = match &e {
            etcd_client::Error::GRpcStatus(s) => {
                s.code() == tonic::Code::NotFound && s.message().contains("lease not found")
            }
            etcd_client::Error::LeaseKeepAliveError(m) => m.contains("lease not found"),
            _ => false,
        };
        if not_found {
            Failure::Fatal(RegistryError::LeaseNotFound(lease))
        } else {
            Failure::from(e)
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

fn header_revision(header: Option<&etcd_client::ResponseHeader>) -> Revision {
    header.map(|h| h.revision()).unwrap_or_default()
}

fn key_value(kv: &etcd_client::KeyValue) -> KeyValue {
    KeyValue {
        key: String::from_utf8_lossy(kv.key()).into_owned(),
        value: kv.value().to_vec(),
        mod_revision: kv.mod_revision(),
        lease: (kv.lease() != 0).then_some(kv.lease()),
    }
}

impl EtcdRegistry {
    /// Connects to an etcd cluster, e.g. `["https://10.0.0.1:2379", ...]`, and checks that
    /// one of the endpoints answers.
    pub async fn connect(endpoints: Vec<String>, access: EtcdAccess) -> Result<Arc<Self>> {
        if endpoints.is_empty() {
            return Err(RegistryError::Unavailable("no etcd endpoints given".into()));
        }
        let mut options = ConnectOptions::new()
            .with_connect_timeout(CONNECT_TIMEOUT)
            .with_require_leader(true)
            // Finds a silently dead member under a long-lived watch. etcd refuses pings more
            // often than every 5 s by default.
            .with_keep_alive(KEEP_ALIVE_INTERVAL, KEEP_ALIVE_TIMEOUT);
        if let Some((user, password)) = access.user {
            options = options
                .with_user(user, password)
                .with_auto_token_refresh(true);
        }
        let mut clients = Vec::with_capacity(endpoints.len());
        for endpoint in &endpoints {
            let client = match new_client(endpoint, &options, access.tls.as_ref()).await {
                Ok(client) => Some(client),
                Err(Failure::Fatal(e)) => return Err(e),
                Err(Failure::Retry(e)) => {
                    tracing::warn!(%endpoint, "etcd endpoint not reachable yet: {e}");
                    None
                }
            };
            clients.push(Mutex::new(client));
        }
        let registry = Arc::new(EtcdRegistry {
            endpoints,
            options,
            tls: access.tls,
            clients,
            current: AtomicUsize::new(0),
        });
        registry
            .call("connect", |mut c| async move {
                c.status().await?;
                Ok(())
            })
            .await?;
        Ok(registry)
    }

    /// Runs `op` on the current endpoint, failing over to the next ones as described in the
    /// module documentation.
    async fn call<T, F, Fut>(&self, what: &str, op: F) -> Result<T>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = std::result::Result<T, Failure>>,
    {
        let n = self.endpoints.len();
        let mut last_error = String::new();
        for attempt in 0..2 * n {
            if attempt == n {
                tokio::time::sleep(ROUND_BACKOFF).await;
            }
            let index = self.current.load(Ordering::Acquire) % n;
            let attempt = async {
                let client = self.client(index).await?;
                op(client).await
            };
            let error = match tokio::time::timeout(REQUEST_TIMEOUT, attempt).await {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(Failure::Fatal(e))) => return Err(e),
                Ok(Err(Failure::Retry(e))) => e,
                Err(_) => format!("no answer within {REQUEST_TIMEOUT:?}"),
            };
            tracing::warn!(
                endpoint = %self.endpoints[index],
                error = %error,
                "etcd {what} failed; trying the next endpoint"
            );
            self.fail_over(index).await;
            last_error = format!("{}: {error}", self.endpoints[index]);
        }
        Err(RegistryError::Unavailable(format!(
            "etcd {what}: no endpoint answered (last: {last_error})"
        )))
    }

    /// The client of endpoint `index`, made now if it could not be before.
    async fn client(&self, index: usize) -> std::result::Result<Client, Failure> {
        if let Some(client) = lock(&self.clients[index]).clone() {
            return Ok(client);
        }
        let client = new_client(&self.endpoints[index], &self.options, self.tls.as_ref()).await?;
        *lock(&self.clients[index]) = Some(client.clone());
        Ok(client)
    }

    /// Moves on from endpoint `index` (unless another request already did) and rebuilds its
    /// client, so a member that comes back gets a clean connection.
    async fn fail_over(&self, index: usize) {
        let n = self.endpoints.len();
        // Only the request that moves on rebuilds the client: with a user, each new
        // client logs in, and a burst of failures must not become a burst of logins.
        if self
            .current
            .compare_exchange(index, (index + 1) % n, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return;
        }
        match new_client(&self.endpoints[index], &self.options, self.tls.as_ref()).await {
            Ok(client) => *lock(&self.clients[index]) = Some(client),
            Err(failure) => {
                *lock(&self.clients[index]) = None;
                tracing::warn!(endpoint = %self.endpoints[index], "rebuilding the etcd client: {failure}")
            }
        }
    }
}

/// A client of one endpoint. The connection is lazy: without a user this only sets the
/// channel up and the first request connects; with one, it logs in now.
async fn new_client(
    endpoint: &str,
    options: &ConnectOptions,
    tls: Option<&Arc<ClusterTls>>,
) -> std::result::Result<Client, Failure> {
    let connect = async {
        match tls {
            Some(tls) if endpoint.starts_with("https://") => {
                let channel = tonic::transport::Endpoint::from_shared(endpoint.to_owned())
                    .map_err(|e| {
                        Failure::Fatal(RegistryError::Storage(format!(
                            "etcd endpoint {endpoint}: {e}"
                        )))
                    })?
                    .connect_timeout(CONNECT_TIMEOUT)
                    .http2_keep_alive_interval(KEEP_ALIVE_INTERVAL)
                    .keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
                    .keep_alive_while_idle(true)
                    .connect_with_connector_lazy(tls.connector());
                Ok(Client::from_channel(Channel::Tonic(channel), Some(options.clone())).await?)
            }
            _ => Ok(Client::connect([endpoint], Some(options.clone())).await?),
        }
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(Failure::Retry(e))) => Err(Failure::Retry(format!("etcd endpoint {endpoint}: {e}"))),
        Ok(Err(Failure::Fatal(e))) => Err(Failure::Fatal(e)),
        Err(_) => Err(Failure::Retry(format!(
            "etcd endpoint {endpoint}: no connection within {CONNECT_TIMEOUT:?}"
        ))),
    }
}

#[async_trait]
impl Registry for EtcdRegistry {
    fn backend(&self) -> &'static str {
        "etcd"
    }

    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId> {
        // Whole seconds, at least one.
        let secs = (ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0)).max(1);
        let secs = i64::try_from(secs).unwrap_or(i64::MAX);
        self.call("grant_lease", |mut c| async move {
            Ok(c.lease_grant(secs, None).await?.id())
        })
        .await
    }

    async fn keep_alive(&self, lease: LeaseId) -> Result<Duration> {
        self.call("keep_alive", |mut c| async move {
            let not_found = lease_failure(lease);
            // `keep_alive` sends the first keep-alive itself and fails with "lease not found"
            // when the answer's TTL is 0, but does not return that answer: ask once more on
            // the same stream for the TTL.
            let (mut keeper, mut stream) = c.lease_keep_alive(lease).await.map_err(&not_found)?;
            keeper.keep_alive().await.map_err(&not_found)?;
            match stream.message().await.map_err(&not_found)? {
                Some(answer) if answer.ttl() > 0 => {
                    Ok(Duration::from_secs(answer.ttl().unsigned_abs()))
                }
                Some(_) => Err(Failure::Fatal(RegistryError::LeaseNotFound(lease))),
                None => Err(Failure::Retry("the keep-alive stream ended".into())),
            }
        })
        .await
    }

    async fn revoke(&self, lease: LeaseId) -> Result<()> {
        let result = self
            .call("revoke", |mut c| async move {
                c.lease_revoke(lease).await.map_err(lease_failure(lease))?;
                Ok(())
            })
            .await;
        match result {
            Err(RegistryError::LeaseNotFound(_)) => Ok(()),
            other => other,
        }
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        self.call("get", |mut c| async move {
            let answer = c.get(key, None).await?;
            Ok(answer.kvs().first().map(key_value))
        })
        .await
    }

    async fn list(&self, prefix: &str) -> Result<Listing> {
        self.call("list", |mut c| async move {
            let options = GetOptions::new()
                .with_prefix()
                .with_sort(SortTarget::Key, SortOrder::Ascend);
            let answer = c.get(prefix, Some(options)).await?;
            Ok(Listing {
                revision: header_revision(answer.header()),
                items: answer.kvs().iter().map(key_value).collect(),
            })
        })
        .await
    }

    async fn put(&self, key: &str, value: Vec<u8>, lease: Option<LeaseId>) -> Result<Revision> {
        let value = &value;
        self.call("put", |mut c| async move {
            let options = lease.map(|id| PutOptions::new().with_lease(id));
            let answer = c
                .put(key, value.clone(), options)
                .await
                .map_err(lease_failure(lease.unwrap_or_default()))?;
            Ok(header_revision(answer.header()))
        })
        .await
    }

    async fn create(&self, key: &str, value: Vec<u8>, lease: Option<LeaseId>) -> Result<bool> {
        let value = &value;
        self.call("create", |mut c| async move {
            let options = lease.map(|id| PutOptions::new().with_lease(id));
            let txn = Txn::new()
                .when([Compare::create_revision(key, CompareOp::Equal, 0)])
                .and_then([TxnOp::put(key, value.clone(), options)]);
            let answer = c
                .txn(txn)
                .await
                .map_err(lease_failure(lease.unwrap_or_default()))?;
            Ok(answer.succeeded())
        })
        .await
    }

    async fn put_guarded(
        &self,
        guard: &str,
        guard_value: &[u8],
        key: &str,
        value: Vec<u8>,
    ) -> Result<bool> {
        let value = &value;
        self.call("put_guarded", |mut c| async move {
            let txn = Txn::new()
                .when([Compare::value(guard, CompareOp::Equal, guard_value)])
                .and_then([TxnOp::put(key, value.clone(), None)]);
            Ok(c.txn(txn).await?.succeeded())
        })
        .await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.call("delete", |mut c| async move {
            c.delete(key, None).await?;
            Ok(())
        })
        .await
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        let (stream, watch_id) = self
            .call("watch", |mut c| async move {
                let options = WatchOptions::new()
                    .with_prefix()
                    .with_start_revision(after + 1);
                let mut stream = c.watch(prefix, Some(options)).await?;
                // Wait for etcd to confirm (or refuse) the watch, so failures surface here
                // and go to another member.
                match stream.message().await? {
                    Some(answer) if answer.compact_revision() > 0 => Err(Failure::Fatal(
                        RegistryError::Compacted(answer.compact_revision()),
                    )),
                    Some(answer) if answer.canceled() => Err(Failure::Retry(format!(
                        "the watch was cancelled: {}",
                        answer.cancel_reason()
                    ))),
                    Some(answer) if answer.created() => {
                        let id = answer.watch_id();
                        Ok((stream, id))
                    }
                    Some(_) => Err(Failure::Retry("etcd did not confirm the watch".into())),
                    None => Err(Failure::Retry("the watch stream ended".into())),
                }
            })
            .await?;
        let (tx, rx) = mpsc::channel(WATCH_CHANNEL);
        tokio::spawn(forward(prefix.to_owned(), stream, watch_id, tx));
        Ok(rx)
    }
}

/// A watch's task: etcd's events to the receiver until the watch breaks or the receiver is
/// dropped. Closing the channel tells the caller to list again.
async fn forward(
    prefix: String,
    mut stream: etcd_client::WatchStream,
    watch_id: i64,
    tx: mpsc::Sender<WatchEvent>,
) {
    'watch: loop {
        let message = tokio::select! {
            _ = tx.closed() => break 'watch,
            message = stream.message() => message,
        };
        let answer = match message {
            Ok(Some(answer)) => answer,
            Ok(None) => {
                tracing::warn!(prefix, "the etcd watch stream ended");
                return;
            }
            Err(e) => {
                tracing::warn!(prefix, "the etcd watch broke: {e}");
                return;
            }
        };
        if answer.compact_revision() > 0 {
            tracing::warn!(
                prefix,
                compacted = answer.compact_revision(),
                "the etcd watch fell behind compaction"
            );
            return;
        }
        if answer.canceled() {
            tracing::warn!(
                prefix,
                reason = answer.cancel_reason(),
                "etcd cancelled the watch"
            );
            return;
        }
        for event in answer.events() {
            let Some(kv) = event.kv() else { continue };
            let event = match event.event_type() {
                EventType::Put => WatchEvent::Put(key_value(kv)),
                // etcd sets a deleted key's mod_revision to the deletion's revision.
                EventType::Delete => WatchEvent::Delete {
                    key: String::from_utf8_lossy(kv.key()).into_owned(),
                    revision: kv.mod_revision(),
                },
            };
            if tx.send(event).await.is_err() {
                break 'watch;
            }
        }
    }
    // The receiver went away: tell etcd (dropping the stream would end it too).
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.cancel(watch_id)).await;
}
