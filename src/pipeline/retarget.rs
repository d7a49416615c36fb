//! Watch roots reached through a symlink that now lead elsewhere (`ln -sfn /srv/new /etc/app`
//! for a watched `/etc/app`). The policy resolves such a root once to its target; the full
//! scans (`init`, `check`, the daemon's start and rescans) record every resolved target in
//! `meta` (`watch_root_targets`), and when a later policy resolves a configured path to
//! another target the scan reports it instead of silently swapping trees:
//! one `high` `modified` event on the link ("watch root <link> now points to <new> (was
//! <old>)", `changed: ["link_target"]`, `old`/`new` null: fimd records where the link led, not
//! the link's inode), `removed` for every file recorded under the old target that no watch
//! selects any more, and `added` for the new target's files. The event commits in the same
//! transaction as the new record, so it is reported exactly once.
//!
//! Stored as a JSON object: configured path (UTF-8, from the TOML config) -> hex of the
//! target's bytes (a target need not be UTF-8).

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::Pipeline;
use crate::event::{display_path, Event, EventKind, Severity, Source};
use crate::policy::Policy;
use crate::store::StoreError;

/// The meta key of the recorded targets.
pub const META_KEY: &str = "watch_root_targets";

/// A configured root whose symlink leads elsewhere than recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retarget {
    /// The configured path (the link, or a path through one).
    pub link: PathBuf,
    /// Where it led when last recorded: files recorded below it are reported removed.
    pub old: PathBuf,
    /// Where it leads now (`None`: nowhere, the link is gone or dangling).
    pub new: Option<PathBuf>,
}

/// The targets as stored in `meta`.
pub fn encode(targets: &BTreeMap<PathBuf, PathBuf>) -> String {
    let map: BTreeMap<String, String> = targets
        .iter()
        .map(|(link, target)| {
            (
                link.to_string_lossy().into_owned(),
                hex::encode(target.as_os_str().as_bytes()),
            )
        })
        .collect();
    serde_json::to_string(&map).unwrap_or_default()
}

/// Back from `meta`; a malformed value is treated as nothing recorded (logged).
pub fn decode(text: &str) -> BTreeMap<PathBuf, PathBuf> {
    let map: BTreeMap<String, String> = match serde_json::from_str(text) {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(key = META_KEY, error = %e, "malformed recorded watch root targets; recording them anew");
            return BTreeMap::new();
        }
    };
    map.into_iter()
        .filter_map(|(link, target)| {
            let bytes = hex::decode(target).ok()?;
            Some((
                PathBuf::from(link),
                PathBuf::from(OsStr::from_bytes(&bytes)),
            ))
        })
        .collect()
}

/// The configured roots of `policy` that lead elsewhere than `recorded` says. A configured
/// path no longer in the config is not a retarget (its rows follow the config change).
pub fn changes(recorded: &BTreeMap<PathBuf, PathBuf>, policy: &Policy) -> Vec<Retarget> {
    let now = policy.redirects();
    let configured: std::collections::BTreeSet<&Path> = policy
        .watches
        .iter()
        .filter(|w| !w.from_users)
        .map(|w| w.configured.as_path())
        .collect();
    recorded
        .iter()
        .filter(|(link, _)| configured.contains(link.as_path()))
        .filter(|(link, old)| now.get(*link) != Some(*old))
        .map(|(link, old)| Retarget {
            link: link.clone(),
            old: old.clone(),
            // No redirect now: a real directory there, a link to a non-directory, or nothing
            // (a link still naming the old target, which is gone, points to nothing).
            new: now.get(link).cloned().or_else(|| {
                std::fs::canonicalize(link)
                    .ok()
                    .or_else(|| std::fs::read_link(link).ok().filter(|t| t != old))
            }),
        })
        .collect()
}

impl Pipeline {
    /// Configured roots whose symlink leads elsewhere than the last full scan recorded.
    pub async fn root_changes(&self) -> Result<Vec<Retarget>, StoreError> {
        let recorded = match self.store.meta(META_KEY).await? {
            Some(text) => decode(&text),
            None => return Ok(Vec::new()),
        };
        Ok(changes(&recorded, &self.policy))
    }

    /// The `meta` row recording where the policy's roots lead now.
    pub(super) fn targets_meta(&self) -> (&'static str, String) {
        (META_KEY, encode(&self.policy.redirects()))
    }

    /// The event reporting one retarget.
    pub(super) fn retarget_event(&self, r: &Retarget, source: Source) -> Event {
        let new = r
            .new
            .as_deref()
            .map_or_else(|| "nothing".to_string(), display_path);
        let mut e = self.event(
            EventKind::Modified,
            &r.link,
            None,
            None,
            vec!["link_target".to_string()],
            false,
            None,
            source,
        );
        e.severity = Severity::High;
        e.reason = format!(
            "watch root {} now points to {new} (was {})",
            display_path(&r.link),
            display_path(&r.old)
        );
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_round_trip_through_meta_including_non_utf8() {
        let mut t = BTreeMap::new();
        t.insert(PathBuf::from("/etc/app"), PathBuf::from("/srv/app-1"));
        t.insert(
            PathBuf::from("/etc/odd"),
            PathBuf::from(OsStr::from_bytes(b"/srv/\xff")),
        );
        assert_eq!(decode(&encode(&t)), t);
        assert!(decode("not json").is_empty());
    }
}
