//! Integration tests: a real `bro` binary, a real restate-server and Debian's Chromium. Each
//! test has its own `BRO_HOME` and free ports, and checks that it left no process behind.
//! A missing Chromium or restate-server fails at once with the command that installs it.

mod helper;

mod cli;
mod compat;
mod daemon;
mod recovery;
mod session;
