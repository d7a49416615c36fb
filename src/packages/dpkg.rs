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

impl super::PackageDb for DpkgIndex {
    fn manager(&self) -> super::Manager {
        super::Manager::Dpkg
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
