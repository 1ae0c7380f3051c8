//! Business frames to the app instances that own them, and what those instances send
//! back (downlinks, login verdicts).
//!
//! - Each executor's [`AppUplink`] hands frames and login/logout events to one bounded
//!   channel; when it is full the executor keeps a short backlog and its connections stop
//!   reading until it drains (TCP backpressure to the chargers, no unbounded buffering).
//! - The router (on the tokio control thread) picks the owner of each pile's shard from the
//!   pushed route table and passes the frame to that instance's link.
//! - A link holds one `Business.Exchange` stream per app instance. Frames stay in its
//!   window until the instance acknowledges them; on reconnect they are sent again, and
//!   when the shard map moves the instance's piles elsewhere they go back to the router
//!   for the new owner. When ownership moves, the new owner is told which of its piles are
//!   connected here.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use pylon_proto::app::business_client::BusinessClient;
use pylon_proto::app::{
    app_message, edge_message, CommandResult, EdgeMessage, Hello, PileOffline, PileOnline,
    Uplink as UplinkProto,
};
use pylon_proto::routes::{shard_of, RouteView};
use pylon_proto::ykc::{Frame, PileNo};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Endpoint;

use crate::executor::{DownlinkOutcome, EdgeShared, ExecutorHandle};
use crate::metrics::KindLabel;
use crate::uplink::{Uplink, UplinkFactory, UplinkMessage};

/// Events from all executors to the router.
const EVENT_QUEUE: usize = 8192;
/// An executor's backlog beyond which its connections stop reading.
const BACKLOG_HIGH: usize = 1024;
/// Frames a link sends before it waits for acknowledgements.
const WINDOW: usize = 4096;
/// Inputs queued per link.
const LINK_QUEUE: usize = 1024;

/// What executors tell the router.
// Nearly every event is a frame, so boxing the big variant would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum UplinkEvent {
    Frame(UplinkMessage),
    Online {
        pile: PileNo,
        session_id: u64,
        executor: usize,
    },
    Offline {
        pile: PileNo,
        session_id: u64,
    },
}

impl UplinkEvent {
    fn pile(&self) -> PileNo {
        match self {
            UplinkEvent::Frame(m) => m.pile,
            UplinkEvent::Online { pile, .. } | UplinkEvent::Offline { pile, .. } => *pile,
        }
    }
}

/// One executor's uplink: a bounded channel, with a small local backlog when it is full.
pub struct AppUplink {
    tx: flume::Sender<UplinkEvent>,
    backlog: Rc<RefCell<VecDeque<UplinkEvent>>>,
    waiters: Rc<RefCell<Vec<Waker>>>,
    draining: Rc<Cell<bool>>,
}

impl AppUplink {
    /// The factory for every executor, and the router's end of the channel.
    pub fn factory() -> (UplinkFactory, flume::Receiver<UplinkEvent>) {
        let (tx, rx) = flume::bounded(EVENT_QUEUE);
        let factory: UplinkFactory = Arc::new(move |_| {
            Box::new(AppUplink {
                tx: tx.clone(),
                backlog: Rc::default(),
                waiters: Rc::default(),
                draining: Rc::default(),
            })
        });
        (factory, rx)
    }

    fn push(&self, event: UplinkEvent) {
        if self.backlog.borrow().is_empty() {
            match self.tx.try_send(event) {
                Ok(()) => return,
                Err(flume::TrySendError::Full(event)) => self.backlog.borrow_mut().push_back(event),
                // The router is gone: the edge is stopping.
                Err(flume::TrySendError::Disconnected(_)) => return,
            }
        } else {
            self.backlog.borrow_mut().push_back(event);
        }
        if !self.draining.replace(true) {
            let (tx, backlog, waiters, draining) = (
                self.tx.clone(),
                self.backlog.clone(),
                self.waiters.clone(),
                self.draining.clone(),
            );
            crate::runtime::spawn(async move {
                loop {
                    let next = backlog.borrow_mut().pop_front();
                    let Some(event) = next else { break };
                    if tx.send_async(event).await.is_err() {
                        backlog.borrow_mut().clear();
                        break;
                    }
                    if backlog.borrow().len() < BACKLOG_HIGH / 2 {
                        waiters.borrow_mut().drain(..).for_each(Waker::wake);
                    }
                }
                draining.set(false);
                waiters.borrow_mut().drain(..).for_each(Waker::wake);
            });
        }
    }
}

