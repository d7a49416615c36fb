//! The security attributes of one path (DESIGN.md "Security attributes"): file capabilities,
//! POSIX ACLs, the SELinux label, every other extended attribute (by the SHA-256 of its value:
//! values can be secrets) and the inode flags (`chattr`). Metadata, never content: sensitive
//! files get them too.
//!
//! Read with `llistxattr`/`lgetxattr` (never following a symlink) and `FS_IOC_GETFLAGS` on an
//! open descriptor. A filesystem without xattrs or flags simply has none.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::AsFd;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The security attributes of one version of a path; each `None` when it has none.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecAttrs {
    /// `security.capability` as getcap prints it (`cap_net_bind_service=ep`).
    pub caps: Option<String>,
    /// The POSIX access ACL (and a directory's default ACL) in short text form.
    pub acl: Option<String>,
    /// `security.selinux`.
    pub selinux: Option<String>,
    /// Every other extended attribute: name -> sha256 (hex) of its value.
    pub xattrs: Option<BTreeMap<String, String>>,
    /// Inode flags as lsattr letters (`i` immutable, `a` append-only), in lsattr's order.
    pub flags: Option<String>,
}

impl SecAttrs {
    /// Only mode bits and nothing else: stored as NULL.
    pub fn is_empty(&self) -> bool {
        self == &SecAttrs::default()
    }

    /// The baseline column: NULL = not read, '' = none set, else JSON.
    pub fn to_column(attrs: Option<&SecAttrs>) -> Option<String> {
        match attrs {
            None => None,
            Some(a) if a.is_empty() => Some(String::new()),
            Some(a) => serde_json::to_string(a).ok(),
        }
    }

    /// Back from the baseline column (a malformed value counts as not read).
    pub fn from_column(text: Option<&str>) -> Option<SecAttrs> {
        match text? {
            "" => Some(SecAttrs::default()),
            json => serde_json::from_str(json).ok(),
        }
    }
}

const CAPS: &str = "security.capability";
const SELINUX: &str = "security.selinux";
const ACL_ACCESS: &str = "system.posix_acl_access";
const ACL_DEFAULT: &str = "system.posix_acl_default";

/// Read the attributes of `path`. `open` is a descriptor of the same file when the caller has
/// one (the hashing pass); otherwise regular files and directories are opened for their flags.
pub fn read(path: &Path, is_dir_or_file: bool, open: Option<&File>) -> SecAttrs {
    let mut a = SecAttrs::default();
    for name in list(path) {
        let Some(value) = get(path, &name) else {
            continue;
        };
        match name.as_str() {
            CAPS => a.caps = caps_text(&value),
            SELINUX => {
                let label = value.strip_suffix(&[0]).unwrap_or(&value);
                a.selinux = Some(String::from_utf8_lossy(label).into_owned());
            }
            ACL_ACCESS => {
                let text = acl_text(&value, "");
                a.acl = merge_acl(a.acl.take(), text, false);
            }
            ACL_DEFAULT => {
                let text = acl_text(&value, "default:");
                a.acl = merge_acl(a.acl.take(), text, true);
            }
            _ => {
                a.xattrs
                    .get_or_insert_with(BTreeMap::new)
                    .insert(name, hex::encode(Sha256::digest(&value)));
            }
        }
    }
    if is_dir_or_file {
        a.flags = match open {
            Some(f) => flags_of(f),
            None => open_for_flags(path).and_then(|f| flags_of(&f)),
        };
    }
    a
}

/// Access ACL first, then the default ACL, comma-separated.
fn merge_acl(have: Option<String>, new: Option<String>, new_is_default: bool) -> Option<String> {
    match (have, new) {
        (None, n) => n,
        (h, None) => h,
        (Some(h), Some(n)) if new_is_default => Some(format!("{h},{n}")),
        (Some(h), Some(n)) => Some(format!("{n},{h}")),
    }
}

fn list(path: &Path) -> Vec<String> {
    let mut buf = vec![0u8; 64 * 1024];
    let n = match rustix::fs::llistxattr(path, &mut buf[..]) {
        Ok(n) => n,
        Err(_) => return Vec::new(), // ENOTSUP, a vanished file: no attributes
    };
    buf[..n]
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

fn get(path: &Path, name: &str) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 64 * 1024];
    let n = rustix::fs::lgetxattr(path, name, &mut buf[..]).ok()?;
    buf.truncate(n);
    Some(buf)
}

