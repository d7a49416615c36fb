//! The transaction-lock probe shared by dpkg and rpm: is a write lock held on a lock file,
//! asked with `F_OFD_GETLK` (falling back to `F_GETLK` on kernels without OFD locks) and
//! never taken. Both managers hold fcntl write locks for a whole transaction; a read lock
//! (`rpm --verifydb`) is not a transaction.

use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

/// Is a write lock held on `path` (by another process)? A missing or unreadable lock file
/// means no transaction: both managers create it when they take the lock.
pub(crate) fn write_lock_held(path: &Path) -> bool {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) => {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::debug!(path = %path.display(), error = %e, "cannot probe the package lock");
            }
            return false;
        }
    };
    for cmd in [libc::F_OFD_GETLK, libc::F_GETLK] {
        // SAFETY: all-zero bytes are a valid `flock` (plain integers); l_start = l_len = 0
        // asks about the whole file.
        let mut query: libc::flock = unsafe { std::mem::zeroed() };
        query.l_type = libc::F_WRLCK as libc::c_short;
        query.l_whence = libc::SEEK_SET as libc::c_short;
        // SAFETY: F_(OFD_)GETLK reads and writes exactly one `flock`, which we own, on a
        // descriptor that stays open across the call.
        let rc = unsafe { libc::fcntl(file.as_raw_fd(), cmd, &mut query) };
        if rc == 0 {
            return query.l_type == libc::F_WRLCK as libc::c_short;
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINVAL) {
            tracing::debug!(path = %path.display(), error = %e, "cannot probe the package lock");
            return false;
        }
    }
    false
}
