//! [`SqliteStore`]: the embedded business store, one SQLite file.
//!
//! - Durability: WAL journal with `synchronous=FULL`, so a commit has reached the disk (the
//!   WAL is fsynced) before any call that wrote returns.
//! - Writes go to one writer thread that owns the only writing connection. It takes every
//!   write queued at that moment into one transaction (each in its own savepoint, so one
//!   failing write does not undo the others) and answers them all after the single commit:
//!   concurrent callers share one fsync (group commit). A lone caller pays one commit.
//! - Reads run on tokio's blocking pool over a few read-only connections (WAL lets them
//!   read while the writer commits), so no async worker thread ever waits on SQLite.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{params, Connection, ErrorCode, OpenFlags, OptionalExtension, Row};
use tokio::sync::oneshot;

use super::{
    BillingModel, GunStatus, Order, OrderOrigin, OrderState, Pile, Result, SessionEvent,
    StatusChange, Store, StoreError, Stored, TransactionRecord,
};

/// (version, name, SQL), applied in order. Never edit one that shipped; add a new one.
const MIGRATIONS: &[(i64, &str, &str)] = &[(
    1,
    "init",
    include_str!("../../migrations/sqlite/0001_init.sql"),
)];

/// How long a statement waits for a lock held by another connection (another process on
/// the same file, a checkpoint) before failing with [`StoreError::Unavailable`].
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// At most this many writes share one transaction.
const MAX_BATCH: usize = 256;
/// Idle read connections kept open.
const MAX_IDLE_READERS: usize = 4;
/// Prepared statements cached per connection (more than the store uses).
const STATEMENT_CACHE: usize = 64;

pub struct SqliteStore {
    path: PathBuf,
    /// None only while dropping.
    jobs: Option<mpsc::Sender<Box<dyn Job>>>,
    writer: Option<JoinHandle<()>>,
    readers: Arc<Readers>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the store at `path` and brings its schema up to date.
    /// Blocks briefly (opening, migrating); call it at start-up.
    pub fn open(path: &Path) -> Result<Arc<Self>> {
        let mut writer = open_connection(path, false)?;
        migrate(&mut writer)?;
        let readers = Arc::new(Readers {
            path: path.to_path_buf(),
            idle: Mutex::new(Vec::new()),
        });
        // One reader now, so that a file we cannot read fails here rather than later.
        let reader = open_connection(path, true)?;
        readers.put(reader);
        let (jobs, queue) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("pylon-sqlite-writer".into())
            .spawn(move || writer_loop(writer, queue))
            .map_err(|e| StoreError::Backend(format!("starting the SQLite writer thread: {e}")))?;
        Ok(Arc::new(SqliteStore {
            path: path.to_path_buf(),
            jobs: Some(jobs),
            writer: Some(thread),
            readers,
        }))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `work` inside a write transaction on the writer thread; returns once that
    /// transaction committed (or failed).
    async fn write<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = Box::new(Pending {
            work: Some(work),
            result: None,
            reply,
        });
        self.jobs
            .as_ref()
            .and_then(|jobs| jobs.send(job).ok())
            .ok_or_else(|| {
                StoreError::Unavailable("the SQLite writer thread has stopped".into())
            })?;
        answer.await.map_err(|_| {
            StoreError::Backend("the SQLite writer dropped a write (it panicked)".into())
        })?
    }

    /// Runs `work` on a read connection on tokio's blocking pool.
    async fn read<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let readers = self.readers.clone();
        tokio::task::spawn_blocking(move || readers.with(work))
            .await
            .map_err(|e| StoreError::Backend(format!("an SQLite read task failed: {e}")))?
    }
}

