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

/// Connects to one replica.
pub async fn connect(url: &str) -> Result<Channel, tonic::transport::Error> {
    endpoint(url)?.connect().await
}
