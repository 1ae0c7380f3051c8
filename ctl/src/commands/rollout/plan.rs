//! A rolling restart as a state machine, without I/O: fed what the control plane lists
//! (and the outcome of each restart hook), it says what to do next. The driver
//! (`super::run_rollout`) does the HTTP calls, runs the hooks and keeps the clock.
//!
//! For each batch of edges: drain, wait until their chargers have moved (through
//! dispatch), restart, wait until each registered anew, undrain. For app instances:
//! restart (a stopping instance hands its shards over), wait until each registered anew
//! and every shard is owned again. For control-plane replicas: the followers first and
//! the leader last (one leadership move), restart, wait until each registered anew and a
//! leader is elected.

use std::collections::{HashMap, VecDeque};

/// Which members a rollout restarts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Edges,
    Apps,
    Control,
}

impl Kind {
    pub fn noun(self) -> &'static str {
        match self {
            Kind::Edges => "edge",
            Kind::Apps => "app instance",
            Kind::Control => "control-plane replica",
        }
    }
}

/// One member as the control plane lists it, reduced to what a rollout watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: String,
    pub live: bool,
    /// Edges: an operator drained it.
    pub draining: bool,
    /// Edges: chargers connected; apps: piles served.
    pub sessions: u32,
    /// Changes when the member registers anew (a restart); 0 when not registered.
    pub registration: i64,
    /// Apps: shards it owns.
    pub shards: u32,
}

/// What the control plane showed at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observation {
    pub members: Vec<Member>,
    pub unowned_shards: u32,
    /// Control: the elected leader's id, and its term (the lease of its key).
    pub leader: Option<String>,
    pub leader_term: i64,
}

impl Observation {
    fn member(&self, id: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.id == id)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Drain these edges through the control plane.
    Drain(Vec<String>),
    /// Run the restart hook for each of these, then report with [`Rollout::restarted`].
    Restart(Vec<String>),
    /// Let these edges take new sessions again.
    Undrain(Vec<String>),
    /// Look again a little later.
    Wait,
    Done,
    /// Stop here; the text says what state is left and what to do.
    Failed(String),
}

#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Members restarted together.
    pub batch: usize,
    /// How long chargers may take to move off a drained edge before it is restarted
    /// anyway (its own drain then closes the rest, and they reconnect elsewhere).
    pub move_timeout_ms: u64,
    /// How long a restarted member may take to register again.
    pub ready_timeout_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    /// Between batches.
    Next,
    /// Edges drained; their chargers moving.
    Moving,
    /// Hooks running (the driver reports back).
    Restarting,
    /// Waiting for the restarted members to register again.
    Returning,
    Failed(String),
}

pub struct Rollout {
    kind: Kind,
    settings: Settings,
    pending: VecDeque<String>,
    batch: Vec<String>,
    phase: Phase,
    /// When the current phase began.
    since_ms: u64,
    /// Each batch member's registration before its restart.
    before: HashMap<String, i64>,
    /// Control: the leader and its term when the batch began.
    leader_before: Option<String>,
    term_before: i64,
    notes: Vec<String>,
    restarted: usize,
}

