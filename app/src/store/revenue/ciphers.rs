//! Per-pile body encryption keys, sealed (the vault seals and opens them; the store keeps
//! text it cannot read).

use crate::store::sql::Db;
use crate::store::Result;

/// A pile's sealed cipher settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedCipher {
    pub sealed: String,
    pub updated_at: i64,
}

pub(crate) async fn pile_cipher<D: Db>(db: &mut D, pile_no: &str) -> Result<Option<SealedCipher>> {
    let row = db
        .query_one(
            "SELECT sealed, updated_at FROM pile_ciphers WHERE pile_no = $1",
            &[pile_no.into()],
        )
        .await?;
    row.map(|r| {
        Ok(SealedCipher {
            sealed: r.text(0)?,
            updated_at: r.int(1)?,
        })
    })
    .transpose()
}

/// Sets (or with `None` removes) a pile's cipher; `false` when the pile is not registered.
pub(crate) async fn set_pile_cipher<D: Db>(
    db: &mut D,
    pile_no: &str,
    sealed: Option<&str>,
    at: i64,
) -> Result<bool> {
    let known = db
        .query_one("SELECT 1 FROM piles WHERE pile_no = $1", &[pile_no.into()])
        .await?
        .is_some();
    if !known {
        return Ok(false);
    }
    match sealed {
        Some(sealed) => {
            db.execute(
                "INSERT INTO pile_ciphers (pile_no, sealed, updated_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (pile_no) DO UPDATE SET sealed = excluded.sealed, \
                 updated_at = excluded.updated_at",
                &[pile_no.into(), sealed.into(), at.into()],
            )
            .await?;
        }
        None => {
            db.execute(
                "DELETE FROM pile_ciphers WHERE pile_no = $1",
                &[pile_no.into()],
            )
            .await?;
        }
    }
    Ok(true)
}

/// Every sealed cipher (for re-sealing under a new vault key).
pub(crate) async fn all_pile_ciphers<D: Db>(db: &mut D) -> Result<Vec<(String, String)>> {
    let rows = db
        .query(
            "SELECT pile_no, sealed FROM pile_ciphers ORDER BY pile_no",
            &[],
        )
        .await?;
    rows.iter().map(|r| Ok((r.text(0)?, r.text(1)?))).collect()
}
