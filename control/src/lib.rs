//! Pylon's control plane, and the `pylonctl` operator CLI.
//!
//! - [`registry`]: membership and settings storage (embedded file or etcd) behind one trait.
//! - [`api`]: the HTTP/JSON API types shared by the server and `pylonctl`.
//! - [`cli`]: the command line as a whole (clap definitions, exit statuses, completions).
//! - [`ykc_cli`]: `pylonctl ykc ...`, decoding, encoding and listing YKC V1.6 frames.

pub mod api;
pub mod cli;
pub mod registry;
pub mod ykc_cli;