fn open_for_flags(path: &Path) -> Option<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .ok()
}

/// lsattr's letters for the flags an administrator (or an attacker) sets. Flags the
/// filesystem sets by itself (`e` extents, `I` indexed directory, `N` inline data, `E`
/// encrypted, `V` verity, `h` huge file) are left out, so an ordinary file has none.
const FLAG_LETTERS: &[(u32, char)] = &[
    (0x0000_0001, 's'), // secure deletion
    (0x0000_0002, 'u'), // undeletable
    (0x0000_0008, 'S'), // synchronous updates
    (0x0001_0000, 'D'), // synchronous directory updates
    (0x0000_0010, 'i'), // immutable
    (0x0000_0020, 'a'), // append only
    (0x0000_0040, 'd'), // no dump
    (0x0000_0080, 'A'), // no atime
    (0x0000_0004, 'c'), // compressed
    (0x0000_4000, 'j'), // data journalling
    (0x0000_8000, 't'), // no tail merging
    (0x0002_0000, 'T'), // top of directory hierarchy
    (0x0080_0000, 'C'), // no copy on write
    (0x0200_0000, 'x'), // DAX
    (0x4000_0000, 'F'), // casefold
    (0x2000_0000, 'P'), // project hierarchy
    (0x0000_0400, 'm'), // do not compress
];

fn flags_of(f: &File) -> Option<String> {
    let bits = rustix::fs::ioctl_getflags(f.as_fd()).ok()?.bits();
    let letters: String = FLAG_LETTERS
        .iter()
        .filter(|(bit, _)| bits & bit != 0)
        .map(|(_, c)| *c)
        .collect();
    (!letters.is_empty()).then_some(letters)
}

/// Capability names by number (linux/capability.h), as libcap spells them.
const CAP_NAMES: &[&str] = &[
    "cap_chown",
    "cap_dac_override",
    "cap_dac_read_search",
    "cap_fowner",
    "cap_fsetid",
    "cap_kill",
    "cap_setgid",
    "cap_setuid",
    "cap_setpcap",
    "cap_linux_immutable",
    "cap_net_bind_service",
    "cap_net_broadcast",
    "cap_net_admin",
    "cap_net_raw",
    "cap_ipc_lock",
    "cap_ipc_owner",
    "cap_sys_module",
    "cap_sys_rawio",
    "cap_sys_chroot",
    "cap_sys_ptrace",
    "cap_sys_pacct",
    "cap_sys_admin",
    "cap_sys_boot",
    "cap_sys_nice",
    "cap_sys_resource",
    "cap_sys_time",
    "cap_sys_tty_config",
    "cap_mknod",
    "cap_lease",
    "cap_audit_write",
    "cap_audit_control",
    "cap_setfcap",
    "cap_mac_override",
    "cap_mac_admin",
    "cap_syslog",
    "cap_wake_alarm",
    "cap_block_suspend",
    "cap_audit_read",
    "cap_perfmon",
    "cap_bpf",
    "cap_checkpoint_restore",
];

/// Parsed file capabilities: per capability number, its (effective, inheritable, permitted).
pub type CapSets = BTreeMap<u32, (bool, bool, bool)>;

