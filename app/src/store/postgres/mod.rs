//! [`PostgresStore`]: the business store on a PostgreSQL server, for when one machine is
//! outgrown.
//!
//! - A `deadpool-postgres` pool of `tokio-postgres` connections (no TLS), statements
//!   prepared once per connection.
//! - Durability: commits wait for the server's WAL flush (`synchronous_commit` is never
//!   `off` on our sessions: a server configured with `off` is raised to `on`).
//! - `store_record` is race-free across connections and app instances: the unique trade
//!   number decides, through `INSERT ... ON CONFLICT DO NOTHING`, which call stored it.
//! - Errors: a server that cannot be reached, or that went away, is
//!   [`StoreError::Unavailable`]; a value that cannot be decoded is [`StoreError::Corrupt`].

mod connection;
mod db;
mod failover;
mod migrations;
mod monitor;
mod revenue;
mod rows;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::types::ToSql;
use tokio_postgres::NoTls;

use super::{
    BillingModel, GunStatus, IngestBatch, Order, OrderState, Pile, Result, SessionEvent,
    StatusChange, Store, StoreError, Stored, TransactionRecord,
};

use self::connection::durable_commits;
use self::failover::retrying;
use self::migrations::migrate;
use self::rows::{
    event, execute, get, gun, limit, narrow, order, pg, pile, pool_error, query_all, query_opt,
    record, status_change,
};
use super::schema::{GUN_COLUMNS, ORDER_COLUMNS, PILE_COLUMNS, RECORD_COLUMNS};

const POOL_SIZE: usize = 16;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Unacknowledged data older than this means the server is gone (TCP_USER_TIMEOUT).
const DEAD_SERVER: Duration = Duration::from_secs(15);
/// How long a call waits for a free pooled connection.
const WAIT_TIMEOUT: Duration = Duration::from_secs(10);

