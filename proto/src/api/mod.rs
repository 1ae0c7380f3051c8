//! The HTTP/JSON request and reply types of Pylon's services, defined once and used by the
//! servers and by `pylonctl`.
//!
//! - [`error`]: the one error body of every API, `{"error": {"code", "message"}}`.
//! - [`control`]: the control plane's dispatch and admin API.
//! - [`dr`]: disaster recovery between two sites (status, promotion, the registry mirror).
//! - [`app`]: the app service's operator API (piles, orders, records, commands).
//! - [`audit`]: the hash-chained audit log of operator actions.
//! - [`identity`]: operators (users), their roles and tokens (control plane).
//! - [`edge`]: the edge's admin API (status, downlinks, the SYN-flood guard).
//! - [`revenue`]: stations, tariffs, accounts, the ledger and reports (app service).
//! - [`monitor`]: the fleet at a glance, pile lists, gun traces and alarms (app service),
//!   and the console's overview (control plane).

pub mod app;
pub mod app_routes;
pub mod audit;
pub mod capacity;
pub mod control;
pub mod dr;
pub mod edge;
pub mod error;
pub mod identity;
pub mod monitor;
pub mod revenue;

pub use error::ApiError;
