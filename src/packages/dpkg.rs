//! The dpkg index (stub: being written).

use std::path::Path;

/// Everything dpkg records about installed files.
#[derive(Debug, Default)]
pub struct DpkgIndex {}

impl DpkgIndex {
    /// Load from `admin_dir` (`<root>/var/lib/dpkg`) for the file system at `root`.
    pub fn load(_admin_dir: &Path, _root: &Path) -> std::io::Result<DpkgIndex> {
        Err(std::io::Error::other("dpkg index not implemented yet"))
    }
}
