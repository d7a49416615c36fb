//! Resource governance for scans, so a rescan never starves the host: a byte-rate limit
//! shared by all hashing threads (`daemon.hash_rate`), and lower CPU and I/O priority for
//! those threads (`daemon.low_priority`: nice 10, best-effort I/O class at level 7, the
//! lowest that still always makes progress).

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A token bucket in bytes: at most `rate` bytes per second on average, bursts of one second.
#[derive(Debug)]
pub struct RateLimit {
    rate: f64,
    bucket: Mutex<(f64, Instant)>,
}

impl RateLimit {
    /// `None` for 0 (no limit).
    pub fn new(bytes_per_sec: u64) -> Option<RateLimit> {
        (bytes_per_sec > 0).then(|| RateLimit {
            rate: bytes_per_sec as f64,
            bucket: Mutex::new((bytes_per_sec as f64, Instant::now())),
        })
    }

    /// Account for `n` bytes read; sleeps this thread when over the rate.
    pub fn consume(&self, n: usize) {
        let wait = match self.bucket.lock() {
            Ok(mut b) => {
                let now = Instant::now();
                let refill = now.duration_since(b.1).as_secs_f64() * self.rate;
                b.0 = (b.0 + refill).min(self.rate) - n as f64;
                b.1 = now;
                (b.0 < 0.0).then(|| Duration::from_secs_f64(-b.0 / self.rate))
            }
            // A panicked holder cannot corrupt two numbers in a way that matters: no limit.
            Err(_) => None,
        };
        if let Some(w) = wait {
            std::thread::sleep(w);
        }
    }
}

/// Lower the calling thread's CPU and I/O priority (best effort: failures are ignored, e.g.
/// under a seccomp filter that forbids it).
pub fn lower_thread_priority() {
    let tid = rustix::thread::gettid();
    // On Linux, the "process" of setpriority is a thread id: this thread only.
    let _ = rustix::process::setpriority_process(Some(tid), 10);
    const IOPRIO_WHO_PROCESS: libc::c_int = 1;
    const IOPRIO_CLASS_BE: libc::c_int = 2;
    const IOPRIO_CLASS_SHIFT: libc::c_int = 13;
    let prio = (IOPRIO_CLASS_BE << IOPRIO_CLASS_SHIFT) | 7;
    // SAFETY: ioprio_set takes three integers and touches no memory of ours.
    unsafe {
        libc::syscall(
            libc::SYS_ioprio_set,
            IOPRIO_WHO_PROCESS,
            tid.as_raw_nonzero().get(),
            prio,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_paces_reads() {
        assert!(RateLimit::new(0).is_none());
        let Some(limit) = RateLimit::new(1_000_000) else {
            return;
        };
        let start = Instant::now();
        // One second of burst is free, the next 0.2 MB must take about 0.2 s.
        limit.consume(1_000_000);
        limit.consume(200_000);
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(150), "{took:?}");
        assert!(took < Duration::from_secs(2), "{took:?}");
    }

    #[test]
    fn lowering_priority_is_harmless() {
        std::thread::spawn(lower_thread_priority).join().ok();
    }
}
