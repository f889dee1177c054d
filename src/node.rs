//! What makes several bro nodes one cluster.
//!
//! - `secret`: the cluster secret, the same on every node.
//! - `auth`: node-to-node requests signed and checked with that secret.
//! - `wire`: what crosses between nodes: route paths, payloads, headers, bounds, statuses.
//! - `serve`: the routes through which other nodes reach this node's `WorkerHost`.
//! - `remote`: `RemoteWorkerHost`, a `WorkerHost` that calls those routes on another node.
pub mod auth;
pub mod remote;
pub mod secret;
pub mod serve;
pub mod wire;

#[cfg(test)]
mod tests;
