//! The SQLite schema, versioned: migrations applied in order at open, and a refusal to
//! open a store a newer build migrated.

use rusqlite::{params, Connection};

use super::rows::sql;
use crate::clock::now_ms;
use crate::store::schema::{check_applied, Migration};
use crate::store::{Result, StoreError};

pub(super) const MIGRATIONS: &[Migration] = &[
    (
        1,
        "init",
        include_str!("../../../migrations/sqlite/0001_init.sql"),
    ),
    (
        2,
        "revenue",
        include_str!("../../../migrations/sqlite/0002_revenue.sql"),
    ),
    (
        3,
        "legacy_settlements",
        include_str!("../../../migrations/sqlite/0003_legacy_settlements.sql"),
    ),
    (
        4,
        "pile_ciphers",
        include_str!("../../../migrations/sqlite/0004_pile_ciphers.sql"),
    ),
    (
        5,
        "monitoring",
        include_str!("../../../migrations/sqlite/0005_monitoring.sql"),
    ),
    (
        6,
        "fleet_history",
        include_str!("../../../migrations/sqlite/0006_fleet_history.sql"),
    ),
];

/// Applies the missing migrations in one `BEGIN IMMEDIATE` transaction (which also keeps
/// two processes opening the same file from migrating at once).
pub(super) fn migrate(conn: &mut Connection) -> Result<()> {
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
    check_applied(&applied, MIGRATIONS)?;
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
