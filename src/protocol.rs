//! Wire types shared by the CLI, the daemon and the tests: the steel-browser JSON shapes
//! (`steel`), bro's own control messages (`control`) and the session state kept in Restate
//! (`session`). Depends on serde only; never on axum, hyper or restate.

pub mod control;
pub mod session;
pub mod steel;

/// Version of the control protocol between `bro` and `bro daemon`.
pub const PROTOCOL_VERSION: u32 = 1;
