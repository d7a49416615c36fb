//! fanotify with file-handle records (no crate parses them: `nix` drops the info records),
//! written on `libc`. One group with `FAN_REPORT_DFID_NAME | FAN_REPORT_FID |
//! FAN_REPORT_PIDFD` (and `FAN_REPORT_TARGET_FID` for `FAN_RENAME` where the kernel has it),
//! inode marks with `FAN_EVENT_ON_CHILD` on each watched directory (not recursive, like
//! inotify). Each event names the directory by its file handle plus the entry's name, and
//! carries the writer's pid and a pidfd, from which `actor` reads the process race-free.
//!
//! Directory handles are resolved through a map filled when a directory is marked (its
//! handle from `name_to_handle_at`); a handle not in the map (a directory renamed since) is
//! opened with `open_by_handle_at` (CAP_DAC_READ_SEARCH) and its path read back.
//!
//! Creating the group needs CAP_SYS_ADMIN (for pidfds and other processes' pids); marks do
//! not, so the capability can be dropped once [`Fanotify::new`] returned.

use std::collections::HashMap;
use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::scan::reach::reach;

/// Events fimd asks for on every marked directory (and its children).
const MASK: u64 = libc::FAN_CREATE
    | libc::FAN_DELETE
    | libc::FAN_DELETE_SELF
    | libc::FAN_MOVED_FROM
    | libc::FAN_MOVED_TO
    | libc::FAN_MOVE_SELF
    | libc::FAN_MODIFY
    | libc::FAN_CLOSE_WRITE
    | libc::FAN_ATTRIB
    | libc::FAN_EVENT_ON_CHILD
    | libc::FAN_ONDIR;

/// The longest file handle the kernel hands out (MAX_HANDLE_SZ).
const MAX_HANDLE: usize = 128;

/// A directory's identity in event records: its filesystem id, handle type and bytes.
type HandleKey = ([i32; 2], i32, Vec<u8>);

/// One event as read from the group.
#[derive(Debug)]
pub struct FanEvent {
    pub mask: u64,
    /// The writer's pid (0 for an overflow).
    pub pid: i32,
    /// A pidfd of the writer, `None` when it was already reaped (FAN_NOPIDFD).
    pub pidfd: Option<OwnedFd>,
    /// The entry the event is about: its directory + name (`None` if the directory could not
    /// be resolved).
    pub path: Option<PathBuf>,
    /// For `FAN_RENAME`: the old name (then `path` is the new one).
    pub from: Option<PathBuf>,
}

impl FanEvent {
    pub fn is_overflow(&self) -> bool {
        self.mask & libc::FAN_Q_OVERFLOW != 0
    }
    pub fn is_dir(&self) -> bool {
        self.mask & libc::FAN_ONDIR != 0
    }
}

/// A fanotify group and what it needs to name the paths of its events.
pub struct Fanotify {
    fd: OwnedFd,
    /// `FAN_RENAME` is reported (kernel 5.17+).
    pub renames: bool,
    dirs: HashMap<HandleKey, PathBuf>,
    /// One open directory per filesystem, for `open_by_handle_at`.
    mounts: HashMap<[i32; 2], OwnedFd>,
    marked: HashMap<PathBuf, HandleKey>,
}

impl std::fmt::Debug for Fanotify {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fanotify")
            .field("fd", &self.fd.as_raw_fd())
            .field("renames", &self.renames)
            .field("marks", &self.marked.len())
            .finish()
    }
}

