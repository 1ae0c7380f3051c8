//! Opening SQLite connections (WAL, synchronous commits, busy timeout, statement cache)
//! and the pool of read-only ones.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::rows::sql;
use crate::store::{Result, StoreError};

/// How long a statement waits for a lock held by another connection (another process on
/// the same file, a checkpoint) before failing with [`StoreError::Unavailable`].
pub(super) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Idle read connections kept open.
pub(super) const MAX_IDLE_READERS: usize = 4;
/// Prepared statements cached per connection (more than the store uses).
pub(super) const STATEMENT_CACHE: usize = 64;

pub(super) fn open_connection(path: &Path, read_only: bool) -> Result<Connection> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags).map_err(|e| {
        StoreError::Unavailable(format!("opening SQLite file {}: {e}", path.display()))
    })?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(sql)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    if !read_only {
        // WAL is a property of the file; setting it once is enough, but it is cheap to
        // assert on every open. FULL: the WAL is fsynced at every commit, so a commit that
        // returned survives a power cut, not only a crash of this process.
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
            .map_err(sql)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Backend(format!(
                "SQLite refused WAL mode for {} (journal_mode is {mode})",
                path.display()
            )));
        }
        conn.execute_batch(
            "PRAGMA synchronous = FULL;
             PRAGMA foreign_keys = OFF;
             PRAGMA journal_size_limit = 67108864;",
        )
        .map_err(sql)?;
    }
    Ok(conn)
}

pub(super) struct Readers {
    pub(super) path: PathBuf,
    pub(super) idle: Mutex<Vec<Connection>>,
}

impl Readers {
    pub(super) fn with<T>(&self, work: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match idle {
            Some(conn) => conn,
            None => open_connection(&self.path, true)?,
        };
        let result = work(&conn);
        self.put(conn);
        result
    }

    pub(super) fn put(&self, conn: Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE_READERS {
            idle.push(conn);
        }
    }
}
