//! The charging business service (`pylon-app`): login checks against the pile registry,
//! billing models, remote start and stop, real-time status, and transaction records
//! that are durable before they are acknowledged.
//!
//! Not written yet: today the edge's standalone uplink counts and logs business frames.
