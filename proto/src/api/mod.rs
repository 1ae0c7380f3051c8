//! The HTTP/JSON request and reply types of Pylon's services, defined once and used by the
//! servers and by `pylonctl`.
//!
//! - [`control`]: the control plane's dispatch and admin API.

pub mod control;
