//! How `pylonctl accounts` prints accounts, wallets and the ledger for people: money in
//! yuan, cards and VINs masked as the app service sends them.

use std::fmt::Write as _;

use pylon_proto::api::revenue::{Account, AccountState, LedgerEntry};

use super::control::{fields, table};
use crate::units::{format_fen, format_time};

/// The stations an account may charge at: `all`, or their ids.
fn stations(a: &Account) -> String {
    if a.stations.is_empty() {
        return "all".into();
    }
    let ids: Vec<String> = a.stations.iter().map(i64::to_string).collect();
    ids.join(", ")
}

fn yuan(fen: i64) -> String {
    format!("{} yuan", format_fen(fen))
}

/// `accounts list`. `limit`: the query's, to say how to get the next page.
pub fn accounts(list: &[Account], limit: u32) -> String {
    if list.is_empty() {
        return "No accounts: add one with `pylonctl accounts add --name NAME`.\n".into();
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|a| {
            vec![
                a.id.to_string(),
                a.name.clone(),
                a.state.as_str().to_owned(),
                format_fen(a.balance),
                format_fen(a.held),
                a.cards.len().to_string(),
                a.vins.len().to_string(),
                stations(a),
            ]
        })
        .collect();
    let mut out = table(
        &[
            "ID",
            "NAME",
            "STATE",
            "BALANCE yuan",
            "HELD yuan",
            "CARDS",
            "VINS",
            "STATIONS",
        ],
        &rows,
    );
    if list.len() >= limit as usize {
        if let Some(last) = list.last() {
            let _ = writeln!(
                out,
                "\nThere may be more: pylonctl accounts list --after {} --limit {limit}",
                last.id
            );
        }
    }
    out
}

/// `accounts show`: the account, its wallet, cards and VINs.
pub fn account(a: &Account) -> String {
    let mut out = fields(&[
        ("account", a.id.to_string()),
        ("name", a.name.clone()),
        ("state", a.state.as_str().to_owned()),
        ("balance", yuan(a.balance)),
        ("on hold", yuan(a.held)),
        ("stations", stations(a)),
        ("created", format_time(a.created_at)),
        ("updated", format_time(a.updated_at)),
    ]);
    out.push('\n');
    if a.cards.is_empty() {
        out.push_str("No cards.\n");
    } else {
        let rows: Vec<Vec<String>> = a
            .cards
            .iter()
            .map(|c| {
                vec![
                    c.card.clone(),
                    c.logical.clone(),
                    if c.has_password { "yes" } else { "no" }.into(),
                ]
            })
            .collect();
        out.push_str(&table(&["CARD", "LOGICAL NO", "PASSWORD"], &rows));
    }
    if a.vins.is_empty() {
        out.push_str("No VINs.\n");
    } else {
        let _ = writeln!(out, "VINs: {}", a.vins.join(", "));
    }
    out
}

/// The confirmation of `accounts add`.
pub fn account_added(a: &Account) -> String {
    format!(
        "Account {} added, with an empty wallet. Top it up with:\n  pylonctl accounts \
         top-up {} --amount YUAN --reason TEXT\n\n{}",
        a.id,
        a.id,
        account(a)
    )
}

/// The confirmation of `accounts edit`, then the account.
pub fn account_updated(a: &Account) -> String {
    format!("Account {} updated.\n\n{}", a.id, account(a))
}

/// The confirmation of `accounts top-up|refund|adjust` (`action`) of `amount` fen.
pub fn money_moved(a: &Account, action: &str, amount: i64) -> String {
    let did = match action {
        "top-up" => "Topped up",
        "refund" => "Refunded",
        _ => "Adjusted",
    };
    format!(
        "{did} account {} by {}: balance {}, on hold {}.\n",
        a.id,
        yuan(amount),
        yuan(a.balance),
        yuan(a.held)
    )
}

/// The confirmation of `accounts freeze|unfreeze`.
pub fn account_state(a: &Account) -> String {
    match a.state {
        AccountState::Frozen => format!(
            "Account {} is frozen: no new charge starts for it; charges under way end and \
             settle.\n",
            a.id
        ),
        AccountState::Active => format!("Account {} is active: it may start charges.\n", a.id),
        AccountState::Erased => format!(
            "Account {} was erased: its driver's personal data is gone; its ledger stays.\n",
            a.id
        ),
    }
}

/// The confirmation of `accounts card-add`; `card`: the card, masked.
pub fn card_added(a: &Account, card: &str) -> String {
    format!(
        "Card {card} added to account {} ({} card{} in all).\n",
        a.id,
        a.cards.len(),
        if a.cards.len() == 1 { "" } else { "s" }
    )
}

/// The confirmation of `accounts card-remove`; `card`: the card, masked.
pub fn card_removed(a: &Account, card: &str) -> String {
    format!(
        "Card {card} removed from account {} ({} card{} left).\n",
        a.id,
        a.cards.len(),
        if a.cards.len() == 1 { "" } else { "s" }
    )
}

/// The confirmation of `accounts vin-add`; `vin`: the VIN, masked.
pub fn vin_added(a: &Account, vin: &str) -> String {
    format!(
        "VIN {vin} added to account {} ({} VIN{} in all).\n",
        a.id,
        a.vins.len(),
        if a.vins.len() == 1 { "" } else { "s" }
    )
}

/// The confirmation of `accounts vin-remove`; `vin`: the VIN, masked.
pub fn vin_removed(a: &Account, vin: &str) -> String {
    format!(
        "VIN {vin} removed from account {} ({} VIN{} left).\n",
        a.id,
        a.vins.len(),
        if a.vins.len() == 1 { "" } else { "s" }
    )
}

/// What an entry did to account `id`'s wallet: `+12.50`, `-3.00`, or `-` (holds and
/// other books).
fn wallet_change(e: &LedgerEntry, id: i64) -> String {
    let wallet = format!("wallet:{id}");
    match (e.from == wallet, e.to == wallet) {
        (true, false) => format!("-{}", format_fen(e.amount)),
        (false, true) => format!("+{}", format_fen(e.amount)),
        _ => "-".into(),
    }
}

/// `accounts ledger`.
pub fn ledger(entries: &[LedgerEntry], id: i64, limit: u32) -> String {
    if entries.is_empty() {
        return format!("Account {id} has no ledger entries yet.\n");
    }
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            vec![
                format_time(e.at),
                e.kind.clone(),
                wallet_change(e, id),
                format_fen(e.amount),
                e.from.clone(),
                e.to.clone(),
                e.trade_no.clone().unwrap_or_else(|| "-".into()),
                e.actor.clone(),
                e.reason.clone(),
            ]
        })
        .collect();
    let mut out = table(
        &[
            "AT",
            "KIND",
            "WALLET yuan",
            "AMOUNT yuan",
            "FROM",
            "TO",
            "TRADE NO",
            "BY",
            "REASON",
        ],
        &rows,
    );
    if entries.len() >= limit as usize {
        let _ = writeln!(
            out,
            "\nThese are the newest {limit}; there may be more: raise --limit."
        );
    }
    out
}

#[cfg(test)]
pub(crate) mod tests;
