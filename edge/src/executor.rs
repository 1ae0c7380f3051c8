//! One executor: its listeners, its connections, its session table, its timers.
//!
//! Nothing here is shared with other executors except through [`ExecutorCommand`]s.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::poll_fn;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;

use futures_lite::FutureExt;
use pylon_proto::ykc::{CrcOrder, Frame, PileNo};
use rustc_hash::FxHashMap;
use rustls::ServerConfig;

use crate::allowlist::LoginPolicy;
use crate::config::Config;
use crate::metrics::{EdgeMetrics, ExecutorMetrics, Transport};
use crate::readiness::{self, Poller, Readiness, Token, LISTENER_TOKENS};
use crate::runtime;
use crate::session::{CloseReason, LoginDecision, RateLimit, Session, SessionHost};
use crate::tls::{TlsError, TlsSession};
use crate::uplink::{Uplink, UplinkFactory, UplinkMessage};

/// Size of each executor's read buffer, shared by all its connections.
const READ_BUFFER: usize = 64 * 1024;
/// A connection whose output buffer grows past this keeps it; smaller ones are freed.
const KEEP_BUFFER: usize = 512;
/// One TLS record at most: 16 KiB of payload plus expansion and header.
const TLS_RECORD_HOLD: usize = 18 * 1024;
/// What a TLS session may hold during the handshake: rustls's largest handshake message
/// (64 KiB) and the record around its last piece.
const TLS_HANDSHAKE_HOLD: usize = 64 * 1024 + TLS_RECORD_HOLD;

/// Lifecycle of the whole edge process.
pub const RUNNING: u8 = 0;
pub const DRAINING: u8 = 1;
pub const STOPPING: u8 = 2;

/// Messages to an executor from outside it.
pub enum ExecutorCommand {
    /// Send a frame to a pile, if it is connected here (a reply echoes `reply_to`).
    Downlink {
        pile: PileNo,
        frame: Frame,
        reply_to: Option<u16>,
        reply: flume::Sender<DownlinkOutcome>,
    },
    /// The app service's verdict on a pending login (`None`: nobody could decide).
    LoginVerdict {
        session_id: u64,
        accepted: Option<bool>,
    },
    /// A newer session of `pile` logged in elsewhere: close older ones here.
    Evict { pile: PileNo, newer_than: u64 },
    /// Stop accepting; close remaining sessions after the grace period.
    Drain,
    /// An operator drained this edge: stop accepting and close the sessions in small
    /// batches spread over `period`, so the chargers reconnect (through dispatch) elsewhere.
    MoveOff { period: Duration },
    /// The operator drain was lifted: accept again.
    Resume,
    /// Close everything now.
    Shutdown,
}

/// What became of a downlink request on one executor.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum DownlinkOutcome {
    /// Queued on the pile's session; it is written as soon as the socket takes it.
    Queued {
        executor: usize,
        session: u64,
    },
    NotConnected,
    Failed {
        reason: String,
    },
}

/// Sends commands to every executor of this process. Cheap to clone, usable from any thread.
#[derive(Clone)]
pub struct ExecutorHandle {
    executors: Vec<flume::Sender<ExecutorCommand>>,
}

impl ExecutorHandle {
    /// Queues `frame` for `pile` on executor `executor` (where the pile logged in) without
    /// waiting; the outcome arrives on the returned channel. Frames queued for one
    /// executor are written in the order they were queued.
    pub fn enqueue_to(
        &self,
        executor: usize,
        pile: PileNo,
        frame: Frame,
        reply_to: Option<u16>,
    ) -> flume::Receiver<DownlinkOutcome> {
        let (tx, rx) = flume::bounded(1);
        let cmd = ExecutorCommand::Downlink {
            pile,
            frame,
            reply_to,
            reply: tx.clone(),
        };
        let sent = self
            .executors
            .get(executor)
            .is_some_and(|exec| exec.send(cmd).is_ok());
        if !sent {
            let _ = tx.send(DownlinkOutcome::Failed {
                reason: "no such executor, or the edge is shutting down".into(),
            });
        }
        rx
    }

    /// Sends `frame` to `pile` on executor `executor` and waits for the outcome.
    pub async fn send_to(
        &self,
        executor: usize,
        pile: PileNo,
        frame: Frame,
        reply_to: Option<u16>,
    ) -> DownlinkOutcome {
        self.enqueue_to(executor, pile, frame, reply_to)
            .recv_async()
            .await
            .unwrap_or(DownlinkOutcome::NotConnected)
    }

