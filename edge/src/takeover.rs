//! How often a pile's live session may be taken over by a new login. A login with a known
//! pile number replaces the older session (a charger that rebooted reconnects before the
//! old connection times out), which also lets anyone who knows a number knock that pile
//! off. For plain-TCP piles, whose logins prove nothing, takeovers are limited per pile;
//! refused ones are counted and logged as an alarm.

use std::collections::HashMap;

use pylon_proto::ykc::PileNo;

/// Milliseconds on one monotonic clock for the whole process (executors each have their
/// own epoch; the live logins are shared between them).
pub fn process_ms() -> u64 {
    static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    EPOCH
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_millis() as u64
}

/// Takeovers allowed per pile within a window.
#[derive(Debug, Clone, Copy)]
pub struct TakeoverLimit {
    pub max: u32,
    pub window_ms: u64,
}

impl Default for TakeoverLimit {
    /// Three in five minutes: more than a flaky charger needs, far fewer than a loop of
    /// logins by someone else.
    fn default() -> Self {
        TakeoverLimit {
            max: 3,
            window_ms: 5 * 60 * 1000,
        }
    }
}

#[derive(Debug, Default)]
pub struct TakeoverLimiter {
    limit: TakeoverLimit,
    /// Per pile: when its window started and the takeovers in it.
    windows: HashMap<PileNo, (u64, u32)>,
}

/// Entries kept before old windows are swept out.
const SWEEP_AT: usize = 4096;

impl TakeoverLimiter {
    pub fn new(limit: TakeoverLimit) -> Self {
        TakeoverLimiter {
            limit,
            windows: HashMap::new(),
        }
    }

    /// Whether `pile` may take over its session now; counts it if so.
    pub fn allow(&mut self, pile: PileNo, now_ms: u64) -> bool {
        if self.windows.len() >= SWEEP_AT {
            let window = self.limit.window_ms;
            self.windows
                .retain(|_, (start, _)| now_ms.saturating_sub(*start) < window);
        }
        let entry = self.windows.entry(pile).or_insert((now_ms, 0));
        if now_ms.saturating_sub(entry.0) >= self.limit.window_ms {
            *entry = (now_ms, 0);
        }
        if entry.1 >= self.limit.max {
            return false;
        }
        entry.1 += 1;
        true
    }
}

/// The live session of every pile on this edge (all executors), with the certificate it
/// logged in with, and the takeover budget: what decides whether a new login may replace
/// a live session.
#[derive(Debug, Default)]
pub struct LiveLogins {
    live: HashMap<PileNo, Live>,
    limiter: TakeoverLimiter,
}

#[derive(Debug, Clone, Copy)]
struct Live {
    session: u64,
    fingerprint: Option<[u8; 32]>,
}

impl LiveLogins {
    pub fn new(limit: TakeoverLimit) -> Self {
        LiveLogins {
            live: HashMap::new(),
            limiter: TakeoverLimiter::new(limit),
        }
    }

