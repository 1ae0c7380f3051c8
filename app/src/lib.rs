//! The charging business service (`pylon-app`): login checks against the pile registry,
//! billing models, remote start and stop, real-time status, and transaction records
//! that are durable before they are acknowledged.
//!
//! - [`store`]: the business store (SQLite embedded, PostgreSQL) behind one trait.
//! - [`business`]: what the platform does with each frame, and commands to piles.
//! - [`stream`]: the business stream from each edge (gRPC), in per-pile lanes.
//! - [`directory`]: where each pile is connected, for downlinks.
//! - [`operator`]: the operator HTTP API.
//! - [`membership`]: registration with the control plane.

pub mod alarms;
pub mod business;
pub mod clock;
pub mod config;
pub mod directory;
pub mod membership;
pub mod metrics;
pub mod operator;
pub mod process;
pub mod revenue;
pub mod server;
pub mod store;
pub mod stream;
