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

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{
    ClientWrapper, GenericClient, HookError, Manager, ManagerConfig, Metrics, Pool, PoolError,
    RecyclingMethod, Runtime,
};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{FromSql, ToSql};
use tokio_postgres::{NoTls, Row};

use super::{
    BillingModel, GunStatus, Order, OrderOrigin, OrderState, Pile, Result, SessionEvent,
    StatusChange, Store, StoreError, Stored, TransactionRecord,
};

/// (version, name, SQL), applied in order. Never edit one that shipped; add a new one.
const MIGRATIONS: &[(i64, &str, &str)] = &[(
    1,
    "init",
    include_str!("../../migrations/postgres/0001_init.sql"),
)];

/// Key of the advisory lock that serialises migrations between app instances.
const MIGRATION_LOCK: i64 = 0x5059_4c4f_4e5f_4d47; // "PYLON_MG"
const POOL_SIZE: usize = 16;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a call waits for a free pooled connection.
const WAIT_TIMEOUT: Duration = Duration::from_secs(10);

pub struct PostgresStore {
    pool: Pool,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("pool", &self.pool.status())
            .finish()
    }
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user@host:port/db`, or the key=value form), checks
    /// that the server answers, and brings the schema up to date.
    pub async fn connect(url: &str) -> Result<Arc<Self>> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Backend(format!("invalid PostgreSQL URL: {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("pylon-app");
        }
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .create_timeout(Some(CONNECT_TIMEOUT))
            .wait_timeout(Some(WAIT_TIMEOUT))
            .post_create(deadpool_postgres::Hook::async_fn(durable_commits))
            .build()
            .map_err(|e| StoreError::Backend(format!("building the PostgreSQL pool: {e}")))?;
        let store = PostgresStore { pool };
        let mut client = store.client().await?;
        migrate(&mut client).await?;
        drop(client);
        Ok(Arc::new(store))
    }

    async fn client(&self) -> Result<deadpool_postgres::Client> {
        self.pool.get().await.map_err(pool_error)
    }
}

/// Run on every new connection: raise `synchronous_commit` to `on` if the server's default
/// is `off` (stronger settings — `remote_write`, `remote_apply` — are left alone), so that
/// a commit that returned is on disk.
fn durable_commits<'a>(
    client: &'a mut ClientWrapper,
    _: &'a Metrics,
) -> Pin<Box<dyn Future<Output = Result<(), HookError>> + Send + 'a>> {
    Box::pin(async move {
        client
            .batch_execute(
                "SELECT set_config('synchronous_commit', 'on', false)
                 WHERE current_setting('synchronous_commit') = 'off'",
            )
            .await
            .map_err(HookError::Backend)
    })
}

/// Applies the missing migrations in one transaction, holding an advisory lock so that
/// instances starting together migrate one after the other.
async fn migrate(client: &mut deadpool_postgres::Client) -> Result<()> {
    let tx = client.transaction().await.map_err(pg)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(pg)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    BIGINT PRIMARY KEY,
             name       TEXT NOT NULL,
             applied_at BIGINT NOT NULL
         )",
    )
    .await
    .map_err(pg)?;
    let rows = tx
        .query(
            "SELECT version, name FROM schema_migrations ORDER BY version",
            &[],
        )
        .await
        .map_err(pg)?;
    let applied = rows
        .iter()
        .map(|row| {
            Ok((
                get::<i64>(row, 0, "schema_migrations.version")?,
                get(row, 1, "schema_migrations.name")?,
            ))
        })
        .collect::<Result<Vec<(i64, String)>>>()?;
    check_applied(&applied)?;
    for (version, name, script) in MIGRATIONS {
        if applied.iter().any(|(v, _)| v == version) {
            continue;
        }
        tx.batch_execute(script).await.map_err(|e| {
            StoreError::Backend(format!(
                "PostgreSQL migration {version} ({name}): {}",
                describe(&e)
            ))
        })?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
            &[version, name, &now_ms()],
        )
        .await
        .map_err(pg)?;
        tracing::info!(version, name, "applied PostgreSQL store migration");
    }
    tx.commit().await.map_err(pg)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
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

// ---------------------------------------------------------------------------------------
// Errors and decoding.

fn pool_error(e: PoolError) -> StoreError {
    match e {
        PoolError::Backend(e) => StoreError::Unavailable(format!("PostgreSQL: {}", describe(&e))),
        PoolError::NoRuntimeSpecified => StoreError::Backend(format!("PostgreSQL pool: {e}")),
        other => StoreError::Unavailable(format!("PostgreSQL pool: {other}")),
    }
}

/// The server's own message when there is one, else the error with its causes
/// (tokio-postgres' own Display says only "db error", "error connecting to server", ...).
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => db.to_string(),
        None => with_causes(e),
    }
}

fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

fn pg(e: tokio_postgres::Error) -> StoreError {
    let message = format!("PostgreSQL: {}", describe(&e));
    if let Some(db) = e.as_db_error() {
        let code = db.code();
        let class = &code.code()[..2.min(code.code().len())];
        return match class {
            // connection exception, insufficient resources, operator intervention
            // (admin/crash shutdown, cannot connect now)
            "08" | "53" | "57" if *code != SqlState::QUERY_CANCELED => {
                StoreError::Unavailable(message)
            }
            "XX" if *code == SqlState::DATA_CORRUPTED || *code == SqlState::INDEX_CORRUPTED => {
                StoreError::Corrupt(message)
            }
            _ if *code == SqlState::UNIQUE_VIOLATION => StoreError::Conflict(message),
            _ => StoreError::Backend(message),
        };
    }
    let io = std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>());
    if e.is_closed() || io {
        StoreError::Unavailable(message)
    } else {
        StoreError::Backend(message)
    }
}

fn corrupt(what: &str, detail: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {detail}"))
}

/// A column as `T`; a value that does not fit is corrupt data, not a panic.
fn get<'a, T: FromSql<'a>>(row: &'a Row, column: usize, what: &str) -> Result<T> {
    row.try_get(column)
        .map_err(|e| corrupt(what, with_causes(&e)))
}

fn narrow<T: TryFrom<i64>>(value: impl Into<i64>, what: &str) -> Result<T> {
    let value = value.into();
    T::try_from(value).map_err(|_| corrupt(what, format!("{value} is out of range")))
}

fn limit(limit: u32) -> i64 {
    i64::from(limit)
}

const PILE_COLUMNS: &str = "pile_no, enabled, billing_model, name, last_login_at";

fn pile(row: &Row) -> Result<Pile> {
    Ok(Pile {
        pile_no: get(row, 0, "piles.pile_no")?,
        enabled: get(row, 1, "piles.enabled")?,
        billing_model: narrow(
            get::<i32>(row, 2, "piles.billing_model")?,
            "piles.billing_model",
        )?,
        name: get(row, 3, "piles.name")?,
        last_login_at: get(row, 4, "piles.last_login_at")?,
    })
}

const GUN_COLUMNS: &str = "pile_no, gun_no, status, data, updated_at";

fn gun(row: &Row) -> Result<GunStatus> {
    Ok(GunStatus {
        pile_no: get(row, 0, "gun_status.pile_no")?,
        gun_no: get(row, 1, "gun_status.gun_no")?,
        status: narrow(
            get::<i16>(row, 2, "gun_status.status")?,
            "gun_status.status",
        )?,
        data: get(row, 3, "gun_status.data")?,
        updated_at: get(row, 4, "gun_status.updated_at")?,
    })
}

fn status_change(row: &Row) -> Result<StatusChange> {
    Ok(StatusChange {
        pile_no: get(row, 0, "status_history.pile_no")?,
        gun_no: get(row, 1, "status_history.gun_no")?,
        status: narrow(
            get::<i16>(row, 2, "status_history.status")?,
            "status_history.status",
        )?,
        at: get(row, 3, "status_history.at")?,
    })
}

fn event(row: &Row) -> Result<SessionEvent> {
    Ok(SessionEvent {
        pile_no: get(row, 0, "session_events.pile_no")?,
        gun_no: get(row, 1, "session_events.gun_no")?,
        trade_no: get(row, 2, "session_events.trade_no")?,
        frame_type: narrow(
            get::<i16>(row, 3, "session_events.frame_type")?,
            "session_events.frame_type",
        )?,
        fields: get(row, 4, "session_events.fields")?,
        at: get(row, 5, "session_events.at")?,
    })
}

const ORDER_COLUMNS: &str =
    "trade_no, pile_no, gun_no, state, origin, balance, created_at, updated_at, failure";

fn order(row: &Row) -> Result<Order> {
    let state: &str = get(row, 3, "orders.state")?;
    let origin: &str = get(row, 4, "orders.origin")?;
    Ok(Order {
        trade_no: get(row, 0, "orders.trade_no")?,
        pile_no: get(row, 1, "orders.pile_no")?,
        gun_no: get(row, 2, "orders.gun_no")?,
        state: OrderState::parse(state)
            .ok_or_else(|| corrupt("orders.state", format!("unknown state {state:?}")))?,
        origin: OrderOrigin::parse(origin)
            .ok_or_else(|| corrupt("orders.origin", format!("unknown origin {origin:?}")))?,
        balance: get(row, 5, "orders.balance")?,
        created_at: get(row, 6, "orders.created_at")?,
        updated_at: get(row, 7, "orders.updated_at")?,
        failure: get(row, 8, "orders.failure")?,
    })
}

const RECORD_COLUMNS: &str = "trade_no, pile_no, gun_no, start_time, end_time, total_energy, \
                              total_amount, stop_reason, fields, received_at";

fn record(row: &Row) -> Result<TransactionRecord> {
    Ok(TransactionRecord {
        trade_no: get(row, 0, "transaction_records.trade_no")?,
        pile_no: get(row, 1, "transaction_records.pile_no")?,
        gun_no: get(row, 2, "transaction_records.gun_no")?,
        start_time: get(row, 3, "transaction_records.start_time")?,
        end_time: get(row, 4, "transaction_records.end_time")?,
        total_energy: get(row, 5, "transaction_records.total_energy")?,
        total_amount: get(row, 6, "transaction_records.total_amount")?,
        stop_reason: narrow(
            get::<i16>(row, 7, "transaction_records.stop_reason")?,
            "transaction_records.stop_reason",
        )?,
        fields: get(row, 8, "transaction_records.fields")?,
        received_at: get(row, 9, "transaction_records.received_at")?,
    })
}

/// Runs a statement (prepared once per connection) and decodes every row.
async fn query_all<C, T>(
    client: &C,
    query: &str,
    params: &[&(dyn ToSql + Sync)],
    decode: fn(&Row) -> Result<T>,
) -> Result<Vec<T>>
where
    C: GenericClient,
{
    let statement = client.prepare_cached(query).await.map_err(pg)?;
    let rows = client.query(&statement, params).await.map_err(pg)?;
    rows.iter().map(decode).collect()
}

/// Runs a statement expected to return at most one row, and decodes it.
async fn query_opt<C, T>(
    client: &C,
    query: &str,
    params: &[&(dyn ToSql + Sync)],
    decode: fn(&Row) -> Result<T>,
) -> Result<Option<T>>
where
    C: GenericClient,
{
    let statement = client.prepare_cached(query).await.map_err(pg)?;
    let row = client.query_opt(&statement, params).await.map_err(pg)?;
    row.as_ref().map(decode).transpose()
}

/// Runs a statement and returns the number of rows it changed.
async fn execute<C>(client: &C, query: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64>
where
    C: GenericClient,
{
    let statement = client.prepare_cached(query).await.map_err(pg)?;
    client.execute(&statement, params).await.map_err(pg)
}

// ---------------------------------------------------------------------------------------

#[async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn upsert_pile(&self, pile: &Pile) -> Result<()> {
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
    }

    async fn pile(&self, pile_no: &str) -> Result<Option<Pile>> {
        let client = self.client().await?;
        query_opt(
            &client,
            &format!("SELECT {PILE_COLUMNS} FROM piles WHERE pile_no = $1"),
            &[&pile_no],
            pile,
        )
        .await
    }

    async fn piles(&self, after: Option<&str>, limit_: u32) -> Result<Vec<Pile>> {
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
    }

    async fn record_login(&self, pile_no: &str, at: i64) -> Result<()> {
        let client = self.client().await?;
        execute(
            &client,
            "UPDATE piles SET last_login_at = $2 WHERE pile_no = $1",
            &[&pile_no, &at],
        )
        .await?;
        Ok(())
    }

    async fn upsert_billing_model(&self, model: &BillingModel) -> Result<()> {
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
    }

    async fn billing_model(&self, model_no: u16) -> Result<Option<BillingModel>> {
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
    }

    async fn gun_statuses(&self, pile_no: &str) -> Result<Vec<GunStatus>> {
        let client = self.client().await?;
        query_all(
            &client,
            &format!("SELECT {GUN_COLUMNS} FROM gun_status WHERE pile_no = $1 ORDER BY gun_no"),
            &[&pile_no],
            gun,
        )
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
    }

    async fn append_event(&self, event: &SessionEvent) -> Result<()> {
        let client = self.client().await?;
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

    async fn events(&self, trade_no: &str) -> Result<Vec<SessionEvent>> {
        let client = self.client().await?;
        query_all(
            &client,
            "SELECT pile_no, gun_no, trade_no, frame_type, fields, at FROM session_events
             WHERE trade_no = $1 ORDER BY at, id",
            &[&trade_no],
            event,
        )
        .await
    }

    async fn insert_order(&self, order: &Order) -> Result<()> {
        let client = self.client().await?;
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
        let client = self.client().await?;
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
        let client = self.client().await?;
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
        let client = self.client().await?;
        query_opt(
            &client,
            &format!("SELECT {ORDER_COLUMNS} FROM orders WHERE trade_no = $1"),
            &[&trade_no],
            order,
        )
        .await
    }

    async fn open_orders(&self, pile_no: Option<&str>) -> Result<Vec<Order>> {
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
    }

    async fn orders(&self, pile_no: &str, from: i64, to: i64, limit_: u32) -> Result<Vec<Order>> {
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
    }

    /// One statement, so one implicit transaction and one round trip: the insert, and the
    /// order update fed by the insert's `RETURNING` (so only a new record finishes an
    /// order). A concurrent call with the same trade number waits on the unique index until
    /// this one committed, then inserts nothing: exactly one caller sees [`Stored::New`].
    async fn store_record(&self, record: &TransactionRecord) -> Result<Stored> {
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
    }

    async fn record(&self, trade_no: &str) -> Result<Option<TransactionRecord>> {
        let client = self.client().await?;
        query_opt(
            &client,
            &format!("SELECT {RECORD_COLUMNS} FROM transaction_records WHERE trade_no = $1"),
            &[&trade_no],
            record,
        )
        .await
    }

    async fn records(
        &self,
        pile_no: &str,
        from: i64,
        to: i64,
        limit_: u32,
    ) -> Result<Vec<TransactionRecord>> {
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
    }

    async fn record_count(&self) -> Result<u64> {
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
    }
}
