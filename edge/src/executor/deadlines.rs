//! When each connection's deadline (TLS handshake, login, heartbeat) comes, without
//! looking at every connection at every sweep.
//!
//! Connections are filed by the slot their deadline falls in. Every heartbeat moves a
//! deadline later; the wheel is not told. When a slot comes, each connection in it is
//! looked at: past its deadline it closes, otherwise it is filed again under its current
//! deadline. So an idle charger is looked at about once per heartbeat timeout, not twice
//! a second. A deadline moved *earlier* is filed at once ([`Wheel::file`]); the entry
//! it leaves behind is stale and dropped when its slot comes.

use std::collections::BTreeMap;

/// Width of a slot, in ms: the sweep's period.
pub const SLOT_MS: u64 = 500;

/// Connection ids by the slot their deadline falls in.
#[derive(Default)]
pub struct Wheel {
    slots: BTreeMap<u64, Vec<u64>>,
}

/// The slot a deadline falls in: its end is at or after the deadline, so a connection is
/// looked at once its deadline has passed.
pub fn slot_of(deadline_ms: u64) -> u64 {
    deadline_ms.div_ceil(SLOT_MS)
}

/// What the sweep does with a connection whose slot came.
#[derive(Debug, PartialEq, Eq)]
pub enum Due {
    /// Its deadline has passed: close it.
    Expired,
    /// Its deadline moved later: filed again under this slot.
    Refiled(u64),
    /// This entry was stale (the connection is filed elsewhere, or gone).
    Stale,
}

impl Wheel {
    /// Files connection `id` under `slot` (from [`slot_of`]).
    pub fn file(&mut self, id: u64, slot: u64) {
        self.slots.entry(slot).or_default().push(id);
    }

    /// Takes the entries of every slot that has ended by `now_ms`, with their slot.
    pub fn take_due(&mut self, now_ms: u64) -> Vec<(u64, u64)> {
        let mut due = Vec::new();
        while let Some(entry) = self.slots.first_entry() {
            let slot = *entry.key();
            if slot * SLOT_MS > now_ms {
                break;
            }
            due.extend(entry.remove().into_iter().map(|id| (id, slot)));
        }
        due
    }

    /// Decides about one due entry: `filed` is the slot the connection says it is filed
    /// under (None: the connection is gone), `deadline_ms` its current deadline.
    pub fn settle(
        &mut self,
        (id, slot): (u64, u64),
        filed: Option<u64>,
        deadline_ms: u64,
        now_ms: u64,
    ) -> Due {
        if filed != Some(slot) {
            return Due::Stale;
        }
        if deadline_ms <= now_ms {
            return Due::Expired;
        }
        let next = slot_of(deadline_ms);
        self.file(id, next);
        Due::Refiled(next)
    }

    /// Entries held (stale ones included).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.slots.values().map(Vec::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_is_looked_at_once_its_slot_ends_and_closes_when_past_its_deadline() {
        let mut w = Wheel::default();
        w.file(1, slot_of(1_200));
        assert!(w.take_due(1_000).is_empty(), "its slot ends at 1,500");
        let due = w.take_due(1_500);
        assert_eq!(due, vec![(1, 3)]);
        assert_eq!(w.settle(due[0], Some(3), 1_200, 1_500), Due::Expired);
        assert_eq!(w.len(), 0);
    }

    #[test]
    fn a_deadline_moved_later_is_refiled_and_not_looked_at_before_then() {
        let mut w = Wheel::default();
        w.file(7, slot_of(30_000));
        // Heartbeats moved the deadline to 90 s.
        let due = w.take_due(30_000);
        assert_eq!(
            w.settle(due[0], Some(60), 90_000, 30_000),
            Due::Refiled(180)
        );
        assert!(w.take_due(89_999).is_empty());
        let due = w.take_due(90_000);
        assert_eq!(due, vec![(7, 180)]);
        assert_eq!(w.settle(due[0], Some(180), 90_000, 90_000), Due::Expired);
    }

    #[test]
    fn stale_entries_and_gone_connections_are_dropped() {
        let mut w = Wheel::default();
        // Filed at 30 s, then the deadline moved earlier, to 10 s: filed again.
        w.file(2, slot_of(30_000));
        w.file(2, slot_of(10_000));
        let due = w.take_due(10_000);
        assert_eq!(w.settle(due[0], Some(20), 10_000, 10_000), Due::Expired);
        // The old entry comes at 30 s; the connection is gone (or filed elsewhere).
        let due = w.take_due(30_000);
        assert_eq!(w.settle(due[0], None, 10_000, 30_000), Due::Stale);
        w.file(3, 100);
        let due = w.take_due(50_000);
        assert_eq!(w.settle(due[0], Some(140), 70_000, 50_000), Due::Stale);
        assert_eq!(w.len(), 0);
    }
}