/// Decode `security.capability` (struct vfs_cap_data, v1/v2/v3, little endian).
pub fn parse_caps(value: &[u8]) -> Option<CapSets> {
    let word = |i: usize| -> Option<u32> {
        let b = value.get(i * 4..i * 4 + 4)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let magic = word(0)?;
    let effective = magic & 1 != 0;
    let (permitted, inheritable): (u64, u64) = match magic & 0xff00_0000 {
        0x0100_0000 => (u64::from(word(1)?), u64::from(word(2)?)),
        0x0200_0000 | 0x0300_0000 => (
            u64::from(word(1)?) | (u64::from(word(3)?) << 32),
            u64::from(word(2)?) | (u64::from(word(4)?) << 32),
        ),
        _ => return None,
    };
    let mut sets = CapSets::new();
    for cap in 0..64u32 {
        let (p, i) = (permitted >> cap & 1 == 1, inheritable >> cap & 1 == 1);
        if p || i {
            sets.insert(cap, (effective && p, i, p));
        }
    }
    Some(sets)
}

fn cap_name(cap: u32) -> String {
    CAP_NAMES
        .get(cap as usize)
        .map(|s| s.to_string())
        .unwrap_or_else(|| cap.to_string())
}

/// `cap_net_admin,cap_net_raw=ep cap_sys_time+i`-style text, as getcap prints the common
/// cases: capabilities grouped by their flags, each group `names=flags`.
pub fn caps_text(value: &[u8]) -> Option<String> {
    let sets = parse_caps(value)?;
    if sets.is_empty() {
        return None;
    }
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (cap, (e, i, p)) in &sets {
        let mut flags = String::new();
        if *e {
            flags.push('e');
        }
        if *i {
            flags.push('i');
        }
        if *p {
            flags.push('p');
        }
        groups.entry(flags).or_default().push(cap_name(*cap));
    }
    let text: Vec<String> = groups
        .into_iter()
        .map(|(flags, names)| format!("{}={flags}", names.join(",")))
        .collect();
    Some(text.join(" "))
}

/// Parse capability text back (the recorded form) into sets, for comparing versions.
pub fn parse_caps_text(text: &str) -> CapSets {
    let mut sets = CapSets::new();
    for group in text.split_whitespace() {
        let Some((names, flags)) = group.split_once(['=', '+']) else {
            continue;
        };
        let (e, i, p) = (
            flags.contains('e'),
            flags.contains('i'),
            flags.contains('p'),
        );
        for name in names.split(',') {
            let cap = CAP_NAMES
                .iter()
                .position(|n| *n == name)
                .map(|n| n as u32)
                .or_else(|| name.parse().ok());
            if let Some(cap) = cap {
                sets.insert(cap, (e, i, p));
            }
        }
    }
    sets
}

/// Capabilities (with flags) in `new` that `old` lacked: `cap_setuid+ep`.
pub fn caps_text_gained(old: Option<&str>, new: &str) -> Option<String> {
    let old = old.map(parse_caps_text).unwrap_or_default();
    let mut gained = Vec::new();
    for (cap, (e, i, p)) in parse_caps_text(new) {
        let (oe, oi, op) = old.get(&cap).copied().unwrap_or((false, false, false));
        let mut flags = String::new();
        for (now, before, c) in [(e, oe, 'e'), (i, oi, 'i'), (p, op, 'p')] {
            if now && !before {
                flags.push(c);
            }
        }
        if !flags.is_empty() {
            gained.push(format!("{}+{flags}", cap_name(cap)));
        }
    }
    (!gained.is_empty()).then(|| gained.join(" "))
}

/// ACL tags (linux/posix_acl_xattr.h).
const ACL_USER_OBJ: u16 = 0x01;
const ACL_USER: u16 = 0x02;
const ACL_GROUP_OBJ: u16 = 0x04;
const ACL_GROUP: u16 = 0x08;
const ACL_MASK: u16 = 0x10;
const ACL_OTHER: u16 = 0x20;

/// The short text form of an ACL xattr (`user::rw-,user:alice:r--,group::r--,mask::r--,
/// other::r--`), `None` when it holds only the three entries the mode bits already say.
pub fn acl_text(value: &[u8], prefix: &str) -> Option<String> {
    let version = u32::from_le_bytes(value.get(..4)?.try_into().ok()?);
    if version != 2 {
        return None;
    }
    let entries: Vec<(u16, u16, u32)> = value[4..]
        .chunks_exact(8)
        .map(|e| {
            (
                u16::from_le_bytes([e[0], e[1]]),
                u16::from_le_bytes([e[2], e[3]]),
                u32::from_le_bytes([e[4], e[5], e[6], e[7]]),
            )
        })
        .collect();
    let extended = entries
        .iter()
        .any(|(tag, _, _)| matches!(*tag, ACL_USER | ACL_GROUP | ACL_MASK));
    if !extended && prefix.is_empty() {
        return None;
    }
    let perm = |p: u16| {
        format!(
            "{}{}{}",
            if p & 4 != 0 { 'r' } else { '-' },
            if p & 2 != 0 { 'w' } else { '-' },
            if p & 1 != 0 { 'x' } else { '-' }
        )
    };
    let parts: Vec<String> = entries
        .iter()
        .filter_map(|(tag, p, id)| {
            let (kind, qualifier) = match *tag {
                ACL_USER_OBJ => ("user", String::new()),
                ACL_USER => ("user", user_name(*id)),
                ACL_GROUP_OBJ => ("group", String::new()),
                ACL_GROUP => ("group", group_name(*id)),
                ACL_MASK => ("mask", String::new()),
                ACL_OTHER => ("other", String::new()),
                _ => return None,
            };
            Some(format!("{prefix}{kind}:{qualifier}:{}", perm(*p)))
        })
        .collect();
    Some(parts.join(","))
}

/// A user name from `/etc/passwd` (getfacl shows names), the number when unknown.
fn user_name(uid: u32) -> String {
    name_from("/etc/passwd", uid).unwrap_or_else(|| uid.to_string())
}

fn group_name(gid: u32) -> String {
    name_from("/etc/group", gid).unwrap_or_else(|| gid.to_string())
}

fn name_from(file: &str, id: u32) -> Option<String> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let _password = fields.next()?;
        (fields.next()?.parse::<u32>().ok()? == id).then(|| name.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps_v2(effective: bool, permitted: u64, inheritable: u64) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&(0x0200_0000u32 | u32::from(effective)).to_le_bytes());
        v.extend_from_slice(&(permitted as u32).to_le_bytes());
        v.extend_from_slice(&(inheritable as u32).to_le_bytes());
        v.extend_from_slice(&((permitted >> 32) as u32).to_le_bytes());
        v.extend_from_slice(&((inheritable >> 32) as u32).to_le_bytes());
        v
    }

    #[test]
    fn capability_text_like_getcap() {
        assert_eq!(
            caps_text(&caps_v2(true, 1 << 10, 0)).as_deref(),
            Some("cap_net_bind_service=ep")
        );
        assert_eq!(
            caps_text(&caps_v2(true, (1 << 12) | (1 << 13), 0)).as_deref(),
            Some("cap_net_admin,cap_net_raw=ep")
        );
        assert_eq!(
            caps_text(&caps_v2(false, 0, 1 << 7)).as_deref(),
            Some("cap_setuid=i")
        );
        assert_eq!(
            caps_text(&caps_v2(false, 1 << 40, 0)).as_deref(),
            Some("cap_checkpoint_restore=p")
        );
        assert_eq!(caps_text(&[1, 2]), None, "truncated");
        assert_eq!(
            caps_text_gained(
                Some("cap_net_bind_service=ep"),
                "cap_net_bind_service,cap_setuid=ep"
            )
            .as_deref(),
            Some("cap_setuid+ep")
        );
        assert_eq!(
            caps_text_gained(Some("cap_setuid=ep"), "cap_setuid=p"),
            None,
            "narrowed"
        );
        assert_eq!(
            caps_text_gained(Some("cap_setuid=p"), "cap_setuid=ep").as_deref(),
            Some("cap_setuid+e")
        );
    }

    #[test]
    fn acl_text_short_form() {
        let entry = |tag: u16, perm: u16, id: u32| {
            let mut v = tag.to_le_bytes().to_vec();
            v.extend_from_slice(&perm.to_le_bytes());
            v.extend_from_slice(&id.to_le_bytes());
            v
        };
        let mut acl = 2u32.to_le_bytes().to_vec();
        for e in [
            entry(ACL_USER_OBJ, 6, u32::MAX),
            entry(ACL_USER, 7, 0),
            entry(ACL_GROUP_OBJ, 4, u32::MAX),
            entry(ACL_MASK, 7, u32::MAX),
            entry(ACL_OTHER, 4, u32::MAX),
        ] {
            acl.extend(e);
        }
        assert_eq!(
            acl_text(&acl, "").as_deref(),
            Some("user::rw-,user:root:rwx,group::r--,mask::rwx,other::r--")
        );
        let mut plain = 2u32.to_le_bytes().to_vec();
        for e in [
            entry(ACL_USER_OBJ, 6, 0),
            entry(ACL_GROUP_OBJ, 4, 0),
            entry(ACL_OTHER, 4, 0),
        ] {
            plain.extend(e);
        }
        assert_eq!(acl_text(&plain, ""), None, "mode bits only");
        assert_eq!(acl_text(&[9], ""), None);
    }
}
