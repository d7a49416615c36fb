//! Telling "the disk is full" from other write failures. SQLite reports a full file system as
//! SQLITE_FULL when a write comes up short, but as a generic SQLITE_IOERR ("disk I/O error")
//! when it happens while growing the WAL index or syncing; so an I/O error counts as "disk
//! full" when the database's file system has (almost) no room left.

use std::path::Path;

/// SQLite's primary result codes (the low byte of an extended code).
const SQLITE_IOERR: i64 = 10;
const SQLITE_FULL: i64 = 13;

/// Less room than this is "full": one 64 KiB page and its WAL frame must fit, with margin.
const NEARLY_FULL_BYTES: u64 = 1 << 20;

/// The error means the database's file system is out of space.
pub(super) fn is_disk_full(db: &Path, e: &sqlx::Error) -> bool {
    let sqlx::Error::Database(d) = e else {
        return false;
    };
    let code = d.code().and_then(|c| c.parse::<i64>().ok()).unwrap_or(0);
    match code & 0xff {
        SQLITE_FULL => true,
        SQLITE_IOERR => nearly_full(db),
        _ => false,
    }
}

/// Room left for us (root may use the blocks reserved for it) is below [`NEARLY_FULL_BYTES`].
fn nearly_full(db: &Path) -> bool {
    let dir = match db.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(d) => d,
        None => Path::new("."),
    };
    let Ok(st) = rustix::fs::statvfs(dir) else {
        return false;
    };
    let blocks = if rustix::process::geteuid().is_root() {
        st.f_bfree
    } else {
        st.f_bavail
    };
    blocks.saturating_mul(st.f_frsize) < NEARLY_FULL_BYTES
}
