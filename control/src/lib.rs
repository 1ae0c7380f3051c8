//! Pylon's control plane (the operator CLI is `pylonctl`, in `ctl/`).
//!
//! - [`registry`]: membership and settings storage (embedded file or etcd) behind one trait.
//! - [`api`]: the HTTP/JSON API types, defined in `pylon_proto::api::control` and shared
//!   with `pylonctl`.

pub use pylon_proto::api::control as api;
pub mod audit;
pub mod cluster;
pub mod config;
pub mod console;
pub mod dispatch;
pub mod dr;
pub mod forward;
pub mod grpc;
pub mod http;
pub mod identity;
pub mod leader;
pub mod metrics;
pub mod mirror;
pub mod node;
pub mod presence;
pub mod process;
pub mod publisher;
pub mod registry;
pub mod server;
pub mod shards;
