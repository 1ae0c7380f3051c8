//! Tariffs: named, revised (a revision is never changed), assigned to stations from a
//! date on.

use pylon_proto::api::revenue::{Rates, Tariff as TariffView};

use super::{pile_station, tariff_in_force, PricedBy};
use crate::revenue::tariff::Tariff;
use crate::store::sql::{Db, Row};
use crate::store::{Result, StoreError};

fn slots_text(tariff: &Tariff) -> String {
    tariff
        .slot_codes()
        .iter()
        .map(|c| char::from(b'0' + c))
        .collect()
}

/// Reads `rates, loss_ratio, slots` from columns `at`, `at + 1`, `at + 2`.
fn tariff_at(row: &Row, at: usize) -> Result<Tariff> {
    let rates: Rates = serde_json::from_str(&row.text(at)?)
        .map_err(|e| StoreError::Corrupt(format!("tariff rates: {e}")))?;
    let loss = u8::try_from(row.int(at + 1)?).unwrap_or(0);
    let codes: Vec<u8> = row
        .text(at + 2)?
        .bytes()
        .map(|b| b.wrapping_sub(b'0'))
        .collect();
    Tariff::from_codes(rates, loss, &codes)
        .ok_or_else(|| StoreError::Corrupt("tariff slots are not 48 periods".into()))
}

fn rates_text(tariff: &Tariff) -> Result<String> {
    serde_json::to_string(&tariff.rates).map_err(|e| StoreError::Backend(e.to_string()))
}

pub(crate) async fn create_tariff<D: Db>(
    db: &mut D,
    name: &str,
    tariff: &Tariff,
    at: i64,
) -> Result<TariffView> {
    let taken = db
        .query_one("SELECT id FROM tariffs WHERE name = $1", &[name.into()])
        .await?
        .is_some();
    if taken {
        return Err(StoreError::Conflict(format!("a tariff is named {name:?}")));
    }
    let id = db
        .query_one(
            "INSERT INTO tariffs (name, created_at) VALUES ($1, $2) RETURNING id",
            &[name.into(), at.into()],
        )
        .await?
        .map(|r| r.int(0))
        .transpose()?
        .ok_or_else(|| StoreError::Backend("no tariff id".into()))?;
    add_revision(db, id, 1, tariff, at).await?;
    tariff_view(db, id)
        .await?
        .ok_or_else(|| StoreError::Backend("tariff vanished".into()))
}

async fn add_revision<D: Db>(
    db: &mut D,
    id: i64,
    revision: i64,
    tariff: &Tariff,
    at: i64,
) -> Result<()> {
    db.execute(
        "INSERT INTO tariff_revisions (tariff_id, revision, rates, loss_ratio, slots, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
        &[
            id.into(),
            revision.into(),
            rates_text(tariff)?.into(),
            i64::from(tariff.loss_ratio).into(),
            slots_text(tariff).into(),
            at.into(),
        ],
    )
    .await?;
    Ok(())
}

/// A new revision (and possibly a new name); `None` if there is no such tariff.
pub(crate) async fn revise_tariff<D: Db>(
    db: &mut D,
    id: i64,
    name: &str,
    tariff: &Tariff,
    at: i64,
) -> Result<Option<TariffView>> {
    let lock = db.lock_rows();
    let Some(row) = db
        .query_one(
            &format!("SELECT name FROM tariffs WHERE id = $1{lock}"),
            &[id.into()],
        )
        .await?
    else {
        return Ok(None);
    };
    if row.text(0)? != name {
        let taken = db
            .query_one("SELECT id FROM tariffs WHERE name = $1", &[name.into()])
            .await?
            .is_some();
        if taken {
            return Err(StoreError::Conflict(format!("a tariff is named {name:?}")));
        }
        db.execute(
            "UPDATE tariffs SET name = $1 WHERE id = $2",
            &[name.into(), id.into()],
        )
        .await?;
    }
    let last = db
        .query_one(
            "SELECT CAST(COALESCE(MAX(revision), 0) AS BIGINT) FROM tariff_revisions WHERE tariff_id = $1",
            &[id.into()],
        )
        .await?
        .map(|r| r.int(0))
        .transpose()?
        .unwrap_or(0);
    add_revision(db, id, last + 1, tariff, at).await?;
    tariff_view(db, id).await
}