    /// Delivers the app service's verdict on a pending login.
    pub fn login_verdict(&self, executor: usize, session_id: u64, accepted: Option<bool>) {
        if let Some(exec) = self.executors.get(executor) {
            let _ = exec.send(ExecutorCommand::LoginVerdict {
                session_id,
                accepted,
            });
        }
    }

    /// Sends `frame` to `pile` wherever it is connected in this process.
    pub async fn send(&self, pile: PileNo, frame: Frame) -> DownlinkOutcome {
        let (tx, rx) = flume::bounded(self.executors.len());
        for exec in &self.executors {
            let cmd = ExecutorCommand::Downlink {
                pile,
                frame: frame.clone(),
                reply_to: None,
                reply: tx.clone(),
            };
            if exec.send(cmd).is_err() {
                return DownlinkOutcome::Failed {
                    reason: "edge is shutting down".into(),
                };
            }
        }
        drop(tx);
        let mut outcome = DownlinkOutcome::NotConnected;
        while let Ok(answer) = rx.recv_async().await {
            if !matches!(answer, DownlinkOutcome::NotConnected) {
                outcome = answer;
            }
        }
        outcome
    }

    /// Executors in this process.
    pub fn len(&self) -> usize {
        self.executors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.executors.is_empty()
    }

    pub fn broadcast(&self, make: impl Fn() -> ExecutorCommand) {
        for exec in &self.executors {
            let _ = exec.send(make());
        }
    }
}

/// What all executors of one process share (read-only, or atomics).
pub struct EdgeShared {
    pub config: Arc<Config>,
    pub edge_id: Arc<str>,
    pub metrics: Arc<EdgeMetrics>,
    pub policy: Arc<LoginPolicy>,
    pub tls: Option<Arc<ServerConfig>>,
    pub uplinks: UplinkFactory,
    pub session_ids: AtomicU64,
    pub state: AtomicU8,
    /// An operator drained this edge through the control plane (see `control`).
    pub operator_drain: std::sync::atomic::AtomicBool,
    /// The kernel's per-CPU listener selection, when eBPF is on.
    pub selectors: Option<Arc<crate::ebpf::ListenerSelectors>>,
    /// The SYN-flood guard, when configured (its blocklist is managed through the admin API).
    pub syn_guard: Option<std::sync::Mutex<pylon_ebpf::synguard::SynGuard>>,
    /// The XDP SYN spreader, when configured (`--xdp-spread <iface>`).
    pub cpu_spreader: Option<pylon_ebpf::cpuspread::CpuSpreader>,
    /// Kernel-level TCP metrics of the edge's ports (with `--ebpf auto|on`).
    pub tcp_metrics: Option<pylon_ebpf::tcpmetrics::TcpMetrics>,
    pub peers: ExecutorHandle,
}

impl EdgeShared {
    /// Logged-in sessions over all executors and transports.
    pub fn session_count(&self) -> i64 {
        let family = &self.metrics.sessions;
        (0..self.config.executor_count())
            .flat_map(|i| {
                ["tcp", "tls"].map(|transport| crate::metrics::ExecTransport {
                    executor: i.to_string(),
                    transport: transport.into(),
                })
            })
            .map(|labels| family.get_or_create(&labels).get())
            .sum()
    }
}

/// Builds the command channels; returns the handle and each executor's receiver.
pub fn command_channels(count: usize) -> (ExecutorHandle, Vec<flume::Receiver<ExecutorCommand>>) {
    let (txs, rxs) = (0..count).map(|_| flume::unbounded()).unzip();
    (ExecutorHandle { executors: txs }, rxs)
}

/// What the executor hands a connection to write.
enum Outgoing {
    Frame { frame: Frame, reply_to: Option<u16> },
    LoginVerdict { accepted: bool },
}

/// The part of a connection that the executor can reach: its mailbox.
struct Conn {
    id: u64,
    transport: Transport,
    waker: Cell<Option<Waker>>,
    close: Cell<Option<CloseReason>>,
    downlink: RefCell<Vec<Outgoing>>,
    deadline_ms: Cell<u64>,
    deadline_reason: Cell<CloseReason>,
    /// The socket may have unread data. Cleared by a short read: with edge-triggered
    /// readiness, data arriving after it raises a new event, so no extra read (that
    /// would only say WouldBlock) is needed before waiting.
    readable: Cell<bool>,
    /// The peer hung up (or the socket failed). The end of stream came with the event
    /// that brought the last data, and no new event follows it: a short read must not
    /// clear `readable`, or the close would only be noticed at the next deadline.
    hangup: Cell<bool>,
}

