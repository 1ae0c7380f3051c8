use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::revenue::tariff::Priced;

fn priced(electricity_fen: i64, service_fen: i64) -> Priced {
    Priced {
        electricity: electricity_fen as u64 * 100,
        service: service_fen as u64 * 100,
        electricity_fen,
        service_fen,
    }
}

#[test]
fn books_are_written_and_read_back() {
    for book in [
        Book::Wallet(7),
        Book::Hold(12),
        Book::Electricity,
        Book::Service,
        Book::Refunds,
        Book::Funding,
    ] {
        assert_eq!(book.to_string().parse::<Book>(), Ok(book));
    }
    assert!("wallet:x".parse::<Book>().is_err());
    assert!("nothing".parse::<Book>().is_err());
}

#[test]
fn a_settlement_releases_the_hold_and_charges_both_fees() {
    let postings = settle(3, 5000, &priced(1200, 400));
    let sums = postings.iter().fold(
        WalletSums {
            balance: 0,
            held: 5000,
        },
        |w, p| w.apply(3, p),
    );
    assert_eq!(
        sums,
        WalletSums {
            balance: 3400,
            held: 0
        }
    );
    let books = book_sums(&postings);
    assert_eq!(books[&Book::Electricity], 1200);
    assert_eq!(books[&Book::Service], 400);
    // Nothing moves for nothing.
    assert_eq!(settle(3, 0, &priced(0, 0)), vec![]);
    assert_eq!(adjust(3, -250)[0].from, Book::Wallet(3));
    assert_eq!(adjust(3, 250)[0].to, Book::Wallet(3));
}

#[derive(Debug, Clone)]
enum Op {
    TopUp(u8, i64),
    Start(u8),
    Record(u8, i64, i64),
    Refund(u8, i64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..3, 1i64..100_000).prop_map(|(a, n)| Op::TopUp(a, n)),
        (0u8..3).prop_map(Op::Start),
        (0u8..3, 0i64..40_000, 0i64..10_000).prop_map(|(a, e, s)| Op::Record(a, e, s)),
        (0u8..3, 1i64..5_000).prop_map(|(a, n)| Op::Refund(a, n)),
    ]
}

const MIN_START: i64 = 100;
const MAX_HOLD: i64 = 50_000;

proptest! {
    /// Over any sequence of top-ups, starts, records and refunds, the books sum to zero and
    /// each wallet equals its books. (Repeated records are the store's business: see the
    /// property test in `business::charging`.)
    #[test]
    fn the_books_always_balance(ops in proptest::collection::vec(op(), 1..80)) {
        let mut all: Vec<Posting> = Vec::new();
        let mut wallets: BTreeMap<i64, WalletSums> = BTreeMap::new();
        // Per account: the hold of the charge under way.
        let mut open: BTreeMap<i64, (u32, i64)> = BTreeMap::new();
        let mut trade = 0u32;
        for op in ops {
            let postings = match op {
                Op::TopUp(a, n) => top_up(a.into(), n),
                Op::Start(a) => {
                    let account = i64::from(a);
                    let w = wallets.get(&account).copied().unwrap_or_default();
                    if open.contains_key(&account) || w.balance < MIN_START {
                        vec![]
                    } else {
                        trade += 1;
                        let amount = w.balance.min(MAX_HOLD);
                        open.insert(account, (trade, amount));
                        hold(account, amount)
                    }
                }
                Op::Record(a, e, s) => {
                    let account = i64::from(a);
                    match open.remove(&account) {
                        Some((_, held)) => {
                            settle(account, held, &priced(e, s))
                        }
                        None => vec![],
                    }
                }
                Op::Refund(a, n) => refund(a.into(), n),
            };
            for p in &postings {
                prop_assert!(p.amount > 0);
                let touched: std::collections::BTreeSet<i64> = [p.from, p.to]
                    .iter()
                    .filter_map(|b| match b {
                        Book::Wallet(a) | Book::Hold(a) => Some(*a),
                        _ => None,
                    })
                    .collect();
                for account in touched {
                    let w = wallets.entry(account).or_default();
                    *w = w.apply(account, p);
                }
            }
            all.extend(postings);
        }
        let books = book_sums(&all);
        prop_assert_eq!(books.values().sum::<i64>(), 0);
        for (account, w) in &wallets {
            prop_assert_eq!(books.get(&Book::Wallet(*account)).copied().unwrap_or(0), w.balance);
            prop_assert_eq!(books.get(&Book::Hold(*account)).copied().unwrap_or(0), w.held);
            let on_hold = open.get(account).map_or(0, |(_, h)| *h);
            prop_assert_eq!(w.held, on_hold);
        }
    }
}