/// A tariff at its latest revision.
pub(crate) async fn tariff_view<D: Db>(db: &mut D, id: i64) -> Result<Option<TariffView>> {
    let Some(row) = db
        .query_one(
            "SELECT t.id, t.name, r.revision, r.rates, r.loss_ratio, r.slots, r.created_at \
             FROM tariffs t JOIN tariff_revisions r ON r.tariff_id = t.id \
             WHERE t.id = $1 ORDER BY r.revision DESC LIMIT 1",
            &[id.into()],
        )
        .await?
    else {
        return Ok(None);
    };
    let tariff = tariff_at(&row, 3)?;
    let spec = tariff.spec();
    Ok(Some(TariffView {
        id: row.int(0)?,
        name: row.text(1)?,
        revision: u32::try_from(row.int(2)?).unwrap_or(0),
        rates: spec.rates,
        loss_ratio: spec.loss_ratio,
        schedule: spec.schedule,
        created_at: row.int(6)?,
    }))
}

pub(crate) async fn tariffs<D: Db>(db: &mut D) -> Result<Vec<TariffView>> {
    let ids: Vec<i64> = db
        .query("SELECT id FROM tariffs ORDER BY id", &[])
        .await?
        .iter()
        .map(|r| r.int(0))
        .collect::<Result<_>>()?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        out.extend(tariff_view(db, id).await?);
    }
    Ok(out)
}

/// From `valid_from` on, the station's charges are priced with the tariff. False if the
/// station or the tariff does not exist.
pub(crate) async fn assign_tariff<D: Db>(
    db: &mut D,
    station: i64,
    tariff: i64,
    valid_from: i64,
) -> Result<bool> {
    let station_exists = db
        .query_one("SELECT id FROM stations WHERE id = $1", &[station.into()])
        .await?
        .is_some();
    let tariff_exists = db
        .query_one("SELECT id FROM tariffs WHERE id = $1", &[tariff.into()])
        .await?
        .is_some();
    if !station_exists || !tariff_exists {
        return Ok(false);
    }
    db.execute(
        "DELETE FROM station_tariffs WHERE station_id = $1 AND valid_from = $2",
        &[station.into(), valid_from.into()],
    )
    .await?;
    db.execute(
        "INSERT INTO station_tariffs (station_id, valid_from, tariff_id) VALUES ($1, $2, $3)",
        &[station.into(), valid_from.into(), tariff.into()],
    )
    .await?;
    Ok(true)
}

/// The tariff revision that prices a charge starting at `at` on `pile_no`: the tariff
/// assigned to its station then, at the revision made last before then.
pub(crate) async fn priced_by<D: Db>(
    db: &mut D,
    pile_no: &str,
    at: i64,
) -> Result<Option<PricedBy>> {
    let Some(station_id) = pile_station(db, pile_no).await? else {
        return Ok(None);
    };
    let Some(tariff_id) = tariff_in_force(db, station_id, at).await? else {
        return Ok(None);
    };
    // A revision made after the start does not apply to it; a tariff assigned before
    // its first revision existed uses that first revision.
    let row = match db
        .query_one(
            "SELECT revision, rates, loss_ratio, slots FROM tariff_revisions \
             WHERE tariff_id = $1 AND created_at <= $2 ORDER BY revision DESC LIMIT 1",
            &[tariff_id.into(), at.into()],
        )
        .await?
    {
        Some(row) => row,
        None => match db
            .query_one(
                "SELECT revision, rates, loss_ratio, slots FROM tariff_revisions \
                 WHERE tariff_id = $1 ORDER BY revision LIMIT 1",
                &[tariff_id.into()],
            )
            .await?
        {
            Some(row) => row,
            None => return Ok(None),
        },
    };
    Ok(Some(PricedBy {
        station_id,
        tariff_id,
        revision: u32::try_from(row.int(0)?).unwrap_or(0),
        tariff: tariff_at(&row, 1)?,
    }))
}