impl Conn {
    fn close(&self, reason: CloseReason) {
        if self.close.get().is_none() {
            self.close.set(Some(reason));
        }
        self.wake();
    }

    fn wake(&self) {
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    fn set_deadline(&self, at_ms: u64, reason: CloseReason) {
        self.deadline_ms.set(at_ms);
        self.deadline_reason.set(reason);
    }
}

struct Executor {
    id: usize,
    shared: Arc<EdgeShared>,
    metrics: ExecutorMetrics,
    uplink: Box<dyn Uplink>,
    // Looked up on every readiness event: a cheap hash, as the keys are our own ids.
    conns: RefCell<FxHashMap<u64, Rc<Conn>>>,
    // Keyed by what chargers send: keep the DoS-resistant default hash.
    piles: RefCell<HashMap<PileNo, u64>>,
    read_buffer: RefCell<Box<[u8]>>,
    epoch: Instant,
    draining: Cell<bool>,
    stopping: Cell<bool>,
    /// Bumped whenever listening starts again after a drain, so accept loops of the
    /// previous listeners end even if they never saw the drain.
    listen_generation: Cell<u64>,
    /// The accept task of each listener, woken when its socket is ready or on drain.
    listener_wakers: RefCell<Vec<Option<Waker>>>,
    poller: Poller,
    rate: RateLimit,
}

impl Executor {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn limits(&self) -> &crate::config::Limits {
        &self.shared.config.limits
    }

    fn begin_drain(&self) {
        self.draining.set(true);
        for w in self
            .listener_wakers
            .borrow_mut()
            .iter_mut()
            .filter_map(Option::take)
        {
            w.wake();
        }
    }

    /// The process is draining for shutdown (not an operator drain).
    fn shutting_down(&self) -> bool {
        self.shared.state.load(std::sync::atomic::Ordering::Relaxed) != RUNNING
    }

    fn wake_token(&self, token: Token, readiness: Readiness) {
        if token >= LISTENER_TOKENS {
            let slot = (token - LISTENER_TOKENS) as usize;
            if let Some(w) = self
                .listener_wakers
                .borrow_mut()
                .get_mut(slot)
                .and_then(Option::take)
            {
                w.wake();
            }
        } else if let Some(conn) = self.conns.borrow().get(&token) {
            if readiness.readable {
                conn.readable.set(true);
            }
            if readiness.hangup {
                conn.hangup.set(true);
            }
            conn.wake();
        }
    }

    fn close_all(&self, reason: CloseReason) {
        for conn in self.conns.borrow().values() {
            conn.close(reason);
        }
    }

    fn handle(self: &Rc<Self>, cmd: ExecutorCommand) {
        match cmd {
            ExecutorCommand::Downlink {
                pile,
                frame,
                reply_to,
                reply,
            } => {
                let _ = reply.send(self.downlink(pile, frame, reply_to));
            }
            ExecutorCommand::LoginVerdict {
                session_id,
                accepted,
            } => {
                if let Some(conn) = self.conns.borrow().get(&session_id) {
                    match accepted {
                        Some(accepted) => {
                            conn.downlink
                                .borrow_mut()
                                .push(Outgoing::LoginVerdict { accepted });
                            conn.wake();
                        }
                        None => conn.close(CloseReason::LoginUndecided),
                    }
                }
            }
            ExecutorCommand::Evict { pile, newer_than } => {
                let id = self.piles.borrow().get(&pile).copied();
                if let Some(id) = id.filter(|&id| id < newer_than) {
                    if let Some(conn) = self.conns.borrow().get(&id) {
                        conn.close(CloseReason::Replaced);
                    }
                }
            }
            ExecutorCommand::Drain => {
                self.begin_drain();
                let this = self.clone();
                let grace = Duration::from_secs(self.limits().drain_grace_secs);
                runtime::spawn(async move {
                    runtime::sleep(grace).await;
                    this.stopping.set(true);
                    this.close_all(CloseReason::Drain);
                });
            }
            ExecutorCommand::MoveOff { period } => {
                if self.draining.get() {
                    return;
                }
                self.begin_drain();
                runtime::spawn(move_off(self.clone(), period));
            }
            ExecutorCommand::Resume => {
                if self.draining.get() && !self.stopping.get() && !self.shutting_down() {
                    self.draining.set(false);
                    self.listen_generation.set(self.listen_generation.get() + 1);
                    start_listeners(self);
                }
            }
            ExecutorCommand::Shutdown => {
                self.begin_drain();
                self.stopping.set(true);
                self.close_all(CloseReason::Shutdown);
            }
        }
    }

