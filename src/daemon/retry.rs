//! What the pipeline task does again after a failed unit of work: the same debounced paths
//! (a full disk: the changes are kept, with their actors, and recorded once there is room) or a
//! full rescan (any other error, and anything but paths). The kept paths are one unit of work,
//! bounded like every unit; changes arriving meanwhile wait in the daemon's bounded queue, and
//! beyond its bound the daemon owes a full rescan (`Reason::QueueFull`), as at any other time.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use super::worker::Work;
use crate::event::Actor;

/// The wait before retry `n` (1, 2, ...) while the disk is full: 1 s doubling to 1 min.
pub(super) fn disk_full_backoff(n: u32) -> Duration {
    Duration::from_secs(1u64 << n.saturating_sub(1).min(6)).min(Duration::from_secs(60))
}

/// What to do again after a failed unit of work: the same paths (kept, with their actors,
/// so the events keep their source and who-data), or a full rescan (which covers anything).
pub(super) enum Redo {
    Paths {
        paths: Vec<PathBuf>,
        actors: HashMap<PathBuf, Actor>,
    },
    Full,
}

impl Redo {
    pub(super) fn of(work: &Work) -> Redo {
        match work {
            Work::Paths { paths, actors } => Redo::Paths {
                paths: paths.clone(),
                actors: actors.clone(),
            },
            _ => Redo::Full,
        }
    }

    /// The unit of work to run again (`None`: a full rescan).
    pub(super) fn work(&self) -> Option<Work> {
        match self {
            Redo::Paths { paths, actors } => Some(Work::Paths {
                paths: paths.clone(),
                actors: actors.clone(),
            }),
            Redo::Full => None,
        }
    }

    pub(super) fn describe(&self) -> String {
        match self {
            Redo::Paths { paths, .. } => {
                crate::timefmt::plural(paths.len(), "changed path", "changed paths")
            }
            Redo::Full => "a full rescan".to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_full_backoff_doubles_from_one_second_to_a_minute() {
        let waits: Vec<u64> = (1..=9).map(|n| disk_full_backoff(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(disk_full_backoff(u32::MAX).as_secs(), 60);
    }
}
