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
impl super::PackageDb for RpmIndex {
    fn manager(&self) -> super::Manager {
        super::Manager::Rpm
    }
    fn owner(&self, _path: &Path) -> Option<super::Owner> {
        None
    }
    fn transaction_running(&self) -> bool {
        false
    }
    fn compare_versions(&self, a: &str, b: &str) -> std::cmp::Ordering {
        a.cmp(b)
    }
    fn is_database_file(&self, _path: &Path) -> bool {
        false
    }
    fn is_digest_file(&self, _path: &Path) -> bool {
        false
    }
    fn database_stamp(&self, _path: &Path) -> Option<String> {
        None
    }
    fn is_temporary(&self, _path: &Path) -> bool {
        false
    }
    fn in_repository(&self, _package: &str, _arch: &str, _version: &str) -> Option<bool> {
        None
    }
    fn refresh(&mut self, _changed: &Path) -> std::io::Result<bool> {
        Ok(false)
    }
    fn len(&self) -> usize {
        0
    }
}
