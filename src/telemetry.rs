//! Tracing setup: the CLI logs warnings to stderr (more with `-v`); the daemon logs info.
//! `RUST_LOG` overrides both.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber writing to stderr at `default` level unless `RUST_LOG` says
/// otherwise.
pub fn init(default: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}
