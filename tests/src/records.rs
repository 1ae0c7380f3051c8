//! What a store holds of the records a fleet saw confirmed: every trade number, and
//! whether any record was stored or settled twice.

use std::collections::HashSet;
use std::path::Path;

/// Counts over the transaction records and the ledger.
pub struct StoredRecords {
    pub trades: HashSet<String>,
    /// Record rows (more than `trades` would be a record stored twice).
    pub rows: usize,
    /// Trade numbers with a ledger posting made twice (a record settled twice).
    pub settled_twice: u64,
}

impl StoredRecords {
    /// How many of `confirmed` the store does not hold.
    pub fn missing<'a>(&self, confirmed: &'a [String]) -> Vec<&'a String> {
        confirmed
            .iter()
            .filter(|t| !self.trades.contains(*t))
            .collect()
    }

    /// Records stored or settled more than once.
    pub fn duplicated(&self) -> u64 {
        (self.rows - self.trades.len()) as u64 + self.settled_twice
    }
}

const TRADES: &str = "SELECT trade_no FROM transaction_records";
/// A settlement posts each (kind, from, to) once per trade.
const SETTLED_TWICE: &str = "SELECT count(DISTINCT trade_no) FROM (
    SELECT trade_no FROM ledger WHERE trade_no IS NOT NULL
    GROUP BY trade_no, kind, debit, credit HAVING count(*) > 1) AS twice";

/// The records of the PostgreSQL store at `url`.
pub fn postgres(url: &str) -> StoredRecords {
    crate::platform::runtime().block_on(async {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .expect("connecting to the store");
        tokio::spawn(connection);
        let all: Vec<String> = client
            .query(TRADES, &[])
            .await
            .expect("reading the records")
            .iter()
            .map(|r| r.get(0))
            .collect();
        let twice: i64 = client
            .query_one(SETTLED_TWICE, &[])
            .await
            .expect("reading the ledger")
            .get(0);
        StoredRecords {
            rows: all.len(),
            trades: all.into_iter().collect(),
            settled_twice: twice.max(0) as u64,
        }
    })
}

/// The records of the SQLite store at `db`.
pub fn sqlite(db: &Path) -> StoredRecords {
    let conn = rusqlite::Connection::open(db).expect("opening the store");
    let mut stmt = conn.prepare(TRADES).expect("a query");
    let all: Vec<String> = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .expect("records")
        .map(|r| r.expect("a trade number"))
        .collect();
    let twice: i64 = conn
        .query_row(SETTLED_TWICE, [], |r| r.get(0))
        .expect("reading the ledger");
    StoredRecords {
        rows: all.len(),
        trades: all.into_iter().collect(),
        settled_twice: twice.max(0) as u64,
    }
}
