//! `pylon-edge`: the access gateway that holds charger connections.
//!
//! One glommio executor per core, each with its own SO_REUSEPORT listeners (plain TCP and
//! TLS side by side) and its own session table; nothing on the per-connection path is
//! shared between executors. Control traffic (the admin/metrics HTTP server and the
//! control-plane link) runs on a small tokio runtime on its own thread and talks to executors through channels.

pub mod admin;
pub mod allowlist;
pub mod appstream;
pub mod config;
pub mod control;
pub mod doorbell;
pub mod ebpf;
pub mod executor;
pub mod metrics;
pub mod process;
pub mod readiness;
pub mod reload;
pub mod runtime;
pub mod session;
pub mod takeover;
pub mod tls;
pub mod uplink;

pub use config::Config;
