//! Who-data setup: the fanotify group is created in `main`, before the async runtime starts
//! any thread, while the process still has CAP_SYS_ADMIN; then CAP_SYS_ADMIN is dropped from
//! the effective and permitted sets, so no thread of the running daemon holds it. The daemon
//! takes the group (or the reason there is none) when it starts (DESIGN.md "Actor").

use std::sync::Mutex;

use super::fanotify::Fanotify;

/// The group made by [`prepare`], or why there is none.
static PREPARED: Mutex<Option<Result<Fanotify, String>>> = Mutex::new(None);

/// `[daemon] whodata`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Auto,
    Off,
    Require,
}

impl Mode {
    pub fn parse(s: &str) -> Option<Mode> {
        match s {
            "auto" => Some(Mode::Auto),
            "off" => Some(Mode::Off),
            "require" => Some(Mode::Require),
            _ => None,
        }
    }
}

/// Create the fanotify group now (call before any other thread exists), then drop
/// CAP_SYS_ADMIN. A failure is kept as the reason who-data is unavailable.
pub fn prepare() {
    let group = Fanotify::new().map_err(|e| match e.raw_os_error() {
        Some(libc::EPERM) => "fanotify needs CAP_SYS_ADMIN, which fimd does not have".to_string(),
        Some(libc::EINVAL) | Some(libc::ENOSYS) => {
            format!("this kernel's fanotify lacks file-handle or pidfd reporting ({e})")
        }
        _ => format!("fanotify_init failed: {e}"),
    });
    drop_sys_admin();
    if let Ok(mut g) = PREPARED.lock() {
        *g = Some(group);
    }
}

/// The prepared group, or why there is none (taken once).
pub fn take() -> Result<Fanotify, String> {
    match PREPARED.lock() {
        Ok(mut g) => g
            .take()
            .unwrap_or_else(|| Err("who-data was not prepared at start".to_string())),
        Err(_) => Err("who-data state poisoned".to_string()),
    }
}

/// Remove CAP_SYS_ADMIN from this thread's effective and permitted sets (threads made later
/// inherit that). Nothing to do when it was not held.
fn drop_sys_admin() {
    use rustix::thread::{capabilities, set_capabilities, CapabilitySet};
    let Ok(mut sets) = capabilities(None) else {
        return;
    };
    if !sets.permitted.contains(CapabilitySet::SYS_ADMIN) {
        return;
    }
    sets.effective.remove(CapabilitySet::SYS_ADMIN);
    sets.permitted.remove(CapabilitySet::SYS_ADMIN);
    sets.inheritable.remove(CapabilitySet::SYS_ADMIN);
    if let Err(e) = set_capabilities(None, sets) {
        eprintln!("fimd: cannot drop CAP_SYS_ADMIN after creating the fanotify group: {e}");
    }
}