    fn downlink(&self, pile: PileNo, frame: Frame, reply_to: Option<u16>) -> DownlinkOutcome {
        let Some(id) = self.piles.borrow().get(&pile).copied() else {
            return DownlinkOutcome::NotConnected;
        };
        let conns = self.conns.borrow();
        let Some(conn) = conns.get(&id) else {
            return DownlinkOutcome::NotConnected;
        };
        let mut queue = conn.downlink.borrow_mut();
        // Each queued frame is at most one maximal frame on the wire.
        if queue.len() * pylon_proto::ykc::frame::MAX_FRAME >= self.limits().max_buffered_bytes {
            drop(queue);
            conn.close(CloseReason::BufferLimit);
            self.metrics
                .all
                .downlinks
                .get_or_create(&result_label("buffer_full"))
                .inc();
            return DownlinkOutcome::Failed {
                reason: "the pile's send queue is full".into(),
            };
        }
        queue.push(Outgoing::Frame { frame, reply_to });
        drop(queue);
        conn.wake();
        self.metrics
            .all
            .downlinks
            .get_or_create(&result_label("queued"))
            .inc();
        DownlinkOutcome::Queued {
            executor: self.id,
            session: id,
        }
    }
}

fn result_label(result: &str) -> crate::metrics::ResultLabel {
    crate::metrics::ResultLabel {
        result: result.into(),
    }
}

/// Runs executor `id` until the edge stops: listeners, command loop, deadline sweeper.
pub async fn run(id: usize, shared: Arc<EdgeShared>, commands: flume::Receiver<ExecutorCommand>) {
    let limits = &shared.config.limits;
    let poller = match Poller::new() {
        Ok(p) => p,
        Err(e) => runtime::fatal(&format!("executor {id} cannot create its epoll set: {e}")),
    };
    let exec = Rc::new(Executor {
        id,
        metrics: ExecutorMetrics::new(shared.metrics.clone(), id),
        uplink: (shared.uplinks)(id),
        conns: RefCell::new(FxHashMap::default()),
        piles: RefCell::new(HashMap::new()),
        read_buffer: RefCell::new(vec![0u8; READ_BUFFER].into_boxed_slice()),
        epoch: Instant::now(),
        draining: Cell::new(false),
        stopping: Cell::new(false),
        listen_generation: Cell::new(0),
        listener_wakers: RefCell::new(vec![None; 2]),
        poller,
        rate: RateLimit {
            per_sec: limits.max_frames_per_sec,
            burst: limits.frame_burst,
        },
        shared: shared.clone(),
    });

    if !start_listeners(&exec) {
        runtime::fatal(&format!("executor {id} cannot listen"));
    }
    runtime::spawn(poll_readiness(exec.clone()));

    let cmd_exec = exec.clone();
    runtime::spawn(async move {
        while let Ok(cmd) = commands.recv_async().await {
            cmd_exec.handle(cmd);
        }
    });
    // The sweeper returns once the executor is stopping and every connection is gone.
    sweep_deadlines(exec).await;
    tracing::info!(executor = id, "executor stopped");
}

/// Opens this executor's listeners and starts accepting; false if one cannot listen.
fn start_listeners(exec: &Rc<Executor>) -> bool {
    // One waker slot per entry here (see `listener_wakers`).
    let listeners = [
        (exec.shared.config.tcp_listen, Transport::Tcp),
        (exec.shared.config.tls_listen, Transport::Tls),
    ];
    for (slot, (addr, transport)) in listeners.into_iter().enumerate() {
        let Some(addr) = addr else { continue };
        let listening = readiness::listen(addr).and_then(|l| {
            exec.poller
                .register(l.as_raw_fd(), LISTENER_TOKENS + slot as Token)?;
            Ok(l)
        });
        match listening {
            Ok(listener) => {
                if let Some(selectors) = &exec.shared.selectors {
                    // Executor i runs on CPU i when pinned; unpinned, SYNs still spread
                    // by CPU, just without the locality.
                    // Executor i's CPU (when pinned): the slot SYNs on that CPU select.
                    let cpu = (exec.shared.config.first_cpu + exec.id) as u32;
                    if let Err(e) = selectors.register(slot, cpu, &listener) {
                        tracing::warn!(executor = exec.id, %addr, "eBPF listener selection not set up: {e}");
                    }
                }
                runtime::spawn(accept_loop(exec.clone(), listener, transport, addr, slot));
            }
            Err(e) => {
                tracing::error!(executor = exec.id, %addr, "cannot listen: {e}");
                return false;
            }
        }
    }
    true
}

/// Closes this executor's sessions in batches spread evenly over `period` (one batch per
/// second), stopping early if the drain is lifted.
async fn move_off(exec: Rc<Executor>, period: Duration) {
    const TICK: Duration = Duration::from_secs(1);
    // Undrained (and maybe drained again) since: a newer move-off owns the work.
    let generation = exec.listen_generation.get();
    let total = exec.conns.borrow().len();
    let ticks = (period.as_secs_f64() / TICK.as_secs_f64()).ceil().max(1.0) as usize;
    let batch = total.div_ceil(ticks).max(1);
    tracing::info!(
        executor = exec.id,
        sessions = total,
        batch,
        ?period,
        "moving chargers off this edge"
    );
    loop {
        runtime::sleep(TICK).await;
        if !exec.draining.get() || exec.stopping.get() || exec.listen_generation.get() != generation
        {
            return;
        }
        let victims: Vec<Rc<Conn>> = exec
            .conns
            .borrow()
            .values()
            .filter(|c| c.close.get().is_none())
            .take(batch)
            .cloned()
            .collect();
        if victims.is_empty() {
            tracing::info!(executor = exec.id, "every charger has moved off");
            return;
        }
        for conn in victims {
            conn.close(CloseReason::Moved);
        }
    }
}

async fn accept_loop(
    exec: Rc<Executor>,
    listener: TcpListener,
    transport: Transport,
    addr: SocketAddr,
    slot: usize,
) {
    tracing::info!(executor = exec.id, %addr, transport = transport.as_str(), "listening");
    let generation = exec.listen_generation.get();
    loop {
        let accepted = poll_fn(|cx| {
            if exec.draining.get() || exec.listen_generation.get() != generation {
                return Poll::Ready(None);
            }
            match listener.accept() {
                Ok((stream, _)) => Poll::Ready(Some(Ok(stream))),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    exec.listener_wakers.borrow_mut()[slot] = Some(cx.waker().clone());
                    Poll::Pending
                }
                Err(e) => Poll::Ready(Some(Err(e))),
            }
        })
        .await;
        let stream = match accepted {
            None => break,
            Some(Ok(stream)) => stream,
            Some(Err(e)) => {
                // Typically out of file descriptors: back off instead of spinning.
                tracing::warn!(executor = exec.id, "accept failed: {e}");
                runtime::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if exec.conns.borrow().len() >= exec.limits().max_sessions_per_executor {
            exec.metrics.close(CloseReason::ExecutorFull.as_str());
            continue;
        }
        if let Err(e) = readiness::prepare(&stream) {
            tracing::debug!("preparing an accepted socket: {e}");
            continue;
        }
        runtime::spawn(serve(exec.clone(), stream, transport));
    }
    tracing::info!(executor = exec.id, %addr, "stopped accepting");
}

/// Wakes the tasks of ready sockets. This task is the executor's park: it blocks in
/// `epoll_wait` (up to `park_timeout_us`) and then yields, so the tasks it woke run
/// before it parks again. glommio's own reactor (timers, messages from other threads)
/// runs at each preemption tick, so those wait at most one tick.
async fn poll_readiness(exec: Rc<Executor>) {
    let park = Duration::from_micros(exec.shared.config.park_timeout_us);
    let mut events = Vec::with_capacity(1024);
    loop {
        exec.poller.wait(&mut events, park, |token, readiness| {
            exec.wake_token(token, readiness)
        });
        futures_lite::future::yield_now().await;
    }
}

/// Closes connections whose deadline (TLS handshake, login, heartbeat) has passed.
async fn sweep_deadlines(exec: Rc<Executor>) {
    loop {
        runtime::sleep(Duration::from_millis(500)).await;
        let now = exec.now_ms();
        for conn in exec.conns.borrow().values() {
            if conn.deadline_ms.get() <= now {
                conn.close(conn.deadline_reason.get());
            }
        }
        if exec.stopping.get() && exec.conns.borrow().is_empty() {
            break;
        }
    }
}

/// The session host: how a session's decisions reach the executor.
struct Host<'a> {
    exec: &'a Executor,
    conn: &'a Conn,
    pile: Option<PileNo>,
}

impl SessionHost for Host<'_> {
    fn login_decision(&mut self, pile: &PileNo) -> LoginDecision {
        if self.exec.shared.config.auth.app_login {
            self.exec.metrics.login("asked");
            return LoginDecision::Ask;
        }
        let allowed = self.exec.shared.policy.allows(pile);
        self.exec
            .metrics
            .login(if allowed { "accepted" } else { "rejected" });
        if allowed {
            LoginDecision::Accept
        } else {
            LoginDecision::Reject
        }
    }

