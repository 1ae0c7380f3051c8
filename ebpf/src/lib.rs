//! Loader for Pylon's kernel programs (XDP SYN spreading across cores and edge hosts,
//! the SYN-flood guard, kernel-level TCP metrics).
//!
//! Not written yet: the edge runs without eBPF (plain SO_REUSEPORT spreading), which is
//! also its fallback when it lacks the privileges to load programs.