fn init(flags: libc::c_uint) -> io::Result<OwnedFd> {
    let event_flags = (libc::O_RDONLY | libc::O_CLOEXEC | libc::O_LARGEFILE) as libc::c_uint;
    // SAFETY: a plain syscall; it returns a new descriptor that we own, or -1.
    let fd = unsafe { libc::fanotify_init(flags, event_flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by the kernel and is not owned by anyone else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

impl Fanotify {
    /// Create the group (needs CAP_SYS_ADMIN). Asks for rename records where the kernel has
    /// them, else without.
    pub fn new() -> io::Result<Fanotify> {
        let base = libc::FAN_CLASS_NOTIF
            | libc::FAN_CLOEXEC
            | libc::FAN_NONBLOCK
            | libc::FAN_REPORT_DFID_NAME
            | libc::FAN_REPORT_FID
            | libc::FAN_REPORT_PIDFD;
        let (fd, renames) = match init(base | libc::FAN_REPORT_TARGET_FID) {
            Ok(fd) => (fd, true),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => (init(base)?, false),
            Err(e) => return Err(e),
        };
        Ok(Fanotify {
            fd,
            renames,
            dirs: HashMap::new(),
            mounts: HashMap::new(),
            marked: HashMap::new(),
        })
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Number of marked directories.
    pub fn marks(&self) -> usize {
        self.marked.len()
    }

    /// Mark `dir` (its own events and its children's). Marking again is harmless.
    pub fn mark(&mut self, dir: &Path) -> io::Result<()> {
        let mut mask = MASK;
        if self.renames {
            mask |= libc::FAN_RENAME;
        }
        // `at`: the same directory by a path the kernel accepts (it may be deeper than
        // PATH_MAX); the maps keep the real path.
        let at = reach(dir)?;
        let c = cpath(at.path())?;
        // SAFETY: `c` is a valid NUL-terminated path; the kernel only reads it.
        let rc = unsafe {
            libc::fanotify_mark(
                self.fd.as_raw_fd(),
                libc::FAN_MARK_ADD | libc::FAN_MARK_ONLYDIR | libc::FAN_MARK_DONT_FOLLOW,
                mask,
                libc::AT_FDCWD,
                c.as_ptr(),
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        let key = handle_of(at.path())?;
        if let std::collections::hash_map::Entry::Vacant(slot) = self.mounts.entry(key.0) {
            slot.insert(open_dir(at.path())?);
        }
        self.dirs.insert(key.clone(), dir.to_path_buf());
        self.marked.insert(dir.to_path_buf(), key);
        Ok(())
    }

    /// Remove the mark of `dir` (a deleted or moved directory: a failure is harmless).
    pub fn unmark(&mut self, dir: &Path) {
        let gone: Vec<PathBuf> = self
            .marked
            .keys()
            .filter(|p| p.as_path() == dir)
            .cloned()
            .collect();
        for p in gone {
            if let Some(key) = self.marked.remove(&p) {
                self.dirs.remove(&key);
            }
            // `at` holds the descriptor its path goes through until the call is done.
            let Ok(at) = reach(&p) else { continue };
            if let Ok(c) = cpath(at.path()) {
                // SAFETY: as in `mark`; a failure (already gone) is harmless.
                unsafe {
                    libc::fanotify_mark(
                        self.fd.as_raw_fd(),
                        libc::FAN_MARK_REMOVE | libc::FAN_MARK_ONLYDIR | libc::FAN_MARK_DONT_FOLLOW,
                        MASK | if self.renames { libc::FAN_RENAME } else { 0 },
                        libc::AT_FDCWD,
                        c.as_ptr(),
                    );
                }
            }
        }
    }

    /// Read what is queued now (non-blocking: empty when nothing is).
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<Vec<FanEvent>> {
        // SAFETY: reading into a buffer we own, at most its length.
        let n = unsafe {
            libc::read(
                self.fd.as_raw_fd(),
                buf.as_mut_ptr().cast::<libc::c_void>(),
                buf.len(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(Vec::new()),
                _ => Err(e),
            };
        }
        let mut events = Vec::new();
        let mut data = &buf[..n as usize];
        while let Some(meta) = Metadata::parse(data) {
            let len = (meta.event_len as usize).min(data.len());
            let records = &data[(meta.metadata_len as usize).min(len)..len];
            events.push(self.event(&meta, records));
            data = &data[len..];
            if len == 0 {
                break;
            }
        }
        Ok(events)
    }

    fn event(&mut self, meta: &Metadata, mut records: &[u8]) -> FanEvent {
        let mut ev = FanEvent {
            mask: meta.mask,
            pid: meta.pid,
            pidfd: None,
            path: None,
            from: None,
        };
        // With FID reporting the event carries no file descriptor; close one if it does.
        if meta.fd >= 0 {
            // SAFETY: the kernel gave us this descriptor with the event; we own it now.
            drop(unsafe { OwnedFd::from_raw_fd(meta.fd) });
        }
        while records.len() >= 4 {
            let kind = records[0];
            let len = u16::from_ne_bytes([records[2], records[3]]) as usize;
            if len < 4 || len > records.len() {
                break;
            }
            let body = &records[4..len];
            match kind {
                libc::FAN_EVENT_INFO_TYPE_PIDFD => {
                    if let Some(b) = body.get(..4) {
                        let fd = i32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
                        if fd >= 0 {
                            // SAFETY: a pidfd the kernel installed for us with this event.
                            ev.pidfd = Some(unsafe { OwnedFd::from_raw_fd(fd) });
                        }
                    }
                }
                libc::FAN_EVENT_INFO_TYPE_DFID_NAME | libc::FAN_EVENT_INFO_TYPE_NEW_DFID_NAME => {
                    ev.path = self.resolve(body);
                }
                libc::FAN_EVENT_INFO_TYPE_OLD_DFID_NAME => {
                    ev.from = self.resolve(body);
                }
                _ => {} // FID of the object itself: the name record says more
            }
            records = &records[len..];
        }
        ev
    }

    /// A `fsid + file_handle + name` record to a path.
    fn resolve(&mut self, body: &[u8]) -> Option<PathBuf> {
        let fsid = [
            i32::from_ne_bytes(body.get(0..4)?.try_into().ok()?),
            i32::from_ne_bytes(body.get(4..8)?.try_into().ok()?),
        ];
        let bytes = u32::from_ne_bytes(body.get(8..12)?.try_into().ok()?) as usize;
        let kind = i32::from_ne_bytes(body.get(12..16)?.try_into().ok()?);
        let handle = body.get(16..16 + bytes)?;
        let rest = body.get(16 + bytes..)?;
        let name_end = rest.iter().position(|b| *b == 0).unwrap_or(rest.len());
        let name = &rest[..name_end];
        let key: HandleKey = (fsid, kind, handle.to_vec());
        let dir = match self.dirs.get(&key) {
            Some(d) => d.clone(),
            None => {
                let d = self.open_handle(&key)?;
                self.dirs.insert(key, d.clone());
                d
            }
        };
        Some(if name.is_empty() || name == b"." {
            dir
        } else {
            dir.join(OsStr::from_bytes(name))
        })
    }

    /// Open a directory by its handle and read its path back (a directory renamed since it
    /// was marked).
    fn open_handle(&self, key: &HandleKey) -> Option<PathBuf> {
        let mount = self.mounts.get(&key.0)?;
        let mut buf = handle_buf(key.2.len() as u32, key.1);
        buf.extend_from_slice(&key.2);
        // SAFETY: `buf` holds a complete `struct file_handle` (header + bytes).
        let fd = unsafe {
            libc::open_by_handle_at(
                mount.as_raw_fd(),
                buf.as_mut_ptr().cast::<libc::file_handle>(),
                libc::O_PATH | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return None;
        }
        // SAFETY: a new descriptor from the kernel, owned here.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
            .ok()
            .filter(|p| !p.as_os_str().as_bytes().ends_with(b" (deleted)"))
    }
}

/// `struct fanotify_event_metadata`, read field by field (no alignment assumed).
struct Metadata {
    event_len: u32,
    metadata_len: u16,
    mask: u64,
    fd: i32,
    pid: i32,
}

impl Metadata {
    fn parse(d: &[u8]) -> Option<Metadata> {
        let m = Metadata {
            event_len: u32::from_ne_bytes(d.get(0..4)?.try_into().ok()?),
            metadata_len: u16::from_ne_bytes(d.get(6..8)?.try_into().ok()?),
            mask: u64::from_ne_bytes(d.get(8..16)?.try_into().ok()?),
            fd: i32::from_ne_bytes(d.get(16..20)?.try_into().ok()?),
            pid: i32::from_ne_bytes(d.get(20..24)?.try_into().ok()?),
        };
        (d.get(4) == Some(&libc::FANOTIFY_METADATA_VERSION) && m.event_len as usize >= 24)
            .then_some(m)
    }
}

fn cpath(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path holds a NUL byte"))
}

/// A `struct file_handle` header for `bytes` bytes of handle.
fn handle_buf(bytes: u32, kind: i32) -> Vec<u8> {
    let mut buf = Vec::with_capacity(8 + MAX_HANDLE);
    buf.extend_from_slice(&bytes.to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf
}

/// The handle key of `dir`, as fanotify will report it.
fn handle_of(dir: &Path) -> io::Result<HandleKey> {
    let c = cpath(dir)?;
    let mut buf = handle_buf(MAX_HANDLE as u32, 0);
    buf.resize(8 + MAX_HANDLE, 0);
    let mut mount_id: libc::c_int = 0;
    // SAFETY: `buf` has room for a handle of MAX_HANDLE bytes, as its header says.
    let rc = unsafe {
        libc::name_to_handle_at(
            libc::AT_FDCWD,
            c.as_ptr(),
            buf.as_mut_ptr().cast::<libc::file_handle>(),
            &mut mount_id,
            0,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    let bytes = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    let kind = i32::from_ne_bytes([buf[4], buf[5], buf[6], buf[7]]);
    let handle = buf
        .get(8..8 + bytes)
        .ok_or_else(|| io::Error::other("file handle longer than MAX_HANDLE_SZ"))?
        .to_vec();
    Ok((fsid_of(&c)?, kind, handle))
}

fn fsid_of(c: &CString) -> io::Result<[i32; 2]> {
    // SAFETY: statfs fills the struct we pass; zeroed is a valid initial value for it.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is NUL-terminated, `st` is writable.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fsid_t is two ints (`__kernel_fsid_t`), the layout fanotify reports.
    Ok(unsafe { std::mem::transmute::<libc::fsid_t, [i32; 2]>(st.f_fsid) })
}

fn open_dir(dir: &Path) -> io::Result<OwnedFd> {
    let c = cpath(dir)?;
    // SAFETY: a plain open of a NUL-terminated path.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor, owned here.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Root only (CAP_SYS_ADMIN creates the group); skipped elsewhere.
    #[test]
    fn another_process_write_rename_and_delete_with_pid_and_pidfd() {
        let mut fan = match Fanotify::new() {
            Ok(f) => f,
            Err(e) => {
                // CI runs as root and sets FIMD_REQUIRE_ROOT: there this must not skip.
                assert!(
                    std::env::var_os("FIMD_REQUIRE_ROOT").is_none(),
                    "fanotify_init failed under FIMD_REQUIRE_ROOT: {e}"
                );
                eprintln!("skipped: fanotify needs CAP_SYS_ADMIN ({e})");
                return;
            }
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let base = std::fs::canonicalize(dir.path()).expect("canonical");
        fan.mark(&base).expect("mark");
        let script = format!(
            "echo x > '{0}/a' && mv '{0}/a' '{0}/b' && chmod 600 '{0}/b' && rm '{0}/b'",
            base.display()
        );
        let status = std::process::Command::new("sh")
            .args(["-c", &script])
            .status()
            .expect("sh");
        assert!(status.success());
        let mut buf = vec![0u8; 64 * 1024];
        let mut events = Vec::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while events.len() < 4 && std::time::Instant::now() < deadline {
            events.extend(fan.read(&mut buf).expect("read"));
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let a = base.join("a");
        let b = base.join("b");
        let created = events
            .iter()
            .find(|e| e.mask & libc::FAN_CREATE != 0 && e.path.as_deref() == Some(a.as_path()))
            .expect("create of a");
        assert!(created.pid > 0 && created.pid != std::process::id() as i32);
        assert!(events
            .iter()
            .any(|e| e.mask & libc::FAN_ATTRIB != 0 && e.path.as_deref() == Some(b.as_path())));
        assert!(events
            .iter()
            .any(|e| e.mask & libc::FAN_DELETE != 0 && e.path.as_deref() == Some(b.as_path())));
        if fan.renames {
            let r = events
                .iter()
                .find(|e| e.mask & libc::FAN_RENAME != 0)
                .expect("one rename record");
            assert_eq!(
                (r.from.as_deref(), r.path.as_deref()),
                (Some(a.as_path()), Some(b.as_path()))
            );
        }
    }
}
