//! Repeated wrong passwords lock a user name for a while (MLPS: "login failure handling").
//!
//! Pure state with the time passed in. Each replica keeps its own table: with N replicas an
//! attacker gets at most N × [`Policy::max_failures`] guesses per window, each costing an
//! argon2 verification. Unknown user names are tracked the same way, so a lock-out does not
//! tell which names exist; the table is bounded, and a name is forgotten once its window and
//! lock have passed.

use std::collections::HashMap;
use std::time::Duration;

#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Wrong passwords within [`Policy::window`] that lock the name.
    pub max_failures: u32,
    pub window: Duration,
    /// How long a locked name refuses every login, right or wrong.
    pub lock_for: Duration,
    /// Names tracked at most; beyond, the oldest entries go first.
    pub max_tracked: usize,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            max_failures: 5,
            window: Duration::from_secs(15 * 60),
            lock_for: Duration::from_secs(15 * 60),
            max_tracked: 100_000,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    /// Wrong passwords since `since`.
    count: u32,
    /// Attempts begun and not finished (their passwords are being checked).
    in_flight: u32,
    since: u64,
    /// Locked until this time (Unix seconds), if locked.
    locked_until: Option<u64>,
}

impl Failures {
    fn locked_at(&self, now: u64) -> Option<u64> {
        self.locked_until.filter(|&u| u > now).map(|u| u - now)
    }
}

/// Wrong-password counts per user name.
#[derive(Debug, Default)]
pub struct Lockouts {
    policy: Policy,
    names: HashMap<String, Failures>,
}

impl Lockouts {
    pub fn new(policy: Policy) -> Lockouts {
        Lockouts {
            policy,
            names: HashMap::new(),
        }
    }

    /// Starts a login attempt for `name`. `Err` holds the seconds to wait: the name is
    /// locked, or the wrong passwords so far and the attempts still being checked reach
    /// the limit (so a burst of parallel guesses gets no more than the limit). Every `Ok`
    /// must be followed by [`Lockouts::finish`].
    pub fn begin(&mut self, name: &str, now: u64) -> Result<(), u64> {
        if !self.names.contains_key(name) && self.names.len() >= self.policy.max_tracked {
            self.forget_stale(now);
            if self.names.len() >= self.policy.max_tracked {
                self.forget_oldest();
            }
        }
        let (window, max) = (self.policy.window.as_secs(), self.policy.max_failures);
        let entry = self.names.entry(name.to_owned()).or_insert(Failures {
            count: 0,
            in_flight: 0,
            since: now,
            locked_until: None,
        });
        if let Some(wait) = entry.locked_at(now) {
            return Err(wait);
        }
        // A lock that has passed: its failures were cleared when it was set.
        entry.locked_until = None;
        if now.saturating_sub(entry.since) >= window {
            entry.count = 0;
            entry.since = now;
            entry.locked_until = None;
        }
        if entry.count + entry.in_flight >= max {
            return Err(1);
        }
        entry.in_flight += 1;
        Ok(())
    }

    /// The attempt `begin` allowed ended: `right` when the password matched. Returns the
    /// lock's length when this wrong password locked the name. Attempts that end while
    /// the name is locked change nothing (neither lifting the lock nor adding to it).
    pub fn finish(&mut self, name: &str, right: bool, now: u64) -> Option<u64> {
        let entry = self.names.get_mut(name)?;
        entry.in_flight = entry.in_flight.saturating_sub(1);
        if entry.locked_at(now).is_some() {
            return None;
        }
        let mut locked = None;
        if right {
            entry.count = 0;
        } else {
            entry.count += 1;
            if entry.count >= self.policy.max_failures {
                let lock = self.policy.lock_for.as_secs();
                entry.locked_until = Some(now + lock);
                // Failures count afresh once the lock has passed.
                entry.since = now + lock;
                entry.count = 0;
                locked = Some(lock);
            }
        }
        if entry.count == 0 && entry.in_flight == 0 && entry.locked_until.is_none() {
            self.names.remove(name);
        }
        locked
    }

    /// The attempt `begin` allowed ended without a verdict (the registry failed).
    pub fn abandon(&mut self, name: &str) {
        if let Some(entry) = self.names.get_mut(name) {
            entry.in_flight = entry.in_flight.saturating_sub(1);
            if entry.count == 0 && entry.in_flight == 0 && entry.locked_until.is_none() {
                self.names.remove(name);
            }
        }
    }

    /// Seconds until `name` may try again, or `None` when it may now.
    pub fn locked(&self, name: &str, now: u64) -> Option<u64> {
        self.names.get(name)?.locked_at(now)
    }

