//! The monitoring side on SQLite: the shared logic of `store::monitor`, writes on the
//! writer thread, reads on the reader pool.

use super::db::on;
use super::SqliteStore;

crate::store::monitor::monitor_store!(SqliteStore, on);
