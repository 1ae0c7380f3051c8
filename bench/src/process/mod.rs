//! The bench's programs, as libraries: each has its command line (`Cli`) and a `run`;
//! their `main.rs` files in `src/bin/` only parse and call them.
//!
//! - [`fleet`]: `pylon-fleet`, a fleet of simulated chargers.
//! - [`refserver`]: `pylon-refserver`, the reference server benchmarks compare against.
//! - [`control_bench`]: `pylon-control-bench`, the control plane's dispatch and push figures.

pub mod control_bench;
pub mod fleet;
pub mod refserver;