    /// Names tracked now.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    fn forget_stale(&mut self, now: u64) {
        let window = self.policy.window.as_secs();
        self.names.retain(|_, f| {
            f.in_flight > 0
                || match f.locked_until {
                    Some(until) => until > now,
                    None => now.saturating_sub(f.since) < window,
                }
        });
    }

    fn forget_oldest(&mut self) {
        let excess = self.names.len() + 1 - self.policy.max_tracked;
        let mut by_age: Vec<(u64, String)> = self
            .names
            .iter()
            .map(|(name, f)| (f.since, name.clone()))
            .collect();
        by_age.sort_unstable();
        for (_, name) in by_age.into_iter().take(excess) {
            self.names.remove(&name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            max_failures: 3,
            window: Duration::from_secs(60),
            lock_for: Duration::from_secs(100),
            max_tracked: 4,
        }
    }

    /// One attempt, begun and finished at `now`.
    fn attempt(l: &mut Lockouts, name: &str, right: bool, now: u64) -> Result<Option<u64>, u64> {
        l.begin(name, now)?;
        Ok(l.finish(name, right, now))
    }

    #[test]
    fn the_nth_failure_in_the_window_locks_for_a_while() {
        let mut l = Lockouts::new(policy());
        assert_eq!(attempt(&mut l, "bob", false, 0), Ok(None));
        assert_eq!(attempt(&mut l, "bob", false, 10), Ok(None));
        assert_eq!(l.locked("bob", 10), None);
        assert_eq!(attempt(&mut l, "bob", false, 20), Ok(Some(100)));
        assert_eq!(l.locked("bob", 20), Some(100));
        // Locked: even the right password is not tried.
        assert_eq!(attempt(&mut l, "bob", true, 119), Err(1));
        assert_eq!(l.locked("bob", 120), None);
        // Others are not affected.
        assert_eq!(attempt(&mut l, "alice", true, 20), Ok(None));
        // After the lock, failures count afresh.
        assert_eq!(attempt(&mut l, "bob", false, 121), Ok(None));
        assert_eq!(attempt(&mut l, "bob", false, 122), Ok(None));
        assert_eq!(attempt(&mut l, "bob", false, 123), Ok(Some(100)));
    }

    #[test]
    fn a_burst_of_parallel_guesses_gets_no_more_than_the_limit() {
        let mut l = Lockouts::new(policy());
        // Three begin before any is checked; the fourth must wait.
        for _ in 0..3 {
            assert_eq!(l.begin("bob", 0), Ok(()));
        }
        assert_eq!(l.begin("bob", 0), Err(1));
        assert_eq!(l.finish("bob", false, 1), None);
        assert_eq!(l.finish("bob", false, 1), None);
        assert_eq!(l.finish("bob", false, 1), Some(100));
        // A right password finishing after the lock does not lift it.
        assert_eq!(l.locked("bob", 2), Some(99));
    }

    #[test]
    fn attempts_ending_during_a_lock_change_nothing() {
        let mut l = Lockouts::new(policy());
        assert_eq!(l.begin("bob", 0), Ok(()));
        assert_eq!(l.begin("bob", 0), Ok(()));
        assert_eq!(l.begin("bob", 0), Ok(()));
        l.finish("bob", false, 1);
        l.finish("bob", false, 1);
        l.finish("bob", false, 1);
        // Nothing else in flight; the lock ends at 101 and counting starts afresh.
        assert_eq!(attempt(&mut l, "bob", false, 101), Ok(None));
        assert_eq!(attempt(&mut l, "bob", true, 102), Ok(None));
        assert!(l.is_empty(), "a right password forgets the name");
    }

    #[test]
    fn failures_spread_beyond_the_window_do_not_lock() {
        let mut l = Lockouts::new(policy());
        for t in [0, 40, 80, 120, 160] {
            assert_eq!(attempt(&mut l, "bob", false, t), Ok(None), "at {t}");
        }
        assert_eq!(l.locked("bob", 160), None);
    }

    #[test]
    fn the_table_stays_bounded_and_keeps_locks_over_stale_names() {
        let mut l = Lockouts::new(policy());
        for _ in 0..3 {
            let _ = attempt(&mut l, "locked", false, 0);
        }
        for (i, name) in ["a", "b", "c", "d", "e", "f"].iter().enumerate() {
            let _ = attempt(&mut l, name, false, 70 + i as u64);
            assert!(l.len() <= 4, "{}", l.len());
        }
        // Stale names go first; a lock outlives them (its window starts when it ends).
        assert_eq!(l.locked("locked", 80), Some(20));
    }
}
