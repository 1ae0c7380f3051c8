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
    since: u64,
    /// Locked until this time (Unix seconds), if locked.
    locked_until: Option<u64>,
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

    /// Seconds until `name` may try again, or `None` when it may now.
    pub fn locked(&self, name: &str, now: u64) -> Option<u64> {
        let until = self.names.get(name)?.locked_until?;
        (until > now).then(|| until - now)
    }

    /// A wrong password for `name`; returns the lock's length when this one locked it.
    pub fn failed(&mut self, name: &str, now: u64) -> Option<u64> {
        if !self.names.contains_key(name) && self.names.len() >= self.policy.max_tracked {
            self.forget_stale(now);
            if self.names.len() >= self.policy.max_tracked {
                self.forget_oldest();
            }
        }
        let window = self.policy.window.as_secs();
        let entry = self.names.entry(name.to_owned()).or_insert(Failures {
            count: 0,
            since: now,
            locked_until: None,
        });
        if now.saturating_sub(entry.since) >= window {
            *entry = Failures {
                count: 0,
                since: now,
                locked_until: None,
            };
        }
        entry.count += 1;
        if entry.count >= self.policy.max_failures && entry.locked_until.is_none_or(|u| u <= now) {
            let lock = self.policy.lock_for.as_secs();
            entry.locked_until = Some(now + lock);
            // The lock's own window: failures count afresh once it has passed.
            entry.since = now + lock;
            entry.count = 0;
            return Some(lock);
        }
        None
    }

    /// A right password: the name's failures are forgotten.
    pub fn succeeded(&mut self, name: &str) {
        self.names.remove(name);
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
        self.names.retain(|_, f| match f.locked_until {
            Some(until) => until > now,
            None => now.saturating_sub(f.since) < window,
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

    #[test]
    fn the_nth_failure_in_the_window_locks_for_a_while() {
        let mut l = Lockouts::new(policy());
        assert_eq!(l.failed("bob", 0), None);
        assert_eq!(l.failed("bob", 10), None);
        assert_eq!(l.locked("bob", 10), None);
        assert_eq!(l.failed("bob", 20), Some(100));
        assert_eq!(l.locked("bob", 20), Some(100));
        assert_eq!(l.locked("bob", 119), Some(1));
        assert_eq!(l.locked("bob", 120), None);
        // Others are not affected.
        assert_eq!(l.locked("alice", 20), None);
        // After the lock, failures count afresh.
        assert_eq!(l.failed("bob", 121), None);
        assert_eq!(l.failed("bob", 122), None);
        assert_eq!(l.failed("bob", 123), Some(100));
    }

    #[test]
    fn failures_spread_beyond_the_window_do_not_lock() {
        let mut l = Lockouts::new(policy());
        for t in [0, 40, 80, 120, 160] {
            assert_eq!(l.failed("bob", t), None, "at {t}");
        }
        assert_eq!(l.locked("bob", 160), None);
    }

    #[test]
    fn a_right_password_forgets_the_failures() {
        let mut l = Lockouts::new(policy());
        l.failed("bob", 0);
        l.failed("bob", 1);
        l.succeeded("bob");
        assert_eq!(l.failed("bob", 2), None);
        assert_eq!(l.failed("bob", 3), None);
        assert!(l.failed("bob", 4).is_some());
    }

    #[test]
    fn the_table_stays_bounded_and_keeps_locks_over_stale_names() {
        let mut l = Lockouts::new(policy());
        for _ in 0..3 {
            l.failed("locked", 0);
        }
        for (i, name) in ["a", "b", "c", "d", "e", "f"].iter().enumerate() {
            l.failed(name, 70 + i as u64);
            assert!(l.len() <= 4, "{}", l.len());
        }
        // Stale names go first; a lock outlives them (its window starts when it ends).
        assert_eq!(l.locked("locked", 80), Some(20));
    }
}
