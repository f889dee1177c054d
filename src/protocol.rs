//! Wire types shared by the CLI, the daemon and the tests: the steel-browser JSON shapes
//! (`steel`, with the quick actions' `actions`, the session files' `files` and the
//! live-details answer `live`), bro's own control messages (`control`) and the session state
//! kept in Restate (`session`); `proxy_url` finds the credentials in a proxy URL. Depends on
//! serde and url only; never on axum, hyper or restate.

pub mod actions;
pub mod cast;
pub mod cluster;
pub mod control;
pub mod files;
pub mod live;
pub mod proxy_url;
pub mod session;
pub mod size;
pub mod steel;

/// Version of the control protocol between `bro` and `bro daemon`.
pub const PROTOCOL_VERSION: u32 = 1;