    fn logged_in(&mut self, pile: PileNo) {
        let exec = self.exec;
        let previous = exec.piles.borrow_mut().insert(pile, self.conn.id);
        if let Some(old) = previous.filter(|&old| old != self.conn.id) {
            if let Some(conn) = exec.conns.borrow().get(&old) {
                conn.close(CloseReason::Replaced);
            }
        }
        let newer_than = self.conn.id;
        for (i, peer) in exec.shared.peers.executors.iter().enumerate() {
            if i != exec.id {
                let _ = peer.send(ExecutorCommand::Evict { pile, newer_than });
            }
        }
        self.pile = Some(pile);
        exec.metrics.transport(self.conn.transport).sessions.inc();
        exec.uplink.online(pile, self.conn.id, exec.id);
        tracing::debug!(executor = exec.id, session = self.conn.id, %pile, "logged in");
    }

    fn alive(&mut self) {
        let timeout = self.exec.limits().heartbeat_timeout().as_millis() as u64;
        self.conn
            .set_deadline(self.exec.now_ms() + timeout, CloseReason::HeartbeatTimeout);
    }

    fn heartbeat(&mut self) {
        self.exec.metrics.all.heartbeats.inc();
    }

    fn uplink(&mut self, pile: PileNo, seq: u16, frame: Frame) {
        self.exec.uplink.send(UplinkMessage {
            edge_id: self.exec.shared.edge_id.clone(),
            executor: self.exec.id,
            session_id: self.conn.id,
            pile,
            seq,
            frame,
        });
    }

