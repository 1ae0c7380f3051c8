//! How every process reaches the control plane, written once for the edge, the app
//! service and the balancer:
//!
//! - the channel settings ([`endpoint`], [`connect`]): a connect timeout, and HTTP/2
//!   keep-alive so that a replica that dies silently (or is frozen) is noticed;
//! - the retry policy ([`Backoff`]): exponential backoff with jitter, started over after a
//!   session that lasted;
//! - the session itself ([`ControlLink`]): endpoint failover, registration and lease
//!   keep-alive with load reports, following the route table, leaving on stop.

mod backoff;
mod link;
#[cfg(test)]
mod tests;

use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

pub use backoff::Backoff;
pub use link::{
    Connector, ControlLink, LinkError, LinkEvent, LinkSettings, Participant, UpdateKind,
};

/// First wait after a failure, and the longest.
pub const BACKOFF_MIN: Duration = Duration::from_millis(200);
pub const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// A session that lasted this long starts the backoff over.
pub const HEALTHY_SESSION: Duration = Duration::from_secs(30);
/// HTTP/2 pings on an idle connection, and how long a ping may go unanswered.
pub const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(10);
pub const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(5);
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// The endpoint for a control-plane replica, with the shared settings.
pub fn endpoint(url: &str) -> Result<Endpoint, tonic::transport::Error> {
    Ok(Endpoint::from_shared(url.to_owned())?
        .connect_timeout(CONNECT_TIMEOUT)
        .http2_keep_alive_interval(KEEP_ALIVE_INTERVAL)
        .keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
        .keep_alive_while_idle(true))
}

/// Connects to one replica (over the cluster TLS for an `https://` URL).
pub async fn connect(url: &str) -> Result<Channel, tonic::transport::Error> {
    crate::tls::channel(endpoint(url)?).await
}

/// Every control-plane replica, for one-off calls (token checks, audit entries): each
/// call goes to the replica that answered last, then to the others in turn.
pub struct Replicas {
    channels: Vec<Channel>,
    token: Option<String>,
    preferred: std::sync::atomic::AtomicUsize,
}

/// How long one replica may take to answer a one-off call.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(2);

impl Replicas {
    pub fn new(endpoints: &[String], cluster_token: Option<String>) -> anyhow::Result<Self> {
        let channels = endpoints
            .iter()
            .map(|url| crate::tls::channel_lazy(endpoint(url)?))
            .collect::<Result<Vec<_>, tonic::transport::Error>>()?;
        anyhow::ensure!(!channels.is_empty(), "no control-plane endpoint");
        Ok(Replicas {
            channels,
            token: cluster_token,
            preferred: Default::default(),
        })
    }

    /// The first answer of `call` (given a channel and the cluster token), or why no
    /// replica gave one.
    pub async fn first_answer<T, F, Fut>(&self, call: F) -> Result<T, NoAnswer>
    where
        F: Fn(Channel, Option<String>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        use std::sync::atomic::Ordering;
        let first = self.preferred.load(Ordering::Relaxed);
        let (mut last_error, mut last_code) = (String::new(), None);
        for i in 0..self.channels.len() {
            let at = (first + i) % self.channels.len();
            let answer = call(self.channels[at].clone(), self.token.clone());
            match tokio::time::timeout(CALL_TIMEOUT, answer).await {
                Ok(Ok(reply)) => {
                    self.preferred.store(at, Ordering::Relaxed);
                    return Ok(reply.into_inner());
                }
                Ok(Err(status)) => {
                    last_error = status.message().to_owned();
                    last_code = Some(status.code());
                }
                Err(_) => {
                    last_error = "no answer in time".into();
                    last_code = None;
                }
            }
        }
        Err(NoAnswer {
            message: format!("no control-plane replica answered: {last_error}"),
            code: last_code,
        })
    }
}

/// No replica answered [`Replicas::first_answer`]: the last error, and its gRPC code when
/// a replica refused (rather than failed to answer in time).
#[derive(Debug, Clone)]
pub struct NoAnswer {
    pub message: String,
    pub code: Option<tonic::Code>,
}

impl std::fmt::Display for NoAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<NoAnswer> for String {
    fn from(e: NoAnswer) -> String {
        e.message
    }
}
