//! The wait between attempts to reach the control plane.

use std::time::Duration;

use super::{BACKOFF_MAX, BACKOFF_MIN, HEALTHY_SESSION};

/// Waits between attempts: doubling from a first step to a cap (the control plane's:
/// [`BACKOFF_MIN`] to [`BACKOFF_MAX`]), each wait drawn between half and all of its step
/// (jitter, so that many processes cut off together do not come back together).
#[derive(Debug, Clone)]
pub struct Backoff {
    step: Duration,
    min: Duration,
    max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new(BACKOFF_MIN, BACKOFF_MAX)
    }
}

impl Backoff {
    /// Doubling from `min` up to `max`.
    pub fn new(min: Duration, max: Duration) -> Self {
        Backoff {
            step: min,
            min,
            max: max.max(min),
        }
    }

    /// The wait before the next attempt, with `unit` in [0, 1) choosing where in the
    /// jitter range it falls (a random number in service, fixed in tests).
    pub fn next_wait_with(&mut self, unit: f64) -> Duration {
        let step = self.step;
        self.step = (self.step * 2).min(self.max);
        step.mul_f64(0.5 + 0.5 * unit.clamp(0.0, 1.0))
    }

    /// The wait before the next attempt.
    pub fn next_wait(&mut self) -> Duration {
        self.next_wait_with(rand::random::<f64>())
    }

    /// A session ended after `lasted`: one that was healthy starts the backoff over.
    pub fn session_ended(&mut self, lasted: Duration) {
        if lasted >= HEALTHY_SESSION {
            self.step = self.min;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_cap_within_their_jitter() {
        let mut b = Backoff::default();
        let mut step = BACKOFF_MIN;
        for round in 0..10 {
            let unit = (round as f64 * 0.37) % 1.0;
            let wait = b.next_wait_with(unit);
            assert!(
                wait >= step / 2 && wait <= step,
                "round {round}: {wait:?} for {step:?}"
            );
            step = (step * 2).min(BACKOFF_MAX);
        }
        assert_eq!(
            b.next_wait_with(0.999_999).as_millis(),
            BACKOFF_MAX.as_millis() - 1
        );
    }

    #[test]
    fn other_bounds_double_up_to_their_cap() {
        let (min, max) = (Duration::from_millis(100), Duration::from_secs(2));
        let mut b = Backoff::new(min, max);
        let waits: Vec<Duration> = (0..7).map(|_| b.next_wait_with(1.0)).collect();
        assert_eq!(waits[0], min);
        assert_eq!(waits[1], min * 2);
        assert!(waits.windows(2).all(|w| w[1] >= w[0]));
        assert_eq!(*waits.last().expect("waits"), max);
    }

    #[test]
    fn a_healthy_session_starts_over_a_short_one_does_not() {
        let mut b = Backoff::default();
        for _ in 0..5 {
            b.next_wait_with(0.0);
        }
        b.session_ended(Duration::from_secs(2));
        assert!(b.next_wait_with(1.0) > BACKOFF_MIN);
        b.session_ended(HEALTHY_SESSION);
        assert_eq!(b.next_wait_with(1.0), BACKOFF_MIN);
    }

    #[test]
    fn random_waits_stay_in_range() {
        let mut b = Backoff::default();
        for _ in 0..100 {
            let wait = b.next_wait();
            assert!(wait >= BACKOFF_MIN / 2 && wait <= BACKOFF_MAX);
        }
    }
}
