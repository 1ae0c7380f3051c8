//! A small portable layer over both backends, so that logic that spans several tables in
//! one transaction (the revenue side: starts, settlements, the ledger) is written once.
//!
//! SQL is written with `$1`-style parameters and the subset both databases share
//! (`RETURNING`, `CAST(... AS BIGINT)` around sums, `COALESCE`); integers are `BIGINT` on
//! PostgreSQL. Each backend runs the logic inside its own transaction: SQLite on its
//! writer thread (where the futures never wait), PostgreSQL on a pooled connection.

use super::{Result, StoreError};

/// A parameter or a column value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Int(i64),
    Real(f64),
    Text(String),
    /// A typed NULL (PostgreSQL wants to know which).
    Null(Kind),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Int,
    Real,
    Text,
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_owned())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}

impl From<Option<i64>> for Value {
    fn from(v: Option<i64>) -> Self {
        v.map_or(Value::Null(Kind::Int), Value::Int)
    }
}

impl From<Option<f64>> for Value {
    fn from(v: Option<f64>) -> Self {
        v.map_or(Value::Null(Kind::Real), Value::Real)
    }
}

impl From<Option<String>> for Value {
    fn from(v: Option<String>) -> Self {
        v.map_or(Value::Null(Kind::Text), Value::Text)
    }
}

impl From<Option<&str>> for Value {
    fn from(v: Option<&str>) -> Self {
        v.map_or(Value::Null(Kind::Text), |s| Value::Text(s.to_owned()))
    }
}

/// One result row.
#[derive(Debug, Clone, PartialEq)]
pub struct Row(pub Vec<Value>);

fn corrupt(what: &str, i: usize, v: Option<&Value>) -> StoreError {
    StoreError::Corrupt(format!("column {i} ({what}): unexpected {v:?}"))
}

impl Row {
    pub fn opt_int(&self, i: usize) -> Result<Option<i64>> {
        match self.0.get(i) {
            Some(Value::Int(v)) => Ok(Some(*v)),
            Some(Value::Null(_)) => Ok(None),
            v => Err(corrupt("integer", i, v)),
        }
    }

    pub fn int(&self, i: usize) -> Result<i64> {
        self.opt_int(i)?.ok_or_else(|| corrupt("integer", i, None))
    }

    pub fn opt_real(&self, i: usize) -> Result<Option<f64>> {
        match self.0.get(i) {
            Some(Value::Real(v)) => Ok(Some(*v)),
            Some(Value::Int(v)) => Ok(Some(*v as f64)),
            Some(Value::Null(_)) => Ok(None),
            v => Err(corrupt("number", i, v)),
        }
    }

    pub fn opt_text(&self, i: usize) -> Result<Option<String>> {
        match self.0.get(i) {
            Some(Value::Text(v)) => Ok(Some(v.clone())),
            Some(Value::Null(_)) => Ok(None),
            v => Err(corrupt("text", i, v)),
        }
    }

    pub fn text(&self, i: usize) -> Result<String> {
        self.opt_text(i)?.ok_or_else(|| corrupt("text", i, None))
    }
}

/// A transaction on either backend.
pub(crate) trait Db {
    async fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>>;
    async fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64>;
    /// ` FOR UPDATE` where rows can be locked (PostgreSQL); SQLite's single writer
    /// serialises writes anyway.
    fn lock_rows(&self) -> &'static str;
    /// A text parameter stored into a JSON column.
    fn json_param(&self, placeholder: &str) -> String;

    async fn query_one(&mut self, sql: &str, params: &[Value]) -> Result<Option<Row>> {
        Ok(self.query(sql, params).await?.into_iter().next())
    }
}

/// `$1` -> `?1`: SQLite's numbered parameters.
pub fn sqlite_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('?');
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_renumbered_for_sqlite() {
        assert_eq!(
            sqlite_placeholders("SELECT a FROM t WHERE b = $1 AND c = $12 AND d = '$x'"),
            "SELECT a FROM t WHERE b = ?1 AND c = ?12 AND d = '$x'"
        );
    }

    #[test]
    fn rows_read_their_types() {
        let row = Row(vec![
            Value::Int(5),
            Value::Null(Kind::Text),
            Value::Text("x".into()),
        ]);
        assert_eq!(row.int(0).ok(), Some(5));
        assert_eq!(row.opt_text(1).ok(), Some(None));
        assert_eq!(row.text(2).ok().as_deref(), Some("x"));
        assert!(row.int(2).is_err());
        assert!(row.text(1).is_err());
        assert!(row.int(9).is_err());
    }
}
