//! fimd: a file integrity monitoring daemon. The library part, so integration tests and the
//! binary share every piece. The one pipeline:
//!
//! ```text
//! paths -> scan (stat, hash, content) -> compare with baseline -> Change
//!   -> ONE SQLite transaction: baseline row + event + outbox rows
//!   -> journal record -> outbox worker -> sinks
//! ```

pub mod alert;
pub mod config;
pub mod event;
pub mod state;
pub mod timefmt;
