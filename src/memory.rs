//! Giving freed heap back to the system. glibc keeps freed memory in its arenas (one per
//! thread that allocated it: hashing threads, sqlx's worker, tokio's), so without this an
//! idle daemon keeps the peak of its last full scan, package index refresh or event burst.

/// Return the free memory of every malloc arena to the system. Costs a few milliseconds:
/// call it after a peak, not per operation.
pub fn release_free_memory() {
    // SAFETY: malloc_trim only walks glibc's own free lists; it takes no pointer of ours.
    unsafe {
        libc::malloc_trim(0);
    }
}
