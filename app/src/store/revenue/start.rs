//! Starting a charge: authorise and hold in one transaction, so that two starts against a
//! wallet that can pay for one cannot both pass; and giving a hold back when a start fails.

use super::{
    apply_postings, pile_station, wallet, Credential, EntryMeta, RaisedHold, StartOutcome,
    StartRequest,
};
use crate::revenue::authorize::{authorize, AccountFacts, Identified, StartFacts};
use crate::revenue::ledger::{self};
use crate::store::sql::Db;
use crate::store::Result;
use pylon_proto::api::revenue::AccountState;

const OPEN: &str = "('starting', 'charging', 'stopping')";

/// A start asked again within this long, by the same driver for the same gun, is the same
/// start.
const REPEAT_WINDOW_MS: i64 = 30_000;

/// The account behind a credential, and what the card itself says (its password check
/// and the logical number to show).
struct Found {
    account: i64,
    wrong_password: bool,
    logical_sealed: Option<String>,
}

async fn find<D: Db>(db: &mut D, credential: &Credential) -> Result<Option<Found>> {
    Ok(match credential {
        Credential::Card {
            index,
            password_index,
        } => db
            .query_one(
                "SELECT account_id, password_index, logical_sealed FROM cards WHERE card_index = $1",
                &[index.as_str().into()],
            )
            .await?
            .map(|r| -> Result<Found> {
                let stored = r.opt_text(1)?;
                Ok(Found {
                    account: r.int(0)?,
                    // A card with a password needs the same one; one without needs none.
                    wrong_password: stored.is_some() && stored != *password_index,
                    logical_sealed: Some(r.text(2)?),
                })
            })
            .transpose()?,
        Credential::Vin { index } => db
            .query_one("SELECT account_id FROM vins WHERE vin_index = $1", &[index.as_str().into()])
            .await?
            .map(|r| -> Result<Found> {
                Ok(Found {
                    account: r.int(0)?,
                    wrong_password: false,
                    logical_sealed: None,
                })
            })
            .transpose()?,
        Credential::Account(id) => Some(Found {
            account: *id,
            wrong_password: false,
            logical_sealed: None,
        }),
    })
}

fn credential_key(credential: &Credential) -> String {
    match credential {
        Credential::Card { index, .. } | Credential::Vin { index } => index.clone(),
        Credential::Account(id) => format!("account:{id}"),
    }
}

pub(crate) async fn start_charge<D: Db>(db: &mut D, req: &StartRequest) -> Result<StartOutcome> {
    // Locking the pile's row serialises starts on its guns, so two cannot both find the
    // gun free.
    let lock = db.lock_rows();
    let pile = db
        .query_one(
            &format!("SELECT enabled FROM piles WHERE pile_no = $1{lock}"),
            &[req.pile_no.as_str().into()],
        )
        .await?;
    let pile_enabled = match pile {
        Some(row) => row.int(0)? != 0,
        None => false,
    };
    let gun_busy = db
        .query_one(
            &format!("SELECT trade_no FROM orders WHERE pile_no = $1 AND gun_no = $2 AND state IN {OPEN}"),
            &[req.pile_no.as_str().into(), req.gun_no.as_str().into()],
        )
        .await?
        .is_some();
    let key = credential_key(&req.credential);
    let found = find(db, &req.credential).await?;
    // A repeated request: the pile resends 0x31 when our 0x32 is lost.
    let again = db
        .query_one(
            &format!(
                "SELECT trade_no, balance FROM orders WHERE pile_no = $1 AND gun_no = $2 \
                 AND credential = $3 AND created_at >= $4 AND state IN {OPEN}"
            ),
            &[
                req.pile_no.as_str().into(),
                req.gun_no.as_str().into(),
                key.as_str().into(),
                (req.at - REPEAT_WINDOW_MS).into(),
            ],
        )
        .await?;
    if let Some(row) = again {
        return Ok(StartOutcome::Again {
            trade_no: row.text(0)?,
            hold: row.int(1)?,
            logical_sealed: found.and_then(|f| f.logical_sealed),
        });
    }
    let mut facts = StartFacts {
        pile_enabled,
        gun_busy,
        account: None,
    };
    if let Some(found) = &found {
        if let Some((sums, state)) = wallet(db, found.account).await? {
            let station = pile_station(db, &req.pile_no).await?;
            let allowed: Vec<i64> = db
                .query(
                    "SELECT station_id FROM account_stations WHERE account_id = $1",
                    &[found.account.into()],
                )
                .await?
                .iter()
                .map(|r| r.int(0))
                .collect::<Result<_>>()?;
            let unsettled = db
                .query_one(
                    &format!(
                        "SELECT trade_no FROM orders WHERE credential = $1 AND state IN {OPEN}"
                    ),
                    &[key.as_str().into()],
                )
                .await?
                .is_some();
            facts.account = Some(AccountFacts {
                id: found.account,
                frozen: state != AccountState::Active,
                balance: sums.balance,
                unsettled,
                allowed_here: allowed.is_empty() || station.is_some_and(|s| allowed.contains(&s)),
                wrong_password: found.wrong_password,
            });
        }
    }
    let how = match req.credential {
        Credential::Card { .. } => Identified::Card,
        Credential::Vin { .. } => Identified::Vin,
        Credential::Account(_) => Identified::Account,
    };
    let (account, hold) = match authorize(how, &facts, &req.policy) {
        Ok(granted) => granted,
        Err(refusal) => return Ok(StartOutcome::Refused(refusal)),
    };
    db.execute(
        "INSERT INTO orders (trade_no, pile_no, gun_no, state, origin, balance, created_at, \
         updated_at, failure, account_id, credential) VALUES ($1, $2, $3, $4, $5, $6, $7, $7, NULL, $8, $9)",
        &[
            req.trade_no.as_str().into(),
            req.pile_no.as_str().into(),
            req.gun_no.as_str().into(),
            req.state.as_str().into(),
            req.origin.as_str().into(),
            hold.into(),
            req.at.into(),
            account.into(),
            key.into(),
        ],
    )
    .await?;
    db.execute(
        "INSERT INTO holds (trade_no, account_id, amount, state, created_at) VALUES ($1, $2, $3, 'open', $4)",
        &[req.trade_no.as_str().into(), account.into(), hold.into(), req.at.into()],
    )
    .await?;
    let meta = EntryMeta {
        actor: format!("pile:{}", req.pile_no),
        reason: "charge started".into(),
        trade_no: Some(req.trade_no.clone()),
        at: req.at,
    };
    apply_postings(db, &ledger::hold(account, hold), &meta).await?;
    Ok(StartOutcome::Started {
        account,
        hold,
        logical_sealed: found.and_then(|f| f.logical_sealed),
    })
}

