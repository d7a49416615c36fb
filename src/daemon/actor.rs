//! Who made a change: the process behind a fanotify event, read race-free (DESIGN.md
//! "Actor"): open `/proc/<pid>` as a directory first, then check the event's pidfd still
//! refers to a process that exists (a zombie is fine: its pid cannot be reused until it is
//! reaped), then read everything through that directory descriptor (which answers ESRCH once
//! the process is reaped, never another process's data). A process gone before it could be
//! read gives an actor with its pid and `exited: true`. Never blocks on anything but /proc.

use std::collections::HashMap;
use std::ffi::CString;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Mutex;

use crate::event::Actor;

/// The login uid of a process without one (`/proc/<pid>/loginuid`).
const NO_LOGIN: u32 = u32::MAX;

/// Read the actor of `pid` (its `pidfd` from the event, if the kernel gave one).
pub fn read(pid: i32, pidfd: Option<&OwnedFd>) -> Actor {
    let mut actor = Actor {
        pid: pid.max(0) as u32,
        exited: true,
        ..Actor::default()
    };
    let Some(dir) = open_proc(pid) else {
        return actor;
    };
    // The directory was opened before this check: if the process still exists now (maybe
    // as a zombie), the directory is its own.
    if !pidfd.is_some_and(alive) {
        return actor;
    }
    let status = read_at(&dir, "status").unwrap_or_default();
    let field = |name: &str| -> Option<&str> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name).map(str::trim))
    };
    let first_number =
        |name: &str| -> Option<u32> { field(name)?.split_whitespace().next()?.parse().ok() };
    if status.is_empty() {
        return actor;
    }
    actor.ppid = first_number("PPid:");
    actor.uid = first_number("Uid:");
    actor.gid = first_number("Gid:");
    actor.user = actor.uid.and_then(|u| names().user(u));
    let zombie = field("State:").is_some_and(|s| s.starts_with('Z'));
    actor.comm = read_at(&dir, "comm").map(|c| c.trim_end_matches('\n').to_string());
    actor.auid = read_at(&dir, "loginuid")
        .and_then(|s| s.trim().parse().ok())
        .filter(|a| *a != NO_LOGIN);
    actor.login_user = actor.auid.and_then(|a| names().user(a));
    actor.session = read_at(&dir, "sessionid")
        .and_then(|s| s.trim().parse().ok())
        .filter(|s| *s != NO_LOGIN);
    actor.unit = read_at(&dir, "cgroup").and_then(|c| unit_of(&c));
    actor.cmdline = read_bytes_at(&dir, "cmdline")
        .map(|b| {
            b.split(|c| *c == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        })
        .unwrap_or_default();
    actor.exe = readlink_at(&dir, "exe");
    // Read while it lived (a zombie has exited: its cmdline and exe are gone).
    actor.exited = zombie || !pidfd.is_some_and(alive);
    actor
}

/// The last component of the process's cgroup path when it names a unit or a scope.
fn unit_of(cgroup: &str) -> Option<String> {
    let path = cgroup.lines().find_map(|l| l.strip_prefix("0::"))?;
    let last = path.trim().rsplit('/').next()?;
    [
        ".service", ".scope", ".socket", ".mount", ".timer", ".slice",
    ]
    .iter()
    .any(|s| last.ends_with(s) && !last.ends_with(".slice"))
    .then(|| last.to_string())
}

