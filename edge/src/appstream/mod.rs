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
//! - The rules (who owns what, the window, resend, hand-over) are pure, in [`state`]; the
//!   tonic side of a link is in `link.rs`.
//! - A link holds one `Business.Exchange` stream per app instance. Frames stay in its
//!   window until the instance acknowledges them; on reconnect they are sent again, and
//!   when the shard map moves the instance's piles elsewhere they go back to the router
//!   for the new owner once the old one had a few seconds to acknowledge what it has. When
//!   ownership moves, the new owner is told which of its piles are connected here and the
//!   old one that they left.

mod link;
pub mod state;

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use pylon_proto::ykc::PileNo;
use tokio::sync::{mpsc, watch};

pub use self::state::{AppTarget, ShardTable, UplinkEvent};
use self::state::{Reassignment, Route, RouterCore, ROUTER_HOLD};
use crate::executor::{EdgeShared, ExecutorHandle};
use crate::metrics::KindLabel;
use crate::uplink::{Uplink, UplinkFactory, UplinkMessage};

/// Events from all executors to the router.
const EVENT_QUEUE: usize = 8192;
/// An executor's backlog beyond which its connections stop reading.
const BACKLOG_HIGH: usize = 1024;

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

    fn offline(&self, pile: PileNo, session_id: u64, reason: &'static str) {
        self.push(UplinkEvent::Offline {
            pile,
            session_id,
            reason,
        });
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

/// What the router passes to a link.
#[allow(clippy::large_enum_variant)]
enum LinkInput {
    Event(UplinkEvent),
}

/// The router's end of one instance's link.
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
    /// Queues an event for the link without waiting: behind what already waits, if any.
    fn send(&mut self, input: LinkInput) {
        if !self.overflow.is_empty() {
            self.overflow.push_back(input);
            return;
        }
        match self.tx.try_send(input) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(input)) => self.overflow.push_back(input),
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

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

/// The router task's state: the rules ([`RouterCore`]) and the links they pick.
struct Router {
    shared: Arc<EdgeShared>,
    executors: ExecutorHandle,
    returns: mpsc::UnboundedSender<Vec<UplinkMessage>>,
    links: HashMap<String, LinkHandle>,
    core: RouterCore,
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
        core: RouterCore::new(table.borrow().clone()),
    };
    let mut flush = tokio::time::interval(Duration::from_millis(5));
    flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let room = router.held() < ROUTER_HOLD;
        tokio::select! {
            event = events.recv_async(), if room => {
                let Ok(event) = event else { return };
                router.core.track(&event);
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
    /// Events held in all: per-instance overflow and frames without an owner. Beyond
    /// [`ROUTER_HOLD`] the router stops taking more from the executors, which then stop
    /// reading sockets.
    fn held(&self) -> usize {
        self.core.unowned() + self.links.values().map(|l| l.overflow.len()).sum::<usize>()
    }

    fn link(&mut self, target: &Arc<AppTarget>) -> &mut LinkHandle {
        let replace = self
            .links
            .get(&target.id)
            .is_some_and(|l| l.target.grpc_address != target.grpc_address);
        // The instance restarted elsewhere: a new link for the new address. What waited
        // for the old one waits for the new one (the old link hands back the rest).
        let carried = if replace {
            self.links.remove(&target.id).map(|old| {
                let _ = old.close.send(true);
                old.overflow
            })
        } else {
            None
        };
        let (shared, executors, returns) = (&self.shared, &self.executors, &self.returns);
        let handle = self.links.entry(target.id.clone()).or_insert_with(|| {
            link::spawn(
                shared.clone(),
                executors.clone(),
                target.clone(),
                returns.clone(),
            )
        });
        if let Some(carried) = carried {
            handle.overflow.extend(carried);
        }
        handle
    }

    fn route(&mut self, event: UplinkEvent) {
        match self.core.route(event) {
            Route::To(target, event) => {
                self.link(&target).send(LinkInput::Event(event));
                count(&self.shared, "routed");
            }
            Route::HeldNoOwner => count(&self.shared, "held_no_owner"),
            Route::DroppedNoOwner { undecided_login } => {
                count(&self.shared, "dropped_no_owner");
                if let Some((executor, session_id)) = undecided_login {
                    self.executors.login_verdict(executor, session_id, None);
                }
            }
            Route::Ignored => {}
        }
    }

    /// The shard map changed: links to instances that own nothing now drain and close,
    /// new owners learn which of their piles are connected here (old owners that they
    /// left), and frames waiting for an owner go out.
    fn reassign(&mut self, next: Arc<ShardTable>) {
        let Reassignment {
            owners,
            moves,
            waiting,
        } = self.core.reassign(next);
        // Links to instances that own nothing here close; what waited for them goes to
        // the new owners.
        let mut orphaned = Vec::new();
        self.links.retain(|id, link| {
            let keep = owners.contains(id);
            if !keep {
                let _ = link.close.send(true);
                orphaned.extend(link.overflow.drain(..));
            }
            keep
        });
        for LinkInput::Event(event) in orphaned {
            self.route(event);
        }
        for m in moves {
            if let Some(old) = m.from.and_then(|t| self.links.get_mut(&t.id)) {
                old.overflow
                    .push_back(LinkInput::Event(UplinkEvent::Offline {
                        pile: m.pile,
                        session_id: m.session_id,
                        reason: "shard_moved",
                    }));
                old.flush();
            }
            self.route(UplinkEvent::Online {
                pile: m.pile,
                session_id: m.session_id,
                executor: m.executor,
            });
        }
        for frame in waiting {
            self.route(UplinkEvent::Frame(frame));
        }
    }
}
