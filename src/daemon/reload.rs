//! SIGHUP: load and validate the config again. On error the running config stays in force
//! and ONE error line says why; on success the caller re-installs watches and hands the new
//! pipeline to the worker, which drops rows no longer monitored and baselines newly
//! monitored files silently ([`newly_monitored`] finds them).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::alert::{SinkFlags, Sinks};
use crate::config::{Config, ConfigError};
use crate::policy::Policy;

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
        let mut walker = walkdir::WalkDir::new(&w.root)
            .follow_links(false)
            .into_iter();
        while let Some(entry) = walker.next() {
            let Ok(entry) = entry else { continue };
            let p = entry.path();
            if entry.file_type().is_dir() {
                if entry.depth() == 0 {
                    continue;
                }
                if new.walks_dir(p) && !old.walks_dir(p) {
                    // New to monitoring: listed whole, walked by the targeted scan.
                    out.push(p.to_path_buf());
                    walker.skip_current_dir();
                } else if !new.walks_dir(p) {
                    walker.skip_current_dir();
                }
            } else if new.selects(p) && !old.selects(p) {
                out.push(entry.into_path());
            }
        }
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
