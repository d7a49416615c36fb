//! The change event: DESIGN.md's JSON shape, shared by `check --json`, `events --json`, the
//! journal and every alert sink. Holds metadata, hashes and (for non-sensitive text files) a
//! diff; never the content of a sensitive file.
//!
//! Paths that are not valid UTF-8 are reported unambiguously: `path` then holds the lossy text
//! (invalid bytes become U+FFFD) and `path_hex` holds the exact bytes in hex. `path_hex` is
//! absent for every UTF-8 path. `link_target` / `link_target_hex` in a state object follow the
//! same rule.

use serde::{Deserialize, Serialize};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::state::{FileKind, FileState};
use crate::timefmt::rfc3339_ns;

/// `added`, `removed`, `modified` or `renamed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    Added,
    Removed,
    Modified,
    /// `path` is the new name, `from` the old one.
    Renamed,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Added => "added",
            EventKind::Removed => "removed",
            EventKind::Modified => "modified",
            EventKind::Renamed => "renamed",
        }
    }
    pub fn parse(s: &str) -> Option<EventKind> {
        match s {
            "added" => Some(EventKind::Added),
            "removed" => Some(EventKind::Removed),
            "modified" => Some(EventKind::Modified),
            "renamed" => Some(EventKind::Renamed),
            _ => None,
        }
    }
    /// AIDE-compatible exit-code bits: 1 added, 2 removed, 4 changed; a rename counts as a
    /// removal and an addition, as AIDE reports a move.
    pub fn exit_bit(self) -> u8 {
        match self {
            EventKind::Added => 1,
            EventKind::Removed => 2,
            EventKind::Modified => 4,
            EventKind::Renamed => 3,
        }
    }
}

/// Which part of fimd noticed the change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Inotify,
    Rescan,
    Check,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Inotify => "inotify",
            Source::Rescan => "rescan",
            Source::Check => "check",
        }
    }
    pub fn parse(s: &str) -> Option<Source> {
        match s {
            "inotify" => Some(Source::Inotify),
            "rescan" => Some(Source::Rescan),
            "check" => Some(Source::Check),
            _ => None,
        }
    }
}

/// One version of a path as shown in an event (`old` / `new`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateJson {
    #[serde(rename = "type")]
    pub kind: String,
    pub size: u64,
    pub mode: String,
    pub uid: u32,
    pub gid: u32,
    pub mtime: String,
    pub ctime: String,
    pub inode: u64,
    pub nlink: u64,
    pub sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_target_hex: Option<String>,
    /// File capabilities as getcap prints them; null when none (or not recorded).
    #[serde(default)]
    pub caps: Option<String>,
    /// POSIX ACL short text; null when only the mode bits.
    #[serde(default)]
    pub acl: Option<String>,
    #[serde(default)]
    pub selinux: Option<String>,
    /// Other extended attributes: name -> sha256 of the value.
    #[serde(default)]
    pub xattrs: Option<std::collections::BTreeMap<String, String>>,
    /// Inode flags as lsattr letters.
    #[serde(default)]
    pub flags: Option<String>,
}

impl From<&FileState> for StateJson {
    fn from(s: &FileState) -> Self {
        let (link_target, link_target_hex) = match &s.link_target {
            Some(t) => {
                let (text, hex) = bytes_for_json(t);
                (Some(text), hex)
            }
            None => (None, None),
        };
        StateJson {
            kind: s.kind.as_str().to_string(),
            size: s.size,
            mode: format!("{:04o}", s.mode & 0o7777),
            uid: s.uid,
            gid: s.gid,
            mtime: rfc3339_ns(s.mtime_ns),
            ctime: rfc3339_ns(s.ctime_ns),
            inode: s.inode,
            nlink: s.nlink,
            sha256: s.sha256.map(hex::encode),
            link_target,
            link_target_hex,
            caps: s.attrs.as_ref().and_then(|a| a.caps.clone()),
            acl: s.attrs.as_ref().and_then(|a| a.acl.clone()),
            selinux: s.attrs.as_ref().and_then(|a| a.selinux.clone()),
            xattrs: s.attrs.as_ref().and_then(|a| a.xattrs.clone()),
            flags: s.attrs.as_ref().and_then(|a| a.flags.clone()),
        }
    }
}

impl StateJson {
    /// The file kind, if the stored name is one fimd knows.
    pub fn file_kind(&self) -> Option<FileKind> {
        FileKind::parse(&self.kind)
    }
}

