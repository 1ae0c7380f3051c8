//! The portable [`Db`] over a PostgreSQL transaction.

use tokio_postgres::types::{ToSql, Type};

use super::rows::pg;
use crate::store::sql::{Db, Kind, Row, Value};
use crate::store::{Result, StoreError};

pub(crate) struct PgDb<'a> {
    pub tx: deadpool_postgres::Transaction<'a>,
}

fn param(v: &Value) -> Box<dyn ToSql + Sync + Send> {
    match v {
        Value::Int(i) => Box::new(*i),
        Value::Real(r) => Box::new(*r),
        Value::Text(t) => Box::new(t.clone()),
        Value::Null(Kind::Int) => Box::new(None::<i64>),
        Value::Null(Kind::Real) => Box::new(None::<f64>),
        Value::Null(Kind::Text) => Box::new(None::<String>),
    }
}

fn column(row: &tokio_postgres::Row, i: usize) -> Result<Value> {
    let ty = row.columns()[i].type_().clone();
    let get_err = |e: tokio_postgres::Error| StoreError::Corrupt(format!("column {i}: {e}"));
    let v = match ty {
        Type::INT8 => row
            .try_get::<_, Option<i64>>(i)
            .map_err(get_err)?
            .map(Value::Int),
        Type::INT4 => row
            .try_get::<_, Option<i32>>(i)
            .map_err(get_err)?
            .map(|v| Value::Int(v.into())),
        Type::INT2 => row
            .try_get::<_, Option<i16>>(i)
            .map_err(get_err)?
            .map(|v| Value::Int(v.into())),
        Type::BOOL => row
            .try_get::<_, Option<bool>>(i)
            .map_err(get_err)?
            .map(|v| Value::Int(v.into())),
        Type::FLOAT8 => row
            .try_get::<_, Option<f64>>(i)
            .map_err(get_err)?
            .map(Value::Real),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => row
            .try_get::<_, Option<String>>(i)
            .map_err(get_err)?
            .map(Value::Text),
        Type::JSON | Type::JSONB => row
            .try_get::<_, Option<serde_json::Value>>(i)
            .map_err(get_err)?
            .map(|v| Value::Text(v.to_string())),
        other => {
            return Err(StoreError::Backend(format!(
                "column {i} has type {other}, which the portable layer does not read (cast it)"
            )))
        }
    };
    Ok(v.unwrap_or(Value::Null(Kind::Text)))
}

impl Db for PgDb<'_> {
    async fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>> {
        let owned: Vec<Box<dyn ToSql + Sync + Send>> = params.iter().map(param).collect();
        let refs: Vec<&(dyn ToSql + Sync)> = owned
            .iter()
            .map(|b| b.as_ref() as &(dyn ToSql + Sync))
            .collect();
        let statement = self.tx.prepare_cached(sql).await.map_err(pg)?;
        let rows = self.tx.query(&statement, &refs).await.map_err(pg)?;
        rows.iter()
            .map(|row| {
                (0..row.len())
                    .map(|i| column(row, i))
                    .collect::<Result<Vec<_>>>()
                    .map(Row)
            })
            .collect()
    }

    async fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64> {
        let owned: Vec<Box<dyn ToSql + Sync + Send>> = params.iter().map(param).collect();
        let refs: Vec<&(dyn ToSql + Sync)> = owned
            .iter()
            .map(|b| b.as_ref() as &(dyn ToSql + Sync))
            .collect();
        let statement = self.tx.prepare_cached(sql).await.map_err(pg)?;
        self.tx.execute(&statement, &refs).await.map_err(pg)
    }

    fn lock_rows(&self) -> &'static str {
        " FOR UPDATE"
    }

    fn json_param(&self, placeholder: &str) -> String {
        format!("CAST(CAST({placeholder} AS TEXT) AS JSONB)")
    }
}

/// Runs `$body` with `$db` a [`PgDb`] in a new transaction on a pooled connection,
/// committing when it succeeds (a failed one rolls back as the transaction drops); the
/// whole transaction again while the store is unavailable (a failover) before its commit
/// (see `failover` for why a failed commit is not run again).
macro_rules! in_transaction {
    ($store:expr, |$db:ident| $body:expr) => {{
        $crate::store::postgres::failover::retrying!($store, {
            let mut client = $store.client().await?;
            let tx = client
                .transaction()
                .await
                .map_err($crate::store::postgres::rows::pg)?;
            let mut $db = $crate::store::postgres::db::PgDb { tx };
            let out = $body.await;
            if out.is_ok() {
                $db.tx
                    .commit()
                    .await
                    .map_err($crate::store::postgres::failover::commit_unknown)?;
            }
            out
        })
    }};
}
pub(super) use in_transaction;
