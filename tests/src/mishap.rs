//! A mistake to undo with point-in-time recovery: the store's tables dropped on a running
//! PostgreSQL, and the WAL that holds the drop handed to the archive.

use std::time::{Duration, Instant};

use crate::platform::runtime;

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connecting to the store");
    tokio::spawn(connection);
    client
}

/// Drops every table of the store in one transaction; returns the moment (RFC 3339, UTC)
/// after every table was locked for the drop and before it committed: everything
/// committed before it is the store to get back, and nothing else touching the tables
/// committed after it.
pub fn drop_tables(url: &str) -> String {
    runtime().block_on(async {
        let mut client = connect(url).await;
        let tx = client.transaction().await.expect("a transaction");
        tx.batch_execute("DROP SCHEMA public CASCADE")
            .await
            .expect("dropping the store's tables");
        let at: String = tx
            .query_one(
                r#"SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"#,
                &[],
            )
            .await
            .expect("the time")
            .get(0);
        tx.commit().await.expect("committing the drop");
        at
    })
}

/// Closes the server's current WAL segment and waits until the archive has it (what
/// `pgbackrest check` does): what was committed so far is then in the archive.
pub fn wait_archived(url: &str) {
    runtime().block_on(async {
        let client = connect(url).await;
        let segment: String = client
            .query_one("SELECT pg_walfile_name(pg_switch_wal())", &[])
            .await
            .expect("a WAL switch")
            .get(0);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let archived: Option<String> = client
                .query_one("SELECT last_archived_wal FROM pg_stat_archiver", &[])
                .await
                .expect("the archiver's state")
                .get(0);
            if archived.is_some_and(|a| a >= segment) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "WAL segment {segment} not archived within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
}