    fn frame_in(&mut self, frame_type: u8, crc: CrcOrder) {
        self.exec.metrics.frame_in(frame_type);
        if crc == CrcOrder::Swapped {
            self.exec.metrics.all.crc_swapped.inc();
        }
    }

    fn frame_out(&mut self, frame_type: u8) {
        self.exec.metrics.frame_out(frame_type);
    }

    fn decode_error(&mut self, kind: &'static str) {
        self.exec.metrics.decode_error(kind);
    }

    fn now_ms(&self) -> u64 {
        self.exec.now_ms()
    }
}

enum Wake {
    Read(Result<(), CloseReason>),
    Downlink,
    Close(CloseReason),
}

/// Serves one connection from accept to close.
async fn serve(exec: Rc<Executor>, stream: TcpStream, transport: Transport) {
    let limits = exec.limits();
    let id = exec.shared.session_ids.fetch_add(1, Ordering::Relaxed);
    let now = exec.now_ms();
    let (first_deadline, first_reason) = match transport {
        Transport::Tls => (
            limits.tls_handshake_timeout_secs,
            CloseReason::TlsHandshakeTimeout,
        ),
        Transport::Tcp => (limits.login_timeout_secs, CloseReason::LoginTimeout),
    };
    let conn = Rc::new(Conn {
        id,
        transport,
        waker: Cell::new(None),
        close: Cell::new(None),
        downlink: RefCell::new(Vec::new()),
        deadline_ms: Cell::new(now + first_deadline * 1000),
        deadline_reason: Cell::new(first_reason),
        readable: Cell::new(true),
        hangup: Cell::new(false),
    });
    exec.conns.borrow_mut().insert(id, conn.clone());
    if let Err(e) = exec.poller.register(stream.as_raw_fd(), id) {
        tracing::warn!(executor = exec.id, "cannot watch a connection: {e}");
        conn.close(CloseReason::IoError);
    }
    let counters = exec.metrics.transport(transport);
    counters.connections.inc();
    if transport == Transport::Tcp {
        exec.metrics.handshake(transport, "ok");
    }

    let mut host = Host {
        exec: &exec,
        conn: &conn,
        pile: None,
    };
    // A panic while serving this connection is a bug; it must cost this connection only.
    // Everything `drive` touches of the executor is released by unwinding (RefCell
    // guards), and the bookkeeping below runs either way, so no session is left behind.
    let served = AssertUnwindSafe(drive(&exec, &conn, &mut host, stream, transport))
        .catch_unwind()
        .await;
    let reason = served.unwrap_or_else(|panic| {
        tracing::error!(
            executor = exec.id,
            session = id,
            pile = ?host.pile,
            "serving a connection panicked: {}; closed it",
            runtime::panic_message(&*panic)
        );
        CloseReason::Panic
    });

    exec.conns.borrow_mut().remove(&id);
    if let Some(pile) = host.pile {
        let mut piles = exec.piles.borrow_mut();
        if piles.get(&pile) == Some(&id) {
            piles.remove(&pile);
        }
        counters.sessions.dec();
        exec.uplink.offline(pile, id);
    }
    counters.connections.dec();
    exec.metrics.close(reason.as_str());
    tracing::debug!(executor = exec.id, session = id, pile = ?host.pile, reason = reason.as_str(), "closed");
}

