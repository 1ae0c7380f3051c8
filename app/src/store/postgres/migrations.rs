//! The PostgreSQL schema, versioned: migrations applied in order, one instance at a time
//! (advisory lock), and a refusal to use a database a newer build migrated.

use deadpool_postgres::GenericClient;

use super::rows::{describe, get, pg};
use crate::clock::now_ms;
use crate::store::schema::{check_applied, Migration};
use crate::store::{Result, StoreError};

pub(super) const MIGRATIONS: &[Migration] = &[
    (
        1,
        "init",
        include_str!("../../../migrations/postgres/0001_init.sql"),
    ),
    (
        2,
        "revenue",
        include_str!("../../../migrations/postgres/0002_revenue.sql"),
    ),
    (
        3,
        "legacy_settlements",
        include_str!("../../../migrations/postgres/0003_legacy_settlements.sql"),
    ),
    (
        4,
        "pile_ciphers",
        include_str!("../../../migrations/postgres/0004_pile_ciphers.sql"),
    ),
    (
        5,
        "monitoring",
        include_str!("../../../migrations/postgres/0005_monitoring.sql"),
    ),
    (
        6,
        "fleet_history",
        include_str!("../../../migrations/postgres/0006_fleet_history.sql"),
    ),
];

/// Key of the advisory lock that serialises migrations between app instances.
pub(super) const MIGRATION_LOCK: i64 = 0x5059_4c4f_4e5f_4d47; // "PYLON_MG"

/// Applies the missing migrations in one transaction, holding an advisory lock so that
/// instances starting together migrate one after the other.
pub(super) async fn migrate(client: &mut deadpool_postgres::Client) -> Result<()> {
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
    check_applied(&applied, MIGRATIONS)?;
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