pub struct PostgresStore {
    pool: Pool,
    /// How long a call keeps trying while no server is writable (see `failover`).
    failover_budget: Duration,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("pool", &self.pool.status())
            .finish()
    }
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user@host:port/db`, or the key=value form) in the
    /// clear, checks that the server answers, and brings the schema up to date.
    pub async fn connect(url: &str) -> Result<Arc<Self>> {
        Self::connect_with(url, None).await
    }

    /// As [`PostgresStore::connect`]; with `ca`, over TLS only (`sslmode=require`), the
    /// server's certificate verified against `ca` and the URL's host name.
    pub async fn connect_with(url: &str, ca: Option<&std::path::Path>) -> Result<Arc<Self>> {
        Self::connect_tuned(url, ca, failover::FAILOVER_BUDGET).await
    }

    /// As [`PostgresStore::connect_with`], a call trying for up to `failover_budget` while
    /// no server takes writes.
    pub async fn connect_tuned(
        url: &str,
        ca: Option<&std::path::Path>,
        failover_budget: Duration,
    ) -> Result<Arc<Self>> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Backend(format!("invalid PostgreSQL URL: {e}")))?;
        let tls = match ca {
            Some(ca) => {
                config.ssl_mode(tokio_postgres::config::SslMode::Require);
                Some(tls_connector(ca)?)
            }
            None => None,
        };
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        // Several hosts are the members of a highly available cluster: only the primary
        // takes writes, so a connection goes to the one that does (libpq's
        // `target_session_attrs=read-write`, the default here when there are several).
        if config.get_hosts().len() > 1 {
            config.target_session_attrs(tokio_postgres::config::TargetSessionAttrs::ReadWrite);
        }
        // A primary that froze or was cut off sends no error: without these, a call would
        // wait on it for the kernel's defaults (minutes to hours) rather than fail over.
        // Settings in the URL win.
        if config.get_tcp_user_timeout().is_none() {
            config.tcp_user_timeout(DEAD_SERVER);
        }
        if config.get_keepalives_idle() == Duration::from_secs(2 * 60 * 60) {
            config.keepalives_idle(Duration::from_secs(10));
            config.keepalives_interval(Duration::from_secs(5));
            config.keepalives_retries(3);
        }
        if config.get_application_name().is_none() {
            config.application_name("pylon-app");
        }
        let recycling = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match tls {
            Some(tls) => Manager::from_config(config, tls, recycling),
            None => Manager::from_config(config, NoTls, recycling),
        };
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .create_timeout(Some(CONNECT_TIMEOUT))
            .wait_timeout(Some(WAIT_TIMEOUT))
            .post_create(deadpool_postgres::Hook::async_fn(durable_commits))
            .build()
            .map_err(|e| StoreError::Backend(format!("building the PostgreSQL pool: {e}")))?;
        let store = PostgresStore {
            pool,
            failover_budget,
        };
        let mut client = store.client().await?;
        migrate(&mut client).await?;
        drop(client);
        Ok(Arc::new(store))
    }

    async fn client(&self) -> Result<deadpool_postgres::Client> {
        self.pool.get().await.map_err(pool_error)
    }
}

/// A TLS connector that trusts only `ca`.
fn tls_connector(ca: &std::path::Path) -> Result<tokio_postgres_rustls::MakeRustlsConnect> {
    pylon_service::postgres::tls_connector(ca)
        .map_err(|e| StoreError::Backend(format!("PostgreSQL TLS: {e:#}")))
}

/// Whether every host of `url` is this machine (a unix socket or a loopback address),
/// where the link may go in the clear.
pub fn is_local(url: &str) -> bool {
    url.parse::<tokio_postgres::Config>()
        .is_ok_and(|config| pylon_service::postgres::is_local(&config))
}

// ---------------------------------------------------------------------------------------

#[async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn upsert_pile(&self, pile: &Pile) -> Result<()> {
        retrying!(self, {
            let client = self.client().await?;
            execute(
                &client,
                "INSERT INTO piles (pile_no, enabled, billing_model, name, last_login_at)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (pile_no) DO UPDATE SET enabled = excluded.enabled,
                 billing_model = excluded.billing_model, name = excluded.name,
                 last_login_at = excluded.last_login_at",
                &[
                    &pile.pile_no,
                    &pile.enabled,
                    &i32::from(pile.billing_model),
                    &pile.name,
                    &pile.last_login_at,
                ],
            )
            .await?;
            Ok(())
        })
    }

    async fn pile(&self, pile_no: &str) -> Result<Option<Pile>> {
        retrying!(self, {
            let client = self.client().await?;
            query_opt(
                &client,
                &format!("SELECT {PILE_COLUMNS} FROM piles WHERE pile_no = $1"),
                &[&pile_no],
                pile,
            )
            .await
        })
    }

    async fn piles(&self, after: Option<&str>, limit_: u32) -> Result<Vec<Pile>> {
        retrying!(self, {
            let client = self.client().await?;
            query_all(
                &client,
                &format!(
                    "SELECT {PILE_COLUMNS} FROM piles WHERE pile_no > $1 ORDER BY pile_no LIMIT $2"
                ),
                &[&after.unwrap_or(""), &limit(limit_)],
                pile,
            )
            .await
        })
    }

    async fn record_login(&self, pile_no: &str, at: i64) -> Result<()> {
        retrying!(self, {
            let client = self.client().await?;
            execute(
                &client,
                "UPDATE piles SET last_login_at = $2 WHERE pile_no = $1",
                &[&pile_no, &at],
            )
            .await?;
            Ok(())
        })
    }

    async fn upsert_billing_model(&self, model: &BillingModel) -> Result<()> {
        retrying!(self, {
            let client = self.client().await?;
            execute(
                &client,
                "INSERT INTO billing_models (model_no, fields, updated_at) VALUES ($1, $2, $3)
             ON CONFLICT (model_no) DO UPDATE SET fields = excluded.fields,
                 updated_at = excluded.updated_at",
                &[&i32::from(model.model_no), &model.fields, &model.updated_at],
            )
            .await?;
            Ok(())
        })
    }

    async fn billing_model(&self, model_no: u16) -> Result<Option<BillingModel>> {
        retrying!(self, {
            let client = self.client().await?;
            query_opt(
                &client,
                "SELECT model_no, fields, updated_at FROM billing_models WHERE model_no = $1",
                &[&i32::from(model_no)],
                |row| {
                    Ok(BillingModel {
                        model_no: narrow(
                            get::<i32>(row, 0, "billing_models.model_no")?,
                            "billing_models.model_no",
                        )?,
                        fields: get(row, 1, "billing_models.fields")?,
                        updated_at: get(row, 2, "billing_models.updated_at")?,
                    })
                },
            )
            .await
        })
    }

    /// One round trip when the gun is known: one statement locks the current row, updates
    /// it and appends history if the status changed (both fed by the locked row, so they
    /// run after the lock). Concurrent updates of one gun queue on that lock and each
    /// compares against the previous one's result. A new gun is created by a second
    /// statement; if another call created it in between, the first is tried again.
    async fn set_gun_status(&self, status: &GunStatus) -> Result<()> {
        let code = i16::from(status.status);
        let values: [&(dyn ToSql + Sync); 5] = [
            &status.pile_no,
            &status.gun_no,
            &code,
            &status.data,
            &status.updated_at,
        ];
        retrying!(self, {
            let client = self.client().await?;
            for _ in 0..3 {
                let known = query_opt(
                    &client,
                    "WITH previous AS (
                     SELECT status FROM gun_status
                     WHERE pile_no = $1 AND gun_no = $2
                     FOR UPDATE
                 ), updated AS (
                     UPDATE gun_status SET status = $3, data = $4, updated_at = $5
                     WHERE pile_no = $1 AND gun_no = $2 AND EXISTS (SELECT 1 FROM previous)
                 ), history AS (
                     INSERT INTO status_history (pile_no, gun_no, status, at)
                     SELECT $1, $2, $3, $5 FROM previous WHERE previous.status <> $3
                 )
                 SELECT count(*) FROM previous",
                    &values,
                    |row| get::<i64>(row, 0, "known gun"),
                )
                .await?;
                if known.unwrap_or(0) > 0 {
                    return Ok(());
                }
                let created = execute(
                    &client,
                    "WITH created AS (
                     INSERT INTO gun_status (pile_no, gun_no, status, data, updated_at)
                     VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (pile_no, gun_no) DO NOTHING
                     RETURNING pile_no
                 )
                 INSERT INTO status_history (pile_no, gun_no, status, at)
                 SELECT $1, $2, $3, $5 FROM created",
                    &values,
                )
                .await?;
                if created > 0 {
                    return Ok(());
                }
            }
            Err(StoreError::Backend(format!(
                "gun {}/{}: its status row kept appearing and vanishing",
                status.pile_no, status.gun_no
            )))
        })
    }

    async fn gun_statuses(&self, pile_no: &str) -> Result<Vec<GunStatus>> {
        retrying!(self, {
            let client = self.client().await?;
            query_all(
                &client,
                &format!("SELECT {GUN_COLUMNS} FROM gun_status WHERE pile_no = $1 ORDER BY gun_no"),
                &[&pile_no],
                gun,
            )
            .await
        })
    }

    async fn status_history(
        &self,
        pile_no: &str,
        gun_no: &str,
        from: i64,
        to: i64,
        limit_: u32,
    ) -> Result<Vec<StatusChange>> {
        retrying!(self, {
            let client = self.client().await?;
            query_all(
                &client,
                "SELECT pile_no, gun_no, status, at FROM status_history
             WHERE pile_no = $1 AND gun_no = $2 AND at >= $3 AND at < $4
             ORDER BY at, id LIMIT $5",
                &[&pile_no, &gun_no, &from, &to, &limit(limit_)],
                status_change,
            )
            .await
        })
    }

    async fn append_event(&self, event: &SessionEvent) -> Result<()> {
        // Not idempotent: only the connection is retried (see `failover`).
        let client = retrying!(self, { self.client().await })?;
        execute(
            &client,
            "INSERT INTO session_events (pile_no, gun_no, trade_no, frame_type, fields, at)
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &event.pile_no,
                &event.gun_no,
                &event.trade_no,
                &i16::from(event.frame_type),
                &event.fields,
                &event.at,
            ],
        )
        .await?;
        Ok(())
    }

    /// One transaction of four statements, each taking its rows as arrays (`UNNEST`):
    /// the first statuses are compared with the stored ones before the statuses (sorted
    /// by gun, so concurrent batches lock rows in one order) are written.
    async fn write_ingest(&self, batch: Arc<IngestBatch>) -> Result<()> {
        fn columns(changes: &[StatusChange]) -> (Vec<&str>, Vec<&str>, Vec<i16>, Vec<i64>) {
            (
                changes.iter().map(|c| c.pile_no.as_str()).collect(),
                changes.iter().map(|c| c.gun_no.as_str()).collect(),
                changes.iter().map(|c| i16::from(c.status)).collect(),
                changes.iter().map(|c| c.at).collect(),
            )
        }
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        if !batch.first_seen.is_empty() {
            let (piles, guns, codes, ats) = columns(&batch.first_seen);
            tx.execute(
                "INSERT INTO status_history (pile_no, gun_no, status, at)
                 SELECT n.pile_no, n.gun_no, n.status, n.at
                 FROM UNNEST($1::text[], $2::text[], $3::int2[], $4::int8[])
                     AS n (pile_no, gun_no, status, at)
                 WHERE NOT EXISTS (
                     SELECT 1 FROM gun_status g
                     WHERE g.pile_no = n.pile_no AND g.gun_no = n.gun_no AND g.status = n.status)",
                &[&piles, &guns, &codes, &ats],
            )
            .await
            .map_err(pg)?;
        }
        if !batch.history.is_empty() {
            let (piles, guns, codes, ats) = columns(&batch.history);
            tx.execute(
                "INSERT INTO status_history (pile_no, gun_no, status, at)
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::int2[], $4::int8[])",
                &[&piles, &guns, &codes, &ats],
            )
            .await
            .map_err(pg)?;
        }
        if !batch.statuses.is_empty() {
            let s = &batch.statuses;
            let piles: Vec<&str> = s.iter().map(|g| g.pile_no.as_str()).collect();
            let guns: Vec<&str> = s.iter().map(|g| g.gun_no.as_str()).collect();
            let codes: Vec<i16> = s.iter().map(|g| i16::from(g.status)).collect();
            let data: Vec<&serde_json::Value> = s.iter().map(|g| &g.data).collect();
            let ats: Vec<i64> = s.iter().map(|g| g.updated_at).collect();
            tx.execute(
                "INSERT INTO gun_status (pile_no, gun_no, status, data, updated_at)
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::int2[], $4::jsonb[], $5::int8[])
                 ON CONFLICT (pile_no, gun_no) DO UPDATE SET status = excluded.status,
                     data = excluded.data, updated_at = excluded.updated_at",
                &[&piles, &guns, &codes, &data, &ats],
            )
            .await
            .map_err(pg)?;
        }
        if !batch.events.is_empty() {
            let e = &batch.events;
            let piles: Vec<&str> = e.iter().map(|e| e.pile_no.as_str()).collect();
            let guns: Vec<&str> = e.iter().map(|e| e.gun_no.as_str()).collect();
            let trades: Vec<&str> = e.iter().map(|e| e.trade_no.as_str()).collect();
            let types: Vec<i16> = e.iter().map(|e| i16::from(e.frame_type)).collect();
            let fields: Vec<&serde_json::Value> = e.iter().map(|e| &e.fields).collect();
            let ats: Vec<i64> = e.iter().map(|e| e.at).collect();
            tx.execute(
                "INSERT INTO session_events (pile_no, gun_no, trade_no, frame_type, fields, at)
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int2[],
                                      $5::jsonb[], $6::int8[])",
                &[&piles, &guns, &trades, &types, &fields, &ats],
            )
            .await
            .map_err(pg)?;
        }
        tx.commit().await.map_err(pg)
    }

    async fn events(&self, trade_no: &str) -> Result<Vec<SessionEvent>> {
        retrying!(self, {
            let client = self.client().await?;
            query_all(
                &client,
                "SELECT pile_no, gun_no, trade_no, frame_type, fields, at FROM session_events
             WHERE trade_no = $1 ORDER BY at, id",
                &[&trade_no],
                event,
            )
            .await
        })
    }

    async fn insert_order(&self, order: &Order) -> Result<()> {
        // Not idempotent: only the connection is retried (see `failover`).
        let client = retrying!(self, { self.client().await })?;
        let inserted = execute(
            &client,
            "INSERT INTO orders (trade_no, pile_no, gun_no, state, origin, balance, created_at,
                 updated_at, failure)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (trade_no) DO NOTHING",
            &[
                &order.trade_no,
                &order.pile_no,
                &order.gun_no,
                &order.state.as_str(),
                &order.origin.as_str(),
                &order.balance,
                &order.created_at,
                &order.updated_at,
                &order.failure,
            ],
        )
        .await?;
        if inserted == 0 {
            return Err(StoreError::Conflict(format!("order {}", order.trade_no)));
        }
        Ok(())
    }

    async fn update_order(
        &self,
        trade_no: &str,
        state: OrderState,
        failure: Option<&str>,
        at: i64,
    ) -> Result<bool> {
        // Not idempotent: only the connection is retried (see `failover`).
        let client = retrying!(self, { self.client().await })?;
        let updated = execute(
            &client,
            "UPDATE orders SET state = $2, failure = $3, updated_at = $4 WHERE trade_no = $1",
            &[&trade_no, &state.as_str(), &failure, &at],
        )
        .await?;
        Ok(updated > 0)
    }

    async fn move_order(
        &self,
        trade_no: &str,
        from: &[OrderState],
        state: OrderState,
        failure: Option<&str>,
        at: i64,
    ) -> Result<bool> {
        // Not idempotent: only the connection is retried (see `failover`).
        let client = retrying!(self, { self.client().await })?;
        let from: Vec<&str> = from.iter().map(|s| s.as_str()).collect();
        let updated = execute(
            &client,
            "UPDATE orders SET state = $2, failure = $3, updated_at = $4
             WHERE trade_no = $1 AND state = ANY($5)",
            &[&trade_no, &state.as_str(), &failure, &at, &from],
        )
        .await?;
        Ok(updated > 0)
    }

    async fn order(&self, trade_no: &str) -> Result<Option<Order>> {
        retrying!(self, {
            let client = self.client().await?;
            query_opt(
                &client,
                &format!("SELECT {ORDER_COLUMNS} FROM orders WHERE trade_no = $1"),
                &[&trade_no],
                order,
            )
            .await
        })
    }

    async fn open_orders(&self, pile_no: Option<&str>) -> Result<Vec<Order>> {
        retrying!(self, {
            let client = self.client().await?;
            match pile_no {
                Some(pile_no) => {
                    query_all(
                        &client,
                        &format!(
                            "SELECT {ORDER_COLUMNS} FROM orders
                         WHERE pile_no = $1 AND state IN ('starting', 'charging', 'stopping')
                         ORDER BY created_at, trade_no"
                        ),
                        &[&pile_no],
                        order,
                    )
                    .await
                }
                // The condition is written as in the partial index `orders_open`.
                None => {
                    query_all(
                        &client,
                        &format!(
                            "SELECT {ORDER_COLUMNS} FROM orders
                         WHERE state IN ('starting', 'charging', 'stopping')
                         ORDER BY created_at, trade_no"
                        ),
                        &[],
                        order,
                    )
                    .await
                }
            }
        })
    }

    async fn orders(&self, pile_no: &str, from: i64, to: i64, limit_: u32) -> Result<Vec<Order>> {
        retrying!(self, {
            let client = self.client().await?;
            query_all(
                &client,
                &format!(
                    "SELECT {ORDER_COLUMNS} FROM orders
                 WHERE pile_no = $1 AND created_at >= $2 AND created_at < $3
                 ORDER BY created_at DESC, trade_no DESC LIMIT $4"
                ),
                &[&pile_no, &from, &to, &limit(limit_)],
                order,
            )
            .await
        })
    }

    /// One statement, so one implicit transaction and one round trip: the insert, and the
    /// order update fed by the insert's `RETURNING` (so only a new record finishes an
    /// order). A concurrent call with the same trade number waits on the unique index until
    /// this one committed, then inserts nothing: exactly one caller sees [`Stored::New`].
    async fn store_record(&self, record: &TransactionRecord) -> Result<Stored> {
        retrying!(self, {
            let client = self.client().await?;
            let inserted = query_opt(
                &client,
                "WITH inserted AS (
                 INSERT INTO transaction_records (trade_no, pile_no, gun_no, start_time,
                     end_time, total_energy, total_amount, stop_reason, fields, received_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                 ON CONFLICT (trade_no) DO NOTHING
                 RETURNING trade_no
             ), finished AS (
                 UPDATE orders SET state = 'finished', updated_at = $10
                 WHERE trade_no IN (SELECT trade_no FROM inserted)
                     AND state IN ('starting', 'charging', 'stopping')
             )
             SELECT count(*) FROM inserted",
                &[
                    &record.trade_no,
                    &record.pile_no,
                    &record.gun_no,
                    &record.start_time,
                    &record.end_time,
                    &record.total_energy,
                    &record.total_amount,
                    &i16::from(record.stop_reason),
                    &record.fields,
                    &record.received_at,
                ],
                |row| get::<i64>(row, 0, "inserted records"),
            )
            .await?;
            Ok(match inserted {
                Some(1) => Stored::New,
                _ => Stored::Duplicate,
            })
        })
    }

    async fn record(&self, trade_no: &str) -> Result<Option<TransactionRecord>> {
        retrying!(self, {
            let client = self.client().await?;
            query_opt(
                &client,
                &format!("SELECT {RECORD_COLUMNS} FROM transaction_records WHERE trade_no = $1"),
                &[&trade_no],
                record,
            )
            .await
        })
    }

    async fn records(
        &self,
        pile_no: &str,
        from: i64,
        to: i64,
        limit_: u32,
    ) -> Result<Vec<TransactionRecord>> {
        retrying!(self, {
            let client = self.client().await?;
            query_all(
                &client,
                &format!(
                    "SELECT {RECORD_COLUMNS} FROM transaction_records
                 WHERE pile_no = $1 AND end_time >= $2 AND end_time < $3
                 ORDER BY end_time DESC, trade_no DESC LIMIT $4"
                ),
                &[&pile_no, &from, &to, &limit(limit_)],
                record,
            )
            .await
        })
    }

    async fn record_count(&self) -> Result<u64> {
        retrying!(self, {
            let client = self.client().await?;
            let count = query_opt(
                &client,
                "SELECT count(*) FROM transaction_records",
                &[],
                |row| get::<i64>(row, 0, "record count"),
            )
            .await?
            .unwrap_or(0);
            narrow(count, "record count")
        })
    }
}
