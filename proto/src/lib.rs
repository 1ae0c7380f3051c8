//! Wire formats spoken by Pylon.
//!
//! - [`ykc`]: the YKC V1.6 charger-to-platform protocol as a sans-io codec: pure functions
//!   over byte buffers, shared by the edge, the app service, the bench and the fuzz targets.
//! - [`control`]: the internal gRPC services of the control plane (`proto/control.proto`).
//! - [`app`]: the business stream between edges and app instances (`proto/app.proto`).
//! - [`auth`]: bearer tokens on the internal and admin APIs.
//! - [`routes`]: the route table pushed to edges and app instances, as rkyv types.

pub mod auth;
pub mod routes;
pub mod ykc;

/// The business stream between edges and app instances (generated from `proto/app.proto`).
#[allow(clippy::all, missing_docs)]
pub mod app {
    tonic::include_proto!("pylon.app.v1");
}

/// The control plane's gRPC services (generated from `proto/control.proto`).
#[allow(clippy::all, missing_docs)]
pub mod control {
    tonic::include_proto!("pylon.control.v1");
}
