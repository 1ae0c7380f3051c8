//! The business stream from each edge (gRPC `Business.Exchange`).
//!
//! Frames are queued by pile ([`queues`]): one pile's frames stay in order while different
//! piles' frames (and their store commits) overlap, and a pile waiting on the store holds
//! up only itself. Business frames share a few store slots across all edges; logins and
//! piles coming and going do not wait for them, so chargers get their login answered
//! while records queue behind a slow store. What one stream has read and not handled is
//! bounded: when the store is slow the reader stops reading, and HTTP/2 flow control
//! slows the edge down. Acknowledgements report the highest id below which every uplink
//! is handled, so the edge can forget them.

mod queues;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pylon_proto::app::business_server::Business as BusinessRpc;
use pylon_proto::app::{
    app_message, edge_message, Ack, AppMessage, EdgeMessage, LoginVerdict, PileOffline, PileOnline,
    Uplink,
};
use pylon_proto::ykc::{Frame, PileNo};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::business::{Business, BusinessError, Incoming, Reply};
use crate::directory::{EdgeStream, Location};
use queues::{PileQueues, Pushed};

/// Items one stream has read and not yet handled; at this many the reader waits.
const STREAM_WINDOW: usize = 4096;
/// Business frames handled at once across all edges. The PostgreSQL pool has 16
/// connections: four stay free for logins, which keep chargers online while records wait.
const BUSINESS_SLOTS: usize = 12;
/// Messages queued towards an edge before senders wait.
const OUTBOUND_DEPTH: usize = 4096;
/// The login frame's type (0x01).
const LOGIN: u32 = 0x01;

pub struct BusinessService {
    pub business: Arc<Business>,
    streams: AtomicU64,
    /// Store slots for business frames, shared by every edge's stream.
    business_slots: Arc<Semaphore>,
}

impl BusinessService {
    pub fn new(business: Arc<Business>) -> Self {
        BusinessService {
            business,
            streams: AtomicU64::new(1),
            business_slots: Arc::new(Semaphore::new(BUSINESS_SLOTS)),
        }
    }
}

#[tonic::async_trait]
impl BusinessRpc for BusinessService {
    type ExchangeStream =
        std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<AppMessage, Status>> + Send>>;

    async fn exchange(
        &self,
        request: Request<Streaming<EdgeMessage>>,
    ) -> Result<Response<Self::ExchangeStream>, Status> {
        let mut inbound = request.into_inner();
        let edge: Arc<str> = match inbound.message().await? {
            Some(EdgeMessage {
                body: Some(edge_message::Body::Hello(hello)),
            }) if !hello.edge_id.is_empty() => hello.edge_id.into(),
            _ => {
                self.business.metrics.frame_error("no_hello");
                return Err(Status::invalid_argument(
                    "a business stream starts with Hello{edge_id}",
                ));
            }
        };
        let (tx, rx) = mpsc::channel(OUTBOUND_DEPTH);
        let stream_id = self.streams.fetch_add(1, Ordering::Relaxed);
        let business = self.business.clone();
        business.directory.edge_connected(
            edge.clone(),
            EdgeStream {
                stream_id,
                tx: tx.clone(),
            },
        );
        business.metrics.edge_streams.inc();
        tracing::info!(%edge, stream_id, "edge connected");
        tokio::spawn(run(
            business,
            edge,
            stream_id,
            inbound,
            tx,
            self.business_slots.clone(),
        ));
        Ok(Response::new(Box::pin(tokio_stream::StreamExt::map(
            ReceiverStream::new(rx),
            Ok,
        ))))
    }
}

/// What workers tell the acknowledger.
struct Done(u64);

/// What a pile's worker works through, in the order the edge sent it for that pile.
enum PileItem {
    Uplink(Uplink),
    Online(PileOnline),
    Offline(PileOffline),
}

impl PileItem {
    fn pile(&self) -> &str {
        match self {
            PileItem::Uplink(u) => &u.pile,
            PileItem::Online(o) => &o.pile,
            PileItem::Offline(o) => &o.pile,
        }
    }
}

/// An item read from the stream, holding its place in the stream's window.
struct Queued {
    item: PileItem,
    arrived: Instant,
    _window: OwnedSemaphorePermit,
}

/// One edge stream's work, shared by its reader and its piles' workers.
struct StreamWork {
    business: Arc<Business>,
    edge: Arc<str>,
    tx: mpsc::Sender<AppMessage>,
    done: mpsc::UnboundedSender<Done>,
    queues: Mutex<PileQueues<Queued>>,
    business_slots: Arc<Semaphore>,
}

