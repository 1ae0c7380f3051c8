//! (being written)
pub struct EmbeddedRegistry;
