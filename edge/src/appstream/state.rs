//! The app stream's rules, with no sockets, channels or clocks: which app instance gets an
//! event ([`RouterCore`]), and what one instance's link keeps, sends, resends and hands
//! over ([`LinkWindow`]). The tonic link and the router task around them are in
//! [`super`]; the rules are tested here.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use pylon_proto::routes::{shard_of, RouteView};
use pylon_proto::ykc::{Frame, PileNo};

use crate::uplink::UplinkMessage;

/// Frames a link sends before it waits for acknowledgements.
pub const WINDOW: usize = 4096;
/// How long a closing link waits for the old owner to acknowledge what it has before
/// handing the rest to the new owner.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(5);
/// Frames without an owner the router keeps (between an instance's death and the
/// reassignment); beyond it they are dropped (a login is answered "undecided").
pub const ROUTER_HOLD: usize = 65_536;
/// First and longest wait before a lost stream is opened again (the backoff is
/// `pylon_service::control_link::Backoff`, with these bounds).
pub const BACKOFF_MIN: Duration = Duration::from_millis(100);
pub const BACKOFF_MAX: Duration = Duration::from_secs(2);

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
        /// Why the session ended (`CloseReason::as_str`, or `shard_moved`).
        reason: &'static str,
    },
}

impl UplinkEvent {
    pub fn pile(&self) -> PileNo {
        match self {
            UplinkEvent::Frame(m) => m.pile,
            UplinkEvent::Online { pile, .. } | UplinkEvent::Offline { pile, .. } => *pile,
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

    /// The ids of the instances that own at least one shard.
    pub fn owner_ids(&self) -> HashSet<String> {
        self.owners.iter().flatten().map(|t| t.id.clone()).collect()
    }
}

/// Where the router sends one event.
// Returned and matched at once, never stored: boxing the event would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Route {
    /// To this instance's link.
    To(Arc<AppTarget>, UplinkEvent),
    /// No owner: the frame is kept until one is assigned.
    HeldNoOwner,
    /// No owner and the hold is full: the frame is dropped. For a login, the executor
    /// must hear that nobody could decide (`Some((executor, session_id))`).
    DroppedNoOwner {
        undecided_login: Option<(usize, u64)>,
    },
    /// An online/offline event with no owner: the owner learns it when it is assigned.
    Ignored,
}

/// One pile whose shard moved while it is connected here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    pub pile: PileNo,
    pub session_id: u64,
    pub executor: usize,
    /// The old owner, to be told the pile left (it may still be around).
    pub from: Option<Arc<AppTarget>>,
}

/// What a new shard map means for the router's links.
#[derive(Debug)]
pub struct Reassignment {
    /// Instances that own shards now; links to any other drain and close.
    pub owners: HashSet<String>,
    /// Connected piles whose owner changed (to one that exists): the old owner is told
    /// they left, the new one that they are here (by routing an `Online`).
    pub moves: Vec<Move>,
    /// Frames that waited for an owner: route them again.
    pub waiting: Vec<UplinkMessage>,
}

/// The router's memory: the shard map, the piles connected here, frames with no owner.
#[derive(Debug, Default)]
pub struct RouterCore {
    table: Arc<ShardTable>,
    online: HashMap<PileNo, (u64, usize)>,
    unowned: VecDeque<UplinkMessage>,
}

impl RouterCore {
    pub fn new(table: Arc<ShardTable>) -> Self {
        RouterCore {
            table,
            ..Default::default()
        }
    }

    /// Frames waiting for an owner.
    pub fn unowned(&self) -> usize {
        self.unowned.len()
    }

    /// Which pile is connected where (a newer session replaces an older one; an offline
    /// of an older session changes nothing).
    pub fn track(&mut self, event: &UplinkEvent) {
        match event {
            UplinkEvent::Online {
                pile,
                session_id,
                executor,
            } => {
                self.online.insert(*pile, (*session_id, *executor));
            }
            UplinkEvent::Offline {
                pile, session_id, ..
            } => {
                if self.online.get(pile).is_some_and(|(s, _)| s == session_id) {
                    self.online.remove(pile);
                }
            }
            UplinkEvent::Frame(_) => {}
        }
    }

    /// Where `event` goes.
    pub fn route(&mut self, event: UplinkEvent) -> Route {
        if let Some(target) = self.table.owner(&event.pile()) {
            return Route::To(target.clone(), event);
        }
        match event {
            UplinkEvent::Frame(m) if self.unowned.len() < ROUTER_HOLD => {
                self.unowned.push_back(m);
                Route::HeldNoOwner
            }
            UplinkEvent::Frame(m) => Route::DroppedNoOwner {
                undecided_login: matches!(m.frame, Frame::Login(_))
                    .then_some((m.executor, m.session_id)),
            },
            _ => Route::Ignored,
        }
    }

