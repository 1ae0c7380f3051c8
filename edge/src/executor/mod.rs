//! One executor: its listeners, its connections, its session table, its timers.
//!
//! Nothing here is shared with other executors except through [`ExecutorCommand`]s.
//!
//! - [`commands`]: what other threads ask of an executor (downlinks, verdicts, drains).
//! - `accept`: listeners and the accept loops.
//! - `connection`: one connection from accept to close: socket -> TLS -> session.

mod accept;
pub mod commands;
mod connection;
mod deadlines;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicU8};
use std::sync::Arc;
use std::task::Waker;
use std::time::{Duration, Instant};

use pylon_proto::ykc::PileNo;
use rustc_hash::FxHashMap;

pub use self::commands::{
    command_channels, DownlinkOutcome, ExecutorCommand, ExecutorHandle, Inbox,
};
use self::connection::{Conn, READ_BUFFER};
use crate::config::Config;
use crate::metrics::{EdgeMetrics, ExecutorMetrics};
use crate::readiness::{Poller, Readiness, Token, DOORBELL_TOKEN, LISTENER_TOKENS};
use crate::runtime;
use crate::session::{CloseReason, RateLimit};
use crate::uplink::{Uplink, UplinkFactory};

/// Lifecycle of the whole edge process.
pub const RUNNING: u8 = 0;
pub const DRAINING: u8 = 1;
pub const STOPPING: u8 = 2;

/// What all executors of one process share (read-only, or atomics).
pub struct EdgeShared {
    pub config: Arc<Config>,
    pub edge_id: Arc<str>,
    pub metrics: Arc<EdgeMetrics>,
    /// What SIGHUP changes: limits, login policy, the chargers' TLS (see `reload`).
    pub live: arc_swap::ArcSwap<crate::reload::LiveSettings>,
    /// Every pile's live session on this edge, for the takeover rules (taken at logins
    /// and closes only).
    pub logins: std::sync::Mutex<crate::takeover::LiveLogins>,
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

struct Executor {
    id: usize,
    shared: Arc<EdgeShared>,
    metrics: ExecutorMetrics,
    uplink: Box<dyn Uplink>,
    // Looked up on every readiness event: a cheap hash, as the keys are our own ids.
    conns: RefCell<FxHashMap<u64, Rc<Conn>>>,
    /// When connections' deadlines come.
    deadlines: RefCell<deadlines::Wheel>,
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
    /// This executor's copy of the live limits, refreshed at each reload.
    limits: Cell<crate::config::Limits>,
    rate: Cell<RateLimit>,
}

impl Executor {
    pub(super) fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    pub(super) fn limits(&self) -> crate::config::Limits {
        self.limits.get()
    }

    /// Takes the limits of the settings a reload swapped in.
    pub(super) fn refresh_settings(&self) {
        let limits = self.shared.live.load().limits;
        self.limits.set(limits);
        self.rate.set(rate_limit(&limits));
    }

    /// Sets a connection's deadline. One moved earlier is filed at once; one moved later
    /// is found where it was filed and filed again then.
    pub(super) fn set_deadline(&self, conn: &Conn, at_ms: u64, reason: CloseReason) {
        conn.deadline_ms.set(at_ms);
        conn.deadline_reason.set(reason);
        let slot = deadlines::slot_of(at_ms);
        if slot < conn.filed_slot.get() {
            self.deadlines.borrow_mut().file(conn.id, slot);
            conn.filed_slot.set(slot);
        }
    }

