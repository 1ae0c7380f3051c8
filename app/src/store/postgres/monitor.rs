//! The monitoring side on PostgreSQL: the shared logic of `store::monitor`, each call in
//! its own transaction on a pooled connection.

use super::PostgresStore;

/// `$body` with `$db` a [`super::db::PgDb`] in a new transaction (reads and writes alike),
/// run again while the store is unavailable (a failover) before its commit.
macro_rules! on {
    ($store:expr, $mode:ident, |$db:ident| $body:expr) => {{
        super::failover::retrying!($store, {
            let mut client = $store.client().await?;
            let tx = client.transaction().await.map_err(super::rows::pg)?;
            let mut pg = super::db::PgDb { tx };
            let out = {
                let $db = &mut pg;
                $body.await
            };
            if out.is_ok() {
                pg.tx
                    .commit()
                    .await
                    .map_err(super::failover::commit_unknown)?;
            }
            out
        })
    }};
}

crate::store::monitor::monitor_store!(PostgresStore, on);
