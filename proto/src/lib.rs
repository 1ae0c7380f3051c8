//! Wire formats spoken by Pylon.
//!
//! [`ykc`] is the YKC V1.6 charger-to-platform protocol as a sans-io codec: pure
//! functions over byte buffers, shared by the edge, the app service, the bench and
//! the fuzz targets.

pub mod ykc;