/// Gives back the hold of a charge that did not happen (refused or unconfirmed start);
/// nothing if it has none open.
pub(crate) async fn release_hold<D: Db>(
    db: &mut D,
    trade_no: &str,
    reason: &str,
    at: i64,
) -> Result<()> {
    let lock = db.lock_rows();
    let Some(row) = db
        .query_one(
            &format!(
                "SELECT account_id, amount FROM holds WHERE trade_no = $1 AND state = 'open'{lock}"
            ),
            &[trade_no.into()],
        )
        .await?
    else {
        return Ok(());
    };
    let (account, amount) = (row.int(0)?, row.int(1)?);
    db.execute(
        "UPDATE holds SET state = 'released', closed_at = $1 WHERE trade_no = $2",
        &[at.into(), trade_no.into()],
    )
    .await?;
    let meta = EntryMeta {
        actor: "platform".into(),
        reason: reason.to_owned(),
        trade_no: Some(trade_no.to_owned()),
        at,
    };
    apply_postings(db, &ledger::release(account, amount), &meta).await
}

/// After money came into an account: each of its charges under way may spend more, up to
/// `max_hold`, from what is spendable now. Returns the charges whose hold grew.
pub(crate) async fn raise_holds<D: Db>(
    db: &mut D,
    account: i64,
    max_hold: i64,
    at: i64,
) -> Result<Vec<RaisedHold>> {
    let Some((sums, _)) = wallet(db, account).await? else {
        return Ok(Vec::new());
    };
    let mut spendable = sums.balance;
    let open = db
        .query(
            &format!(
                "SELECT o.trade_no, o.pile_no, o.gun_no, h.amount, c.card_sealed FROM orders o \
                 JOIN holds h ON h.trade_no = o.trade_no AND h.state = 'open' \
                 LEFT JOIN cards c ON c.card_index = o.credential \
                 WHERE o.account_id = $1 AND o.state IN {OPEN} ORDER BY o.created_at"
            ),
            &[account.into()],
        )
        .await?;
    let mut raised = Vec::new();
    for r in open {
        let (trade_no, hold) = (r.text(0)?, r.int(3)?);
        let extra = spendable.min(max_hold - hold);
        if extra <= 0 {
            continue;
        }
        spendable -= extra;
        db.execute(
            "UPDATE holds SET amount = amount + $1 WHERE trade_no = $2",
            &[extra.into(), trade_no.as_str().into()],
        )
        .await?;
        db.execute(
            "UPDATE orders SET balance = balance + $1, updated_at = $2 WHERE trade_no = $3",
            &[extra.into(), at.into(), trade_no.as_str().into()],
        )
        .await?;
        let meta = EntryMeta {
            actor: "platform".into(),
            reason: "wallet topped up during the charge".into(),
            trade_no: Some(trade_no.clone()),
            at,
        };
        apply_postings(db, &ledger::hold(account, extra), &meta).await?;
        raised.push(RaisedHold {
            trade_no,
            pile_no: r.text(1)?,
            gun_no: r.text(2)?,
            hold: hold + extra,
            card_sealed: r.opt_text(4)?,
        });
    }
    Ok(raised)
}
