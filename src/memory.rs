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

/// Keep glibc to two malloc arenas instead of up to eight per core. With one arena per busy
/// thread (hashing pool, tokio workers, sqlx's), a burst's allocations end up interleaved in
/// arenas that `malloc_trim` cannot give back whole: 30,000 events left a dev build at 85 MiB
/// a minute later (40 MiB idle); with two arenas it peaked at 47 MiB. Call before any thread
/// starts. `MALLOC_ARENA_MAX` in the environment still wins (glibc reads it first).
pub fn limit_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return;
    }
    // SAFETY: mallopt only sets a glibc tunable; no pointer of ours is involved.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}