impl Drop for SqliteStore {
    /// Closes the queue and waits for the writer to finish what it holds, so that once the
    /// store is dropped the file is closed and may be reopened.
    fn drop(&mut self) {
        self.jobs.take();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

fn open_connection(path: &Path, read_only: bool) -> Result<Connection> {
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

/// Applies the missing migrations in one `BEGIN IMMEDIATE` transaction (which also keeps
/// two processes opening the same file from migrating at once).
fn migrate(conn: &mut Connection) -> Result<()> {
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(sql)?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    INTEGER PRIMARY KEY,
             name       TEXT NOT NULL,
             applied_at INTEGER NOT NULL
         )",
    )
    .map_err(sql)?;
    let applied: Vec<(i64, String)> = {
        let mut stmt = tx
            .prepare("SELECT version, name FROM schema_migrations ORDER BY version")
            .map_err(sql)?;
        let rows = stmt
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .map_err(sql)?;
        rows.collect::<rusqlite::Result<_>>().map_err(sql)?
    };
    check_applied(&applied)?;
    for (version, name, script) in MIGRATIONS {
        if applied.iter().any(|(v, _)| v == version) {
            continue;
        }
        tx.execute_batch(script).map_err(|e| {
            StoreError::Backend(format!("SQLite migration {version} ({name}): {e}"))
        })?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
            params![version, name, now_ms()],
        )
        .map_err(sql)?;
        tracing::info!(version, name, "applied SQLite store migration");
    }
    tx.commit().map_err(sql)
}