async fn run(
    business: Arc<Business>,
    edge: Arc<str>,
    stream_id: u64,
    mut inbound: Streaming<EdgeMessage>,
    tx: mpsc::Sender<AppMessage>,
    business_slots: Arc<Semaphore>,
) {
    let (done_tx, done_rx) = mpsc::unbounded_channel::<Done>();
    let acker = tokio::spawn(acknowledge(done_rx, tx.clone()));
    let work = Arc::new(StreamWork {
        business: business.clone(),
        edge: edge.clone(),
        tx,
        done: done_tx,
        queues: Mutex::new(PileQueues::default()),
        business_slots,
    });
    let window = Arc::new(Semaphore::new(STREAM_WINDOW));
    loop {
        let message = match inbound.message().await {
            Ok(Some(m)) => m,
            Ok(None) => break,
            Err(status) => {
                tracing::info!(%edge, "edge stream ended: {status}");
                break;
            }
        };
        // Logins, logouts and frames of one pile are handled by its worker, in order.
        let item = match message.body {
            Some(edge_message::Body::Uplink(up)) => PileItem::Uplink(up),
            Some(edge_message::Body::Online(online)) => PileItem::Online(online),
            Some(edge_message::Body::Offline(offline)) => PileItem::Offline(offline),
            Some(edge_message::Body::Result(result)) => {
                let outcome = match result.outcome.as_str() {
                    "not_connected" => "not_connected",
                    "failed" => "failed",
                    _ => "other",
                };
                business.metrics.command("downlink", outcome);
                tracing::debug!(command = result.command_id, outcome = %result.outcome, detail = %result.detail, "downlink not delivered");
                continue;
            }
            Some(edge_message::Body::Hello(_)) | None => {
                business.metrics.frame_error("unexpected_message");
                continue;
            }
        };
        let Ok(place) = window.clone().acquire_owned().await else {
            break;
        };
        if let PileItem::Uplink(_) = item {
            business.metrics.uplinks_in_flight.inc();
        }
        let pile = item.pile().to_string();
        let queued = Queued {
            item,
            arrived: Instant::now(),
            _window: place,
        };
        let pushed = work.queues().push(&pile, queued);
        if let Pushed::Start(first) = pushed {
            tokio::spawn(pile_worker(work.clone(), pile, first));
        }
    }
    // The acknowledger ends when the last worker has finished.
    drop(work);
    let _ = acker.await;
    // A newer stream of the same edge has announced its piles already: they stay.
    if business.directory.edge_gone(&edge, stream_id) {
        business.edge_lost(&edge).await;
    }
    business.metrics.edge_streams.dec();
    tracing::info!(%edge, stream_id, "edge disconnected");
}

/// Handles one pile's items until it has none; ends early when the stream is gone.
async fn pile_worker(work: Arc<StreamWork>, pile: String, first: Queued) {
    let mut next = Some(first);
    while let Some(queued) = next {
        if !work.handle(queued).await {
            return;
        }
        next = work.queues().next(&pile);
    }
}

impl StreamWork {
    fn queues(&self) -> std::sync::MutexGuard<'_, PileQueues<Queued>> {
        // Nothing panics while holding it; a poisoned lock still holds whole queues.
        self.queues.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Handles one item; false when the stream is gone (nothing more can be answered).
    async fn handle(&self, queued: Queued) -> bool {
        let business = &self.business;
        let alive = match queued.item {
            PileItem::Uplink(up) => {
                let id = up.id;
                let login = up.frame_type == LOGIN;
                // Logins skip the business slots: they keep the fleet online.
                let slot = if login {
                    None
                } else {
                    self.business_slots.acquire().await.ok()
                };
                let handled = handle_one(business, &self.edge, up, &self.tx).await;
                drop(slot);
                business.metrics.uplinks_in_flight.dec();
                if login {
                    business
                        .metrics
                        .login_seconds
                        .observe(queued.arrived.elapsed().as_secs_f64());
                }
                // Not handled (the stream closed while the store was down): no ack, so
                // the edge keeps the frame and sends it again.
                handled && self.done.send(Done(id)).is_ok()
            }
            PileItem::Online(online) => {
                let location = Location {
                    edge: self.edge.clone(),
                    executor: online.executor,
                    session_id: online.session_id,
                };
                // Known already (its login was handled here): the store says so too.
                let known = business.directory.location(&online.pile).as_ref() == Some(&location);
                business.directory.pile_online(&online.pile, location);
                if !known {
                    business.pile_connected(&online.pile).await;
                }
                true
            }
            PileItem::Offline(offline) => {
                // A pile whose shard moved to another instance is still connected.
                let moved = offline.reason == "shard_moved";
                if business
                    .directory
                    .pile_offline(&offline.pile, &self.edge, offline.session_id)
                    && !moved
                {
                    business
                        .pile_disconnected(&offline.pile, &offline.reason)
                        .await;
                }
                true
            }
        };
        business
            .metrics
            .piles_online
            .set(business.directory.online_count() as i64);
        alive
    }
}

