//! Tamper evidence: HMAC-SHA256 over a canonical encoding of every baseline row, and a chain
//! over events (each event's MAC covers the previous event's MAC), so an edited, deleted or
//! reordered row is found by `fimd verify` and an altered baseline row by every scan.
//!
//! The encoding is length-prefixed field by field (never JSON re-serialised), so the writer
//! and the verifier cannot disagree on spacing or key order. The key never leaves this type.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::mac::hmac_sha256;
use crate::state::{Recorded, SecAttrs};

/// The key (resolved secret bytes), with a fingerprint to name it.
pub struct MacKey {
    key: Vec<u8>,
}

impl std::fmt::Debug for MacKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MacKey({})", self.id())
    }
}

impl Drop for MacKey {
    fn drop(&mut self) {
        self.key.fill(0);
    }
}

/// The MAC the chain starts from (no event before the first).
pub const CHAIN_START: [u8; 32] = [0; 32];

/// A canonical, unambiguous byte encoding: each field length-prefixed.
#[derive(Default)]
pub struct Canon(Vec<u8>);

impl Canon {
    fn bytes(&mut self, b: Option<&[u8]>) -> &mut Self {
        match b {
            Some(b) => {
                self.0.extend_from_slice(&(b.len() as u64).to_le_bytes());
                self.0.extend_from_slice(b);
            }
            None => self.0.extend_from_slice(&u64::MAX.to_le_bytes()),
        }
        self
    }
    fn text(&mut self, s: Option<&str>) -> &mut Self {
        self.bytes(s.map(str::as_bytes))
    }
    fn int(&mut self, n: i64) -> &mut Self {
        self.0.extend_from_slice(&n.to_le_bytes());
        self
    }
}

/// One `events` row's columns, exactly as stored.
#[derive(Debug, Clone, Default)]
pub struct EventColumns {
    pub id: i64,
    pub uid: Option<String>,
    pub time: String,
    pub time_ns: i64,
    pub host: String,
    pub source: String,
    pub event: String,
    pub path: Vec<u8>,
    pub from_path: Option<Vec<u8>>,
    pub changed: String,
    pub old: Option<String>,
    pub new: Option<String>,
    pub sensitive: bool,
    pub diff: Option<String>,
    pub severity: Option<String>,
    pub reason: Option<String>,
    pub actor: Option<String>,
    pub package: Option<String>,
}

impl MacKey {
    pub fn new(secret: &str) -> MacKey {
        MacKey {
            key: secret.as_bytes().to_vec(),
        }
    }

    /// 16 hex digits naming the key (an HMAC of a fixed label: says nothing about the key).
    pub fn id(&self) -> String {
        hex::encode(&hmac_sha256(&self.key, b"fimd key id v1")[..8])
    }

    /// The MAC of one baseline row.
    pub fn baseline(&self, path: &Path, r: &Recorded) -> [u8; 32] {
        let s = &r.state;
        let mut c = Canon::default();
        c.text(Some("fimd baseline v1"))
            .bytes(Some(path.as_os_str().as_bytes()))
            .text(Some(s.kind.as_str()))
            .int(s.size as i64)
            .int(i64::from(s.mode))
            .int(i64::from(s.uid))
            .int(i64::from(s.gid))
            .int(s.mtime_ns)
            .int(s.ctime_ns)
            .int(s.inode as i64)
            .int(s.nlink as i64)
            .bytes(s.sha256.as_ref().map(|h| h.as_slice()))
            .bytes(s.link_target.as_deref())
            .int(i64::from(r.sensitive))
            .int(r.hashed_at_ns)
            .text(r.package.as_deref())
            .text(SecAttrs::to_column(s.attrs.as_ref()).as_deref());
        hmac_sha256(&self.key, &c.0)
    }

    /// The MAC of one event, chained to the previous event's MAC.
    pub fn event(&self, prev: &[u8; 32], e: &EventColumns) -> [u8; 32] {
        let mut c = Canon::default();
        c.text(Some("fimd event v1"))
            .bytes(Some(prev))
            .int(e.id)
            .text(e.uid.as_deref())
            .text(Some(&e.time))
            .int(e.time_ns)
            .text(Some(&e.host))
            .text(Some(&e.source))
            .text(Some(&e.event))
            .bytes(Some(&e.path))
            .bytes(e.from_path.as_deref())
            .text(Some(&e.changed))
            .text(e.old.as_deref())
            .text(e.new.as_deref())
            .int(i64::from(e.sensitive))
            .text(e.diff.as_deref())
            .text(e.severity.as_deref())
            .text(e.reason.as_deref())
            .text(e.actor.as_deref())
            .text(e.package.as_deref());
        hmac_sha256(&self.key, &c.0)
    }

    /// The MAC of a chain anchor (see `retention`): the kept event `event_id` follows the
    /// kept event `after_id` (0: none) across pruned events, and its chain continues from
    /// `prev_mac`.
    pub fn anchor(&self, event_id: i64, after_id: i64, prev_mac: &[u8; 32]) -> [u8; 32] {
        let mut c = Canon::default();
        c.text(Some("fimd anchor v1"))
            .int(event_id)
            .int(after_id)
            .bytes(Some(prev_mac));
        hmac_sha256(&self.key, &c.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_cannot_slide_into_each_other() {
        let k = MacKey::new("k");
        let a = EventColumns {
            host: "ab".into(),
            source: "c".into(),
            ..EventColumns::default()
        };
        let b = EventColumns {
            host: "a".into(),
            source: "bc".into(),
            ..EventColumns::default()
        };
        assert_ne!(k.event(&CHAIN_START, &a), k.event(&CHAIN_START, &b));
        assert_ne!(k.event(&CHAIN_START, &a), k.event(&[1; 32], &a));
        assert_eq!(k.id().len(), 16);
        assert_ne!(k.id(), MacKey::new("other").id());
        assert!(!format!("{k:?}").contains("\"k\""));
    }
}
