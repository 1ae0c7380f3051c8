//! The writer thread: one connection, group commits (every write queued at a moment in one
//! transaction, each in its own savepoint), answers after the commit.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::rows::sql;
use crate::store::{Result, StoreError};

/// At most this many writes share one transaction.
pub(super) const MAX_BATCH: usize = 256;

/// A write waiting for the writer thread.
pub(super) trait Job: Send {
    /// Runs the write on `conn` (inside a savepoint); false if it failed.
    fn run(&mut self, conn: &Connection) -> bool;
    /// Answers the caller once the transaction ended; `failed` is set when it did not
    /// commit.
    fn finish(self: Box<Self>, failed: Option<&StoreError>);
}

/// A write and where its answer goes.
pub(super) struct Pending<T, F> {
    work: Option<F>,
    result: Option<Result<T>>,
    reply: oneshot::Sender<Result<T>>,
}

impl<T, F> Pending<T, F> {
    pub(super) fn new(work: F, reply: oneshot::Sender<Result<T>>) -> Self {
        Pending {
            work: Some(work),
            result: None,
            reply,
        }
    }
}

impl<T, F> Job for Pending<T, F>
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> Result<T> + Send + 'static,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let Some(work) = self.work.take() else {
            return false;
        };
        let result = work(conn);
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn finish(self: Box<Self>, failed: Option<&StoreError>) {
        let answer = match (failed, self.result) {
            // The write's own error says more than the rollback it caused.
            (_, Some(Err(e))) => Err(e),
            (None, Some(Ok(value))) => Ok(value),
            (Some(e), _) => Err(same_error(e)),
            (None, None) => Err(StoreError::Backend("the write panicked".into())),
        };
        let _ = self.reply.send(answer);
    }
}

pub(super) fn writer_loop(conn: Connection, queue: mpsc::Receiver<Box<dyn Job>>) {
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        run_batch(&conn, batch);
    }
}

/// One transaction for the whole batch, one savepoint per write.
pub(super) fn run_batch(conn: &Connection, mut batch: Vec<Box<dyn Job>>) {
    let mut failed = conn.execute_batch("BEGIN IMMEDIATE").err().map(sql);
    if failed.is_none() {
        for job in batch.iter_mut() {
            if let Err(e) = conn.execute_batch("SAVEPOINT job") {
                failed = Some(sql(e));
                break;
            }
            // A panicking write loses only itself: its caller sees the reply dropped.
            let ok = catch_unwind(AssertUnwindSafe(|| job.run(conn))).unwrap_or(false);
            let end = if ok {
                "RELEASE job"
            } else {
                "ROLLBACK TO job; RELEASE job"
            };
            if let Err(e) = conn.execute_batch(end) {
                failed = Some(sql(e));
                break;
            }
        }
        if failed.is_none() {
            failed = conn.execute_batch("COMMIT").err().map(sql);
        }
        if failed.is_some() && !conn.is_autocommit() {
            if let Err(e) = conn.execute_batch("ROLLBACK") {
                tracing::error!(error = %e, "rolling back a failed SQLite write batch");
            }
        }
    }
    if let Some(e) = &failed {
        tracing::warn!(error = %e, writes = batch.len(), "an SQLite write batch did not commit");
    }
    for job in batch {
        job.finish(failed.as_ref());
    }
}

/// The same error again, for every write of a batch that failed as a whole.
pub(super) fn same_error(e: &StoreError) -> StoreError {
    match e {
        StoreError::Conflict(m) => StoreError::Conflict(m.clone()),
        StoreError::Unavailable(m) => StoreError::Unavailable(m.clone()),
        StoreError::Backend(m) => StoreError::Backend(m.clone()),
        StoreError::Corrupt(m) => StoreError::Corrupt(m.clone()),
    }
}
