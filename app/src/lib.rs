//! The charging business service (`pylon-app`): login checks against the pile registry,
//! billing models, remote start and stop, real-time status, and transaction records
//! that are durable before they are acknowledged.
//!
//! - [`store`]: the business store (SQLite embedded, PostgreSQL) behind one trait.

pub mod store;