impl Uplink for AppUplink {
    fn send(&self, message: UplinkMessage) {
        self.push(UplinkEvent::Frame(message));
    }

    fn online(&self, pile: PileNo, session_id: u64, executor: usize) {
        self.push(UplinkEvent::Online {
            pile,
            session_id,
            executor,
        });
    }

    fn offline(&self, pile: PileNo, session_id: u64) {
        self.push(UplinkEvent::Offline { pile, session_id });
    }

    fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.backlog.borrow().len() >= BACKLOG_HIGH {
            self.waiters.borrow_mut().push(cx.waker().clone());
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    }
}

/// An app instance as the router sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppTarget {
    pub id: String,
    pub grpc_address: String,
}

/// The owner of every shard, from the pushed route table.
#[derive(Debug, Clone, Default)]
pub struct ShardTable {
    pub shard_count: u32,
    pub owners: Vec<Option<Arc<AppTarget>>>,
}

impl ShardTable {
    pub fn from_view(view: &RouteView) -> Self {
        let shard_count = view.shard_count();
        let mut targets: HashMap<String, Arc<AppTarget>> = HashMap::new();
        let owners = (0..shard_count)
            .map(|s| {
                let app = view.shard_owner(s)?;
                Some(
                    targets
                        .entry(app.id.clone())
                        .or_insert_with(|| {
                            Arc::new(AppTarget {
                                id: app.id,
                                grpc_address: app.grpc_address,
                            })
                        })
                        .clone(),
                )
            })
            .collect();
        ShardTable {
            shard_count,
            owners,
        }
    }

    pub fn owner(&self, pile: &PileNo) -> Option<&Arc<AppTarget>> {
        if self.shard_count == 0 {
            return None;
        }
        self.owners
            .get(shard_of(pile, self.shard_count) as usize)?
            .as_ref()
    }
}

/// What the router passes to a link.
#[allow(clippy::large_enum_variant)]
enum LinkInput {
    Event(UplinkEvent),
    /// The instance no longer owns anything here: hand back what is unacknowledged.
    Close,
}

struct LinkHandle {
    target: Arc<AppTarget>,
    tx: mpsc::Sender<LinkInput>,
}

/// Routes executor events to app instances; runs until the executors are gone.
pub async fn run_router(
    shared: Arc<EdgeShared>,
    executors: ExecutorHandle,
    events: flume::Receiver<UplinkEvent>,
    mut table: watch::Receiver<Arc<ShardTable>>,
) {
    let (returns_tx, mut returns) = mpsc::unbounded_channel::<Vec<UplinkMessage>>();
    let mut links: HashMap<String, LinkHandle> = HashMap::new();
    let mut online: HashMap<PileNo, (u64, usize)> = HashMap::new();
    let mut current = table.borrow().clone();
    loop {
        tokio::select! {
            event = events.recv_async() => {
                let Ok(event) = event else { return };
                match &event {
                    UplinkEvent::Online { pile, session_id, executor } => {
                        online.insert(*pile, (*session_id, *executor));
                    }
                    UplinkEvent::Offline { pile, session_id } => {
                        if online.get(pile).is_some_and(|(s, _)| s == session_id) {
                            online.remove(pile);
                        }
                    }
                    UplinkEvent::Frame(_) => {}
                }
                route(&shared, &executors, &current, &mut links, &returns_tx, event).await;
            }
            changed = table.changed() => {
                if changed.is_err() {
                    return;
                }
                let next = table.borrow_and_update().clone();
                reassign(&shared, &executors, &current, &next, &mut links, &returns_tx, &online).await;
                current = next;
            }
            Some(frames) = returns.recv() => {
                for frame in frames {
                    route(&shared, &executors, &current, &mut links, &returns_tx, UplinkEvent::Frame(frame)).await;
                }
            }
        }
    }
}

fn count(shared: &EdgeShared, kind: &str) {
    shared
        .metrics
        .uplink_routing
        .get_or_create(&KindLabel { kind: kind.into() })
        .inc();
}

