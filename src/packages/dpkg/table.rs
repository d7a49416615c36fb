//! The path table: about 1M entries on a big system, so no `String` per path. Directories are
//! interned once (`dirs`), file names live in one arena (`names`), and each entry is a
//! 32-byte record sorted by (directory id, name) for binary search. A path two packages list
//! (Multi-Arch: same, a file moving between packages) has one record per package.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};

/// One indexed file of one package.
#[derive(Debug, Clone, Copy)]
pub(super) struct Rec {
    dir: u32,
    name_off: u32,
    name_len: u16,
    pub flags: u8,
    pub pkg: u32,
    pub md5: [u8; 16],
}

#[derive(Debug, Default)]
pub(super) struct Table {
    dir_ids: HashMap<Box<[u8]>, u32>,
    names: Vec<u8>,
    /// Bytes of `names` no record points to any more (compacted past half).
    garbage: usize,
    recs: Vec<Rec>,
    /// `recs[..sorted]` is sorted; the rest was pushed since (a load sorts once at the end).
    sorted: usize,
}

/// `/a/b/c` -> (`/a/b`, `c`); a name of the root directory has dir `""`.
fn split(path: &[u8]) -> (&[u8], &[u8]) {
    match memchr::memrchr(b'/', path) {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (b"", path),
    }
}

impl Table {
    fn name(&self, r: &Rec) -> &[u8] {
        let start = r.name_off as usize;
        self.names
            .get(start..start + usize::from(r.name_len))
            .unwrap_or_default()
    }

    fn cmp_key(&self, r: &Rec, dir: u32, name: &[u8]) -> Ordering {
        r.dir.cmp(&dir).then_with(|| self.name(r).cmp(name))
    }

    /// Add one record (call `finish` before the next lookup). False when the arena would pass
    /// 4 GiB or the name is longer than any file system allows.
    pub fn push(&mut self, path: &[u8], pkg: u32, flags: u8, md5: [u8; 16]) -> bool {
        let (dir, name) = split(path);
        let (Ok(name_off), Ok(name_len)) =
            (u32::try_from(self.names.len()), u16::try_from(name.len()))
        else {
            return false;
        };
        let next = u32::try_from(self.dir_ids.len()).unwrap_or(u32::MAX);
        let dir = match self.dir_ids.get(dir) {
            Some(&id) => id,
            None => {
                self.dir_ids.insert(dir.into(), next);
                next
            }
        };
        self.names.extend_from_slice(name);
        self.recs.push(Rec {
            dir,
            name_off,
            name_len,
            flags,
            pkg,
            md5,
        });
        true
    }

    fn cmp_recs(&self, a: &Rec, b: &Rec) -> Ordering {
        a.dir
            .cmp(&b.dir)
            .then_with(|| self.name(a).cmp(self.name(b)))
    }

    /// Sort what `push` added: sort the new tail, then merge it in from the back, in place
    /// (linear, and no second copy of a million records during a one-package refresh).
    pub fn finish(&mut self) {
        let mut recs = std::mem::take(&mut self.recs);
        if self.sorted == 0 {
            // A fresh load: one sort, in place.
            recs.sort_unstable_by(|a, b| self.cmp_recs(a, b));
            self.sorted = recs.len();
            self.recs = recs;
            return;
        }
        let mut tail = recs.split_off(self.sorted.min(recs.len()));
        tail.sort_unstable_by(|a, b| self.cmp_recs(a, b));
        let (mut i, mut j) = (recs.len(), tail.len());
        recs.extend_from_slice(&tail);
        let mut k = recs.len();
        while j > 0 {
            k -= 1;
            if i > 0 && self.cmp_recs(&recs[i - 1], &tail[j - 1]) == Ordering::Greater {
                recs[k] = recs[i - 1];
                i -= 1;
            } else {
                recs[k] = tail[j - 1];
                j -= 1;
            }
        }
        if tail.len() > recs.len() / 2 {
            recs.shrink_to_fit();
        }
        self.sorted = recs.len();
        self.recs = recs;
    }

    /// Drop every record of these package slots (one pass, however many).
    pub fn remove_packages(&mut self, pkgs: &HashSet<u32>) {
        if pkgs.is_empty() {
            return;
        }
        self.finish();
        let mut freed = 0;
        self.recs.retain(|r| {
            let keep = !pkgs.contains(&r.pkg);
            if !keep {
                freed += usize::from(r.name_len);
            }
            keep
        });
        self.sorted = self.recs.len();
        self.garbage += freed;
        if self.garbage > self.names.len() / 2 {
            self.compact();
        }
    }

    /// Rewrite the name arena with only the names records use.
    fn compact(&mut self) {
        let mut names = Vec::with_capacity(self.names.len() - self.garbage);
        for r in &mut self.recs {
            let start = r.name_off as usize;
            let name = self
                .names
                .get(start..start + usize::from(r.name_len))
                .unwrap_or_default();
            r.name_off = u32::try_from(names.len()).unwrap_or(u32::MAX);
            names.extend_from_slice(name);
        }
        self.names = names;
        self.garbage = 0;
    }

    /// The records for `path` (several when packages share it).
    pub fn get(&self, path: &[u8]) -> &[Rec] {
        let (dir, name) = split(path);
        let Some(&dir) = self.dir_ids.get(dir) else {
            return &[];
        };
        let start = self
            .recs
            .partition_point(|r| self.cmp_key(r, dir, name) == Ordering::Less);
        let len = self.recs[start..]
            .iter()
            .take_while(|r| self.cmp_key(r, dir, name) == Ordering::Equal)
            .count();
        &self.recs[start..start + len]
    }

    pub fn len(&self) -> usize {
        self.recs.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_get_remove_compact() {
        let mut t = Table::default();
        assert!(t.push(b"/usr/bin/a", 0, 1, [1; 16]));
        assert!(t.push(b"/usr/bin/b", 0, 0, [0; 16]));
        assert!(t.push(b"/usr/share/doc/x/copyright", 1, 1, [2; 16]));
        t.finish();
        assert!(t.push(b"/usr/share/doc/x/copyright", 2, 1, [2; 16]));
        assert!(t.push(b"/usr/bin/0", 2, 1, [3; 16]));
        assert!(t.push(b"/usr/bin/aa", 2, 1, [4; 16]));
        t.finish();
        let keys: Vec<(u32, &[u8])> = t.recs.iter().map(|r| (r.dir, t.name(r))).collect();
        assert!(
            keys.windows(2).all(|w| w[0] <= w[1]),
            "merged in order: {keys:?}"
        );
        assert_eq!(t.get(b"/usr/bin/aa")[0].md5, [4; 16]);
        assert_eq!(t.get(b"/usr/bin/a")[0].md5, [1; 16]);
        assert_eq!(t.get(b"/usr/bin/0")[0].pkg, 2);
        assert_eq!(t.get(b"/usr/share/doc/x/copyright").len(), 2);
        assert!(t.get(b"/usr/bin").is_empty());
        assert!(t.get(b"/usr/bin/c").is_empty());
        t.remove_packages(&HashSet::from([0]));
        t.remove_packages(&HashSet::from([2]));
        assert_eq!(t.garbage, 0, "more than half was garbage: compacted");
        assert_eq!(t.names, b"copyright");
        let shared = t.get(b"/usr/share/doc/x/copyright");
        assert_eq!((shared.len(), shared[0].pkg), (1, 1));
        assert!(t.get(b"/usr/bin/a").is_empty());
        assert_eq!(t.len(), 1);
        assert!(!t.push(&vec![b'x'; 70_000], 3, 0, [0; 16]), "name too long");
    }
}
