//! Per-path debounce state, pure: the caller passes the current time, so tests need no clock.
//!
//! Guarantees:
//! - changes to one path within `window` of each other give ONE due path, `window` after the
//!   last of them (the scan then describes the final state: create + write = one `added`);
//! - a path that keeps changing is still due `max_delay` after its first change (a log file
//!   written every 100 ms is not postponed forever);
//! - at most `capacity` paths are held: [`Debouncer::add`] refuses more, and the caller
//!   replaces them by a full rescan (memory stays bounded in an event storm);
//! - O(log n) per change and per due path.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;
use tokio::time::Instant;

/// The pending paths and when each becomes due.
#[derive(Debug)]
pub struct Debouncer {
    window: Duration,
    max_delay: Duration,
    capacity: usize,
    /// path -> (first change, key in `due`).
    pending: HashMap<PathBuf, (Instant, (Instant, u64))>,
    /// (due time, insertion sequence) -> path, earliest first.
    due: BTreeMap<(Instant, u64), PathBuf>,
    seq: u64,
}

impl Debouncer {
    /// `max_delay` is ten windows, and at least one second.
    pub fn new(window: Duration, capacity: usize) -> Debouncer {
        Debouncer {
            window,
            max_delay: (window * 10).max(Duration::from_secs(1)),
            capacity,
            pending: HashMap::new(),
            due: BTreeMap::new(),
            seq: 0,
        }
    }

    /// A new window for paths added from now on (config reload).
    pub fn set_window(&mut self, window: Duration) {
        self.window = window;
        self.max_delay = (window * 10).max(Duration::from_secs(1));
    }

    /// Record a change to `path` at `now`. False when the path is new and `capacity` paths
    /// are already pending: nothing was recorded.
    pub fn add(&mut self, path: PathBuf, now: Instant) -> bool {
        let first = match self.pending.get(&path) {
            Some(&(first, key)) => {
                self.due.remove(&key);
                first
            }
            None if self.pending.len() >= self.capacity => return false,
            None => now,
        };
        let at = (now + self.window).min(first + self.max_delay);
        self.seq += 1;
        let key = (at, self.seq);
        self.due.insert(key, path.clone());
        self.pending.insert(path, (first, key));
        true
    }

    /// When the earliest pending path becomes due.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.due.keys().next().map(|(at, _)| *at)
    }

    /// Remove and return the paths due at `now` (at most `limit`), earliest first.
    pub fn take_due(&mut self, now: Instant, limit: usize) -> Vec<PathBuf> {
        let mut out = Vec::new();
        while out.len() < limit {
            let Some(entry) = self.due.first_entry() else {
                break;
            };
            if entry.key().0 > now {
                break;
            }
            let path = entry.remove();
            self.pending.remove(&path);
            out.push(path);
        }
        if self.pending.is_empty() {
            // A burst grew the table; it keeps its capacity until told otherwise.
            self.pending.shrink_to_fit();
        }
        out
    }

    /// Forget every pending path (a full rescan covers them).
    pub fn clear(&mut self) {
        self.pending = HashMap::new();
        self.due.clear();
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn p(s: &str) -> PathBuf {
        PathBuf::from(s)
    }

    #[test]
    fn changes_within_the_window_give_one_due_path() {
        let t0 = Instant::now();
        let mut d = Debouncer::new(ms(200), 100);
        assert!(d.add(p("/a"), t0)); // create
        assert!(d.add(p("/a"), t0 + ms(50))); // write
        assert!(d.add(p("/a"), t0 + ms(120))); // close
        assert_eq!(d.len(), 1);
        assert_eq!(d.next_deadline(), Some(t0 + ms(320)));
        assert!(d.take_due(t0 + ms(319), 10).is_empty());
        assert_eq!(d.take_due(t0 + ms(320), 10), vec![p("/a")]);
        assert!(d.is_empty());
        assert_eq!(d.next_deadline(), None);
    }

    #[test]
    fn paths_are_independent_and_due_in_order() {
        let t0 = Instant::now();
        let mut d = Debouncer::new(ms(100), 100);
        d.add(p("/b"), t0 + ms(10));
        d.add(p("/a"), t0);
        d.add(p("/c"), t0 + ms(500));
        assert_eq!(d.take_due(t0 + ms(200), 10), vec![p("/a"), p("/b")]);
        assert_eq!(d.take_due(t0 + ms(600), 10), vec![p("/c")]);
    }

    #[test]
    fn a_path_that_keeps_changing_is_due_after_max_delay() {
        let t0 = Instant::now();
        let mut d = Debouncer::new(ms(200), 100);
        // Written every 100 ms for 5 s: due at first + max(10 windows, 1 s) = 2 s.
        let mut got = None;
        for i in 0..50u64 {
            let now = t0 + ms(100 * i);
            if let Some(path) = d.take_due(now, 10).pop() {
                got = Some((path, now));
                break;
            }
            d.add(p("/log"), now);
        }
        assert_eq!(got, Some((p("/log"), t0 + ms(2000))));
    }

    #[test]
    fn capacity_is_enforced_and_limit_respected() {
        let t0 = Instant::now();
        let mut d = Debouncer::new(ms(0), 3);
        for s in ["/1", "/2", "/3"] {
            assert!(d.add(p(s), t0));
        }
        assert!(!d.add(p("/4"), t0), "a fourth path is refused");
        assert!(d.add(p("/2"), t0), "a known path is still accepted");
        assert_eq!(d.take_due(t0, 2).len(), 2);
        assert_eq!(d.len(), 1);
        d.clear();
        assert!(d.is_empty());
        assert_eq!(d.next_deadline(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn works_with_paused_tokio_time() {
        let mut d = Debouncer::new(ms(200), 10);
        d.add(p("/x"), Instant::now());
        tokio::time::sleep(ms(150)).await;
        d.add(p("/x"), Instant::now());
        tokio::time::sleep(ms(199)).await;
        assert!(d.take_due(Instant::now(), 10).is_empty());
        tokio::time::sleep(ms(1)).await;
        assert_eq!(d.take_due(Instant::now(), 10), vec![p("/x")]);
    }
}
