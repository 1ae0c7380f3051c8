//! Where business frames go.
//!
//! Each executor owns one [`Uplink`]; the standalone one counts and logs. Routing to app
//! services by shard (a separate piece of work) implements the same trait and answers
//! through [`crate::executor::ExecutorHandle`], which reaches any connected pile.

use pylon_proto::ykc::{Frame, PileNo};

/// A business frame leaving the edge.
#[derive(Debug, Clone, PartialEq)]
pub struct UplinkMessage {
    pub edge_id: std::sync::Arc<str>,
    pub executor: usize,
    /// Unique within this edge process; a new login of the same pile gets a new one.
    pub session_id: u64,
    pub pile: PileNo,
    /// The charger's sequence number, to be echoed in a reply.
    pub seq: u16,
    pub frame: Frame,
}

/// Receives business frames on one executor. Implementations must not block: hand the
/// message to a channel or count it, nothing more.
pub trait Uplink {
    fn send(&self, message: UplinkMessage);

    /// A pile logged in on this executor.
    fn online(&self, _pile: PileNo, _session_id: u64, _executor: usize) {}

    /// A logged-in pile's session ended, for `reason` (`CloseReason::as_str`).
    fn offline(&self, _pile: PileNo, _session_id: u64, _reason: &'static str) {}

    /// Pending while the uplink is too far behind to take more: connections then stop
    /// reading (and `cx` is woken when it caught up).
    fn poll_ready(&self, _cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        std::task::Poll::Ready(())
    }
}

/// Builds one uplink per executor (executors do not share state).
pub type UplinkFactory = std::sync::Arc<dyn Fn(usize) -> Box<dyn Uplink> + Send + Sync>;

/// The standalone uplink: counts and logs business frames.
pub struct LogUplink {
    frames: prometheus_client::metrics::counter::Counter,
}

impl LogUplink {
    pub fn factory(frames: prometheus_client::metrics::counter::Counter) -> UplinkFactory {
        std::sync::Arc::new(move |_| {
            Box::new(LogUplink {
                frames: frames.clone(),
            })
        })
    }
}

impl Uplink for LogUplink {
    fn send(&self, m: UplinkMessage) {
        self.frames.inc();
        tracing::debug!(
            edge = %m.edge_id,
            executor = m.executor,
            session = m.session_id,
            pile = %m.pile,
            seq = m.seq,
            frame = m.frame.name(),
            "business frame (standalone: not routed)"
        );
    }
}