async fn route(
    shared: &Arc<EdgeShared>,
    executors: &ExecutorHandle,
    table: &ShardTable,
    links: &mut HashMap<String, LinkHandle>,
    returns: &mpsc::UnboundedSender<Vec<UplinkMessage>>,
    event: UplinkEvent,
) {
    let Some(target) = table.owner(&event.pile()) else {
        match event {
            // Nobody can judge the login now: close unanswered, the charger retries.
            UplinkEvent::Frame(m) if matches!(m.frame, Frame::Login(_)) => {
                executors.login_verdict(m.executor, m.session_id, None);
                count(shared, "no_owner_login");
            }
            UplinkEvent::Frame(_) => count(shared, "no_owner_dropped"),
            _ => {}
        }
        return;
    };
    let link = links.entry(target.id.clone()).or_insert_with(|| {
        spawn_link(
            shared.clone(),
            executors.clone(),
            target.clone(),
            returns.clone(),
        )
    });
    if link.target.grpc_address != target.grpc_address {
        // The instance restarted elsewhere: a new link for the new address.
        let _ = link.tx.try_send(LinkInput::Close);
        *link = spawn_link(
            shared.clone(),
            executors.clone(),
            target.clone(),
            returns.clone(),
        );
    }
    // Waits while the instance's queue is full: backpressure.
    if link.tx.send(LinkInput::Event(event)).await.is_ok() {
        count(shared, "routed");
    }
}

/// The shard map changed: close links to instances that own nothing now, and tell new
/// owners which of their piles are connected here.
async fn reassign(
    shared: &Arc<EdgeShared>,
    executors: &ExecutorHandle,
    before: &ShardTable,
    after: &ShardTable,
    links: &mut HashMap<String, LinkHandle>,
    returns: &mpsc::UnboundedSender<Vec<UplinkMessage>>,
    online: &HashMap<PileNo, (u64, usize)>,
) {
    let owners: std::collections::HashSet<&str> = after
        .owners
        .iter()
        .flatten()
        .map(|t| t.id.as_str())
        .collect();
    links.retain(|id, link| {
        let keep = owners.contains(id.as_str());
        if !keep {
            let _ = link.tx.try_send(LinkInput::Close);
        }
        keep
    });
    for (pile, (session_id, executor)) in online {
        let was = before.owner(pile).map(|t| t.id.as_str());
        let now = after.owner(pile);
        if now.map(|t| t.id.as_str()) != was && now.is_some() {
            let event = UplinkEvent::Online {
                pile: *pile,
                session_id: *session_id,
                executor: *executor,
            };
            route(shared, executors, after, links, returns, event).await;
        }
    }
}

fn spawn_link(
    shared: Arc<EdgeShared>,
    executors: ExecutorHandle,
    target: Arc<AppTarget>,
    returns: mpsc::UnboundedSender<Vec<UplinkMessage>>,
) -> LinkHandle {
    let (tx, rx) = mpsc::channel(LINK_QUEUE);
    tokio::spawn(run_link(shared, executors, target.clone(), rx, returns));
    LinkHandle { target, tx }
}

fn pile_text(pile: &PileNo) -> String {
    pile.to_string()
}

fn uplink_proto(id: u64, m: &UplinkMessage) -> Option<EdgeMessage> {
    let mut body = Vec::new();
    m.frame.encode_body(&mut body).ok()?;
    Some(EdgeMessage {
        body: Some(edge_message::Body::Uplink(UplinkProto {
            id,
            pile: pile_text(&m.pile),
            session_id: m.session_id,
            executor: m.executor as u32,
            seq: u32::from(m.seq),
            frame_type: u32::from(m.frame.frame_type()),
            body,
        })),
    })
}

fn online_proto(pile: &PileNo, session_id: u64, executor: usize) -> EdgeMessage {
    EdgeMessage {
        body: Some(edge_message::Body::Online(PileOnline {
            pile: pile_text(pile),
            session_id,
            executor: executor as u32,
        })),
    }
}

/// A link's state that outlives any one stream.
struct LinkState {
    unacked: VecDeque<(u64, UplinkMessage)>,
    next_id: u64,
    /// This instance's piles connected here: told again on every new stream.
    online: HashMap<PileNo, (u64, usize)>,
}

