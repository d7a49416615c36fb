//! Renames (DESIGN.md "Renames"): within one scan, a file that disappeared from one name and
//! appeared under another with the same inode and the same content is one `renamed` event
//! (`path` the new name, `from` the old one), not `removed` + `added`. A scan holds its
//! `added` files back until it has looked for removals (the daemon's debounced batch, or the
//! end of a full scan), then pairs them. fimd does not record the device: the inode and the
//! SHA-256 together are the match.
//!
//! Held drafts keep their text content, so the hold is bounded ([`MAX_HELD`] files,
//! [`MAX_HELD_BYTES`] of text); past it, added files are recorded at once and a rename among
//! them shows as `removed` + `added`.

use std::collections::HashMap;

use super::record::Draft;
use super::Pipeline;
use crate::event::{path_for_json, EventKind};
use crate::state::{compare, Attr, FileKind};

/// The most `added` drafts held for pairing.
const MAX_HELD: usize = 4096;
/// ... and the most text content among them.
const MAX_HELD_BYTES: usize = 32 << 20;

/// `added` file drafts waiting for the removals of the same scan.
#[derive(Default)]
pub(super) struct Renames {
    held: Vec<Draft>,
    bytes: usize,
}

/// What pairs an added file with a removed one.
type Key = (u64, [u8; 32]);

fn added_key(d: &Draft) -> Option<Key> {
    let e = d.event.as_ref()?;
    let new = d.new.as_ref()?;
    (e.event == EventKind::Added && new.kind == FileKind::File).then_some((new.inode, new.sha256?))
}

fn removed_key(d: &Draft) -> Option<Key> {
    let e = d.event.as_ref()?;
    let old = &d.old.as_ref()?.state;
    (e.event == EventKind::Removed && old.kind == FileKind::File)
        .then_some((old.inode, old.sha256?))
}

impl Renames {
    /// Hold the `added` files of `drafts` (while there is room); the rest goes on.
    pub fn hold(&mut self, drafts: Vec<Draft>) -> Vec<Draft> {
        let mut rest = Vec::with_capacity(drafts.len());
        for d in drafts {
            let size = d.text_put.as_ref().map_or(0, Vec::len);
            let room = self.held.len() < MAX_HELD && self.bytes + size <= MAX_HELD_BYTES;
            if room && added_key(&d).is_some() {
                self.bytes += size;
                self.held.push(d);
            } else {
                rest.push(d);
            }
        }
        rest
    }

    /// Pair `removed` drafts with held `added` ones: each pair becomes one `renamed` draft.
    /// Returns the renamed and the unpaired removed drafts.
    pub fn pair(&mut self, pipeline: &Pipeline, removed: Vec<Draft>) -> Vec<Draft> {
        if self.held.is_empty() {
            return removed;
        }
        let mut by_key: HashMap<Key, Vec<usize>> = HashMap::new();
        for (i, d) in self.held.iter().enumerate() {
            if let Some(k) = added_key(d) {
                by_key.entry(k).or_default().push(i);
            }
        }
        let mut taken = vec![false; self.held.len()];
        let mut out = Vec::with_capacity(removed.len());
        let mut pairs = Vec::new();
        for r in removed {
            let hit = removed_key(&r)
                .and_then(|k| by_key.get_mut(&k))
                .and_then(|v| v.pop());
            match hit {
                Some(i) => {
                    taken[i] = true;
                    pairs.push((r, i));
                }
                None => out.push(r),
            }
        }
        let mut held: Vec<Option<Draft>> = std::mem::take(&mut self.held)
            .into_iter()
            .map(Some)
            .collect();
        for (r, i) in pairs {
            match held[i].take() {
                Some(a) => match renamed(pipeline, r, a) {
                    Ok(d) => out.push(d),
                    Err(both) => {
                        let (r, a) = *both;
                        out.push(r);
                        held[i] = Some(a);
                    }
                },
                None => out.push(r),
            }
        }
        self.held = held.into_iter().flatten().collect();
        self.bytes = self
            .held
            .iter()
            .map(|d| d.text_put.as_ref().map_or(0, Vec::len))
            .sum();
        out
    }

    /// Everything still held (no removal matched it).
    pub fn release(&mut self) -> Vec<Draft> {
        self.bytes = 0;
        std::mem::take(&mut self.held)
    }
}

/// One `renamed` draft from a removed and an added draft of the same file (both given back
/// if either lacks what a pair needs, which the keys already checked).
fn renamed(
    pipeline: &Pipeline,
    removed: Draft,
    added: Draft,
) -> Result<Draft, Box<(Draft, Draft)>> {
    let (Some(old), Some(new), Some(added_event)) =
        (removed.old.clone(), added.new.clone(), added.event.as_ref())
    else {
        return Err(Box::new((removed, added)));
    };
    // ctime moves with every rename: left out of `changed`.
    let changed: Vec<String> = compare(&old.state, &new)
        .into_iter()
        .filter(|a| *a != Attr::Ctime)
        .map(|a| a.as_str().to_string())
        .collect();
    let mut event = pipeline.event(
        EventKind::Renamed,
        &added.path,
        Some(&old.state),
        Some(&new),
        changed,
        old.sensitive || added_event.sensitive,
        None,
        added_event.source,
    );
    let added = Draft {
        event: None,
        ..added
    };
    let (from, from_hex) = path_for_json(&removed.path);
    event.from = Some(from);
    event.from_hex = from_hex;
    Ok(Draft {
        path: added.path,
        event: Some(event),
        old: Some(old),
        new: Some(new),
        upsert: added.upsert,
        delete: false,
        also_delete: Some(removed.path),
        text_put: added.text_put,
        text_delete: false,
        deferred: false,
    })
}
