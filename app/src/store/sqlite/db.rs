//! The portable [`Db`] over an SQLite connection (the writer's, inside its savepoint, or
//! a reader's).

use rusqlite::types::{Value as Sqlite, ValueRef};
use rusqlite::Connection;

use super::rows::sql;
use crate::store::sql::{sqlite_placeholders, Db, Kind, Row, Value};
use crate::store::Result;

pub(crate) struct SqliteDb<'c>(pub &'c Connection);

fn param(v: &Value) -> Sqlite {
    match v {
        Value::Int(i) => Sqlite::Integer(*i),
        Value::Real(r) => Sqlite::Real(*r),
        Value::Text(t) => Sqlite::Text(t.clone()),
        Value::Null(_) => Sqlite::Null,
    }
}

fn column(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Null => Value::Null(Kind::Text),
        ValueRef::Integer(i) => Value::Int(i),
        ValueRef::Real(r) => Value::Real(r),
        ValueRef::Text(t) | ValueRef::Blob(t) => {
            Value::Text(String::from_utf8_lossy(t).into_owned())
        }
    }
}

impl Db for SqliteDb<'_> {
    async fn query(&mut self, text: &str, params: &[Value]) -> Result<Vec<Row>> {
        let mut stmt = self
            .0
            .prepare_cached(&sqlite_placeholders(text))
            .map_err(sql)?;
        let columns = stmt.column_count();
        let rows = stmt
            .query_map(
                rusqlite::params_from_iter(params.iter().map(param)),
                |row| {
                    (0..columns)
                        .map(|i| row.get_ref(i).map(column))
                        .collect::<rusqlite::Result<Vec<Value>>>()
                        .map(Row)
                },
            )
            .map_err(sql)?;
        rows.collect::<rusqlite::Result<Vec<Row>>>().map_err(sql)
    }

    async fn execute(&mut self, text: &str, params: &[Value]) -> Result<u64> {
        let mut stmt = self
            .0
            .prepare_cached(&sqlite_placeholders(text))
            .map_err(sql)?;
        let changed = stmt
            .execute(rusqlite::params_from_iter(params.iter().map(param)))
            .map_err(sql)?;
        Ok(changed as u64)
    }

    fn lock_rows(&self) -> &'static str {
        ""
    }

    fn json_param(&self, placeholder: &str) -> String {
        placeholder.to_owned()
    }
}

/// Runs portable logic to its end on this thread: SQLite calls never wait, so the
/// future is ready at its first poll.
pub(crate) fn run<T>(future: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    futures_lite::future::block_on(future)
}

/// `$body` with `$db` over the writer's connection (or a reader's, for `read`).
macro_rules! on {
    ($store:expr, write, |$db:ident| $body:expr) => {
        $store
            .write(move |conn| {
                $crate::store::sqlite::db::run(async {
                    let $db = &mut $crate::store::sqlite::db::SqliteDb(conn);
                    $body.await
                })
            })
            .await
    };
    ($store:expr, read, |$db:ident| $body:expr) => {
        $store
            .read(move |conn| {
                $crate::store::sqlite::db::run(async {
                    let $db = &mut $crate::store::sqlite::db::SqliteDb(conn);
                    $body.await
                })
            })
            .await
    };
}
pub(super) use on;
