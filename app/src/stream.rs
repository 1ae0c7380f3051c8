//! The business stream from each edge (gRPC `Business.Exchange`).
//!
//! Frames are handled in lanes keyed by pile, so one pile's frames stay in order while
//! different piles' frames (and their store commits) overlap. Each lane is a bounded
//! queue: when the store is slow the lanes fill, the reader stops reading, and HTTP/2 flow
//! control slows the edge down. Acknowledgements report the highest id below which every
//! uplink is handled, so the edge can forget them.

use std::collections::BTreeSet;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use pylon_proto::app::business_server::Business as BusinessRpc;
use std::time::Duration;

use pylon_proto::app::{
    app_message, edge_message, Ack, AppMessage, EdgeMessage, LoginVerdict, PileOffline, PileOnline,
    Uplink,
};
use pylon_proto::ykc::{Frame, PileNo};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::business::{Business, BusinessError, Incoming, Reply};
use crate::directory::{EdgeStream, Location};

/// Lanes per edge stream.
const LANES: usize = 16;
/// Frames queued per lane before the stream stops reading.
const LANE_DEPTH: usize = 256;
/// Messages queued towards an edge before senders wait.
const OUTBOUND_DEPTH: usize = 4096;

pub struct BusinessService {
    pub business: Arc<Business>,
    streams: AtomicU64,
}

impl BusinessService {
    pub fn new(business: Arc<Business>) -> Self {
        BusinessService {
            business,
            streams: AtomicU64::new(1),
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
        tokio::spawn(run(business, edge, stream_id, inbound, tx));
        Ok(Response::new(Box::pin(tokio_stream::StreamExt::map(
            ReceiverStream::new(rx),
            Ok,
        ))))
    }
}

/// What lanes tell the acknowledger.
struct Done(u64);

/// What a lane works through, in the order the edge sent it for that pile.
enum LaneItem {
    Uplink(Uplink),
    Online(PileOnline),
    Offline(PileOffline),
}

async fn run(
    business: Arc<Business>,
    edge: Arc<str>,
    stream_id: u64,
    mut inbound: Streaming<EdgeMessage>,
    tx: mpsc::Sender<AppMessage>,
) {
    let (done_tx, done_rx) = mpsc::unbounded_channel::<Done>();
    let acker = tokio::spawn(acknowledge(done_rx, tx.clone()));
    let lanes: Vec<mpsc::Sender<LaneItem>> = (0..LANES)
        .map(|_| {
            let (lane_tx, lane_rx) = mpsc::channel(LANE_DEPTH);
            tokio::spawn(lane(
                business.clone(),
                edge.clone(),
                lane_rx,
                tx.clone(),
                done_tx.clone(),
            ));
            lane_tx
        })
        .collect();
    drop(done_tx);
    loop {
        let message = match inbound.message().await {
            Ok(Some(m)) => m,
            Ok(None) => break,
            Err(status) => {
                tracing::info!(%edge, "edge stream ended: {status}");
                break;
            }
        };
        // Logins, logouts and frames of one pile go through its lane, in order.
        let item = match message.body {
            Some(edge_message::Body::Uplink(up)) => {
                business.metrics.uplinks_in_flight.inc();
                LaneItem::Uplink(up)
            }
            Some(edge_message::Body::Online(online)) => LaneItem::Online(online),
            Some(edge_message::Body::Offline(offline)) => LaneItem::Offline(offline),
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
        let pile = match &item {
            LaneItem::Uplink(u) => &u.pile,
            LaneItem::Online(o) => &o.pile,
            LaneItem::Offline(o) => &o.pile,
        };
        if lanes[lane_of(pile)].send(item).await.is_err() {
            break;
        }
        business
            .metrics
            .piles_online
            .set(business.directory.online_count() as i64);
    }
    drop(lanes);
    let _ = acker.await;
    // A newer stream of the same edge has announced its piles already: they stay.
    if business.directory.edge_gone(&edge, stream_id) {
        business.edge_lost(&edge).await;
    }
    business.metrics.edge_streams.dec();
    tracing::info!(%edge, stream_id, "edge disconnected");
}

fn lane_of(pile: &str) -> usize {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    pile.hash(&mut h);
    (h.finish() % LANES as u64) as usize
}

async fn lane(
    business: Arc<Business>,
    edge: Arc<str>,
    mut items: mpsc::Receiver<LaneItem>,
    tx: mpsc::Sender<AppMessage>,
    done: mpsc::UnboundedSender<Done>,
) {
    while let Some(item) = items.recv().await {
        match item {
            LaneItem::Uplink(up) => {
                let id = up.id;
                let handled = handle_one(&business, &edge, up, &tx).await;
                business.metrics.uplinks_in_flight.dec();
                // Not handled (the stream closed while the store was down): no ack, so
                // the edge keeps the frame and sends it again.
                if !handled || done.send(Done(id)).is_err() {
                    return;
                }
            }
            LaneItem::Online(online) => {
                let location = Location {
                    edge: edge.clone(),
                    executor: online.executor,
                    session_id: online.session_id,
                };
                // Known already (its login was handled here): the store says so too.
                let known = business.directory.location(&online.pile).as_ref() == Some(&location);
                business.directory.pile_online(&online.pile, location);
                if !known {
                    business.pile_connected(&online.pile).await;
                }
            }
            LaneItem::Offline(offline) => {
                // A pile whose shard moved to another instance is still connected.
                let moved = offline.reason == "shard_moved";
                if business
                    .directory
                    .pile_offline(&offline.pile, &edge, offline.session_id)
                    && !moved
                {
                    business
                        .pile_disconnected(&offline.pile, &offline.reason)
                        .await;
                }
            }
        }
        business
            .metrics
            .piles_online
            .set(business.directory.online_count() as i64);
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
