//! `pylonctl`, the operator's command line for Pylon.
//!
//! - [`cli`]: the command line as a whole (clap definitions, exit statuses, completions).
//! - [`commands`]: one module per command group, and the dispatch.
//! - [`render`]: how replies are printed for people (tables, `key: value` blocks).
//! - [`client`]: the blocking HTTP client and its errors.
//! - [`config`]: where endpoints, the token, the CA and the client certificate come from
//!   (flag > env > file > default).
//! - [`tls`]: https to the services, checked against the cluster CA (`--ca`), and the
//!   mutual TLS of `routes watch` (client certificate: `--cert`, `--key`).
//! - [`units`]: money, energy and times as operators type and read them.

pub mod capacity;
pub mod cli;
pub mod client;
pub mod commands;
pub mod config;
pub mod render;
pub mod tls;
pub mod units;
