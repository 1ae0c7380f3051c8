//! Replies printed for people: aligned tables and `key: value` blocks (`--output json`
//! prints the servers' replies as they are).
//!
//! - [`control`]: the control plane's replies (status, edges, apps, shards, entry, routes).
//! - [`business`]: the app service's (piles, guns, orders, records).
//! - [`stations`], [`tariffs`], [`accounts`], [`reports`], [`keys`]: the app service's
//!   revenue side.

pub mod accounts;
pub mod business;
pub mod control;
pub mod keys;
pub mod reports;
pub mod stations;
pub mod tariffs;
