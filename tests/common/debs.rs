//! Real Debian packages in a private dpkg root: build a tiny `.deb` with `dpkg-deb --build`,
//! make an empty dpkg database under `<root>/var/lib/dpkg`, and install, upgrade, downgrade,
//! remove or divert with the real `dpkg --root=<root>`.
//!
//! ```ignore
//! let root = tmp.path().join("root");
//! let admin = debs::empty_root(&root);
//! let v1 = debs::Deb::new("foo", "1.0-1")
//!     .file("/usr/bin/foo", b"#!/bin/sh\n", 0o755)
//!     .file("/etc/foo.conf", b"x = 1\n", 0o644)
//!     .conffile("/etc/foo.conf")
//!     .build(tmp.path());
//! debs::install(&root, &v1);        // again with a newer .deb: an upgrade
//! debs::remove(&root, "foo");       // or debs::purge
//! ```
//!
//! As root, `--root` alone is enough for packages without maintainer scripts (it sets both
//! the install dir and the admin dir); `--log` keeps the run out of the host's
//! `/var/log/dpkg.log` (dpkg 1.21 does not prefix its default log path with `--root`). The
//! packages built here never have maintainer scripts, so nothing is run in a chroot.
//! dpkg refuses to run without root: check `is_root() && have_dpkg()` first (see `can_run`).

use std::path::{Path, PathBuf};
use std::process::Command;

use super::Run;

/// `dpkg` and `dpkg-deb` are on PATH.
pub fn have_dpkg() -> bool {
    ["dpkg", "dpkg-deb", "dpkg-divert"].iter().all(|tool| {
        Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// A package to build: architecture `all`, no maintainer scripts, no dependencies.
#[derive(Debug, Clone)]
pub struct Deb {
    pub name: String,
    pub version: String,
    /// (absolute path in the package, content, mode).
    pub files: Vec<(String, Vec<u8>, u32)>,
    /// Absolute paths of files (among `files`) dpkg treats as conffiles.
    pub conffiles: Vec<String>,
}

impl Deb {
    pub fn new(name: &str, version: &str) -> Deb {
        Deb {
            name: name.to_string(),
            version: version.to_string(),
            files: Vec::new(),
            conffiles: Vec::new(),
        }
    }

    /// Add a regular file (`path` absolute, e.g. `/usr/bin/foo`).
    pub fn file(mut self, path: &str, content: &[u8], mode: u32) -> Deb {
        self.files.push((path.to_string(), content.to_vec(), mode));
        self
    }

    /// Mark `path` (added with `file`) a conffile.
    pub fn conffile(mut self, path: &str) -> Deb {
        self.conffiles.push(path.to_string());
        self
    }

    /// Build `<out_dir>/<name>_<version>_all.deb` and return its path.
    pub fn build(&self, out_dir: &Path) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let tree = out_dir.join(format!("{}_{}.tree", self.name, self.version));
        let _ = std::fs::remove_dir_all(&tree);
        std::fs::create_dir_all(tree.join("DEBIAN")).expect("mkdir DEBIAN");
        let control = format!(
            "Package: {}\nVersion: {}\nArchitecture: all\nMaintainer: fimd tests <fimd@localhost>\nDescription: fimd test package\n",
            self.name, self.version
        );
        std::fs::write(tree.join("DEBIAN/control"), control).expect("write control");
        if !self.conffiles.is_empty() {
            let list = self.conffiles.join("\n") + "\n";
            std::fs::write(tree.join("DEBIAN/conffiles"), list).expect("write conffiles");
        }
        for (path, content, mode) in &self.files {
            let p = tree.join(path.trim_start_matches('/'));
            std::fs::create_dir_all(p.parent().expect("file in a directory")).expect("mkdir -p");
            std::fs::write(&p, content).expect("write package file");
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*mode)).expect("chmod");
        }
        let deb = out_dir.join(format!("{}_{}_all.deb", self.name, self.version));
        let r = Run::from(
            Command::new("dpkg-deb")
                .args(["--root-owner-group", "-Zgzip", "--build"])
                .arg(&tree)
                .arg(&deb)
                .output()
                .expect("run dpkg-deb"),
        );
        assert_eq!(r.code, 0, "dpkg-deb --build failed: {}", r.stderr);
        std::fs::remove_dir_all(&tree).expect("remove build tree");
        deb
    }
}

/// An empty dpkg database for the file system at `root` (created): `var/lib/dpkg/{status,
/// available,info/,updates/,triggers/}`. Returns the admin dir.
pub fn empty_root(root: &Path) -> PathBuf {
    let admin = admin_dir(root);
    for dir in ["info", "updates", "triggers"] {
        std::fs::create_dir_all(admin.join(dir)).expect("mkdir admin dir");
    }
    for file in ["status", "available"] {
        std::fs::write(admin.join(file), "").expect("write empty database file");
    }
    std::fs::create_dir_all(root.join("var/log")).expect("mkdir var/log");
    admin
}

/// `<root>/var/lib/dpkg`.
pub fn admin_dir(root: &Path) -> PathBuf {
    root.join("var/lib/dpkg")
}

/// Where these helpers make dpkg log: `<root>/var/log/dpkg.log`.
pub fn dpkg_log(root: &Path) -> PathBuf {
    root.join("var/log/dpkg.log")
}

/// `dpkg --root=<root> --log=<root>/var/log/dpkg.log ARGS`, whatever its outcome.
pub fn dpkg(root: &Path, args: &[&str]) -> Run {
    let mut c = Command::new("dpkg");
    c.arg(format!("--root={}", root.display()))
        .arg(format!("--log={}", dpkg_log(root).display()))
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive");
    Run::from(c.output().expect("run dpkg"))
}

fn dpkg_ok(root: &Path, args: &[&str]) -> Run {
    let r = dpkg(root, args);
    assert_eq!(r.code, 0, "dpkg {args:?} failed: {}", r.stderr);
    r
}

/// Install (or upgrade, downgrade, reinstall: `dpkg -i` does them all) a `.deb`. On a
/// conffile the admin changed, dpkg keeps the admin's version (`--force-confold`).
pub fn install(root: &Path, deb: &Path) -> Run {
    let deb = deb.to_str().expect("UTF-8 .deb path");
    dpkg_ok(root, &["--force-confold", "-i", deb])
}

/// `dpkg -r`: files removed, conffiles kept (state config-files).
pub fn remove(root: &Path, package: &str) -> Run {
    dpkg_ok(root, &["-r", package])
}

/// `dpkg -P`: everything removed, conffiles too.
pub fn purge(root: &Path, package: &str) -> Run {
    dpkg_ok(root, &["-P", package])
}

/// `dpkg-divert --package <by> --rename --divert <to> --add <from>` in the root: another
/// package's `from` now lives at `to` (moved there if already installed).
pub fn divert(root: &Path, by: &str, from: &str, to: &str) -> Run {
    let r = Run::from(
        Command::new("dpkg-divert")
            .arg(format!("--root={}", root.display()))
            .args(["--package", by, "--rename", "--divert", to, "--add", from])
            .output()
            .expect("run dpkg-divert"),
    );
    assert_eq!(r.code, 0, "dpkg-divert failed: {}", r.stderr);
    r
}
