//! Where each pile is connected, and the stream to each edge: what downlinks need.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use pylon_proto::app::{app_message, AppMessage, Downlink};
use pylon_proto::ykc::Frame;
use tokio::sync::mpsc;

/// The edge session a pile is logged in on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub edge: Arc<str>,
    pub executor: u32,
    pub session_id: u64,
}

/// One edge's stream, as far as sending goes.
#[derive(Clone)]
pub struct EdgeStream {
    /// Tells a reconnected stream of the same edge from the old one.
    pub stream_id: u64,
    pub tx: mpsc::Sender<AppMessage>,
}

#[derive(Default)]
struct Inner {
    piles: HashMap<String, Location>,
    edges: HashMap<Arc<str>, EdgeStream>,
}

#[derive(Default)]
pub struct Directory {
    inner: Mutex<Inner>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SendError {
    #[error("pile {0} is not connected to any edge this instance knows")]
    NotConnected(String),
    #[error("the stream to edge {0} is gone")]
    EdgeGone(String),
    #[error("the frame cannot be encoded: {0}")]
    Encode(String),
}

impl Directory {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A (new) stream from `edge`: what we knew of its piles is replaced by what it
    /// announces on this stream.
    pub fn edge_connected(&self, edge: Arc<str>, stream: EdgeStream) {
        let mut inner = self.lock();
        inner.piles.retain(|_, l| l.edge != edge);
        inner.edges.insert(edge, stream);
    }

    /// Forgets the edge's stream, unless a newer stream of that edge replaced it; true
    /// when it was the edge's current stream.
    pub fn edge_gone(&self, edge: &str, stream_id: u64) -> bool {
        let mut inner = self.lock();
        let current = inner
            .edges
            .get(edge)
            .is_some_and(|s| s.stream_id == stream_id);
        if current {
            inner.edges.remove(edge);
        }
        current
    }

    pub fn pile_online(&self, pile: &str, location: Location) {
        self.lock().piles.insert(pile.to_owned(), location);
    }

    /// Forgets the pile unless it logged in again since (on this edge or another: session
    /// ids are per edge, so both must match).
    /// True when it was the pile's current session (so the pile is now offline).
    pub fn pile_offline(&self, pile: &str, edge: &str, session_id: u64) -> bool {
        let mut inner = self.lock();
        let current = inner
            .piles
            .get(pile)
            .is_some_and(|l| l.session_id == session_id && &*l.edge == edge);
        if current {
            inner.piles.remove(pile);
        }
        current
    }

    /// The piles last seen connected through `edge`.
    pub fn piles_of(&self, edge: &str) -> Vec<String> {
        self.lock()
            .piles
            .iter()
            .filter(|(_, l)| &*l.edge == edge)
            .map(|(pile, _)| pile.clone())
            .collect()
    }

    pub fn location(&self, pile: &str) -> Option<Location> {
        self.lock().piles.get(pile).cloned()
    }

    pub fn online_count(&self) -> usize {
        self.lock().piles.len()
    }

    pub fn edge_count(&self) -> usize {
        self.lock().edges.len()
    }

    fn stream_for(&self, pile: &str) -> Result<EdgeStream, SendError> {
        let inner = self.lock();
        let location = inner
            .piles
            .get(pile)
            .ok_or_else(|| SendError::NotConnected(pile.to_owned()))?;
        inner
            .edges
            .get(&location.edge)
            .cloned()
            .ok_or_else(|| SendError::EdgeGone(location.edge.to_string()))
    }

    /// Queues `frame` for `pile` on the stream of the edge holding it (waiting while that
    /// stream is full: backpressure from a slow edge).
    pub async fn send(
        &self,
        pile: &str,
        frame: &Frame,
        reply_to_seq: Option<u16>,
        command_id: u64,
    ) -> Result<(), SendError> {
        let stream = self.stream_for(pile)?;
        let mut body = Vec::new();
        frame
            .encode_body(&mut body)
            .map_err(|e| SendError::Encode(e.to_string()))?;
        let message = AppMessage {
            body: Some(app_message::Body::Downlink(Downlink {
                command_id,
                pile: pile.to_owned(),
                frame_type: u32::from(frame.frame_type()),
                body,
                reply_to_seq: reply_to_seq.map(u32::from),
            })),
        };
        stream
            .tx
            .send(message)
            .await
            .map_err(|_| SendError::EdgeGone(pile.to_owned()))
    }
}