    pub(super) fn begin_drain(&self) {
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
    pub(super) fn shutting_down(&self) -> bool {
        self.shared.state.load(std::sync::atomic::Ordering::Relaxed) != RUNNING
    }

    pub(super) fn wake_token(&self, token: Token, readiness: Readiness) {
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

    pub(super) fn close_all(&self, reason: CloseReason) {
        for conn in self.conns.borrow().values() {
            conn.close(reason);
        }
    }
}

/// Runs executor `id` until the edge stops: listeners, command loop, deadline sweeper.
pub async fn run(id: usize, shared: Arc<EdgeShared>, inbox: Inbox) {
    let limits = shared.live.load().limits;
    let poller = match Poller::new() {
        Ok(p) => p,
        Err(e) => runtime::fatal(&format!("executor {id} cannot create its epoll set: {e}")),
    };
    if let Err(e) = poller.register_reads(inbox.doorbell.fd(), DOORBELL_TOKEN) {
        runtime::fatal(&format!("executor {id} cannot watch its doorbell: {e}"));
    }
    let exec = Rc::new(Executor {
        id,
        metrics: ExecutorMetrics::new(shared.metrics.clone(), id),
        uplink: (shared.uplinks)(id),
        conns: RefCell::new(FxHashMap::default()),
        deadlines: RefCell::new(deadlines::Wheel::default()),
        piles: RefCell::new(HashMap::new()),
        read_buffer: RefCell::new(vec![0u8; READ_BUFFER].into_boxed_slice()),
        epoch: Instant::now(),
        draining: Cell::new(false),
        stopping: Cell::new(false),
        listen_generation: Cell::new(0),
        listener_wakers: RefCell::new(vec![None; 2]),
        poller,
        limits: Cell::new(limits),
        rate: Cell::new(rate_limit(&limits)),
        shared: shared.clone(),
    });

    if !accept::start_listeners(&exec) {
        runtime::fatal(&format!("executor {id} cannot listen"));
    }
    runtime::spawn(poll_readiness(exec.clone(), inbox));
    // The sweeper returns once the executor is stopping and every connection is gone.
    sweep_deadlines(exec).await;
    tracing::info!(executor = id, "executor stopped");
}

/// Wakes the tasks of ready sockets and handles commands from other threads. This task
/// is the executor's park: it blocks in `epoll_wait` (up to `park_timeout_us`) and then
/// yields, so the tasks it woke run before it parks again. A command rings the doorbell
/// (see [`crate::doorbell`]), which ends the park at once. glommio's own reactor
/// (timers) runs at each preemption tick, so timers wait at most one tick.
async fn poll_readiness(exec: Rc<Executor>, inbox: Inbox) {
    let park = Duration::from_micros(exec.shared.config.park_timeout_us);
    let mut events = Vec::with_capacity(1024);
    loop {
        // Arm before looking: a command queued after the look rings the bell.
        inbox.doorbell.arm();
        let timeout = if inbox.commands.is_empty() {
            park
        } else {
            Duration::ZERO
        };
        exec.poller.wait(&mut events, timeout, |token, readiness| {
            if token == DOORBELL_TOKEN {
                inbox.doorbell.clear();
            } else {
                exec.wake_token(token, readiness)
            }
        });
        inbox.doorbell.disarm();
        // Commands that were queued before this point are handled now; later ones find
        // the bell armed again at the next park.
        for _ in 0..inbox.commands.len() {
            match inbox.commands.try_recv() {
                Ok(cmd) => exec.handle(cmd),
                Err(_) => break,
            }
        }
        futures_lite::future::yield_now().await;
    }
}

/// Closes connections whose deadline (TLS handshake, login, heartbeat) has passed.
async fn sweep_deadlines(exec: Rc<Executor>) {
    loop {
        runtime::sleep(Duration::from_millis(deadlines::SLOT_MS)).await;
        let now = exec.now_ms();
        let due = exec.deadlines.borrow_mut().take_due(now);
        let conns = exec.conns.borrow();
        let mut wheel = exec.deadlines.borrow_mut();
        for entry in due {
            let conn = conns.get(&entry.0);
            let filed = conn.map(|c| c.filed_slot.get());
            let deadline = conn.map_or(0, |c| c.deadline_ms.get());
            match (wheel.settle(entry, filed, deadline, now), conn) {
                (deadlines::Due::Expired, Some(conn)) => conn.close(conn.deadline_reason.get()),
                (deadlines::Due::Refiled(slot), Some(conn)) => conn.filed_slot.set(slot),
                _ => {}
            }
        }
        drop((conns, wheel));
        if exec.stopping.get() && exec.conns.borrow().is_empty() {
            break;
        }
    }
}

/// Each session's frame budget under `limits`.
fn rate_limit(limits: &crate::config::Limits) -> RateLimit {
    RateLimit {
        per_sec: limits.max_frames_per_sec,
        burst: limits.frame_burst,
    }
}
