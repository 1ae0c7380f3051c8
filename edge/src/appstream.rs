//! Business frames to the app instances that own them, and what those instances send
//! back (downlinks, login verdicts).
//!
//! - Each executor's [`AppUplink`] hands frames and login/logout events to one bounded
//!   channel; when it is full the executor keeps a short backlog and its connections stop
//!   reading until it drains (TCP backpressure to the chargers, no unbounded buffering).
//! - The router (on the tokio control thread) picks the owner of each pile's shard from the
//!   pushed route table and passes the frame to that instance's link without waiting: a
//!   slow instance's frames wait in its own overflow, others go on. Frames whose shard has
//!   no owner (between an instance's death and the reassignment) wait for one. Only when
//!   the router holds too much in all does it stop taking frames from the executors.
//! - A link holds one `Business.Exchange` stream per app instance. Frames stay in its
//!   window until the instance acknowledges them; on reconnect they are sent again, and
//!   when the shard map moves the instance's piles elsewhere they go back to the router
//!   for the new owner once the old one had a few seconds to acknowledge what it has. When
//!   ownership moves, the new owner is told which of its piles are connected here and the
//!   old one that they left.

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
}

struct LinkHandle {
    target: Arc<AppTarget>,
    tx: mpsc::Sender<LinkInput>,
    /// Set when the instance owns nothing here any more: the link drains and hands
    /// back what is unacknowledged.
    close: watch::Sender<bool>,
    /// Events waiting because the link's queue is full (a slow or unreachable instance):
    /// only this instance's piles wait; the router goes on with the others.
    overflow: VecDeque<LinkInput>,
}

impl LinkHandle {
    /// Moves waiting events into the link's queue while it has room.
    fn flush(&mut self) {
        while let Some(input) = self.overflow.pop_front() {
            match self.tx.try_send(input) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(input)) => {
                    self.overflow.push_front(input);
                    return;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    self.overflow.clear();
                    return;
                }
            }
        }
    }
}

/// Events the router holds in all (per-instance overflow and frames without an owner)
/// before it stops taking more from the executors, which then stop reading sockets.
const ROUTER_HOLD: usize = 65_536;

/// The router's state: links, who is online, and frames waiting for an owner.
struct Router {
    shared: Arc<EdgeShared>,
    executors: ExecutorHandle,
    returns: mpsc::UnboundedSender<Vec<UplinkMessage>>,
    links: HashMap<String, LinkHandle>,
    online: HashMap<PileNo, (u64, usize)>,
    table: Arc<ShardTable>,
    /// Frames whose shard has no owner right now (between an instance's death and the
    /// reassignment): sent once one is assigned.
    unowned: VecDeque<UplinkMessage>,
}

