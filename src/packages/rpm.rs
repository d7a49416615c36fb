//! The rpm index (stub: being written).

use std::path::{Path, PathBuf};

/// Everything the rpmdb records about installed files.
#[derive(Debug, Default)]
pub struct RpmIndex {}

impl RpmIndex {
    /// Load from the rpmdb directory `db_dir` (holding `rpmdb.sqlite`) for the file system at `root`.
    pub fn load(_db_dir: &Path, _root: &Path) -> std::io::Result<RpmIndex> {
        Err(std::io::Error::other("rpm index not implemented yet"))
    }
}

/// `rpm_db = "auto"`: the sqlite rpmdb under `<root>/usr/lib/sysimage/rpm` or `<root>/var/lib/rpm`.
pub fn find_db(root: &Path) -> Option<PathBuf> {
    ["usr/lib/sysimage/rpm", "var/lib/rpm"]
        .iter()
        .map(|d| root.join(d))
        .find(|d| d.join("rpmdb.sqlite").is_file())
}