async fn drive(
    exec: &Executor,
    conn: &Conn,
    host: &mut Host<'_>,
    stream: TcpStream,
    transport: Transport,
) -> CloseReason {
    let limits = exec.limits();
    let counters = exec.metrics.transport(transport);
    let mut tls = match (transport, &exec.shared.tls) {
        (Transport::Tls, Some(cfg)) => match TlsSession::new(cfg.clone()) {
            Ok(t) => Some(t),
            Err(e) => return tls_failed(exec, &e, true),
        },
        _ => None,
    };
    let mut session = Session::new(exec.rate, exec.now_ms());
    // Wire bytes waiting to be written, and (TLS) plaintext waiting to be encrypted.
    let mut out: Vec<u8> = Vec::new();
    let mut plain: Vec<u8> = Vec::new();

    loop {
        let wake = poll_fn(|cx| {
            if let Some(reason) = conn.close.take() {
                return Poll::Ready(Wake::Close(reason));
            }
            if !conn.downlink.borrow().is_empty() {
                return Poll::Ready(Wake::Downlink);
            }
            conn.waker.set(Some(cx.waker().clone()));
            if !conn.readable.get() {
                return Poll::Pending;
            }
            // The app service is behind: leave the bytes in the socket (TCP backpressure)
            // rather than buffer frames without bound.
            if exec.uplink.poll_ready(cx).is_pending() {
                return Poll::Pending;
            }
            let mut buffer = exec.read_buffer.borrow_mut();
            match nonblocking(|| (&stream).read(&mut buffer[..])) {
                Poll::Pending => {
                    conn.readable.set(false);
                    Poll::Pending
                }
                Poll::Ready(Ok(0)) => Poll::Ready(Wake::Close(CloseReason::PeerClosed)),
                Poll::Ready(Err(_)) => Poll::Ready(Wake::Close(CloseReason::IoError)),
                Poll::Ready(Ok(n)) => {
                    if n < buffer.len() && !conn.hangup.get() {
                        conn.readable.set(false);
                    }
                    counters.bytes_in.inc_by(n as u64);
                    let data = &mut buffer[..n];
                    let result = match tls.as_mut() {
                        None => session.on_bytes(data, host, &mut out),
                        Some(tls) => {
                            receive_tls(tls, data, &mut session, host, &mut out, &mut plain, exec)
                        }
                    };
                    Poll::Ready(Wake::Read(result))
                }
            }
        })
        .await;

        let closing = match wake {
            Wake::Close(reason) => return reason,
            Wake::Read(Ok(())) => None,
            Wake::Read(Err(reason)) => Some(reason),
            Wake::Downlink => {
                let outgoing = std::mem::take(&mut *conn.downlink.borrow_mut());
                let target = if tls.is_some() { &mut plain } else { &mut out };
                let mut verdict = Ok(());
                for item in &outgoing {
                    match item {
                        Outgoing::Frame { frame, reply_to } => {
                            if let Err(e) = session.encode_downlink(frame, *reply_to, host, target)
                            {
                                tracing::warn!(session = conn.id, "downlink frame not sent: {e}");
                            }
                        }
                        Outgoing::LoginVerdict { accepted } => {
                            verdict = verdict.and(session.login_verdict(*accepted, host, target));
                        }
                    }
                }
                if let Some(tls) = tls.as_mut() {
                    if let Err(e) = tls.send(&plain, &mut out) {
                        return tls_failed(exec, &e, false);
                    }
                    plain.clear();
                }
                verdict.err()
            }
        };

        if out.len() > limits.max_buffered_bytes {
            return CloseReason::BufferLimit;
        }
        if !out.is_empty() {
            if let Err(reason) = write_all(&stream, &out, conn).await {
                return closing.unwrap_or(reason);
            }
            counters.bytes_out.inc_by(out.len() as u64);
            out.clear();
        }
        if out.capacity() > KEEP_BUFFER {
            out = Vec::new();
        }
        if plain.capacity() > KEEP_BUFFER {
            plain = Vec::new();
        }
        if let Some(reason) = closing {
            return reason;
        }
    }
}

