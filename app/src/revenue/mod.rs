//! The money side of the business, as pure logic the store and the business call:
//!
//! - [`tariff`]: time-of-use tariffs (48 half hours, four periods) and pricing a record;
//! - [`authorize`]: whether a driver may start a charge, with the spec's refusal codes,
//!   and how much to hold;
//! - [`ledger`]: double-entry money movements (top-up, hold, release, charge, refund,
//!   adjustment) and the wallet sums they give;
//! - [`vault`]: card numbers, passwords and VINs sealed at rest, indexed and masked.

pub mod authorize;
pub mod ledger;
pub mod tariff;
pub mod vault;
