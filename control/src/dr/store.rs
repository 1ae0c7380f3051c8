//! This site's PostgreSQL server in streaming replication: its state (a primary and the
//! standbys streaming from it, or a standby and how far behind it is), and promotion of a
//! standby (`pg_promote`).

use std::time::Duration;

use anyhow::Context;
use pylon_proto::api::dr::{ReceiverLag, StandbyLag, StoreReplication};

use super::DrConfig;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a promotion may take before it is reported as failed (PostgreSQL goes on).
const PROMOTE_WAIT_SECS: i32 = 20;

async fn connect(config: &DrConfig) -> anyhow::Result<tokio_postgres::Client> {
    let url = config.store_url.as_deref().context("no [dr] store_url")?;
    let mut pg: tokio_postgres::Config = url.parse().context("[dr] store_url")?;
    pg.connect_timeout(CONNECT_TIMEOUT);
    pg.application_name("pylon-control-dr");
    if let Some(file) = &config.store_password_file {
        let password = std::fs::read_to_string(file)
            .with_context(|| format!("reading [dr] store_password_file {}", file.display()))?;
        pg.password(password.trim_end_matches(['\r', '\n']));
    }
    let client = match &config.store_ca {
        Some(ca) => {
            pg.ssl_mode(tokio_postgres::config::SslMode::Require);
            let (client, connection) = pg
                .connect(pylon_service::postgres::tls_connector(ca)?)
                .await?;
            tokio::spawn(connection);
            client
        }
        None => {
            let (client, connection) = pg.connect(tokio_postgres::NoTls).await?;
            tokio::spawn(connection);
            client
        }
    };
    Ok(client)
}

/// The store's replication state; what could not be read is in `error`.
pub(crate) async fn status(config: &DrConfig) -> StoreReplication {
    match read_status(config).await {
        Ok(status) => status,
        Err(e) => StoreReplication {
            in_recovery: false,
            standbys: Vec::new(),
            receiver: None,
            error: Some(format!("{e:#}")),
        },
    }
}

async fn read_status(config: &DrConfig) -> anyhow::Result<StoreReplication> {
    let client = connect(config).await?;
    let in_recovery: bool = client
        .query_one("SELECT pg_is_in_recovery()", &[])
        .await?
        .try_get(0)?;
    let mut status = StoreReplication {
        in_recovery,
        standbys: Vec::new(),
        receiver: None,
        error: None,
    };
    if in_recovery {
        status.receiver = Some(receiver(&client).await?);
    } else {
        status.standbys = standbys(&client).await?;
    }
    Ok(status)
}

async fn standbys(client: &tokio_postgres::Client) -> anyhow::Result<Vec<StandbyLag>> {
    let rows = client
        .query(
            "SELECT application_name, COALESCE(host(client_addr), 'local'), state, sync_state,
                    COALESCE(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn), 0)::bigint,
                    COALESCE(pg_wal_lsn_diff(pg_current_wal_lsn(), flush_lsn), 0)::bigint,
                    EXTRACT(EPOCH FROM replay_lag)::float8
               FROM pg_stat_replication ORDER BY application_name",
            &[],
        )
        .await?;
    rows.iter()
        .map(|row| {
            Ok(StandbyLag {
                name: row.try_get(0)?,
                client: row.try_get(1)?,
                // Hidden (NULL) from a role without pg_read_all_stats (pg_monitor).
                state: row
                    .try_get::<_, Option<String>>(2)?
                    .unwrap_or_else(|| "hidden (needs pg_monitor)".into()),
                sync_state: row
                    .try_get::<_, Option<String>>(3)?
                    .unwrap_or_else(|| "?".into()),
                replay_behind_bytes: row.try_get(4)?,
                flush_behind_bytes: row.try_get(5)?,
                replay_lag_secs: row.try_get(6)?,
            })
        })
        .collect()
}

async fn receiver(client: &tokio_postgres::Client) -> anyhow::Result<ReceiverLag> {
    let row = client
        .query_one(
            "SELECT pg_last_wal_receive_lsn()::text, pg_last_wal_replay_lsn()::text,
                    (EXTRACT(EPOCH FROM pg_last_xact_replay_timestamp()) * 1000)::bigint",
            &[],
        )
        .await?;
    let mut lag = ReceiverLag {
        status: None,
        sender: None,
        received_lsn: row.try_get(0)?,
        replayed_lsn: row.try_get(1)?,
        primary_end_lsn: None,
        behind_bytes: 0,
        last_message_secs: None,
        last_replayed_commit_ms: row.try_get(2)?,
    };
    // One row while a WAL receiver runs; none while the primary cannot be reached.
    if let Some(row) = client
        .query_opt(
            "SELECT status, 'host=' || COALESCE(sender_host, '?') || ' port=' || COALESCE(sender_port::text, '?'),
                    latest_end_lsn::text,
                    COALESCE(pg_wal_lsn_diff(latest_end_lsn, flushed_lsn), 0)::bigint,
                    EXTRACT(EPOCH FROM (now() - last_msg_receipt_time))::float8
               FROM pg_stat_wal_receiver",
            &[],
        )
        .await?
    {
        lag.status = row.try_get(0)?;
        lag.sender = row.try_get(1)?;
        lag.primary_end_lsn = row.try_get(2)?;
        lag.behind_bytes = row.try_get::<_, i64>(3)?.max(0);
        lag.last_message_secs = row.try_get(4)?;
    }
    Ok(lag)
}

/// Promotes the store if it is a standby, waiting until it takes writes. Returns whether
/// it was promoted, and its replay position at the time.
pub(crate) async fn promote(config: &DrConfig) -> anyhow::Result<(bool, Option<String>)> {
    let client = connect(config)
        .await
        .context("connecting to this site's store")?;
    let row = client
        .query_one(
            "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text",
            &[],
        )
        .await?;
    let in_recovery: bool = row.try_get(0)?;
    let lsn: Option<String> = row.try_get(1)?;
    if !in_recovery {
        return Ok((false, lsn));
    }
    let promoted: bool = client
        .query_one("SELECT pg_promote(true, $1)", &[&PROMOTE_WAIT_SECS])
        .await
        .context("pg_promote")?
        .try_get(0)?;
    anyhow::ensure!(
        promoted,
        "the store did not finish its promotion within {PROMOTE_WAIT_SECS} s (it may still; \
         see its log)"
    );
    Ok((true, lsn))
}