/// Feeds bytes through TLS into the session; encrypts what the session answered.
fn receive_tls(
    tls: &mut TlsSession,
    data: &mut [u8],
    session: &mut Session,
    host: &mut Host<'_>,
    out: &mut Vec<u8>,
    plain: &mut Vec<u8>,
    exec: &Executor,
) -> Result<(), CloseReason> {
    let was_handshaking = tls.is_handshaking();
    let mut result = Ok(());
    let received = tls.receive(data, out, &mut |bytes| {
        if result.is_ok() {
            result = session.on_bytes(bytes, host, plain);
        }
    });
    let received = received.map_err(|e| tls_failed(exec, &e, was_handshaking))?;
    if was_handshaking && !tls.is_handshaking() {
        exec.metrics.handshake(Transport::Tls, "ok");
        if session.pile().is_none() {
            let deadline = exec.now_ms() + exec.limits().login_timeout_secs * 1000;
            host.conn.set_deadline(deadline, CloseReason::LoginTimeout);
        }
    }
    // Held TLS bytes: after the handshake, at most one record and a frame; during it,
    // handshake messages rustls reassembles across records (up to 64 KiB, e.g. a long
    // client-certificate chain).
    let limit = if tls.is_handshaking() {
        TLS_HANDSHAKE_HOLD
    } else {
        pylon_proto::ykc::frame::MAX_FRAME + TLS_RECORD_HOLD
    };
    if tls.buffered() > limit {
        return Err(CloseReason::BufferLimit);
    }
    if !plain.is_empty() {
        tls.send(plain, out)
            .map_err(|e| tls_failed(exec, &e, false))?;
        plain.clear();
    }
    if received.peer_closed {
        return Err(result.err().unwrap_or(CloseReason::PeerClosed));
    }
    result
}

/// Counts a failed TLS session (as a failed handshake, or a decode error after it) and
/// gives the close reason.
fn tls_failed(exec: &Executor, e: &TlsError, handshaking: bool) -> CloseReason {
    if handshaking {
        exec.metrics.handshake(Transport::Tls, e.kind());
    } else {
        exec.metrics.decode_error(e.kind());
    }
    exec.metrics.tls_error(e.detail());
    tracing::debug!(executor = exec.id, "TLS session failed: {e}");
    CloseReason::TlsError
}

/// Writes all of `data`, giving up when the connection is told to close meanwhile.
async fn write_all(stream: &TcpStream, data: &[u8], conn: &Conn) -> Result<(), CloseReason> {
    let mut written = 0;
    while written < data.len() {
        let n = poll_fn(|cx| {
            if let Some(reason) = conn.close.take() {
                return Poll::Ready(Err(reason));
            }
            conn.waker.set(Some(cx.waker().clone()));
            match nonblocking(|| (&*stream).write(&data[written..])) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => Poll::Ready(Err(CloseReason::IoError)),
                Poll::Ready(Ok(n)) => Poll::Ready(Ok(n)),
            }
        })
        .await?;
        written += n;
    }
    Ok(())
}

/// One non-blocking socket call: WouldBlock means "wait for the next readiness edge"
/// (the caller has registered its waker already).
fn nonblocking(mut call: impl FnMut() -> io::Result<usize>) -> Poll<io::Result<usize>> {
    loop {
        match call() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
            other => return Poll::Ready(other),
        }
    }
}
