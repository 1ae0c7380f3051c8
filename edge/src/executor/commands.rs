//! What other threads ask of an executor, and how it answers: downlinks to its piles,
//! login verdicts, evictions, drains and shutdown.

use pylon_proto::ykc::PileCipher;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use pylon_proto::ykc::{Frame, PileNo};

use super::connection::{Conn, Outgoing};
use super::{accept, Executor};
use crate::doorbell::Doorbell;
use crate::runtime;
use crate::session::CloseReason;

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
        accepted: Option<(bool, Option<Box<PileCipher>>)>,
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
    /// The live settings were reloaded: take the new limits.
    Reload,
    /// Close everything now.
    Shutdown,
}

/// What became of a downlink request on one executor; also the admin API's reply to
/// `POST /v1/downlink`.
pub use pylon_proto::api::edge::DownlinkReply as DownlinkOutcome;

/// Sends commands to every executor of this process. Cheap to clone, usable from any thread.
#[derive(Clone)]
pub struct ExecutorHandle {
    executors: Vec<Outbox>,
}

/// One executor's commands as it receives them, and the bell that wakes it for them.
pub struct Inbox {
    pub(super) commands: flume::Receiver<ExecutorCommand>,
    pub(super) doorbell: Arc<Doorbell>,
}

/// The sending side of one executor's [`Inbox`].
#[derive(Clone)]
struct Outbox {
    commands: flume::Sender<ExecutorCommand>,
    doorbell: Arc<Doorbell>,
}

impl Outbox {
    /// Queues `cmd` and wakes the executor if it is parked. `Err`: the executor is gone
    /// (the command is dropped).
    fn send(&self, cmd: ExecutorCommand) -> Result<(), ExecutorGone> {
        self.commands.send(cmd).map_err(|_| ExecutorGone)?;
        self.doorbell.ring();
        Ok(())
    }
}

/// The executor a command was for has stopped.
#[derive(Debug)]
struct ExecutorGone;

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
    /// `accepted`: the verdict, and for a pile that encrypts, its cipher; `None`: the app
    /// could not decide.
    pub fn login_verdict(
        &self,
        executor: usize,
        session_id: u64,
        accepted: Option<(bool, Option<Box<PileCipher>>)>,
    ) {
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

    /// Tells every executor but `from` that session `newer_than` of `pile` logged in, so
    /// that they close older sessions of it.
    pub fn evict_elsewhere(&self, from: usize, pile: PileNo, newer_than: u64) {
        for (i, peer) in self.executors.iter().enumerate() {
            if i != from {
                let _ = peer.send(ExecutorCommand::Evict { pile, newer_than });
            }
        }
    }

    pub fn broadcast(&self, make: impl Fn() -> ExecutorCommand) {
        for exec in &self.executors {
            let _ = exec.send(make());
        }
    }
}

/// Builds the command channels; returns the handle and each executor's inbox.
pub fn command_channels(count: usize) -> std::io::Result<(ExecutorHandle, Vec<Inbox>)> {
    let mut executors = Vec::with_capacity(count);
    let mut inboxes = Vec::with_capacity(count);
    for _ in 0..count {
        let (tx, rx) = flume::unbounded();
        let doorbell = Arc::new(Doorbell::new()?);
        executors.push(Outbox {
            commands: tx,
            doorbell: doorbell.clone(),
        });
        inboxes.push(Inbox {
            commands: rx,
            doorbell,
        });
    }
    Ok((ExecutorHandle { executors }, inboxes))
}

impl Executor {
    pub(super) fn handle(self: &Rc<Self>, cmd: ExecutorCommand) {
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
                        Some((accepted, cipher)) => {
                            conn.downlink
                                .borrow_mut()
                                .push(Outgoing::LoginVerdict { accepted, cipher });
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
            ExecutorCommand::Reload => self.refresh_settings(),
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
                    accept::start_listeners(self);
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