fn open_proc(pid: i32) -> Option<OwnedFd> {
    if pid <= 0 {
        return None;
    }
    let c = CString::new(format!("/proc/{pid}")).ok()?;
    // SAFETY: a plain open of a NUL-terminated path.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    // SAFETY: a new descriptor, owned here.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The process behind `pidfd` has not been reaped (signal 0 checks, sends nothing).
fn alive(pidfd: &OwnedFd) -> bool {
    // SAFETY: pidfd_send_signal with signal 0 only checks; no memory is passed.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            0,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

fn open_at(dir: &OwnedFd, name: &str) -> Option<std::fs::File> {
    let c = CString::new(name).ok()?;
    // SAFETY: openat relative to a directory descriptor we own.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            c.as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    };
    // SAFETY: a new descriptor, owned by the File.
    (fd >= 0).then(|| unsafe { std::fs::File::from_raw_fd(fd) })
}

fn read_bytes_at(dir: &OwnedFd, name: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    // /proc files are small; a cap keeps a huge cmdline from costing much.
    open_at(dir, name)?
        .take(64 * 1024)
        .read_to_end(&mut out)
        .ok()?;
    Some(out)
}

fn read_at(dir: &OwnedFd, name: &str) -> Option<String> {
    read_bytes_at(dir, name).map(|b| String::from_utf8_lossy(&b).into_owned())
}

fn readlink_at(dir: &OwnedFd, name: &str) -> Option<String> {
    let c = CString::new(name).ok()?;
    let mut buf = vec![0u8; 4096];
    // SAFETY: readlinkat into a buffer we own, at most its length.
    let n = unsafe {
        libc::readlinkat(
            dir.as_raw_fd(),
            c.as_ptr(),
            buf.as_mut_ptr().cast::<libc::c_char>(),
            buf.len(),
        )
    };
    (n > 0).then(|| String::from_utf8_lossy(&buf[..n as usize]).into_owned())
}

/// User names by uid from /etc/passwd, re-read when the file changes.
struct Names {
    users: HashMap<u32, String>,
    stamp: Option<std::time::SystemTime>,
}

static NAMES: Mutex<Option<Names>> = Mutex::new(None);

fn names() -> NamesGuard {
    let stamp = std::fs::metadata("/etc/passwd")
        .and_then(|m| m.modified())
        .ok();
    let mut g = NAMES.lock().unwrap_or_else(|p| p.into_inner());
    if g.as_ref().is_none_or(|n| n.stamp != stamp) {
        let text = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        let users = text
            .lines()
            .filter_map(|l| {
                let mut f = l.split(':');
                let name = f.next()?;
                let _ = f.next()?;
                Some((f.next()?.parse().ok()?, name.to_string()))
            })
            .collect();
        *g = Some(Names { users, stamp });
    }
    NamesGuard(g.as_ref().map(|n| n.users.clone()).unwrap_or_default())
}

struct NamesGuard(HashMap<u32, String>);

impl NamesGuard {
    fn user(&self, uid: u32) -> Option<String> {
        self.0.get(&uid).cloned()
    }
}

/// A pidfd for `pid` (tests; the daemon gets them from fanotify).
pub fn pidfd_open(pid: i32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    // SAFETY: a new descriptor, owned here.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_live_process_and_a_reaped_one() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("spawn sleep");
        let pid = child.id() as i32;
        let fd = pidfd_open(pid);
        // Right after exec the new image's arguments may not be readable yet: wait for them.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut a = read(pid, fd.as_ref());
        while a.cmdline.is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
            a = read(pid, fd.as_ref());
        }
        assert_eq!(a.comm.as_deref(), Some("sleep"));
        assert_eq!(a.cmdline, vec!["sleep".to_string(), "30".to_string()]);
        assert_eq!(a.ppid, Some(std::process::id()));
        assert!(!a.exited);
        assert!(a.exe.as_deref().is_some_and(|e| e.ends_with("sleep")));
        let _ = child.kill();
        let _ = child.wait();
        // Reaped: nothing but the pid.
        let a = read(pid, fd.as_ref());
        assert!(a.exited);
        assert_eq!(a.comm, None);
        assert_eq!(a.pid, pid as u32);
    }

    #[test]
    fn unit_from_cgroup() {
        assert_eq!(
            unit_of("0::/system.slice/ssh.service\n").as_deref(),
            Some("ssh.service")
        );
        assert_eq!(
            unit_of("0::/user.slice/user-1000.slice/session-5.scope\n").as_deref(),
            Some("session-5.scope")
        );
        assert_eq!(unit_of("0::/user.slice\n"), None);
        assert_eq!(unit_of("0::/\n"), None);
    }
}
