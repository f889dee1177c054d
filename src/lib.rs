//! bro: a local browser-session orchestrator.
//!
//! A `bro` CLI talks over a Unix socket to a background `bro daemon`. The daemon runs the
//! orchestrator as Restate services (state in Restate is the source of truth), starts one
//! headless Chromium per session, serves the steel-browser HTTP API on localhost and proxies
//! the CDP websockets of Playwright, Puppeteer and steel-sdk clients.
//!
//! Dependencies run one way: `cli` → `client` → `protocol` ← `api` → (`orchestrator`, `host`);
//! `worker` implements `host`, and `daemon` wires them together.

pub mod api;
pub mod artifacts;
pub mod cdp_proxy;
pub mod cli;
pub mod client;
pub mod config;
pub mod daemon;
pub mod host;
pub mod node;
pub mod orchestrator;
pub mod output;
pub mod paths;
pub mod prometheus;
pub mod protocol;
pub mod pump;
pub mod settings;
pub mod telemetry;
pub mod tui;
pub mod wait;
pub mod worker;

/// Unix time in milliseconds (the wall clock; Restate handlers read it inside `ctx.run`).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// The version every `bro` binary and daemon reports; the CLI warns when the daemon differs.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
