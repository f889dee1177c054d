//! Integration tests: a real `bro` binary, a real restate-server and Debian's Chromium. Each
//! test has its own `BRO_HOME` and free ports, and checks that it left no process behind.
//! A missing Chromium or restate-server fails at once with the command that installs it.

#![allow(clippy::unwrap_used)] // a test binary: a failed unwrap is a failed test

mod helper;

mod actions;
mod bounds;
mod chaos;
mod cli;
mod cluster;
mod compat;
mod daemon;
mod files;
mod health;
mod hostile;
mod in_process;
mod limits;
mod metrics;
mod private;
mod proxy;
mod queue;
mod recording;
mod recovery;
mod replay;
mod session;
mod tools;
mod traces;
mod tui;
mod viewer;
mod warm;