/// Refuses a database migrated by a newer build, or one whose history differs from ours.
fn check_applied(applied: &[(i64, String)]) -> Result<()> {
    for (version, name) in applied {
        match MIGRATIONS.iter().find(|(v, _, _)| v == version) {
            Some((_, known, _)) if known == name => {}
            Some((_, known, _)) => {
                return Err(StoreError::Corrupt(format!(
                    "schema migration {version} is recorded as {name:?}, this build calls it {known:?}"
                )))
            }
            None => {
                return Err(StoreError::Backend(format!(
                    "the store has schema migration {version} ({name}), which this build does not know; \
                     it was written by a newer version"
                )))
            }
        }
    }
    Ok(())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------
// The writer thread.

/// A write waiting for the writer thread.
trait Job: Send {
    /// Runs the write on `conn` (inside a savepoint); false if it failed.
    fn run(&mut self, conn: &Connection) -> bool;
    /// Answers the caller once the transaction ended; `failed` is set when it did not
    /// commit.
    fn finish(self: Box<Self>, failed: Option<&StoreError>);
}

struct Pending<T, F> {
    work: Option<F>,
    result: Option<Result<T>>,
    reply: oneshot::Sender<Result<T>>,
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

fn writer_loop(conn: Connection, queue: mpsc::Receiver<Box<dyn Job>>) {
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
fn run_batch(conn: &Connection, mut batch: Vec<Box<dyn Job>>) {
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
fn same_error(e: &StoreError) -> StoreError {
    match e {
        StoreError::Conflict(m) => StoreError::Conflict(m.clone()),
        StoreError::Unavailable(m) => StoreError::Unavailable(m.clone()),
        StoreError::Backend(m) => StoreError::Backend(m.clone()),
        StoreError::Corrupt(m) => StoreError::Corrupt(m.clone()),
    }
}

// ---------------------------------------------------------------------------------------
// Readers.

struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl Readers {
    fn with<T>(&self, work: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match idle {
            Some(conn) => conn,
            None => open_connection(&self.path, true)?,
        };
        let result = work(&conn);
        self.put(conn);
        result
    }

    fn put(&self, conn: Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE_READERS {
            idle.push(conn);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Errors and decoding.

fn sql(e: rusqlite::Error) -> StoreError {
    use rusqlite::Error as E;
    match &e {
        E::SqliteFailure(failure, _) => match failure.code {
            ErrorCode::DatabaseBusy
            | ErrorCode::DatabaseLocked
            | ErrorCode::CannotOpen
            | ErrorCode::SystemIoFailure
            | ErrorCode::DiskFull
            | ErrorCode::ReadOnly
            | ErrorCode::PermissionDenied
            | ErrorCode::FileLockingProtocolFailed => {
                StoreError::Unavailable(format!("SQLite: {e}"))
            }
            ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase => {
                StoreError::Corrupt(format!("SQLite: {e}"))
            }
            ErrorCode::ConstraintViolation => StoreError::Conflict(format!("SQLite: {e}")),
            _ => StoreError::Backend(format!("SQLite: {e}")),
        },
        E::FromSqlConversionFailure(..)
        | E::InvalidColumnType(..)
        | E::IntegralValueOutOfRange(..)
        | E::Utf8Error(..) => StoreError::Corrupt(format!("SQLite: {e}")),
        _ => StoreError::Backend(format!("SQLite: {e}")),
    }
}

fn corrupt(what: &str, detail: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {detail}"))
}

fn json_text(value: &serde_json::Value) -> Result<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Backend(format!("encoding JSON: {e}")))
}

fn json_value(text: &str, what: &str) -> Result<serde_json::Value> {
    serde_json::from_str(text).map_err(|e| corrupt(what, e))
}

fn narrow<T: TryFrom<i64>>(value: i64, what: &str) -> Result<T> {
    T::try_from(value).map_err(|_| corrupt(what, format!("{value} is out of range")))
}

fn bool_value(value: i64, what: &str) -> Result<bool> {
    match value {
        0 => Ok(false),
        1 => Ok(true),
        other => Err(corrupt(what, format!("{other} is not a boolean"))),
    }
}

/// Rows are first read as plain column values (rusqlite errors), then decoded (our checks).
const PILE_COLUMNS: &str = "pile_no, enabled, billing_model, name, last_login_at";
type PileRow = (String, i64, i64, String, Option<i64>);

fn pile_row(row: &Row<'_>) -> rusqlite::Result<PileRow> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
    ))
}

fn pile(raw: PileRow) -> Result<Pile> {
    Ok(Pile {
        enabled: bool_value(raw.1, "piles.enabled")?,
        billing_model: narrow(raw.2, "piles.billing_model")?,
        pile_no: raw.0,
        name: raw.3,
        last_login_at: raw.4,
    })
}

const GUN_COLUMNS: &str = "pile_no, gun_no, status, data, updated_at";
type GunRow = (String, String, i64, String, i64);

fn gun_row(row: &Row<'_>) -> rusqlite::Result<GunRow> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
    ))
}

fn gun(raw: GunRow) -> Result<GunStatus> {
    Ok(GunStatus {
        status: narrow(raw.2, "gun_status.status")?,
        data: json_value(&raw.3, "gun_status.data")?,
        pile_no: raw.0,
        gun_no: raw.1,
        updated_at: raw.4,
    })
}

const ORDER_COLUMNS: &str =
    "trade_no, pile_no, gun_no, state, origin, balance, created_at, updated_at, failure";
type OrderRow = (
    String,
    String,
    String,
    String,
    String,
    i64,
    i64,
    i64,
    Option<String>,
);

fn order_row(row: &Row<'_>) -> rusqlite::Result<OrderRow> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
        row.get(6)?,
        row.get(7)?,
        row.get(8)?,
    ))
}

fn order(raw: OrderRow) -> Result<Order> {
    let state = OrderState::parse(&raw.3)
        .ok_or_else(|| corrupt("orders.state", format!("unknown state {:?}", raw.3)))?;
    let origin = OrderOrigin::parse(&raw.4)
        .ok_or_else(|| corrupt("orders.origin", format!("unknown origin {:?}", raw.4)))?;
    Ok(Order {
        trade_no: raw.0,
        pile_no: raw.1,
        gun_no: raw.2,
        state,
        origin,
        balance: raw.5,
        created_at: raw.6,
        updated_at: raw.7,
        failure: raw.8,
    })
}

const RECORD_COLUMNS: &str = "trade_no, pile_no, gun_no, start_time, end_time, total_energy, \
                              total_amount, stop_reason, fields, received_at";
type RecordRow = (String, String, String, i64, i64, i64, i64, i64, String, i64);