/// How serious a change is (DESIGN.md "Severity"); ordered, `Info` lowest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 5] = [
        Severity::Info,
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    pub fn parse(s: &str) -> Option<Severity> {
        Severity::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// The journal PRIORITY (syslog level): critical 2, high 3, medium 4, low 5, info 6.
    pub fn priority(self) -> u8 {
        match self {
            Severity::Critical => 2,
            Severity::High => 3,
            Severity::Medium => 4,
            Severity::Low => 5,
            Severity::Info => 6,
        }
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who made a change (DESIGN.md "Actor"): filled by the who-data backend, `null` otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Actor {
    pub pid: u32,
    pub ppid: Option<u32>,
    pub uid: Option<u32>,
    pub user: Option<String>,
    pub gid: Option<u32>,
    pub auid: Option<u32>,
    pub login_user: Option<String>,
    pub session: Option<u32>,
    pub comm: Option<String>,
    pub exe: Option<String>,
    pub cmdline: Vec<String>,
    pub unit: Option<String>,
    pub exited: bool,
}

/// The package-manager explanation of a change (DESIGN.md "Packages").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageInfo {
    /// `dpkg` or `rpm`.
    pub manager: String,
    pub name: String,
    pub arch: String,
    /// The version installed now (for a removal: the version the file came from).
    pub version: String,
    /// The version the file came from before this change, when known.
    pub old_version: Option<String>,
    /// `install`, `upgrade`, `downgrade`, `reinstall` or `remove`; `null` when the change was
    /// not made by the package manager (a hand edit of a package's file).
    pub action: Option<String>,
    /// The new content matches the digest the package recorded.
    pub verified: bool,
    /// The digest algorithm the package database recorded (`md5`, `sha256`), `null` if none.
    pub digest: Option<String>,
    pub conffile: bool,
}

/// One change, exactly as every output and sink shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Database id; `null` for `check --dry-run`, which records nothing.
    pub id: Option<i64>,
    /// `"<instance>:<id>"`: the event's identity everywhere; `null` when not recorded.
    pub uid: Option<String>,
    /// When fimd recorded the change (after debounce and hashing), RFC 3339 UTC.
    pub time: String,
    pub host: String,
    pub source: Source,
    pub event: EventKind,
    /// The path as text (lossy when not UTF-8; then `path_hex` is set).
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_hex: Option<String>,
    /// `renamed`: the old name (lossy text; exact bytes in `from_hex` when not UTF-8).
    pub from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_hex: Option<String>,
    pub severity: Severity,
    /// One short sentence saying why `severity`.
    pub reason: String,
    pub changed: Vec<String>,
    pub old: Option<StateJson>,
    pub new: Option<StateJson>,
    pub sensitive: bool,
    pub diff: Option<String>,
    pub actor: Option<Actor>,
    pub package: Option<PackageInfo>,
}

impl Event {
    /// An event with nothing but its kind, source and path filled in (severity medium until
    /// the explain stage rates it).
    pub fn new(source: Source, event: EventKind, path: &str) -> Event {
        Event {
            id: None,
            uid: None,
            time: String::new(),
            host: String::new(),
            source,
            event,
            path: path.to_string(),
            path_hex: None,
            from: None,
            from_hex: None,
            severity: Severity::Medium,
            reason: String::new(),
            changed: Vec::new(),
            old: None,
            new: None,
            sensitive: false,
            diff: None,
            actor: None,
            package: None,
        }
    }

    /// The exact bytes of `from` (renamed events).
    pub fn from_buf(&self) -> Option<PathBuf> {
        let text = self.from.as_ref()?;
        Some(
            match self.from_hex.as_deref().and_then(|h| hex::decode(h).ok()) {
                Some(bytes) => PathBuf::from(OsStr::from_bytes(&bytes)),
                None => PathBuf::from(text),
            },
        )
    }

    /// The exact path bytes.
    pub fn path_buf(&self) -> PathBuf {
        match self.path_hex.as_deref().and_then(|h| hex::decode(h).ok()) {
            Some(bytes) => PathBuf::from(OsStr::from_bytes(&bytes)),
            None => PathBuf::from(&self.path),
        }
    }
}

/// `(text, hex)`: text as-is when valid UTF-8 (hex `None`), else lossy text plus exact hex.
pub fn bytes_for_json(bytes: &[u8]) -> (String, Option<String>) {
    match std::str::from_utf8(bytes) {
        Ok(s) => (s.to_string(), None),
        Err(_) => (
            String::from_utf8_lossy(bytes).into_owned(),
            Some(hex::encode(bytes)),
        ),
    }
}

/// `(path, path_hex)` for an event.
pub fn path_for_json(path: &Path) -> (String, Option<String>) {
    bytes_for_json(path.as_os_str().as_bytes())
}

