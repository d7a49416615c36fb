//! Ownership and permission checks on the config and the database, like sshd's StrictModes.
//!
//! When fimd runs as root, whoever can write its config decides what is monitored and where
//! alerts go, and whoever can write its database can rewrite the baseline. So, unless
//! `--insecure-permissions` is given:
//! - the file, and every directory above it up to `/`, must be owned by root and not
//!   writable by group or others. A directory with the sticky bit (like `/tmp`) may be
//!   world-writable if root owns it: there only an entry's owner can rename or delete it,
//!   and the entries below it are checked in turn;
//! - the path is checked as written (each component with `lstat`, so a symlink's owner
//!   counts) and as resolved (the directories the file really lives in);
//! - the database path (and its `-wal`, `-shm`, `-journal` companions) must not be a
//!   symlink: fimd would otherwise make the link's target its database.
//!
//! Missing components are skipped (the database and its directory are created later, 0600
//! in 0700). This module only reads metadata; it never changes a mode or an owner.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// What is being checked: decides the wording and whether a symlink is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Config,
    Database,
}

/// One unsafe component: which path, what is wrong, and the command that fixes it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} {problem}: {fix} (or pass --insecure-permissions on a test rig)", .path.display())]
pub struct Insecure {
    pub path: PathBuf,
    pub problem: String,
    pub fix: String,
}

/// Whether the checks apply: fimd runs as root and the operator did not opt out.
pub fn enforced(insecure_permissions: bool) -> bool {
    !insecure_permissions && rustix::process::geteuid().is_root()
}

/// Check `path` (the config file or the database) and the directories above it.
pub fn check(path: &Path, kind: Kind) -> Result<(), Insecure> {
    let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    if kind == Kind::Database {
        for companion in ["", "-wal", "-shm", "-journal"] {
            let mut name = path.clone().into_os_string();
            name.push(companion);
            check_not_symlink(Path::new(&name))?;
        }
    }
    // As written: every existing component, symlinks included (their owner matters).
    for p in path.ancestors() {
        check_entry(p, p == path)?;
    }
    // As resolved: the file a symlink points to, and the directories it really lives in.
    if let Some(existing) = nearest_existing(&path) {
        if let Ok(real) = std::fs::canonicalize(&existing) {
            for p in real.ancestors() {
                check_entry(p, existing == path && p == real)?;
            }
        }
    }
    if kind == Kind::Database {
        for companion in ["-wal", "-shm", "-journal"] {
            let mut name = path.clone().into_os_string();
            name.push(companion);
            check_entry(Path::new(&name), true)?;
        }
    }
    Ok(())
}

fn check_not_symlink(path: &Path) -> Result<(), Insecure> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => Err(Insecure {
            path: path.to_path_buf(),
            problem: "is a symbolic link (fimd would make its target the database)".into(),
            fix: format!(
                "remove it, or set daemon.database to the real path, a file in a root-only directory (rm {})",
                path.display()
            ),
        }),
        _ => Ok(()),
    }
}

/// The closest ancestor of `path` (itself included) that exists.
fn nearest_existing(path: &Path) -> Option<PathBuf> {
    path.ancestors()
        .find(|p| std::fs::symlink_metadata(p).is_ok())
        .map(Path::to_path_buf)
}

/// One component: root-owned, and not writable by group/others (sticky root directories
/// excepted; a symlink's own mode means nothing). A missing component is skipped.
fn check_entry(path: &Path, is_target: bool) -> Result<(), Insecure> {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    let shown = path.display();
    if meta.uid() != 0 {
        return Err(Insecure {
            path: path.to_path_buf(),
            problem: format!("is owned by uid {}, not root", meta.uid()),
            fix: format!("chown root {shown}"),
        });
    }
    let mode = meta.permissions().mode();
    let writable = mode & 0o022 != 0;
    let sticky = mode & 0o1000 != 0;
    let is_dir = meta.file_type().is_dir();
    if meta.file_type().is_symlink() || !writable || (is_dir && sticky && !is_target) {
        return Ok(());
    }
    Err(Insecure {
        path: path.to_path_buf(),
        problem: format!(
            "is writable by group or others (mode {:04o})",
            mode & 0o7777
        ),
        fix: format!("chmod go-w {shown}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn chmod(p: &Path, mode: u32) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }

    /// A root-only directory under the system temp dir, and a 0644 file in it.
    fn setup() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("fimd.toml");
        std::fs::write(&file, "").expect("write");
        chmod(&file, 0o644);
        (dir, file)
    }

    #[test]
    fn modes_and_owners() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipped: needs root (every file here must be root's)");
            return;
        }
        let (dir, file) = setup();
        assert_eq!(check(&file, Kind::Config), Ok(()));
        chmod(&file, 0o664);
        let e = check(&file, Kind::Config).expect_err("group-writable");
        assert_eq!(e.path, file);
        assert!(e.fix.starts_with("chmod go-w "), "{e}");
        chmod(&file, 0o644);
        chmod(dir.path(), 0o777);
        assert_eq!(
            check(&file, Kind::Config).map_err(|e| e.path),
            Err(dir.path().into())
        );
        // Sticky and root-owned, like /tmp: fine for a directory, never for the file.
        chmod(dir.path(), 0o1777);
        assert_eq!(check(&file, Kind::Config), Ok(()));
        chmod(&file, 0o1666);
        assert!(check(&file, Kind::Config).is_err());
        chmod(&file, 0o644);
        std::os::unix::fs::chown(&file, Some(65534), None).expect("chown");
        let e = check(&file, Kind::Config).expect_err("not root's");
        assert!(e.problem.contains("uid 65534"), "{e}");
        // Missing files are fine; their existing directories are still checked.
        assert_eq!(
            check(&dir.path().join("no/such.db"), Kind::Database),
            Ok(())
        );
    }

    #[test]
    fn database_symlinks_are_refused() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipped: needs root (every file here must be root's)");
            return;
        }
        let (dir, file) = setup();
        let link = dir.path().join("fimd.db");
        std::os::unix::fs::symlink(&file, &link).expect("symlink");
        let e = check(&link, Kind::Database).expect_err("symlink");
        assert!(e.problem.contains("symbolic link"), "{e}");
        // A dangling one too (today's main made its target the database).
        let dangling = dir.path().join("other.db");
        std::os::unix::fs::symlink(dir.path().join("target.db"), &dangling).expect("symlink");
        assert!(check(&dangling, Kind::Database).is_err());
        let wal = dir.path().join("real.db-wal");
        std::os::unix::fs::symlink(&file, &wal).expect("symlink");
        assert!(check(&dir.path().join("real.db"), Kind::Database).is_err());
        // A config may be a symlink (config management does that); its target is checked.
        assert_eq!(check(&link, Kind::Config), Ok(()));
        chmod(&file, 0o666);
        assert_eq!(
            check(&link, Kind::Config).map_err(|e| e.path),
            Err(file.clone())
        );
    }
}
