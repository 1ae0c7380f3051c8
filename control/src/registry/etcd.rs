//! (being written)
pub struct EtcdRegistry;