/// Handles one uplink; false when it could not be (the store stayed down until the
/// stream closed), so it must not be acknowledged.
async fn handle_one(
    business: &Business,
    edge: &Arc<str>,
    up: Uplink,
    tx: &mpsc::Sender<AppMessage>,
) -> bool {
    let pile = match PileNo::parse(&up.pile) {
        Ok(p) if up.pile.len() == 14 => p,
        _ => {
            business.metrics.frame_error("bad_pile");
            return true;
        }
    };
    let frame = match u8::try_from(up.frame_type)
        .map_err(|_| "frame type out of range".to_string())
        .and_then(|t| Frame::decode_body(t, &up.body).map_err(|e| e.to_string()))
    {
        Ok(f) => f,
        Err(e) => {
            business.metrics.frame_error("decode");
            tracing::warn!(pile = %up.pile, frame_type = up.frame_type, "undecodable business frame: {e}");
            return true;
        }
    };
    let incoming = Incoming {
        edge: edge.clone(),
        pile,
        session_id: up.session_id,
        executor: up.executor,
        seq: up.seq as u16,
        frame,
    };
    // A store error is retried (this pile's lane waits): a record must be committed
    // before it is confirmed, and acknowledging it to the edge unhandled would lose it.
    let mut backoff = Duration::from_millis(100);
    let replies = loop {
        match business.handle(&incoming).await {
            Ok(replies) => break replies,
            Err(BusinessError::Rejected(e)) => {
                business.metrics.frame_error("rejected");
                tracing::warn!(pile = %up.pile, frame = incoming.frame.name(), "frame refused: {e}");
                return true;
            }
            Err(BusinessError::Store(e)) => {
                business.metrics.frame_error("store");
                tracing::warn!(pile = %up.pile, frame = incoming.frame.name(), "store error, retrying in {backoff:?}: {e}");
                if tx.is_closed() {
                    return false;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    };
    for reply in replies {
        let message = match reply {
            Reply::Login { accepted } => {
                let (accepted, cipher) = if accepted {
                    match business.pile_cipher(&up.pile).await {
                        Ok(cipher) => {
                            if cipher.is_some() && pylon_service::tls::cluster().is_none() {
                                tracing::warn!(pile = %up.pile, "a pile key goes to the edge on a business stream without cluster TLS: in the clear");
                            }
                            (
                                true,
                                cipher
                                    .and_then(|c| serde_json::to_vec(&c).ok())
                                    .unwrap_or_default(),
                            )
                        }
                        Err(e) => {
                            business.metrics.frame_error("cipher");
                            tracing::error!(pile = %up.pile, "login refused: its cipher cannot be opened: {e}");
                            (false, Vec::new())
                        }
                    }
                } else {
                    (false, Vec::new())
                };
                app_message::Body::Verdict(LoginVerdict {
                    pile: up.pile.clone(),
                    session_id: up.session_id,
                    executor: up.executor,
                    seq: up.seq,
                    accepted,
                    cipher,
                })
            }
            Reply::Frame(frame) => {
                let mut body = Vec::new();
                if let Err(e) = frame.encode_body(&mut body) {
                    business.metrics.frame_error("encode");
                    tracing::error!(frame = frame.name(), "cannot encode a reply: {e}");
                    continue;
                }
                app_message::Body::Downlink(pylon_proto::app::Downlink {
                    command_id: 0,
                    pile: up.pile.clone(),
                    frame_type: u32::from(frame.frame_type()),
                    body,
                    reply_to_seq: Some(up.seq),
                })
            }
        };
        if tx
            .send(AppMessage {
                body: Some(message),
            })
            .await
            .is_err()
        {
            return false;
        }
    }
    true
}

/// Turns completions (in any order) into a watermark: every id up to it is handled.
async fn acknowledge(mut done: mpsc::UnboundedReceiver<Done>, tx: mpsc::Sender<AppMessage>) {
    let mut watermark: Option<u64> = None;
    let mut ahead = BTreeSet::new();
    while let Some(Done(id)) = done.recv().await {
        ahead.insert(id);
        // Whatever else finished meanwhile joins this acknowledgement.
        while let Ok(Done(id)) = done.try_recv() {
            ahead.insert(id);
        }
        let before = watermark;
        // Edge ids start at 1 and grow by one per uplink.
        while let Some(&first) = ahead.first() {
            let next = watermark.map_or(1, |w| w + 1);
            if first > next {
                break;
            }
            ahead.pop_first();
            watermark = Some(watermark.map_or(first, |w| w.max(first)));
        }
        if let (Some(w), true) = (watermark, watermark != before) {
            let ack = AppMessage {
                body: Some(app_message::Body::Ack(Ack { up_to: w })),
            };
            if tx.send(ack).await.is_err() {
                return;
            }
        }
    }
}
