//! Riding out a failover. With a highly available PostgreSQL (Patroni, or any set of
//! servers behind a multi-host URL with `target_session_attrs=read-write`), the primary can
//! go away and another server be promoted a few seconds later. A call that finds the store
//! unavailable is run again, on a fresh connection to whichever server is writable now,
//! until the failover budget runs out.
//!
//! What is run again is only what certainly did not take effect:
//! - a transaction whose statements failed before its commit (it rolled back with the
//!   connection). A failed COMMIT is different: the server may have committed before the
//!   connection went, so its outcome is unknown and it is not run again (a wallet credit
//!   would be applied twice); it fails as a backend error, and its caller decides. A
//!   transaction record's caller sends no 0x40, and the pile sends the record again,
//!   which settles once (keyed by trade number) and is confirmed then;
//! - single statements that are idempotent (reads, upserts, the record insert keyed by
//!   trade number). Statements that are not (a new order, an order's move, an event) are
//!   only retried for their connection, and then run once.

use std::time::{Duration, Instant};

use deadpool_postgres::Pool;

use crate::store::{Result, StoreError};

/// How long a call waits for a writable server before it fails, unless set otherwise
/// (`[store] failover_secs`): a Patroni failover takes its leader TTL plus a loop (30 s +
/// 10 s with Patroni's defaults).
pub(super) const FAILOVER_BUDGET: Duration = Duration::from_secs(45);
const FIRST_PAUSE: Duration = Duration::from_millis(50);
const MAX_PAUSE: Duration = Duration::from_secs(1);

/// A failed COMMIT: the transaction may or may not have committed.
pub(crate) fn commit_unknown(e: tokio_postgres::Error) -> StoreError {
    StoreError::Backend(format!(
        "the commit's outcome is unknown (PostgreSQL: {}); not run again",
        super::rows::describe(&e)
    ))
}

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