fn record_row(row: &Row<'_>) -> rusqlite::Result<RecordRow> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
        row.get(6)?,
        row.get(7)?,
        row.get(8)?,
        row.get(9)?,
    ))
}

fn record(raw: RecordRow) -> Result<TransactionRecord> {
    Ok(TransactionRecord {
        stop_reason: narrow(raw.7, "transaction_records.stop_reason")?,
        fields: json_value(&raw.8, "transaction_records.fields")?,
        trade_no: raw.0,
        pile_no: raw.1,
        gun_no: raw.2,
        start_time: raw.3,
        end_time: raw.4,
        total_energy: raw.5,
        total_amount: raw.6,
        received_at: raw.9,
    })
}

/// Runs a cached query and decodes every row.
fn query_all<P, R, T>(
    conn: &Connection,
    query: &str,
    params: P,
    read: fn(&Row<'_>) -> rusqlite::Result<R>,
    decode: fn(R) -> Result<T>,
) -> Result<Vec<T>>
where
    P: rusqlite::Params,
{
    let mut stmt = conn.prepare_cached(query).map_err(sql)?;
    let rows = stmt.query_map(params, read).map_err(sql)?;
    rows.map(|row| row.map_err(sql).and_then(decode)).collect()
}

/// Runs a cached query expected to return at most one row, and decodes it.
fn query_opt<P, R, T>(
    conn: &Connection,
    query: &str,
    params: P,
    read: fn(&Row<'_>) -> rusqlite::Result<R>,
    decode: fn(R) -> Result<T>,
) -> Result<Option<T>>
where
    P: rusqlite::Params,
{
    let mut stmt = conn.prepare_cached(query).map_err(sql)?;
    stmt.query_row(params, read)
        .optional()
        .map_err(sql)?
        .map(decode)
        .transpose()
}

/// Runs a cached statement; the number of rows it changed.
fn execute<P: rusqlite::Params>(conn: &Connection, query: &str, params: P) -> Result<usize> {
    let mut stmt = conn.prepare_cached(query).map_err(sql)?;
    stmt.execute(params).map_err(sql)
}

fn limit(limit: u32) -> i64 {
    i64::from(limit)
}

// ---------------------------------------------------------------------------------------

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn upsert_pile(&self, pile: &Pile) -> Result<()> {
        let pile = pile.clone();
        self.write(move |conn| {
            execute(
                conn,
                "INSERT INTO piles (pile_no, enabled, billing_model, name, last_login_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (pile_no) DO UPDATE SET enabled = excluded.enabled,
                     billing_model = excluded.billing_model, name = excluded.name,
                     last_login_at = excluded.last_login_at",
                params![
                    pile.pile_no,
                    pile.enabled,
                    pile.billing_model,
                    pile.name,
                    pile.last_login_at
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn pile(&self, pile_no: &str) -> Result<Option<Pile>> {
        let pile_no = pile_no.to_owned();
        self.read(move |conn| {
            query_opt(
                conn,
                &format!("SELECT {PILE_COLUMNS} FROM piles WHERE pile_no = ?1"),
                params![pile_no],
                pile_row,
                pile,
            )
        })
        .await
    }

    async fn piles(&self, after: Option<&str>, limit_: u32) -> Result<Vec<Pile>> {
        let after = after.unwrap_or("").to_owned();
        self.read(move |conn| {
            query_all(
                conn,
                &format!(
                    "SELECT {PILE_COLUMNS} FROM piles WHERE pile_no > ?1 ORDER BY pile_no LIMIT ?2"
                ),
                params![after, limit(limit_)],
                pile_row,
                pile,
            )
        })
        .await
    }

    async fn record_login(&self, pile_no: &str, at: i64) -> Result<()> {
        let pile_no = pile_no.to_owned();
        self.write(move |conn| {
            execute(
                conn,
                "UPDATE piles SET last_login_at = ?2 WHERE pile_no = ?1",
                params![pile_no, at],
            )?;
            Ok(())
        })
        .await
    }

    async fn upsert_billing_model(&self, model: &BillingModel) -> Result<()> {
        let fields = json_text(&model.fields)?;
        let (model_no, updated_at) = (model.model_no, model.updated_at);
        self.write(move |conn| {
            execute(
                conn,
                "INSERT INTO billing_models (model_no, fields, updated_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (model_no) DO UPDATE SET fields = excluded.fields,
                     updated_at = excluded.updated_at",
                params![model_no, fields, updated_at],
            )?;
            Ok(())
        })
        .await
    }

    async fn billing_model(&self, model_no: u16) -> Result<Option<BillingModel>> {
        self.read(move |conn| {
            query_opt(
                conn,
                "SELECT model_no, fields, updated_at FROM billing_models WHERE model_no = ?1",
                params![model_no],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
                |(model_no, fields, updated_at): (i64, String, i64)| {
                    Ok(BillingModel {
                        model_no: narrow(model_no, "billing_models.model_no")?,
                        fields: json_value(&fields, "billing_models.fields")?,
                        updated_at,
                    })
                },
            )
        })
        .await
    }

    async fn set_gun_status(&self, status: &GunStatus) -> Result<()> {
        let data = json_text(&status.data)?;
        let status = GunStatus {
            data: serde_json::Value::Null,
            ..status.clone()
        };
        self.write(move |conn| {
            let previous: Option<i64> = conn
                .prepare_cached("SELECT status FROM gun_status WHERE pile_no = ?1 AND gun_no = ?2")
                .and_then(|mut stmt| {
                    stmt.query_row(params![status.pile_no, status.gun_no], |row| row.get(0))
                        .optional()
                })
                .map_err(sql)?;
            execute(
                conn,
                "INSERT INTO gun_status (pile_no, gun_no, status, data, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (pile_no, gun_no) DO UPDATE SET status = excluded.status,
                     data = excluded.data, updated_at = excluded.updated_at",
                params![
                    status.pile_no,
                    status.gun_no,
                    status.status,
                    data,
                    status.updated_at
                ],
            )?;
            if previous != Some(i64::from(status.status)) {
                execute(
                    conn,
                    "INSERT INTO status_history (pile_no, gun_no, status, at)
                     VALUES (?1, ?2, ?3, ?4)",
                    params![
                        status.pile_no,
                        status.gun_no,
                        status.status,
                        status.updated_at
                    ],
                )?;
            }
            Ok(())
        })
        .await
    }

    async fn gun_statuses(&self, pile_no: &str) -> Result<Vec<GunStatus>> {
        let pile_no = pile_no.to_owned();
        self.read(move |conn| {
            query_all(
                conn,
                &format!("SELECT {GUN_COLUMNS} FROM gun_status WHERE pile_no = ?1 ORDER BY gun_no"),
                params![pile_no],
                gun_row,
                gun,
            )
        })
        .await
    }

    async fn status_history(
        &self,
        pile_no: &str,
        gun_no: &str,
        from: i64,
        to: i64,
        limit_: u32,
    ) -> Result<Vec<StatusChange>> {
        let (pile_no, gun_no) = (pile_no.to_owned(), gun_no.to_owned());
        self.read(move |conn| {
            query_all(
                conn,
                "SELECT pile_no, gun_no, status, at FROM status_history
                 WHERE pile_no = ?1 AND gun_no = ?2 AND at >= ?3 AND at < ?4
                 ORDER BY at, id LIMIT ?5",
                params![pile_no, gun_no, from, to, limit(limit_)],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
                |(pile_no, gun_no, status, at): (String, String, i64, i64)| {
                    Ok(StatusChange {
                        status: narrow(status, "status_history.status")?,
                        pile_no,
                        gun_no,
                        at,
                    })
                },
            )
        })
        .await
    }

    async fn append_event(&self, event: &SessionEvent) -> Result<()> {
        let fields = json_text(&event.fields)?;
        let event = SessionEvent {
            fields: serde_json::Value::Null,
            ..event.clone()
        };
        self.write(move |conn| {
            execute(
                conn,
                "INSERT INTO session_events (pile_no, gun_no, trade_no, frame_type, fields, at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    event.pile_no,
                    event.gun_no,
                    event.trade_no,
                    event.frame_type,
                    fields,
                    event.at
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn events(&self, trade_no: &str) -> Result<Vec<SessionEvent>> {
        let trade_no = trade_no.to_owned();
        self.read(move |conn| {
            query_all(
                conn,
                "SELECT pile_no, gun_no, trade_no, frame_type, fields, at FROM session_events
                 WHERE trade_no = ?1 ORDER BY at, id",
                params![trade_no],
                |row| {
                    Ok((
                        row.get(0)?,
                        row.get(1)?,
                        row.get(2)?,
                        row.get(3)?,
                        row.get(4)?,
                        row.get(5)?,
                    ))
                },
                |(pile_no, gun_no, trade_no, frame_type, fields, at): (
                    String,
                    String,
                    String,
                    i64,
                    String,
                    i64,
                )| {
                    Ok(SessionEvent {
                        frame_type: narrow(frame_type, "session_events.frame_type")?,
                        fields: json_value(&fields, "session_events.fields")?,
                        pile_no,
                        gun_no,
                        trade_no,
                        at,
                    })
                },
            )
        })
        .await
    }

    async fn insert_order(&self, order: &Order) -> Result<()> {
        let order = order.clone();
        self.write(move |conn| {
            let inserted = execute(
                conn,
                "INSERT INTO orders (trade_no, pile_no, gun_no, state, origin, balance,
                     created_at, updated_at, failure)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                 ON CONFLICT (trade_no) DO NOTHING",
                params![
                    order.trade_no,
                    order.pile_no,
                    order.gun_no,
                    order.state.as_str(),
                    order.origin.as_str(),
                    order.balance,
                    order.created_at,
                    order.updated_at,
                    order.failure
                ],
            )?;
            if inserted == 0 {
                return Err(StoreError::Conflict(format!("order {}", order.trade_no)));
            }
            Ok(())
        })
        .await
    }

    async fn update_order(
        &self,
        trade_no: &str,
        state: OrderState,
        failure: Option<&str>,
        at: i64,
    ) -> Result<bool> {
        let trade_no = trade_no.to_owned();
        let failure = failure.map(str::to_owned);
        self.write(move |conn| {
            let updated = execute(
                conn,
                "UPDATE orders SET state = ?2, failure = ?3, updated_at = ?4
                 WHERE trade_no = ?1",
                params![trade_no, state.as_str(), failure, at],
            )?;
            Ok(updated > 0)
        })
        .await
    }

    async fn move_order(
        &self,
        trade_no: &str,
        from: &[OrderState],
        state: OrderState,
        failure: Option<&str>,
        at: i64,
    ) -> Result<bool> {
        let trade_no = trade_no.to_owned();
        let failure = failure.map(str::to_owned);
        // The states are our own constants, never user input.
        let states = from
            .iter()
            .map(|s| format!("'{}'", s.as_str()))
            .collect::<Vec<_>>()
            .join(",");
        self.write(move |conn| {
            let updated = execute(
                conn,
                &format!(
                    "UPDATE orders SET state = ?2, failure = ?3, updated_at = ?4
                     WHERE trade_no = ?1 AND state IN ({states})"
                ),
                params![trade_no, state.as_str(), failure, at],
            )?;
            Ok(updated > 0)
        })
        .await
    }

    async fn order(&self, trade_no: &str) -> Result<Option<Order>> {
        let trade_no = trade_no.to_owned();
        self.read(move |conn| {
            query_opt(
                conn,
                &format!("SELECT {ORDER_COLUMNS} FROM orders WHERE trade_no = ?1"),
                params![trade_no],
                order_row,
                order,
            )
        })
        .await
    }

    async fn open_orders(&self, pile_no: Option<&str>) -> Result<Vec<Order>> {
        let pile_no = pile_no.map(str::to_owned);
        self.read(move |conn| match pile_no {
            Some(pile_no) => query_all(
                conn,
                &format!(
                    "SELECT {ORDER_COLUMNS} FROM orders
                     WHERE pile_no = ?1 AND state IN ('starting', 'charging', 'stopping')
                     ORDER BY created_at, trade_no"
                ),
                params![pile_no],
                order_row,
                order,
            ),
            // The condition is written exactly as in the partial index `orders_open`.
            None => query_all(
                conn,
                &format!(
                    "SELECT {ORDER_COLUMNS} FROM orders
                     WHERE state IN ('starting', 'charging', 'stopping')
                     ORDER BY created_at, trade_no"
                ),
                [],
                order_row,
                order,
            ),
        })
        .await
    }

    async fn orders(&self, pile_no: &str, from: i64, to: i64, limit_: u32) -> Result<Vec<Order>> {
        let pile_no = pile_no.to_owned();
        self.read(move |conn| {
            query_all(
                conn,
                &format!(
                    "SELECT {ORDER_COLUMNS} FROM orders
                     WHERE pile_no = ?1 AND created_at >= ?2 AND created_at < ?3
                     ORDER BY created_at DESC, trade_no DESC LIMIT ?4"
                ),
                params![pile_no, from, to, limit(limit_)],
                order_row,
                order,
            )
        })
        .await
    }

    async fn store_record(&self, record: &TransactionRecord) -> Result<Stored> {
        let fields = json_text(&record.fields)?;
        let record = TransactionRecord {
            fields: serde_json::Value::Null,
            ..record.clone()
        };
        self.write(move |conn| {
            let inserted = execute(
                conn,
                "INSERT INTO transaction_records (trade_no, pile_no, gun_no, start_time,
                     end_time, total_energy, total_amount, stop_reason, fields, received_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                 ON CONFLICT (trade_no) DO NOTHING",
                params![
                    record.trade_no,
                    record.pile_no,
                    record.gun_no,
                    record.start_time,
                    record.end_time,
                    record.total_energy,
                    record.total_amount,
                    record.stop_reason,
                    fields,
                    record.received_at
                ],
            )?;
            if inserted == 0 {
                return Ok(Stored::Duplicate);
            }
            execute(
                conn,
                "UPDATE orders SET state = 'finished', updated_at = ?2
                 WHERE trade_no = ?1 AND state IN ('starting', 'charging', 'stopping')",
                params![record.trade_no, record.received_at],
            )?;
            Ok(Stored::New)
        })
        .await
    }

    async fn record(&self, trade_no: &str) -> Result<Option<TransactionRecord>> {
        let trade_no = trade_no.to_owned();
        self.read(move |conn| {
            query_opt(
                conn,
                &format!("SELECT {RECORD_COLUMNS} FROM transaction_records WHERE trade_no = ?1"),
                params![trade_no],
                record_row,
                record,
            )
        })
        .await
    }

    async fn records(
        &self,
        pile_no: &str,
        from: i64,
        to: i64,
        limit_: u32,
    ) -> Result<Vec<TransactionRecord>> {
        let pile_no = pile_no.to_owned();
        self.read(move |conn| {
            query_all(
                conn,
                &format!(
                    "SELECT {RECORD_COLUMNS} FROM transaction_records
                     WHERE pile_no = ?1 AND end_time >= ?2 AND end_time < ?3
                     ORDER BY end_time DESC, trade_no DESC LIMIT ?4"
                ),
                params![pile_no, from, to, limit(limit_)],
                record_row,
                record,
            )
        })
        .await
    }

    async fn record_count(&self) -> Result<u64> {
        self.read(|conn| {
            let count: i64 = conn
                .prepare_cached("SELECT count(*) FROM transaction_records")
                .and_then(|mut stmt| stmt.query_row([], |row| row.get(0)))
                .map_err(sql)?;
            narrow(count, "record count")
        })
        .await
    }
}
