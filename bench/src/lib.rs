//! Simulated YKC chargers at scale, the reference server, and the numbers they produce.

pub mod accounts;
pub mod certs;
pub mod charger;
pub mod charging;
pub mod dispatch;
pub mod fleet;
pub mod patroni;
pub mod postgres;
pub mod process;
pub mod refserver;
pub mod stats;
pub mod tls;
pub mod trouble;
