//! Riding out a failover. With a highly available PostgreSQL (Patroni, or any set of
//! servers behind a multi-host URL with `target_session_attrs=read-write`), the primary can
//! go away and another server be promoted a few seconds later. A call that finds the store
//! unavailable is run again, on a fresh connection to whichever server is writable now,
//! until the failover budget runs out.
//!
//! Running a call again is safe because every write the business depends on is
//! idempotent: records and settlements are keyed by trade number (a second attempt after a
//! commit whose answer was lost finds the first and reports a repeat, so a pile is never
//! confirmed twice), statuses and piles are upserts. An attempt that failed before its
//! commit left nothing behind (its transaction rolled back with the connection).

use std::time::{Duration, Instant};

use deadpool_postgres::Pool;

use crate::store::{Result, StoreError};

/// How long a call waits for a writable server before it fails: a Patroni failover takes
/// its leader TTL plus a loop (30 s + 10 s with Patroni's defaults).
pub(super) const FAILOVER_BUDGET: Duration = Duration::from_secs(45);
const FIRST_PAUSE: Duration = Duration::from_millis(50);
const MAX_PAUSE: Duration = Duration::from_secs(1);

/// The attempts of one call: whether another one is due, and the pause before it.
pub(crate) struct Retry {
    start: Instant,
    budget: Duration,
    pause: Duration,
    retries: u32,
}

impl Retry {
    pub(crate) fn new(budget: Duration) -> Retry {
        Retry {
            start: Instant::now(),
            budget,
            pause: FIRST_PAUSE,
            retries: 0,
        }
    }

    /// The call's outcome, or None when the store was unavailable and the budget allows
    /// another attempt (after [`Retry::pause`]).
    pub(crate) fn judge<T>(&mut self, outcome: Result<T>) -> Option<Result<T>> {
        match outcome {
            Err(StoreError::Unavailable(why))
                if self.start.elapsed() + self.pause < self.budget =>
            {
                if self.retries == 0 {
                    tracing::warn!(%why, "PostgreSQL is unavailable: trying again (a failover?)");
                }
                self.retries += 1;
                None
            }
            outcome => {
                if self.retries > 0 {
                    tracing::info!(
                        retries = self.retries,
                        waited_ms = self.start.elapsed().as_millis() as u64,
                        ok = outcome.is_ok(),
                        "PostgreSQL: done after trying again"
                    );
                }
                Some(outcome)
            }
        }
    }

    /// Drops the idle connections (they lead to the server that went away, or that is
    /// read-only now: new ones find the writable server) and waits, a little longer each
    /// time.
    pub(crate) async fn pause(&mut self, pool: &Pool) {
        pool.retain(|_, _| false);
        tokio::time::sleep(self.pause).await;
        self.pause = (self.pause * 2).min(MAX_PAUSE);
    }
}

/// Runs `$body` (a block evaluating to a store `Result`, where `?` ends the attempt) until
/// it succeeds, fails for another reason than the store being unavailable, or the store's
/// failover budget is spent.
macro_rules! retrying {
    ($store:expr, $body:block) => {{
        let mut retry = $crate::store::postgres::failover::Retry::new($store.failover_budget);
        loop {
            let attempt = async $body.await;
            match retry.judge(attempt) {
                Some(outcome) => break outcome,
                None => retry.pause(&$store.pool).await,
            }
        }
    }};
}
pub(super) use retrying;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_unavailable_store_is_tried_again_within_the_budget() {
        let mut retry = Retry::new(Duration::from_secs(10));
        assert!(retry
            .judge::<()>(Err(StoreError::Unavailable("gone".into())))
            .is_none());
        assert!(matches!(
            retry.judge::<()>(Err(StoreError::Conflict("x".into()))),
            Some(Err(StoreError::Conflict(_)))
        ));
        assert!(matches!(retry.judge(Ok(3)), Some(Ok(3))));
        let mut spent = Retry::new(Duration::ZERO);
        assert!(matches!(
            spent.judge::<()>(Err(StoreError::Unavailable("gone".into()))),
            Some(Err(StoreError::Unavailable(_)))
        ));
    }
}