/// A path for one line of human output: invalid UTF-8 bytes as `\xNN`, control characters
/// (a newline in a file name, C0 and C1 escapes that drive a terminal) and backslashes
/// escaped, so one path is always one line, cannot rewrite the screen and its exact bytes can
/// be read back (tests/properties.rs): ASCII controls as `\n`, `\t`, `\r` or `\xNN`, the C1
/// controls as `\u{85}`, bidi controls (U+202E) as `\u{202e}`, so a name cannot show itself
/// reversed.
pub fn display_path(path: &Path) -> String {
    escape_bytes(path.as_os_str().as_bytes())
}

/// See [`display_path`].
pub fn escape_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                c => push_escaped(&mut out, c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// Multi-line text a file's writer chose (a stored diff), for a terminal: newlines and tabs
/// stay, every other control character and the bidi controls are escaped as in
/// [`escape_bytes`]. Backslashes stay as they are (configs are full of them), so this is for
/// reading; `fimd diff --raw` gives the exact text.
pub fn escape_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' | '\t' => out.push(c),
            c => push_escaped(&mut out, c),
        }
    }
    out
}

/// Bidirectional formatting characters: embeddings and overrides (U+202A-U+202E), isolates
/// (U+2066-U+2069) and the marks (U+200E, U+200F, U+061C). On a terminal they reorder the
/// text around them ("Trojan Source").
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}' | '\u{61c}')
}

/// `c`, or its escape when it is a control (C0, DEL, C1) or bidi character.
fn push_escaped(out: &mut String, c: char) {
    if c.is_ascii_control() {
        out.push_str(&format!("\\x{:02x}", c as u32));
    } else if c.is_control() {
        // C1 controls (U+0080..U+009F) as `\u{..}`: `\x80` is the invalid byte 0x80.
        out.push_str(&format!("\\u{{{:x}}}", c as u32));
    } else if is_bidi_control(c) {
        out.push_str(&format!("\\u{{{:04x}}}", c as u32));
    } else {
        out.push(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_utf8_paths_round_trip_and_are_marked() {
        let p = PathBuf::from(OsStr::from_bytes(b"/etc/caf\xe9\n.conf"));
        let (text, hex) = path_for_json(&p);
        assert!(text.contains('\u{fffd}'));
        let hex = hex.unwrap_or_default();
        assert_eq!(hex, "2f6574632f636166e90a2e636f6e66");
        assert_eq!(display_path(&p), "/etc/caf\\xe9\\n.conf");
        // U+0085 (NEL, a C1 control) is not the invalid byte 0x85.
        let nel = PathBuf::from("/etc/a\u{85}b");
        assert_eq!(display_path(&nel), "/etc/a\\u{85}b");
        assert_eq!(
            display_path(Path::new(OsStr::from_bytes(b"/etc/a\x85b"))),
            "/etc/a\\x85b"
        );
        let ev = Event {
            id: Some(1),
            time: String::new(),
            host: "h".into(),
            source: Source::Check,
            event: EventKind::Added,
            path: text,
            path_hex: Some(hex),
            ..Event::new(Source::Check, EventKind::Added, "")
        };
        assert_eq!(ev.path_buf(), p);
        let utf8 = path_for_json(Path::new("/etc/ok conf"));
        assert_eq!(utf8, ("/etc/ok conf".to_string(), None));
    }

    /// #16 item 6: what a file's writer controls never drives the terminal.
    #[test]
    fn terminal_controls_and_bidi_are_escaped() {
        let name = "/etc/x\u{1b}]0;owned\u{7}\u{9b}2J\u{202e}fdp.conf\u{2066}";
        assert_eq!(
            display_path(Path::new(name)),
            "/etc/x\\x1b]0;owned\\x07\\u{9b}2J\\u{202e}fdp.conf\\u{2066}"
        );
        let diff = "+a\tb \\ c\n+\u{1b}[2J\u{9b}1m\u{202d}x\r\n";
        assert_eq!(
            escape_text(diff),
            "+a\tb \\ c\n+\\x1b[2J\\u{9b}1m\\u{202d}x\\x0d\n"
        );
        assert_eq!(escape_text("caf\u{e9} \u{5d0}\n"), "caf\u{e9} \u{5d0}\n");
    }

    #[test]
    fn state_json_mode_is_four_octal_digits() {
        let s = FileState {
            kind: FileKind::File,
            size: 1,
            mode: 0o4755,
            uid: 0,
            gid: 0,
            mtime_ns: 0,
            ctime_ns: 0,
            inode: 1,
            nlink: 1,
            sha256: Some([0xab; 32]),
            link_target: None,
            attrs: None,
        };
        let j = StateJson::from(&s);
        assert_eq!(j.mode, "4755");
        assert_eq!(j.sha256.as_deref().map(str::len), Some(64));
        let v = serde_json::to_value(&j).unwrap_or_default();
        assert_eq!(v["type"], "file");
        assert!(v.get("link_target").is_none());
    }
}
