//! Pylon's control plane, and the `pylonctl` operator CLI.
//!
//! - [`cli`]: the command line as a whole (clap definitions, exit statuses, completions).
//! - [`ykc_cli`]: `pylonctl ykc ...`, decoding, encoding and listing YKC V1.6 frames.

pub mod cli;
pub mod ykc_cli;