async fn run_link(
    shared: Arc<EdgeShared>,
    executors: ExecutorHandle,
    target: Arc<AppTarget>,
    mut input: mpsc::Receiver<LinkInput>,
    returns: mpsc::UnboundedSender<Vec<UplinkMessage>>,
) {
    let mut state = LinkState {
        unacked: VecDeque::new(),
        next_id: 1,
        online: HashMap::new(),
    };
    let mut backoff = Duration::from_millis(100);
    loop {
        let closed = match stream(&shared, &executors, &target, &mut input, &mut state).await {
            Ok(closed) => closed,
            Err(e) => {
                shared.metrics.app_stream_errors.inc();
                tracing::warn!(app = %target.id, address = %target.grpc_address, "business stream lost: {e}");
                // Meanwhile the instance may have been replaced: a close waiting in the
                // queue ends the link.
                let mut closed = false;
                let wait = tokio::time::sleep(backoff);
                tokio::pin!(wait);
                loop {
                    tokio::select! {
                        _ = &mut wait => break,
                        inp = input.recv() => match inp {
                            None | Some(LinkInput::Close) => { closed = true; break; }
                            Some(LinkInput::Event(e)) => absorb(&mut state, e),
                        },
                    }
                }
                backoff = (backoff * 2).min(Duration::from_secs(2));
                closed
            }
        };
        if closed {
            let frames: Vec<UplinkMessage> = state.unacked.drain(..).map(|(_, m)| m).collect();
            if !frames.is_empty() {
                tracing::info!(app = %target.id, frames = frames.len(), "handing unacknowledged frames to the new owner");
                let _ = returns.send(frames);
            }
            return;
        }
    }
}

/// Takes an event while no stream is up (it is sent when one is).
fn absorb(state: &mut LinkState, event: UplinkEvent) {
    match event {
        UplinkEvent::Frame(m) => {
            let id = state.next_id;
            state.next_id += 1;
            state.unacked.push_back((id, m));
        }
        UplinkEvent::Online {
            pile,
            session_id,
            executor,
        } => {
            state.online.insert(pile, (session_id, executor));
        }
        UplinkEvent::Offline { pile, session_id } => {
            if state
                .online
                .get(&pile)
                .is_some_and(|(s, _)| *s == session_id)
            {
                state.online.remove(&pile);
            }
        }
    }
}

/// One stream's life. `Ok(true)`: the link is closed for good; `Err`: reconnect.
async fn stream(
    shared: &Arc<EdgeShared>,
    executors: &ExecutorHandle,
    target: &AppTarget,
    input: &mut mpsc::Receiver<LinkInput>,
    state: &mut LinkState,
) -> Result<bool, String> {
    let channel = Endpoint::from_shared(format!("http://{}", target.grpc_address))
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(3))
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let token: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>> = shared
        .config
        .control
        .token
        .as_ref()
        .and_then(|t| format!("Bearer {t}").parse().ok());
    let mut client = BusinessClient::with_interceptor(channel, move |mut r: tonic::Request<()>| {
        if let Some(t) = &token {
            r.metadata_mut().insert("authorization", t.clone());
        }
        Ok(r)
    });
    let (out, out_rx) = mpsc::channel::<EdgeMessage>(WINDOW);
    let hello = EdgeMessage {
        body: Some(edge_message::Body::Hello(Hello {
            edge_id: shared.edge_id.to_string(),
        })),
    };
    out.try_send(hello).map_err(|e| e.to_string())?;
    let mut inbound = client
        .exchange(ReceiverStream::new(out_rx))
        .await
        .map_err(|e| format!("the instance refused the stream: {e}"))?
        .into_inner();
    // A fresh stream: ids start at 1 again, and the instance learns our piles first.
    for (pile, (session_id, executor)) in &state.online {
        out.send(online_proto(pile, *session_id, *executor))
            .await
            .map_err(|e| e.to_string())?;
    }
    let resent: Vec<UplinkMessage> = state.unacked.drain(..).map(|(_, m)| m).collect();
    state.next_id = 1;
    for m in resent {
        let id = state.next_id;
        state.next_id += 1;
        if let Some(message) = uplink_proto(id, &m) {
            out.send(message).await.map_err(|e| e.to_string())?;
        }
        state.unacked.push_back((id, m));
    }
    shared.metrics.app_streams.inc();
    tracing::info!(app = %target.id, address = %target.grpc_address, "business stream open");
    let result = loop {
        tokio::select! {
            inp = input.recv(), if state.unacked.len() < WINDOW => {
                match inp {
                    None | Some(LinkInput::Close) => break Ok(true),
                    Some(LinkInput::Event(UplinkEvent::Frame(m))) => {
                        let id = state.next_id;
                        state.next_id += 1;
                        match uplink_proto(id, &m) {
                            Some(message) => {
                                state.unacked.push_back((id, m));
                                if out.send(message).await.is_err() {
                                    break Err("the stream closed".to_string());
                                }
                            }
                            None => state.next_id -= 1,
                        }
                    }
                    Some(LinkInput::Event(UplinkEvent::Online { pile, session_id, executor })) => {
                        state.online.insert(pile, (session_id, executor));
                        if out.send(online_proto(&pile, session_id, executor)).await.is_err() {
                            break Err("the stream closed".to_string());
                        }
                    }
                    Some(LinkInput::Event(UplinkEvent::Offline { pile, session_id })) => {
                        if state.online.get(&pile).is_some_and(|(s, _)| *s == session_id) {
                            state.online.remove(&pile);
                        }
                        let message = EdgeMessage {
                            body: Some(edge_message::Body::Offline(PileOffline { pile: pile_text(&pile), session_id })),
                        };
                        if out.send(message).await.is_err() {
                            break Err("the stream closed".to_string());
                        }
                    }
                }
            }
            message = inbound.message() => {
                let message = match message {
                    Ok(Some(m)) => m,
                    Ok(None) => break Err("the instance ended the stream".to_string()),
                    Err(status) => break Err(status.to_string()),
                };
                match message.body {
                    Some(app_message::Body::Ack(ack)) => {
                        while state.unacked.front().is_some_and(|(id, _)| *id <= ack.up_to) {
                            state.unacked.pop_front();
                        }
                    }
                    Some(app_message::Body::Verdict(v)) => {
                        executors.login_verdict(v.executor as usize, v.session_id, Some(v.accepted));
                    }
                    Some(app_message::Body::Downlink(d)) => {
                        // Queued without waiting (one wait per frame would cap a stream
                        // at the executors' wake-up rate); the outcome is reported
                        // back only for commands that asked.
                        let outcome = deliver(executors, state, &d);
                        let out = out.clone();
                        tokio::spawn(async move {
                            let outcome = outcome.await;
                            if d.command_id != 0 && !matches!(outcome, DownlinkOutcome::Queued { .. }) {
                                    let (label, detail) = match &outcome {
                                        DownlinkOutcome::NotConnected => ("not_connected", String::new()),
                                        DownlinkOutcome::Failed { reason } => ("failed", reason.clone()),
                                        DownlinkOutcome::Queued { .. } => ("queued", String::new()),
                                    };
                                    let result = EdgeMessage {
                                        body: Some(edge_message::Body::Result(CommandResult {
                                            command_id: d.command_id,
                                            outcome: label.into(),
                                            detail,
                                        })),
                                    };
                                    let _ = out.send(result).await;
                            }
                        });
                    }
                    None => {}
                }
            }
        }
    };
    shared.metrics.app_streams.dec();
    result
}

