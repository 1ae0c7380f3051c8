//! Stations and which piles belong to them.

use pylon_proto::api::revenue::{Station, StationInput};

use crate::store::sql::{Db, Row, Value};
use crate::store::Result;

const COLUMNS: &str = "id, name, address, latitude, longitude, utc_offset_minutes, power_cap_kw, \
                       created_at, updated_at";

fn station(row: &Row) -> Result<Station> {
    Ok(Station {
        id: row.int(0)?,
        name: row.text(1)?,
        address: row.text(2)?,
        latitude: row.opt_real(3)?,
        longitude: row.opt_real(4)?,
        utc_offset_minutes: i32::try_from(row.int(5)?).unwrap_or(480),
        power_cap_kw: row.opt_int(6)?.and_then(|v| u32::try_from(v).ok()),
        piles: Vec::new(),
        tariff_id: None,
        created_at: row.int(7)?,
        updated_at: row.int(8)?,
    })
}

fn values(input: &StationInput) -> Vec<Value> {
    vec![
        input.name.as_str().into(),
        input.address.as_str().into(),
        input.latitude.into(),
        input.longitude.into(),
        i64::from(input.utc_offset_minutes).into(),
        input.power_cap_kw.map(i64::from).into(),
    ]
}

pub(crate) async fn create_station<D: Db>(
    db: &mut D,
    input: &StationInput,
    at: i64,
) -> Result<Station> {
    let mut params = values(input);
    params.push(at.into());
    let row = db
        .query_one(
            "INSERT INTO stations (name, address, latitude, longitude, utc_offset_minutes, \
             power_cap_kw, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7) \
             RETURNING id",
            &params,
        )
        .await?;
    let id = row.map(|r| r.int(0)).transpose()?.unwrap_or_default();
    Ok(station_by_id(db, id, at).await?.unwrap_or_else(|| Station {
        id,
        name: input.name.clone(),
        address: input.address.clone(),
        latitude: input.latitude,
        longitude: input.longitude,
        utc_offset_minutes: input.utc_offset_minutes,
        power_cap_kw: input.power_cap_kw,
        piles: Vec::new(),
        tariff_id: None,
        created_at: at,
        updated_at: at,
    }))
}

pub(crate) async fn update_station<D: Db>(
    db: &mut D,
    id: i64,
    input: &StationInput,
    at: i64,
) -> Result<Option<Station>> {
    let mut params = values(input);
    params.push(at.into());
    params.push(id.into());
    let changed = db
        .execute(
            "UPDATE stations SET name = $1, address = $2, latitude = $3, longitude = $4, \
             utc_offset_minutes = $5, power_cap_kw = $6, updated_at = $7 WHERE id = $8",
            &params,
        )
        .await?;
    if changed == 0 {
        return Ok(None);
    }
    station_by_id(db, id, at).await
}

/// A station with its piles and the tariff in force at `now`.
pub(crate) async fn station_by_id<D: Db>(db: &mut D, id: i64, now: i64) -> Result<Option<Station>> {
    let Some(row) = db
        .query_one(
            &format!("SELECT {COLUMNS} FROM stations WHERE id = $1"),
            &[id.into()],
        )
        .await?
    else {
        return Ok(None);
    };
    let mut s = station(&row)?;
    s.piles = db
        .query(
            "SELECT pile_no FROM piles WHERE station_id = $1 ORDER BY pile_no",
            &[id.into()],
        )
        .await?
        .iter()
        .map(|r| r.text(0))
        .collect::<Result<_>>()?;
    s.tariff_id = tariff_in_force(db, id, now).await?;
    Ok(Some(s))
}

/// Stations with an id above `after`, by id, `limit` at most.
pub(crate) async fn stations<D: Db>(
    db: &mut D,
    now: i64,
    after: i64,
    limit: u32,
) -> Result<Vec<Station>> {
    let ids: Vec<i64> = db
        .query(
            "SELECT id FROM stations WHERE id > $1 ORDER BY id LIMIT $2",
            &[after.into(), i64::from(limit).into()],
        )
        .await?
        .iter()
        .map(|r| r.int(0))
        .collect::<Result<_>>()?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(s) = station_by_id(db, id, now).await? {
            out.push(s);
        }
    }
    Ok(out)
}

/// The tariff assigned to a station at `at`.
pub(crate) async fn tariff_in_force<D: Db>(
    db: &mut D,
    station: i64,
    at: i64,
) -> Result<Option<i64>> {
    db.query_one(
        "SELECT tariff_id FROM station_tariffs WHERE station_id = $1 AND valid_from <= $2 \
         ORDER BY valid_from DESC LIMIT 1",
        &[station.into(), at.into()],
    )
    .await?
    .map(|r| r.int(0))
    .transpose()
}

/// Puts a pile in a station; false if the pile or the station does not exist.
pub(crate) async fn set_pile_station<D: Db>(
    db: &mut D,
    pile_no: &str,
    station: i64,
) -> Result<bool> {
    let exists = db
        .query_one("SELECT id FROM stations WHERE id = $1", &[station.into()])
        .await?
        .is_some();
    if !exists {
        return Ok(false);
    }
    let changed = db
        .execute(
            "UPDATE piles SET station_id = $1 WHERE pile_no = $2",
            &[station.into(), pile_no.into()],
        )
        .await?;
    Ok(changed > 0)
}

/// The station of a pile, if it has one.
pub(crate) async fn pile_station<D: Db>(db: &mut D, pile_no: &str) -> Result<Option<i64>> {
    Ok(db
        .query_one(
            "SELECT station_id FROM piles WHERE pile_no = $1",
            &[pile_no.into()],
        )
        .await?
        .map(|r| r.opt_int(0))
        .transpose()?
        .flatten())
}

/// Stations whose assigned tariff takes effect in `(after, until]`.
pub(crate) async fn tariffs_taking_effect<D: Db>(
    db: &mut D,
    after: i64,
    until: i64,
) -> Result<Vec<i64>> {
    db.query(
        "SELECT DISTINCT station_id FROM station_tariffs WHERE valid_from > $1 AND valid_from <= $2 \
         ORDER BY station_id",
        &[after.into(), until.into()],
    )
    .await?
    .iter()
    .map(|r| r.int(0))
    .collect()
}