/// Routes executor events to app instances; runs until the executors are gone.
pub async fn run_router(
    shared: Arc<EdgeShared>,
    executors: ExecutorHandle,
    events: flume::Receiver<UplinkEvent>,
    mut table: watch::Receiver<Arc<ShardTable>>,
) {
    let (returns_tx, mut returns) = mpsc::unbounded_channel::<Vec<UplinkMessage>>();
    let mut router = Router {
        shared,
        executors,
        returns: returns_tx,
        links: HashMap::new(),
        online: HashMap::new(),
        table: table.borrow().clone(),
        unowned: VecDeque::new(),
    };
    let mut flush = tokio::time::interval(Duration::from_millis(5));
    flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let room = router.held() < ROUTER_HOLD;
        tokio::select! {
            event = events.recv_async(), if room => {
                let Ok(event) = event else { return };
                router.track(&event);
                router.route(event);
            }
            changed = table.changed() => {
                if changed.is_err() {
                    return;
                }
                let next = table.borrow_and_update().clone();
                router.reassign(next);
            }
            Some(frames) = returns.recv() => {
                for frame in frames {
                    router.route(UplinkEvent::Frame(frame));
                }
            }
            _ = flush.tick(), if router.held() > 0 => {
                router.links.values_mut().for_each(LinkHandle::flush);
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

impl Router {
    fn held(&self) -> usize {
        self.unowned.len() + self.links.values().map(|l| l.overflow.len()).sum::<usize>()
    }

    fn track(&mut self, event: &UplinkEvent) {
        match event {
            UplinkEvent::Online {
                pile,
                session_id,
                executor,
            } => {
                self.online.insert(*pile, (*session_id, *executor));
            }
            UplinkEvent::Offline { pile, session_id } => {
                if self.online.get(pile).is_some_and(|(s, _)| s == session_id) {
                    self.online.remove(pile);
                }
            }
            UplinkEvent::Frame(_) => {}
        }
    }

    fn link(&mut self, target: &Arc<AppTarget>) -> &mut LinkHandle {
        let replace = self
            .links
            .get(&target.id)
            .is_some_and(|l| l.target.grpc_address != target.grpc_address);
        if replace {
            // The instance restarted elsewhere: a new link for the new address.
            if let Some(old) = self.links.remove(&target.id) {
                let _ = old.close.send(true);
            }
        }
        let (shared, executors, returns) = (&self.shared, &self.executors, &self.returns);
        self.links.entry(target.id.clone()).or_insert_with(|| {
            spawn_link(
                shared.clone(),
                executors.clone(),
                target.clone(),
                returns.clone(),
            )
        })
    }

    fn route(&mut self, event: UplinkEvent) {
        let Some(target) = self.table.owner(&event.pile()).cloned() else {
            match event {
                UplinkEvent::Frame(m) if self.unowned.len() < ROUTER_HOLD => {
                    count(&self.shared, "held_no_owner");
                    self.unowned.push_back(m);
                }
                UplinkEvent::Frame(m) => {
                    count(&self.shared, "dropped_no_owner");
                    if matches!(m.frame, Frame::Login(_)) {
                        self.executors.login_verdict(m.executor, m.session_id, None);
                    }
                }
                // The new owner learns who is online when it is assigned.
                _ => {}
            }
            return;
        };
        let link = self.link(&target);
        let input = LinkInput::Event(event);
        if link.overflow.is_empty() {
            match link.tx.try_send(input) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(input)) => link.overflow.push_back(input),
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        } else {
            link.overflow.push_back(input);
        }
        count(&self.shared, "routed");
    }

    /// The shard map changed: links to instances that own nothing now drain and close,
    /// new owners learn which of their piles are connected here (old owners that they
    /// left), and frames waiting for an owner go out.
    fn reassign(&mut self, next: Arc<ShardTable>) {
        let before = std::mem::replace(&mut self.table, next);
        let owners: std::collections::HashSet<String> = self
            .table
            .owners
            .iter()
            .flatten()
            .map(|t| t.id.clone())
            .collect();
        self.links.retain(|id, link| {
            let keep = owners.contains(id);
            if !keep {
                let _ = link.close.send(true);
            }
            keep
        });
        let moved: Vec<(PileNo, u64, usize, Option<Arc<AppTarget>>)> = self
            .online
            .iter()
            .filter_map(|(pile, (session_id, executor))| {
                let was = before.owner(pile);
                let now = self.table.owner(pile);
                (now.map(|t| &t.id) != was.map(|t| &t.id) && now.is_some())
                    .then(|| (*pile, *session_id, *executor, was.cloned()))
            })
            .collect();
        for (pile, session_id, executor, was) in moved {
            // The old owner forgets the pile (it may still be around), the new one learns it.
            if let Some(old) = was.and_then(|t| self.links.get_mut(&t.id)) {
                old.overflow
                    .push_back(LinkInput::Event(UplinkEvent::Offline { pile, session_id }));
                old.flush();
            }
            self.route(UplinkEvent::Online {
                pile,
                session_id,
                executor,
            });
        }
        let waiting: Vec<UplinkMessage> = self.unowned.drain(..).collect();
        for frame in waiting {
            self.route(UplinkEvent::Frame(frame));
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
    let (close, closed) = watch::channel(false);
    tokio::spawn(run_link(
        shared,
        executors,
        target.clone(),
        rx,
        closed,
        returns,
    ));
    LinkHandle {
        target,
        tx,
        close,
        overflow: VecDeque::new(),
    }
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

fn offline_proto(pile: &PileNo, session_id: u64) -> EdgeMessage {
    EdgeMessage {
        body: Some(edge_message::Body::Offline(PileOffline {
            pile: pile_text(pile),
            session_id,
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

impl LinkState {
    /// Takes an event; a frame gets the next id. Returns what to send, if anything.
    fn take(&mut self, event: UplinkEvent) -> Option<EdgeMessage> {
        match event {
            UplinkEvent::Frame(m) => {
                let message = uplink_proto(self.next_id, &m)?;
                self.unacked.push_back((self.next_id, m));
                self.next_id += 1;
                Some(message)
            }
            UplinkEvent::Online {
                pile,
                session_id,
                executor,
            } => {
                self.online.insert(pile, (session_id, executor));
                Some(online_proto(&pile, session_id, executor))
            }
            UplinkEvent::Offline { pile, session_id } => {
                if self
                    .online
                    .get(&pile)
                    .is_some_and(|(s, _)| *s == session_id)
                {
                    self.online.remove(&pile);
                }
                Some(offline_proto(&pile, session_id))
            }
        }
    }
}

/// How long a closing link waits for the old owner to acknowledge what it has before
/// handing the rest to the new owner.
const DRAIN_LIMIT: Duration = Duration::from_secs(5);

async fn run_link(
    shared: Arc<EdgeShared>,
    executors: ExecutorHandle,
    target: Arc<AppTarget>,
    mut input: mpsc::Receiver<LinkInput>,
    mut closed: watch::Receiver<bool>,
    returns: mpsc::UnboundedSender<Vec<UplinkMessage>>,
) {
    let mut state = LinkState {
        unacked: VecDeque::new(),
        next_id: 1,
        online: HashMap::new(),
    };
    let mut backoff = Duration::from_millis(100);
    loop {
        let outcome = stream(
            &shared,
            &executors,
            &target,
            &mut input,
            &mut closed,
            &mut state,
        )
        .await;
        let done = match outcome {
            Ok(()) => true,
            Err(e) => {
                shared.metrics.app_stream_errors.inc();
                tracing::warn!(app = %target.id, address = %target.grpc_address, "business stream lost: {e}");
                // While away, take events up to the window (they go out on the next
                // stream); beyond it they wait in the router.
                let wait = tokio::time::sleep(backoff);
                tokio::pin!(wait);
                let mut done = *closed.borrow();
                while !done {
                    tokio::select! {
                        _ = &mut wait => break,
                        _ = closed.changed() => done = true,
                        inp = input.recv(), if state.unacked.len() < WINDOW => match inp {
                            None => done = true,
                            Some(LinkInput::Event(e)) => {
                                let _ = state.take(e);
                            }
                        },
                    }
                }
                backoff = (backoff * 2).min(Duration::from_secs(2));
                done
            }
        };
        if done {
            // Anything still queued for this link goes back too.
            input.close();
            while let Ok(LinkInput::Event(e)) = input.try_recv() {
                let _ = state.take(e);
            }
            let frames: Vec<UplinkMessage> = state.unacked.drain(..).map(|(_, m)| m).collect();
            if !frames.is_empty() {
                tracing::info!(app = %target.id, frames = frames.len(), "handing unacknowledged frames to the new owner");
                let _ = returns.send(frames);
            }
            return;
        }
    }
}

/// One stream's life. `Ok`: the link is closed for good (after draining); `Err`: reconnect.
async fn stream(
    shared: &Arc<EdgeShared>,
    executors: &ExecutorHandle,
    target: &AppTarget,
    input: &mut mpsc::Receiver<LinkInput>,
    closed: &mut watch::Receiver<bool>,
    state: &mut LinkState,
) -> Result<(), String> {
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
    // Unbounded on purpose: uplinks are bounded by the window, announcements by the
    // piles connected here; sending must never wait, or acknowledgements (which free
    // the window) would not be read: the edge and the instance would wait on each other.
    let (out, out_rx) = mpsc::unbounded_channel::<EdgeMessage>();
    let hello = EdgeMessage {
        body: Some(edge_message::Body::Hello(Hello {
            edge_id: shared.edge_id.to_string(),
        })),
    };
    let send = |message: EdgeMessage| {
        out.send(message)
            .map_err(|_| "the stream closed".to_string())
    };
    send(hello)?;
    let mut inbound = client
        .exchange(tokio_stream::wrappers::UnboundedReceiverStream::new(out_rx))
        .await
        .map_err(|e| format!("the instance refused the stream: {e}"))?
        .into_inner();
    // A fresh stream: ids start at 1 again, and the instance learns our piles first.
    for (pile, (session_id, executor)) in &state.online {
        send(online_proto(pile, *session_id, *executor))?;
    }
    state.next_id = 1;
    let mut kept = VecDeque::with_capacity(state.unacked.len());
    for (_, m) in state.unacked.drain(..) {
        if let Some(message) = uplink_proto(state.next_id, &m) {
            kept.push_back((state.next_id, m));
            state.next_id += 1;
            // A closed stream ends this attempt; the frames stay unacknowledged.
            let _ = out.send(message);
        }
    }
    state.unacked = kept;
    shared.metrics.app_streams.inc();
    tracing::info!(app = %target.id, address = %target.grpc_address, "business stream open");
    let mut draining: Option<tokio::time::Instant> = None;
    let result = loop {
        if let Some(since) = draining {
            if state.unacked.is_empty() || since.elapsed() >= DRAIN_LIMIT {
                break Ok(());
            }
        }
        tokio::select! {
            _ = closed.changed(), if draining.is_none() => {
                // Let the old owner finish what it has before the rest moves on.
                draining = Some(tokio::time::Instant::now());
            }
            _ = tokio::time::sleep(Duration::from_millis(100)), if draining.is_some() => {}
            inp = input.recv(), if state.unacked.len() < WINDOW && draining.is_none() => {
                match inp {
                    None => break Ok(()),
                    Some(LinkInput::Event(event)) => {
                        if let Some(message) = state.take(event) {
                            if out.send(message).is_err() {
                                break Err("the stream closed".to_string());
                            }
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
                                let _ = out.send(result);
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