    /// Takes a new shard map.
    pub fn reassign(&mut self, next: Arc<ShardTable>) -> Reassignment {
        let before = std::mem::replace(&mut self.table, next);
        let moves = self
            .online
            .iter()
            .filter_map(|(pile, (session_id, executor))| {
                let was = before.owner(pile);
                let now = self.table.owner(pile);
                (now.is_some() && now.map(|t| &t.id) != was.map(|t| &t.id)).then(|| Move {
                    pile: *pile,
                    session_id: *session_id,
                    executor: *executor,
                    from: was.cloned(),
                })
            })
            .collect();
        Reassignment {
            owners: self.table.owner_ids(),
            moves,
            waiting: self.unowned.drain(..).collect(),
        }
    }
}

/// What a link sends on its stream, before it becomes protobuf.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Outgoing<'a> {
    Uplink {
        id: u64,
        message: &'a UplinkMessage,
    },
    Online {
        pile: PileNo,
        session_id: u64,
        executor: usize,
    },
    Offline {
        pile: PileNo,
        session_id: u64,
        /// Why the session ended (`CloseReason::as_str`, or `shard_moved`).
        reason: &'static str,
    },
}

/// One instance's link, across its streams: frames sent and not yet acknowledged (the
/// window), their ids, and the piles of this instance connected here.
#[derive(Debug)]
pub struct LinkWindow {
    unacked: VecDeque<(u64, UplinkMessage)>,
    next_id: u64,
    online: HashMap<PileNo, (u64, usize)>,
}

impl Default for LinkWindow {
    fn default() -> Self {
        LinkWindow {
            unacked: VecDeque::new(),
            next_id: 1,
            online: HashMap::new(),
        }
    }
}

impl LinkWindow {
    /// Whether another frame may be sent before acknowledgements arrive.
    pub fn has_room(&self) -> bool {
        self.unacked.len() < WINDOW
    }

    pub fn unacked(&self) -> usize {
        self.unacked.len()
    }

    /// The executor where `pile` is connected, if this instance was told.
    pub fn executor_of(&self, pile: &PileNo) -> Option<usize> {
        self.online.get(pile).map(|(_, executor)| *executor)
    }

    /// Takes an event: a frame gets the next id and stays until acknowledged.
    pub fn take(&mut self, event: UplinkEvent) -> Outgoing<'_> {
        match event {
            UplinkEvent::Frame(m) => {
                let id = self.next_id;
                self.next_id += 1;
                self.unacked.push_back((id, m));
                let message = &self.unacked.back().expect("just pushed").1;
                Outgoing::Uplink { id, message }
            }
            UplinkEvent::Online {
                pile,
                session_id,
                executor,
            } => {
                self.online.insert(pile, (session_id, executor));
                Outgoing::Online {
                    pile,
                    session_id,
                    executor,
                }
            }
            UplinkEvent::Offline {
                pile,
                session_id,
                reason,
            } => {
                if self
                    .online
                    .get(&pile)
                    .is_some_and(|(s, _)| *s == session_id)
                {
                    self.online.remove(&pile);
                }
                Outgoing::Offline {
                    pile,
                    session_id,
                    reason,
                }
            }
        }
    }

    /// Drops frame `id`, the last one taken (it could not be put on the wire at all); its
    /// id is given out again, as the instance acknowledges only consecutive ids.
    pub fn forget(&mut self, id: u64) {
        if self.unacked.back().is_some_and(|(last, _)| *last == id) {
            self.unacked.pop_back();
            self.next_id = id;
        }
    }

    /// The instance acknowledged every frame up to `up_to`.
    pub fn ack(&mut self, up_to: u64) {
        while self.unacked.front().is_some_and(|(id, _)| *id <= up_to) {
            self.unacked.pop_front();
        }
    }

    /// A new stream: ids start at 1 again. What to send first: the piles connected here,
    /// then every unacknowledged frame, in order, under its new id.
    pub fn restart(&mut self) -> Vec<Outgoing<'_>> {
        for (i, (id, _)) in self.unacked.iter_mut().enumerate() {
            *id = i as u64 + 1;
        }
        self.next_id = self.unacked.len() as u64 + 1;
        let online = self
            .online
            .iter()
            .map(|(pile, (session_id, executor))| Outgoing::Online {
                pile: *pile,
                session_id: *session_id,
                executor: *executor,
            });
        let frames = self
            .unacked
            .iter()
            .map(|(id, message)| Outgoing::Uplink { id: *id, message });
        online.chain(frames).collect()
    }

    /// A closing link is done draining when the instance acknowledged everything, or
    /// after [`DRAIN_LIMIT`].
    pub fn drained(&self, draining_for: Duration) -> bool {
        self.unacked.is_empty() || draining_for >= DRAIN_LIMIT
    }

    /// The link closes for good: its unacknowledged frames, in order, for the new owner.
    pub fn hand_over(&mut self) -> Vec<UplinkMessage> {
        self.unacked.drain(..).map(|(_, m)| m).collect()
    }
}

#[cfg(test)]
mod tests;
