//! What makes several bro nodes one cluster: the cluster secret (`secret`).
pub mod secret;