/// Hands a downlink to the executor holding the pile; the returned future resolves to
/// the outcome (nothing waits for it unless the app asked).
fn deliver(
    executors: &ExecutorHandle,
    state: &LinkState,
    d: &pylon_proto::app::Downlink,
) -> impl std::future::Future<Output = DownlinkOutcome> + Send + 'static {
    let parsed = PileNo::parse(&d.pile)
        .map_err(|_| format!("{:?} is not a pile number", d.pile))
        .and_then(|pile| {
            let frame = u8::try_from(d.frame_type)
                .map_err(|_| "frame type out of range".to_string())
                .and_then(|t| Frame::decode_body(t, &d.body).map_err(|e| e.to_string()))?;
            Ok((pile, frame))
        });
    let reply_to = d.reply_to_seq.map(|s| s as u16);
    let executors = executors.clone();
    let known = parsed
        .as_ref()
        .ok()
        .and_then(|(pile, _)| state.online.get(pile).map(|(_, executor)| *executor));
    // Queued now, in arrival order, when the pile's executor is known.
    let queued = match (&parsed, known) {
        (Ok((pile, frame)), Some(executor)) => {
            Some(executors.enqueue_to(executor, *pile, frame.clone(), reply_to))
        }
        _ => None,
    };
    async move {
        let (pile, frame) = match parsed {
            Ok(p) => p,
            Err(reason) => return DownlinkOutcome::Failed { reason },
        };
        if let Some(rx) = queued {
            return rx
                .recv_async()
                .await
                .unwrap_or(DownlinkOutcome::NotConnected);
        }
        // Not announced (yet): ask every executor.
        let mut found = DownlinkOutcome::NotConnected;
        for executor in 0..executors.len() {
            found = executors
                .send_to(executor, pile, frame.clone(), reply_to)
                .await;
            if !matches!(found, DownlinkOutcome::NotConnected) {
                break;
            }
        }
        found
    }
}
