//! Money movements. Every change to a wallet is a transfer of fen from one book to
//! another, written once and never changed: double entry, so that what one book loses
//! another gains and all books together always sum to zero. A wallet's balance and the
//! amount it has on hold are the sums of its two books, and are checked against them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::tariff::Priced;

/// A book money is kept in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Book {
    /// An account's spendable money.
    Wallet(i64),
    /// An account's money set aside for charges under way.
    Hold(i64),
    /// Earned electricity fees.
    Electricity,
    /// Earned service fees.
    Service,
    /// Money given back to drivers (a contra-revenue book).
    Refunds,
    /// Money from and to the world outside: top-ups, payouts, adjustments.
    Funding,
}

impl fmt::Display for Book {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Book::Wallet(id) => write!(f, "wallet:{id}"),
            Book::Hold(id) => write!(f, "hold:{id}"),
            Book::Electricity => f.write_str("revenue:electricity"),
            Book::Service => f.write_str("revenue:service"),
            Book::Refunds => f.write_str("refunds"),
            Book::Funding => f.write_str("funding"),
        }
    }
}

impl FromStr for Book {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let id = |rest: &str| rest.parse::<i64>().map_err(|_| format!("bad book {s:?}"));
        Ok(match s {
            "revenue:electricity" => Book::Electricity,
            "revenue:service" => Book::Service,
            "refunds" => Book::Refunds,
            "funding" => Book::Funding,
            _ => match s.split_once(':') {
                Some(("wallet", rest)) => Book::Wallet(id(rest)?),
                Some(("hold", rest)) => Book::Hold(id(rest)?),
                _ => return Err(format!("bad book {s:?}")),
            },
        })
    }
}

/// Why money moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    TopUp,
    Hold,
    Release,
    Charge,
    Refund,
    Adjustment,
}

impl EntryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::TopUp => "top_up",
            EntryKind::Hold => "hold",
            EntryKind::Release => "release",
            EntryKind::Charge => "charge",
            EntryKind::Refund => "refund",
            EntryKind::Adjustment => "adjustment",
        }
    }

    pub fn parse(s: &str) -> Option<EntryKind> {
        Some(match s {
            "top_up" => EntryKind::TopUp,
            "hold" => EntryKind::Hold,
            "release" => EntryKind::Release,
            "charge" => EntryKind::Charge,
            "refund" => EntryKind::Refund,
            "adjustment" => EntryKind::Adjustment,
            _ => return None,
        })
    }
}

/// One transfer, before it is written (the store adds id, time, who and why).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Posting {
    pub kind: EntryKind,
    pub from: Book,
    pub to: Book,
    /// Fen, always positive.
    pub amount: i64,
}

/// A wallet's two sums.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalletSums {
    /// Spendable fen (may go below zero when a charge costs more than was held).
    pub balance: i64,
    /// Fen on hold for charges under way.
    pub held: i64,
}

impl WalletSums {
    /// The wallet of `account` after `posting`.
    pub fn apply(mut self, account: i64, posting: &Posting) -> WalletSums {
        for (book, sign) in [(posting.from, -1), (posting.to, 1)] {
            match book {
                Book::Wallet(a) if a == account => self.balance += sign * posting.amount,
                Book::Hold(a) if a == account => self.held += sign * posting.amount,
                _ => {}
            }
        }
        self
    }
}

fn posting(kind: EntryKind, from: Book, to: Book, amount: i64) -> Option<Posting> {
    (amount > 0).then_some(Posting {
        kind,
        from,
        to,
        amount,
    })
}

/// Money paid in.
pub fn top_up(account: i64, amount: i64) -> Vec<Posting> {
    posting(
        EntryKind::TopUp,
        Book::Funding,
        Book::Wallet(account),
        amount,
    )
    .into_iter()
    .collect()
}

/// Sets `amount` aside for a charge.
pub fn hold(account: i64, amount: i64) -> Vec<Posting> {
    posting(
        EntryKind::Hold,
        Book::Wallet(account),
        Book::Hold(account),
        amount,
    )
    .into_iter()
    .collect()
}

/// Gives a hold back without charging (a start that failed).
pub fn release(account: i64, held: i64) -> Vec<Posting> {
    posting(
        EntryKind::Release,
        Book::Hold(account),
        Book::Wallet(account),
        held,
    )
    .into_iter()
    .collect()
}

/// Settles a charge: the hold goes back to the wallet, then the priced electricity and
/// service fees go to revenue.
pub fn settle(account: i64, held: i64, priced: &Priced) -> Vec<Posting> {
    let wallet = Book::Wallet(account);
    [
        posting(EntryKind::Release, Book::Hold(account), wallet, held),
        posting(
            EntryKind::Charge,
            wallet,
            Book::Electricity,
            priced.electricity_fen,
        ),
        posting(EntryKind::Charge, wallet, Book::Service, priced.service_fen),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// Gives money back to a driver.
pub fn refund(account: i64, amount: i64) -> Vec<Posting> {
    posting(
        EntryKind::Refund,
        Book::Refunds,
        Book::Wallet(account),
        amount,
    )
    .into_iter()
    .collect()
}

/// A correction by an operator: positive credits the wallet, negative debits it.
pub fn adjust(account: i64, amount: i64) -> Vec<Posting> {
    let wallet = Book::Wallet(account);
    if amount >= 0 {
        posting(EntryKind::Adjustment, Book::Funding, wallet, amount)
    } else {
        posting(
            EntryKind::Adjustment,
            wallet,
            Book::Funding,
            amount.saturating_neg(),
        )
    }
    .into_iter()
    .collect()
}

/// Each book's sum over `postings`.
pub fn book_sums(postings: &[Posting]) -> std::collections::BTreeMap<Book, i64> {
    let mut sums = std::collections::BTreeMap::new();
    for p in postings {
        *sums.entry(p.from).or_insert(0) -= p.amount;
        *sums.entry(p.to).or_insert(0) += p.amount;
    }
    sums
}

#[cfg(test)]
mod tests;
