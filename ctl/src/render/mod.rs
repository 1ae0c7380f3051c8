//! Replies printed for people: aligned tables and `key: value` blocks (`--output json`
//! prints the servers' replies as they are).
//!
//! - [`control`]: the control plane's replies (status, edges, apps, shards, entry, routes,
//!   and the lines of `routes watch`).
//! - [`business`]: the app service's (piles, guns, orders, records).
//! - [`pile_keys`]: a pile's body encryption (`piles keys`), and the new key of a rotation.
//! - [`stations`], [`tariffs`], [`accounts`], [`reports`], [`keys`]: the app service's
//!   revenue side.
//! - [`identity`]: users, tokens, sessions and `whoami` (control plane).
//! - [`audit`]: the audit log and the check of its hash chain (control plane).
//! - [`guard`]: an edge's SYN-flood guard (counters, blocklist, block and unblock).
//! - [`top`]: the live view of edges, a block per edge at each refresh.
//! - [`ykc`]: YKC frames offline (type codes, frames as hex, the table of types).

pub mod accounts;
pub mod alarms;
pub mod audit;
pub mod business;
pub mod control;
pub mod guard;
pub mod identity;
pub mod keys;
pub mod pile_keys;
pub mod reports;
pub mod stations;
pub mod tariffs;
pub mod top;
pub mod ykc;