impl Rollout {
    /// Plans a rollout of `only` (or every member, in id order), or says why it cannot
    /// start: a member down or drained, or batches that would leave nobody serving.
    pub fn new(
        kind: Kind,
        settings: Settings,
        first: &Observation,
        only: &[String],
    ) -> Result<Rollout, String> {
        if settings.batch == 0 {
            return Err("--batch must be at least 1".into());
        }
        let mut ids: Vec<String> = if only.is_empty() {
            first.members.iter().map(|m| m.id.clone()).collect()
        } else {
            only.to_vec()
        };
        ids.sort();
        ids.dedup();
        if kind == Kind::Control {
            // The leader last: leadership moves once, not with every restart.
            ids.sort_by_key(|id| first.leader.as_deref() == Some(id.as_str()));
        }
        if ids.is_empty() {
            return Err(format!("no {} is registered", kind.noun()));
        }
        for id in &ids {
            let noun = kind.noun();
            match first.member(id) {
                None => return Err(format!("no {noun} named {id:?} is registered")),
                Some(m) if !m.live => {
                    return Err(format!(
                        "{noun} {id} is down: bring it back (or leave it out with --only) first"
                    ))
                }
                Some(m) if m.draining => {
                    return Err(format!(
                        "edge {id} is drained already: undrain it (pylonctl edges undrain \
                         {id}) or leave it out with --only"
                    ))
                }
                Some(_) => {}
            }
        }
        let serving = first
            .members
            .iter()
            .filter(|m| m.live && !m.draining)
            .count();
        if settings.batch >= serving {
            return Err(format!(
                "a batch of {} of {serving} live {}s leaves none to take over: use a smaller \
                 --batch, or add a {} first",
                settings.batch,
                kind.noun(),
                kind.noun()
            ));
        }
        if kind == Kind::Control && first.leader.is_none() {
            return Err(
                "no control-plane replica is the leader: wait until one is elected \
                 (pylonctl status)"
                    .into(),
            );
        }
        if kind == Kind::Apps && first.unowned_shards > 0 {
            return Err(format!(
                "{} shards have no owner already: wait until every shard is owned \
                 (pylonctl shards show)",
                first.unowned_shards
            ));
        }
        Ok(Rollout {
            kind,
            settings,
            pending: ids.into(),
            batch: Vec::new(),
            phase: Phase::Next,
            since_ms: 0,
            before: HashMap::new(),
            leader_before: None,
            term_before: 0,
            notes: Vec::new(),
            restarted: 0,
        })
    }

    /// Members restarted so far.
    pub fn restarted_count(&self) -> usize {
        self.restarted
    }

