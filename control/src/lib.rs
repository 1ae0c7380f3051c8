//! Pylon's control plane, and the `pylonctl` operator CLI.
//!
//! - [`registry`]: membership and settings storage (embedded file or etcd) behind one trait.
//! - [`api`]: the HTTP/JSON API types shared by the server and `pylonctl`.
//! - [`cli`]: the command line as a whole (clap definitions, exit statuses, completions).
//! - [`ops_cli`]: `pylonctl status|edges|apps|shards|entry|routes`, the operator commands
//!   that talk to a running control plane.
//! - [`ykc_cli`]: `pylonctl ykc ...`, decoding, encoding and listing YKC V1.6 frames.

pub mod api;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod dispatch;
pub mod grpc;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod mirror;
pub mod node;
pub mod ops_cli;
pub mod publisher;
pub mod registry;
pub mod server;
pub mod shards;
pub mod ykc_cli;
