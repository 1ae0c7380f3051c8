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

mod connection;
mod db;
mod migrations;
mod monitor;
mod revenue;
mod rows;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::oneshot;

use super::{
    BillingModel, GunStatus, IngestBatch, Order, OrderState, Pile, Result, SessionEvent,
    StatusChange, Store, StoreError, Stored, TransactionRecord,
};

use self::connection::{open_connection, Readers};
use self::migrations::migrate;
use self::rows::{
    execute, gun, gun_row, json_text, json_value, limit, narrow, order, order_row, pile, pile_row,
    query_all, query_opt, record, record_row, sql,
};
use self::writer::{writer_loop, Job, Pending};
use super::schema::{GUN_COLUMNS, ORDER_COLUMNS, PILE_COLUMNS, RECORD_COLUMNS};

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
        let job = Box::new(Pending::new(work, reply));
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

    /// One write job (so one savepoint in the writer's group commit), with cached
    /// statements: the first statuses are compared with the stored ones before the
    /// statuses are written.
    async fn write_ingest(&self, batch: Arc<IngestBatch>) -> Result<()> {
        self.write(move |conn| {
            let history = |text: &str, rows: &[StatusChange]| -> Result<()> {
                let mut insert = conn.prepare_cached(text).map_err(sql)?;
                for c in rows {
                    insert
                        .execute(params![c.pile_no, c.gun_no, c.status, c.at])
                        .map_err(sql)?;
                }
                Ok(())
            };
            history(
                "INSERT INTO status_history (pile_no, gun_no, status, at)
                 SELECT ?1, ?2, ?3, ?4 WHERE NOT EXISTS (
                     SELECT 1 FROM gun_status WHERE pile_no = ?1 AND gun_no = ?2 AND status = ?3)",
                &batch.first_seen,
            )?;
            history(
                "INSERT INTO status_history (pile_no, gun_no, status, at) VALUES (?1, ?2, ?3, ?4)",
                &batch.history,
            )?;
            let mut upsert = conn
                .prepare_cached(
                    "INSERT INTO gun_status (pile_no, gun_no, status, data, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (pile_no, gun_no) DO UPDATE SET status = excluded.status,
                         data = excluded.data, updated_at = excluded.updated_at",
                )
                .map_err(sql)?;
            for g in &batch.statuses {
                let data = json_text(&g.data)?;
                upsert
                    .execute(params![g.pile_no, g.gun_no, g.status, data, g.updated_at])
                    .map_err(sql)?;
            }
            let mut append = conn
                .prepare_cached(
                    "INSERT INTO session_events (pile_no, gun_no, trade_no, frame_type, fields, at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .map_err(sql)?;
            for e in &batch.events {
                let fields = json_text(&e.fields)?;
                append
                    .execute(params![
                        e.pile_no,
                        e.gun_no,
                        e.trade_no,
                        e.frame_type,
                        fields,
                        e.at
                    ])
                    .map_err(sql)?;
            }
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