    /// What happened since the last call, for the operator.
    pub fn take_notes(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notes)
    }

    pub fn next(&mut self, now_ms: u64, seen: &Observation) -> Action {
        match self.phase.clone() {
            Phase::Failed(why) => Action::Failed(why),
            Phase::Next => self.start_batch(now_ms, seen),
            Phase::Moving => {
                let left: u32 = self
                    .batch
                    .iter()
                    .filter_map(|id| seen.member(id))
                    .filter(|m| m.live)
                    .map(|m| m.sessions)
                    .sum();
                let waited = now_ms.saturating_sub(self.since_ms);
                if left > 0 && waited < self.settings.move_timeout_ms {
                    return Action::Wait;
                }
                if left > 0 {
                    self.notes.push(format!(
                        "{}: {left} sessions still there after {} s; restarting anyway \
                         (its drain closes them and they reconnect elsewhere)",
                        self.batch.join(", "),
                        waited / 1000
                    ));
                } else {
                    self.notes
                        .push(format!("{}: chargers moved off", self.batch.join(", ")));
                }
                self.phase = Phase::Restarting;
                Action::Restart(self.batch.clone())
            }
            Phase::Restarting => Action::Wait,
            Phase::Returning => self.returning(now_ms, seen),
        }
    }

    /// The restart hooks of the current batch finished: `Err` carries the hook's failure.
    pub fn restarted(&mut self, now_ms: u64, outcomes: Vec<(String, Result<(), String>)>) {
        let failed: Vec<String> = outcomes
            .iter()
            .filter_map(|(id, r)| r.as_ref().err().map(|e| format!("{id}: {e}")))
            .collect();
        if !failed.is_empty() {
            let left = match self.kind {
                Kind::Edges => format!(
                    " {} stays drained until you undrain it (pylonctl edges undrain ID).",
                    self.batch.join(", ")
                ),
                Kind::Apps | Kind::Control => String::new(),
            };
            self.phase = Phase::Failed(format!(
                "the restart hook failed: {}.{left}",
                failed.join("; ")
            ));
            return;
        }
        self.notes
            .push(format!("{}: restarted", self.batch.join(", ")));
        self.phase = Phase::Returning;
        self.since_ms = now_ms;
    }

    fn start_batch(&mut self, now_ms: u64, seen: &Observation) -> Action {
        if self.pending.is_empty() {
            return Action::Done;
        }
        let take = self.settings.batch.min(self.pending.len());
        self.batch = self.pending.drain(..take).collect();
        self.before = self
            .batch
            .iter()
            .map(|id| (id.clone(), seen.member(id).map_or(0, |m| m.registration)))
            .collect();
        self.leader_before = seen.leader.clone();
        self.term_before = seen.leader_term;
        self.since_ms = now_ms;
        match self.kind {
            Kind::Edges => {
                self.phase = Phase::Moving;
                self.notes
                    .push(format!("{}: draining", self.batch.join(", ")));
                Action::Drain(self.batch.clone())
            }
            Kind::Apps | Kind::Control => {
                self.phase = Phase::Restarting;
                Action::Restart(self.batch.clone())
            }
        }
    }

    fn returning(&mut self, now_ms: u64, seen: &Observation) -> Action {
        let back = |id: &String| {
            seen.member(id).is_some_and(|m| {
                m.live
                    && m.registration != 0
                    && Some(&m.registration) != self.before.get(id)
                    && (self.kind != Kind::Apps || m.shards > 0)
            })
        };
        let settled = match self.kind {
            Kind::Edges => true,
            Kind::Apps => seen.unowned_shards == 0,
            // A restarted leader's key outlives it if it was killed: wait for a new
            // election, not the old key.
            Kind::Control => {
                let restarted_leader = self
                    .leader_before
                    .as_ref()
                    .is_some_and(|l| self.batch.contains(l));
                seen.leader.is_some() && (!restarted_leader || seen.leader_term != self.term_before)
            }
        };
        let all_back = self.batch.iter().all(back) && settled;
        if !all_back {
            let waited = now_ms.saturating_sub(self.since_ms);
            if waited < self.settings.ready_timeout_ms {
                return Action::Wait;
            }
            let missing: Vec<&str> = self
                .batch
                .iter()
                .filter(|id| !back(id))
                .map(String::as_str)
                .collect();
            let left = match self.kind {
                Kind::Edges => " It stays drained: undrain it once it is up.",
                Kind::Apps | Kind::Control => "",
            };
            let why = if missing.is_empty() && self.kind == Kind::Control {
                format!(
                    "no leader elected {} s after restarting {}",
                    waited / 1000,
                    self.batch.join(", ")
                )
            } else if missing.is_empty() {
                format!(
                    "{} shards still have no owner {} s after restarting {}",
                    seen.unowned_shards,
                    waited / 1000,
                    self.batch.join(", ")
                )
            } else {
                format!(
                    "{} did not register again within {} s of its restart.{left}",
                    missing.join(", "),
                    waited / 1000
                )
            };
            self.phase = Phase::Failed(why.clone());
            return Action::Failed(why);
        }
        self.restarted += self.batch.len();
        self.phase = Phase::Next;
        self.notes.push(format!("{}: back", self.batch.join(", ")));
        if self.kind == Kind::Control && seen.leader != self.leader_before {
            self.notes.push(format!(
                "leadership moved from {} to {}",
                self.leader_before.as_deref().unwrap_or("none"),
                seen.leader.as_deref().unwrap_or("none")
            ));
        } else if self.kind == Kind::Control && seen.leader_term != self.term_before {
            // The restarted leader can win the election again before the others campaign.
            self.notes.push(format!(
                "{} elected leader again",
                seen.leader.as_deref().unwrap_or("none")
            ));
        }
        match self.kind {
            Kind::Edges => Action::Undrain(std::mem::take(&mut self.batch)),
            Kind::Apps | Kind::Control => {
                self.batch.clear();
                self.start_batch(now_ms, seen)
            }
        }
    }
}

#[cfg(test)]
mod tests;
