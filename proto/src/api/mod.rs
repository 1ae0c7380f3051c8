//! The HTTP/JSON request and reply types of Pylon's services, defined once and used by the
//! servers and by `pylonctl`.
//!
//! - [`error`]: the one error body of every API, `{"error": {"code", "message"}}`.
//! - [`control`]: the control plane's dispatch and admin API.

pub mod control;
pub mod error;

pub use error::ApiError;