    /// Whether `session` (with the client certificate `fingerprint`, if any) may log in
    /// as `pile` now. `Err` names why not. A certificate-bound live session yields only
    /// to the same certificate; any other to at most the limiter's takeovers.
    pub fn check(
        &mut self,
        pile: PileNo,
        session: u64,
        fingerprint: Option<[u8; 32]>,
        now_ms: u64,
    ) -> Result<(), &'static str> {
        let Some(live) = self.live.get(&pile).filter(|l| l.session != session) else {
            return Ok(());
        };
        match (live.fingerprint, fingerprint) {
            (Some(bound), new) if new != Some(bound) => Err("takeover_refused"),
            (Some(_), _) => Ok(()),
            // A certificate (already checked to name the pile) beats a session without
            // one: whoever squats on a pile's number in plain cannot keep the pile out.
            (None, Some(_)) => Ok(()),
            (None, None) if self.limiter.allow(pile, now_ms) => Ok(()),
            (None, None) => Err("takeover_refused"),
        }
    }

    /// Whether a login that passed [`LiveLogins::check`] on arrival may still complete now
    /// (after the app service's verdict): refused only if a certificate-bound session of
    /// the pile appeared meanwhile and this login does not have that certificate. The
    /// takeover budget was counted on arrival and is not counted again.
    pub fn recheck(
        &self,
        pile: PileNo,
        session: u64,
        fingerprint: Option<[u8; 32]>,
    ) -> Result<(), &'static str> {
        match self.live.get(&pile).filter(|l| l.session != session) {
            Some(Live {
                fingerprint: Some(bound),
                ..
            }) if fingerprint != Some(*bound) => Err("takeover_refused"),
            _ => Ok(()),
        }
    }

    pub fn logged_in(&mut self, pile: PileNo, session: u64, fingerprint: Option<[u8; 32]>) {
        self.live.insert(
            pile,
            Live {
                session,
                fingerprint,
            },
        );
    }

    /// `session` of `pile` ended (a newer one may have replaced it already).
    pub fn closed(&mut self, pile: PileNo, session: u64) {
        if self.live.get(&pile).is_some_and(|l| l.session == session) {
            self.live.remove(&pile);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_bound_session_yields_to_its_certificate_only() {
        let mut l = LiveLogins::new(TakeoverLimit::default());
        let p = PileNo::from_u64(7);
        let cert = Some([1u8; 32]);
        assert!(l.check(p, 1, cert, 0).is_ok());
        l.logged_in(p, 1, cert);
        assert_eq!(l.check(p, 2, Some([2u8; 32]), 0), Err("takeover_refused"));
        assert_eq!(l.check(p, 2, None, 0), Err("takeover_refused"));
        assert!(l.check(p, 2, cert, 0).is_ok());
        assert!(l.check(p, 1, None, 0).is_ok(), "its own session");
        l.closed(p, 1);
        assert!(l.check(p, 2, Some([2u8; 32]), 0).is_ok(), "no live session");
    }

    #[test]
    fn plain_sessions_yield_within_the_budget_and_closes_of_replaced_ones_are_ignored() {
        let mut l = LiveLogins::new(TakeoverLimit {
            max: 1,
            window_ms: 1000,
        });
        let p = PileNo::from_u64(7);
        l.logged_in(p, 1, None);
        assert!(l.check(p, 2, None, 0).is_ok());
        l.logged_in(p, 2, None);
        l.closed(p, 1);
        assert_eq!(l.check(p, 3, None, 10), Err("takeover_refused"));
        assert!(
            l.check(p, 3, Some([9; 32]), 10).is_ok(),
            "a certificate beats a plain session, budget or not"
        );
        l.closed(p, 2);
        assert!(l.check(p, 3, None, 20).is_ok(), "nothing to take over");
    }

    #[test]
    fn a_login_accepted_late_yields_to_a_certificate_bound_session_that_came_meanwhile() {
        let mut l = LiveLogins::new(TakeoverLimit::default());
        let p = PileNo::from_u64(7);
        // Two logins arrive with nothing live: both pass the first check.
        assert!(l.check(p, 1, None, 0).is_ok());
        assert!(l.check(p, 2, Some([2; 32]), 0).is_ok());
        // The certificate's verdict comes first.
        assert!(l.recheck(p, 2, Some([2; 32])).is_ok());
        l.logged_in(p, 2, Some([2; 32]));
        // The plain one may no longer replace it; the same certificate may.
        assert_eq!(l.recheck(p, 1, None), Err("takeover_refused"));
        assert!(l.recheck(p, 3, Some([2; 32])).is_ok());
        // A plain live session does not stop a late verdict (its budget was counted).
        let q = PileNo::from_u64(8);
        l.logged_in(q, 4, None);
        assert!(l.recheck(q, 5, None).is_ok());
    }

    #[test]
    fn takeovers_are_limited_per_pile_and_window() {
        let mut l = TakeoverLimiter::new(TakeoverLimit {
            max: 2,
            window_ms: 1000,
        });
        let (a, b) = (PileNo::from_u64(1), PileNo::from_u64(2));
        assert!(l.allow(a, 0) && l.allow(a, 10));
        assert!(!l.allow(a, 20), "third in the window");
        assert!(l.allow(b, 20), "another pile has its own budget");
        assert!(l.allow(a, 1000), "a new window");
    }

    #[test]
    fn old_windows_are_swept() {
        let mut l = TakeoverLimiter::new(TakeoverLimit {
            max: 1,
            window_ms: 10,
        });
        for n in 0..SWEEP_AT as u64 {
            l.allow(PileNo::from_u64(n), 0);
        }
        l.allow(PileNo::from_u64(u64::MAX >> 20), 100);
        assert!(l.windows.len() < 10);
    }
}
