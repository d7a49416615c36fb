//! SIGHUP: load and validate the config again. On error the running config stays in force
//! and ONE error line says why; on success the caller re-installs watches and hands the new
//! pipeline to the worker, which drops rows no longer monitored and baselines newly
//! monitored files silently ([`newly_monitored`] finds them).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::alert::{SinkFlags, Sinks};
use crate::config::{Config, ConfigError};
use crate::policy::Policy;
use crate::scan::DirWalk;

/// The new config, its compiled policy and its sinks (credentials merged again).
pub fn load(
    path: &Path,
    explicit: bool,
    flags: &SinkFlags,
    strict: bool,
) -> Result<(Config, Arc<Policy>, Sinks), String> {
    // A config made writable by others since the start is refused like at the start.
    Config::check_permissions(path, strict).map_err(|e| e.to_string())?;
    let mut cfg = Config::load(path, explicit).map_err(|e| e.to_string())?;
    let policy = Policy::from_config(&cfg, path).map_err(|e: ConfigError| e.to_string())?;
    let sinks = crate::commands::build_sinks(&mut cfg, flags, path).map_err(|e| e.to_string())?;
    for w in &policy.warnings {
        tracing::warn!("{w}");
    }
    policy.warn_missing();
    Ok((cfg, Arc::new(policy), sinks))
}

/// Paths `new` monitors that `old` did not: directories (walked later by the targeted scan,
/// so they are listed, not descended into) and selected files in directories both cover.
/// Blocking: walks the trees the two policies share.
pub fn newly_monitored(old: &Policy, new: &Policy) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for w in new.dir_roots() {
        if !old.walks_dir(&w.root) {
            out.push(w.root.clone());
            continue;
        }
        // Directories new to monitoring are listed whole (walked by the targeted scan),
        // not descended into; those the new policy does not walk are skipped.
        let fresh = std::cell::RefCell::new(Vec::new());
        let descend = |p: &Path| {
            let (in_new, in_old) = (new.walks_dir(p), old.walks_dir(p));
            if in_new && !in_old {
                fresh.borrow_mut().push(p.to_path_buf());
            }
            in_new && in_old
        };
        for (p, seen) in DirWalk::new(&w.root, descend).flatten() {
            if !seen.is_dir() && new.selects(&p) && !old.selects(&p) {
                out.push(p);
            }
        }
        out.extend(fresh.into_inner());
    }
    for t in new.file_targets() {
        if !old.selects(t) {
            out.push(t.to_path_buf());
        }
    }
    out.sort();
    out.dedup();
    out
}
