//! fimd: a file integrity monitoring daemon. The library part, so integration tests and the
//! binary share every piece. The one pipeline:
//!
//! ```text
//! paths -> scan (stat, hash, content) -> compare with baseline -> Change
//!   -> ONE SQLite transaction: baseline row + event + outbox rows
//!   -> journal record -> outbox worker -> sinks
//! ```

pub mod alert;
pub mod cli;
pub mod commands;
pub mod config;
pub mod daemon;
pub mod diff;
pub mod event;
pub mod explain;
pub mod fleet;
pub mod format;
pub mod logging;
pub mod mac;
pub mod manpage;
pub mod memory;
pub mod packages;
pub mod perms;
pub mod pipeline;
pub mod policy;
pub mod scan;
pub mod secrets;
pub mod state;
pub mod store;
pub mod timefmt;
